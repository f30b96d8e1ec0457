"""Replay held-out second-family rollouts through fitted Door dynamics and measure what a
closed loop depends on.

For every episode of the second BC family's recorded real rollouts (`data/door_roll_obs2/f2_*`,
nine files, 144 episodes: no dynamics here was fitted on them), the dynamics carries the state
from the recorded first one under the recorded actions (as the imagined env does) and we report:

- the end effector's distance from the real one (cm) at steps 1, 2, 3, 5, 10, 25, 50, 100,
  over the episodes that succeed in reality and over those that fail;
- the state divergence of five BC policies of that family: each is queried on its own
  rollouts' real camera frames with the real non-image observations (the reference) and
  with the carried ones (the 13 policy-visible entries), and the mean absolute difference of
  the actions is divided by the spread of its real-input actions (as
  `kairos_gym.evaluation.policy_divergence`'s `imagined_state`, here over 100 steps and all 16
  episodes of each file).

    python results/door_adapt/dynamics_inputs/measure.py shipped runs/dynamics_inputs/*.pt \
        > results/door_adapt/dynamics_inputs/measure.txt
    python results/door_adapt/dynamics_inputs/measure.py runs/door_history_wide_windows96/model \
        runs/door_joints/model runs/door_joints_windows96/model > .../measure_models.txt

`shipped` is the shipped Door model's dynamics (`kairos_gym/assets/door`); a directory is read
as an environment checkpoint.
"""
import glob
import json
import sys
from pathlib import Path

import h5py
import numpy as np
import torch

from kairos_gym.data.reader import EpisodeReader
from kairos_gym.imagined.checkpoint import load_env_checkpoint
from kairos_gym.policies.learned import BCPolicy

sys.path.insert(0, str(Path(__file__).parent))
from fit import VISIBLE, episodes, load

HELD_OUT = sorted(glob.glob("data/door_roll_obs2/f2_*.hdf5"))
STEPS = (1, 2, 3, 5, 10, 25, 50, 100)
PAIRS = ("n60_s2000", "n15_s1500", "n5_s800", "n2_s400", "n60_s300")
"""Policies of the second family, each judged on its own rollouts (`f2_<name>.hdf5`)."""


STUDY = {"object_state": slice(0, 5), "state": slice(5, 13), "joints": slice(13, 27)}
"""The study's state layout (`fit.episodes`); a checkpoint's is its keys' order."""


def checkpoint_order(keys) -> np.ndarray:
    """Indices that take a study-layout state to a checkpoint's with these state keys."""
    return np.concatenate([np.arange(27)[STUDY[k]] for k in keys])


def unroller(name: str):
    """``(carry(states, actions) -> carried states [T, S], reads joints)`` of a dynamics."""
    if name == "shipped" or Path(name).is_dir():
        checkpoint = load_env_checkpoint("kairos_gym/assets/door" if name == "shipped" else name)
        dit = checkpoint.model.dit
        keys = checkpoint.state_keys
        order = checkpoint_order(keys)
        back = np.argsort(order)

        def carry(s, a):
            carried = dit.denormalize_state(dit.proprio_dynamics.unroll(
                dit.normalize_state(torch.tensor(s[:, order])[None]), torch.tensor(a)[None], start=1))[0]
            return carried.numpy()[:, back]
        return carry, "joints" in keys
    dynamics, mean, std, options = load(name)

    def carry(s, a):
        normalised = torch.tensor((s - mean) / std)[None]
        return dynamics.unroll(normalised, torch.tensor(a)[None], start=1)[0].numpy() * std + mean
    return carry, options["joints"]


def first_action(output) -> np.ndarray:
    out = np.asarray(output)
    return out[:, 0] if out.ndim == 3 else out


def measure(name: str, policies: dict) -> dict:
    carry, joints = unroller(name)
    errors = {True: [], False: []}
    with torch.no_grad():
        for path in HELD_OUT:
            with h5py.File(path) as f:
                success = [bool(f["data"][n]["success"][:].any()) for n in f["data"]]
            for k, (s, a) in enumerate(episodes(path, joints)):
                carried = carry(s, a)
                errors[success[k]].append(np.linalg.norm(carried[1:101, 5:8] - s[1:101, 5:8], axis=-1) * 100)
        divergence = {}
        for policy_name in PAIRS:
            path, policy = f"data/door_roll_obs2/f2_{policy_name}.hdf5", policies[policy_name]
            diffs, reals = [], []
            with EpisodeReader(path) as reader:
                for i, (s, a) in enumerate(episodes(path, joints)):
                    carried = carry(s, a)[1:101, :VISIBLE].astype(np.float32)
                    frames = reader[i].frames("sideview_image", 1, 101)
                    real = first_action(policy.act_batch(
                        {"sideview_image": frames, "object_state": s[1:101, :5], "state": s[1:101, 5:VISIBLE]}, [""] * 100))
                    imagined = first_action(policy.act_batch(
                        {"sideview_image": frames, "object_state": carried[:, :5], "state": carried[:, 5:]}, [""] * 100))
                    reals.append(real)
                    diffs.append(np.abs(imagined - real))
            divergence[policy_name] = float((np.concatenate(diffs) / np.concatenate(reals).std(0)).mean())
    return {
        "dynamics": name,
        "eef_error_cm": {label: {t: float(np.stack(errors[ok])[:, t - 1].mean()) for t in STEPS}
                         for label, ok in (("success", True), ("failure", False))},
        "episodes": {"success": len(errors[True]), "failure": len(errors[False])},
        "state_divergence": divergence,
        "state_divergence_mean": float(np.mean(list(divergence.values()))),
    }


def main() -> None:
    policies = {name: BCPolicy.load(f"runs/bc_door_obs2/{name}") for name in PAIRS}
    for name in sys.argv[1:]:
        row = measure(name, policies)
        success, failure = row["eef_error_cm"]["success"], row["eef_error_cm"]["failure"]
        label = Path(name).parent.name if Path(name).is_dir() else Path(name).stem
        print(f"{label}: state divergence {row['state_divergence_mean']:.3f} "
              + " ".join(f"{v:.3f}" for v in row["state_divergence"].values()))
        print("  end effector off (cm) at steps " + "/".join(map(str, STEPS)))
        print("    succeeding:", " ".join(f"{success[t]:.2f}" for t in STEPS))
        print("    failing:   ", " ".join(f"{failure[t]:.2f}" for t in STEPS))
        print("  json:", json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
