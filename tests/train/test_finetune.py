"""Fine-tuning a released denoiser at tiny size: LoRA adapters and frozen starting weights.

The recipe is configs/tiny_wan_lora.toml (the 4B recipe, configs/kairos4b_lora.toml, at test
size), run as it is on synthetic episodes over a release-format DiT the tests write.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from kairos_gym.errors import CheckpointError
from kairos_gym.imagined.checkpoint import load_env_checkpoint
from kairos_gym.imagined.env import ImaginedEnv
from kairos_gym.model import checkpoint as ckpt
from kairos_gym.model.config import WorldModelConfig
from kairos_gym.model.dit import KairosDiT
from kairos_gym.model.world_model import WorldModel
from kairos_gym.train.checkpointing import STATE_NAME
from kairos_gym.train.config import FinetuneConfig, TrainConfig
from kairos_gym.train.finetune import (
    LoRALinear,
    add_lora,
    apply_finetune,
    block_linear_names,
    check_lora_targets,
    merge_lora,
)
from kairos_gym.train.trainer import Trainer
from tests.train.conftest import CONFIGS, recipe, write_data, write_release


# --- the LoRA module ---
def test_a_fresh_adapter_changes_nothing_and_merging_keeps_the_function():
    torch.manual_seed(0)
    base = torch.nn.Linear(6, 5)
    x = torch.randn(3, 6)
    before = base(x)
    lora = LoRALinear(base, rank=2, alpha=4.0)
    torch.testing.assert_close(lora(x), before, atol=0, rtol=0)  # B starts at zero
    assert lora.weight is base.weight and not lora.weight.requires_grad
    assert not lora.bias.requires_grad and lora.lora_A.requires_grad and lora.lora_B.requires_grad
    with torch.no_grad():
        lora.lora_B.normal_()
    adapted = lora(x)
    assert (adapted - before).abs().max() > 1e-2
    torch.testing.assert_close(lora.merged()(x), adapted, atol=1e-5, rtol=1e-5)
    expected = base.weight + 2.0 * lora.lora_B @ lora.lora_A  # scale = alpha / rank
    torch.testing.assert_close(lora.merged().weight, expected)


def test_adapters_go_on_the_targets_of_every_block_and_merge_away():
    cfg = WorldModelConfig.preset("tiny")
    dit = KairosDiT(cfg)
    plain_names = set(dit.state_dict())
    adapted = add_lora(dit, ["self_attn.q", "ffn.0"], rank=2, alpha=2.0)
    # ffn.0 in all four blocks, self_attn.q only in the three attention blocks.
    kinds = [cfg.layer_kind(i) for i in range(cfg.num_layers)]
    assert len(adapted) == 4 + sum(k != "gated" for k in kinds)
    assert "blocks.0.self_attn.q.lora_A" in dit.state_dict()
    assert merge_lora(dit) == len(adapted)
    assert set(dit.state_dict()) == plain_names


def test_the_block_linears_are_named_for_any_model_size():
    names = block_linear_names(WorldModelConfig.preset("kairos-4b"))  # on meta: no memory
    assert {"self_attn.q", "gated_delta.o_proj", "cross_attn.k", "ffn.2"} <= set(names)
    with pytest.raises(ValueError, match=r"lora_targets \['attn.q'\] are not linear layers"):
        check_lora_targets(WorldModelConfig.preset("tiny"), ["ffn.0", "attn.q"])
    with pytest.raises(ValueError, match="cross_attn.q"):  # the tiny preset has no text
        check_lora_targets(WorldModelConfig.preset("tiny"), ["cross_attn.q"])


def test_frozen_mode_leaves_only_the_new_pathway_trainable():
    dit = KairosDiT(WorldModelConfig.preset("tiny"))
    new = ["action_embedding.0.weight", "no_action_embedding", "state_mean"]
    trainable = apply_finetune(dit, "frozen", new)
    assert trainable == ["action_embedding.0.weight", "no_action_embedding"]
    with pytest.raises(ValueError, match="provide every one"):
        apply_finetune(KairosDiT(WorldModelConfig.preset("tiny")), "frozen", ["state_mean"])
    with pytest.raises(ValueError, match="'full', 'frozen' or 'lora', got 'half'"):
        apply_finetune(dit, "half", new)


# --- runs of the tiny recipe ---
@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_data(tmp_path_factory.mktemp("data") / "eps.hdf5", episodes=4, steps=12)


@pytest.fixture(scope="module")
def release(tmp_path_factory) -> dict[str, Path]:
    return write_release(tmp_path_factory.mktemp("release"))


def released_tensors(release: dict[str, Path]) -> dict[str, torch.Tensor]:
    tensors, _ = ckpt.map_released_dit_keys(ckpt.load_tensors(release["dit"]))
    return tensors


def train(config: TrainConfig, output: Path, stop_after: int | None = None) -> Path | None:
    torch.set_num_threads(1)
    trainer = Trainer(config, output, progress=False, stop_after=stop_after,
                      evaluate_open_loop=False)
    return trainer.run()


def split_run(config: TrainConfig, output: Path) -> tuple[dict, dict, Path]:
    """Train to step 3, keep that training state, resume to the end: (state at 3, final state,
    the environment checkpoint)."""
    assert train(config, output, stop_after=3) is None
    shutil.copy(output / "world_model" / STATE_NAME, output / "step3.pt")
    result = train(config, output)
    at3, final = (
        torch.load(p, weights_only=True)["model"]
        for p in (output / "step3.pt", output / "world_model" / STATE_NAME)
    )
    return at3, final, result


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory, data, release):
    out = tmp_path_factory.mktemp("lora")
    config = recipe(data, release)
    at3, final, model_dir = split_run(config, out / "split")
    whole = train(config, out / "whole")
    return {"config": config, "at3": at3, "final": final, "model": model_dir, "whole": whole}


def test_lora_trains_the_adapters_and_never_the_released_weights(lora_run, release):
    released = released_tensors(release)
    at3, final = lora_run["at3"], lora_run["final"]
    adapters = [k for k in final if ".lora_" in k]
    # 6 targets over 4 blocks (3 attention, 1 Gated DeltaNet): q, v and the MLP in every block.
    assert len(adapters) == 2 * (4 * 2 + 3 * 2 + 1 * 2)
    for name, value in released.items():
        assert torch.equal(at3[name], value) and torch.equal(final[name], value), name
    for name in adapters:
        assert (final[name] - at3[name]).abs().max() > 0, f"{name} did not train"
    new = [k for k in final if k.startswith(("action_embedding.", "outcome_head."))]
    assert new and all((final[k] - at3[k]).abs().max() > 0 for k in new)


def test_the_exported_lora_model_holds_merged_weights_and_reloads_with_the_same_outputs(
    lora_run, release
):
    config, final = lora_run["config"], lora_run["final"]
    exported = ckpt.load_tensors(lora_run["model"] / ckpt.MODEL_NAME)
    plain = KairosDiT(config.model).state_dict()
    assert exported.keys() == plain.keys()  # the plain model's names: no adapters
    scale = config.finetune.lora_alpha / config.finetune.lora_rank
    q = "blocks.0.self_attn.q"
    merged = final[f"{q}.weight"] + scale * final[f"{q}.lora_B"] @ final[f"{q}.lora_A"]
    torch.testing.assert_close(exported[f"{q}.weight"], merged)
    assert not torch.equal(exported[f"{q}.weight"], final[f"{q}.weight"])
    released = released_tensors(release)
    k = "blocks.0.self_attn.k.weight"  # not a target: exported as released
    assert torch.equal(exported[k], released[k])

    # The adapted model as it trained (adapters separate) and the exported one agree.
    adapted = WorldModel(config.model)
    add_lora(adapted.dit, config.finetune.lora_targets, config.finetune.lora_rank,
             config.finetune.lora_alpha)
    adapted.dit.load_state_dict(final)
    loaded = load_env_checkpoint(lora_run["model"])
    g = torch.Generator().manual_seed(0)
    latents = torch.randn(2, 3, *config.model.latent_shape, generator=g)
    sigmas = torch.rand(2, 3, generator=g)
    actions = torch.randn(2, 3, config.model.action_dim_per_latent, generator=g)
    with torch.no_grad():
        expected = adapted.dit.velocity(latents, sigmas, actions)
        got = loaded.model.dit.velocity(latents, sigmas, actions)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    assert loaded.info["training"]["finetune"]["mode"] == "lora"

    env = ImaginedEnv(loaded, done_threshold=1.0)  # the imagined env loads it unchanged
    env.reset(seed=0)
    for _ in range(4):
        obs, *_ = env.step(np.zeros(7, np.float32))
    assert obs["agentview_image"].shape == (16, 16, 3)
    env.close()


def test_an_interrupted_lora_run_ends_where_an_uninterrupted_one_does(lora_run):
    a = ckpt.load_tensors(lora_run["whole"] / ckpt.MODEL_NAME)
    b = ckpt.load_tensors(lora_run["model"] / ckpt.MODEL_NAME)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), "the resumed LoRA run differs"


def test_frozen_fine_tuning_trains_only_the_new_pathway(tmp_path, data, release):
    at3, final, model_dir = split_run(recipe(data, release, mode="frozen"), tmp_path / "run")
    released = released_tensors(release)
    assert not any(".lora_" in k for k in final)
    exported = ckpt.load_tensors(model_dir / ckpt.MODEL_NAME)
    for name, value in released.items():
        assert torch.equal(final[name], value) and torch.equal(exported[name], value), name
    changed = sorted(k for k in final if (final[k].float() - at3[k].float()).abs().max() > 0)
    assert changed and all(k.startswith(ckpt.NEW_IN_KAIROS_GYM) for k in changed), changed
    assert "action_embedding.0.weight" in changed
    info = load_env_checkpoint(model_dir).info["training"]["finetune"]
    new_params = sum(
        v.numel() for k, v in final.items() if k.startswith(ckpt.NEW_IN_KAIROS_GYM)
        and k not in ("state_mean", "state_std")
    )
    assert info == {"mode": "frozen", "released_dit": str(release["dit"]),
                    "trainable_parameters": new_params}


# --- bad settings fail before training ---
@pytest.mark.parametrize("finetune, message", [
    ({"mode": "half"}, r"finetune.mode must be one of \('full', 'frozen', 'lora'\), got 'half'"),
    ({"lora_rank": 0}, "finetune.lora_rank must be a positive integer, got 0"),
    ({"lora_rank": 2.5}, "finetune.lora_rank must be a positive integer, got 2.5"),
    ({"lora_alpha": -1}, "finetune.lora_alpha must be a number > 0, got -1"),
    ({"lora_targets": "ffn.0"}, "finetune.lora_targets must be a list of linear names"),
    ({"lora_targets": []}, "'lora' needs at least one finetune.lora_targets"),
    ({"released_dit": 3}, "finetune.released_dit must be a path"),
    ({"lora": 3}, r"\[finetune\]: unknown keys \['lora'\]"),
])
def test_bad_finetune_values_are_named(finetune, message):
    raw = {"data": {"paths": ["e.hdf5"]}, "model": {"preset": "tiny-wan"},
           "finetune": {"released_dit": "dit.safetensors", "mode": "lora", **finetune}}
    with pytest.raises(ValueError, match=message):
        TrainConfig.from_dict(raw)


@pytest.mark.parametrize("raw, message", [
    ({"finetune": {"mode": "frozen"}}, "keeps starting weights frozen, but there are none"),
    ({"finetune": {"released_dit": "d.safetensors"}},
     "denoises Wan VAE latents; this model's codec is 'conv'"),
    ({"model": {"preset": "tiny-wan"}, "init": "run/model",
      "finetune": {"released_dit": "d.safetensors"}}, "both give the starting denoiser"),
    ({"codec_weights": "vae.safetensors"},
     "codec_weights are the Wan VAE's weights; this model's codec is 'conv'"),
    ({"model": {"preset": "tiny-wan"}, "init": "run/model", "codec_weights": "vae.safetensors"},
     "init's environment checkpoint brings its own VAE"),
])
def test_starting_weights_that_cannot_work_together_are_refused(raw, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig.from_dict({"data": {"paths": ["e.hdf5"]}, **raw})


def test_the_trainer_checks_the_release_and_targets_before_training(tmp_path, data, release):
    base = recipe(data, release)

    def with_finetune(**changes):
        return dataclasses.replace(base, finetune=dataclasses.replace(base.finetune, **changes))

    with pytest.raises(CheckpointError, match="missing released DiT weights file"):
        Trainer(with_finetune(released_dit=str(tmp_path / "no.safetensors")), tmp_path / "a")
    other = tmp_path / "other.safetensors"
    wide = KairosDiT(WorldModelConfig.preset("tiny-wan", ffn_dim=96)).state_dict()
    wide = {k: v for k, v in wide.items() if not k.startswith(ckpt.NEW_IN_KAIROS_GYM)}
    save_file(wide, str(other))
    with pytest.raises(CheckpointError, match=r"does not fit \[model\].*blocks.0.ffn.0.weight"):
        Trainer(with_finetune(released_dit=str(other)), tmp_path / "b")
    with pytest.raises(ValueError, match=r"lora_targets \['self_attn.qq'\] are not linear"):
        Trainer(with_finetune(lora_targets=("self_attn.qq",)), tmp_path / "c")
    with pytest.raises(CheckpointError, match="missing VAE weights file"):
        Trainer(base, tmp_path / "d", codec_weights=tmp_path / "no-vae.safetensors")
    assert not any((tmp_path / d).exists() for d in "abcd")  # refused before any output


def test_frozen_over_an_init_that_lacks_nothing_is_refused(tmp_path, data, lora_run):
    # The LoRA run's export has every parameter of the model: frozen would train nothing.
    config = dataclasses.replace(
        lora_run["config"], init=str(lora_run["model"]), codec_weights=None,
        finetune=FinetuneConfig(mode="frozen"),
    )
    with pytest.raises(ValueError, match="provide every one; use mode = 'lora' or 'full'"):
        Trainer(config, tmp_path / "x")


def test_the_4b_recipe_parses_with_its_settings():
    config = TrainConfig.from_toml(CONFIGS / "kairos4b_lora.toml")
    assert config.model_preset == "kairos-4b" and config.model.codec == "wan"
    assert config.finetune.mode == "lora" and config.finetune.lora_rank == 32
    assert config.codec_weights.endswith("weights/Wan2.1-VAE/diffusion_pytorch_model.safetensors")
    assert config.parallel.strategy == "fsdp"
    assert (config.world_model.clip_len - 1) % 4 == 0 and config.world_model.eval_horizon % 4 == 0
    check_lora_targets(config.model, config.finetune.lora_targets)  # on meta: every name exists
    assert config.to_dict()["finetune"]["lora_targets"] == list(config.finetune.lora_targets)
