"""Where an imagined Door episode goes: the carried latch and hinge angles, and the success
probability, every 10 steps of `bc:runs/bc_door_obs/n60_s2000` acting closed loop in each
checkpoint given (seeds 100 and 101; a stochastic dynamics takes its prediction, so the runs
differ only in the weights).

    python results/door_adapt/latch_trace.py kairos_gym/assets/door runs/door_adapt/model \
        runs/door_adapt_states/model runs/door_adapt_rollouts/model
"""
import sys

import gymnasium as gym
import torch

import kairos_gym  # noqa: F401  (registers the envs)
from kairos_gym.policies import make_policy
from kairos_gym.rollout import Transition, run_episode


def trace(env: gym.Env, policy, seed: int) -> list[str]:
    """One episode of ``policy`` in ``env`` from ``seed``: a line every 10 steps."""
    rows: list[str] = []

    def every_tenth(t: Transition) -> None:
        if t.step % 10 == 0:
            state = t.next_observation["object_state"]
            rows.append(f"{t.step}: latch {state[4]:.2f} hinge {state[3]:.2f} "
                        f"p {t.info['success_prob']:.2f}")

    run_episode(env, policy, seed=seed, on_step=every_tenth)
    return rows


torch.set_num_threads(1)
for checkpoint in sys.argv[1:]:
    env = gym.make("kairos_gym/Imagined-v0", checkpoint=checkpoint, max_episode_steps=120,
                   draw_state=False)
    policy = make_policy("bc:runs/bc_door_obs/n60_s2000", env)
    for seed in (100, 101):
        print(f"{checkpoint} seed {seed}\n  " + "\n  ".join(trace(env, policy, seed)), flush=True)
    env.close()
