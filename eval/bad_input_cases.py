"""The corpus of bad inputs :mod:`kairos_gym.eval.bad_inputs` replays, one builder per surface.

Each :class:`Case` is one bad input to one public surface: ``call`` makes the call,
``fingerprint`` captures what must not change (an env's memory, steps and generators; a
simulator's state; a file's bytes), and ``probe`` shows the object still works afterwards.
Builders share the expensive objects (the embedded model, the real simulators) through
:class:`Fixtures`, which builds each one on first use.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

NAN, INF = float("nan"), float("inf")
RANGE_CASES = frozenset({
    "1.5 (above the bound)", "-1.01 (below the bound)", "1e9", "-1e30 (float64)",
    "1.001 (beyond the 1e-5 tolerance)", "float64 max", "int 2 everywhere", "uint8 255",
    "a tensor out of bounds, requiring grad",
})
"""The :func:`bad_actions` that are bad only for actions bounded by [-1, 1]."""


@dataclasses.dataclass
class Case:
    """One bad input to one surface.

    Attributes:
        surface: the public surface (``"ImaginedEnv.step"``, ``"EpisodeReader"``...).
        name: the input, in words.
        call: makes the call that should be refused.
        setup: puts the shared object in a known state first.
        fingerprint: what must be the same before and after the refused call.
        probe: a call that must still work afterwards.
        documented: why accepting this input is the documented behaviour (then the input
            is expected to work, and is reported apart from the refusals).
    """

    surface: str
    name: str
    call: Callable[[], Any]
    setup: Callable[[], Any] | None = None
    fingerprint: Callable[[], Any] | None = None
    probe: Callable[[], Any] | None = None
    documented: str | None = None


class Fixtures:
    """Shared objects, built on first use: the embedded model served as single and vector
    envs, a tiny checkpoint to damage, an episode file, the real simulators."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._cache: dict[str, Any] = {}

    def get(self, name: str, build: Callable[[], Any]) -> Any:
        if name not in self._cache:
            self._cache[name] = build()
        return self._cache[name]

    @property
    def ckpt(self) -> Any:
        from kairos_gym.imagined.checkpoint import load_env_checkpoint

        return self.get("ckpt", lambda: load_env_checkpoint(None))

    @property
    def env(self) -> Any:
        from kairos_gym.imagined.env import ImaginedEnv

        # Episodes never end by the model's prediction, so "still works" is one more step.
        return self.get("env", lambda: ImaginedEnv(self.ckpt, done_threshold=1.0,
                                                   max_episode_steps=10**6))

    @property
    def venv(self) -> Any:
        import kairos_gym

        return self.get("venv", lambda: kairos_gym.make_vec(
            num_envs=3, checkpoint=self.ckpt, done_threshold=1.0, max_episode_steps=10**6))

    @property
    def tiny_checkpoint(self) -> Path:
        return self.get("tiny", self._write_tiny_checkpoint)

    def _write_tiny_checkpoint(self) -> Path:
        from kairos_gym.data.spaces import EpisodeEnvSpec
        from kairos_gym.imagined.checkpoint import save_env_checkpoint
        from kairos_gym.model import WorldModel, WorldModelConfig

        spec = EpisodeEnvSpec(
            env_id="kairos_gym/Robosuite-Lift-v0",
            env_kwargs={"cameras": ["agentview"], "image_size": 16, "max_episode_steps": 12},
            observation_space=gym.spaces.Dict({
                "agentview_image": gym.spaces.Box(0, 255, (16, 16, 3), np.uint8),
                "state": gym.spaces.Box(-np.inf, np.inf, (8,), np.float32),
            }),
            action_space=gym.spaces.Box(-1.0, 1.0, (7,), np.float32),
            control_freq=20.0, instruction="lift", cameras=("agentview",), image_size=(16, 16),
        )
        torch.manual_seed(0)
        model = WorldModel(WorldModelConfig.preset("tiny", state_dim=8))
        resets = {"agentview_image": np.zeros((2, 16, 16, 3), np.uint8),
                  "state": np.zeros((2, 8), np.float32)}
        return save_env_checkpoint(self.root / "tiny", model, spec, resets)

    @property
    def episodes(self) -> Path:
        return self.get("episodes", self._write_episodes)

    def _write_episodes(self) -> Path:
        from kairos_gym.data.episodes import EpisodeWriter

        spec = self.ckpt.env_spec
        path = self.root / "clean.hdf5"
        rng = np.random.default_rng(0)
        with EpisodeWriter(path, spec, fsync=False) as writer:
            for i in range(3):
                T = 6
                writer.write_episode(
                    obs={"agentview_image": rng.integers(0, 256, (T, 64, 64, 3), dtype=np.uint8),
                         "state": rng.standard_normal((T, 8)).astype(np.float32)},
                    actions=rng.uniform(-1, 1, (T, 7)).astype(np.float32),
                    rewards=np.zeros(T), dones=np.arange(T) == T - 1, success=np.zeros(T, bool),
                    final_obs={"agentview_image": np.zeros((64, 64, 3), np.uint8),
                               "state": np.zeros(8, np.float32)},
                    seed=i,
                )
        return path

    def copy(self, source: Path, name: str) -> Path:
        """A fresh copy of a file or directory to damage."""
        target = self.root / "copies" / name
        if target.exists():
            shutil.rmtree(target) if target.is_dir() else target.unlink()
        target.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if source.is_dir() else shutil.copy)(source, target)
        return target

    def close(self) -> None:
        for value in self._cache.values():
            if hasattr(value, "close"):
                value.close()


