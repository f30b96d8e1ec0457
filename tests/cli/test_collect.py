"""``kairos-gym collect``: a subprocess smoke test on the real robosuite Lift, resume, and
bad arguments (most of them in-process through ``kairos_gym.cli.main``, to stay fast)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import numpy as np
import pytest

from kairos_gym.cli import main
from kairos_gym.data.episodes import open_episodes
from kairos_gym.policies import Policy

LIFT = "kairos_gym/Robosuite-Lift-v0"


def _args(output: str, *extra: str) -> list[str]:
    return ["collect", "--env", LIFT, "--image-size", "32", "--max-steps", "6", "--output", output, "--no-progress", *extra]


@pytest.fixture(scope="module")
def collected(tmp_path_factory) -> str:
    """Two expert episodes written by a real ``python -m kairos_gym.cli collect`` subprocess."""
    pytest.importorskip("robosuite")
    path = str(tmp_path_factory.mktemp("collect") / "lift.hdf5")
    env = dict(os.environ, MUJOCO_GL=os.environ.get("MUJOCO_GL", "egl"))
    proc = subprocess.run(
        [sys.executable, "-m", "kairos_gym.cli", *_args(path, "--episodes", "2", "--seed", "5", "--noise", "0.05")],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "2 episodes (2 new, 0 before), 12 steps" in proc.stdout
    return path


@pytest.mark.sim
def test_collect_writes_episodes(collected):
    with open_episodes(collected) as reader:
        assert reader.layout == "kairos" and reader.episodes == ["demo_0", "demo_1"]
        spec = reader.env_spec
        assert spec.env_id == LIFT and spec.cameras == ("agentview",) and spec.image_size == (32, 32)
        assert spec.env_kwargs == {"cameras": ["agentview"], "image_size": 32, "max_episode_steps": 6}
        assert spec.control_freq == 20.0 and spec.instruction
        for i, ep in enumerate(reader):
            assert ep.seed == 5 + i and ep.num_samples == 6
            assert ep.obs("agentview_image").shape == (6, 32, 32, 3)
            assert ep.final_obs("agentview_image").shape == (32, 32, 3)
            assert ep.states.shape[0] == 6 and ep.final_state is not None
            assert ep.dones.tolist() == [False] * 5 + [True]
            assert bool(ep.attrs["truncated"]) and not bool(ep.attrs["terminated"])
            assert ep.instruction == spec.instruction
            assert abs(ep.actions).max() <= 1.0


@pytest.mark.sim
def test_collect_resumes_and_refuses_other_settings(collected, tmp_path, capsys):
    path = str(tmp_path / "resume.hdf5")
    with open(collected, "rb") as src, open(path, "wb") as dst:
        dst.write(src.read())
    assert main(_args(path, "--episodes", "3", "--seed", "5", "--noise", "0.05")) == 0
    assert "3 episodes (1 new, 2 before)" in capsys.readouterr().out
    with open_episodes(path) as reader:
        assert [ep.seed for ep in reader] == [5, 6, 7]
    # Already complete: nothing to do.
    assert main(_args(path, "--episodes", "3", "--seed", "5", "--noise", "0.05")) == 0
    assert "(0 new, 3 before)" in capsys.readouterr().out
    # A different environment (image size) is refused, and the file is untouched.
    other = ["collect", "--env", LIFT, "--image-size", "24", "--max-steps", "6", "--output", path, "--no-progress",
             "--episodes", "4", "--seed", "5", "--noise", "0.05"]
    assert main(other) == 1
    assert "written for a different environment" in capsys.readouterr().err
    assert main(_args(path, "--episodes", "4", "--seed", "5")) == 1
    assert "different settings (noise: file 0.05, now 0.0)" in capsys.readouterr().err
    with open_episodes(path) as reader:
        assert len(reader) == 3


@pytest.mark.sim
@pytest.mark.sim
def test_collect_without_cameras_writes_state_only_episodes(tmp_path):
    pytest.importorskip("robosuite")
    path = str(tmp_path / "state.hdf5")
    assert main(_args(path, "--episodes", "1", "--cameras", "none", "--object-state",
                      "--policy", "expert+miss=0.04")) == 0
    with open_episodes(path) as reader:
        assert reader.env_spec.cameras == () and reader.env_spec.image_size is None
        ep = reader[0]
        assert sorted(ep.obs_keys) == ["object_state", "state"] and ep.num_samples == 6


def test_bad_camera_and_only_success_budget(tmp_path, capsys):
    pytest.importorskip("robosuite")
    path = str(tmp_path / "x.hdf5")
    assert main(_args(path, "--episodes", "1", "--cameras", "agentview,nope")) == 2
    assert "unknown camera(s) ['nope']" in capsys.readouterr().err
    assert not os.path.exists(path)
    code = main(_args(path, "--episodes", "1", "--policy", "random", "--only-success", "--max-attempts", "1"))
    assert code == 1
    assert "only 0 successful episodes in 1 attempts" in capsys.readouterr().err
    with open_episodes(path) as reader:
        assert len(reader) == 0


@pytest.mark.sim
def test_collect_episode_runs_a_chunking_policy_and_records_replayable_states(tmp_path):
    """The collector's loop executes chunks ``[H, A]``; each step's state replays the file."""
    pytest.importorskip("robosuite")
    from kairos_gym.cli.collect import _env_kwargs, collect_episode, make_env
    from kairos_gym.data.episodes import EpisodeWriter
    from kairos_gym.data.spaces import EpisodeEnvSpec
    from kairos_gym.policies import RandomPolicy

    env = make_env(LIFT, cameras=("agentview",), image_size=32, max_steps=7)
    try:
        policy = RandomPolicy(env.action_space, horizon=5)
        chunks = []
        act = policy.act
        policy.act = lambda obs, text="": chunks.append(act(obs, text)) or chunks[-1]
        path = str(tmp_path / "chunks.hdf5")
        writer = EpisodeWriter(path, EpisodeEnvSpec.from_env(env, env_kwargs=_env_kwargs(env)))
        episode, final_state = collect_episode(env, policy, writer, seed=3)
        writer.end_episode(episode.final_observation, final_state=final_state)
        assert len(chunks) == 2 and episode.length == 7 and episode.truncated
        np.testing.assert_array_equal(episode.actions, np.concatenate(chunks)[:7])
        with open_episodes(path) as reader:
            (stored,) = list(reader)
            actions, states = stored.actions, stored.states
            assert stored.seed == 3 and stored.dones.tolist() == [False] * 6 + [True]
            np.testing.assert_array_equal(stored.final_state, final_state)
        np.testing.assert_array_equal(actions, episode.actions)
        # Replaying the actions from the same reset passes through the recorded states.
        env.reset(seed=3)
        for t in range(7):
            np.testing.assert_array_equal(env.unwrapped.get_sim_state(), states[t])
            env.step(actions[t])
        np.testing.assert_array_equal(env.unwrapped.get_sim_state(), final_state)
    finally:
        env.close()


def test_unknown_env_id(tmp_path, capsys):
    assert main(["collect", "--env", "kairos_gym/Nope-v0", "--episodes", "1", "--output", str(tmp_path / "x.hdf5")]) == 2
    err = capsys.readouterr().err
    assert "unknown environment id 'kairos_gym/Nope-v0'" in err and LIFT in err


def test_missing_output_directory_and_directory_output(tmp_path, capsys):
    assert main(["collect", "--env", LIFT, "--episodes", "1", "--output", str(tmp_path / "nope" / "x.hdf5")]) == 2
    assert f"output directory {tmp_path / 'nope'} does not exist" in capsys.readouterr().err
    assert main(["collect", "--env", LIFT, "--episodes", "1", "--output", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err


def test_foreign_output_file_is_refused(tmp_path, capsys):
    path = tmp_path / "junk.hdf5"
    path.write_bytes(b"junk" * 100)
    assert main(["collect", "--env", LIFT, "--episodes", "1", "--output", str(path)]) == 1
    assert "cannot open episode file" in capsys.readouterr().err
    with open(path, "rb") as f:
        assert f.read(4) == b"junk"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--episodes", "0"], "argument --episodes: expected a positive integer, got 0"),
        (["--episodes", "2", "--max-steps", "-3"], "argument --max-steps: expected a positive integer, got -3"),
        (["--episodes", "2", "--image-size", "abc"], "argument --image-size: expected a positive integer, got 'abc'"),
        (["--episodes", "2", "--noise", "-0.1"], "argument --noise: expected a finite number >= 0, got -0.1"),
        (["--episodes", "2", "--cameras", "agentview,"], "argument --cameras: expected comma-separated camera names"),
        (["--episodes", "2", "--policy", "smart"], "argument --policy: unknown policy 'smart'"),
        (["--episodes", "2", "--policy", "expert+noise=-1"], "bad modifier 'noise=-1'"),
    ],
)
def test_bad_arguments_exit_2(tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit) as exc:
        main(["collect", "--env", LIFT, "--output", str(tmp_path / "x.hdf5"), *argv])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_bad_argument_subprocess_exit_code(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "kairos_gym.cli", "collect", "--env", LIFT, "--episodes", "-1", "--output", str(tmp_path / "x.hdf5")],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "expected a positive integer, got -1" in proc.stderr


class _ReadsTheImage(Policy):
    """An observation-only policy whose actions follow the image it sees (so dreamed and real
    actions differ): the arm moves by the frame's mean brightness, the gripper closes."""

    def act(self, observation: dict[str, np.ndarray], instruction: str = "") -> np.ndarray:
        level = float(observation["agentview_image"].mean()) / 255.0
        return np.array([level - 0.5, 0.5 - level, 2 * level - 1, 0, 0, 0, 1], np.float32)


