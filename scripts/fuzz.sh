#!/usr/bin/env bash
# The property-based (Hypothesis) tests with a long budget: fresh random examples, N times
# the CI budget, and the 3,000-step random rollout of the embedded model.
#   bash scripts/fuzz.sh            # 40x the CI budget (about 10 minutes on 2 cores)
#   bash scripts/fuzz.sh 200 -x     # 200x, stop at the first failure
# CI runs the same tests with the small, derandomised budget (KAIROS_FUZZ_SCALE unset).
set -euo pipefail
cd "$(dirname "$0")/.."
export KAIROS_FUZZ_SCALE="${1:-40}"
shift || true
exec .venv/bin/python -m pytest -m fuzz -q -p no:cacheprovider --hypothesis-show-statistics "$@" tests
