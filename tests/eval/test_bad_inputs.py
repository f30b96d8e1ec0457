"""Tests of ``python -m kairos_gym.eval.bad_inputs``: the corpus is large enough, and a
slice of it replays as a subprocess into a JSON report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

from kairos_gym.eval import bad_input_cases as cases
from kairos_gym.eval.bad_inputs import BUILDERS

REPO = Path(__file__).resolve().parents[2]


def test_the_corpus_holds_at_least_300_distinct_bad_inputs(tmp_path):
    fixtures = cases.Fixtures(tmp_path)
    try:
        built = [case for build in BUILDERS for case in build(fixtures)]
    finally:
        fixtures.close()
    bad = [(c.surface, c.name) for c in built if c.documented is None]
    assert len(bad) >= 300, Counter(s for s, _ in bad)
    assert len(set(bad)) == len(bad), [k for k, n in Counter(bad).items() if n > 1]


def test_a_slice_replays_into_a_report(tmp_path):
    output = tmp_path / "report.json"
    done = subprocess.run(
        [sys.executable, "-m", "kairos_gym.eval.bad_inputs", "--surface", "WorldModel",
         "--output", str(output)],
        cwd=REPO, capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(output.read_text())
    assert report["clear"] == report["total"] > 20
    assert f"{report['clear']} of {report['total']} clear errors with state unchanged" in done.stdout
