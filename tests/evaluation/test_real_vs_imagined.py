"""The real-vs-imagined benchmark: both policies, aggregation, JSON, errors."""

from __future__ import annotations

import json

import pytest

from kairos_gym.eval.real_vs_imagined import aggregate, main
from tests.imagined_helpers import lift_spec, write_checkpoint


def _episode(first_real, first_imagined, psnr=20.0):
    return {"psnr_mean": psnr, "baseline_psnr_mean": 15.0, "success_agreement": 0.5, "return": 2.0,
            "imagined_return": 3.0, "reward_mae": 0.1, "first_success_real": first_real,
            "first_success_imagined": first_imagined}


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
