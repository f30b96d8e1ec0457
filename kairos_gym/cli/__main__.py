"""``python -m kairos_gym.cli`` runs the command line."""

import sys

from kairos_gym.cli import main

sys.exit(main())
