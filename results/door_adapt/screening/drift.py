"""The carried state's drift: each Door version's dynamics replayed open loop under the recorded
actions of 16 real `n60_s2000` rollouts of the second BC family, the mean absolute error of
every state entry at steps 50 and 100 (object_state: handle x, y, z, hinge, latch; state:
end-effector x, y, z, axis-angle x, y, z, two fingers).

    python results/door_adapt/screening/drift.py > results/door_adapt/screening/drift.txt
"""
import numpy as np
import torch

from kairos_gym.data.dataset import ClipDataset
from kairos_gym.imagined.checkpoint import load_env_checkpoint

DATA = "data/door_roll_obs2/f2_n60_s2000.hdf5"
VERSIONS = ("runs/door_adapt_rollouts_det/model", "runs/door_adapt_long_windows/model",
            "runs/door_adapt_windows96/model", "runs/door_adapt_episode_windows/model")

np.set_printoptions(precision=3, suppress=True, linewidth=120)
for checkpoint in VERSIONS:
    ckpt = load_env_checkpoint(checkpoint)
    dit = ckpt.model.dit
    data = ClipDataset(DATA, clip_len=1, cameras=(), state_keys=ckpt.observation_keys.state_keys)
    errors = {50: [], 100: []}
    for i in range(len(data.episodes)):
        episode = data.whole_episode(i)
        real = episode["state"][None]
        with torch.no_grad():
            carried = dit.denormalize_state(dit.proprio_dynamics.unroll(
                dit.normalize_state(real), episode["actions"].float()[None], start=1))[0]
        for step, store in errors.items():
            store.append((carried[step] - real[0, step]).abs().numpy())
    print(checkpoint)
    for step, store in errors.items():
        print(f"  step {step:3d}:", np.mean(store, axis=0))
