"""Shared pieces of the property-based (Hypothesis) tests.

Every fuzzed public surface is held to one property: a generated input either works as
documented or raises an error on purpose (:func:`kairos_gym.errors.raised_on_purpose`: a
kairos-gym or Gymnasium error, or a ``raise`` in their code; never a numpy / torch error
escaping, never an ``AssertionError``), and after an error the object is unchanged and
still works.

The example budget is small in CI (a fixed, derandomised run); ``scripts/fuzz.sh`` (or
``KAIROS_FUZZ_SCALE=N``) multiplies it and draws fresh random examples.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from kairos_gym.errors import raised_on_purpose
from kairos_gym.model.state import WorldState

SCALE = max(1, int(os.environ.get("KAIROS_FUZZ_SCALE", "1")))
"""Multiplier of every example budget (1 in CI)."""


def fuzz(examples: int) -> settings:
    """Hypothesis settings for ``examples`` examples (times :data:`SCALE`): no deadline
    (CI machines are shared), no example database in the tree, derandomised in CI."""
    return settings(
        max_examples=examples * SCALE,
        deadline=None,
        derandomize=SCALE == 1,
        database=None,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.function_scoped_fixture,
            HealthCheck.data_too_large,
            HealthCheck.filter_too_much,
        ],
    )


def outcome(call: Callable[[], Any]) -> tuple[Any, BaseException | None]:
    """``(result, None)`` when ``call()`` works, ``(None, error)`` when it raised on purpose.

    Raises:
        AssertionError: the call raised something else (the original error is chained).
    """
    try:
        result = call()
    except Exception as exc:
        if not raised_on_purpose(exc) or not str(exc):
            raise AssertionError(f"not a clear error: {type(exc).__name__}: {exc}") from exc
        event(f"refused: {type(exc).__name__}")  # --hypothesis-show-statistics counts them
        return None, exc
    event("worked")
    return result, None


def same(a: Any, b: Any) -> bool:
    """Deep equality over dicts, sequences, numpy arrays, tensors, WorldStates, dataclasses."""
    if isinstance(a, WorldState) and isinstance(b, WorldState):
        return same(dict(a.items()), dict(b.items()))
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        return a.shape == b.shape and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return np.array_equal(np.asarray(a), np.asarray(b), equal_nan=True)
    if dataclasses.is_dataclass(a) and dataclasses.is_dataclass(b):
        return type(a) is type(b) and all(
            same(getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(a)
        )
    if isinstance(a, dict) and isinstance(b, dict) or hasattr(a, "keys") and hasattr(b, "keys"):
        return set(a.keys()) == set(b.keys()) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


# --- strategies ---
NUMBERS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=32),
    st.floats(min_value=-1.0, max_value=1.0),
    st.integers(min_value=-(2**70), max_value=2**70),
)
DTYPES = st.sampled_from(
    [np.float32, np.float64, np.float16, np.int64, np.int8, np.uint8, np.bool_, np.complex64]
)
JUNK = st.one_of(
    st.none(),
    st.booleans(),
    NUMBERS,
    st.text(max_size=8),
    st.binary(max_size=8),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
    st.lists(st.one_of(st.integers(), st.lists(st.floats(), max_size=3)), max_size=4),
)


def arrays(shapes: st.SearchStrategy[tuple[int, ...]]) -> st.SearchStrategy[np.ndarray]:
    """Numpy arrays of any of :data:`DTYPES`, with NaN, inf and huge values among them."""
    return DTYPES.flatmap(
        lambda dtype: hnp.arrays(
            dtype,
            shapes,
            elements=hnp.from_dtype(np.dtype(dtype), allow_nan=True, allow_infinity=True)
            if np.dtype(dtype).kind in "fc"
            else None,
        )
    )


def near(shape: tuple[int, ...]) -> st.SearchStrategy[tuple[int, ...]]:
    """``shape`` itself most of the time, else a shape one edit away (a dimension changed,
    added or dropped)."""
    edits = [shape, shape[:-1], (*shape, 1), (1, *shape)]
    edits += [shape[:i] + (d,) + shape[i + 1:] for i in range(len(shape)) for d in (0, 1, shape[i] + 1)]
    return st.one_of(st.just(shape), st.sampled_from(edits))


def action_inputs(shape: tuple[int, ...], low: float = -1.0, high: float = 1.0) -> st.SearchStrategy[Any]:
    """What a careless caller passes as an action of ``shape``: valid arrays, arrays of the
    wrong shape or dtype, NaN and out-of-range values, lists (ragged too), tensors (with
    grad too) and junk."""
    valid = hnp.arrays(np.float32, shape, elements=st.floats(low, high, width=32))
    tensors = valid.flatmap(
        lambda a: st.sampled_from([torch.from_numpy(a.copy()), torch.from_numpy(a.copy()).requires_grad_()])
    )
    return st.one_of(
        valid,
        valid.map(lambda a: a.tolist()),
        tensors,
        arrays(near(shape)),
        st.lists(st.lists(NUMBERS, max_size=shape[-1] + 1), min_size=1, max_size=3),
        JUNK,
    )
