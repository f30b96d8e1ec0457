"""A benchmark's jobs in imagination: RoboTwin's kept TransferCube seeds run in a (tiny,
random-weight) bimanual world model started from the real reset of each seed, closed-loop
for a policy that reads observations and paired for the scripted expert; the checkpoint
checked against the task; ``kairos-gym bench robotwin --checkpoint`` end to end.

The scripted expert solves TransferCube seed 100000 in 261 steps and 100001 in 264."""

from __future__ import annotations

import json

import numpy as np
import pytest

from kairos_gym.benchmarks.imagined import (
    PAIRED_EPISODE,
    checkpoint_env_id,
    imagined_factory,
    paired_episode,
)
from kairos_gym.benchmarks.robotwin import robotwin_jobs
from kairos_gym.benchmarks.runner import EpisodeJob, run_benchmark
from kairos_gym.cli import main
from kairos_gym.errors import CheckpointError
from kairos_gym.policies.registry import is_privileged
from tests.robotwin.conftest import ALOHA_ID, bimanual_checkpoint  # noqa: F401  (fixture)

pytest.importorskip("gym_aloha")

LIMIT = 270


def imagined_jobs(checkpoint, out, episodes: int, **options):
    """RoboTwin's TransferCube jobs with a ``LIMIT``-step limit, in imagination."""
    return robotwin_jobs(["TransferCube"], episodes=episodes, out=out, max_steps=LIMIT,
                         progress=False, checkpoint=checkpoint, **options)


def test_privileged_policies_are_the_scripted_experts():
    assert is_privileged("expert") and is_privileged("expert+noise=0.3")
    assert not any(is_privileged(s) for s in ("zero", "random", "bc:runs/x", ""))


def test_the_factory_checks_the_checkpoint_against_the_task(bimanual_checkpoint, tmp_path):  # noqa: F811
    assert checkpoint_env_id(bimanual_checkpoint) == ALOHA_ID
    factory = imagined_factory(bimanual_checkpoint, ALOHA_ID, max_episode_steps=LIMIT)
    assert factory.target == "kairos_gym/Imagined-v0"
    assert factory.kwargs == {
        "checkpoint": str(bimanual_checkpoint.resolve()),
        "real_resets": True,
        "max_episode_steps": LIMIT,
    }
    with pytest.raises(ValueError, match="imitates 'kairos_gym/Aloha-TransferCube-v0', not"):
        imagined_factory(bimanual_checkpoint, "kairos_gym/Aloha-Insertion-v0", max_episode_steps=9)
    with pytest.raises(CheckpointError):
        checkpoint_env_id(tmp_path)


@pytest.mark.sim
def test_kept_seeds_run_closed_loop_in_imagination_from_their_real_resets(
    bimanual_checkpoint,  # noqa: F811
    tmp_path,
):
    jobs = imagined_jobs(bimanual_checkpoint, tmp_path, 2)
    assert [(j.seed, j.episode, j.env.target) for j in jobs] == [
        (100000, None, "kairos_gym/Imagined-v0"),
        (100001, None, "kairos_gym/Imagined-v0"),
    ]
    env = jobs[0].env.make()
    try:
        real = env.unwrapped.real_env
        for seed in (100000, 100001):
            want, _ = real.reset(seed=seed)
            got, _ = env.reset(seed=seed)
            np.testing.assert_array_equal(got["top_image"], want["top_image"])
            np.testing.assert_array_equal(got["state"], want["state"])
    finally:
        env.close()
    run = run_benchmark(jobs, "zero", str(tmp_path / "results.jsonl"), progress=False)
    assert [r.seed for r in run.records] == [100000, 100001]
    for record in run.records:
        assert record.env["target"] == "kairos_gym/Imagined-v0"
        assert 1 <= record.length <= LIMIT
    again = run_benchmark(jobs, "zero", str(tmp_path / "again.jsonl"), progress=False)
    assert [(r.success, r.length) for r in again.records] == [
        (r.success, r.length) for r in run.records
    ]  # seeded: the same episodes