@pytest.fixture(scope="module")
def dream_checkpoint(tmp_path_factory) -> str:
    """A tiny random-weight imagined Lift at 32 px, episode limit 6 (the real env's here)."""
    from tests.imagined_helpers import lift_spec, write_checkpoint

    return str(write_checkpoint(tmp_path_factory.mktemp("dream") / "ckpt",
                                lift_spec(image_size=32, max_episode_steps=6)))


@pytest.mark.sim
def test_dream_then_replay_records_the_actions_chosen_in_imagination(tmp_path, dream_checkpoint):
    """The file holds the real simulator replaying the policy's imagined choices: the same
    actions as its closed loop in imagination, not those it takes in the real simulator."""
    pytest.importorskip("robosuite")
    from kairos_gym.cli.collect import _env_kwargs, dream_then_replay, make_env, open_dream_env
    from kairos_gym.data.episodes import EpisodeWriter
    from kairos_gym.data.spaces import EpisodeEnvSpec
    from kairos_gym.rollout import run_episode

    env = make_env(LIFT, cameras=("agentview",), image_size=32, max_steps=6)
    imagined = open_dream_env(dream_checkpoint, env)
    try:
        policy = _ReadsTheImage()
        path = str(tmp_path / "dream.hdf5")
        writer = EpisodeWriter(path, EpisodeEnvSpec.from_env(env, env_kwargs=_env_kwargs(env)))
        episode, final_state, dream = dream_then_replay(env, imagined, policy, writer, seed=4)
        writer.end_episode(episode.final_observation, final_state=final_state)
        start, _ = env.reset(seed=4)
        again = run_episode(imagined, policy, seed=4, options={"observation": start})
        closed_real = run_episode(env, policy, seed=4)
        np.testing.assert_array_equal(dream.actions, again.actions)
        np.testing.assert_array_equal(episode.actions, dream.actions)
        assert not np.allclose(closed_real.actions, dream.actions)
        with open_episodes(path) as reader:
            (stored,) = list(reader)
            np.testing.assert_array_equal(stored.actions, dream.actions)
            assert stored.seed == 4 and stored.dones.tolist() == [False] * 5 + [True]
            # The recorded states are the real simulator's under those actions.
            env.reset(seed=4)
            for t in range(6):
                np.testing.assert_array_equal(env.unwrapped.get_sim_state(), stored.states[t])
                env.step(stored.actions[t])
    finally:
        imagined.close()
        env.close()


