"""Real-vs-imagined figures (summarize, aggregate) and the benchmark: both policies, JSON,
errors. The paired loop itself is tested in ``tests/test_rollout.py``."""

from __future__ import annotations

import json

import pytest

from kairos_gym.eval.real_vs_imagined import aggregate, main
from kairos_gym.evaluation.real_vs_imagined import summarize
from kairos_gym.rollout import PairedEpisode, PairedStep
from tests.imagined_helpers import lift_spec, write_checkpoint


def _episode(first_real, first_imagined, psnr=20.0):
    return {"psnr_mean": psnr, "baseline_psnr_mean": 15.0, "success_agreement": 0.5, "return": 2.0,
            "imagined_return": 3.0, "reward_mae": 0.1, "first_success_real": first_real,
            "first_success_imagined": first_imagined}


def test_summarize_one_paired_episode():
    def step(t, psnr, success, imagined_success, reward=0.0):
        return PairedStep(step=t, psnr=psnr, baseline_psnr=10.0, reward=reward, imagined_reward=0.5,
                          success=success, imagined_success=imagined_success,
                          imagined_success_prob=float(imagined_success))

    episode = PairedEpisode(seed=3, steps=[step(1, 20.0, False, False), step(2, 30.0, False, True),
                                           step(3, 40.0, True, True, reward=1.0)],
                            real_seconds=0.5, imagined_seconds=0.0, ended_by=["real: terminated"])
    s = summarize(episode)
    assert s["seed"] == 3 and s["steps"] == 3
    assert s["psnr_mean"] == s["psnr_first_10"] == s["psnr_last_10"] == 30.0
    assert s["success_agreement"] == pytest.approx(2 / 3)
    assert s["first_success_real"] == 3 and s["first_success_imagined"] == 2
    assert s["return"] == 1.0 and s["imagined_return"] == 1.5
    assert s["reward_mae"] == pytest.approx(0.5)
    assert s["real_steps_per_s"] == 6.0 and s["imagined_steps_per_s"] is None
    assert s["ended_by"] == ["real: terminated"]
    with pytest.raises(ValueError, match="seed 4 has no steps"):
        summarize(PairedEpisode(seed=4))
    with pytest.raises(ValueError, match="at least one episode"):
        aggregate([])


def test_aggregate_counts_success_agreement_and_first_success_error():
    s = aggregate([_episode(10, 12), _episode(None, 5), _episode(None, None, psnr=10.0)])
    assert s["episodes"] == 3 and s["psnr"] == pytest.approx(50 / 3)
    assert s["success_episode_agreement"] == pytest.approx(2 / 3)
    assert s["real_success_rate"] == pytest.approx(1 / 3) and s["imagined_success_rate"] == pytest.approx(2 / 3)
    assert s["first_success_step_error"] == 2.0
    assert aggregate([_episode(None, None)])["first_success_step_error"] is None


@pytest.mark.sim
def test_runs_both_policies_against_real_robosuite(tmp_path, capsys):
    pytest.importorskip("robosuite")
    ckpt = write_checkpoint(tmp_path / "ckpt", lift_spec(image_size=16, max_episode_steps=40))
    out = tmp_path / "r.json"
    assert main(["--checkpoint", str(ckpt), "--episodes", "2", "--steps", "3", "--threads", "1",
                 "--output", str(out)]) == 0
    report = json.loads(out.read_text())
    assert set(report["policies"]) == {"expert", "random"}
    for result in report["policies"].values():
        assert result["summary"]["episodes"] == 2
        assert [e["seed"] for e in result["episodes"]] == [100, 101]
        assert all(1 <= e["steps"] <= 3 for e in result["episodes"])  # random weights may end early
    assert "real_vs_imagined" in report["command"]
    assert "expert" in capsys.readouterr().out


def test_bad_arguments_and_checkpoints_are_reported(tmp_path, capsys):
    assert main(["--episodes", "0", "--output", str(tmp_path / "x.json")]) == 2
    (tmp_path / "empty").mkdir()
    assert main(["--checkpoint", str(tmp_path / "empty"), "--output", str(tmp_path / "x.json")]) == 2
    assert "error" in capsys.readouterr().err
