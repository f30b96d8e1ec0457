"""Property-based tests of the imagined envs: any action, seed or reset option either works
as documented or is refused on purpose with the env unchanged and still working."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import kairos_gym
from kairos_gym.errors import InvalidAction
from kairos_gym.imagined.checkpoint import load_env_checkpoint
from kairos_gym.imagined.env import ImaginedEnv
from tests.fuzz_helpers import JUNK, SCALE, action_inputs, arrays, fuzz, near, outcome, same
from tests.imagined_helpers import write_checkpoint

pytestmark = pytest.mark.fuzz
N = 3
SPACE_KEYS = ("agentview_image", "state")


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return load_env_checkpoint(write_checkpoint(tmp_path_factory.mktemp("fuzz") / "lift"))


@pytest.fixture(scope="module")
def env(ckpt):
    # Never ending episodes (the tiny random model may predict the end after one step), so
    # "still works" always means one more step.
    e = ImaginedEnv(ckpt, done_threshold=1.0, max_episode_steps=10**6)
    yield e
    e.close()


@pytest.fixture(scope="module")
def envs(ckpt):
    e = kairos_gym.make_vec(num_envs=N, checkpoint=ckpt, done_threshold=1.0, max_episode_steps=10**6)
    yield e
    e.close()


def fingerprint(target: Any) -> dict[str, Any]:
    """Everything a refused call must leave as it was: every row's memory, steps, last
    observation, noise and reset generators, and the env's own generator and seed."""
    core = target.core
    return {
        "snapshot": core.snapshot() if core.started.all() else None,
        "started": core.started,
        "np_random": None if target.__dict__.get("_np_random") is None
        else target.__dict__["_np_random"].bit_generator.state,
        "seed": target.__dict__.get("_np_random_seed"),
    }


def clearly_valid(action: Any, shape: tuple[int, ...]) -> bool:
    """An action no env may refuse: the right shape, real numbers strictly inside [-1, 1]."""
    if isinstance(action, torch.Tensor):
        action = action.detach().numpy()
    try:
        arr = np.asarray(action)
    except (ValueError, TypeError):
        return False
    if arr.shape != shape or arr.dtype.kind not in "fiu":
        return False
    values = arr.astype(np.float64)
    return bool(np.isfinite(values).all() and (np.abs(values) < 1.0).all())


def observations(rows: int | None) -> st.SearchStrategy[Any]:
    """Start observations, near the space: right or wrong keys, shapes, dtypes, NaN."""
    lead = () if rows is None else (rows,)
    image = st.one_of(
        hnp.arrays(np.uint8, (*lead, 16, 16, 3)),
        arrays(near((*lead, 16, 16, 3))),
    )
    state = st.one_of(
        hnp.arrays(np.float32, (*lead, 8), elements=st.floats(-1, 1, width=32)),
        arrays(near((*lead, 8))),
    )
    keys = st.sampled_from([SPACE_KEYS, SPACE_KEYS[:1], (*SPACE_KEYS, "extra")])
    return st.one_of(
        st.builds(lambda k, i, s: {key: {"agentview_image": i, "state": s}.get(key, 0) for key in k},
                  keys, image, state),
        JUNK,
    )


def reset_options(rows: int | None) -> st.SearchStrategy[Any]:
    keys = st.sampled_from(["observation", "reset_index", "reset_mask", "seed", "foo"])
    index = st.one_of(st.integers(-3, 5), st.lists(st.integers(-1, 4), max_size=N + 1), JUNK)
    mask = st.one_of(hnp.arrays(np.bool_, near((N,))), arrays(near((N,))), JUNK)
    values = {"observation": observations(rows), "reset_index": index, "reset_mask": mask}
    option = keys.flatmap(lambda k: st.tuples(st.just(k), values.get(k, JUNK)))
    return st.one_of(st.none(), st.just({}), st.lists(option, max_size=3).map(dict), JUNK)