@pytest.mark.sim
def test_collect_dream_cli_reports_both_rates_and_keeps_files_apart(tmp_path, dream_checkpoint, capsys):
    pytest.importorskip("robosuite")
    dreamed = str(tmp_path / "dreamed.hdf5")
    plain = str(tmp_path / "plain.hdf5")
    assert main(_args(dreamed, "--episodes", "1", "--policy", "random", "--dream", dream_checkpoint)) == 0
    out = capsys.readouterr().out
    assert "1 episodes (1 new, 0 before), 6 steps" in out
    # (the random-weight model's imagined outcome is arbitrary; a random arm really fails)
    assert re.search(r"imagined success of the new episodes [\d.]+% \([01]/1\); "
                     r"replayed in the real simulator 0\.0% \(0/1\)", out), out
    # A dreamed file takes no plain episodes, and a plain one no dreamed episodes.
    assert main(_args(dreamed, "--episodes", "2", "--policy", "random")) == 1
    assert "collected with different settings (dream:" in capsys.readouterr().err
    assert main(_args(plain, "--episodes", "1", "--policy", "random")) == 0
    assert main(_args(plain, "--episodes", "2", "--policy", "random", "--dream", dream_checkpoint)) == 1
    assert "collected with different settings (dream: file None" in capsys.readouterr().err
    with open_episodes(dreamed) as reader, open_episodes(plain) as other:
        assert len(reader) == 1 and len(other) == 1


@pytest.mark.sim
def test_collect_dream_refuses_what_cannot_dream(tmp_path, dream_checkpoint, capsys):
    pytest.importorskip("robosuite")
    path = str(tmp_path / "x.hdf5")
    # The checkpoint starts from 32 px frames; a 16 px real env cannot feed it.
    argv = ["collect", "--env", LIFT, "--image-size", "16", "--max-steps", "6", "--output", path,
            "--episodes", "1", "--policy", "random", "--dream", dream_checkpoint, "--no-progress"]
    assert main(argv) == 2
    assert "starts from observation 'agentview_image' (32, 32, 3); the real env gives shape (16, 16, 3)" \
        in capsys.readouterr().err
    assert main(_args(path, "--episodes", "1", "--dream", dream_checkpoint)) == 2
    assert "--dream needs an observation-only policy" in capsys.readouterr().err
    assert main(_args(path, "--episodes", "1", "--dream", str(tmp_path / "nope"))) == 2
    assert main(_args(path, "--episodes", "1", "--dream-sample-steps", "2")) == 2
    assert "--dream-sample-steps only applies with --dream" in capsys.readouterr().err
    assert not os.path.exists(path)
