"""Any other action space (here ALOHA's 14-D joint positions) is driven with sliders: the
page builds one per dimension, starting at the measured joint state, and the arrow keys move
the selected one."""

from __future__ import annotations

import pytest

pytest.importorskip("websockets", reason="the [play] extra (websockets) is not installed")

import numpy as np

from kairos_gym.play.server import PlayServer
from tests.play.browser_helpers import frame_step, press, settled_step, wait_for
from tests.play.client import Client
from tests.play.conftest import ALOHA_HIGH, ALOHA_LOW


def test_sliders_mode_over_the_protocol(joint_checkpoint, tmp_path):
    server = PlayServer(joint_checkpoint, port=0, record_dir=tmp_path / "rec")
    server.start()
    try:
        c = Client(server.url)
        assert c.hello["control"] == "sliders" and c.hello["gripper_dim"] is None
        assert [k["key"] for k in c.hello["keys"]] == ["[", "]", "ArrowUp", "ArrowDown"]
        start = c.last({"type": "reset", "reset_index": 1})
        # Hold still: the joint targets start at the measured joints (``state``), clipped.
        state = server.checkpoint.reset_observations["state"][1]
        np.testing.assert_allclose(start["hold_action"], np.clip(state, ALOHA_LOW, ALOHA_HIGH),
                                   rtol=1e-6)
        bad = list(start["hold_action"])
        bad[1] = 1.5
        reply = c.last({"type": "step", "action": bad})
        assert reply["error"] == "malformed"
        assert reply["message"].endswith("action[1] = 1.5 is outside its bounds [-1.85, 1.25]")
        assert c.last({"type": "step", "action": start["hold_action"]})["step"] == 1
        c.close()
    finally:
        server.stop()


def test_sliders_and_arrow_keys_in_the_browser(browser, joint_checkpoint, tmp_path):
    server = PlayServer(joint_checkpoint, port=0, record_dir=tmp_path / "rec")
    url = server.start()
    try:
        browser.get(url)
        wait_for(lambda: frame_step(browser) == 0, "the first frame")
        sliders = browser.find_elements("css selector", "#action input[type=range]")
        assert len(sliders) == 14
        before = [float(s.get_attribute("value")) for s in sliders]
        press(browser, "]")  # select a1 (shoulder)
        press(browser, "ArrowUp")  # +5% of its range, and one step
        wait_for(lambda: frame_step(browser) == 1, "the arrow-key step")
        settled_step(browser)
        after = [float(s.get_attribute("value")) for s in sliders]
        span = float(ALOHA_HIGH[1] - ALOHA_LOW[1])
        expected = min(0.05 * span, float(ALOHA_HIGH[1]) - before[1])
        assert abs(after[1] - before[1] - expected) <= span / 200 + 1e-6  # the slider's grid
        assert after[:1] + after[2:] == before[:1] + before[2:]
    finally:
        server.stop()