SEEDS = st.one_of(st.none(), st.integers(-2, 2**70), st.floats(), st.text(max_size=3))


@fuzz(60)
@given(action=action_inputs((7,)))
def test_step_takes_an_action_or_refuses_it_unchanged(env, action):
    env.reset(seed=0)
    before = fingerprint(env)
    result, error = outcome(lambda: env.step(action))
    if error is None:
        obs, reward, _terminated, _truncated, info = result
        assert env.observation_space.contains(obs) and np.isfinite(reward)
        assert 0.0 <= info["success_prob"] <= 1.0
    else:
        assert isinstance(error, InvalidAction), error
        assert not clearly_valid(action, (7,)), f"refused a valid action: {error}"
        assert same(fingerprint(env), before)
        env.step(np.zeros(7, np.float32))


@fuzz(60)
@given(seed=SEEDS, options=reset_options(None))
def test_reset_starts_or_refuses_unchanged(env, seed, options):
    env.reset(seed=1)
    env.step(np.zeros(7, np.float32))
    before = fingerprint(env)
    result, error = outcome(lambda: env.reset(seed=seed, options=options))
    if error is None:
        obs, info = result
        assert env.observation_space.contains(obs) and info["success"] is False
    else:
        assert same(fingerprint(env), before), error
    env.step(np.zeros(7, np.float32))


@fuzz(40)
@given(actions=action_inputs((N, 7)))
def test_vector_step_takes_a_batch_or_refuses_it_unchanged(envs, actions):
    envs.reset(seed=0)
    before = fingerprint(envs)
    result, error = outcome(lambda: envs.step(actions))
    if error is None:
        obs, rewards, _terminated, _truncated, _infos = result
        assert envs.observation_space.contains(obs) and np.isfinite(rewards).all()
    else:
        assert isinstance(error, InvalidAction), error
        assert not clearly_valid(actions, (N, 7)), f"refused valid actions: {error}"
        assert same(fingerprint(envs), before)
        envs.step(np.zeros((N, 7), np.float32))


@fuzz(60)
@given(seed=st.one_of(SEEDS, st.lists(st.one_of(st.none(), st.integers(-1, 9)), max_size=N + 1)),
       options=reset_options(N))
def test_vector_reset_and_masks_start_rows_or_refuse_unchanged(envs, seed, options):
    envs.reset(seed=1)
    envs.step(np.zeros((N, 7), np.float32))
    before = fingerprint(envs)
    result, error = outcome(lambda: envs.reset(seed=seed, options=options))
    if error is None:
        obs, _infos = result
        assert envs.observation_space.contains(obs)
    else:
        assert same(fingerprint(envs), before), error
    envs.step(np.zeros((N, 7), np.float32))


@settings(max_examples=1, deadline=None, database=None, derandomize=SCALE == 1)
@given(seed=st.integers(0, 2**32))
def test_long_random_rollouts_stay_finite_and_bounded(ckpt, seed):
    """Hundreds of random steps per row (3,000 on the embedded model with the long budget)."""
    steps = 300 if SCALE == 1 else 3000
    envs = kairos_gym.make_vec(num_envs=4, checkpoint=ckpt if SCALE == 1 else None,
                               max_episode_steps=steps + 1, done_threshold=1.0)
    rng = np.random.default_rng(seed)
    envs.reset(seed=seed)
    low, high = envs.single_action_space.low, envs.single_action_space.high
    for _ in range(steps):
        obs, rewards, _terminated, truncated, infos = envs.step(rng.uniform(low, high, (4, len(low))))
        assert np.isfinite(rewards).all() and np.abs(rewards).max() < 1e3
        assert np.isfinite(obs["state"]).all() and obs["agentview_image"].dtype == np.uint8
        assert ((infos["success_prob"] >= 0) & (infos["success_prob"] <= 1)).all()
        assert not truncated.any()
    envs.close()
