"""Suite-wide settings: one torch thread, and the ``fuzz`` marker.

The models under test are tiny, where thread synchronisation costs more than it saves, and
CI machines have 2 cores that other processes share: one thread is faster and steadier.
The property-based tests carry the ``fuzz`` marker (``scripts/fuzz.sh`` runs them with a
long budget; see ``tests/fuzz_helpers.py``).
"""

import torch

torch.set_num_threads(1)


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "fuzz: property-based (Hypothesis) tests; scripts/fuzz.sh runs them longer"
    )
