"""Fit a Door proprioceptive dynamics alone, from scratch, with the inputs under study.

The same `ProprioDynamics` and `proprio_loss` as the trainer's `[proprio]` stage, on the data
of `configs/door_adapt_windows96.toml` (its frame files' states and actions, and the
state-only episodes): 32-step windows every 2 steps, the windows at a reset told apart,
batch 256, 3,000 steps of AdamW at 1e-3 (one cycle). What varies:

- `--joints`: the carried state also holds the arm's 7 joint angles and 7 joint velocities,
  read from each file's recorded simulator states (`states`: time, qpos, qvel), so the
  dynamics knows the arm's configuration and how fast it moves. The policy-visible 13 entries
  stay first.
- `--hidden`: the width of the dynamics' two hidden layers (the shipped: 256).
- `--history`: the dynamics' `action_history` input (the previous action, the difference
  before the last).
- `--reset-weight`: the weight of the windows that start at a reset.

    python results/door_adapt/dynamics_inputs/fit.py --output runs/dynamics_inputs/base
    python results/door_adapt/dynamics_inputs/fit.py --joints --output runs/dynamics_inputs/joints

Writes `OUTPUT.pt` (weights, normalisation, options); `measure.py` replays them.
"""
import argparse
import glob
import time

import h5py
import numpy as np
import torch

from kairos_gym.model.proprio import ProprioDynamics
from kairos_gym.train.objectives import proprio_loss

TRAIN = ([f"data/door_roll_obs/{name}.hdf5" for name in (
    "n60_s2000", "n60_s2000_noise_0p3", "n60_s2000_noise_0p6", "n60_s2000_open",
    "n60_s2000_interrupt_0p1", "n60_s2000_gripper_0p1", "n15_s1500", "n5_s800", "n60_s300")]
    + ["data/door/expert0.hdf5", "data/door/expert10.hdf5"] + sorted(glob.glob("data/door_state/*.hdf5")))
VISIBLE = 13
"""object_state (handle x, y, z, hinge, latch) then state (end effector x, y, z, axis-angle, fingers)."""


def episodes(path: str, joints: bool):
    """Per episode: states float32 ``[T, 13 (+14)]`` and the actions leading into them ``[T, 7]``."""
    with h5py.File(path) as f:
        for name in f["data"]:
            group = f["data"][name]
            obs = np.concatenate([group["obs/object_state"][:], group["obs/state"][:]], 1)
            sim = group["states"][:]
            if "final_obs" in group:
                obs = np.concatenate([obs, np.concatenate(
                    [group["final_obs/object_state"][:], group["final_obs/state"][:]], 1)])
                sim = np.concatenate([sim, group["final_states"][:]])
            actions = group["actions"][:]
            n = min(len(obs), len(actions) + 1)
            leading = np.zeros((n, actions.shape[1]), np.float32)
            leading[1:] = actions[: n - 1]
            # Door's simulator state: time, qpos (7 arm joints, 2 fingers, hinge, latch), qvel.
            extra = np.concatenate([sim[:n, 1:8], sim[:n, 12:19]], 1) if joints else sim[:n, :0]
            yield np.concatenate([obs[:n], extra], 1).astype(np.float32), leading


def load(path: str) -> tuple[ProprioDynamics, np.ndarray, np.ndarray, dict]:
    """A fitted dynamics, its state mean and spread, and its options."""
    saved = torch.load(path, weights_only=False)
    options = saved["options"]
    dynamics = ProprioDynamics(len(saved["mean"]), 7, options["hidden"], action_history=options["history"])
    dynamics.load_state_dict(saved["weights"])
    return dynamics.eval(), saved["mean"], saved["std"], options


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--joints", action="store_true")
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--history", action="store_true")
    parser.add_argument("--reset-weight", type=float, default=1.0)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--window", type=int, default=32)
    parser.add_argument("--output", required=True)
    args = parser.parse_args()
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    train = [e for path in TRAIN for e in episodes(path, args.joints)]
    every = np.concatenate([s for s, _ in train])
    mean, std = every.mean(0), np.maximum(every.std(0), 1e-3)
    width = args.window + 1
    states, actions, at_reset = [], [], []
    for s, a in train:
        for start in range(0, len(s) - width + 1, 2):
            states.append((s[start:start + width] - mean) / std)
            actions.append(a[start:start + width])
            at_reset.append(start == 0)
    states, actions, at_reset = (torch.tensor(np.stack(x)) for x in (states, actions, at_reset))
    dynamics = ProprioDynamics(states.shape[-1], 7, args.hidden, action_history=args.history)
    optimizer = torch.optim.AdamW(dynamics.parameters(), lr=1e-3, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=1e-3, total_steps=args.steps, pct_start=0.05)
    start = time.time()
    for step in range(args.steps):
        rows = torch.as_tensor(rng.integers(0, len(states), 256))
        loss, _ = proprio_loss(dynamics, states[rows], actions[rows], at_reset=at_reset[rows],
                               reset_weight=args.reset_weight)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(dynamics.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        if step % 500 == 0:
            print(step, f"{loss.item():.4f}", f"{time.time() - start:.0f}s", flush=True)
    options = {k: getattr(args, k) for k in ("joints", "hidden", "history", "reset_weight", "steps", "window")}
    torch.save({"weights": dynamics.state_dict(), "mean": mean, "std": std, "options": options,
                "seconds": time.time() - start}, args.output + ".pt")


if __name__ == "__main__":
    main()