# --- fingerprints ---
def imagined_fingerprint(target: Any) -> dict[str, Any]:
    core = target.core
    snapshot = core.snapshot() if core.started.all() else None
    generator = target.__dict__.get("_np_random")
    return {
        "steps": core.steps.tolist(),
        "started": core.started.tolist(),
        "observation": None if snapshot is None else {k: v.copy() for k, v in snapshot.observation.items()},
        "memory": None if snapshot is None else {k: v.clone() for k, v in snapshot.state.items()},
        "noise": None if snapshot is None else [g.clone() for g in snapshot.generator_states],
        "rng": None if snapshot is None else json.dumps(snapshot.rng_states, default=str),
        "np_random": None if generator is None else json.dumps(generator.bit_generator.state, default=str),
    }


def file_digest(path: Path) -> str:
    """Bytes of a file, or of every file of a directory, as one digest."""
    path = Path(path)
    if not path.exists():
        return "absent"
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    digest = hashlib.sha256()
    for f in files:
        digest.update(str(f.relative_to(path) if path.is_dir() else f.name).encode())
        digest.update(f.read_bytes())
    return digest.hexdigest()


# --- the surfaces ---
def bad_actions(shape: tuple[int, ...]) -> Iterator[tuple[str, Any]]:
    """Bad values for an action of ``shape`` in [-1, 1]."""
    zeros = np.zeros(shape, np.float32)
    rows = shape[0] if len(shape) == 2 else None

    def at(value: float, index: int = 0) -> np.ndarray:
        out = zeros.copy().reshape(-1)
        out[index] = value
        return out.reshape(shape)

    last = int(np.prod(shape)) - 1
    for other in {shape[:-1] + (shape[-1] - 1,), shape[:-1] + (shape[-1] + 1,), (*shape, 1),
                  (1, *shape), (), (0,), (2 * shape[-1],), (shape[-1],) if rows else (2, shape[-1])}:
        yield f"shape {other}", np.zeros(other, np.float32)
    yield "NaN in the first entry", at(NAN)
    yield "NaN in the last entry", at(NAN, last)
    yield "all NaN", np.full(shape, NAN, np.float32)
    yield "+inf", at(INF, 1)
    yield "-inf", at(-INF, last)
    yield "1.5 (above the bound)", at(1.5, 2)
    yield "-1.01 (below the bound)", at(-1.01, last)
    yield "1e9", at(1e9)
    yield "-1e30 (float64)", at(-1e30).astype(np.float64)
    yield "1.001 (beyond the 1e-5 tolerance)", at(1.001)
    yield "float64 max", np.full(shape, np.finfo(np.float64).max)
    yield "int 2 everywhere", np.full(shape, 2, np.int64)
    yield "uint8 255", np.full(shape, 255, np.uint8)
    yield "bool array", np.zeros(shape, bool)
    yield "complex array", np.zeros(shape, np.complex64)
    yield "string array", np.full(shape, "0")
    yield "object array of None", np.full(shape, None, dtype=object)
    yield "datetime array", np.zeros(shape, "datetime64[s]")
    yield "None", None
    yield "a string", "forward"
    yield "bytes", b"\x00" * 7
    yield "a dict", {"x": 1.0}
    yield "a set", {0.0, 1.0}
    yield "a ragged list", [[0.0] * shape[-1], [0.0]] if rows else [0.0, [0.0, 1.0]]
    yield "a list one entry short", zeros.tolist()[:-1]
    yield "a list of strings", np.full(shape, "a").tolist()
    yield "a tensor of the wrong shape", torch.zeros(*shape[:-1], shape[-1] + 2)
    yield "a tensor with NaN", torch.from_numpy(at(NAN))
    yield "a complex tensor", torch.zeros(shape, dtype=torch.complex64)
    yield "a tensor out of bounds, requiring grad", (torch.from_numpy(at(3.0)).requires_grad_() * 1.0)
    yield "a function", len


