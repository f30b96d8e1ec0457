"""One browser's play session: its own imagined env (and real env), snapshots and recording.

A :class:`PlaySession` is created per WebSocket connection. It owns an
:class:`~kairos_gym.imagined.env.ImaginedEnv` over the server's one loaded checkpoint (the
model is shared, the episode memory is not), with ``--real`` its own real simulator, its
snapshots and its :class:`~kairos_gym.play.recorder.Recorder` folder, so two browsers never
share an episode or a file. Every method runs on the session's own worker thread (the
server guarantees it): simulators with an EGL context must be created, stepped and closed
on one thread, and one thread per session also keeps a session's commands in order.

Pairing with ``--real``: a reset seeds the real simulator and starts the imagined episode
from the real reset observation; each action goes to both; the frame reply carries both
images and the PSNR between them. The pair ends when either episode ends.

Fork and rewind: a snapshot holds the imagined core's exact state
(:meth:`ImaginedEnv.snapshot`) and, for the real simulator, the episode's seed and the
actions taken so far. Rewinding restores the imagined state exactly and replays the real
episode from its seeded reset (the public ``reset``/``step`` API; MuJoCo is deterministic, and
the reply says whether the replayed observation matched the stored one bit for bit). The
replay costs one real step per step of history.
"""

from __future__ import annotations

import base64
import io
import logging
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kairos_gym.data.spaces import EpisodeEnvSpec
from kairos_gym.errors import InvalidAction, ResetNeeded
from kairos_gym.evaluation.metrics import psnr
from kairos_gym.imagined.checkpoint import EnvCheckpoint
from kairos_gym.imagined.core import ImaginedSnapshot
from kairos_gym.imagined.env import ImaginedEnv
from kairos_gym.play.protocol import (
    COMMON_KEYS,
    MAX_SEED,
    OSC7_GRIPPER_DIM,
    OSC7_KEYS,
    PROTOCOL_VERSION,
    SLIDER_KEYS,
    Command,
    control_mode,
)
from kairos_gym.play.recorder import Recorder, RecordingBuffer

__all__ = ["MAX_SNAPSHOTS", "PlaySession", "Refused"]

log = logging.getLogger("kairos_gym.play")

MAX_SNAPSHOTS = 32
"""Snapshots kept per session; the oldest is dropped beyond this (each holds model memory)."""


class Refused(Exception):
    """A well-formed command that cannot run now (the message says why and what to do)."""


@dataclass(frozen=True)
class _Snapshot:
    """A fork point: the imagined state plus what rebuilds the real one."""

    imagined: ImaginedSnapshot
    episode: int
    seed: int
    reset_index: int | None
    step: int
    actions: tuple[np.ndarray, ...]
    ended_by: tuple[str, ...]
    real_observation: dict[str, np.ndarray] | None
    frame: dict[str, Any]


