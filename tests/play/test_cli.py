"""``kairos-gym play`` as a process: it prints the URL, serves a session, and on SIGINT
writes the unfinished recording and exits 0; bad arguments fail with a message."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("websockets", reason="the [play] extra (websockets) is not installed")

from kairos_gym.cli import main
from kairos_gym.data import open_episodes
from tests.play.client import Client

ROOT = Path(__file__).resolve().parents[2]


def test_play_serves_until_interrupted(tiny_checkpoint, tmp_path):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "kairos_gym.cli", "play", "--checkpoint", str(tiny_checkpoint),
         "--port", "0", "--record-dir", str(tmp_path / "rec"), "--done-threshold", "1",
         "--threads", "1"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        lines = []
        deadline = time.monotonic() + 120
        url = None
        while url is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            found = re.search(r"open (http://127\.0\.0\.1:\d+/)", line)
            url = found.group(1) if found else None
        assert url, "".join(lines)
        client = Client(url)
        client.last({"type": "reset", "seed": 0})
        client.last({"type": "record", "on": True})
        client.last({"type": "step", "action": [0.1] * 7})
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, "".join(lines) + out
        assert "unfinished recordings were written" in out
    finally:
        if proc.poll() is None:
            proc.kill()
    with open_episodes(Path(client.hello["record_dir"]) / "imagined.hdf5") as reader:
        assert len(reader) == 1 and len(reader[0].actions) == 1


def test_play_reports_a_bad_checkpoint(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["play", "--checkpoint", str(tmp_path / "empty"), "--port", "0"]) == 1
    assert "config.json" in capsys.readouterr().err
