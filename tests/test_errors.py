"""``raised_on_purpose`` tells deliberate refusals from accidents escaping the library."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from kairos_gym.envs.common import check_reset_options
from kairos_gym.errors import InvalidAction, raised_on_purpose


def _caught(call):
    with pytest.raises(Exception) as info:  # any error: classified by the caller
        call()
    return info.value


def test_kairos_and_gymnasium_errors_are_on_purpose():
    def refuse():
        raise InvalidAction("no")

    assert raised_on_purpose(_caught(refuse))
    assert raised_on_purpose(_caught(lambda: gym.make("kairos_gym/Nope-v0")))


def test_a_raise_in_kairos_gym_code_is_on_purpose_but_numpy_errors_are_not():
    assert raised_on_purpose(_caught(lambda: check_reset_options({"x": 1}, "toy")))
    assert not raised_on_purpose(_caught(lambda: np.asarray([[1.0], [1.0, 2.0]])))

    def local():
        raise ValueError("raised in a test, not in kairos-gym")

    assert not raised_on_purpose(_caught(local))

    def asserts():
        assert False, "stripped by python -O"

    assert not raised_on_purpose(_caught(asserts))
