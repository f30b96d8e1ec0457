"""Tests of the robosuite environments (Panda, OSC_POSE, LIBERO-style spaces)."""

from __future__ import annotations

import gc
import warnings

import numpy as np
import pytest

pytest.importorskip("robosuite")

import gymnasium as gym
from gymnasium.utils.env_checker import check_env

import kairos_gym  # noqa: F401  (registers the ids)
from kairos_gym.envs.robosuite_env import TASKS, RobosuiteEnv, quat_to_axis_angle
from kairos_gym.errors import InvalidAction, ResetNeeded

pytestmark = pytest.mark.sim

SIZE = 32


@pytest.fixture(scope="module")
def lift():
    env = RobosuiteEnv("Lift", cameras=("agentview",), image_size=SIZE, render_mode="rgb_array")
    yield env
    env.close()


@pytest.mark.parametrize("task", sorted(TASKS))
def test_check_env_passes(task):
    env = gym.make(f"kairos_gym/Robosuite-{task}-v0", cameras=("agentview",), image_size=SIZE)
    with warnings.catch_warnings():
        # The proprioceptive state is unbounded on purpose (positions, angles).
        warnings.simplefilter("ignore", UserWarning)
        check_env(env.unwrapped)
    env.close()


def test_spaces_and_observation(lift):
    obs, info = lift.reset(seed=0)
    assert set(obs) == {"agentview_image", "state"}
    image = obs["agentview_image"]
    assert image.shape == (SIZE, SIZE, 3) and image.dtype == np.uint8
    assert obs["state"].shape == (8,) and obs["state"].dtype == np.float32
    assert lift.observation_space.contains(obs)
    assert lift.action_space.shape == (7,) and lift.action_space.dtype == np.float32
    assert np.all(lift.action_space.low == -1) and np.all(lift.action_space.high == 1)
    assert info == {"success": False, "instruction": "lift the red cube"}
    assert lift.instruction == "lift the red cube" and lift.control_freq == 20.0
    assert lift.metadata == {"render_modes": ["rgb_array"], "render_fps": 20.0}
    # state = eef position (3) + axis-angle of the eef quaternion (3) + finger positions (2)
    priv = lift.privileged()
    raw = lift.robosuite_env._get_observations()
    np.testing.assert_allclose(obs["state"][:3], raw["robot0_eef_pos"], atol=1e-6)
    axis_angle = quat_to_axis_angle(raw["robot0_eef_quat"])
    np.testing.assert_allclose(obs["state"][3:6], axis_angle, atol=1e-6)
    np.testing.assert_allclose(obs["state"][6:], priv["gripper_qpos"], atol=1e-6)
    assert set(priv) >= {"eef_pos", "eef_quat", "eef_mat", "gripper_qpos", "cube_pos", "cube_quat"}


def test_quat_to_axis_angle_matches_rotation():
    angle, axis = 0.7, np.array([0.0, 0.6, 0.8])
    quat = np.array([*(np.sin(angle / 2) * axis), np.cos(angle / 2)])
    np.testing.assert_allclose(quat_to_axis_angle(quat), angle * axis, atol=1e-12)
    np.testing.assert_array_equal(quat_to_axis_angle(np.array([0.0, 0.0, 0.0, 1.0])), np.zeros(3))


def test_seeded_reset_is_reproducible_and_seeds_differ(lift):
    actions = np.random.default_rng(0).uniform(-1, 1, (5, 7)).astype(np.float32)

    def rollout(seed):
        obs, _ = lift.reset(seed=seed)
        first = (obs, lift.get_sim_state())
        for a in actions:
            obs = lift.step(a)[0]
        return first, (obs, lift.get_sim_state())

    (o1, s1), (o1b, s1b) = rollout(5)
    (o2, s2), _ = rollout(6)
    (o3, s3), (o3b, s3b) = rollout(5)
    np.testing.assert_array_equal(s1, s3)
    np.testing.assert_array_equal(s1b, s3b)
    for key in o1:
        np.testing.assert_array_equal(o1[key], o3[key])
        np.testing.assert_array_equal(o1b[key], o3b[key])
    assert not np.array_equal(s1, s2)
    assert not np.array_equal(o1["agentview_image"], o2["agentview_image"])


def test_reset_neither_reads_nor_moves_numpy_global_rng(lift):
    np.random.seed(123)
    lift.reset(seed=1)
    first = lift.get_sim_state()
    after = np.random.random()
    np.random.seed(123)
    np.random.random(10)  # a different global stream must not change the placement
    lift.reset(seed=1)
    np.testing.assert_array_equal(first, lift.get_sim_state())
    np.random.seed(123)
    assert np.random.random() == after