def imagined_step(fx: Fixtures) -> Iterator[Case]:
    zero = np.zeros(7, np.float32)
    for name, action in bad_actions((7,)):
        yield Case("ImaginedEnv.step", name, lambda a=action: fx.env.step(a),
                   setup=lambda: (fx.env.reset(seed=0), fx.env.step(zero)),
                   fingerprint=lambda: imagined_fingerprint(fx.env), probe=lambda: fx.env.step(zero))


def vector_step(fx: Fixtures) -> Iterator[Case]:
    zero = np.zeros((3, 7), np.float32)
    for name, action in bad_actions((3, 7)):
        yield Case("ImaginedVectorEnv.step", name, lambda a=action: fx.venv.step(a),
                   setup=lambda: (fx.venv.reset(seed=0), fx.venv.step(zero)),
                   fingerprint=lambda: imagined_fingerprint(fx.venv), probe=lambda: fx.venv.step(zero))


def _observations(fx: Fixtures) -> Iterator[tuple[str, Any]]:
    start = {k: v[0] for k, v in fx.ckpt.reset_observations.items()}

    def edit(**changes: Any) -> dict[str, Any]:
        out = dict(start)
        for key, value in changes.items():
            if value is None:
                out.pop(key)
            else:
                out[key] = value
        return out

    image, state = start["agentview_image"], start["state"]
    yield "observation without its state", edit(state=None)
    yield "observation with an extra key", {**start, "extra": np.zeros(1)}
    yield "observation image 32x32", edit(agentview_image=np.zeros((32, 32, 3), np.uint8))
    yield "observation image without channels", edit(agentview_image=image[..., 0])
    yield "observation image float32", edit(agentview_image=image.astype(np.float32))
    yield "observation image int64 300", edit(agentview_image=np.full(image.shape, 300, np.int64))
    yield "observation image uint16 300", edit(agentview_image=np.full(image.shape, 300, np.uint16))
    yield "observation state of 7", edit(state=state[:7])
    yield "observation state with NaN", edit(state=np.full(8, NAN, np.float32))
    yield "observation state with inf", edit(state=np.full(8, INF, np.float32))
    yield "observation state as strings", edit(state=np.full(8, "x"))
    yield "observation as an array", image
    yield "observation None", None
    yield "observation a string", "start here"


DOCUMENTED = {
    "observation state with inf": "inf lies inside the state's declared Box(-inf, inf): the "
    "observation is an element of the observation space, which is what reset checks",
}


