"""A tiny training run on synthetic episodes: what every trainer test starts from."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from safetensors.torch import save_file

from kairos_gym.data.episodes import EpisodeWriter
from kairos_gym.model import checkpoint as ckpt
from kairos_gym.model.config import WorldModelConfig
from kairos_gym.model.dit import KairosDiT
from kairos_gym.model.video_codec import WanVideoCodec
from kairos_gym.train.config import TrainConfig
from kairos_gym.train.trainer import model_defaults_from_data, read_env_spec
from tests.data.conftest import make_episode, make_multikey_episode, make_multikey_spec, make_spec

try:  # Python 3.11+
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@contextlib.contextmanager
def gloo_group(rank: int, world: int, rendezvous: str | Path) -> Iterator[None]:
    """A CPU (gloo) process group of ``world`` spawned test processes, for the ``with`` body.

    The processes meet through the file ``rendezvous`` (which must not exist yet), not a TCP
    port: a port found free by the parent can be taken by another process before rank 0
    listens on it, and the TCP store lives in rank 0, so a rank still tearing down after rank
    0 has exited aborts its process. Every rank waits at a barrier before the group is
    destroyed, so none leaves while another still talks to it.
    """
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=Path(rendezvous).absolute().as_uri(),
                            rank=rank, world_size=world)
    try:
        yield
        dist.barrier()
    finally:
        dist.destroy_process_group()


TINY_MODEL = """
[model]
preset = "tiny"
"""


def write_data(path: Path, episodes: int = 6, steps: int = 12, multikey: bool = False) -> Path:
    """An episode file of ``episodes`` synthetic 16 px episodes (noisy frames so the codec learns).

    Args:
        multikey: use ``make_multikey_spec`` (several non-image keys, 10 state values)
            instead of ``make_spec`` (one ``state`` key of 9).
    """
    spec = make_multikey_spec() if multikey else make_spec()
    episode = make_multikey_episode if multikey else make_episode
    with EpisodeWriter(str(path), spec) as writer:
        for i in range(episodes):
            ep = episode(steps, seed=i)
            rng = np.random.default_rng(100 + i)
            noise = rng.integers(0, 40, ep["obs"]["agentview_image"].shape, dtype=np.uint8)
            ep["obs"]["agentview_image"] = ep["obs"]["agentview_image"] + noise
            writer.write_episode(**ep, seed=i)
    return path


def write_config(directory: Path, data: Path, extra: str = "", world_model: str = "", codec: str = "") -> Path:
    """A TOML config training the tiny preset for a handful of steps."""
    text = f"""
seed = 3
{TINY_MODEL}
[data]
paths = ["{data}"]
val_fraction = 0.34
reset_observations = 3
{extra}
[codec]
steps = 4
batch_size = 4
log_every = 2
checkpoint_every = 2
eval_every = 0
eval_frames = 8
statistics_frames = 16
{codec}
[world_model]
steps = 6
batch_size = 4
clip_len = 4
warmup_steps = 2
log_every = 2
checkpoint_every = 2
eval_every = 3
eval_episodes = 2
eval_horizon = 3
{world_model}
"""
    path = directory / "train.toml"
    path.write_text(text)
    return path


def write_release(directory: Path) -> dict[str, Path]:
    """Release-format weights at tiny size: the DiT under ``video_dit.`` names with an
    ``action_dit.`` expert and no action pathway, and a Wan VAE file (``tiny-wan``)."""
    cfg = WorldModelConfig.preset("tiny-wan")
    torch.manual_seed(11)
    dit = KairosDiT(cfg)
    with torch.no_grad():  # non-zero gates: the released weights shape every output
        for p in dit.parameters():
            p.normal_(0.0, 0.1)
    tensors = {
        f"video_dit.{k}": v.clone()
        for k, v in dit.state_dict().items()
        if not k.startswith(ckpt.NEW_IN_KAIROS_GYM)
    }
    tensors["action_dit.blocks.0.ffn.0.weight"] = torch.zeros(2, 2)
    save_file(tensors, str(directory / "kairos_dit.safetensors"))
    vae = WanVideoCodec(cfg).save_vae_weights(directory / "vae.safetensors")
    return {"dit": directory / "kairos_dit.safetensors", "vae": vae}


def recipe(data: Path, release: dict[str, Path], **finetune) -> TrainConfig:
    """configs/tiny_wan_lora.toml with its weight and data paths pointed at the test's files."""
    raw = tomllib.loads((CONFIGS / "tiny_wan_lora.toml").read_text())
    raw["data"]["paths"] = [str(data)]
    raw["codec_weights"] = str(release["vae"])
    raw["finetune"].update(released_dit=str(release["dit"]), **finetune)
    spec = read_env_spec((str(data),), "agentview")
    return TrainConfig.from_dict(raw, base_dir=CONFIGS, **model_defaults_from_data(spec))
