"""A writer killed with SIGKILL mid-collection leaves a valid file with every committed episode."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from kairos_gym.data.episodes import EpisodeWriter, open_episodes

HERE = os.path.dirname(os.path.abspath(__file__))

# The child commits episodes back to back (the worst case: nearly all its time is spent
# inside commits) and reports each committed name, with a pause mid-episode so the kill can
# also land while an episode is being buffered.
CHILD = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, {here!r})
    from conftest import make_spec, make_episode
    from kairos_gym.data.episodes import EpisodeWriter

    writer = EpisodeWriter(sys.argv[1], make_spec(image_size=32))
    i = 0
    while True:
        ep = make_episode(40, seed=i, image_size=32)
        for t in range(20):
            obs = {{k: v[t] for k, v in ep["obs"].items()}}
            writer.add_step(obs, ep["actions"][t], ep["rewards"][t], ep["dones"][t], ep["success"][t], ep["states"][t])
        name = writer.end_episode(ep["final_obs"], final_state=ep["final_state"], seed=i)
        print(name, flush=True)
        i += 1
    """
)


def _collect_then_kill(path: str, min_episodes: int, extra_delay: float) -> list[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD.format(here=HERE), path],
        stdout=subprocess.PIPE,
        text=True,
    )
    committed = []
    try:
        while len(committed) < min_episodes:
            line = proc.stdout.readline()
            if not line:
                raise AssertionError(f"writer exited early with {proc.wait()}")
            committed.append(line.strip())
        time.sleep(extra_delay)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        committed += [line.strip() for line in proc.stdout.read().splitlines() if line.strip()]
        proc.stdout.close()
    return committed


@pytest.mark.parametrize("extra_delay", [0.0, 0.013, 0.047])
def test_sigkill_mid_collection_keeps_committed_episodes(tmp_path, extra_delay):
    path = str(tmp_path / "killed.hdf5")
    committed = _collect_then_kill(path, min_episodes=3, extra_delay=extra_delay)
    with open_episodes(path) as reader:
        names = reader.episodes
        # Every episode reported as committed is there; at most one more (killed after the
        # commit, before printing) may exist, and it is complete.
        assert names[: len(committed)] == committed
        assert len(names) <= len(committed) + 1
        for ep in reader:
            data = ep.load()
            assert data["actions"].shape == (20, 7)
            assert data["obs"]["agentview_image"].shape == (20, 32, 32, 3)
            np.testing.assert_array_equal(data["rewards"], np.arange(20) + 1.0)
        assert reader.total == 20 * len(names)

    # Resume after the crash: the next episode continues the numbering.
    from tests.data.conftest import make_episode, make_spec

    with EpisodeWriter(path, make_spec(image_size=32)) as writer:
        name = writer.write_episode(**make_episode(5, image_size=32))
    assert name == f"demo_{len(names)}"
    with open_episodes(path) as reader:
        assert len(reader) == len(names) + 1
