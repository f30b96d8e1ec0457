"""Property-based tests of ``WorldModel.step`` / ``observe`` inputs: any actions, frames or
state either work as documented or are refused on purpose, and the state passed in is
never changed."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from kairos_gym.errors import ShapeError
from kairos_gym.model import WorldModel, WorldModelConfig
from tests.fuzz_helpers import JUNK, action_inputs, arrays, fuzz, near, outcome, same
from tests.model.conftest import randomize_

pytestmark = pytest.mark.fuzz
B = 2


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return randomize_(WorldModel(WorldModelConfig.preset("tiny", state_dim=3))).eval()


@pytest.fixture(scope="module")
def state(model):
    frames = torch.randint(0, 256, (B, 1, 16, 16, 3), dtype=torch.uint8)
    return model.observe(model.init_state(B), frames)


def _copy(state):
    return {k: v.clone() for k, v in state.items()}


@fuzz(50)
@given(actions=action_inputs((B, 7)))
def test_step_imagines_a_frame_or_refuses_the_actions(model, state, actions):
    before = _copy(state)
    result, error = outcome(lambda: model.step(state, actions))
    if error is None:
        frames, out, new = result
        assert frames.dtype == torch.uint8 and frames.shape == (B, 16, 16, 3)
        assert all(torch.isfinite(v).all() for v in out.values())
        assert new.batch_size == B
    else:
        assert isinstance(error, ShapeError), error
    assert same(_copy(state), before)


@fuzz(30)
@given(frames=st.one_of(
    hnp.arrays(np.uint8, near((B, 1, 16, 16, 3))),
    arrays(near((B, 1, 16, 16, 3))),
    JUNK,
))
def test_observe_commits_frames_or_refuses_them(model, state, frames):
    before = _copy(state)
    result, error = outcome(lambda: model.observe(state, frames))
    if error is None:
        assert result.batch_size == B
    assert same(_copy(state), before)


@fuzz(20)
@given(actions=st.one_of(action_inputs((B, 3, 7)), hnp.arrays(np.float32, near((B, 3, 7)))))
def test_rollout_imagines_frames_or_refuses_the_actions(model, state, actions):
    before = _copy(state)
    result, error = outcome(lambda: model.rollout(state, actions))
    if error is None:
        frames, out, _new = result
        assert frames.shape[0] == B and frames.shape[1] == out["reward"].shape[1]
    assert same(_copy(state), before)
