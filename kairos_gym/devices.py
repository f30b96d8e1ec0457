"""Which torch devices exist here: one check before a model is loaded or moved.

``torch.device("cuda")`` is a valid name on every build, and the failure only comes when a
tensor is moved (an ``AssertionError`` deep inside torch on a CPU-only build), so every
entry point that takes a device checks it here first and names what is missing.
"""

from __future__ import annotations

import torch

from kairos_gym.errors import DeviceUnavailable

__all__ = ["DEVICE_TYPES", "check_device", "parse_device"]

DEVICE_TYPES = ("cpu", "cuda", "mps")
"""The device types kairos-gym runs on."""


def parse_device(device: torch.device | str) -> torch.device:
    """``device`` as a ``torch.device``, whether or not it exists here.

    Raises:
        DeviceUnavailable: not a string or ``torch.device``, or not a device name.
    """
    if isinstance(device, bool) or not isinstance(device, (str, torch.device)):
        raise DeviceUnavailable(
            f"device must be a string such as 'cpu' or 'cuda:0' or a torch.device, got {device!r}"
        )
    try:
        return torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        raise DeviceUnavailable(
            f"{device!r} is not a device name; use one of {list(DEVICE_TYPES)} (with an index, "
            "e.g. 'cuda:1')"
        ) from None


def check_device(device: torch.device | str) -> torch.device:
    """``device`` as a ``torch.device``, refused unless it exists on this machine.

    Args:
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"`` or a ``torch.device``.

    Raises:
        DeviceUnavailable: not a device name, another device type, CUDA / MPS not available
            in this torch build or on this machine, or a GPU index out of range.
    """
    dev = parse_device(device)
    if dev.type not in DEVICE_TYPES:
        raise DeviceUnavailable(f"device type {dev.type!r} is not supported; use one of {list(DEVICE_TYPES)}")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            why = ("this torch is a CPU-only build" if torch.version.cuda is None
                   else "no CUDA GPU is visible")
            raise DeviceUnavailable(
                f"device {str(dev)!r} is not available: {why} (torch {torch.__version__}); use 'cpu'"
            )
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise DeviceUnavailable(f"device {str(dev)!r} does not exist: {count} CUDA GPU(s) visible")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise DeviceUnavailable(f"device {str(dev)!r} is not available on this machine; use 'cpu'")
    return dev
