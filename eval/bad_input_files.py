"""Bad inputs that arrive as files or command lines: checkpoints, episode files, the episode
writer, clip datasets, training configs and ``kairos-gym`` arguments (see
:mod:`kairos_gym.eval.bad_input_cases` for the rest of the corpus and the :class:`Case` shape).

A damaged file is a fresh copy of a good one; its bytes (and the original's) must not
change while it is refused, and the good original must still load afterwards.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from safetensors.torch import load_file, save_file

from kairos_gym.eval.bad_input_cases import INF, NAN, Case, Fixtures, file_digest


def checkpoints(fx: Fixtures) -> Iterator[Case]:
    from kairos_gym.imagined.checkpoint import load_env_checkpoint

    def config_edit(**model: Any) -> Callable[[Path], None]:
        def edit(path: Path) -> None:
            data = json.loads((path / "config.json").read_text())
            data["model"].update(model)
            (path / "config.json").write_text(json.dumps(data))
        return edit

    def top_edit(key: str, value: Any) -> Callable[[Path], None]:
        def edit(path: Path) -> None:
            data = json.loads((path / "config.json").read_text())
            if value is None:
                data.pop(key)
            else:
                data[key] = value
            (path / "config.json").write_text(json.dumps(data))
        return edit

    def spec_edit(change: Callable[[dict[str, Any]], None]) -> Callable[[Path], None]:
        def edit(path: Path) -> None:
            data = json.loads((path / "config.json").read_text())
            change(data["env_spec"])
            (path / "config.json").write_text(json.dumps(data))
        return edit

    def symlink(name: str) -> Callable[[Path], None]:
        def edit(path: Path) -> None:
            other = fx.copy(fx.tiny_checkpoint, f"other_{name}")
            (path / name).unlink()
            os.symlink(other / name, path / name)
        return edit

    def tensors(name: str, change: Callable[[dict[str, torch.Tensor]], None]) -> Callable[[Path], None]:
        def edit(path: Path) -> None:
            data = load_file(path / name)
            change(data)
            save_file(data, path / name)
        return edit

    def raw(name: str, change: Callable[[bytes], bytes]) -> Callable[[Path], None]:
        def edit(path: Path) -> None:
            (path / name).write_bytes(change((path / name).read_bytes()))
        return edit

    def delete(name: str) -> Callable[[Path], None]:
        return lambda path: (path / name).unlink()

    def nan_head(d: dict[str, torch.Tensor]) -> None:
        d["head.head.weight"][0, 0] = NAN

    edits: list[tuple[str, Callable[[Path], None]]] = [
        ("dim 65536, ffn_dim 2**18 (tens of GB)", config_edit(dim=2**16, ffn_dim=2**18)),
        ("ffn_dim 2**30", config_edit(ffn_dim=2**30)),
        ("num_layers 10**6", config_edit(num_layers=10**6)),
        ("state_dim 2**31", config_edit(state_dim=2**31)),
        ("200 codec stages", config_edit(codec_channels=[8] * 200, spatial_compression=2**200,
                                         image_size=[2**200, 2**200])),
        ("window 2**20 x dilation 2**10", config_edit(window=2**20, dilation=2**10)),
        ("image_size 16384 x 16384", config_edit(image_size=[2**14, 2**14])),
        ("dim -1", config_edit(dim=-1)),
        ("unknown model field", config_edit(colour=3)),
        ("sample_steps 0", config_edit(sample_steps=0)),
        ("format 2", top_edit("format", 2)),
        ("format '1'", top_edit("format", "1")),
        ("no model section", top_edit("model", None)),
        ("no env_spec", top_edit("env_spec", None)),
        ("config.json not JSON", raw("config.json", lambda b: b"{not json")),
        ("config.json a list", raw("config.json", lambda b: b"[1, 2]")),
        ("config.json 20 MB", raw("config.json", lambda b: b" " * (20 * 2**20) + b)),
        ("env_spec action space of 5", spec_edit(lambda s: s["action_space"].update(shape=[5]))),
        ("env_spec camera images float32", spec_edit(
            lambda s: s["observation_space"]["spaces"]["agentview_image"].update(dtype="float32"))),
        ("env_spec state of 10**10 values", spec_edit(
            lambda s: s["observation_space"]["spaces"]["state"].update(shape=[10**5, 10**5]))),
        ("env_spec format_version 9", spec_edit(lambda s: s.update(format_version=9))),
        ("model.safetensors a symlink to another checkpoint", symlink("model.safetensors")),
        ("codec.safetensors a symlink", symlink("codec.safetensors")),
        ("config.json a symlink", symlink("config.json")),
        ("reset_observations a symlink", symlink("reset_observations.safetensors")),
        ("model.safetensors missing", delete("model.safetensors")),
        ("reset_observations missing", delete("reset_observations.safetensors")),
        ("model.safetensors truncated", raw("model.safetensors", lambda b: b[: len(b) // 2])),
        ("model.safetensors header length 10**12", raw("model.safetensors",
                                                       lambda b: (10**12).to_bytes(8, "little") + b[8:])),
        ("model.safetensors empty", raw("model.safetensors", lambda b: b"")),
        ("a NaN weight", tensors("model.safetensors", nan_head)),
        ("a missing tensor", tensors("model.safetensors", lambda d: d.pop("head.head.weight"))),
        ("an extra tensor", tensors("model.safetensors", lambda d: d.update(extra=torch.zeros(1)))),
        ("reset observations of another size", tensors(
            "reset_observations.safetensors",
            lambda d: d.update(agentview_image=torch.zeros(2, 8, 8, 3, dtype=torch.uint8)))),
        ("reset observations with NaN state", tensors(
            "reset_observations.safetensors", lambda d: d.update(state=torch.full((2, 8), NAN)))),
    ]
    for name, edit in edits:
        def call(edit: Callable[[Path], None] = edit, name: str = name) -> Any:
            path = fx.copy(fx.tiny_checkpoint, "ckpt_" + str(abs(hash(name))))
            edit(path)
            return load_env_checkpoint(path)

        yield Case("load_env_checkpoint", name, call,
                   fingerprint=lambda: file_digest(fx.tiny_checkpoint),
                   probe=lambda: load_env_checkpoint(fx.tiny_checkpoint))
    yield Case("load_env_checkpoint", "a directory that does not exist",
               lambda: load_env_checkpoint(fx.root / "nowhere"),
               probe=lambda: load_env_checkpoint(fx.tiny_checkpoint))
    yield Case("load_env_checkpoint", "a file instead of a directory",
               lambda: load_env_checkpoint(fx.tiny_checkpoint / "config.json"),
               probe=lambda: load_env_checkpoint(fx.tiny_checkpoint))
    if not torch.cuda.is_available():
        yield Case("load_env_checkpoint", "device 'cuda' on a CPU-only build",
                   lambda: load_env_checkpoint(fx.tiny_checkpoint, device="cuda"),
                   probe=lambda: load_env_checkpoint(fx.tiny_checkpoint))
    yield Case("load_env_checkpoint", "device 'gpu'",
               lambda: load_env_checkpoint(fx.tiny_checkpoint, device="gpu"),
               probe=lambda: load_env_checkpoint(fx.tiny_checkpoint))


def _replace(key: str, value: np.ndarray, episode: str = "demo_1") -> Callable[[h5py.File], None]:
    def edit(f: h5py.File) -> None:
        group = f[f"data/{episode}"]
        del group[key]
        group.create_dataset(key, data=value)
    return edit


def _nan_in(key: str, index: tuple[int, ...]) -> Callable[[h5py.File], None]:
    def edit(f: h5py.File) -> None:
        values = f[f"data/demo_1/{key}"][()]
        values[index] = NAN
        _replace(key, values)(f)
    return edit


def _attr(name: str, value: Any, where: str = "data") -> Callable[[h5py.File], None]:
    def edit(f: h5py.File) -> None:
        f[where].attrs[name] = value
    return edit


def _spec(change: Callable[[dict[str, Any]], None]) -> Callable[[h5py.File], None]:
    def edit(f: h5py.File) -> None:
        data = json.loads(f["data"].attrs["env_spec"])
        change(data)
        f["data"].attrs["env_spec"] = json.dumps(data)
    return edit


def _delete(key: str) -> Callable[[h5py.File], None]:
    def edit(f: h5py.File) -> None:
        del f[f"data/demo_1/{key}"]
    return edit


def episode_files(fx: Fixtures) -> Iterator[Case]:
    from kairos_gym.data import ClipDataset, list_episodes, load_episodes
    from kairos_gym.data.episodes import EpisodeReader

    def external_episode(f: h5py.File) -> None:
        other = fx.copy(fx.episodes, "other.hdf5")
        f["data/demo_3"] = h5py.ExternalLink(str(other), "/data/demo_0")

    def external_data(f: h5py.File) -> None:
        other = fx.copy(fx.episodes, "other_data.hdf5")
        del f["data"]
        f["data"] = h5py.ExternalLink(str(other), "/data")

    def external_storage(f: h5py.File) -> None:
        raw = fx.root / "raw.bin"
        raw.write_bytes(np.zeros((6, 7), np.float32).tobytes())
        del f["data/demo_1/actions"]
        f["data/demo_1"].create_dataset("actions", shape=(6, 7), dtype=np.float32,
                                        external=[(str(raw), 0, 6 * 7 * 4)])

    def soft_episode(f: h5py.File) -> None:
        del f["data/demo_1"]
        f["data/demo_1"] = h5py.SoftLink("/data/demo_0")

    def longer_actions(f: h5py.File) -> None:
        _replace("actions", np.zeros((7, 7), np.float32))(f)

    edits: list[tuple[str, Callable[[h5py.File], None]]] = [
        ("one episode with 5-wide actions", _replace("actions", np.zeros((6, 5), np.float32))),
        ("one episode with 1-D actions", _replace("actions", np.zeros(6, np.float32))),
        ("one episode with string actions", _replace("actions", np.array([["a"] * 7] * 6, dtype="S1"))),
        ("a NaN action", _nan_in("actions", (2, 3))),
        ("an inf reward", _nan_in("rewards", (4,))),
        ("a NaN state observation", _nan_in("obs/state", (1, 0))),
        ("a NaN final state observation", _nan_in("final_obs/state", (0, 2))),
        ("one episode with 32 px images", _replace("obs/agentview_image", np.zeros((6, 32, 32, 3), np.uint8))),
        ("float32 images", _replace("obs/agentview_image", np.zeros((6, 64, 64, 3), np.float32))),
        ("grey images without channels", _replace("obs/agentview_image", np.zeros((6, 64, 64), np.uint8))),
        ("a state of 7 values", _replace("obs/state", np.zeros((6, 7), np.float32))),
        ("a float64 state (spec: float32)", _replace("obs/state", np.zeros((6, 8), np.float64))),
        ("rewards of length 5", _replace("rewards", np.zeros(5))),
        ("2-D rewards", _replace("rewards", np.zeros((6, 2)))),
        ("7 actions for 6 observations", longer_actions),
        ("a final observation of 2 frames", _replace("final_obs/state", np.zeros((2, 8), np.float32))),
        ("scalar dones", _replace("dones", np.array(True))),
        ("no rewards", _delete("rewards")),
        ("no obs", _delete("obs")),
        ("no state observation", _delete("obs/state")),
        ("an extra observation key", lambda f: f["data/demo_1/obs"].create_dataset("extra", data=np.zeros((6, 2)))),
        ("num_samples 99", _attr("num_samples", 99, "data/demo_1")),
        ("env_spec not JSON", _attr("env_spec", "{not json")),
        ("env_spec a JSON list", _attr("env_spec", "[1, 2]")),
        ("env_spec without spaces", _attr("env_spec", json.dumps({"env_id": "x"}))),
        ("env_spec with float camera images", _spec(
            lambda s: s["observation_space"]["spaces"]["agentview_image"].update(dtype="float32"))),
        ("env_spec with a 10**10-value state", _spec(
            lambda s: s["observation_space"]["spaces"]["state"].update(shape=[10**5, 10**5]))),
        ("env_spec with a negative shape", _spec(lambda s: s["action_space"].update(shape=[-7]))),
        ("env_spec with an unknown dtype", _spec(lambda s: s["action_space"].update(dtype="float99"))),
        ("env_spec control_freq 0", _spec(lambda s: s.update(control_freq=0))),
        ("env_spec format_version 9", _spec(lambda s: s.update(format_version=9))),
        ("format_version 2", _attr("format_version", 2)),
        ("format_version 'two'", _attr("format_version", "two")),
        ("an episode that is an external link", external_episode),
        ("'data' an external link", external_data),
        ("actions stored in an external file", external_storage),
        ("an episode that is a soft link to another", soft_episode),
    ]
    readers: list[tuple[str, Callable[[Path], Any]]] = [
        ("EpisodeReader", lambda p: EpisodeReader(p)),
        ("ClipDataset", lambda p: ClipDataset(p, clip_len=2)),
    ]
    for name, edit in edits:
        for surface, read in readers:
            def call(edit: Callable[[h5py.File], None] = edit, read: Callable[[Path], Any] = read,
                     key: str = f"{surface}-{name}") -> Any:
                path = fx.copy(fx.episodes, f"ep_{abs(hash(key))}.hdf5")
                with h5py.File(path, "a") as f:
                    edit(f)
                digest = file_digest(path)
                try:
                    return read(path)
                finally:
                    if file_digest(path) != digest:
                        raise AssertionError(f"{path} changed while it was read")

            yield Case(surface, name, call, fingerprint=lambda: file_digest(fx.episodes),
                       probe=lambda: EpisodeReader(fx.episodes).close())

    def truncated() -> Path:
        path = fx.copy(fx.episodes, "truncated.hdf5")
        with open(path, "r+b") as f:
            f.truncate(os.path.getsize(path) // 2)
        return path

    def not_hdf5() -> Path:
        path = fx.root / "notes.hdf5"
        path.write_text("not an episode file " * 20)
        return path

    def empty_hdf5() -> Path:
        path = fx.root / "empty.hdf5"
        h5py.File(path, "w").close()
        return path

    for name, make in [("a truncated file", truncated), ("a text file", not_hdf5),
                       ("an HDF5 file without data", empty_hdf5), ("a directory", lambda: fx.root),
                       ("a missing file", lambda: fx.root / "missing.hdf5")]:
        yield Case("EpisodeReader", name, lambda m=make: EpisodeReader(m()),
                   probe=lambda: EpisodeReader(fx.episodes).close())

    def closed_read() -> Any:
        with EpisodeReader(fx.episodes) as reader:
            episode = reader[0]
        return episode.actions

    lookups: list[tuple[str, Callable[[], Any]]] = [
        ("reading an episode after close", closed_read),
        ("episode index 99", lambda: _with_reader(fx, lambda r: r[99])),
        ("episode name 'demo_77'", lambda: _with_reader(fx, lambda r: r["demo_77"])),
        ("frames past the end", lambda: _with_reader(fx, lambda r: r[0].frames("agentview_image", 0, 99))),
        ("an observation key that does not exist", lambda: _with_reader(fx, lambda r: r[0].obs("wrist_image"))),
    ]
    for name, call in lookups:
        yield Case("Episode", name, call, fingerprint=lambda: file_digest(fx.episodes),
                   probe=lambda: EpisodeReader(fx.episodes).close())
    arguments: list[tuple[str, dict[str, Any]]] = [
        ("clip_len 0", {"clip_len": 0}), ("clip_len 100 (longer than every episode)", {"clip_len": 100}),
        ("clip_len 2.5", {"clip_len": 2.5}), ("frame_stride -1", {"frame_stride": -1}),
        ("clip_step 0", {"clip_step": 0}), ("split 'test'", {"split": "test"}),
        ("val_fraction 1.5", {"val_fraction": 1.5}), ("val_fraction None", {"val_fraction": None}),
        ("cameras 'wrist'", {"cameras": "wrist"}), ("cameras []", {"cameras": []}),
        ("cameras None", {"cameras": None}), ("state_keys ['joints']", {"state_keys": ["joints"]}),
        ("state_keys 'state'", {"state_keys": "state"}), ("image_transform 'flip'", {"image_transform": "flip"}),
        ("seed '0'", {"seed": "0"}),
    ]
    for name, kwargs in arguments:
        yield Case("ClipDataset arguments", name,
                   lambda k=kwargs: ClipDataset(fx.episodes, **{"clip_len": 2, **k}),
                   fingerprint=lambda: file_digest(fx.episodes),
                   probe=lambda: ClipDataset(fx.episodes, clip_len=2))
    for name, call in [("load_episodes min_steps 0", lambda: load_episodes(fx.episodes, "agentview", min_steps=0)),
                       ("load_episodes min_steps 100", lambda: load_episodes(fx.episodes, "agentview", split="all",
                                                                             min_steps=100)),
                       ("load_episodes camera 'wrist'", lambda: load_episodes(fx.episodes, "wrist", split="all")),
                       ("list_episodes split 'test'", lambda: list_episodes(fx.episodes, split="test")),
                       ("list_episodes no files", lambda: list_episodes([]))]:
        yield Case("load_episodes / list_episodes", name, call, fingerprint=lambda: file_digest(fx.episodes),
                   probe=lambda: list_episodes(fx.episodes, split="all"))


def _with_reader(fx: Fixtures, use: Callable[[Any], Any]) -> Any:
    from kairos_gym.data.episodes import EpisodeReader

    with EpisodeReader(fx.episodes) as reader:
        return use(reader)


def episode_writer(fx: Fixtures) -> Iterator[Case]:
    from kairos_gym.data.episodes import EpisodeReader, EpisodeWriter

    spec = fx.ckpt.env_spec
    T = 4
    good = {
        "obs": {"agentview_image": np.zeros((T, 64, 64, 3), np.uint8), "state": np.zeros((T, 8), np.float32)},
        "actions": np.zeros((T, 7), np.float32), "rewards": np.zeros(T), "dones": np.zeros(T, bool),
        "success": np.zeros(T, bool),
        "final_obs": {"agentview_image": np.zeros((64, 64, 3), np.uint8), "state": np.zeros(8, np.float32)},
    }
    path = fx.root / "writer.hdf5"

    def writer() -> EpisodeWriter:
        return fx.get("writer", lambda: EpisodeWriter(path, spec, fsync=False))

    def with_(**changes: Any) -> dict[str, Any]:
        episode = {**good, "obs": dict(good["obs"]), "final_obs": dict(good["final_obs"])}
        for key, value in changes.items():
            if key.startswith("obs_"):
                episode["obs"][key[4:]] = value
            elif key.startswith("final_"):
                episode["final_obs"][key[6:]] = value
            else:
                episode[key] = value
        return episode

    nan_actions = np.zeros((T, 7), np.float32)
    nan_actions[1, 2] = NAN
    calls: list[tuple[str, dict[str, Any]]] = [
        ("a NaN action", with_(actions=nan_actions)),
        ("an inf reward", with_(rewards=np.array([0, INF, 0, 0.0]))),
        ("a NaN state", with_(obs_state=np.full((T, 8), NAN, np.float32))),
        ("a NaN final state", with_(final_state=np.full(8, NAN, np.float32))),
        ("5-wide actions", with_(actions=np.zeros((T, 5), np.float32))),
        ("ragged actions", with_(actions=[[0.0] * 7, [0.0]])),
        ("string actions", with_(actions=np.full((T, 7), "a"))),
        ("float images", with_(obs_agentview_image=np.zeros((T, 64, 64, 3), np.float32))),
        ("32 px images", with_(obs_agentview_image=np.zeros((T, 32, 32, 3), np.uint8))),
        ("images for 3 steps", with_(obs_agentview_image=np.zeros((3, 64, 64, 3), np.uint8))),
        ("a missing observation key", {**with_(), "obs": {"state": good["obs"]["state"]}}),
        ("an extra observation key", with_(obs_extra=np.zeros((T, 1)))),
        ("rewards of 3", with_(rewards=np.zeros(3))),
        ("rewards as strings", with_(rewards=np.full(T, "x"))),
        ("no steps", with_(actions=np.zeros((0, 7), np.float32),
                           obs_agentview_image=np.zeros((0, 64, 64, 3), np.uint8),
                           obs_state=np.zeros((0, 8), np.float32), rewards=np.zeros(0),
                           dones=np.zeros(0, bool), success=np.zeros(0, bool))),
        ("states of another length", with_(states=np.zeros((T + 1, 5)))),
        ("a final state wider than the states", with_(states=np.zeros((T, 5)), final_state=np.zeros(6))),
    ]
    for name, episode in calls:
        yield Case("EpisodeWriter.write_episode", name, lambda e=episode: writer().write_episode(**e),
                   setup=writer, fingerprint=lambda: file_digest(path),
                   probe=lambda: writer().write_episode(**good))
    yield Case("EpisodeWriter.add_step", "a ragged action",
               lambda: writer().add_step({k: v[0] for k, v in good["obs"].items()}, [[0.0], [1.0, 2.0]], 0, False, False),
               setup=writer, fingerprint=lambda: (file_digest(path), writer().in_episode),
               probe=lambda: writer().write_episode(**good))
    yield Case("EpisodeWriter", "another env spec on an existing file",
               lambda: EpisodeWriter(path, fx.get("tiny_spec", lambda: _tiny_spec(fx))),
               setup=writer, fingerprint=lambda: file_digest(path), probe=lambda: EpisodeReader(path).close())
    yield Case("EpisodeWriter", "a directory that does not exist",
               lambda: EpisodeWriter(fx.root / "no" / "x.hdf5", spec), probe=lambda: EpisodeReader(path).close())
    yield Case("EpisodeWriter", "compression 'zip'",
               lambda: EpisodeWriter(fx.root / "z.hdf5", spec, compression="zip"),
               probe=lambda: EpisodeReader(path).close())


def _tiny_spec(fx: Fixtures) -> Any:
    from kairos_gym.imagined.checkpoint import load_env_checkpoint

    return load_env_checkpoint(fx.tiny_checkpoint).env_spec


def training(fx: Fixtures) -> Iterator[Case]:
    """Training configs and the trainer, on a small episode file of the tiny model's spec."""
    from kairos_gym.train.trainer import Trainer, load_config

    def config(name: str, *, model: str = 'preset = "tiny"', data: str = "", rest: str = "") -> Path:
        path = fx.root / f"train_{abs(hash(name))}.toml"
        train_data = fx.get("train_data", lambda: _train_data(fx))
        path.write_text(f"{rest}\n[model]\n{model}\n[data]\npaths = [\"{train_data}\"]\n"
                        f"val_fraction = 0.4\nreset_observations = 2\n{data}\n")
        return path

    configs: list[tuple[str, dict[str, str]]] = [
        ("world_model.clip_len 100 (longer than every episode)", {"rest": "[world_model]\nclip_len = 100"}),
        ("world_model.clip_len 1", {"rest": "[world_model]\nclip_len = 1"}),
        ("codec.steps 0", {"rest": "[codec]\nsteps = 0"}),
        ("world_model.lr -1", {"rest": "[world_model]\nlr = -1.0"}),
        ("an unknown key", {"rest": "[world_model]\nclip_length = 8"}),
        ("an unknown section", {"rest": "[optimiser]\nlr = 1"}),
        ("camera 'wrist'", {"data": 'camera = "wrist"'}),
        ("a misspelt [data] key", {"data": "reset_observation = 1"}),
        ("a duplicate [data] key", {"data": "val_fraction = 0.0"}),
        ("model preset 'huge'", {"model": 'preset = "huge"'}),
        ("model dim 33 (odd heads)", {"model": 'preset = "tiny"\ndim = 33'}),
        ("init a missing checkpoint", {"rest": 'init = "nowhere"'}),
        ("init a checkpoint of another shape", {"rest": f'init = "{fx.tiny_checkpoint}"',
                                                "model": 'preset = "tiny"\ndim = 64'}),
    ]
    for name, parts in configs:
        output = fx.root / f"run_{abs(hash(name))}"

        def call(name: str = name, parts: dict[str, str] = parts, output: Path = output) -> Any:
            return Trainer(load_config(config(name, **parts)), output, progress=False)

        yield Case("Trainer", name, call, fingerprint=lambda o=output: file_digest(o),
                   probe=lambda: load_config(config("good")))
    yield Case("Trainer", "stop_after -3",
               lambda: Trainer(load_config(config("good")), fx.root / "run_stop", progress=False, stop_after=-3),
               fingerprint=lambda: file_digest(fx.root / "run_stop"), probe=lambda: load_config(config("good")))