def test_images_are_robosuite_frames_flipped_upright(lift):
    import robosuite

    obs, _ = lift.reset(seed=2)
    # An independent robosuite env renders the same state through its own camera observable.
    np.random.seed(0)  # the Lift cube's size is drawn at construction, as in RobosuiteEnv
    raw_env = robosuite.make(
        "Lift",
        robots="Panda",
        controller_configs=robosuite.load_controller_config(default_controller="OSC_POSE"),
        has_renderer=False,
        has_offscreen_renderer=True,
        use_camera_obs=True,
        camera_names="agentview",
        camera_heights=SIZE,
        camera_widths=SIZE,
        hard_reset=False,
    )
    try:
        raw_env.reset()
        raw_env.sim.set_state_from_flattened(lift.get_sim_state())
        raw_env.sim.forward()
        raw = raw_env._get_observations(force_update=True)["agentview_image"]
    finally:
        raw_env.close()
    assert not np.array_equal(obs["agentview_image"], raw)  # robosuite's frame is upside down
    np.testing.assert_array_equal(obs["agentview_image"], raw[::-1])


def test_render_returns_first_camera(lift):
    obs, _ = lift.reset(seed=0)
    np.testing.assert_array_equal(lift.render(), obs["agentview_image"])


def test_no_camera_env_has_state_only_and_renders_default_camera():
    env = RobosuiteEnv("Lift", cameras=(), image_size=(24, 40), render_mode="rgb_array")
    try:
        obs, _ = env.reset(seed=0)
        assert set(obs) == {"state"}
        frame = env.render()
        assert frame.shape == (24, 40, 3) and frame.dtype == np.uint8 and frame.std() > 0
    finally:
        env.close()
        env.close()  # closing twice is safe
    with pytest.raises(ResetNeeded, match="closed"):
        env.reset(seed=0)


@pytest.mark.parametrize(
    ("action", "match"),
    [
        (np.zeros(6, np.float32), r"shape \(7,\).*got shape \(6,\)"),
        (np.zeros((1, 7), np.float32), r"shape \(7,\).*got shape \(1, 7\)"),
        (np.array([0, 0, 0, 0, 0, 0, np.nan], np.float32), "NaN or inf"),
        (np.array([0, 0, np.inf, 0, 0, 0, 0], np.float32), "NaN or inf"),
        (np.array([0, 0, 1.5, 0, 0, 0, 0], np.float32), r"\[-1, 1\].*1\.5"),
        (np.array(["a"] * 7), "real-valued.*dtype <U1"),
    ],
)
def test_bad_action_raises_and_leaves_sim_untouched(lift, action, match):
    lift.reset(seed=0)
    lift.step(np.zeros(7, np.float32))
    before = lift.get_sim_state()
    with pytest.raises(InvalidAction, match=match):
        lift.step(action)
    np.testing.assert_array_equal(before, lift.get_sim_state())
    lift.step(np.zeros(7, np.float64))  # a float64 action in bounds is fine


def test_step_before_reset_and_after_the_end_raise():
    env = RobosuiteEnv("Lift", cameras=(), max_episode_steps=2)
    try:
        with pytest.raises(ResetNeeded, match="reset"):
            env.step(np.zeros(7, np.float32))
        env.reset(seed=0)
        assert env.step(np.zeros(7, np.float32))[3] is False
        _, _, terminated, truncated, info = env.step(np.zeros(7, np.float32))
        assert (terminated, truncated) == (False, True) and info["success"] is False
        with pytest.raises(ResetNeeded, match="episode has ended"):
            env.step(np.zeros(7, np.float32))
    finally:
        env.close()


def test_constructor_rejects_bad_arguments():
    with pytest.raises(ValueError, match="unknown robosuite task 'Pour'"):
        RobosuiteEnv("Pour")
    with pytest.raises(TypeError, match="tuple of camera names.*'agentview'"):
        RobosuiteEnv("Lift", cameras="agentview")
    with pytest.raises(ValueError, match="render_mode.*'human'"):
        RobosuiteEnv("Lift", cameras=(), render_mode="human")
    with pytest.raises(ValueError, match="image_size.*-3"):
        RobosuiteEnv("Lift", image_size=-3)
    with pytest.raises(ValueError, match=r"unknown camera\(s\) \['wristcam'\].*agentview"):
        RobosuiteEnv("Lift", cameras=("wristcam",))