def imagined_reset(fx: Fixtures) -> Iterator[Case]:
    zero = np.zeros(7, np.float32)
    n = fx.ckpt.num_resets
    seeds: list[tuple[str, Any]] = [("seed -1", -1), ("seed -2**40", -(2**40)), ("seed 1.5", 1.5),
                                    ("seed '0'", "0"), ("seed b'1'", b"1"), ("seed [0]", [0]),
                                    ("seed NaN", NAN), ("seed {}", {})]
    options: list[tuple[str, Any]] = [
        ("options a list", [("reset_index", 0)]), ("options a string", "reset_index=0"),
        ("options an int", 3), ("options unknown key", {"foo": 1}), ("options 'seed' key", {"seed": 1}),
        ("options reset_mask on a single env", {"reset_mask": np.ones(1, bool)}),
        ("options both observation and reset_index", {"observation": None, "reset_index": 0}),
        ("reset_index -1", {"reset_index": -1}), (f"reset_index {n} (one past the end)", {"reset_index": n}),
        ("reset_index 10**9", {"reset_index": 10**9}), ("reset_index 1.5", {"reset_index": 1.5}),
        ("reset_index '0'", {"reset_index": "0"}), ("reset_index True", {"reset_index": True}),
        ("reset_index [0]", {"reset_index": [0]}), ("reset_index None", {"reset_index": None}),
    ]
    options += [(name, {"observation": obs}) for name, obs in _observations(fx)]
    calls = [(name, {"seed": s}) for name, s in seeds] + [(name, {"options": o}) for name, o in options]
    for name, kwargs in calls:
        yield Case("ImaginedEnv.reset", name, lambda k=kwargs: fx.env.reset(**k),
                   setup=lambda: (fx.env.reset(seed=0), fx.env.step(zero)),
                   fingerprint=lambda: imagined_fingerprint(fx.env), probe=lambda: fx.env.step(zero),
                   documented=DOCUMENTED.get(name))


def vector_reset(fx: Fixtures) -> Iterator[Case]:
    zero = np.zeros((3, 7), np.float32)
    batch = {k: v[:1].repeat(3, 0) for k, v in fx.ckpt.reset_observations.items()}
    calls: list[tuple[str, dict[str, Any]]] = [
        ("seed list of 2", {"seed": [0, 1]}), ("seed list with -1", {"seed": [0, -1, 2]}),
        ("seed list with a string", {"seed": [0, "1", 2]}), ("seed a string", {"seed": "0"}),
        ("seed 1.5", {"seed": 1.5}), ("seed list with 1.5", {"seed": [0, 1.5, 2]}),
        ("options a list", {"options": [1]}), ("unknown option", {"options": {"foo": 1}}),
        ("reset_mask a list", {"options": {"reset_mask": [True, False, True]}}),
        ("reset_mask int array", {"options": {"reset_mask": np.array([1, 0, 1])}}),
        ("reset_mask of 2", {"options": {"reset_mask": np.array([True, False])}}),
        ("reset_mask of 4", {"options": {"reset_mask": np.ones(4, bool)}}),
        ("reset_mask 2-D", {"options": {"reset_mask": np.ones((3, 1), bool)}}),
        ("reset_mask all False", {"options": {"reset_mask": np.zeros(3, bool)}}),
        ("reset_mask None", {"options": {"reset_mask": None}}),
        ("reset_index list of 2", {"options": {"reset_index": [0, 0]}}),
        ("reset_index list with -1", {"options": {"reset_index": [0, -1, 0]}}),
        ("reset_index list with a string", {"options": {"reset_index": [0, "0", 0]}}),
        ("reset_index 10**6", {"options": {"reset_index": 10**6}}),
        ("observation batch of 2 rows", {"options": {"observation": {k: v[:2] for k, v in batch.items()}}}),
        ("observation batch without a batch axis", {"options": {"observation": {k: v[0] for k, v in batch.items()}}}),
        ("observation batch with NaN state", {"options": {"observation": {**batch, "state": np.full((3, 8), NAN, np.float32)}}}),
        ("observation batch float images", {"options": {"observation": {**batch, "agentview_image": batch["agentview_image"].astype(np.float32)}}}),
        ("observation batch missing a key", {"options": {"observation": {"state": batch["state"]}}}),
        ("observation batch uint16 images of 300", {"options": {"observation": {**batch, "agentview_image": np.full(batch["agentview_image"].shape, 300, np.uint16)}}}),
    ]
    for name, kwargs in calls:
        yield Case("ImaginedVectorEnv.reset", name, lambda k=kwargs: fx.venv.reset(**k),
                   setup=lambda: (fx.venv.reset(seed=0), fx.venv.step(zero)),
                   fingerprint=lambda: imagined_fingerprint(fx.venv), probe=lambda: fx.venv.step(zero))


