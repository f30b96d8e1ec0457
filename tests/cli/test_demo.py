"""``kairos-gym demo`` end to end: a real robosuite Lift reset and the same expert actions
in the real simulator and in an imagined env (a tiny random checkpoint, 16 px)."""

from __future__ import annotations

import json

import imageio.v2 as imageio
import pytest

from kairos_gym.cli import main
from kairos_gym.imagined.checkpoint import DEFAULT_CHECKPOINT
from tests.imagined_helpers import lift_spec, write_checkpoint

pytestmark = pytest.mark.sim


@pytest.fixture(autouse=True)
def _needs_robosuite():
    pytest.importorskip("robosuite")


def test_demo_writes_side_by_side_video_and_figures(tmp_path, capsys):
    ckpt = write_checkpoint(tmp_path / "ckpt", lift_spec(image_size=16, max_episode_steps=40))
    video, figures = tmp_path / "demo.mp4", tmp_path / "demo.json"
    code = main(["demo", "--checkpoint", str(ckpt), "--steps", "4", "--output", str(video),
                 "--json", str(figures), "--scale", "2", "--threads", "1"])
    assert code == 0
    out = capsys.readouterr().out
    assert "PSNR real vs imagined" in out and "success agreement" in out
    data = json.loads(figures.read_text())
    rows = data["steps"]
    assert 1 <= len(rows) <= 4 and rows[0]["step"] == 1
    assert {"psnr", "reward", "imagined_reward", "success", "imagined_success"} <= set(rows[0])
    frames = imageio.mimread(video)
    assert len(frames) == len(rows) + 1  # the shared reset frame, then one per step
    height, width = frames[0].shape[:2]
    assert width > 2 * 16 * 2 and height > 16 * 2  # two upscaled panels side by side, captions on top


def test_demo_reports_a_bad_checkpoint(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["demo", "--checkpoint", str(tmp_path / "empty"), "--output", str(tmp_path / "x.mp4")]) == 1
    assert "config.json" in capsys.readouterr().err


@pytest.mark.skipif(not (DEFAULT_CHECKPOINT / "config.json").exists(), reason="no embedded default model")
def test_demo_runs_on_the_embedded_default_model(tmp_path):
    figures = tmp_path / "demo.json"
    assert main(["demo", "--steps", "6", "--output", str(tmp_path / "d.mp4"), "--json", str(figures),
                 "--threads", "1"]) == 0
    summary = json.loads(figures.read_text())["summary"]
    assert summary["steps"] == 6 and summary["psnr_mean"] > 15.0