def png_data_url(frame: np.ndarray) -> str:
    """A uint8 ``[H, W, 3]`` frame as a ``data:image/png;base64,...`` URL (lossless)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(frame)).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _finite(value: float | None) -> float | None:
    """JSON has no inf/NaN: such values become ``None`` (the page shows a dash)."""
    if value is None or not np.isfinite(value):
        return None
    return float(value)


class PlaySession:
    """One browser's imagined (and real) episode, snapshots and recordings.

    Args:
        checkpoint: the server's loaded checkpoint (shared by every session).
        session_id: names the session's recording folder.
        record_dir: parent folder of every session's recordings.
        model_lock: serialises calls into the shared model across sessions.
        real: also run the real simulator of the checkpoint's env spec.
        max_episode_steps: episode limit of both envs (``None``: the checkpoint's).
        sample_steps: Euler steps per imagined frame (``None``: the config's).
        done_threshold: the imagined episode terminates when ``done_prob`` exceeds it
            (``1.0``: never, to play on past the model's predicted end).

    Raises:
        DependencyNotInstalled / gymnasium.error.Error: the real simulator cannot be built.
    """

    def __init__(
        self,
        checkpoint: EnvCheckpoint,
        session_id: str,
        record_dir: Path,
        model_lock: threading.Lock,
        *,
        real: bool = False,
        max_episode_steps: int | None = None,
        sample_steps: int | None = None,
        done_threshold: float = 0.5,
    ) -> None:
        self.checkpoint = checkpoint
        self.session_id = session_id
        self.spec = checkpoint.env_spec
        self.image_key = checkpoint.image_key
        self._lock = model_lock
        self.env = ImaginedEnv(checkpoint, max_episode_steps=max_episode_steps,
                               sample_steps=sample_steps, done_threshold=done_threshold)
        self.low = np.asarray(self.env.action_space.low, dtype=np.float64)
        self.high = np.asarray(self.env.action_space.high, dtype=np.float64)
        self.mode = control_mode(self.low, self.high)
        self.real_env: Any = None
        real_spec = None
        if real:
            self.real_env, real_spec = self._make_real(max_episode_steps)
        self.recorder = Recorder(
            Path(record_dir) / session_id, self.spec, real_spec, self.image_key,
            self.spec.control_freq,
            {"checkpoint": str(checkpoint.path), "session": session_id},
        )
        self.recording = False  # armed: record every step (a new buffer after each reset)
        self._buffer: RecordingBuffer | None = None
        self._snapshots: OrderedDict[int, _Snapshot] = OrderedDict()
        self._next_snapshot = 0
        self._seeds = np.random.default_rng(secrets.randbits(64))
        self.episode = -1  # no episode yet
        self.seed = 0
        self.reset_index: int | None = None
        self.actions: list[np.ndarray] = []
        self.ended_by: list[str] = []
        self.obs: dict[str, np.ndarray] | None = None
        self.real_obs: dict[str, np.ndarray] | None = None
        self.frame: dict[str, Any] = {}

    def _make_real(self, max_episode_steps: int | None) -> tuple[Any, EpisodeEnvSpec]:
        import gymnasium as gym

        import kairos_gym  # noqa: F401  (registers the real environment ids)

        kwargs = dict(self.spec.env_kwargs)
        if max_episode_steps is not None:
            kwargs["max_episode_steps"] = max_episode_steps
        env = gym.make(self.spec.env_id, **kwargs)
        real_spec = EpisodeEnvSpec.from_env(env, env_kwargs=kwargs)
        if env.observation_space[self.image_key].shape != self.spec.observation_space[
            self.image_key
        ].shape:
            env.close()
            raise ValueError(
                f"the real env's {self.image_key!r} images are "
                f"{env.observation_space[self.image_key].shape}, the model's are "
                f"{self.spec.observation_space[self.image_key].shape}"
            )
        return env, real_spec

    # --- what the page needs to build itself ---
    def hello(self) -> dict[str, Any]:
        """The first message of a connection: spaces, controls and limits."""
        return {
            "type": "hello",
            "protocol": PROTOCOL_VERSION,
            "session": self.session_id,
            "env_id": self.spec.env_id,
            "instruction": self.spec.instruction,
            "checkpoint": str(self.checkpoint.path),
            "image_key": self.image_key,
            "image_size": list(self.spec.observation_space[self.image_key].shape[:2]),
            "control_freq": self.spec.control_freq,
            "max_episode_steps": self.env.max_episode_steps,
            "action_low": self.low.tolist(),
            "action_high": self.high.tolist(),
            "control": self.mode,
            "keys": list(OSC7_KEYS if self.mode == "osc7" else SLIDER_KEYS),
            "common_keys": list(COMMON_KEYS),
            "gripper_dim": OSC7_GRIPPER_DIM if self.mode == "osc7" else None,
            "real": self.real_env is not None,
            "num_resets": self.checkpoint.num_resets,
            "record_dir": str(self.recorder.directory.resolve()),
        }

    # --- commands ---
    def handle(self, cmd: Command) -> list[dict[str, Any]]:
        """Run one validated command; returns the replies, in order: any ``recorded``
        first, then the command's own reply (``frame``, ``forked`` or ``recording``) last.

        Raises:
            Refused: the command is not possible now (the reason is in the message).
        """
        if cmd.type == "reset":
            return self.reset(cmd.fields["seed"], cmd.fields["reset_index"])
        if cmd.type == "step":
            return self.step(cmd.fields["action"])
        if cmd.type == "fork":
            return self.fork()
        if cmd.type == "rewind":
            return self.rewind(cmd.fields["snapshot"])
        if cmd.type == "record":
            return self.record(cmd.fields["on"])
        raise Refused(f"unknown command {cmd.type!r}")

    def reset(self, seed: int | None, reset_index: int | None = None) -> list[dict[str, Any]]:
        """Start a new episode; a drawn seed when ``seed`` is ``None`` (reported back)."""
        if reset_index is not None and self.real_env is not None:
            raise Refused(
                "with --real every episode starts from the real simulator's seeded reset "
                "(stored starts have no simulator state): reset with a seed instead"
            )
        if reset_index is not None and reset_index >= self.checkpoint.num_resets:
            raise Refused(
                f"reset_index {reset_index} is out of range: the checkpoint stores "
                f"{self.checkpoint.num_resets} starts (0..{self.checkpoint.num_resets - 1})"
            )
        replies = self._commit("reset")
        if seed is None:
            seed = int(self._seeds.integers(MAX_SEED))
        if self.real_env is not None:
            started = time.perf_counter()
            real_obs, _ = self.real_env.reset(seed=seed)
            real_ms = (time.perf_counter() - started) * 1e3
            options: dict[str, Any] | None = {"observation": real_obs}
        else:
            real_obs, real_ms = None, None
            options = None if reset_index is None else {"reset_index": reset_index}
        started = time.perf_counter()
        with self._lock:
            obs, _ = self.env.reset(seed=seed, options=options)
        imagined_ms = (time.perf_counter() - started) * 1e3
        self.episode += 1
        self.seed, self.reset_index = seed, reset_index
        self.actions, self.ended_by = [], []
        self.obs, self.real_obs = obs, real_obs
        if self.recording:
            self._begin_buffer()
        self.frame = self._frame(reward=None, info={}, real_reward=None, real_info={},
                                 ms={"imagined": imagined_ms, "real": real_ms})
        return [*replies, self._frame_reply(start=True)]

    def step(self, action: np.ndarray) -> list[dict[str, Any]]:
        """One step of the imagined env (and the real one) with ``action`` ``[A]``."""
        if self.obs is None:
            raise Refused("no episode yet: reset first (key N)")
        if self.ended_by:
            raise Refused(
                f"the episode has ended ({', '.join(self.ended_by)}): reset (N) or rewind (Z)"
            )
        started = time.perf_counter()
        try:
            with self._lock:
                obs, reward, terminated, truncated, info = self.env.step(action)
        except (InvalidAction, ResetNeeded) as exc:
            raise Refused(str(exc)) from None
        imagined_ms = (time.perf_counter() - started) * 1e3
        ended_by = []
        if terminated:
            ended_by.append("imagined: terminated")
        if truncated:
            ended_by.append("imagined: time limit")
        real_reward, real_info, real_ms, score = None, {}, None, None
        real_state = None
        if self.real_env is not None:
            started = time.perf_counter()
            real_obs, real_reward, r_term, r_trunc, real_info = self.real_env.step(action)
            real_ms = (time.perf_counter() - started) * 1e3
            real_state = self._sim_state()
            score = float(psnr(real_obs[self.image_key], obs[self.image_key]))
            if r_term:
                ended_by.append("real: terminated")
            if r_trunc:
                ended_by.append("real: time limit")
            self.real_obs = real_obs
        self.obs = obs
        self.actions.append(np.asarray(action, dtype=np.float32))
        self.ended_by = ended_by
        buf = self._buffer
        if buf is not None:
            buf.actions.append(self.actions[-1])
            buf.imagined.append(obs)
            buf.rewards.append(float(reward))
            buf.success.append(bool(info.get("success", False)))
            buf.dones.append(bool(ended_by))  # the pair ends together
            if buf.real is not None and buf.real_states is not None:
                buf.real.append(self.real_obs)  # type: ignore[arg-type]
                buf.real_states.append(real_state)  # type: ignore[arg-type]
                buf.real_rewards.append(float(real_reward))  # type: ignore[arg-type]
                buf.real_success.append(bool(real_info.get("success", False)))
                buf.psnr.append(score if score is not None else float("nan"))
        self.frame = self._frame(reward=float(reward), info=info, real_reward=real_reward,
                                 real_info=real_info, psnr_db=score,
                                 ms={"imagined": imagined_ms, "real": real_ms})
        # The episode is over: write the recording now (recording stays armed for the next).
        replies = self._commit("episode ended") if ended_by else []
        return [*replies, self._frame_reply()]

    def fork(self) -> list[dict[str, Any]]:
        """Snapshot the episode; the reply lists every snapshot kept."""
        if self.obs is None:
            raise Refused("no episode yet: reset first (key N)")
        with self._lock:
            imagined = self.env.snapshot()
        sid = self._next_snapshot
        self._next_snapshot += 1
        self._snapshots[sid] = _Snapshot(
            imagined=imagined, episode=self.episode, seed=self.seed,
            reset_index=self.reset_index, step=len(self.actions), actions=tuple(self.actions),
            ended_by=tuple(self.ended_by),
            real_observation=None if self.real_obs is None else dict(self.real_obs),
            frame=dict(self.frame),
        )
        while len(self._snapshots) > MAX_SNAPSHOTS:
            self._snapshots.popitem(last=False)
        return [self._forked_reply(sid)]

    def rewind(self, snapshot: int) -> list[dict[str, Any]]:
        """Return to snapshot ``snapshot``: exactly for the imagined env, by replay for the real."""
        snap = self._snapshots.get(snapshot)
        if snap is None:
            raise Refused(
                f"no snapshot {snapshot}; this session keeps {sorted(self._snapshots)} "
                f"(the latest {MAX_SNAPSHOTS})"
            )
        with self._lock:
            obs = self.env.restore(snap.imagined)
        exact = None
        real_ms = None
        if self.real_env is not None:
            started = time.perf_counter()
            real_obs, exact = self._replay_real(snap)
            real_ms = (time.perf_counter() - started) * 1e3
            self.real_obs = real_obs
        buf = self._buffer
        replies: list[dict[str, Any]] = []
        if buf is not None and self._on_recorded_path(buf, snap):
            buf.truncate(snap.step - buf.start_step)
        else:
            replies.extend(self._commit("rewind"))
        self.episode, self.seed, self.reset_index = snap.episode, snap.seed, snap.reset_index
        self.actions, self.ended_by = list(snap.actions), list(snap.ended_by)
        self.obs = obs
        if self.recording and self._buffer is None and not self.ended_by:
            self._begin_buffer()
        self.frame = {**snap.frame, "ms": {"imagined": None, "real": real_ms}}
        if self.real_obs is not None:
            self.frame["real"] = png_data_url(self.real_obs[self.image_key])
        reply = self._frame_reply(start=True)
        reply["rewound_to"] = snapshot
        reply["real_replay_exact"] = exact
        return [*replies, reply]

    def record(self, on: bool) -> list[dict[str, Any]]:
        """Arm (``on``) or stop recording; stopping writes the episode so far."""
        replies: list[dict[str, Any]] = []
        if on and not self.recording:
            self.recording = True
            if self.obs is not None and not self.ended_by:
                self._begin_buffer()
        elif not on and self.recording:
            self.recording = False
            replies.extend(self._commit("record off"))
        return [*replies, self._recording_reply()]

    def close(self) -> dict[str, Any] | None:
        """Write an unfinished recording and free the envs; returns what was written."""
        written = None
        try:
            replies = self._commit("disconnected")
            written = next((r for r in replies if r["type"] == "recorded"), None)
        finally:
            self.env.close()
            if self.real_env is not None:
                self.real_env.close()
        return written

    # --- helpers ---
    def _sim_state(self) -> np.ndarray | None:
        getter = getattr(self.real_env.unwrapped, "get_sim_state", None)
        return None if getter is None else np.asarray(getter(), dtype=np.float64)

    def _replay_real(self, snap: _Snapshot) -> tuple[dict[str, np.ndarray], bool | None]:
        real_obs, _ = self.real_env.reset(seed=snap.seed)
        for action in snap.actions:
            real_obs, *_ = self.real_env.step(action)
        stored = snap.real_observation
        exact = None if stored is None else all(
            np.array_equal(real_obs[k], stored[k]) for k in stored
        )
        if exact is False:
            log.warning("session %s: the real replay to step %d differs from the stored "
                        "observation", self.session_id, snap.step)
        return real_obs, exact

    def _on_recorded_path(self, buf: RecordingBuffer, snap: _Snapshot) -> bool:
        """Whether ``snap`` lies on the stretch ``buf`` recorded (not on an abandoned branch):
        same episode, and the same actions up to the snapshot. Episodes are deterministic
        given their start and actions (the snapshot holds the noise state), so equal actions
        mean equal observations."""
        if buf.episode != snap.episode or not (
            buf.start_step <= snap.step <= buf.start_step + buf.num_steps
        ):
            return False
        recorded = list(buf.prefix) + buf.actions[: snap.step - buf.start_step]
        return all(np.array_equal(a, b) for a, b in zip(recorded, snap.actions, strict=True))

    def _begin_buffer(self) -> None:
        if self.obs is None:
            return
        real = self.real_env is not None and self.real_obs is not None
        state = self._sim_state() if real else None
        self._buffer = RecordingBuffer(
            episode=self.episode, start_step=len(self.actions), seed=self.seed,
            prefix=tuple(self.actions),
            imagined=[self.obs],
            real=[self.real_obs] if real else None,  # type: ignore[list-item]
            real_states=[state] if real and state is not None else None,
        )
        if real and state is None:
            # A simulator without get_sim_state: record the real side without states.
            self._buffer.real_states = None
            self._buffer.real = None

    def _commit(self, reason: str) -> list[dict[str, Any]]:
        buf, self._buffer = self._buffer, None
        if buf is None:
            return []
        written = self.recorder.commit(buf, ended_by=self.ended_by or [reason])
        if written is None:
            return []
        return [{"type": "recorded", **written, "reason": reason}]

    def _frame(
        self,
        *,
        reward: float | None,
        info: dict[str, Any],
        real_reward: float | None,
        real_info: dict[str, Any],
        ms: dict[str, float | None],
        psnr_db: float | None = None,
    ) -> dict[str, Any]:
        obs = self.obs or {}
        frame: dict[str, Any] = {
            "imagined": png_data_url(obs[self.image_key]),
            "reward": _finite(reward),
            "success": bool(info.get("success", False)),
            "success_prob": _finite(info.get("success_prob")),
            "done_prob": _finite(info.get("done_prob")),
            "real": None,
            "real_reward": _finite(real_reward),
            "real_success": bool(real_info.get("success", False)) if real_info else None,
            "psnr": _finite(psnr_db),
            "ms": {k: _finite(v) for k, v in ms.items()},
        }
        if self.real_obs is not None:
            frame["real"] = png_data_url(self.real_obs[self.image_key])
        return frame

    def _hold_action(self) -> list[float]:
        """The action that keeps the robot still: zero motion, gripper open for OSC; for
        joint-position actions the measured ``state`` when it has the action's width
        (ALOHA), else the middle of the bounds."""
        if self.mode == "osc7":
            action = np.zeros(7)
            action[OSC7_GRIPPER_DIM] = -1.0
            return action.tolist()
        state = (self.real_obs or self.obs or {}).get("state")
        if state is not None and np.shape(state) == self.low.shape:
            return np.clip(np.asarray(state, dtype=np.float64), self.low, self.high).tolist()
        return ((self.low + self.high) / 2).tolist()

    def _frame_reply(self, *, start: bool = False) -> dict[str, Any]:
        reply = {
            "type": "frame",
            "episode": self.episode,
            "step": len(self.actions),
            "seed": self.seed,
            "reset_index": self.reset_index,
            **self.frame,
            "ended": bool(self.ended_by),
            "ended_by": list(self.ended_by),
            "recording": self.recording,
            "recorded_steps": 0 if self._buffer is None else self._buffer.num_steps,
            "start": start,
        }
        if start:
            reply["hold_action"] = self._hold_action()
        return reply

    def _forked_reply(self, sid: int) -> dict[str, Any]:
        return {
            "type": "forked",
            "snapshot": sid,
            "step": self._snapshots[sid].step,
            "episode": self._snapshots[sid].episode,
            "snapshots": [{"snapshot": k, "episode": s.episode, "step": s.step}
                          for k, s in self._snapshots.items()],
        }

    def _recording_reply(self) -> dict[str, Any]:
        return {
            "type": "recording",
            "on": self.recording,
            "recorded_steps": 0 if self._buffer is None else self._buffer.num_steps,
            "directory": str(self.recorder.directory.resolve()),
        }
