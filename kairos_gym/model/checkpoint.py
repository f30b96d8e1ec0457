"""Checkpoint directories: ``config.json`` + safetensors, loaded strictly; released DiT weights.

A checkpoint directory holds ``config.json`` (``{"format": 1, "model": {...}, ...}`` plus
whatever the caller adds, e.g. the env spec), ``model.safetensors`` (the denoiser) and
``codec.safetensors``. Nothing is ever unpickled. Loading is strict: every missing,
unexpected or mis-shaped tensor is named in one :class:`~kairos_gym.errors.CheckpointError`.

Loading never trusts the directory further than it must:

- every file is read from the directory itself (:func:`checkpoint_file`): a symlink, or a
  name that resolves elsewhere, is refused, so a checkpoint cannot make the loader read
  another file;
- ``config.json`` must carry a ``format`` this code reads (:data:`FORMAT_VERSION`);
- the sizes a config declares are compared with the tensors actually stored, read from the
  safetensors headers (:func:`read_header`, a few KB) before anything is allocated
  (:func:`check_header`), so a config cannot make the loader build a model bigger than its
  files.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from kairos_gym.errors import CheckpointError

CONFIG_NAME = "config.json"
MODEL_NAME = "model.safetensors"
CODEC_NAME = "codec.safetensors"
FORMAT_VERSION = 1
MAX_CONFIG_BYTES = 16 * 2**20
"""The largest ``config.json`` read (configs are a few KB; a bigger file is not a config)."""
MAX_HEADER_BYTES = 100 * 2**20
"""The largest safetensors header read (safetensors' own limit)."""
_DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1,
                "U8": 1, "BOOL": 1, "U16": 2, "U32": 4, "U64": 8, "F8_E4M3": 1, "F8_E5M2": 1}

# Parameters the released (action-free) Kairos DiT does not have; they keep their fresh init.
NEW_IN_KAIROS_GYM = ("action_embedding.", "no_action_embedding", "outcome_head.", "state_mean", "state_std")


def _publish(tmp: str, path: Path) -> None:
    # mkstemp creates 0600 files; checkpoints are shared artifacts, so use the usual umask mode.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    os.replace(tmp, path)


def write_json_atomic(path: Path, data: Mapping[str, Any]) -> None:
    """Write JSON through a temporary file and ``os.replace`` so readers never see half a file."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2)
    _publish(tmp, path)


def save_tensors_atomic(tensors: Mapping[str, torch.Tensor], path: Path, metadata: dict[str, str] | None = None) -> None:
    """Save a safetensors file through a temporary file and ``os.replace``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(fd)
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, tmp, metadata=metadata)
    _publish(tmp, path)


def checkpoint_file(directory: str | os.PathLike, name: str) -> Path:
    """``directory / name``, refused unless it is a regular file inside ``directory`` itself.

    The directory the caller named may itself be a symlink; the files in it may not, so a
    checkpoint never makes the loader read a file it does not contain.

    Raises:
        CheckpointError: missing file, a symlink, or a path that resolves outside the directory.
    """
    directory = Path(directory)
    path = directory / name
    if path.is_symlink():
        raise CheckpointError(
            f"{path} is a symlink (to {os.readlink(path)!r}); checkpoint files must be stored in "
            "the checkpoint directory itself"
        )
    if not path.is_file():
        raise CheckpointError(f"missing checkpoint file {str(path)!r}")
    if path.resolve().parent != directory.resolve():
        raise CheckpointError(f"{path} resolves to {path.resolve()}, outside the checkpoint directory")
    return path


