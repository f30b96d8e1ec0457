"""The page in a real headless browser (Debian's Chromium, driven by Selenium): load it, press
keys, see the frame change, record, stop, and read the episode file the server wrote."""

from __future__ import annotations

from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import pytest

pytest.importorskip("websockets", reason="the [play] extra (websockets) is not installed")

from kairos_gym.data import open_episodes
from kairos_gym.play.server import PlayServer
from tests.play.browser_helpers import (
    frame_step,
    press,
    select,
    settled_step,
    severe_console_errors,
    wait_for,
)


def test_drive_the_page_with_keys_and_record(browser, tiny_checkpoint, tmp_path):
    server = PlayServer(tiny_checkpoint, port=0, record_dir=tmp_path / "rec", done_threshold=1.0)
    url = server.start()
    try:
        browser.get(url)
        # The page resets on connect (seed 0) and shows the first frame.
        wait_for(lambda: frame_step(browser) == 0, "the first frame")
        image = browser.find_element("id", "imagined-frame")
        first = image.get_attribute("src")
        assert first.startswith("data:image/png;base64,")
        assert image.size["width"] >= 16 * 4  # drawn large
        assert browser.find_element("id", "real-view").is_displayed() is False
        assert "lift the red cube" in browser.find_element("id", "instruction").text

        press(browser, "t")  # record on
        wait_for(lambda: "recording" in browser.find_element("id", "record-status").text,
                 "recording to start")
        press(browser, "d")  # a tap: one step to the right
        wait_for(lambda: frame_step(browser) == 1, "the step of a tapped key")
        assert image.get_attribute("src") != first
        press(browser, " ")  # close the gripper: a step of its own
        wait_for(lambda: frame_step(browser) == 2, "the gripper step")
        select(browser, "rate", "10")  # the step rate
        press(browser, "w", hold=0.45)  # held: steps at the step rate while held
        wait_for(lambda: frame_step(browser) >= 3, "held-key steps")
        steps = settled_step(browser)
        assert 3 <= steps <= 8  # about 10 Hz for 0.45 s (+ the tapped steps), not more
        assert browser.find_element("id", "reward").text not in ("", "-")
        assert browser.find_element("id", "success").text not in ("", "-")

        press(browser, "t")  # record off: the server writes the episode
        item = wait_for(lambda: browser.find_elements("css selector", "#recorded li"),
                        "the recorded episode")[0]
        episode_file = Path(item.get_attribute("data-imagined"))
        video = Path(item.get_attribute("data-video"))
        assert episode_file.is_relative_to(tmp_path / "rec")
        with open_episodes(episode_file) as reader:
            assert len(reader) == 1
            actions = reader[0].actions
        assert len(actions) == steps
        np.testing.assert_allclose(actions[0], [0, 0.5, 0, 0, 0, 0, -1])  # D at gain 0.5, open
        np.testing.assert_allclose(actions[1], [0, 0, 0, 0, 0, 0, 1])  # Space closed the gripper
        np.testing.assert_allclose(actions[2], [-0.5, 0, 0, 0, 0, 0, 1])  # W: away from the camera
        assert len(imageio.mimread(video)) == steps + 1

        assert severe_console_errors(browser) == []  # no script or CSP errors
    finally:
        server.stop()


@pytest.mark.sim
def test_the_real_simulator_beside_the_imagined_one(browser, tiny_checkpoint, tmp_path):
    pytest.importorskip("robosuite")
    server = PlayServer(tiny_checkpoint, real=True, port=0, record_dir=tmp_path / "rec",
                        done_threshold=1.0)
    url = server.start()
    try:
        browser.get(url)
        wait_for(lambda: frame_step(browser) == 0, "the first frame")
        real = browser.find_element("id", "real-frame")
        assert real.is_displayed()
        start = real.get_attribute("src")
        press(browser, "s")
        wait_for(lambda: frame_step(browser) == 1, "one paired step")
        wait_for(lambda: real.get_attribute("src") != start, "the real frame to change")
        assert browser.find_element("id", "psnr").text.endswith(" dB")
        press(browser, "x")  # fork
        wait_for(lambda: browser.find_elements("css selector", "#snapshots li"), "a snapshot")
        press(browser, "s")
        wait_for(lambda: frame_step(browser) == 2, "a second step")
        press(browser, "z")  # rewind: the real side is replayed
        wait_for(lambda: "rewound to snapshot 0" in browser.find_element("id", "message").text,
                 "the rewind")
        assert frame_step(browser) == 1
        assert severe_console_errors(browser) == []
    finally:
        server.stop()
