"""Fixtures for the play tests: tiny checkpoints, a running server, a WebSocket client and
headless Chromium (Debian's ``chromium`` + ``chromium-driver``; skipped when absent)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np
import pytest

from kairos_gym.data.spaces import EpisodeEnvSpec
from kairos_gym.imagined.checkpoint import save_env_checkpoint
from kairos_gym.model import WorldModel, WorldModelConfig
from tests.imagined_helpers import lift_spec, reset_observations, write_checkpoint
from tests.model.conftest import randomize_

if TYPE_CHECKING:
    from kairos_gym.play.server import PlayServer
    from tests.play.client import Client

NEEDS_WEBSOCKETS = "the [play] extra (websockets) is not installed"
CHROMIUM_CANDIDATES = ("chromium", "chromium-browser", "google-chrome")
CHROMEDRIVER = "chromedriver"


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 16 px Lift-like checkpoint with random weights, 12-step episodes."""
    return write_checkpoint(tmp_path_factory.mktemp("play") / "ckpt", lift_spec(16, 12))


@pytest.fixture
def server(tiny_checkpoint: Path, tmp_path: Path) -> Iterator[PlayServer]:
    """A server on a free loopback port. Random weights predict ``done_prob`` near 0.5, so
    termination is off (``done_threshold=1``): episodes end at the 12-step limit."""
    pytest.importorskip("websockets", reason=NEEDS_WEBSOCKETS)
    from kairos_gym.play.server import PlayServer

    srv = PlayServer(tiny_checkpoint, port=0, record_dir=tmp_path / "rec", done_threshold=1.0)
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def client(server: PlayServer) -> Iterator[Client]:
    """A connected client of :func:`server` (its ``hello`` already read)."""
    from tests.play.client import Client

    c = Client(server.url)
    yield c
    c.close()


def chromium_paths() -> tuple[str, str] | None:
    """``(browser, chromedriver)`` when both are installed, else ``None``."""
    browser = next((p for p in map(shutil.which, CHROMIUM_CANDIDATES) if p), None)
    driver = shutil.which(CHROMEDRIVER)
    return (browser, driver) if browser and driver else None


@pytest.fixture
def browser() -> Iterator[Any]:
    """Headless Chromium driven by Selenium; skipped with the reason when it is missing."""
    webdriver = pytest.importorskip(
        "selenium.webdriver", reason="selenium is not installed (pip install -e '.[dev]')"
    )
    paths = chromium_paths()
    if paths is None:
        pytest.skip("headless browser tests need Debian's chromium and chromium-driver "
                    "(bash scripts/setup.sh test installs them as root)")
    # Never let Selenium Manager look for a browser or driver online.
    os.environ["SE_OFFLINE"] = "true"
    options = webdriver.ChromeOptions()
    options.binary_location = paths[0]
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1400,1000", "--disable-extensions"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = webdriver.ChromeService(executable_path=paths[1])
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


ALOHA_LOW = np.array([-3.14, -1.85, -1.76, -3.14, -1.86, -3.14, 0.0] * 2, np.float32)
ALOHA_HIGH = np.array([3.14, 1.25, 1.6, 3.14, 2.23, 3.14, 1.0] * 2, np.float32)


@pytest.fixture(scope="session")
def joint_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 16 px checkpoint with ALOHA's 14-D joint-position action and 14-D ``state``."""
    spec = EpisodeEnvSpec(
        env_id="kairos_gym/Aloha-TransferCube-v0",
        env_kwargs={"cameras": ["top"], "image_size": 16, "max_episode_steps": 12},
        observation_space=gym.spaces.Dict({
            "top_image": gym.spaces.Box(0, 255, (16, 16, 3), np.uint8),
            "state": gym.spaces.Box(-np.inf, np.inf, (14,), np.float32),
        }),
        action_space=gym.spaces.Box(ALOHA_LOW, ALOHA_HIGH, (14,), np.float32),
        control_freq=50.0,
        instruction="transfer the cube",
        cameras=("top",),
        image_size=(16, 16),
    )
    cfg = WorldModelConfig.preset("tiny", state_dim=14, action_dim=14)
    model = randomize_(WorldModel(cfg), seed=0).eval()
    directory = tmp_path_factory.mktemp("play-joint") / "ckpt"
    save_env_checkpoint(directory, model, spec, reset_observations(spec, 2))
    return directory
