"""Resumable training state and the metrics log.

Each stage keeps ``<output>/<stage>/trainer_state.pt``: the step, the trained weights, the
optimizer state and the run's config. It is written through a temporary file and
``os.replace`` (a kill mid-write leaves the previous file intact), and the previous one is
kept as ``trainer_state.prev.pt``, so even a file damaged on disk costs at most one
checkpoint interval. Files are read with ``torch.load(weights_only=True)``: nothing is
unpickled beyond tensors and plain containers.

Batches and noise are functions of ``(seed, stage, step, rank)``, not of an iterator's
position, so a resumed run continues exactly where an uninterrupted one would.
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch

from kairos_gym.errors import CheckpointError

STATE_NAME = "trainer_state.pt"
PREVIOUS_NAME = "trainer_state.prev.pt"
METRICS_NAME = "metrics.jsonl"


def save_training_state(directory: Path, state: dict[str, Any]) -> Path:
    """Atomically write ``state`` as the stage's latest checkpoint, keeping the previous one."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / STATE_NAME
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{STATE_NAME}.")
    os.close(fd)
    try:
        torch.save(state, tmp)
        if path.exists():
            os.replace(path, directory / PREVIOUS_NAME)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _read(path: Path) -> dict[str, Any]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for damaged zip/pickle data
        raise CheckpointError(f"{path}: cannot read training state ({type(exc).__name__}: {exc})") from None
    if not isinstance(state, dict) or "step" not in state or "model" not in state:
        raise CheckpointError(f"{path}: not a kairos-gym training state")
    return state


def load_training_state(directory: Path) -> dict[str, Any] | None:
    """The stage's latest readable checkpoint, or None when it has none.

    A damaged latest file falls back to the previous one with a warning.

    Raises:
        CheckpointError: checkpoints exist but none can be read.
    """
    path, previous = directory / STATE_NAME, directory / PREVIOUS_NAME
    if not path.exists() and not previous.exists():
        return None
    errors = []
    for candidate in (path, previous):
        if not candidate.exists():
            continue
        try:
            state = _read(candidate)
        except CheckpointError as exc:
            errors.append(str(exc))
            continue
        if errors:
            warnings.warn(f"{errors[0]}; resuming from the previous checkpoint {candidate.name} "
                          f"(step {state['step']})", stacklevel=2)
        return state
    raise CheckpointError("no readable training state: " + "; ".join(errors) +
                          f". Delete {directory} to start this stage over.")


class MetricsLog:
    """Append-only JSON-lines log of one run (``<output>/metrics.jsonl``), rank 0 only."""

    def __init__(self, path: Path, enabled: bool = True) -> None:
        self.path = path
        self.enabled = enabled

    def truncate_after(self, stage: str, step: int) -> None:
        """Drop ``stage`` records past ``step``: a resumed run rewrites them exactly."""
        if not self.enabled or not self.path.exists():
            return
        kept = []
        for line in self.path.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by a kill mid-write
            if record.get("stage") == stage and record.get("step", 0) > step:
                continue
            kept.append(line)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.")
        with os.fdopen(fd, "w") as f:
            f.write("".join(line + "\n" for line in kept))
        os.replace(tmp, self.path)

    def write(self, record: dict[str, Any]) -> None:
        """Append one record."""
        if not self.enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as f:
            f.write(json.dumps(record, allow_nan=True) + "\n")

    def read(self) -> list[dict[str, Any]]:
        """Every complete record."""
        if not self.path.exists():
            return []
        out = []
        for line in self.path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return out
