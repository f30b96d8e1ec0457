"""One-step errors of a model's dynamics prediction (teacher-forced from the recorded states),
per state entry, in normalised units (the state's spread): how far the real next state lies
from the prediction.

    python results/lift_stochastic/one_step_spread.py kairos_gym/assets/lift_objects \
        data/lift_state/test_expert.hdf5 data/lift_state/test_noise05.hdf5
"""

import sys

import numpy as np
import torch

from kairos_gym.data.dataset import ClipDataset
from kairos_gym.imagined.checkpoint import load_env_checkpoint

ckpt = load_env_checkpoint(sys.argv[1])
dit = ckpt.model.dit
for path in sys.argv[2:]:
    data = ClipDataset(path, clip_len=1, cameras=(), state_keys=ckpt.state_keys)
    errors = []
    with torch.no_grad():
        for i in range(len(data.episodes)):
            ep = data.whole_episode(i)
            states = dit.normalize_state(ep["state"][None].float())
            predicted = dit.proprio_dynamics.teacher_forced(states, ep["actions"][None].float())
            errors.append((predicted - states[:, 1:])[0].numpy())
    spread = np.concatenate(errors).std(0)
    print(f"{path}: {len(np.concatenate(errors))} steps, error spread per entry {np.round(spread, 4)}")
