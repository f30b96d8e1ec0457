"""The trainer under FSDP: two gloo processes train the model one process trains, and an
interrupted FSDP run resumes to the weights of an uninterrupted one.

The tiny preset (a convolutional codec, which FSDP leaves to DDP, then the sharded
denoiser) with ``[parallel] strategy = "fsdp"``, and the LoRA recipe over a frozen
release-format denoiser (configs/tiny_wan_lora.toml: frozen and trainable parameters in
one shard, adapters merged at export); the processes are started with
``torch.multiprocessing`` and join a gloo group as ``torchrun`` would make them.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from kairos_gym.model import checkpoint as ckpt
from kairos_gym.train.config import ParallelConfig, TrainConfig
from kairos_gym.train.distributed import Distributed
from kairos_gym.train.trainer import Trainer, load_config
from tests.train.conftest import gloo_group, recipe, write_config, write_data, write_release

# Noise and batches are dealt per global row, so the processes' halves of a batch are the
# rows one process sees; with no context frames but the first (and heads only on those) every
# process averages its loss over equally many terms, so the mean of the two means is the
# one-process loss.
EXACT = "context_fraction = 0.0\ncontext_noise_max = 0.0\nhead_sigma_max = 0.0"
FSDP = '\n[parallel]\nstrategy = "fsdp"\n'
DEADLINE_S = 300
"""A hung collective fails the test instead of hanging it."""


def _weights(directory: Path) -> dict[str, torch.Tensor]:
    return {
        **ckpt.load_tensors(directory / ckpt.MODEL_NAME),
        **{"codec." + k: v for k, v in ckpt.load_tensors(directory / ckpt.CODEC_NAME).items()},
    }


def _run(
    config: Path | TrainConfig, output: Path, d: Distributed, stop_after: int | None = None
) -> Path | None:
    if isinstance(config, Path):
        config = load_config(config)
    trainer = Trainer(config, output, d, progress=False, stop_after=stop_after,
                      evaluate_open_loop=False)
    return trainer.run()


def _lora_recipe(root: Path) -> TrainConfig:
    """configs/tiny_wan_lora.toml under FSDP, with the loss terms of :data:`EXACT`."""
    config = recipe(root / "eps.hdf5", {"dit": root / "kairos_dit.safetensors",
                                        "vae": root / "vae.safetensors"})
    world_model = dataclasses.replace(
        config.world_model, context_fraction=0.0, context_noise_max=0.0, head_sigma_max=0.0
    )
    return dataclasses.replace(
        config, world_model=world_model, parallel=ParallelConfig(strategy="fsdp")
    )


def _worker(rank: int, world: int, config: str, out: str) -> None:
    with gloo_group(rank, world, Path(out) / "rendezvous"):
        d = Distributed(rank=rank, world_size=world)
        _run(Path(config), Path(out) / "whole", d)
        # Interrupted at step 5 of the sharded world-model stage (the codec's 4 steps done):
        # the last step runs on the weights and Adam moments gathered into the checkpoint.
        assert _run(Path(config), Path(out) / "split", d, stop_after=5) is None
        _run(Path(config), Path(out) / "split", d)
        _run(_lora_recipe(Path(out)), Path(out) / "lora", d)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("fsdp_trainer")
    data = write_data(root / "eps.hdf5")
    write_release(root)
    config = write_config(root, data, world_model=EXACT)
    config.write_text(config.read_text() + FSDP)
    workers = mp.spawn(
        _worker, args=(2, str(config), str(root)), nprocs=2, join=False
    )
    deadline = time.monotonic() + DEADLINE_S
    while not workers.join(timeout=2):  # raises when a worker fails
        if time.monotonic() > deadline:
            for process in workers.processes:
                process.kill()
            pytest.fail(f"the FSDP processes did not finish in {DEADLINE_S} s (a collective "
                        "that not every rank takes part in?)")
    torch.set_num_threads(1)
    _run(config, root / "single", Distributed())  # alone: FSDP needs no wrapper
    _run(_lora_recipe(root), root / "lora_single", Distributed())
    return {name: root / name for name in ("whole", "split", "single", "lora", "lora_single")}


def _worst(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a if a[k].numel())


def test_two_fsdp_processes_train_the_model_one_process_trains(runs):
    fsdp, single = _weights(runs["whole"] / "model"), _weights(runs["single"] / "model")
    assert fsdp.keys() == single.keys()
    sharded = [k for k in fsdp if not k.startswith("codec.")]
    # The sharded denoiser agrees to float32 summation order (measured: 3e-7); the small
    # codec, trained by DDP under an FSDP config, as DDP does in test_trainer (6e-5).
    worst = _worst({k: fsdp[k] for k in sharded}, {k: single[k] for k in sharded})
    assert worst < 1e-5, f"2-process FSDP denoiser differs from 1 process by {worst}"
    worst = _worst(fsdp, single)
    assert worst < 1e-4, f"2-process codec weights differ from 1 process by {worst}"
    state = torch.load(runs["whole"] / "world_model" / "trainer_state.pt", weights_only=True)
    assert state["config"]["parallel"]["strategy"] == "fsdp"
    # The optimizer state was gathered whole (not rank 0's shard) for the checkpoint.
    moments = [s["exp_avg"] for s in state["optimizer"]["state"].values()]
    assert sum(m.numel() for m in moments) == sum(
        v.numel() for k, v in state["model"].items() if not k.startswith("state_")
    )


def test_an_interrupted_fsdp_run_resumes_to_the_uninterrupted_weights(runs):
    worst = _worst(_weights(runs["split"] / "model"), _weights(runs["whole"] / "model"))
    assert worst < 1e-6, f"the resumed FSDP run differs from the uninterrupted one by {worst}"


def test_two_fsdp_processes_fine_tune_with_lora_as_one_process_does(runs):
    fsdp = ckpt.load_tensors(runs["lora"] / "model" / ckpt.MODEL_NAME)
    single = ckpt.load_tensors(runs["lora_single"] / "model" / ckpt.MODEL_NAME)
    assert not any(".lora_" in k for k in fsdp)  # merged on export by rank 0
    worst = _worst(fsdp, single)
    assert worst < 1e-4, f"2-process FSDP LoRA weights differ from 1 process by {worst}"