@pytest.mark.sim
def test_the_expert_runs_paired_its_real_actions_replayed_in_imagination(
    bimanual_checkpoint,  # noqa: F811
    tmp_path,
):
    jobs = imagined_jobs(bimanual_checkpoint, tmp_path, 1, paired=True)
    assert [(j.seed, j.episode) for j in jobs] == [(100000, PAIRED_EPISODE)]
    # An imagined world that never succeeds: the episode runs to the job's limit (not the
    # checkpoint's 80 steps), long enough for the real expert to succeed on the way.
    factory = imagined_factory(bimanual_checkpoint, ALOHA_ID, max_episode_steps=LIMIT)
    env = type(factory)(
        factory.target, {**factory.kwargs, "success_threshold": 1.0, "done_threshold": 1.0}
    ).make()
    try:
        outcome = paired_episode(env, "expert", jobs[0])
    finally:
        env.close()
    assert (outcome.success, outcome.first_success) == (False, None)
    assert outcome.real_success and outcome.length == LIMIT
    assert outcome.ended_by in ("imagined truncated", "max_steps")
    assert outcome.env_seconds > 0

    run = run_benchmark(jobs, "expert", str(tmp_path / "results.jsonl"), progress=False)
    (record,) = run.records
    assert record.policy == "expert" and record.env["target"] == "kairos_gym/Imagined-v0"
    assert 1 <= record.length <= LIMIT

    with pytest.raises(ValueError, match="needs a checkpoint and no plugin"):
        robotwin_jobs(["TransferCube"], episodes=1, out=tmp_path, paired=True, progress=False)


def test_paired_episode_needs_real_resets(bimanual_checkpoint):  # noqa: F811
    from tests.robotwin.conftest import make_imagined

    env = make_imagined(bimanual_checkpoint)
    job = EpisodeJob("x", imagined_factory(bimanual_checkpoint, ALOHA_ID, max_episode_steps=5))
    with pytest.raises(ValueError, match="real_resets=True"):
        paired_episode(env, "expert", job)


@pytest.mark.sim
def test_bench_robotwin_checkpoint_records_the_imagined_run(bimanual_checkpoint, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "imagined"
    args = ["bench", "robotwin", "--task", "TransferCube", "--max-steps", str(LIMIT),
            "--episodes", "1", "--policy", "zero", "--out", str(out), "--no-progress",
            "--checkpoint", str(bimanual_checkpoint)]
    assert main(args) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["settings"]["checkpoint"] == str(bimanual_checkpoint.resolve())
    assert report["settings"]["cameras"] is None
    (record,) = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert record["env"]["kwargs"]["real_resets"] is True
    # Resuming with another world (the real simulator) is refused, not mixed in.
    capsys.readouterr()
    assert main(args[:-2]) == 2
    assert "checkpoint: earlier" in capsys.readouterr().err
    assert main([*args, "--cameras", "top", "--fresh"]) == 2
    assert "--cameras does not apply with --checkpoint" in capsys.readouterr().err
    assert main([*args[:-1], str(out)]) == 2  # not a checkpoint
    assert "no config.json in checkpoint directory" in capsys.readouterr().err


@pytest.mark.sim
def test_a_plugin_folder_runs_in_imagination_through_robotwins_loop(
    bimanual_checkpoint,  # noqa: F811
    tmp_path,
):
    from kairos_gym.benchmarks.robotwin import PLUGIN_EPISODE
    from tests.robotwin.plugins import write_expert_replay_plugin

    folder = write_expert_replay_plugin(tmp_path / "policy", pad=20)
    jobs = imagined_jobs(bimanual_checkpoint, tmp_path, 1, plugin=True)
    assert [(j.episode, j.env.target) for j in jobs] == [(PLUGIN_EPISODE, "kairos_gym/Imagined-v0")]
    spec = f"robotwin:{folder}"
    (record,) = run_benchmark(jobs, spec, str(tmp_path / "results.jsonl"), progress=False).records
    assert record.policy == spec and record.env["kwargs"]["real_resets"] is True
    assert 1 <= record.length <= LIMIT


@pytest.mark.sim
def test_object_obs_gives_the_real_env_the_objects_state(tmp_path, capsys):
    out = tmp_path / "real"
    args = ["bench", "robotwin", "--task", "TransferCube", "--max-steps", str(LIMIT),
            "--episodes", "1", "--policy", "zero", "--out", str(out), "--no-progress",
            "--object-obs"]
    assert main(args) == 0
    (record,) = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert record["env"]["kwargs"] == {"cameras": [], "image_size": 64, "object_obs": True}
    assert json.loads((out / "run.json").read_text())["settings"]["object_obs"] is True
    capsys.readouterr()
    assert main(args[:-1]) == 2  # resuming without it would mix two observation spaces
    assert "object_obs: earlier True" in capsys.readouterr().err
