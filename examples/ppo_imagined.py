"""Train a stable-baselines3 PPO policy inside the imagined environment.

    .venv/bin/python examples/ppo_imagined.py                          # the embedded Lift model
    .venv/bin/python examples/ppo_imagined.py --checkpoint ckpt/lift   # any environment checkpoint

Every rollout step is one batched world-model call over ``--num-envs`` imagined episodes
(``kairos_gym.make_vec``), adapted to SB3's ``VecEnv`` API by ``kairos_gym.imagined.sb3.to_sb3``.
The script prints the mean *predicted* episode reward (the sum of the model's reward
predictions over an imagined episode of ``--horizon`` steps) of the policy before and after
training, on the same seeded start states. Needs the ``rl`` extra
(``pip install -e '.[rl]'``). SB3's default image encoder (NatureCNN) needs frames of at
least 36x36 pixels; the embedded model's are 64x64.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Mapping, Sequence

import numpy as np
import torch

import kairos_gym
from kairos_gym.errors import CheckpointError, missing_dependency
from kairos_gym.imagined.checkpoint import EnvCheckpoint, load_env_checkpoint
from kairos_gym.imagined.sb3 import to_sb3
from kairos_gym.policies import Policy
from kairos_gym.rollout import run_batched


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument(
        "--checkpoint",
        default=None,
        help="environment checkpoint directory (default: the embedded model)",
    )
    parser.add_argument(
        "--timesteps", type=int, default=4096, help="PPO training steps (all envs together)"
    )
    parser.add_argument(
        "--num-envs", type=int, default=8, help="imagined episodes stepped in one batch"
    )
    parser.add_argument("--n-steps", type=int, default=64, help="PPO rollout length per env")
    parser.add_argument("--batch-size", type=int, default=128, help="PPO minibatch size")
    parser.add_argument(
        "--horizon",
        type=int,
        default=50,
        help="imagined episode length (model error grows with it; short horizons train best)",
    )
    parser.add_argument(
        "--sample-steps",
        type=int,
        default=None,
        help="denoising steps per imagined frame (default: the checkpoint's)",
    )
    parser.add_argument(
        "--eval-episodes", type=int, default=8, help="episodes for the before/after score"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (more only help on an idle machine: busy OpenMP threads spin-wait)",
    )
    return parser.parse_args(argv)


class AgentPolicy(Policy):
    """An SB3 agent as a kairos-gym policy: ``act_batch`` is one ``agent.predict`` call."""

    def __init__(self, agent) -> None:
        self.agent = agent

    def act(self, observation: dict[str, np.ndarray], instruction: str = "") -> np.ndarray:
        return self.act_batch({k: v[None] for k, v in observation.items()})[0]

    def act_batch(
        self, observations: Mapping[str, np.ndarray], instructions: str | Sequence[str] = ""
    ) -> np.ndarray:
        actions, _ = self.agent.predict(dict(observations), deterministic=True)
        return actions


def mean_predicted_return(
    agent,
    checkpoint: EnvCheckpoint,
    episodes: int,
    horizon: int,
    sample_steps: int | None,
    seed: int,
) -> float:
    """Mean summed predicted reward over ``episodes`` imagined episodes (deterministic policy)."""
    envs = kairos_gym.make_vec(
        num_envs=episodes,
        checkpoint=checkpoint,
        max_episode_steps=horizon,
        sample_steps=sample_steps,
    )
    try:
        rollouts = run_batched(envs, AgentPolicy(agent), episodes=episodes, seed=seed)
    finally:
        envs.close()
    return float(np.mean([episode.total_reward for episode in rollouts]))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        from stable_baselines3 import PPO
    except ImportError:
        print(f"error: {missing_dependency('stable-baselines3', 'rl')}", file=sys.stderr)
        return 1
    try:
        checkpoint = load_env_checkpoint(args.checkpoint)
    except CheckpointError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1

    print(
        f"model: {checkpoint.path} ({checkpoint.env_spec.env_id}, "
        f"'{checkpoint.env_spec.instruction}')"
    )
    venv = to_sb3(
        kairos_gym.make_vec(
            num_envs=args.num_envs,
            checkpoint=checkpoint,
            autoreset_mode="same_step",
            max_episode_steps=args.horizon,
            sample_steps=args.sample_steps,
        )
    )
    agent = PPO(
        "MultiInputPolicy",
        venv,
        n_steps=args.n_steps,
        batch_size=args.batch_size,
        n_epochs=4,
        seed=args.seed,
        device="cpu",
        verbose=0,
    )

    score = (checkpoint, args.eval_episodes, args.horizon, args.sample_steps, args.seed)
    before = mean_predicted_return(agent, *score)
    start = time.perf_counter()
    agent.learn(total_timesteps=args.timesteps)
    seconds = time.perf_counter() - start
    after = mean_predicted_return(agent, *score)
    venv.close()
    print(
        f"trained {agent.num_timesteps} imagined steps in {seconds:.0f} s "
        f"({agent.num_timesteps / seconds:.0f} steps/s, {args.num_envs} envs per batch)"
    )
    print(
        f"mean predicted episode reward ({args.eval_episodes} episodes x {args.horizon} steps): "
        f"before {before:.3f}, after {after:.3f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
