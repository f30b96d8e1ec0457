"""Where an imagined Door episode goes: the carried latch and hinge angles, and the success
probability, every 10 steps of `bc:runs/bc_door_obs/n60_s2000` acting closed loop in each
checkpoint given (seeds 100 and 101; a stochastic dynamics takes its prediction, so the runs
differ only in the weights).

    python results/door_adapt/latch_trace.py kairos_gym/assets/door runs/door_adapt/model \
        runs/door_adapt_states/model runs/door_adapt_rollouts/model
"""
import sys

import gymnasium as gym
import numpy as np
import torch

import kairos_gym  # noqa: F401  (registers the envs)
from kairos_gym.policies import make_policy

torch.set_num_threads(1)
for checkpoint in sys.argv[1:]:
    env = gym.make("kairos_gym/Imagined-v0", checkpoint=checkpoint, max_episode_steps=120,
                   draw_state=False)
    policy = make_policy("bc:runs/bc_door_obs/n60_s2000", env)
    for seed in (100, 101):
        obs, _ = env.reset(seed=seed)
        policy.reset(seed=seed)
        row, t, done = [], 0, False
        while not done:
            for action in np.atleast_2d(policy.act(obs)):  # the policy's 4-action chunk
                obs, _, terminated, truncated, info = env.step(action)
                t += 1
                if t % 10 == 0:
                    row.append(f"{t}: latch {obs['object_state'][4]:.2f} hinge "
                               f"{obs['object_state'][3]:.2f} p {info['success_prob']:.2f}")
                done = terminated or truncated
                if done:
                    break
        print(f"{checkpoint} seed {seed}\n  " + "\n  ".join(row), flush=True)
    env.close()
