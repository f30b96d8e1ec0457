"""Random actions through a model's dynamics alone (no frames), from its stored resets: how
often the outcome head passes 0.5 on the prediction and on draws, and the states where it does.

    python results/lift_stochastic/random_probe.py kairos_gym/assets/lift_objects
"""

import sys

import torch

from kairos_gym.imagined.checkpoint import load_env_checkpoint

EPISODES, STEPS = 400, 80

ckpt = load_env_checkpoint(sys.argv[1])
dit = ckpt.model.dit
dynamics = dit.proprio_dynamics
resets = torch.cat([torch.as_tensor(ckpt.reset_observations[k]) for k in ckpt.state_keys], -1).float()
gen = torch.Generator().manual_seed(0)
start = dit.normalize_state(resets[torch.randint(len(resets), (EPISODES,), generator=gen)])
actions = torch.rand(EPISODES, STEPS + 1, 7, generator=gen) * 2 - 1
actions[:, 0] = 0  # no action leads into the reset
window = torch.cat([start[:, None], torch.zeros(EPISODES, STEPS, start.shape[1])], 1)
with torch.no_grad():
    for sample in (False, dynamics.stochastic):
        unrolled = dynamics.unroll(window, actions, start=1, sample=sample,
                                   generator=torch.Generator().manual_seed(1))
        prob = dynamics.outcomes(unrolled)["success"].sigmoid()[:, 1:]
        hit = (prob > 0.5).any(1)
        raw = dit.denormalize_state(unrolled)
        print(f"{'drawn' if sample else 'prediction'}: episodes passing 0.5 {float(hit.float().mean()):.4f}, "
              f"median peak probability {float(prob.max(1).values.median()):.4f}")
        for e in torch.nonzero(hit)[:5, 0]:
            t = int(torch.argmax((prob[e] > 0.5).float())) + 1
            s = raw[e, t]
            print(f"  episode {int(e)} step {t}: p {float(prob[e, t - 1]):.2f}, cube {s[:3].numpy().round(3)}, "
                  f"end effector {s[3:6].numpy().round(3)}, fingers {s[9:11].numpy().round(4)}")
