"""``kairos-gym collect``: roll a policy in a real simulator and write HDF5 episodes.

Example (64 px agentview images, 50 expert episodes with a little action noise)::

    kairos-gym collect --env kairos_gym/Robosuite-Lift-v0 --policy expert --episodes 50 \\
        --noise 0.05 --seed 0 --image-size 64 --cameras agentview --output lift.hdf5

Episode ``k`` (counting every attempt, kept or not) is reset with seed ``seed + k``. Each
episode is committed atomically when it ends (see :mod:`kairos_gym.data.episodes`), so an
interrupted run loses at most the episode in progress; running the same command again
continues until the file holds ``--episodes`` episodes, and refuses when the file was
written for a different environment or with a different policy, noise or seed.

With ``--dream CHECKPOINT`` the policy does not act in the simulator: from each real reset it
acts closed-loop in that checkpoint's imagined environment (seeing only imagined observations),
and the actions it chose there are then replayed in the real simulator, which is what the file
records. Where the model imagines a grasp that those actions would really miss, the file shows
the miss: data that corrects a world model on the very action sequences its imagination leads
a policy to (data aggregation for the model, as DAgger is for a policy)::

    kairos-gym collect --env kairos_gym/Robosuite-Lift-v0 --policy bc:runs/bc/n40_s2000+noise=0.3 \
        --dream kairos_gym/assets/lift_objects --object-state --image-size 64 --cameras agentview \
        --max-steps 80 --episodes 24 --seed 71000 --output data/lift_dream/n40_s2000_noise_0p3.hdf5
"""

from __future__ import annotations

import os

# Headless rendering for MuJoCo-based simulators; must precede their import.
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYOPENGL_PLATFORM", "egl")

import argparse
import json
import sys
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kairos_gym.rollout import Episode, Transition

from kairos_gym.cli.options import non_negative_float, non_negative_int, policy_spec, positive_int
from kairos_gym.cli.reporting import UsageError, run_reporting

PROG = "kairos-gym collect"