def _train_data(fx: Fixtures) -> Path:
    from kairos_gym.data.episodes import EpisodeWriter

    spec = _tiny_spec(fx)
    path = fx.root / "train.hdf5"
    with EpisodeWriter(path, spec, fsync=False) as writer:
        for i in range(4):
            T = 8
            writer.write_episode(
                obs={"agentview_image": np.zeros((T, 16, 16, 3), np.uint8), "state": np.zeros((T, 8), np.float32)},
                actions=np.zeros((T, 7), np.float32), rewards=np.zeros(T), dones=np.zeros(T, bool),
                success=np.zeros(T, bool), seed=i)
    return path


def command_line(fx: Fixtures) -> Iterator[Case]:
    """``kairos-gym`` sub-commands: refused with exit status 1 or 2 and a one-line message,
    nothing written."""
    from kairos_gym.cli import main

    out = fx.root / "cli_out"
    config = fx.root / "cli.toml"
    argvs: list[tuple[str, list[str]]] = []
    train = ["train", "--config", str(config), "--output", str(out), "--no-progress"]
    argvs += [(f"train {' '.join(extra)}", train + extra) for extra in (
        ["--stop-after", "-3"], ["--stop-after", "0"], ["--stop-after", "x"], ["--threads", "-1"],
        ["--threads", "0"], ["--device", "gpu"], ["--device", "cuda:99"], ["--device", ""])]
    if not torch.cuda.is_available():
        argvs.append(("train --device cuda (CPU-only build)", [*train, "--device", "cuda"]))
    argvs += [("train --config missing.toml", ["train", "--config", str(fx.root / "missing.toml"), "--output", str(out)]),
              ("train without --output", ["train", "--config", str(config)])]
    collect = ["collect", "--env", "kairos_gym/Robosuite-Lift-v0", "--output", str(out / "x.hdf5")]
    argvs += [(f"collect {' '.join(extra)}", collect + extra) for extra in (
        ["--episodes", "0"], ["--episodes", "-1"], ["--episodes", "2", "--noise", "nan"],
        ["--episodes", "2", "--noise", "-0.1"], ["--episodes", "2", "--seed", "-1"],
        ["--episodes", "2", "--image-size", "0"], ["--episodes", "2", "--cameras", ","],
        ["--episodes", "2", "--cameras", "a,a"], ["--episodes", "2", "--max-steps", "0"],
        ["--episodes", "2", "--policy", "teleport"], ["--episodes", "2", "--compression", "zip"],
        ["--episodes", "2", "--max-attempts", "3"])]
    argvs += [("collect --env unknown", ["collect", "--env", "kairos_gym/Nope-v0", "--episodes", "1",
                                          "--output", str(out / "x.hdf5")]),
              ("collect --output in a missing directory", [*collect[:3], "--episodes", "1", "--output",
                                                          str(fx.root / "no" / "dir" / "x.hdf5")])]
    argvs += [(f"demo {' '.join(extra)}", ["demo", *extra]) for extra in (
        ["--sample-steps", "0"], ["--sample-steps", "51"], ["--seed", "-1"], ["--steps", "0"],
        ["--scale", "-2"], ["--threads", "-1"])]
    argvs += [(f"core-demo {' '.join(extra)}", ["core-demo", *extra]) for extra in (["--steps", "0"], ["--seed", "-5"])]
    argvs += [(f"train-policy {' '.join(extra)}", ["train-policy", "--data", "x.hdf5", "--output", str(out), *extra])
              for extra in (["--lr", "0"], ["--lr", "inf"], ["--steps", "-1"], ["--chunk", "0"], ["--seed", "-1"])]
    argvs += [("an unknown command", ["teleport"]), ("train-policy --data missing.hdf5",
                                                    ["train-policy", "--data", str(fx.root / "m.hdf5"),
                                                     "--output", str(out), "--steps", "1"])]
    for name, argv in argvs:
        yield Case("kairos-gym CLI", name, lambda a=argv: _run_cli(main, a), fingerprint=lambda: file_digest(out))


class CommandFailed(Exception):
    """A command line refused with an exit status and a message (what a user sees)."""


def _run_cli(main: Callable[[list[str]], int], argv: list[str]) -> int:
    """Run ``main(argv)``; a refusal (exit status 1 or 2 with an ``error:`` line and no
    traceback) becomes :class:`CommandFailed`, which :func:`refused_on_the_command_line`
    recognises. Anything else propagates."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(argv)
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
    text = err.getvalue()
    if code in (1, 2) and "error" in text and "Traceback" not in text:
        raise CommandFailed(f"exit {code}: {text.strip().splitlines()[-1]}")
    if code == 0:
        return code
    raise RuntimeError(f"exit {code} without a clear message: {text[-300:]!r}")
