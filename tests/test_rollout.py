"""The episode loops (``kairos_gym.rollout``) and chunk execution (``ChunkedPolicy``).

A chunking policy (``[H, A]`` per query) runs through every loop: ``run_episode`` on a toy
env, the imagined env and the real robosuite Lift; ``run_paired``; ``run_batched`` on the
imagined vector env and on Gymnasium's ``SyncVectorEnv`` in every autoreset mode. A toy env
with known episode lengths and a success flag on the last step pins the bookkeeping.
"""

from __future__ import annotations

import itertools
from typing import ClassVar

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode, SyncVectorEnv

import kairos_gym
from kairos_gym.evaluation.real_vs_imagined import summarize
from kairos_gym.policies import ChunkedPolicy, Policy, RandomPolicy
from kairos_gym.rollout import Episode, Transition, run_batched, run_episode, run_paired

IMAGINED = "kairos_gym/Imagined-v0"
LIFT = "kairos_gym/Robosuite-Lift-v0"


class CountdownEnv(gym.Env):
    """A toy env: episodes of 2-4 steps (drawn from the reset seed), success on the last.

    Observation ``{"state": [steps taken, episode length]}``; reward = step index + the
    action's first entry, so the executed actions can be read back from the rewards.
    """

    metadata: ClassVar[dict] = {"render_modes": []}

    def __init__(self) -> None:
        self.observation_space = gym.spaces.Dict(
            {"state": gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)}
        )
        self.action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.instruction = "count down"
        self._t = self._length = 0

    def _obs(self) -> dict[str, np.ndarray]:
        return {"state": np.array([self._t, self._length], np.float32)}

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._t, self._length = 0, int(self.np_random.integers(2, 5))
        return self._obs(), {"success": False, "instruction": self.instruction}

    def step(self, action):
        if not self.action_space.contains(np.asarray(action, np.float32)):
            raise ValueError(f"action {action!r} is outside {self.action_space}")
        self._t += 1
        done = self._t >= self._length
        reward = float(self._t) + float(action[0])
        return self._obs(), reward, done, False, {"success": done}


class ScriptedChunks(Policy):
    """Returns chunks ``[H, 2]`` computed from the observation; counts queries.

    Action ``j`` of a chunk is ``[0.1 * j, tanh(state[0])]``, so which chunk position was
    executed can be read from the action, and rows never share state.
    """

    def __init__(self, horizon: int = 5) -> None:
        self.horizon = horizon
        self.queries = 0  # act calls
        self.batch_rows: list[int] = []  # rows asked per act_batch call

    def act(self, observation, instruction=""):
        self.queries += 1
        assert instruction  # every loop forwards the env's instruction
        j = np.arange(self.horizon, dtype=np.float32)
        first = np.tanh(observation["state"][0])
        return np.stack([0.1 * j, np.full_like(j, first)], axis=1)

    def act_batch(self, observations, instructions=""):
        self.batch_rows.append(len(observations["state"]))
        return super().act_batch(observations, instructions)


class SingleActions(Policy):
    """One action ``[2]`` per call."""

    def __init__(self) -> None:
        self.queries = 0

    def act(self, observation, instruction=""):
        self.queries += 1
        return np.array([0.5, -0.5], np.float32)


def toy_vector(n: int, mode: AutoresetMode) -> SyncVectorEnv:
    return SyncVectorEnv([CountdownEnv for _ in range(n)], autoreset_mode=mode)


def assert_same_episode(a: Episode, b: Episode) -> None:
    np.testing.assert_array_equal(a.actions, b.actions)
    np.testing.assert_array_equal(a.rewards, b.rewards)
    np.testing.assert_array_equal(a.successes, b.successes)
    assert (a.terminated, a.truncated, a.ended_by) == (b.terminated, b.truncated, b.ended_by)
    for key in a.final_observation:
        np.testing.assert_array_equal(a.final_observation[key], b.final_observation[key])