def settings(fx: Fixtures) -> Iterator[Case]:
    """Settings changed on a live env, and constructor options."""
    import kairos_gym
    from kairos_gym.imagined.env import ImaginedEnv

    zero = np.zeros((3, 7), np.float32)
    for attr, value in [("max_episode_steps", -5), ("max_episode_steps", 0), ("max_episode_steps", 2.5),
                        ("max_episode_steps", "80"), ("max_episode_steps", [3, 4, 5]),
                        ("success_threshold", 1.5), ("success_threshold", NAN), ("success_threshold", "high"),
                        ("done_threshold", -0.1), ("done_threshold", None)]:
        yield Case("ImaginedVectorEnv.set_attr", f"{attr} = {value!r}",
                   lambda a=attr, v=value: fx.venv.set_attr(a, v),
                   setup=lambda: fx.venv.reset(seed=0),
                   fingerprint=lambda: (fx.venv.max_episode_steps, fx.venv.success_threshold,
                                        fx.venv.done_threshold),
                   probe=lambda: fx.venv.step(zero))
    for attr, value in [("max_episode_steps", -1), ("max_episode_steps", True)]:
        yield Case("ImaginedEnv attribute", f"env.{attr} = {value!r}",
                   lambda a=attr, v=value: setattr(fx.env, a, v),
                   fingerprint=lambda: fx.env.max_episode_steps,
                   probe=lambda: fx.env.reset(seed=0))
    constructors: list[tuple[str, Callable[[], Any]]] = [
        ("sample_steps 0", lambda: ImaginedEnv(fx.ckpt, sample_steps=0)),
        ("sample_steps 51", lambda: ImaginedEnv(fx.ckpt, sample_steps=51)),
        ("sample_steps '4'", lambda: ImaginedEnv(fx.ckpt, sample_steps="4")),
        ("max_episode_steps 0", lambda: ImaginedEnv(fx.ckpt, max_episode_steps=0)),
        ("max_episode_steps -1 (built directly)", lambda: ImaginedEnv(fx.ckpt, max_episode_steps=-1)),
        ("max_episode_steps 1.5", lambda: ImaginedEnv(fx.ckpt, max_episode_steps=1.5)),
        ("success_threshold 2", lambda: ImaginedEnv(fx.ckpt, success_threshold=2)),
        ("done_threshold 'x'", lambda: ImaginedEnv(fx.ckpt, done_threshold="x")),
        ("render_mode 'human'", lambda: ImaginedEnv(fx.ckpt, render_mode="human")),
        ("checkpoint 42", lambda: ImaginedEnv(42)),
        ("checkpoint a missing directory", lambda: ImaginedEnv(fx.root / "missing")),
        ("device 'cuda' with a loaded model on cpu", lambda: ImaginedEnv(fx.ckpt, device="cuda")),
        ("device 'tpu'", lambda: ImaginedEnv(fx.tiny_checkpoint, device="tpu")),
        ("device 3", lambda: ImaginedEnv(fx.tiny_checkpoint, device=3)),
        ("num_envs 0", lambda: kairos_gym.make_vec(num_envs=0, checkpoint=fx.ckpt)),
        ("num_envs -2", lambda: kairos_gym.make_vec(num_envs=-2, checkpoint=fx.ckpt)),
        ("num_envs '4'", lambda: kairos_gym.make_vec(num_envs="4", checkpoint=fx.ckpt)),
        ("autoreset_mode 'sometimes'", lambda: kairos_gym.make_vec(num_envs=2, checkpoint=fx.ckpt,
                                                                   autoreset_mode="sometimes")),
        ("make_vec max_episode_steps -1", lambda: kairos_gym.make_vec(num_envs=2, checkpoint=fx.ckpt,
                                                                      max_episode_steps=-1)),
        ("gym.make max_episode_steps -5", lambda: gym.make("kairos_gym/Imagined-v0", checkpoint=fx.ckpt,
                                                           max_episode_steps=-5)),
        ("gym.make max_episode_steps 0", lambda: gym.make("kairos_gym/Imagined-v0", checkpoint=fx.ckpt,
                                                          max_episode_steps=0)),
        ("gym.make unknown kwarg", lambda: gym.make("kairos_gym/Imagined-v0", checkpoint=fx.ckpt, colour=1)),
    ]
    if not torch.cuda.is_available():
        constructors.append(("device 'cuda' on a CPU-only build",
                             lambda: ImaginedEnv(fx.tiny_checkpoint, device="cuda")))
    for name, build in constructors:
        yield Case("imagined env constructor", name, build, probe=lambda: fx.env.reset(seed=0))
    yield Case("imagined env constructor", "gym.make max_episode_steps -1",
               lambda: gym.make("kairos_gym/Imagined-v0", checkpoint=fx.ckpt, max_episode_steps=-1),
               probe=lambda: fx.env.reset(seed=0),
               documented="Gymnasium documents max_episode_steps=-1 as 'no TimeLimit': the env "
               "then truncates nowhere (episodes end only when the model predicts the end)")
    yield Case("ImaginedEnv.step", "a tensor requiring grad",
               lambda: fx.env.step(torch.zeros(7, requires_grad=True) * 1.0),
               setup=lambda: fx.env.reset(seed=0), probe=lambda: fx.env.step(np.zeros(7, np.float32)),
               documented="torch tensors are actions (read without their graph)")