def test_task_defaults_and_instructions():
    assert {t: s.instruction for t, s in TASKS.items()} == {
        "Lift": "lift the red cube",
        "Stack": "stack the red cube on the green cube",
        "PickPlaceCan": "pick the can and place it in its bin",
        "Door": "open the door",
    }
    assert RobosuiteEnv("Door", cameras=()).max_episode_steps == 300
    env = gym.make("kairos_gym/Robosuite-Door-v0", cameras=())
    try:
        # gym.make's TimeLimit (the registered limit) truncates; the env keeps none of its own.
        assert env.spec.max_episode_steps == 300 and env.unwrapped.max_episode_steps is None
        env.reset(seed=0)
        priv = env.unwrapped.privileged()
        assert {"handle_pos", "hinge_qpos", "latch_axis", "hinge_anchor"} <= set(priv)
        np.testing.assert_allclose(np.linalg.norm(priv["latch_axis"]), 1.0, atol=1e-6)
    finally:
        env.close()


def test_bench_sim_speed_runs_and_skips_unknown_cameras():
    from kairos_gym.eval.bench_sim_speed import time_steps

    ok = time_steps("kairos_gym/Robosuite-Lift-v0", (), 32, steps=2, warmup=1, seed=0)
    assert ok.skipped == "" and ok.steps == 2 and ok.steps_per_s > 0
    bad = time_steps("kairos_gym/Robosuite-Lift-v0", ("nocam",), 32, steps=2, warmup=1, seed=0)
    assert "unknown camera" in bad.skipped and np.isnan(bad.steps_per_s)


def _lift_64() -> RobosuiteEnv:
    return RobosuiteEnv("Lift", cameras=("agentview",), image_size=64, render_mode="rgb_array")


def _seeded_frames(env: RobosuiteEnv) -> np.ndarray:
    """``[4, 64, 64, 3]`` frames of one seeded reset and three fixed actions."""
    actions = np.linspace(-0.6, 0.6, 21, dtype=np.float32).reshape(3, 7)
    frames = [env.reset(seed=4)[0]["agentview_image"]]
    frames += [env.step(a)[0]["agentview_image"] for a in actions]
    return np.stack(frames)


def test_creating_or_closing_other_envs_never_changes_an_envs_images():
    # Each robosuite env owns a GL context; robosuite renders into, and frees GL objects in,
    # whichever context is current. The images of `env` must not depend on what other envs
    # in the process do (check_env, for one, builds and closes envs of its own). Same
    # context, same sim state, same draw calls: the frames must match bit for bit, as
    # seeded resets already do.
    env, twin = _lift_64(), _lift_64()
    try:
        reference = _seeded_frames(env)
        assert reference.std() > 10  # a real scene, not a blank buffer
        np.testing.assert_array_equal(_seeded_frames(twin), reference)
        twin.close()
        np.testing.assert_array_equal(_seeded_frames(env), reference)

        third = _lift_64()
        third.reset(seed=0)
        third.close()
        np.testing.assert_array_equal(_seeded_frames(env), reference)

        # Never closed: robosuite frees it during garbage collection, in whichever context
        # is current then.
        dropped = _lift_64()
        dropped.reset(seed=0)
        del dropped
        gc.collect()
        np.testing.assert_array_equal(_seeded_frames(env), reference)

        # A bare robosuite env, closed by robosuite alone, frees its GL objects in whichever
        # context is current: never `env`'s between two of its renders.
        import robosuite

        bare = robosuite.make(
            "Lift", robots="Panda", has_renderer=False, use_camera_obs=False, hard_reset=False
        )
        np.testing.assert_array_equal(_seeded_frames(env), reference)
        bare.close()
        np.testing.assert_array_equal(_seeded_frames(env), reference)
    finally:
        env.close()
        twin.close()


def test_an_env_dropped_unclosed_leaves_other_renderers_intact():
    import mujoco

    # mujoco.Renderer (ALOHA's renderer) keeps its own GL context current between renders.
    model = mujoco.MjModel.from_xml_string(
        '<mujoco><worldbody><light pos="0 0 3"/><geom type="plane" size="1 1 .1"/>'
        '<geom type="box" size=".1 .1 .1" pos="0 0 .1" rgba="1 0 0 1"/></worldbody></mujoco>'
    )
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    with mujoco.Renderer(model, 32, 32) as renderer:
        renderer.update_scene(data)
        before = renderer.render().copy()
        env = RobosuiteEnv("Lift", cameras=("agentview",), image_size=SIZE)
        env.reset(seed=0)
        renderer.update_scene(data)
        np.testing.assert_array_equal(renderer.render(), before)
        del env
        gc.collect()
        renderer.update_scene(data)
        np.testing.assert_array_equal(renderer.render(), before)
    assert before.std() > 10