def read_config(directory: str | os.PathLike) -> dict[str, Any]:
    """The parsed ``config.json`` of a checkpoint directory.

    Raises:
        CheckpointError: missing directory or file, a symlinked file, invalid JSON, no
            ``model`` section, or a ``format`` other than one this code reads.
    """
    if not (Path(directory) / CONFIG_NAME).exists() and not (Path(directory) / CONFIG_NAME).is_symlink():
        missing = "" if Path(directory).is_dir() else " (the directory does not exist)"
        raise CheckpointError(f"no {CONFIG_NAME} in checkpoint directory {str(directory)!r}{missing}")
    path = checkpoint_file(directory, CONFIG_NAME)
    size = path.stat().st_size
    if size > MAX_CONFIG_BYTES:
        raise CheckpointError(f"{path} has {size} bytes, more than a config can ({MAX_CONFIG_BYTES})")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise CheckpointError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("model"), dict):
        raise CheckpointError(f"{path} has no 'model' section")
    # A config without "format" predates the field (always 1 when it was written).
    version = data.get("format", 1)
    if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version <= FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has format {version!r}; this kairos-gym reads checkpoint format "
            f"1..{FORMAT_VERSION} (a newer format needs a newer kairos-gym)"
        )
    return data


def read_header(path: str | os.PathLike) -> dict[str, tuple[str, tuple[int, ...]]]:
    """The tensors a safetensors file stores, ``{name: (dtype, shape)}``, from its header only.

    Each entry is checked against the file: its byte range lies inside the file and is as
    long as its dtype and shape say, so the shapes are what loading will actually find.

    Raises:
        CheckpointError: not a safetensors file, or a header inconsistent with the file.
    """
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        length = int.from_bytes(head, "little") if len(head) == 8 else -1
        if not 0 < length <= min(MAX_HEADER_BYTES, size - 8):
            raise CheckpointError(
                f"{path} is not a readable safetensors file (corrupt or truncated?): header "
                f"length {length} in a file of {size} bytes"
            )
        raw = f.read(length)
    try:
        header = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise CheckpointError(f"{path} is not a readable safetensors file: bad header ({exc})") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path} is not a readable safetensors file: the header is not a map")
    data_bytes = size - 8 - length
    out: dict[str, tuple[str, tuple[int, ...]]] = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype, shape, (begin, end) = entry["dtype"], entry["shape"], entry["data_offsets"]
            if dtype not in _DTYPE_BYTES or not all(isinstance(d, int) and d >= 0 for d in shape):
                raise ValueError(f"dtype {dtype!r}, shape {shape!r}")
            expected = math.prod(shape) * _DTYPE_BYTES[dtype]
            if not (isinstance(begin, int) and isinstance(end, int) and 0 <= begin <= end <= data_bytes
                    and end - begin == expected):
                raise ValueError(f"bytes {begin}..{end} of {data_bytes} for {expected} bytes of data")
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(
                f"{path} is not a readable safetensors file (corrupt or truncated?): tensor "
                f"{name!r} has a bad header entry ({exc})"
            ) from None
        out[name] = (dtype, tuple(shape))
    return out


def check_header(
    expected: Mapping[str, torch.Tensor], header: Mapping[str, tuple[str, tuple[int, ...]]],
    source: str,
) -> None:
    """Compare a model's tensors (e.g. built on the ``meta`` device: shapes only, no memory)
    with a file's header: the same names and shapes, or a :class:`CheckpointError` naming them.

    Run before building the real model, this bounds what a config can make the loader
    allocate by the tensors the file actually holds.
    """
    problems = shape_problems(
        {k: tuple(v.shape) for k, v in expected.items()}, {k: v[1] for k, v in header.items()}
    )
    if problems:
        raise CheckpointError(
            f"{source} does not hold the model config.json declares: " + "; ".join(problems))


