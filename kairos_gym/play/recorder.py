"""Recording played episodes: episode files in the project's format, plus an mp4 per episode.

A session records into its own folder, so two browsers never write into one file::

    <record_dir>/<session>/imagined.hdf5   the imagined episodes (always)
    <record_dir>/<session>/real.hdf5       the real simulator's episodes (with --real)
    <record_dir>/<session>/demo_<i>.mp4    what was on screen: [real | imagined], 4x, at the control rate

Episode ``demo_<i>`` of ``imagined.hdf5``, ``demo_<i>`` of ``real.hdf5`` and ``demo_<i>.mp4`` are
the same played stretch. Both files use :class:`~kairos_gym.data.episodes.EpisodeWriter`
(robomimic/LIBERO layout, read with :func:`kairos_gym.data.open_episodes`):

- ``real.hdf5`` is ordinary training data: real observations, rewards and success labels,
  and the simulator state of every step (``states``), exactly as ``kairos-gym collect``
  writes, so a played real episode can be replayed and trained on.
- ``imagined.hdf5`` holds what the model imagined: generated images, predicted state,
  predicted reward (``rewards``) and ``success_prob > 0.5`` (``success``). An imagined world
  has no simulator state, so it has no ``states``/``final_states`` (the writer and the
  readers treat them as optional). Its ``data`` attribute ``play`` and every episode's
  ``source = "imagined"`` mark it, so it is never mistaken for real data.

Each episode also carries ``source``, ``played``, ``start_step``, ``ended_by``, ``video``,
and ``terminated`` / ``truncated`` as ``kairos-gym collect`` writes them: ``terminated`` only
when that file's own env terminated; a time limit, or the other side ending the pair, is
``truncated`` (training never learns a cut as a termination); a recording stopped by hand
ends with ``dones[-1] = False``.

A recording may start mid-episode (``start_step`` attribute). Rewinding to a snapshot cuts
the recording back to that step (the abandoned branch is dropped: an episode file holds one
causal sequence ``obs[t] -> actions[t] -> obs[t + 1]``).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kairos_gym.data.episodes import EpisodeWriter
from kairos_gym.data.spaces import EpisodeEnvSpec

__all__ = ["Recorder", "RecordingBuffer"]

log = logging.getLogger("kairos_gym.play")

VIDEO_SCALE = 4
_GAP = 4  # pixels between the real and the imagined panel
_CAPTION = 20  # rows of the caption bar (even: libx264 needs even frame sizes)


@dataclass
class RecordingBuffer:
    """The steps of one recording in progress (``T`` steps, ``T + 1`` observations).

    Attributes:
        episode: the session's episode counter when the recording began.
        start_step: the episode step of ``imagined[0]``.
        seed: the episode's reset seed.
        prefix: the episode's actions before ``start_step`` (where the recording began).
        imagined / real: observations, ``imagined[t]`` seen before ``actions[t]``.
        real_states: simulator state when ``real[t]`` was seen (``[S]`` float64 each).
        actions: float32 ``[A]`` each.
        rewards / success (and ``real_*``): what ``actions[t]`` led to.
        dones: the played episode ended after ``actions[t]`` (either side ended it).
        psnr: imagined against real frame after each step (``--real`` only).
    """

    episode: int
    start_step: int
    seed: int | None
    prefix: tuple[np.ndarray, ...]
    imagined: list[dict[str, np.ndarray]]
    real: list[dict[str, np.ndarray]] | None = None
    real_states: list[np.ndarray] | None = None
    actions: list[np.ndarray] = field(default_factory=list)
    rewards: list[float] = field(default_factory=list)
    success: list[bool] = field(default_factory=list)
    dones: list[bool] = field(default_factory=list)
    real_rewards: list[float] = field(default_factory=list)
    real_success: list[bool] = field(default_factory=list)
    psnr: list[float] = field(default_factory=list)

    @property
    def num_steps(self) -> int:
        """``T``, the steps recorded so far."""
        return len(self.actions)

    def truncate(self, steps: int) -> None:
        """Keep the first ``steps`` steps (and ``steps + 1`` observations)."""
        for name in ("actions", "rewards", "success", "dones", "real_rewards", "real_success",
                     "psnr"):
            del getattr(self, name)[steps:]
        del self.imagined[steps + 1:]
        if self.real is not None and self.real_states is not None:
            del self.real[steps + 1:]
            del self.real_states[steps + 1:]


class Recorder:
    """Writes a session's recordings (see the module docstring for the files).

    Files and the folder are created at the first commit, so a session that never records
    leaves nothing behind.

    Args:
        directory: the session's folder (created when needed; its parent may not exist yet).
        imagined_spec: the checkpoint's env spec (the imagined env's spaces).
        real_spec: the real env's spec with ``--real``, else ``None``.
        image_key: the camera the model generates.
        fps: video frame rate (the control rate).
        attrs: JSON-able facts stored in both files' ``data`` attribute ``play``
            (checkpoint, session).
    """

    def __init__(
        self,
        directory: Path,
        imagined_spec: EpisodeEnvSpec,
        real_spec: EpisodeEnvSpec | None,
        image_key: str,
        fps: float,
        attrs: dict[str, Any],
    ) -> None:
        self.directory = Path(directory)
        self.imagined_spec = imagined_spec
        self.real_spec = real_spec
        self.image_key = image_key
        self.fps = float(fps)
        self.attrs = dict(attrs)
        self._imagined_writer: EpisodeWriter | None = None
        self._real_writer: EpisodeWriter | None = None
        self.committed: list[dict[str, Any]] = []

    @property
    def imagined_path(self) -> Path:
        """``<directory>/imagined.hdf5``."""
        return self.directory / "imagined.hdf5"

    @property
    def real_path(self) -> Path:
        """``<directory>/real.hdf5``."""
        return self.directory / "real.hdf5"

    def _writers(self) -> tuple[EpisodeWriter, EpisodeWriter | None]:
        if self._imagined_writer is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            play = {**self.attrs, "source": "imagined"}
            self._imagined_writer = EpisodeWriter(
                self.imagined_path, self.imagined_spec, file_attrs={"play": json.dumps(play)}
            )
            if self.real_spec is not None:
                play = {**self.attrs, "source": "real"}
                self._real_writer = EpisodeWriter(
                    self.real_path, self.real_spec, file_attrs={"play": json.dumps(play)}
                )
        return self._imagined_writer, self._real_writer

    def commit(self, buf: RecordingBuffer, *, ended_by: list[str]) -> dict[str, Any] | None:
        """Write ``buf`` as one episode per file and one mp4; ``None`` when it has no step.

        Returns:
            ``{"episode": "demo_<i>", "steps": T, "imagined": path, "real": path | None,
            "video": path}`` (absolute paths).
        """
        steps = buf.num_steps
        if steps == 0:
            return None
        imagined_writer, real_writer = self._writers()
        video_name = f"demo_{imagined_writer.num_episodes}.mp4"
        common = {
            "played": True,
            "start_step": buf.start_step,
            "ended_by": ", ".join(ended_by),
            "video": video_name,
        }
        # Per file, whether its own env terminated; any other end (a time limit, the other
        # side ending the pair) is a cut, which training must not learn as a termination.
        ended = bool(buf.dones[-1])
        imagined_end = _end_attrs(ended, "imagined: terminated" in ended_by)
        real_end = _end_attrs(ended, "real: terminated" in ended_by)
        actions = np.stack(buf.actions)
        name = imagined_writer.write_episode(
            obs=_stack(buf.imagined[:-1]),
            actions=actions,
            rewards=np.asarray(buf.rewards),
            dones=np.asarray(buf.dones),
            success=np.asarray(buf.success),
            final_obs=buf.imagined[-1],
            seed=buf.seed,
            attrs={**common, **imagined_end, "source": "imagined"},
        )
        real_file = None
        if real_writer is not None and buf.real is not None and buf.real_states is not None:
            psnr = [p for p in buf.psnr if np.isfinite(p)]
            real_writer.write_episode(
                obs=_stack(buf.real[:-1]),
                actions=actions,
                rewards=np.asarray(buf.real_rewards),
                dones=np.asarray(buf.dones),
                success=np.asarray(buf.real_success),
                states=np.stack(buf.real_states[:-1]),
                final_obs=buf.real[-1],
                final_state=buf.real_states[-1],
                seed=buf.seed,
                attrs={**common, **real_end, "source": "real",
                       "psnr_mean": float(np.mean(psnr)) if psnr else float("nan")},
            )
            real_file = str(self.real_path.resolve())
        video = self.directory / video_name
        self._write_video(buf, video)
        result = {
            "episode": name,
            "steps": steps,
            "imagined": str(self.imagined_path.resolve()),
            "real": real_file,
            "video": str(video.resolve()),
        }
        self.committed.append(result)
        log.info("recorded %s (%d steps) in %s", name, steps, self.directory)
        return result

    def _write_video(self, buf: RecordingBuffer, path: Path) -> None:
        import imageio.v2 as imageio

        frames = []
        for t, obs in enumerate(buf.imagined):
            step = buf.start_step + t
            panels = []
            if buf.real is not None:
                panels.append(_caption(_upscale(buf.real[t][self.image_key]), f"real  {step}"))
            text = f"imagined  {step}"
            if t > 0 and buf.psnr and np.isfinite(buf.psnr[t - 1]):
                text += f"  {buf.psnr[t - 1]:.1f} dB"
            panels.append(_caption(_upscale(obs[self.image_key]), text))
            frames.append(_side_by_side(panels))
        imageio.mimwrite(path, frames, fps=self.fps, macro_block_size=1)


def _end_attrs(ended: bool, terminated: bool) -> dict[str, bool]:
    """The ``terminated`` / ``truncated`` episode attributes ``kairos-gym collect`` writes."""
    return {"terminated": ended and terminated, "truncated": ended and not terminated}


def _stack(observations: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {key: np.stack([o[key] for o in observations]) for key in observations[0]}


def _upscale(frame: np.ndarray) -> np.ndarray:
    """Nearest-neighbour ``VIDEO_SCALE``x: model frames are small (16-64 px)."""
    return np.repeat(np.repeat(frame, VIDEO_SCALE, axis=0), VIDEO_SCALE, axis=1)


def _caption(frame: np.ndarray, text: str) -> np.ndarray:
    """``frame`` under a white caption bar (Pillow ships with imageio)."""
    from PIL import Image, ImageDraw

    bar = np.full((_CAPTION, frame.shape[1], 3), 255, np.uint8)
    image = Image.fromarray(np.concatenate([bar, frame]))
    ImageDraw.Draw(image).text((4, 4), text, fill=(0, 0, 0))
    return np.asarray(image)


def _side_by_side(panels: list[np.ndarray]) -> np.ndarray:
    gap = np.full((panels[0].shape[0], _GAP, 3), 255, np.uint8)
    parts: list[np.ndarray] = []
    for panel in panels:
        if parts:
            parts.append(gap)
        parts.append(panel)
    return np.concatenate(parts, axis=1)