# --- ChunkedPolicy and act_batch ---


@pytest.mark.parametrize("execute, per_query", [(None, 5), (1, 1), (3, 3), (5, 5), (8, 5)])
def test_chunked_policy_executes_k_actions_per_query(execute, per_query):
    inner = ScriptedChunks(horizon=5)
    policy = ChunkedPolicy(inner, execute, action_dim=2)
    obs = {"state": np.zeros(2, np.float32)}
    actions = np.stack([policy.act(obs, "go") for _ in range(12)])
    assert inner.queries == -(-12 // per_query)
    # Chunk positions 0, 1, ..., per_query - 1, then again from 0.
    expected = 0.1 * (np.arange(12) % per_query)
    np.testing.assert_allclose(actions[:, 0], expected, atol=1e-6)


def test_single_actions_are_chunks_of_one_and_reset_clears_the_queue():
    single = SingleActions()
    policy = ChunkedPolicy(single, execute=3)
    obs = {"state": np.zeros(2, np.float32)}
    for _ in range(4):
        assert policy.act(obs).shape == (2,)
    assert single.queries == 4
    inner = ScriptedChunks(horizon=5)
    chunked = ChunkedPolicy(inner)
    chunked.act(obs, "go")
    assert chunked.queued == 4
    chunked.reset(seed=0)
    assert chunked.queued == 0
    chunked.act(obs, "go")
    assert inner.queries == 2


def test_chunked_policy_batches_keep_one_queue_per_row():
    inner = ScriptedChunks(horizon=4)
    policy = ChunkedPolicy(inner, execute=2, action_dim=2)
    obs = {"state": np.array([[0.0, 0], [1.0, 0], [2.0, 0]], np.float32)}
    first = policy.act_batch(obs, "go")
    assert first.shape == (3, 2) and inner.batch_rows == [3]
    np.testing.assert_allclose(first[:, 1], np.tanh([0.0, 1.0, 2.0]), atol=1e-6)
    second = policy.act_batch(obs, "go")  # from the queues: no query
    assert inner.batch_rows == [3]
    np.testing.assert_allclose(second[:, 0], [0.1, 0.1, 0.1], atol=1e-6)
    policy.reset_rows([1])  # row 1 starts a new episode; rows 0 and 2 ask again anyway
    third = policy.act_batch(obs, "go", active=np.array([True, True, False]))
    assert inner.batch_rows == [3, 2]  # only the active rows with empty queues are asked
    np.testing.assert_array_equal(third[2], [0.0, 0.0])
    policy.act_batch(obs, "go", active=np.array([False, False, True]))
    assert inner.batch_rows == [3, 2, 1]
    policy.reset_rows([0])
    policy.act_batch(obs, "go")
    assert inner.batch_rows == [3, 2, 1, 1]  # row 0 was cleared; rows 1 and 2 still hold one
    with pytest.raises(ValueError, match="a batch of 2 rows, but actions are queued for 3"):
        policy.act_batch({"state": obs["state"][:2]}, "go")


def test_act_batch_default_equals_per_row_act():
    space = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
    obs = {"state": np.arange(8, dtype=np.float32).reshape(4, 2)}
    for horizon in (None, 5):
        batched, single = RandomPolicy(space, horizon=horizon), RandomPolicy(space, horizon=horizon)
        batched.reset(seed=7)
        single.reset(seed=7)
        out = batched.act_batch(obs, "go")
        rows = [single.act({"state": obs["state"][i]}, "go") for i in range(4)]
        np.testing.assert_array_equal(out, np.stack(rows))
        assert out.shape == ((4, 3) if horizon is None else (4, 5, 3)) and out.dtype == np.float32
    texts = []

    class Echo(Policy):
        def act(self, observation, instruction=""):
            texts.append(instruction)
            return np.zeros(1, np.float32)

    Echo().act_batch(obs, ["a", "b", "c", "d"])
    assert texts == ["a", "b", "c", "d"]
    with pytest.raises(ValueError, match="4 rows but 2 instructions"):
        Echo().act_batch(obs, ["a", "b"])
    with pytest.raises(ValueError, match="N >= 1 rows in every entry"):
        Echo().act_batch({"a": np.zeros((2, 1)), "b": np.zeros((3, 1))})


def test_bad_policy_outputs_and_options_are_refused():
    obs = {"state": np.zeros(2, np.float32)}

    class Wrong(Policy):
        def act(self, observation, instruction=""):
            return np.zeros((5, 3), np.float32)

    with pytest.raises(ValueError, match=r"an action \[2\] or a chunk \[H, 2\].*shape \(5, 3\)"):
        ChunkedPolicy(Wrong(), action_dim=2).act(obs)
    with pytest.raises(ValueError, match=r"act_batch must return actions \[1, 2\].*\(1, 5, 3\)"):
        ChunkedPolicy(Wrong(), action_dim=2).act_batch({"state": obs["state"][None]})
    with pytest.raises(ValueError, match="execute must be a positive int or None"):
        ChunkedPolicy(SingleActions(), execute=0)
    with pytest.raises(TypeError, match="already a ChunkedPolicy"):
        ChunkedPolicy(ChunkedPolicy(SingleActions()))
    with pytest.raises(ValueError, match="horizon must be a positive int"):
        RandomPolicy(gym.spaces.Box(-1, 1, (2,)), horizon=0)


# --- run_episode ---


def test_run_episode_records_steps_and_runs_chunks():
    env = CountdownEnv()
    policy = ScriptedChunks(horizon=3)
    seen: list[Transition] = []
    resets = []
    episode = run_episode(env, policy, seed=1, execute=2, keep_observations=True,
                          on_reset=lambda o, i: resets.append(i), on_step=seen.append)
    length = episode.length
    assert 2 <= length <= 4 and resets == [{"success": False, "instruction": "count down"}]
    assert policy.queries == -(-length // 2)
    np.testing.assert_allclose(episode.actions[:, 0], 0.1 * (np.arange(length) % 2), atol=1e-6)
    np.testing.assert_allclose(episode.rewards, np.arange(1, length + 1) + episode.actions[:, 0])
    assert episode.successes.tolist() == [False] * (length - 1) + [True]
    assert episode.first_success == length and episode.success
    assert episode.terminated and not episode.truncated and episode.ended_by == "terminated"
    assert episode.instruction == "count down" and episode.seed == 1
    assert episode.observations["state"].shape == (length + 1, 2)
    assert [t.step for t in seen] == list(range(1, length + 1))
    for before, after in itertools.pairwise(seen):
        assert before.next_observation is after.observation
    assert seen[-1].next_observation is episode.final_observation


def test_run_episode_stops_on_max_steps_success_and_callback():
    env = CountdownEnv()
    assert run_episode(env, SingleActions(), seed=1, max_steps=1).ended_by == "max_steps"
    assert run_episode(env, SingleActions(), seed=1, on_step=lambda t: True).ended_by == "callback"

    class Succeeds(CountdownEnv):
        def step(self, action):
            obs, reward, *_ = super().step(action)
            return obs, reward, False, False, {"success": True}

    episode = run_episode(Succeeds(), SingleActions(), seed=0, stop_on_success=True)
    assert episode.length == 1 and episode.ended_by == "success"
    with pytest.raises(ValueError, match="max_steps must be a positive int or None, got 0"):
        run_episode(env, SingleActions(), max_steps=0)
    with pytest.raises(KeyError, match="keep_observations names"):
        run_episode(env, SingleActions(), keep_observations=["agentview_image"])
    with pytest.raises(ValueError, match="execute=2 but the policy is a ChunkedPolicy"):
        run_episode(env, ChunkedPolicy(SingleActions(), execute=3), execute=2)


def test_run_episode_on_the_imagined_env_is_seeded():
    env = gym.make(IMAGINED)
    space = env.action_space

    def run(seed):
        return run_episode(env, RandomPolicy(space, horizon=5), seed=seed, max_steps=7, execute=3,
                           keep_observations=["agentview_image"])

    a, b, c = run(0), run(0), run(1)
    assert a.length == 7 and a.actions.shape == (7, 7) and a.ended_by == "max_steps"
    assert a.observations["agentview_image"].shape == (8, 64, 64, 3)
    assert_same_episode(a, b)
    np.testing.assert_array_equal(*(e.observations["agentview_image"] for e in (a, b)))
    assert not np.array_equal(a.actions, c.actions)
    # Re-planning every 3 steps: actions 3 and 6 start new chunks drawn after 5 of the last.
    replay = RandomPolicy(space, horizon=5)
    replay.reset(seed=0)
    chunks = [replay.act({}) for _ in range(3)]
    np.testing.assert_array_equal(a.actions, np.concatenate([ch[:3] for ch in chunks])[:7])


@pytest.mark.sim
def test_run_episode_on_real_robosuite_lift_runs_chunks():
    pytest.importorskip("robosuite")
    env = gym.make(LIFT, cameras=("agentview",), image_size=64)
    try:
        policy = RandomPolicy(env.action_space, horizon=5)
        queries = []
        original = policy.act
        policy.act = lambda obs, text="": queries.append(text) or original(obs, text)
        a = run_episode(env, policy, seed=3, max_steps=7, keep_observations=["agentview_image"])
        assert len(queries) == 2 and queries[0] == a.instruction != ""
        b = run_episode(env, RandomPolicy(env.action_space, horizon=5), seed=3, max_steps=7,
                        keep_observations=["agentview_image"])
    finally:
        env.close()
    assert a.length == 7 and a.ended_by == "max_steps"
    assert_same_episode(a, b)
    np.testing.assert_array_equal(*(e.observations["agentview_image"] for e in (a, b)))
    frames = a.observations["agentview_image"]
    assert frames.shape == (8, 64, 64, 3) and not np.array_equal(frames[0], frames[-1])


# --- run_paired ---


class RecordActions(gym.Wrapper):
    """Keeps the actions an env received."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.actions: list[np.ndarray] = []
        self.reset_options = None

    def reset(self, **kwargs):
        self.reset_options = kwargs.get("options")
        return self.env.reset(**kwargs)

    def step(self, action):
        self.actions.append(np.array(action))
        return self.env.step(action)


@pytest.mark.sim
def test_run_paired_sends_every_chunk_action_to_both_envs():
    pytest.importorskip("robosuite")
    real = RecordActions(gym.make(LIFT, cameras=("agentview",), image_size=64))
    imagined = RecordActions(gym.make(IMAGINED))
    short = gym.make(IMAGINED, max_episode_steps=3)
    try:
        policy = RandomPolicy(real.action_space, horizon=5)
        records = []
        paired = run_paired(real, imagined, policy, seed=0, image_key="agentview_image",
                            max_steps=6, execute=2, keep_frames=True, on_step=records.append)
        cut = run_paired(real, short, policy, seed=0, image_key="agentview_image", max_steps=6)
    finally:
        real.close()
    assert [r.step for r in paired.steps] == list(range(1, 7)) and records == paired.steps
    np.testing.assert_array_equal(np.stack(real.actions[:6]), np.stack(imagined.actions))
    np.testing.assert_array_equal(paired.real.actions, np.stack(imagined.actions))
    start = imagined.reset_options["observation"]["agentview_image"]
    np.testing.assert_array_equal(paired.frames[0][0], start)
    np.testing.assert_array_equal(paired.frames[0][1], start)  # imagination starts from it
    assert len(paired.frames) == 7 and paired.ended_by == []
    assert all(np.isfinite(r.psnr) and 0 <= r.imagined_success_prob <= 1 for r in paired.steps)
    np.testing.assert_allclose([r.reward for r in paired.steps], paired.real.rewards)
    summary = summarize(paired)
    assert summary["steps"] == 6 and summary["real_steps_per_s"] > 0
    # The imagined env's own limit ends the episode first, and says so.
    assert len(cut.steps) == 3 and cut.ended_by == ["imagined: truncated"]


# --- run_batched ---


@pytest.mark.parametrize("mode", [AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP])
def test_run_batched_autoreset_modes_give_the_same_episodes(mode):
    reference = run_batched(toy_vector(3, AutoresetMode.NEXT_STEP), ScriptedChunks(3), episodes=7,
                            seed=10, execute=2)
    policy = ScriptedChunks(3)
    episodes = run_batched(toy_vector(3, mode), policy, episodes=7, seed=10, execute=2)
    assert len(episodes) == 7 and [e.seed for e in episodes[:3]] == [10, 11, 12]
    assert all(e.seed is None for e in episodes[3:])  # autoreset rows are not reseeded
    for a, b in zip(episodes, reference):
        assert a.row == b.row
        assert_same_episode(a, b)
    for e in episodes:
        # Success only on the last step, read from final_info in SAME_STEP mode.
        assert e.successes.tolist() == [False] * (e.length - 1) + [True] and e.terminated
        assert e.final_observation["state"][0] == e.length == e.final_observation["state"][1]
        np.testing.assert_allclose(e.actions[:, 0], 0.1 * (np.arange(e.length) % 2), atol=1e-6)
    # Every row asks once per 2 executed actions of its own episodes, never for a pending row.
    assert sum(policy.batch_rows) == sum(-(-e.length // 2) for e in episodes)


def test_run_batched_disabled_mode_and_cut_rows_equal_single_episodes():
    single = CountdownEnv()
    disabled = run_batched(toy_vector(2, AutoresetMode.DISABLED), ScriptedChunks(3), episodes=5,
                           seed=4, execute=2)
    cut = run_batched(toy_vector(3, AutoresetMode.NEXT_STEP), ScriptedChunks(3), episodes=5,
                      seed=4, execute=2, max_steps=2)
    for k in range(5):
        assert disabled[k].seed == cut[k].seed == 4 + k
        alone = run_episode(single, ScriptedChunks(3), seed=4 + k, execute=2)
        assert_same_episode(disabled[k], alone)
        alone = run_episode(single, ScriptedChunks(3), seed=4 + k, execute=2, max_steps=2)
        assert_same_episode(cut[k], alone)
    assert {e.row for e in disabled} == {0, 1} and {e.row for e in cut} == {0, 1, 2}


def test_run_batched_refuses_bad_arguments():
    envs = toy_vector(2, AutoresetMode.NEXT_STEP)
    with pytest.raises(ValueError, match="episodes must be a positive int, got 0"):
        run_batched(envs, SingleActions(), episodes=0)
    envs.metadata = {**envs.metadata, "autoreset_mode": "Sometimes"}
    with pytest.raises(ValueError, match="autoreset_mode.*'Sometimes'"):
        run_batched(envs, SingleActions(), episodes=1)


def test_run_batched_on_the_imagined_vector_env_runs_chunks_deterministically():
    def run():
        envs = kairos_gym.make_vec(num_envs=3, max_episode_steps=4)
        policy = RandomPolicy(envs.single_action_space, horizon=5)
        try:
            return run_batched(envs, policy, episodes=5, seed=0, execute=3)
        finally:
            envs.close()

    a, b = run(), run()
    assert [e.row for e in a] == [0, 1, 2, 0, 1] and [e.seed for e in a] == [0, 1, 2, None, None]
    assert all(e.length == 4 and e.truncated and e.ended_by == "truncated" for e in a)
    assert all(e.instruction == "lift the red cube" for e in a)
    for x, y in zip(a, b):
        assert_same_episode(x, y)
    assert a[0].final_observation["agentview_image"].shape == (64, 64, 3)
