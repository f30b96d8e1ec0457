"""Benchmark: replay a corpus of bad inputs against kairos-gym's public surfaces.

Every input in the corpus (:mod:`kairos_gym.eval.bad_input_cases`,
:mod:`kairos_gym.eval.bad_input_files`: envs, vector envs, the core, the world model, real
simulators, checkpoints, episode files, the writer, datasets, training configs, the command
line) should be refused on purpose (:func:`kairos_gym.errors.raised_on_purpose`; a command
line exits 1 or 2 with an ``error:`` line), leave what it was given unchanged, and leave the
object working. Each input ends in one of:

    clear      refused on purpose, nothing changed, still works
    accepted   no error at all
    documented accepted, and documented to be (listed apart, not counted among the M)
    unclear    an error, but not on purpose (a numpy / torch / h5py error escaping)
    changed    refused on purpose, but the object or file changed
    broken     refused, but the object no longer works

Run::

    python -m kairos_gym.eval.bad_inputs --output results/bad_inputs.json
    python -m kairos_gym.eval.bad_inputs --surface ImaginedEnv --verbose

Prints "N of M clear errors with state unchanged", a line per surface and every input that
is not clear; writes JSON with the command and every outcome. Exits 1 unless all are clear.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import tempfile
import time
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kairos_gym.errors import raised_on_purpose
from kairos_gym.eval import bad_input_cases as cases
from kairos_gym.eval import bad_input_files as files
from kairos_gym.eval.script import entry_point

BUILDERS = (
    cases.imagined_step, cases.vector_step, cases.imagined_reset, cases.vector_reset,
    cases.settings, cases.core, cases.world_model, cases.real_envs,
    files.checkpoints, files.episode_files, files.episode_writer, files.training, files.command_line,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the corpus replay."""
    parser.add_argument("--output", default=None, metavar="JSON", help="write every outcome here")
    parser.add_argument("--surface", default=None, help="only surfaces whose name contains this")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default: 1)")
    parser.add_argument("--verbose", action="store_true", help="print every input")


def same(a: Any, b: Any) -> bool:
    """Deep equality over dicts, sequences, numpy arrays and tensors."""
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        return a.shape == b.shape and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return np.array_equal(np.asarray(a), np.asarray(b), equal_nan=True)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


def replay(case: cases.Case) -> dict[str, Any]:
    """Run one case; returns its outcome record."""
    record: dict[str, Any] = {"surface": case.surface, "input": case.name}
    if case.setup is not None:
        case.setup()
    before = case.fingerprint() if case.fingerprint is not None else None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            case.call()
    except Exception as exc:  # noqa: BLE001 - classified below
        record["error"] = type(exc).__name__
        record["message"] = str(exc).splitlines()[0][:300] if str(exc) else ""
        if not (raised_on_purpose(exc) or isinstance(exc, files.CommandFailed)) or not str(exc):
            record["outcome"] = "unclear"
            return record
    else:
        record["outcome"] = "documented" if case.documented else "accepted"
        if case.documented:
            record["documented"] = case.documented
        return record
    if case.documented:
        record["outcome"] = "unclear"  # documented to work, yet refused
        return record
    if case.fingerprint is not None and not same(before, case.fingerprint()):
        record["outcome"] = "changed"
        return record
    if case.probe is not None:
        try:
            case.probe()
        except Exception as exc:  # noqa: BLE001 - the object no longer works
            record["outcome"] = "broken"
            record["probe_error"] = f"{type(exc).__name__}: {exc}"[:300]
            return record
    record["outcome"] = "clear"
    return record


def run(args: argparse.Namespace, argv: list[str]) -> int:
    """Replay the corpus; 0 when every input got a clear error with state unchanged."""
    torch.set_num_threads(args.threads)
    os.environ.setdefault("MUJOCO_GL", "egl")
    started = time.perf_counter()
    records: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="kairos_bad_inputs_") as root:
        fixtures = cases.Fixtures(Path(root))
        try:
            for build in BUILDERS:
                for case in build(fixtures):
                    if args.surface and args.surface not in case.surface:
                        continue
                    record = replay(case)
                    records.append(record)
                    if args.verbose or record["outcome"] != "clear":
                        print(f"{record['outcome']:>8}  {case.surface}: {case.name}"
                              + (f" -> {record.get('error')}: {record.get('message', '')[:120]}"
                                 if "error" in record else ""), flush=True)
        finally:
            fixtures.close()
    documented = [r for r in records if r["outcome"] == "documented"]
    records = [r for r in records if r["outcome"] != "documented"]
    clear = sum(r["outcome"] == "clear" for r in records)
    by_surface: dict[str, Counter] = {}
    for r in records:
        by_surface.setdefault(r["surface"], Counter())[r["outcome"]] += 1
    print(f"\n{clear} of {len(records)} clear errors with state unchanged "
          f"({time.perf_counter() - started:.0f} s)")
    if documented:
        print(f"{len(documented)} more inputs work as documented:")
        for r in documented:
            print(f"  {r['surface']}: {r['input']}: {r['documented']}")
    for surface, counts in by_surface.items():
        rest = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()) if k != "clear")
        print(f"  {surface:<34} {counts['clear']:>3} of {sum(counts.values()):>3}" + (f"  ({rest})" if rest else ""))
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        report = {
            "command": "python -m kairos_gym.eval.bad_inputs " + shlex.join(argv),
            "clear": clear,
            "total": len(records),
            "outcomes": dict(Counter(r["outcome"] for r in records)),
            "by_surface": {s: dict(c) for s, c in by_surface.items()},
            "not_clear": [r for r in records if r["outcome"] != "clear"],
            "documented": documented,
            "inputs": records,
            "seconds": round(time.perf_counter() - started, 1),
            "torch": torch.__version__,
            "platform": platform.platform(),
        }
        Path(args.output).write_text(json.dumps(report, indent=2, default=str))
        print(f"wrote {args.output}")
    return 0 if clear == len(records) else 1


main = entry_point(__doc__, add_arguments, run)


if __name__ == "__main__":
    sys.exit(main())
