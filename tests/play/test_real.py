"""``--real``: the real robosuite Lift (16 px) beside a tiny imagined model, from the same
reset, stepping together; rewinding replays the real episode; both episodes are recorded."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("websockets", reason="the [play] extra (websockets) is not installed")

from kairos_gym.data import open_episodes
from kairos_gym.play.server import PlayServer
from tests.play.client import Client
from tests.play.test_server import decode

pytestmark = pytest.mark.sim


@pytest.fixture
def real_client(tiny_checkpoint, tmp_path):
    pytest.importorskip("robosuite")
    srv = PlayServer(tiny_checkpoint, real=True, port=0, record_dir=tmp_path / "rec",
                     done_threshold=1.0)
    srv.start()
    c = Client(srv.url)
    yield c
    c.close()
    srv.stop()


def test_real_and_imagined_step_together_and_are_recorded(real_client):
    c = real_client
    assert c.hello["real"] is True
    refused = c.last({"type": "reset", "reset_index": 0})
    assert refused["error"] == "refused" and "seeded reset" in refused["message"]
    start = c.last({"type": "reset", "seed": 0})
    # The imagined episode starts from the real reset observation itself.
    np.testing.assert_array_equal(decode(start["imagined"]), decode(start["real"]))
    assert start["psnr"] is None  # identical frames: infinite PSNR, sent as null
    c.last({"type": "record", "on": True})
    right = [0, 1, 0, 0, 0, 0, -1]
    frames = [c.last({"type": "step", "action": right}) for _ in range(2)]
    assert all(isinstance(f["psnr"], float) and f["real_reward"] is not None for f in frames)
    assert frames[-1]["real"] != start["real"]  # the real arm moved
    c.last({"type": "fork"})
    for _ in range(2):
        c.last({"type": "step", "action": [0, 0, 1, 0, 0, 0, 1]})
    rewound = c.last({"type": "rewind", "snapshot": 0})
    assert rewound["real_replay_exact"] is True and rewound["real"] == frames[-1]["real"]
    c.last({"type": "step", "action": right})
    recorded, _ = c.request({"type": "record", "on": False})
    assert recorded["steps"] == 3 and recorded["real"]
    with open_episodes(recorded["real"]) as real, open_episodes(recorded["imagined"]) as imagined:
        r, i = real[0], imagined[0]
        np.testing.assert_array_equal(r.actions, i.actions)
        np.testing.assert_array_equal(r.actions[-1], right)
        assert r.states is not None and r.states.shape[0] == 3  # replayable simulator states
        assert not i.has("states")  # an imagined world has no simulator state
        assert r.attrs["source"] == "real" and i.attrs["source"] == "imagined"
        np.testing.assert_array_equal(r.obs("agentview_image")[0], i.obs("agentview_image")[0])
