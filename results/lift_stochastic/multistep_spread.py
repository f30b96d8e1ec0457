"""Do drawn unrolls spread as far as the real states do? From held-out states (steps 0, 10, 20,
30 of each episode), 32 drawn unrolls under the recorded actions; after k steps, the rms of
(real - mean of the draws) / (their standard deviation), over the drawn entries and for the
end effector's position. 1: calibrated; below 1: the draws spread wider than the real errors.

    python results/lift_stochastic/multistep_spread.py kairos_gym/assets/lift_objects \
        data/lift_state/test_expert.hdf5 data/lift_state/test_noise05.hdf5
"""

import sys

import numpy as np
import torch

from kairos_gym.data.dataset import ClipDataset
from kairos_gym.imagined.checkpoint import load_env_checkpoint

HORIZONS, DRAWS = (1, 3, 5, 10, 20), 32

ckpt = load_env_checkpoint(sys.argv[1])
dit = ckpt.model.dit
gen = torch.Generator().manual_seed(0)
drawn_entries = slice(*(dit.proprio_dynamics.noise_entries or (0, dit.proprio_dynamics.state_dim)))
for path in sys.argv[2:]:
    data = ClipDataset(path, clip_len=1, cameras=(), state_keys=ckpt.state_keys)
    z = {k: [] for k in HORIZONS}
    with torch.no_grad():
        for i in range(min(len(data.episodes), 40)):
            ep = data.whole_episode(i)
            states, actions = dit.normalize_state(ep["state"].float()), ep["actions"].float()
            for t0 in (0, 10, 20, 30):
                if t0 + max(HORIZONS) >= len(states):
                    continue
                lead = 0 if t0 == 0 else 1  # from a reset at rest, else with the state before
                span = slice(t0 - lead, t0 + max(HORIZONS) + 1)
                window = states[span][None].expand(DRAWS, -1, -1)
                drawn = dit.proprio_dynamics.unroll(window, actions[span][None].expand(DRAWS, -1, -1),
                                                    start=1 + lead, sample=True, generator=gen)
                for k in HORIZONS:
                    ens, real = drawn[:, lead + k], window[0, lead + k]
                    z[k].append(((real - ens.mean(0)) / ens.std(0).clamp_min(1e-6)).numpy())
    print(path, " ".join(f"k={k}: {np.sqrt(np.mean(np.square(np.array(z[k])[:, drawn_entries]))):.2f} "
                         f"(end effector {np.sqrt(np.mean(np.square(np.array(z[k])[:, 3:6]))):.2f})"
                         for k in HORIZONS))