def core(fx: Fixtures) -> Iterator[Case]:
    """The batched core planners call directly (``ImaginedCore.step`` / ``rollout`` / ``fork``)."""
    c = fx.venv.core
    zero = np.zeros((3, 7), np.float32)
    calls: list[tuple[str, Callable[[], Any]]] = [
        ("step a ragged list", lambda: c.step([[0.0] * 7, [0.0] * 7, [0.0]])),
        ("step a tensor requiring grad", lambda: c.step(torch.zeros(3, 7, requires_grad=True) * 1.0)),
        ("step NaN actions", lambda: c.step(np.full((3, 7), NAN))),
        ("step rows out of range", lambda: c.step(np.zeros((1, 7)), rows=[5])),
        ("step repeated rows", lambda: c.step(np.zeros((2, 7)), rows=[0, 0])),
        ("rollout 2-D actions", lambda: c.rollout(np.zeros((3, 7)))),
        ("fork row 9", lambda: c.fork(9, 2)),
        ("fork 0 copies", lambda: c.fork(0, 0)),
        ("restore a dict", lambda: c.restore({"steps": 1})),
    ]
    grad = "torch tensors are actions (read without their graph), as for the envs"
    for name, call in calls:
        yield Case("ImaginedCore", name, call, setup=lambda: fx.venv.reset(seed=0),
                   fingerprint=lambda: imagined_fingerprint(fx.venv), probe=lambda: fx.venv.step(zero),
                   documented=grad if "requiring grad" in name else None)


def world_model(fx: Fixtures) -> Iterator[Case]:
    model = fx.ckpt.model
    state: dict[str, Any] = {}

    def setup() -> None:
        frames = fx.ckpt.reset_observations["agentview_image"][:2, None]
        state["s"] = model.observe(model.init_state(2), frames)

    def fingerprint() -> dict[str, torch.Tensor]:
        return {k: v.clone() for k, v in state["s"].items()}

    def probe() -> Any:
        return model.step(state["s"], np.zeros((2, 7), np.float32))

    cases: list[tuple[str, Callable[[], Any]]] = [
        (f"step {name}", lambda a=a: model.step(state["s"], a)) for name, a in bad_actions((2, 7))
        if name not in RANGE_CASES  # the model itself has no action bounds
    ]
    cases += [
        ("step with a dict as state", lambda: model.step({"t": 0}, np.zeros((2, 7)))),
        ("observe float frames", lambda: model.observe(state["s"], np.zeros((2, 1, 64, 64, 3), np.float32))),
        ("observe frames of another size", lambda: model.observe(state["s"], np.zeros((2, 1, 32, 32, 3), np.uint8))),
        ("observe frames for 3 rows", lambda: model.observe(state["s"], np.zeros((3, 1, 64, 64, 3), np.uint8))),
        ("rollout [B, A] actions", lambda: model.rollout(state["s"], np.zeros((2, 7)))),
        ("init_state batch 0", lambda: model.init_state(0)),
    ]
    for name, call in cases:
        yield Case("WorldModel", name, call, setup=setup, fingerprint=fingerprint, probe=probe)