def test_a_closed_env_raises_reset_needed_everywhere():
    env = RobosuiteEnv("Lift", cameras=("agentview",), image_size=SIZE, render_mode="rgb_array")
    env.reset(seed=0)
    env.close()
    env.close()  # closing twice is safe
    calls = {
        "reset": lambda: env.reset(seed=0),
        "step": lambda: env.step(np.zeros(7, np.float32)),
        "render": env.render,
        "get_sim_state": env.get_sim_state,
        "privileged": env.privileged,
        "robosuite_env": lambda: env.robosuite_env,
    }
    for name, call in calls.items():
        with pytest.raises(
            ResetNeeded,
            match=r"^the Robosuite-Lift environment is closed; reset\(\) cannot reopen it, "
            "make a new environment$",
        ):
            call()
            pytest.fail(f"{name}() on a closed env did not raise")
    state_only = RobosuiteEnv("Lift", cameras=())
    state_only.close()
    with pytest.raises(ResetNeeded, match="closed"):
        state_only.render()  # even without a render mode


@pytest.mark.parametrize("limit", [3, 6])
def test_max_episode_steps_means_the_same_via_gym_make_and_directly(limit, monkeypatch):
    # The registered default is lowered to 4 so a limit above it stays a short test.
    monkeypatch.setattr(gym.registry["kairos_gym/Robosuite-Lift-v0"], "max_episode_steps", 4)
    made = gym.make("kairos_gym/Robosuite-Lift-v0", cameras=(), max_episode_steps=limit)
    direct = RobosuiteEnv("Lift", cameras=(), max_episode_steps=limit)
    default = gym.make("kairos_gym/Robosuite-Lift-v0", cameras=())
    try:
        lengths = []
        for env in (made, direct, default):
            env.reset(seed=0)
            for n in range(1, 20):
                _, _, terminated, truncated, _ = env.step(np.zeros(7, np.float32))
                if terminated or truncated:
                    break
            lengths.append(n)
        assert lengths == [limit, limit, 4]
    finally:
        for env in (made, direct, default):
            env.close()


def test_object_obs_adds_the_task_objects_state_and_recorded_states_restore_it():
    env = RobosuiteEnv("Lift", cameras=(), object_obs=True)
    try:
        assert env.observation_space["object_state"].shape == (3,)
        obs, _ = env.reset(seed=4)
        np.testing.assert_allclose(obs["object_state"], env.privileged()["cube_pos"], atol=1e-6)
        recorded = env.get_sim_state()
        for _ in range(5):
            moved, *_ = env.step(np.array([0, 0, -1, 0, 0, 0, 1], np.float32))
        assert not np.allclose(moved["state"], obs["state"])
        back = env.observe_sim_state(recorded)
        for key in obs:
            np.testing.assert_allclose(back[key], obs[key], atol=1e-6, err_msg=key)
        with pytest.raises(ValueError, match="finite values"):
            env.observe_sim_state(recorded[:-1])
        bad = recorded.copy()
        bad[3] = np.nan
        with pytest.raises(ValueError, match="NaN"):
            env.observe_sim_state(bad)
    finally:
        env.close()
    plain = RobosuiteEnv("Lift", cameras=())
    try:  # both optional keys are off by default
        assert "object_state" not in plain.observation_space.spaces
        assert "joints" not in plain.observation_space.spaces
    finally:
        plain.close()


def test_joint_obs_adds_the_arms_joint_angles_and_velocities():
    env = RobosuiteEnv("Door", cameras=(), joint_obs=True, object_obs=True)
    try:
        assert env.observation_space["joints"].shape == (14,)
        obs, _ = env.reset(seed=2)
        assert env.observation_space.contains(obs)
        recorded = env.get_sim_state()
        # The recorded state's robot joints come first: [time, qpos (7 arm, ...), qvel (...)].
        np.testing.assert_allclose(obs["joints"][:7], recorded[1:8], atol=1e-6)
        np.testing.assert_array_equal(obs["joints"][7:], 0.0)  # at rest after a reset
        for _ in range(3):
            moved, *_ = env.step(np.array([1, 0, 0, 0, 0, 0, -1], np.float32))
        # Moving the end effector turns the joints and they have a speed.
        assert np.abs(moved["joints"][:7] - obs["joints"][:7]).max() > 0.01
        assert np.abs(moved["joints"][7:]).max() > 0.05
        nq = env.robosuite_env.sim.model.nq
        state = env.get_sim_state()
        np.testing.assert_allclose(moved["joints"][7:], state[1 + nq:1 + nq + 7], atol=1e-6)
        back = env.observe_sim_state(recorded)
        np.testing.assert_allclose(back["joints"], obs["joints"], atol=1e-6)
    finally:
        env.close()
