"""The small exception hierarchy kairos-gym raises for bad input.

Every class also derives from the builtin a caller would naturally catch (``ValueError``,
``RuntimeError``, ``ImportError``), so ``except ValueError`` keeps working, and from
Gymnasium's own class where Gymnasium has one (``gymnasium.error.ResetNeeded``,
``InvalidAction``, ``DependencyNotInstalled``), so ``except gymnasium.error.ResetNeeded``
catches ours however the env was built. Messages say what was expected and what arrived.
"""

from __future__ import annotations

from gymnasium import error as gym_error


class KairosGymError(Exception):
    """Base class of every error raised on purpose by kairos-gym."""


class ShapeError(KairosGymError, ValueError):
    """A tensor or array has the wrong shape, dtype or contains NaN/inf."""


class InvalidAction(KairosGymError, gym_error.InvalidAction, ValueError):
    """An action does not belong to the environment's action space."""


class ResetNeeded(KairosGymError, gym_error.ResetNeeded, RuntimeError):
    """``step`` (or ``render``) was called before ``reset``."""


class CheckpointError(KairosGymError, ValueError):
    """A checkpoint is missing, corrupt, or does not match the model it is loaded into."""


class DatasetError(KairosGymError, ValueError):
    """An episode file is corrupt, truncated, or not in the expected layout."""


class DeviceUnavailable(KairosGymError, ValueError):
    """A device that does not exist here: CUDA on a CPU-only build, a GPU index out of range."""


class DependencyNotInstalled(KairosGymError, gym_error.DependencyNotInstalled, ImportError):
    """An optional dependency (a simulator, a GPU kernel package) is missing."""


def missing_dependency(package: str, extra: str) -> DependencyNotInstalled:
    """Build the error for an optional package that is not installed.

    Args:
        package: the import name that failed.
        extra: the ``kairos-gym`` extra that installs it.
    """
    return DependencyNotInstalled(
        f"{package} is not installed; install it with `pip install -e '.[{extra}]'` "
        f"(or `pip install kairos-gym[{extra}]`)."
    )
