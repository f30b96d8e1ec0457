"""Where the carried end effector is at the first closing command, replayed through a model's
dynamics from the recorded first state, against where the real one was.

    python results/lift_dream/carried_arm.py CHECKPOINT data/lift_dream/n40_s2000_noise_0p3.hdf5 ...
"""
import sys

import numpy as np
import torch

from kairos_gym.data.dataset import ClipDataset
from kairos_gym.imagined.checkpoint import load_env_checkpoint

ckpt = load_env_checkpoint(sys.argv[1])
model = ckpt.model; dit = model.dit
print(ckpt.observation_keys.state_keys)
for path in sys.argv[2:]:
    ds = ClipDataset(path, clip_len=1, cameras=(), state_keys=ckpt.observation_keys.state_keys)
    eef_err, cube_err, eef40, cubez_real, cubez_im, closing_off_real, closing_off_im = [], [], [], [], [], [], []
    with torch.no_grad():
        for i in range(len(ds.episodes)):
            ep = ds.whole_episode(i)
            s = ep["state"][None].float(); a = ep["actions"][None].float()
            un = dit.denormalize_state(dit.proprio_dynamics.unroll(dit.normalize_state(s), a, start=1))[0].numpy()
            real = s[0].numpy()
            acts = a[0].numpy()
            close = np.nonzero(acts[:, -1] > 0)[0]
            t = int(close[0]) if len(close) else 40
            eef_err.append(np.linalg.norm(un[t, 3:6] - real[t, 3:6]) * 100)
            closing_off_real.append(np.linalg.norm(real[t, 3:5] - real[t, 0:2]) * 100)
            closing_off_im.append(np.linalg.norm(un[t, 3:5] - un[t, 0:2]) * 100)
            cubez_real.append(real[:, 2].max() - real[0, 2]); cubez_im.append(un[:, 2].max() - un[0, 2])
    f = lambda x: f"{np.median(x):.2f}"
    print(path.split('/')[-1], "eef err @close (cm) med", f(eef_err), "mean", f"{np.mean(eef_err):.2f}",
          "| xy offset gripper-cube @close real", f(closing_off_real), "imagined", f(closing_off_im),
          "| cube rise real>4cm", np.mean(np.array(cubez_real) > 0.04).round(2), "imagined", np.mean(np.array(cubez_im) > 0.04).round(2))
