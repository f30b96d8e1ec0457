"""One-step end-effector error of a model's dynamics from true states, and an 11-step open-loop
error from step 20.

    python results/lift_dream/one_step_error.py CHECKPOINT FILE.hdf5 ...
"""
import sys

import numpy as np
import torch

from kairos_gym.data.dataset import ClipDataset
from kairos_gym.imagined.checkpoint import load_env_checkpoint

ckpt = load_env_checkpoint(sys.argv[1]); dit = ckpt.model.dit
for path in sys.argv[2:]:
    ds = ClipDataset(path, clip_len=1, cameras=(), state_keys=ckpt.observation_keys.state_keys)
    one, step_mag, k10 = [], [], []
    with torch.no_grad():
        for i in range(len(ds.episodes)):
            ep = ds.whole_episode(i)
            s = ep["state"][None].float(); a = ep["actions"][None].float()
            n = dit.normalize_state(s)
            pred = dit.denormalize_state(dit.proprio_dynamics.teacher_forced(n, a))[0].numpy()
            real = s[0].numpy()
            one.append(np.linalg.norm(pred[1:, 3:6] - real[2:, 3:6], axis=-1))   # skip the first (zero previous)
            step_mag.append(np.linalg.norm(real[2:, 3:6] - real[1:-1, 3:6], axis=-1))
            # 10-step open-loop from t=20
            w = dit.denormalize_state(dit.proprio_dynamics.unroll(n[:, 18:31], a[:, 18:31], start=2))[0].numpy()
            k10.append(np.linalg.norm(w[-1, 3:6] - real[30, 3:6]))
    one = np.concatenate(one) * 1000; mag = np.concatenate(step_mag) * 1000
    print(path.split('/')[-1], f"one-step eef err mean {one.mean():.2f} mm (median {np.median(one):.2f}, p90 {np.percentile(one,90):.2f}); eef step size mean {mag.mean():.2f} mm; 11-step open loop from t=20: {np.median(k10)*100:.2f} cm")