def shape_problems(
    model: Mapping[str, tuple[int, ...]],
    checkpoint: Mapping[str, tuple[int, ...]],
    allow_missing: tuple[str, ...] = (),
) -> list[str]:
    """What differs between a model's tensor shapes and a checkpoint's, by name: missing and
    unexpected keys and mis-shaped tensors (each list clipped for messages); ``[]`` when they
    match. Names starting with one of ``allow_missing`` may be absent from the checkpoint."""
    missing = sorted(k for k in model if k not in checkpoint and not k.startswith(allow_missing))
    unexpected = sorted(k for k in checkpoint if k not in model)
    misshaped = sorted(
        f"{k}: checkpoint {tuple(checkpoint[k])} vs model {tuple(model[k])}"
        for k in model if k in checkpoint and tuple(checkpoint[k]) != tuple(model[k]))
    problems = []
    if missing:
        problems.append(f"missing keys ({len(missing)}): {_clip(missing)}")
    if unexpected:
        problems.append(f"unexpected keys ({len(unexpected)}): {_clip(unexpected)}")
    if misshaped:
        problems.append(f"mis-shaped tensors ({len(misshaped)}): {_clip(misshaped)}")
    return problems


def load_tensors(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a safetensors file, turning every failure into a :class:`CheckpointError` naming it."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"missing checkpoint file {str(path)!r}")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path} is not a readable safetensors file (corrupt or truncated?): {exc}") from None


def load_state_strict(
    module: nn.Module, tensors: Mapping[str, torch.Tensor], source: str,
    allow_missing: tuple[str, ...] = (),
) -> list[str]:
    """Copy ``tensors`` into ``module``, failing on any mismatch.

    Args:
        module: the receiving module.
        tensors: name -> tensor.
        source: a name for messages (the file).
        allow_missing: name prefixes that may be absent (they keep their values).

    Returns:
        The names that were allowed to be missing and were.

    Raises:
        CheckpointError: listing missing, unexpected and mis-shaped tensors.
    """
    own = module.state_dict()
    tolerated = sorted(k for k in own if k not in tensors and k.startswith(allow_missing))
    problems = shape_problems(
        {k: tuple(v.shape) for k, v in own.items()},
        {k: tuple(v.shape) for k, v in tensors.items()},
        allow_missing,
    )
    if problems:
        raise CheckpointError(f"{source} does not match the model: " + "; ".join(problems))
    for k, v in tensors.items():
        if not torch.isfinite(v).all() and v.is_floating_point():
            raise CheckpointError(f"{source}: tensor {k} contains NaN or inf")
    module.load_state_dict(dict(tensors), strict=False)
    return tolerated


def _clip(names: list[str], limit: int = 12) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", ... (+{len(names) - limit} more)" if len(names) > limit else "")


def map_released_dit_keys(tensors: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Rename released Kairos DiT tensors to this package's names.

    The released video DiT already uses this package's names (Wan layout); the
    world-action checkpoints prefix them with ``video_dit.`` and carry a separate
    ``action_dit.`` expert, which is dropped (video tokens never read it).

    Returns:
        ``(renamed tensors, dropped names)``.
    """
    renamed: dict[str, torch.Tensor] = {}
    dropped: list[str] = []
    for name, value in tensors.items():
        if name.startswith("action_dit."):
            dropped.append(name)
            continue
        renamed[name.removeprefix("video_dit.")] = value
    return renamed, dropped


def load_released_dit(
    module: nn.Module, path: str | os.PathLike, allow_missing: tuple[str, ...] = NEW_IN_KAIROS_GYM
) -> list[str]:
    """Load a released Kairos DiT ``.safetensors`` into ``module`` by name (strict).

    Names go through :func:`map_released_dit_keys`; every tensor of ``module`` must be in
    the file with its shape, except names starting with ``allow_missing`` (the pathways the
    release does not have), which keep their values.

    Returns:
        The names the file did not provide (the new pathway).

    Raises:
        CheckpointError: a missing or unreadable file, or tensors that do not match.
    """
    path = released_dit_file(path)
    tensors, _ = map_released_dit_keys(load_tensors(path))
    return load_state_strict(module, tensors, str(path), allow_missing=allow_missing)


def released_dit_file(path: str | os.PathLike) -> Path:
    """``path``, checked to be an existing file (the released DiT's weights are local only).

    Raises:
        CheckpointError: no such file.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"missing released DiT weights file {str(path)!r} (weights are read from local "
            "files only)"
        )
    return path
