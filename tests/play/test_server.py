"""The play server without a browser: static files only from its table, the WebSocket
protocol (malformed and refused messages get error replies on an open connection), fork and
rewind, recording into episode files, and sessions that never mix."""

from __future__ import annotations

import base64
import http.client
import io
import json
import threading
import time
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import pytest
from PIL import Image

pytest.importorskip("websockets", reason="the [play] extra (websockets) is not installed")

from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from kairos_gym.data import ClipDataset, open_episodes
from kairos_gym.play.server import STATIC_FILES, PlayServer
from tests.play.client import Client


def http_get(server: PlayServer, path: str, method: str = "GET") -> tuple[int, str, bytes]:
    """One raw request: ``path`` goes on the request line exactly as given."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        conn.endheaders()
        response = conn.getresponse()
        return response.status, response.getheader("Content-Type") or "", response.read()
    finally:
        conn.close()


def decode(data_url: str) -> np.ndarray:
    """A ``data:image/png;base64,...`` frame back to uint8 ``[H, W, 3]``."""
    header, payload = data_url.split(",", 1)
    assert header == "data:image/png;base64"
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(payload))).convert("RGB"))


def test_serves_the_page_and_its_files(server):
    for path, (name, ctype) in STATIC_FILES.items():
        status, got_type, body = http_get(server, path)
        assert status == 200 and got_type == ctype, path
        assert body == (Path(__file__).parents[2] / "kairos_gym/play/static" / name).read_bytes()
    status, _, body = http_get(server, "/play.js?v=2")
    assert status == 200 and b"HANDLERS" in body


@pytest.mark.parametrize(
    "path",
    ["/../README.md", "/%2e%2e/README.md", "/..%2fREADME.md", "/%2e%2e%2fpyproject.toml",
     "//etc/passwd", "/etc/passwd", "/play.js/../../README.md", "/static/play.js",
     "/server.py", "/../kairos_gym/play/server.py", "http://127.0.0.1/../README.md",
     "/./index.html", "/index.html/"],
)
def test_never_serves_a_path_outside_its_table(server, path):
    status, _, body = http_get(server, path)
    assert status == 404 and body == b"not found\n"


def test_refuses_other_methods(server):
    status, _, body = http_get(server, "/", method="POST")
    assert status == 405 and b"POST not allowed" in body


def test_refuses_a_websocket_from_another_origin(server):
    with pytest.raises(InvalidStatus) as info:
        Client(server.url, origin="http://evil.example")
    assert info.value.response.status_code == 403
    own = Client(server.url, origin=f"http://127.0.0.1:{server.port}")  # the page's own origin
    assert own.hello["type"] == "hello"
    own.close()


def test_hello_describes_the_env_and_the_controls(client, tiny_checkpoint):
    hello = client.hello
    assert hello["protocol"] == 1 and hello["control"] == "osc7" and hello["real"] is False
    assert hello["env_id"] == "kairos_gym/Robosuite-Lift-v0" and hello["image_size"] == [16, 16]
    assert hello["action_low"] == [-1.0] * 7 and hello["max_episode_steps"] == 12
    assert {k["key"] for k in hello["keys"]} >= {"w", "a", "s", "d", " "}
    assert hello["checkpoint"] == str(tiny_checkpoint)


def test_malformed_messages_get_errors_and_the_connection_stays_open(client):
    bad = [
        b"\x00binary",
        "not json",
        '{"type": "teleport"}',
        '{"type": "step", "action": [0, 0, 0]}',
        '{"type": "step", "action": [0, 0, 0, 0, 0, 0, 7]}',
        '{"type": "reset", "seed": "zero"}',
        '{"type": "record"}',
        '{"type": "step", "action": [0, 0, 0, 0, 0, 0, 0], "extra": 1}',
    ]
    for raw in bad:
        [reply] = client.request(raw)
        assert reply["type"] == "error" and reply["error"] == "malformed", raw
        assert reply["message"]
    reply = client.last('{"type": "step", "action": [0, 0, 0, 0, 0, 0, 7], "id": 5}')
    assert reply == {"type": "error", "error": "malformed", "request": "step", "id": 5,
                     "message": "bad 'step' message: action[6] = 7 is outside its bounds [-1, 1]"}
    assert client.last({"type": "reset", "seed": 0})["type"] == "frame"  # still served


def test_commands_that_cannot_run_now_are_refused(client):
    reply = client.last({"type": "step", "action": [0] * 7})
    assert reply["error"] == "refused" and "reset first" in reply["message"]
    assert client.last({"type": "fork"})["error"] == "refused"
    reply = client.last({"type": "reset", "reset_index": 3})
    assert reply["error"] == "refused"
    assert reply["message"] == "reset_index 3 is out of range: the checkpoint stores 3 starts (0..2)"
    client.last({"type": "reset", "seed": 0})
    reply = client.last({"type": "rewind", "snapshot": 0})
    assert reply["error"] == "refused" and "no snapshot 0" in reply["message"]


def test_reset_step_and_frames(client):
    start = client.last({"type": "reset", "seed": 4})
    assert start["type"] == "frame" and start["step"] == 0 and start["seed"] == 4
    assert start["hold_action"] == [0, 0, 0, 0, 0, 0, -1]
    assert decode(start["imagined"]).shape == (16, 16, 3)
    frame = client.last({"type": "step", "action": [0, 1, 0, 0, 0, 0, -1]})
    assert frame["step"] == 1 and frame["imagined"] != start["imagined"]
    assert 0.0 <= frame["success_prob"] <= 1.0 and isinstance(frame["reward"], float)
    assert frame["real"] is None and frame["psnr"] is None
    again = client.last({"type": "reset", "seed": 4})  # same seed, same start
    assert again["imagined"] == start["imagined"] and again["episode"] == 1
    stored = client.last({"type": "reset", "reset_index": 2})
    assert stored["reset_index"] == 2 and stored["step"] == 0
    drawn = client.last({"type": "reset"})
    assert isinstance(drawn["seed"], int)


def test_rewind_restores_the_episode_exactly(client):
    client.last({"type": "reset", "seed": 1})
    for _ in range(2):
        client.last({"type": "step", "action": [0.5, 0, 0, 0, 0, 0, 1]})
    forked = client.last({"type": "fork"})
    assert forked["type"] == "forked" and forked["snapshot"] == 0 and forked["step"] == 2
    plan = [[0, -0.5, 0, 0, 0, 0, 1], [0, 0, 0.5, 0, 0, 0, -1], [0.2, 0, 0, 0, 0, 0, -1]]
    first = [client.last({"type": "step", "action": a})["imagined"] for a in plan]
    rewound = client.last({"type": "rewind", "snapshot": 0})
    assert rewound["rewound_to"] == 0 and rewound["step"] == 2 and rewound["start"] is True
    again = [client.last({"type": "step", "action": a})["imagined"] for a in plan]
    assert again == first  # same memory, same noise stream: the same frames


def test_records_an_episode_file_and_a_video(client):
    start = client.last({"type": "reset", "seed": 2})
    assert client.last({"type": "record", "on": True}) == {
        "type": "recording", "on": True, "recorded_steps": 0,
        "directory": client.hello["record_dir"], "id": 2}
    actions = np.random.default_rng(0).uniform(-1, 1, (4, 7)).astype(np.float32)
    frames = [client.last({"type": "step", "action": a.tolist()}) for a in actions]
    assert frames[-1]["recorded_steps"] == 4 and frames[-1]["recording"] is True
    recorded, reply = client.request({"type": "record", "on": False})
    assert reply == {"type": "recording", "on": False, "recorded_steps": 0,
                     "directory": client.hello["record_dir"], "id": 7}
    assert recorded["type"] == "recorded" and recorded["episode"] == "demo_0"
    assert recorded["steps"] == 4 and recorded["real"] is None
    assert Path(recorded["imagined"]).parent == Path(client.hello["record_dir"])
    with open_episodes(recorded["imagined"]) as reader:
        assert len(reader) == 1 and reader.attrs["play"]
        episode = reader[0]
        np.testing.assert_allclose(episode.actions, actions)
        images = episode.obs("agentview_image")
        assert images.shape == (4, 16, 16, 3)
        np.testing.assert_array_equal(images[0], decode(start["imagined"]))
        np.testing.assert_array_equal(images[3], decode(frames[2]["imagined"]))
        np.testing.assert_allclose(episode.rewards, [f["reward"] for f in frames])
        assert episode.seed == 2
        assert episode.attrs["source"] == "imagined" and episode.attrs["video"] == "demo_0.mp4"
    item = ClipDataset(recorded["imagined"], clip_len=4)[0]  # usable as training data
    assert item["frames"].shape == (4, 16, 16, 3)
    video = imageio.mimread(recorded["video"])
    assert len(video) == 5  # the start frame and one per step
    assert video[0].shape == (16 * 4 + 20, 16 * 4, 3)  # 4x, under a caption bar


def test_rewind_cuts_the_recording_back(client):
    client.last({"type": "reset", "seed": 3})
    client.last({"type": "record", "on": True})
    client.last({"type": "step", "action": [0] * 7})
    client.last({"type": "fork"})
    for _ in range(3):
        client.last({"type": "step", "action": [1] * 7})
    assert client.last({"type": "rewind", "snapshot": 0})["recorded_steps"] == 1
    client.last({"type": "step", "action": [-1] * 7})
    recorded, _ = client.request({"type": "record", "on": False})
    with open_episodes(recorded["imagined"]) as reader:
        np.testing.assert_array_equal(reader[0].actions, [[0] * 7, [-1] * 7])


def test_rewinding_onto_an_abandoned_branch_writes_the_recorded_one(client):
    a, p, q = [0.0] * 7, [0.5] * 7, [-0.5] * 7
    client.last({"type": "reset", "seed": 4})
    client.last({"type": "record", "on": True})
    client.last({"type": "step", "action": a})
    client.last({"type": "fork"})  # 0: after a
    client.last({"type": "step", "action": p})
    client.last({"type": "step", "action": p})
    client.last({"type": "fork"})  # 1: after a, p, p (branch P)
    assert client.last({"type": "rewind", "snapshot": 0})["recorded_steps"] == 1
    for _ in range(3):
        client.last({"type": "step", "action": q})  # branch Q is what is recorded now
    recorded, frame = client.request({"type": "rewind", "snapshot": 1})  # back onto branch P
    assert recorded["steps"] == 4 and frame["step"] == 3 and frame["recorded_steps"] == 0
    client.last({"type": "step", "action": a})
    second, _ = client.request({"type": "record", "on": False})
    with open_episodes(second["imagined"]) as reader:
        np.testing.assert_array_equal(reader[0].actions, [a, q, q, q])
        np.testing.assert_array_equal(reader[1].actions, [a])
        assert reader[1].attrs["start_step"] == 3


def test_episode_end_writes_the_recording_and_stays_armed(client):
    client.last({"type": "reset", "seed": 5})
    client.last({"type": "record", "on": True})
    for _ in range(11):
        client.last({"type": "step", "action": [0] * 7})
    recorded, frame = client.request({"type": "step", "action": [0] * 7})  # step 12: the limit
    assert recorded["type"] == "recorded" and recorded["steps"] == 12
    assert frame["ended"] is True and frame["ended_by"] == ["imagined: time limit"]
    refused = client.last({"type": "step", "action": [0] * 7})
    assert refused["error"] == "refused" and "the episode has ended" in refused["message"]
    assert client.last({"type": "reset", "seed": 6})["recording"] is True
    client.last({"type": "step", "action": [0] * 7})
    recorded, _ = client.request({"type": "reset", "seed": 7})  # a reset writes the recording
    assert recorded["episode"] == "demo_1" and recorded["steps"] == 1
    with open_episodes(recorded["imagined"]) as reader:
        assert [reader[i].seed for i in range(len(reader))] == [5, 6]
        first = reader[0]
        assert first.dones[-1] and first.attrs["ended_by"] == "imagined: time limit"
        assert first.attrs["truncated"] and not first.attrs["terminated"]  # a cut, not an end
        assert not reader[1].dones.any()  # stopped by the reset: no end to learn


def test_two_clients_never_mix_episodes(server):
    clients = [Client(server.url), Client(server.url)]
    assert clients[0].hello["session"] != clients[1].hello["session"]
    plans = {0: np.full((5, 7), 0.25, np.float32), 1: np.full((5, 7), -0.75, np.float32)}
    written: dict[int, dict] = {}
    errors: list[BaseException] = []

    def play(i: int) -> None:
        try:
            c = clients[i]
            c.last({"type": "reset", "seed": 10 + i})
            c.last({"type": "record", "on": True})
            for action in plans[i]:
                c.last({"type": "step", "action": action.tolist()})
                time.sleep(0.005)  # let the other client's steps interleave
            written[i] = c.request({"type": "record", "on": False})[0]
        except BaseException as exc:  # noqa: BLE001 - asserted in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=play, args=(i,)) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert written[0]["imagined"] != written[1]["imagined"]
    for i in (0, 1):
        assert Path(written[i]["imagined"]).parent == Path(clients[i].hello["record_dir"])
        with open_episodes(written[i]["imagined"]) as reader:
            assert len(reader) == 1 and reader[0].seed == 10 + i
            np.testing.assert_array_equal(reader[0].actions, plans[i])
        clients[i].close()


def test_a_disconnect_writes_the_unfinished_recording(server):
    c = Client(server.url)
    c.last({"type": "reset", "seed": 8})
    c.last({"type": "record", "on": True})
    c.last({"type": "step", "action": [0] * 7})
    c.last({"type": "step", "action": [0] * 7})
    c.close()
    path = Path(c.hello["record_dir"]) / "imagined.hdf5"
    deadline = time.monotonic() + 30
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)  # the commit renames into place, then writes the episode
    with open_episodes(path) as reader:
        assert len(reader) == 1 and len(reader[0].actions) == 2
        assert reader[0].attrs["ended_by"] == "disconnected"


def test_stopping_the_server_writes_unfinished_recordings(tiny_checkpoint, tmp_path):
    srv = PlayServer(tiny_checkpoint, port=0, record_dir=tmp_path / "rec", done_threshold=1.0)
    srv.start()
    c = Client(srv.url)
    c.last({"type": "reset", "seed": 9})
    c.last({"type": "record", "on": True})
    c.last({"type": "step", "action": [0] * 7})
    srv.stop()
    with open_episodes(Path(c.hello["record_dir"]) / "imagined.hdf5") as reader:
        assert len(reader) == 1 and len(reader[0].actions) == 1


def test_extra_sessions_are_refused_with_a_reason(tiny_checkpoint, tmp_path):
    srv = PlayServer(tiny_checkpoint, port=0, record_dir=tmp_path / "rec", max_sessions=1)
    srv.start()
    try:
        first = Client(srv.url)
        with connect(srv.url.replace("http://", "ws://") + "ws") as second:
            reply = json.loads(second.recv(timeout=30))
            assert reply["error"] == "refused"
            assert "already serves 1 sessions" in reply["message"]
            with pytest.raises(ConnectionClosed):
                second.recv(timeout=30)
            assert second.close_code == 1013
        first.close()
    finally:
        srv.stop()


def test_bad_server_options(tiny_checkpoint):
    with pytest.raises(ValueError, match="port must be in"):
        PlayServer(tiny_checkpoint, port=70000)
    with pytest.raises(ValueError, match="max_sessions must be >= 1"):
        PlayServer(tiny_checkpoint, max_sessions=0)
    with pytest.raises(ValueError, match="done_threshold must be in"):
        PlayServer(tiny_checkpoint, done_threshold=2.0)