def _camera_list(text: str) -> tuple[str, ...]:
    if text.strip() == "none":
        return ()
    names = tuple(name.strip() for name in text.split(","))
    if not all(names):
        raise argparse.ArgumentTypeError(
            f"expected comma-separated camera names like 'agentview,robot0_eye_in_hand', got {text!r}"
        )
    if len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"camera names repeat in {text!r}")
    return names


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``kairos-gym collect``."""
    add = parser.add_argument
    add("--env", required=True, metavar="ID",
        help="gymnasium id, e.g. kairos_gym/Robosuite-Lift-v0")
    add("--policy", type=policy_spec, default="expert", metavar="SPEC",
        help="policy spec BASE[+MODIFIER...]: expert, random, zero or bc:DIR, modified by "
             "noise=S, open, interrupt=R, hold=R, gripper=R, execute=K "
             "(e.g. expert+interrupt=0.05; default: expert)")
    add("--episodes", type=positive_int, required=True, metavar="N",
        help="number of episodes the output file should hold at the end")
    add("--noise", type=non_negative_float, default=0.0, metavar="STD",
        help="std of the Gaussian noise the expert adds to its actions (default: 0)")
    add("--seed", type=non_negative_int, default=0, metavar="S",
        help="attempt k is reset with seed S + k (default: 0)")
    add("--image-size", type=positive_int, default=None, metavar="PX",
        help="square camera image side in pixels (default: the env's)")
    add("--cameras", type=_camera_list, default=None, metavar="A,B",
        help="comma-separated camera names, or 'none' for state-only episodes (no rendering: "
             "several times faster; data for proprioceptive dynamics) (default: the env's)")
    add("--max-steps", type=positive_int, default=None, metavar="N",
        help="truncate episodes after N steps (default: the env's)")
    add("--output", required=True, metavar="PATH",
        help="HDF5 episode file; appended to when it exists")
    add("--only-success", action="store_true",
        help="keep only episodes that reached success at some step")
    add("--max-attempts", type=positive_int, default=None, metavar="N",
        help="with --only-success, stop after N attempts in this run (default: 10 x --episodes)")
    add("--object-state", action="store_true",
        help="record the privileged object_state observation too (robosuite and ALOHA envs: the "
             "task's object positions; for world models that carry them, not for policies)")
    add("--joints", action="store_true",
        help="record the arm's joint angles and velocities too (the joints observation of the "
             "robosuite envs; for world models that carry them)")
    add("--dream", default=None, metavar="CHECKPOINT",
        help="act in this imagined-env checkpoint from each real reset and record the real "
             "simulator replaying the actions chosen there (the real env must give the "
             "observations the checkpoint imitates: same cameras, image size, object state)")
    add("--dream-sample-steps", type=positive_int, default=None, metavar="N",
        help="with --dream: Euler steps per imagined frame (default: the checkpoint's)")
    add("--compression", choices=("gzip", "lzf"), default="gzip",
        help="compression (default: gzip, readable everywhere; lzf decodes faster, h5py only)")
    add("--no-progress", action="store_true", help="no progress bar")


def make_env(
    env_id: str,
    *,
    cameras: tuple[str, ...] | None,
    image_size: int | None,
    max_steps: int | None,
    object_state: bool = False,
    joints: bool = False,
) -> Any:
    """``gym.make`` with the collection options; ``max_steps`` becomes Gymnasium's
    ``TimeLimit`` (the env's registered limit otherwise), the one truncation of the episode.

    Raises:
        UsageError: unknown id, or options the environment rejects (unknown camera...).
    """
    import gymnasium as gym

    import kairos_gym  # noqa: F401  (registers the kairos_gym/... ids)
    from kairos_gym.errors import DependencyNotInstalled

    if env_id not in gym.registry:
        known = sorted(k for k in gym.registry if k.startswith("kairos_gym/"))
        raise UsageError(f"unknown environment id {env_id!r}; kairos-gym ids: {', '.join(known)}")
    kwargs: dict[str, Any] = {}
    if cameras is not None:
        kwargs["cameras"] = cameras
    if image_size is not None:
        kwargs["image_size"] = image_size
    if max_steps is not None:
        # gym.make's TimeLimit truncates at max_steps (the env gives up its own limit).
        kwargs["max_episode_steps"] = max_steps
    if object_state:
        kwargs["object_obs"] = True
    if joints:
        kwargs["joint_obs"] = True
    try:
        return gym.make(env_id, **kwargs)
    except DependencyNotInstalled:
        raise
    except (ValueError, TypeError) as exc:
        raise UsageError(f"cannot make {env_id!r} with {kwargs}: {exc}") from None


def _env_kwargs(env: Any) -> dict[str, Any]:
    """The ``gym.make`` kwargs that rebuild ``env`` as collected (actual values, not defaults)."""
    base = env.unwrapped
    kwargs: dict[str, Any] = {}
    if hasattr(base, "cameras"):
        kwargs["cameras"] = list(base.cameras)
    spaces = env.observation_space.spaces
    shapes = [space.shape for key, space in spaces.items() if key.endswith("_image")]
    if shapes:
        h, w = shapes[0][:2]
        kwargs["image_size"] = int(h) if h == w else [int(h), int(w)]
    steps = getattr(base, "max_episode_steps", None) or (env.spec.max_episode_steps if env.spec else None)
    if steps is not None:
        kwargs["max_episode_steps"] = int(steps)
    from kairos_gym.data.recompute import RECOMPUTABLE

    for option in (key.option for key in RECOMPUTABLE.values()):  # object_obs, joint_obs
        if getattr(base, option, False):
            kwargs[option] = True
    return kwargs


def collect_episode(
    env: Any, policy: Any, writer: Any, *, seed: int, execute: int | None = None,
    max_steps: int | None = None,
) -> tuple[Episode, Any]:
    """Roll one episode into the writer's buffer (not committed: end or discard it after).

    The episode loop is :func:`kairos_gym.rollout.run_episode` (action chunks executed
    ``execute`` at a time, whole chunks by default); each step is buffered with the
    simulator state in which its observation was seen (``env.unwrapped.get_sim_state()``
    after the reset, then after every step), so a step can be replayed from the file.

    Args:
        env: a real-simulator env (its unwrapped env has ``get_sim_state()``).
        policy: a :class:`~kairos_gym.policies.Policy` (``[A]`` or chunks ``[H, A]``).
        writer: an :class:`~kairos_gym.data.episodes.EpisodeWriter` with no episode in progress.
        seed: the reset seed (the policy's too).
        execute: actions executed per chunk before asking the policy again.
        max_steps: end the episode (truncated) after this many steps, if it runs that long.

    Returns:
        ``(episode, final_state)``: the :class:`~kairos_gym.rollout.Episode` and the simulator
        state after its last step; both (with ``episode.final_observation``) go to
        ``writer.end_episode`` when the episode is kept.
    """
    from kairos_gym.rollout import run_episode

    base = env.unwrapped
    state: list[Any] = [None]  # the state the next step starts from

    def after_reset(obs: dict[str, Any], info: dict[str, Any]) -> None:
        instruction = info.get("instruction", getattr(base, "instruction", ""))
        writer.begin_episode(seed=seed, instruction=instruction)
        state[0] = base.get_sim_state()

    def after_step(t: Transition) -> None:
        cut = max_steps is not None and t.step >= max_steps  # the episode ends here too
        done, success = t.terminated or t.truncated or cut, bool(t.info.get("success", False))
        writer.add_step(t.observation, t.action, t.reward, done, success, state[0])
        state[0] = base.get_sim_state()

    episode = run_episode(
        env, policy, seed=seed, execute=execute, max_steps=max_steps, on_reset=after_reset,
        on_step=after_step,
    )
    return episode, state[0]


def open_dream_env(checkpoint: str, real: Any, *, sample_steps: int | None = None) -> Any:
    """The imagined env of ``checkpoint``, checked to start from ``real``'s reset observations;
    it ends episodes only at its step limit, never by imagined termination.

    Raises:
        UsageError: the checkpoint imitates another environment, or ``real`` lacks an
            observation the imagined env starts from (or gives it in another shape).
        CheckpointError: an unreadable checkpoint.
    """
    from kairos_gym.imagined.checkpoint import load_env_checkpoint
    from kairos_gym.imagined.env import ImaginedEnv

    ckpt = load_env_checkpoint(checkpoint)
    real_id = real.spec.id if real.spec is not None else None
    if ckpt.env_spec.env_id != real_id:
        raise UsageError(f"--dream {checkpoint} imitates {ckpt.env_spec.env_id}, not {real_id}")
    # The real simulator says where an episode ends: imagined termination is never taken
    # (probability > 1), so the dream runs the real episode's length.
    imagined = ImaginedEnv(ckpt, sample_steps=sample_steps, done_threshold=1.0)
    have = real.observation_space.spaces
    for key, space in imagined.observation_space.spaces.items():
        if key not in have or have[key].shape != space.shape:
            got = "missing" if key not in have else f"shape {have[key].shape}"
            imagined.close()
            raise UsageError(
                f"--dream {checkpoint} starts from observation {key!r} {space.shape}; the real env "
                f"gives {got}. Collect with the checkpoint's cameras, image size and object state "
                f"({ckpt.env_spec.env_kwargs})"
            )
    return imagined


def dream_then_replay(
    real: Any, imagined: Any, policy: Any, writer: Any, *, seed: int, max_steps: int | None = None
) -> tuple[Episode, Any, Episode]:
    """One ``--dream`` episode: the policy acts closed-loop in ``imagined`` from the real reset
    of ``seed``, then its actions are replayed in ``real`` into the writer's buffer.

    The replay runs as many steps as the imagined episode (fewer if the real env ends first);
    pass ``real``'s step limit as ``max_steps`` where the imagined env's is longer.

    Returns:
        ``(real episode, final state, imagined episode)``; the first two as
        :func:`collect_episode` returns them.
    """
    from kairos_gym.policies import ActionSequence
    from kairos_gym.rollout import run_episode

    start, _ = real.reset(seed=seed)
    dream = run_episode(imagined, policy, seed=seed, options={"observation": start}, max_steps=max_steps)
    episode, final_state = collect_episode(
        real, ActionSequence(dream.actions), writer, seed=seed, max_steps=dream.length
    )
    return episode, final_state, dream


def _collection_attrs(args: argparse.Namespace) -> dict[str, Any]:
    attrs: dict[str, Any] = {"policy": args.policy, "noise": args.noise, "seed": args.seed}
    if args.dream is not None:
        attrs["dream"] = {"checkpoint": os.path.abspath(args.dream),
                          "sample_steps": args.dream_sample_steps}
    return attrs


def run(args: argparse.Namespace) -> int:
    """Collect episodes; 0 on success, 2 for bad arguments, 1 for a data error, 130 on Ctrl-C."""
    return run_reporting(PROG, _collect, args)


def _collect(args: argparse.Namespace) -> int:
    output = os.path.abspath(args.output)
    parent = os.path.dirname(output)
    if not os.path.isdir(parent):
        raise UsageError(f"output directory {parent} does not exist")
    if os.path.isdir(output):
        example = os.path.join(args.output, "episodes.hdf5")
        raise UsageError(f"--output {args.output} is a directory; give a file path such as {example}")
    if args.max_attempts is not None and not args.only_success:
        raise UsageError("--max-attempts only applies with --only-success")
    if args.dream_sample_steps is not None and args.dream is None:
        raise UsageError("--dream-sample-steps only applies with --dream")

    from tqdm import tqdm

    from kairos_gym.data.episodes import EpisodeReader, EpisodeWriter
    from kairos_gym.data.spaces import EpisodeEnvSpec
    from kairos_gym.errors import CheckpointError, DatasetError
    from kairos_gym.policies import make_policy
    from kairos_gym.policies.registry import is_privileged

    wanted = _collection_attrs(args)
    if os.path.exists(output):
        # Check the collection settings before paying for a simulator.
        with EpisodeReader(output) as reader:
            stored = json.loads(reader.attrs.get("collection", "{}") or "{}")
        # "dream" is compared even where one side lacks it: a file of dreamed episodes never
        # takes plain ones, nor the reverse.
        differ = {k: (stored.get(k), wanted.get(k)) for k in sorted(set(wanted) | {"dream"})
                  if (k in stored or k == "dream") and stored.get(k) != wanted.get(k)}
        if differ:
            detail = ", ".join(f"{k}: file {a!r}, now {b!r}" for k, (a, b) in differ.items())
            raise DatasetError(
                f"{output} was collected with different settings ({detail}); use another --output"
            )

    env = make_env(args.env, cameras=args.cameras, image_size=args.image_size,
                   max_steps=args.max_steps, object_state=args.object_state,
                   joints=args.joints)
    imagined = None
    try:
        try:
            policy = make_policy(args.policy, env, noise=args.noise)
            if args.dream is not None:
                if is_privileged(args.policy):
                    raise UsageError("--dream needs an observation-only policy: the scripted "
                                     "expert reads the real simulator")
                imagined = open_dream_env(args.dream, env, sample_steps=args.dream_sample_steps)
        except (ValueError, CheckpointError) as exc:
            raise UsageError(str(exc)) from None
        spec = EpisodeEnvSpec.from_env(env, env_kwargs=_env_kwargs(env))
        writer = EpisodeWriter(
            output, spec, compression=args.compression, file_attrs={"collection": json.dumps(wanted)}
        )
        existing = writer.num_episodes
        seeds = [s for s in writer.seeds if s is not None]
        next_seed = max(seeds) + 1 if seeds else args.seed
        kept_success = sum(writer.successes)
        dreamed_success = new_success = 0
        max_attempts = args.max_attempts or 10 * args.episodes
        attempts = new = new_steps = 0
        start = time.perf_counter()
        bar = tqdm(
            total=args.episodes, initial=existing, unit="ep", desc="collect",
            disable=args.no_progress, file=sys.stderr,
        )
        interrupted = False
        try:
            while writer.num_episodes < args.episodes:
                if args.only_success and attempts >= max_attempts:
                    break
                seed = next_seed
                next_seed += 1
                attempts += 1
                if imagined is None:
                    episode, final_state = collect_episode(env, policy, writer, seed=seed)
                else:
                    episode, final_state, dream = dream_then_replay(
                        env, imagined, policy, writer, seed=seed, max_steps=args.max_steps)
                if args.only_success and not episode.success:
                    writer.discard_episode()
                else:
                    writer.end_episode(
                        episode.final_observation,
                        final_state=final_state,
                        attrs={"terminated": episode.terminated,
                               "truncated": episode.truncated or episode.ended_by == "max_steps"},
                    )
                    new += 1
                    new_steps += episode.length
                    kept_success += episode.success
                    new_success += episode.success
                    if imagined is not None:
                        dreamed_success += dream.success
                    bar.update(1)
                total = writer.num_episodes
                postfix = {"success": f"{kept_success / total:.0%}" if total else "-"}
                if imagined is not None and new:
                    postfix["imagined"] = f"{dreamed_success / new:.0%} of new"
                if args.only_success:
                    postfix["kept"] = f"{new}/{attempts}"
                bar.set_postfix(postfix)
        except KeyboardInterrupt:
            interrupted = True
            writer.discard_episode()
        finally:
            bar.close()
        elapsed = time.perf_counter() - start
    finally:
        env.close()
        if imagined is not None:
            imagined.close()

    total = writer.num_episodes
    rate = kept_success / total if total else 0.0
    size_mb = os.path.getsize(output) / 1e6
    speed = new_steps / elapsed if elapsed > 0 else 0.0
    print(
        f"{output}: {total} episodes ({new} new, {existing} before), {writer.num_steps} steps, "
        f"success {rate:.1%} ({kept_success}/{total}), {new_steps} new steps in {elapsed:.1f} s "
        f"({speed:.1f} steps/s), {size_mb:.1f} MB"
    )
    if imagined is not None and new:
        print(f"imagined success of the new episodes {dreamed_success / new:.1%} "
              f"({dreamed_success}/{new}); replayed in the real simulator "
              f"{new_success / new:.1%} ({new_success}/{new})")
    if interrupted:
        print(f"{PROG}: interrupted; run the same command again to continue", file=sys.stderr)
        return 130
    if total < args.episodes:
        print(
            f"{PROG}: only {new} successful episodes in {attempts} attempts "
            f"(--max-attempts {max_attempts}); the file holds {total} of {args.episodes}",
            file=sys.stderr,
        )
        return 1
    return 0