def real_envs(fx: Fixtures) -> Iterator[Case]:
    """robosuite Lift and ALOHA TransferCube (skipped when the simulators are not installed)."""
    try:
        from kairos_gym.envs.aloha_env import AlohaEnv
        from kairos_gym.envs.robosuite_env import RobosuiteEnv
    except ImportError:
        return
    families = [
        ("RobosuiteEnv", lambda: fx.get("lift", lambda: RobosuiteEnv("Lift", cameras=("agentview",))),
         RobosuiteEnv, "Lift", "agentview"),
        ("AlohaEnv", lambda: fx.get("aloha", lambda: AlohaEnv("TransferCube", cameras=("top",))),
         AlohaEnv, "TransferCube", "top"),
    ]
    for family, env_of, cls, task, camera in families:
        def setup(env_of: Callable[[], Any] = env_of) -> None:
            env = env_of()
            env.reset(seed=0)
            env.step(_hold(env))

        def fingerprint(env_of: Callable[[], Any] = env_of) -> Any:
            env = env_of()
            return (env.get_sim_state(), env._steps, json.dumps(env.np_random.bit_generator.state, default=str))

        def probe(env_of: Callable[[], Any] = env_of) -> Any:
            env = env_of()
            return env.step(_hold(env))

        dim = 7 if family == "RobosuiteEnv" else 14
        for name, action in bad_actions((dim,)):
            if family == "AlohaEnv" and name in RANGE_CASES:
                continue  # ALOHA's bounds are joint ranges, not [-1, 1]: covered below
            yield Case(f"{family}.step", name, lambda a=action, e=env_of: e().step(a),
                       setup=setup, fingerprint=fingerprint, probe=probe)
        if family == "AlohaEnv":
            yield Case(f"{family}.step", "a joint target beyond its range",
                       lambda e=env_of: e().step(_hold(e()) + 10.0),
                       setup=setup, fingerprint=fingerprint, probe=probe)
        for name, options in [("unknown option", {"observation": 1}), ("reset_index", {"reset_index": 0}),
                              ("options a list", [1]), ("options a string", "x")]:
            yield Case(f"{family}.reset", name, lambda o=options, e=env_of: e().reset(seed=3, options=o),
                       setup=setup, fingerprint=fingerprint, probe=probe)
        yield Case(f"{family}.reset", "seed -1", lambda e=env_of: e().reset(seed=-1),
                   setup=setup, fingerprint=fingerprint, probe=probe)
        yield Case(f"{family} attribute", "max_episode_steps = -5",
                   lambda e=env_of: setattr(e(), "max_episode_steps", -5),
                   setup=setup, fingerprint=fingerprint, probe=probe)
        for name, kwargs in [("cameras a string", {"cameras": camera}), ("unknown camera", {"cameras": ("nope",)}),
                             ("camera twice", {"cameras": (camera, camera)}), ("image_size 0", {"image_size": 0}),
                             ("image_size -8", {"image_size": -8}), ("image_size '64'", {"image_size": "64"}),
                             ("image_size ('a', 'b')", {"image_size": ("a", "b")}),
                             ("max_episode_steps 0", {"max_episode_steps": 0}),
                             ("max_episode_steps 'x'", {"max_episode_steps": "x"}),
                             ("render_mode 'human'", {"render_mode": "human"}),
                             ("cameras (1, 2)", {"cameras": (1, 2)})]:
            yield Case(f"{family} constructor", name, lambda c=cls, t=task, k=kwargs: c(t, **k),
                       probe=probe)
        yield Case(f"{family} constructor", "unknown task", lambda c=cls: c("Juggle"), probe=probe)


def _hold(env: Any) -> np.ndarray:
    """A valid action: zeros for robosuite, the current joints for ALOHA."""
    space = env.action_space
    return np.clip(np.zeros(space.shape, np.float32), space.low, space.high)
