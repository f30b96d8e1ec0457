"""Door success read two ways off the carried state, replayed through a model's dynamics alone.

Each episode's first recorded state is carried through the dynamics under the recorded actions
(as `kairos_gym.eval.dynamics_replay` does), then success is read by the outcome head
(probability > 0.5 at some step) and by robosuite's own rule (hinge angle, object_state[3],
above 0.3 rad at some step). The rule applied to the recorded states is printed as a check
that it is the simulator's.

    python results/door_adapt/rule/rule_vs_head.py CHECKPOINT EPISODES.hdf5 ...
"""
import sys

import numpy as np
import torch

from kairos_gym.data.dataset import ClipDataset
from kairos_gym.imagined.checkpoint import load_env_checkpoint

HINGE, OPEN = 3, 0.3  # the hinge's entry in the state (objects first) and robosuite's threshold


def first_step(flags: np.ndarray) -> int | None:
    return int(np.argmax(flags)) if flags.any() else None


def main(checkpoint: str, paths: list[str]) -> None:
    ckpt = load_env_checkpoint(checkpoint)
    dit = ckpt.model.dit
    dynamics = dit.proprio_dynamics
    agree: dict[str, list[bool]] = {"head": [], "rule": [], "rule on recorded states": []}
    for path in paths:
        data = ClipDataset(path, clip_len=1, cameras=(), state_keys=ckpt.observation_keys.state_keys)
        real, read, onset = [], {"head": [], "rule": [], "recorded": []}, {"head": [], "rule": []}
        for i in range(len(data.episodes)):
            episode = data.whole_episode(i)
            states, actions = episode["state"][None], episode["actions"].float()[None]
            with torch.no_grad():
                carried = dynamics.unroll(dit.normalize_state(states), actions, start=1)
                head = (dynamics.outcomes(carried)["success"].sigmoid()[0, 1:] > 0.5).numpy()
                rule = (dit.denormalize_state(carried)[0, 1:, HINGE] > OPEN).numpy()
            success = episode["success"].numpy().astype(bool)[-len(head):]
            real.append(bool(success.any()))
            read["head"].append(bool(head.any()))
            read["rule"].append(bool(rule.any()))
            read["recorded"].append(bool((states[0, 1:, HINGE] > OPEN).any()))
            for name, flags in (("head", head), ("rule", rule)):
                if success.any() and flags.any():
                    onset[name].append(first_step(flags) - first_step(success))
        real_ = np.array(real)
        for name, key in (("head", "head"), ("rule", "rule"), ("rule on recorded states", "recorded")):
            agree[name] += list(np.array(read[key]) == real_)
        parts = [f"{path.split('/')[-1]:34s} real {real_.mean():.2f}"]
        for name in ("head", "rule"):
            shift = f"{np.mean(onset[name]):+.1f}" if onset[name] else "n/a"
            parts.append(f"{name} {np.mean(read[name]):.2f} (agree {np.mean(np.array(read[name]) == real_):.2f}, "
                         f"onset {shift})")
        parts.append(f"rule-on-real agree {np.mean(np.array(read['recorded']) == real_):.2f}")
        print(" ".join(parts))
    print("all", {name: round(float(np.mean(v)), 3) for name, v in agree.items()}, len(agree["head"]))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
