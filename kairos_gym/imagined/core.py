"""``ImaginedCore``: the one batched imagined core behind every imagined environment.

The core serves one environment checkpoint over ``N`` rows. Each row is an imagined episode
with its own memory row (a :class:`~kairos_gym.model.state.WorldState` row: ring-buffer K/V
and Gated DeltaNet state), its own frame counter, step count, last observation, reset draw
generator (numpy) and sampling-noise generator (torch). Everything that stepping means lives
here, written once:

- :meth:`ImaginedCore.start` starts rows from stored real reset observations, given
  observations or stored indices, seeded per row;
- :meth:`ImaginedCore.step` imagines the next frame of some rows from their actions in one
  batched model call, with thresholds and truncation applied, optionally without decoding
  frames (planners score predicted outcomes in latent space);
- :meth:`ImaginedCore.rollout` steps action chunks ``[R, H, A]``;
- :meth:`ImaginedCore.fork` copies a row ``n`` times into a new core (candidate futures);
- :meth:`ImaginedCore.snapshot` / :meth:`ImaginedCore.restore` save and rewind rows exactly.

:class:`~kairos_gym.imagined.env.ImaginedEnv` is its 1-row view and
:class:`~kairos_gym.imagined.vector.ImaginedVectorEnv` its ``N``-row view::

    from kairos_gym.imagined import ImaginedCore
    core = ImaginedCore(None, num_rows=1)            # the embedded Lift model, one row
    core.start(seeds=[0])
    futures = core.fork(0, 256)                      # 256 copies of row 0
    out = futures.rollout(candidates)                # candidates [256, H, 7] -> rewards [256, H]
    best = candidates[out.reward.sum(1).argmax()]

Row ``i`` of a core consumes its generators exactly as a core of one row would, so a row's
trajectory never depends on the other rows (up to float rounding of batched matrix products).

**Several actions per latent frame.** A model with temporal compression ``tc > 1`` (the Wan2.1
VAE: ``tc = 4``) imagines one latent frame, decoded to ``tc`` video frames, from ``tc``
actions. Each env step still takes one action. The core buffers a row's actions; at the
``tc``-th it imagines the latent frame from all of them and decodes its ``tc`` frames. So:

- *The observation between latent steps* is the latest imagined frame: the start frame, or
  the last frame of the latest latent step. A policy sees a new image every ``tc`` steps, at
  the step whose action completed the group; during the group the image lags its actions by
  up to ``tc - 1`` steps (as with a frame skip). No frame is ever shown before the actions
  that produce it were all given.
- The state keys (the state head) and ``success_prob`` / ``done_prob`` are those of the
  latest latent step (0 after a start) and change only at latent steps; a latent step's
  predicted ``reward`` (trained as the sum over its ``tc`` steps) is paid at its last step,
  0 at the buffered ones, so returns add up. An episode can be truncated mid-group; it
  then ends with its last actions unused.
- :meth:`ImaginedCore.rollout` with ``decode=True`` puts each decoded frame at the step of
  the action that led into it (frames of a group cut off by the chunk's end or by the
  episode's end are the observations the env returned). ``StepResult.latent_frames`` holds
  the ``tc`` frames of the rows that stepped a latent frame.
- The video decoder is causal: its memory must follow every latent frame, so these models
  always decode (``decode=False`` only skips copying the frames out).
"""

from __future__ import annotations

import copy
import dataclasses
import os
import types
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium.utils import seeding
from gymnasium.vector.utils import create_empty_array

from kairos_gym.devices import check_device, parse_device
from kairos_gym.envs.common import as_array, check_action
from kairos_gym.errors import InvalidAction, ResetNeeded, ShapeError
from kairos_gym.imagined.checkpoint import EnvCheckpoint, load_env_checkpoint
from kairos_gym.imagined.success import SuccessRule
from kairos_gym.model.sampler import SamplerSettings
from kairos_gym.model.state import WorldState
from kairos_gym.model.world_model import WorldModel

__all__ = [
    "RESET_OPTIONS",
    "CoreView",
    "ImaginedCore",
    "ImaginedSnapshot",
    "RolloutResult",
    "StartRequest",
    "StepResult",
    "check_observation",
    "resolve_checkpoint",
]

RESET_OPTIONS = ("observation", "reset_index")
# Torch seeds are drawn below 2**63 so they fit torch's int64 manual_seed.
_SEED_BOUND = 2**63 - 1


@dataclass(frozen=True)
class StartRequest:
    """Validated reset options for ``R`` rows (see :meth:`ImaginedCore.parse_start`).

    Attributes:
        observations: per row, a start observation (a dict in the observation space), or
            ``None`` for the whole request (stored starts).
        indices: per row, a stored reset index, or ``None`` (drawn from the row's generator).
    """

    observations: tuple[dict[str, np.ndarray], ...] | None = None
    indices: tuple[int, ...] | None = None


@dataclass(frozen=True)
class StepResult:
    """What one :meth:`ImaginedCore.step` produced for its ``R`` rows.

    Attributes:
        rows: int ``[R]``, the core rows stepped, in the order of the other fields.
        observations: ``{key: [R, *shape]}`` in the real observation layout, or ``None`` when
            the step did not decode frames.
        reward: float64 ``[R]``, the predicted reward.
        success_prob, done_prob: float64 ``[R]``, the predicted probabilities.
        success: bool ``[R]``, the core's :class:`SuccessRule` met at this step: the last
            ``success_hold`` steps all had ``success_prob > success_threshold``.
        terminated: bool ``[R]``, ``done_prob > done_threshold``.
        truncated: bool ``[R]``, the episode limit reached and not terminated.
        instruction: the task instruction.
        latent_step: bool ``[R]``, the rows that imagined a latent frame at this step (all
            of them with temporal compression 1; with ``tc > 1``, the rows whose action
            completed a group of ``tc``), or ``None`` when every row did.
        latent_frames: uint8 ``[R, tc, H_img, W_img, 3]``, the decoded frames of the latent
            step of the ``latent_step`` rows (zeros for the others); ``None`` with temporal
            compression 1 or without decoding.
    """

    rows: np.ndarray
    observations: dict[str, np.ndarray] | None
    reward: np.ndarray
    success_prob: np.ndarray
    done_prob: np.ndarray
    success: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    instruction: str
    latent_step: np.ndarray | None = None
    latent_frames: np.ndarray | None = None

    def info(self, j: int) -> dict[str, Any]:
        """The Gymnasium ``info`` dict of the ``j``-th stepped row.

        ``success`` and ``is_success`` (the key LeRobot's evaluator and SB3's Monitor read)
        carry the same flag; with temporal compression ``tc > 1``, ``latent_step`` says
        whether the row imagined a latent frame (a new image) at this step.
        """
        success = bool(self.success[j])
        info = {
            "success": success,
            "is_success": success,
            "success_prob": float(self.success_prob[j]),
            "done_prob": float(self.done_prob[j]),
            "instruction": self.instruction,
        }
        if self.latent_step is not None:
            info["latent_step"] = bool(self.latent_step[j])
        return info


@dataclass(frozen=True)
class RolloutResult:
    """Outcomes of :meth:`ImaginedCore.rollout` over ``R`` rows and ``H`` steps.

    Steps after a row's episode ended (terminated or truncated) are not part of its episode:
    their ``reward`` is 0, ``alive`` is False and nothing else is meaningful.

    Attributes:
        rows: int ``[R]``.
        reward, success_prob, done_prob: float64 ``[R, H]``.
        success, terminated, truncated: bool ``[R, H]``.
        alive: bool ``[R, H]``: step ``h`` belongs to the row's episode.
        frames: uint8 ``[R, H, H_img, W_img, 3]`` when decoded, else ``None``.
    """

    rows: np.ndarray
    reward: np.ndarray
    success_prob: np.ndarray
    done_prob: np.ndarray
    success: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    alive: np.ndarray
    frames: np.ndarray | None

    @property
    def returns(self) -> np.ndarray:
        """float64 ``[R]``: the summed predicted reward of each row's episode part."""
        return self.reward.sum(axis=1)


@dataclass(frozen=True)
class ImaginedSnapshot:
    """An immutable copy of ``R`` rows of an :class:`ImaginedCore`.

    Restoring it (into the same rows, other rows, or another core serving the same
    checkpoint) and taking the same actions reproduces the same frames.

    Attributes:
        state: the rows' memory, a private clone (``R`` rows).
        steps: steps taken in each row's episode.
        observation: ``{key: [R, *shape]}``, the rows' last observations (read-only).
        ended: whether each row's episode had terminated or truncated.
        generator_states: each row's torch noise-generator state (uint8 tensors).
        rng_states: each row's numpy bit-generator state (for later resets).
        latents: the last imagined latents ``[R, C, h, w]`` of rows not yet decoded, else None.
        stale: whether each row's image still has to be decoded from ``latents``.
        phase: actions each row has buffered toward its next latent frame (temporal
            compression ``tc > 1``; empty otherwise).
        pending_actions: float32 ``[R, tc, A]`` the buffered actions, or None.
        outcome_probs: float64 ``[R, 2]`` each row's latest ``(success_prob, done_prob)``,
            or None.
        success_runs: each row's count of consecutive steps passing the success threshold
            (empty in a snapshot made before success rules held over steps: zeros).
    """

    state: WorldState
    steps: tuple[int, ...]
    observation: Mapping[str, np.ndarray]
    ended: tuple[bool, ...]
    generator_states: tuple[torch.Tensor, ...]
    rng_states: tuple[Mapping[str, Any], ...]
    latents: torch.Tensor | None
    stale: tuple[bool, ...]
    phase: tuple[int, ...] = ()
    pending_actions: np.ndarray | None = None
    outcome_probs: np.ndarray | None = None
    success_runs: tuple[int, ...] = ()

    @property
    def num_rows(self) -> int:
        """``R``."""
        return len(self.steps)


class ImaginedCore:
    """``N`` imagined episodes of one environment checkpoint, stepped in batched model calls.

    Args:
        checkpoint: an environment checkpoint directory, a loaded
            :class:`~kairos_gym.imagined.checkpoint.EnvCheckpoint` (shared, never copied) or
            ``None`` for the embedded default model.
        num_rows: ``N``, the number of rows.
        device: where to load the model (default ``"cpu"``); with a loaded checkpoint it must
            be ``None`` or the model's own device.
        max_episode_steps: truncation length; ``None`` uses the real env's limit from the
            checkpoint's spec (no limit if it has none). Settable later
            (``core.max_episode_steps = None`` turns truncation off).
        sample_steps: Euler steps per imagined frame (1..50), overriding the config's.
        success_threshold: a step passes when ``success_prob > success_threshold``;
            ``None`` takes the checkpoint's :class:`SuccessRule` (0.5 when it has none).
        success_hold: ``success`` is true at a step that ends ``success_hold`` consecutive
            passing steps; ``None`` takes the checkpoint's (1 when it has none).
        done_threshold: ``terminated`` is ``done_prob > done_threshold``.
        draw_state: a model with a stochastic dynamics (``proprio_stochastic``) draws each
            carried state (default); ``False`` takes the dynamics' prediction. Draw for closed
            loop: there a policy answers what it sees, as a real arm's scatter is answered.
            Replaying a fixed action sequence open loop, take the prediction: the draws add
            up over the steps with nothing to correct them, and the imagined arm wanders off
            the real one (the paired protocol and the open-loop fidelity benchmark do so).

    Raises:
        CheckpointError: the checkpoint is missing, corrupt or inconsistent.
        ValueError: a bad option (named in the message); TypeError: a bad checkpoint type.
    """

    def __init__(
        self,
        checkpoint: str | os.PathLike | EnvCheckpoint | None = None,
        num_rows: int = 1,
        *,
        device: torch.device | str | None = None,
        max_episode_steps: int | None = None,
        sample_steps: int | None = None,
        success_threshold: float | None = None,
        done_threshold: float = 0.5,
        draw_state: bool = True,
        success_hold: int | None = None,
    ) -> None:
        self.num_rows = _positive_int("num_rows", num_rows)
        if not isinstance(draw_state, bool):
            raise TypeError(f"draw_state must be a bool, got {draw_state!r}")
        # Bad options fail before the checkpoint loads; they override its rule once it has.
        if success_threshold is not None:
            _threshold("success_threshold", success_threshold)
        if success_hold is not None:
            _positive_int("success_hold", success_hold)
        self.done_threshold = done_threshold
        self.checkpoint = resolve_checkpoint(checkpoint, device)
        self.success_rule = self.checkpoint.success_rule
        if success_threshold is not None:
            self.success_threshold = success_threshold
        if success_hold is not None:
            self.success_hold = success_hold
        self.model: WorldModel = self.checkpoint.model
        self.settings: SamplerSettings = dataclasses.replace(
            _sampler_settings(self.model, sample_steps), draw_state=draw_state)
        self.max_episode_steps = (
            self.checkpoint.max_episode_steps
            if max_episode_steps is None
            else _positive_int("max_episode_steps", max_episode_steps, allow_none=True)
        )
        spec = self.checkpoint.env_spec
        self.observation_space: gym.spaces.Dict = spec.observation_space
        self.action_space: gym.spaces.Box = spec.action_space
        self.instruction: str = spec.instruction
        self.control_freq: float = spec.control_freq
        self.image_key: str = self.checkpoint.image_key

        n = self.num_rows
        self._rngs = [seeding.np_random()[0] for _ in range(n)]
        self._generators = [torch.Generator(device=self.model.device) for _ in range(n)]
        self._state: WorldState | None = None
        self._obs: dict[str, np.ndarray] = create_empty_array(
            self.observation_space, n, fn=np.zeros
        )
        self._latents: torch.Tensor | None = None  # [N, C, h, w] for rows not yet decoded
        self._stale = np.zeros(n, dtype=bool)
        self._steps = np.zeros(n, dtype=np.int64)
        self._success_run = np.zeros(n, dtype=np.int64)  # consecutive passing steps per row
        self._started = np.zeros(n, dtype=bool)
        self._ended = np.zeros(n, dtype=bool)
        # Temporal compression: actions buffered toward each row's next latent frame, and the
        # outcome probabilities of its latest latent frame (shown between latent steps).
        self.temporal_compression: int = self.model.config.temporal_compression
        self._phase = np.zeros(n, dtype=np.int64)
        self._pending = np.zeros(
            (n, self.temporal_compression, *self.action_space.shape), np.float32
        )
        self._probs = np.zeros((n, 2), dtype=np.float64)

    # --- settings (validated whenever set) ---
    @property
    def success_rule(self) -> SuccessRule:
        """How ``success`` is read from the predicted probabilities (threshold and hold)."""
        return self._success_rule

    @success_rule.setter
    def success_rule(self, rule: SuccessRule) -> None:
        if not isinstance(rule, SuccessRule):
            raise TypeError(f"success_rule must be a SuccessRule, got {type(rule).__name__}")
        self._success_rule = rule

    @property
    def success_threshold(self) -> float:
        """A step passes when ``success_prob > success_threshold``."""
        return self._success_rule.threshold

    @success_threshold.setter
    def success_threshold(self, value: float) -> None:
        self._success_rule = dataclasses.replace(
            self._success_rule, threshold=_threshold("success_threshold", value))

    @property
    def success_hold(self) -> int:
        """``success`` needs this many consecutive passing steps."""
        return self._success_rule.hold

    @success_hold.setter
    def success_hold(self, value: int) -> None:
        self._success_rule = dataclasses.replace(
            self._success_rule, hold=_positive_int("success_hold", value))

    @property
    def done_threshold(self) -> float:
        """``terminated`` is ``done_prob > done_threshold``."""
        return self._done_threshold

    @done_threshold.setter
    def done_threshold(self, value: float) -> None:
        self._done_threshold = _threshold("done_threshold", value)

    # --- reading the rows ---
    @property
    def world_state(self) -> WorldState | None:
        """The batched memory (``N`` rows, each with its own frame counter), or None before
        the first start."""
        return self._state

    @property
    def steps(self) -> np.ndarray:
        """int ``[N]``: steps taken in each row's episode (a copy)."""
        return self._steps.copy()

    @property
    def started(self) -> np.ndarray:
        """bool ``[N]``: rows that have been started (a copy)."""
        return self._started.copy()

    @property
    def ended(self) -> np.ndarray:
        """bool ``[N]``: rows whose episode terminated or truncated (a copy)."""
        return self._ended.copy()

    def observations(self, rows: Sequence[int] | np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Copies of the rows' last observations, ``{key: [R, *shape]}`` (all rows by default).

        Frames of rows stepped without decoding are decoded now (once).
        """
        idx = self._rows(rows)
        self._decode_stale(idx)
        return {key: value[idx].copy() for key, value in self._obs.items()}

    def rng(self, row: int) -> np.random.Generator:
        """Row ``row``'s numpy generator (reset draws: stored start and noise seed)."""
        return self._rngs[row]

    def bind_rng(self, row: int, rng: np.random.Generator) -> None:
        """Make ``rng`` row ``row``'s generator (the 1-row env shares its ``np_random``)."""
        self._rngs[row] = rng

    # --- starting rows ---
    def parse_start(
        self,
        options: Mapping[str, Any] | None,
        rows: int,
        *,
        batched: bool,
        mask: np.ndarray | None = None,
        handled: Sequence[str] = (),
    ) -> StartRequest:
        """Validate reset options for ``rows`` rows without touching any row.

        Args:
            options: ``None``; ``{"observation": obs}`` (one observation, or with
                ``batched=True`` a batch ``{key: [rows, *shape]}``); or
                ``{"reset_index": i}`` (an int, or with ``batched=True`` also ``rows`` ints).
            rows: how many rows the request is for.
            batched: whether observations/indices come one per row.
            mask: bool ``[rows]``: only these rows' batched observations are used (and
                checked); the others' entries are left empty.
            handled: option keys the caller reads itself (the vector env's ``reset_mask``):
                skipped here, and named among the known keys in messages.

        Raises:
            TypeError: options that are not a dict.
            ValueError: unknown keys, both keys, or a bad ``reset_index``.
            ShapeError: an observation outside the observation space (names key and row).
        """
        if options is None:
            return StartRequest()
        if not isinstance(options, Mapping):
            raise TypeError(f"reset options must be a dict or None, got {type(options).__name__}")
        known = [*RESET_OPTIONS, *handled]
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise ValueError(f"unknown reset option(s) {unknown}; the imagined env takes {known}")
        if "observation" in options and "reset_index" in options:
            raise ValueError(
                "give either options['observation'] or options['reset_index'], not both"
            )
        if "observation" in options:
            given = self._parse_observations(options["observation"], rows, batched, mask)
            return StartRequest(observations=given)
        if "reset_index" in options:
            index = options["reset_index"]
            count = self.checkpoint.num_resets
            if batched and isinstance(index, (list, tuple, np.ndarray)):
                if len(index) != rows:
                    raise ValueError(
                        f"options['reset_index'] needs one index per env ({rows}), got {len(index)}"
                    )
                return StartRequest(indices=tuple(_reset_index(v, count) for v in index))
            return StartRequest(indices=(_reset_index(index, count),) * rows)
        return StartRequest()

    def start(
        self,
        rows: Sequence[int] | np.ndarray | None = None,
        *,
        seeds: Sequence[int | None] | None = None,
        request: StartRequest | None = None,
    ) -> dict[str, np.ndarray]:
        """Start new episodes in ``rows`` (all rows by default); returns their start observations.

        Each row draws ``(stored reset index, torch noise seed)`` from its numpy generator,
        reseeded first when its seed is not ``None``; both are always drawn, so the noise
        after ``seed=s`` depends only on ``s``, whatever picked the start. The start frames
        are committed into fresh memory rows in one batched call.

        Args:
            rows: the rows to start.
            seeds: one seed (or ``None``) per row.
            request: validated options from :meth:`parse_start` (one entry per row).

        Returns:
            ``{key: [R, *shape]}``, copies of the start observations.
        """
        idx = self._rows(rows)
        seeds = [None] * idx.size if seeds is None else list(seeds)
        if len(seeds) != idx.size:
            raise ValueError(f"{idx.size} rows but {len(seeds)} seeds")
        request = request or StartRequest()
        starts, generators = [], []
        for j, (row, seed) in enumerate(zip(idx.tolist(), seeds)):
            if seed is not None:
                self._rngs[row] = seeding.np_random(int(seed))[0]
            rng = self._rngs[row]
            drawn, torch_seed = (
                int(rng.integers(self.checkpoint.num_resets)),
                int(rng.integers(_SEED_BOUND)),
            )
            if request.observations is not None:
                starts.append(request.observations[j])
            else:
                index = drawn if request.indices is None else request.indices[j]
                starts.append({k: v[index] for k, v in self.checkpoint.reset_observations.items()})
            generator = torch.Generator(device=self.model.device).manual_seed(torch_seed)
            self._generators[row] = generator
            generators.append(generator)
        batch = {k: np.stack([s[k] for s in starts]) for k in self.observation_space.spaces}
        frames = torch.from_numpy(batch[self.image_key]).to(self.model.device)
        proprio = None
        if self.model.config.proprio_conditioning:
            # The model carries the proprioceptive state from the real start observation on.
            proprio = self.checkpoint.observation_keys.concat_state(batch)[:, None]
        fresh = self.model.observe(
            self.model.init_state(idx.size), frames[:, None], generator=generators, proprio=proprio
        )
        everyone = self._covers_all(idx)
        if everyone:
            self._state = fresh
        else:
            # Rows never started hold an empty memory until they are (``started`` says which).
            base = self._state if self._state is not None else self.model.init_state(self.num_rows)
            self._state = base.put_rows(idx.tolist(), fresh)
        for key, value in batch.items():
            self._obs[key][idx] = value
        self._stale[idx] = False
        self._steps[idx] = 0
        self._success_run[idx] = 0
        self._started[idx] = True
        self._ended[idx] = False
        self._phase[idx] = 0
        self._pending[idx] = 0.0
        self._probs[idx] = 0.0
        return {k: v.copy() for k, v in batch.items()}

    def reset_info(self) -> dict[str, Any]:
        """The ``info`` of a freshly started row."""
        return {"success": False, "is_success": False, "instruction": self.instruction}

    # --- stepping ---
    def check_actions(
        self, actions: Any, rows: int, labels: Sequence[int] | np.ndarray | None = None
    ) -> np.ndarray:
        """Validate ``[rows, A]`` actions: float32, each row in the action space (clipped
        within 1e-5 of the bounds, like the real envs).

        Args:
            labels: the env index each row is named by in messages (default ``0..rows-1``).

        Raises:
            InvalidAction: wrong shape or dtype, NaN/inf, out of bounds (names the row).
        """
        arr = as_array(actions, "actions")
        expected = (rows, *self.action_space.shape)
        if arr.dtype.kind not in "fiu":
            raise InvalidAction(
                f"actions must be a real-valued array of shape {expected}, got dtype {arr.dtype}"
            )
        if arr.shape != expected:
            raise InvalidAction(
                f"actions must have shape {expected} ({rows} rows of {self.action_space}), "
                f"got shape {arr.shape}"
            )
        out = np.empty(expected, dtype=np.float32)
        names = range(rows) if labels is None else [int(v) for v in labels]
        for i, name in enumerate(names):
            try:
                out[i] = check_action(arr[i], self.action_space)
            except InvalidAction as exc:
                raise InvalidAction(f"env {name}: {exc}") from None
        return out

    @torch.no_grad()
    def step(
        self,
        actions: np.ndarray,
        rows: Sequence[int] | np.ndarray | None = None,
        *,
        decode: bool = True,
        checked: bool = False,
    ) -> StepResult:
        """Imagine one control step of ``rows`` (all by default) in one batched model call.

        Args:
            actions: ``[R, A]`` in the action space, one per row of ``rows``.
            rows: the rows to step; each must be started and not ended.
            decode: decode the imagined frames now. ``False`` skips the decoder (the outcomes
                and the state keys are still predicted); the frames are decoded later, only
                if :meth:`observations` asks for them.
            checked: ``actions`` already passed :meth:`check_actions`.

        Returns:
            A :class:`StepResult`.

        Raises:
            ResetNeeded: a row not started, or whose episode has ended.
            InvalidAction: bad actions. Nothing changes on any error (noise streams included).
        """
        idx = self._rows(rows)
        self._require_running(idx)
        acts = actions if checked else self.check_actions(actions, idx.size)
        if self.temporal_compression > 1:
            return self._step_grouped(idx, acts)
        everyone = self._covers_all(idx)
        generators = [self._generators[i] for i in idx]
        saved = [g.get_state() for g in generators]
        try:
            sub = self._state if everyone else self._state.select(idx.tolist())
            latent, out, sub = self.model.step_latent(
                sub,
                torch.from_numpy(acts).to(self.model.device),
                generator=generators,
                settings=self.settings,
            )
            frames = self.model.decode(latent) if decode else None
        except BaseException:
            # A failure (or Ctrl-C) mid-sample must not leave noise streams half-advanced.
            for g, s in zip(generators, saved):
                g.set_state(s)
            raise
        self._state = sub if everyone else self._state.put_rows(idx.tolist(), sub)
        self._write_state_keys(idx, out)
        if decode:
            self._obs[self.image_key][idx] = frames.cpu().numpy()
            self._stale[idx] = False
        else:
            if self._latents is None:
                self._latents = torch.zeros(
                    (self.num_rows, *latent.shape[1:]), dtype=latent.dtype, device=latent.device
                )
            self._latents[torch.as_tensor(idx, device=latent.device)] = latent
            self._stale[idx] = True
        self._steps[idx] += 1
        success_prob = out["success"].double().cpu().numpy()
        done_prob = out["done"].double().cpu().numpy()
        terminated = done_prob > self.done_threshold
        truncated = np.zeros(idx.size, dtype=bool)
        if self.max_episode_steps is not None:
            truncated = (self._steps[idx] >= self.max_episode_steps) & ~terminated
        self._ended[idx] = terminated | truncated
        return StepResult(
            rows=idx,
            observations=self.observations(idx) if decode else None,
            reward=out["reward"].double().cpu().numpy(),
            success_prob=success_prob,
            done_prob=done_prob,
            success=self._advance_success(idx, success_prob),
            terminated=terminated,
            truncated=truncated,
            instruction=self.instruction,
        )

    def _advance_success(self, idx: np.ndarray, success_prob: np.ndarray) -> np.ndarray:
        """One step of the success rule for rows ``idx``: bool ``[R]``, the rule met."""
        self._success_run[idx] = self._success_rule.advance(self._success_run[idx], success_prob)
        return self._success_rule.met(self._success_run[idx])

    def _step_grouped(self, idx: np.ndarray, acts: np.ndarray) -> StepResult:
        """:meth:`step` for temporal compression ``tc > 1`` (see the module docstring):
        buffer each row's action; rows whose group is complete imagine a latent frame."""
        tc = self.temporal_compression
        full = idx[self._phase[idx] == tc - 1]
        reward = np.zeros(idx.size)
        stepped = np.isin(idx, full)
        frames = None
        if full.size:
            pending = self._pending[full].copy()
            pending[:, tc - 1] = acts[stepped]
            everyone = self._covers_all(full)
            generators = [self._generators[i] for i in full]
            saved = [g.get_state() for g in generators]
            try:
                sub = self._state if everyone else self._state.select(full.tolist())
                latent, out, sub = self.model.step_latent(
                    sub,
                    torch.from_numpy(pending).to(self.model.device),
                    generator=generators,
                    settings=self.settings,
                )
                decoded, sub = self.model.decode_step(sub, latent)
            except BaseException:
                # A failure (or Ctrl-C) mid-sample must not leave noise streams half-advanced.
                for g, s in zip(generators, saved):
                    g.set_state(s)
                raise
            self._state = sub if everyone else self._state.put_rows(full.tolist(), sub)
            self._write_state_keys(full, out)
            decoded = decoded.cpu().numpy()
            self._obs[self.image_key][full] = decoded[:, -1]
            self._probs[full, 0] = out["success"].double().cpu().numpy()
            self._probs[full, 1] = out["done"].double().cpu().numpy()
            reward[stepped] = out["reward"].double().cpu().numpy()
            frames = np.zeros((idx.size, *decoded.shape[1:]), dtype=np.uint8)
            frames[stepped] = decoded
        buffered = idx[~stepped]
        self._pending[buffered, self._phase[buffered]] = acts[~stepped]
        self._phase[buffered] += 1
        self._phase[full] = 0
        self._pending[full] = 0.0
        self._steps[idx] += 1
        success_prob, done_prob = self._probs[idx, 0].copy(), self._probs[idx, 1].copy()
        # Only a latent step predicts termination; between them the episode goes on.
        terminated = stepped & (done_prob > self.done_threshold)
        truncated = np.zeros(idx.size, dtype=bool)
        if self.max_episode_steps is not None:
            truncated = (self._steps[idx] >= self.max_episode_steps) & ~terminated
        self._ended[idx] = terminated | truncated
        return StepResult(
            rows=idx,
            observations=self.observations(idx),
            reward=reward,
            success_prob=success_prob,
            done_prob=done_prob,
            success=self._advance_success(idx, success_prob),
            terminated=terminated,
            truncated=truncated,
            instruction=self.instruction,
            latent_step=stepped,
            latent_frames=frames,
        )

    def rollout(
        self,
        actions: np.ndarray,
        rows: Sequence[int] | np.ndarray | None = None,
        *,
        decode: bool = False,
    ) -> RolloutResult:
        """Step action chunks: ``actions [R, H, A]``, one step of every row at a time.

        Rows whose episode ends inside the chunk stop there (their later entries are
        zeros and ``alive`` is False); the others go on. Frames are decoded only with
        ``decode=True`` (planners usually need the predicted outcomes alone).

        Raises:
            ResetNeeded / InvalidAction: as :meth:`step`; the actions are all checked first.
        """
        idx = self._rows(rows)
        arr = as_array(actions, "action chunks")
        if arr.ndim != 3 or arr.shape[0] != idx.size:
            raise InvalidAction(
                f"action chunks must have shape ({idx.size}, H, {self.action_space.shape[0]}), "
                f"got shape {arr.shape}"
            )
        horizon = arr.shape[1]
        checked = np.stack([self.check_actions(arr[:, h], idx.size) for h in range(horizon)], 1)
        self._require_running(idx)
        shape = (idx.size, horizon)
        reward, success_prob, done_prob = (np.zeros(shape) for _ in range(3))
        success, terminated, truncated, alive = (np.zeros(shape, dtype=bool) for _ in range(4))
        frames = (
            np.zeros((*shape, *self.observation_space[self.image_key].shape), np.uint8)
            if decode
            else None
        )
        live = np.ones(idx.size, dtype=bool)
        for h in range(horizon):
            if not live.any():
                break
            result = self.step(checked[live, h], idx[live], decode=decode, checked=True)
            where = np.flatnonzero(live)
            alive[where, h] = True
            reward[where, h] = result.reward
            success_prob[where, h] = result.success_prob
            done_prob[where, h] = result.done_prob
            success[where, h] = result.success
            terminated[where, h] = result.terminated
            truncated[where, h] = result.truncated
            if frames is not None:
                frames[where, h] = result.observations[self.image_key]
                if result.latent_frames is not None:
                    # Each decoded frame goes to the step of the action that led into it.
                    for j in np.flatnonzero(result.latent_step):
                        back = min(self.temporal_compression, h + 1)
                        frames[where[j], h + 1 - back : h + 1] = result.latent_frames[j, -back:]
            live[where] = ~(result.terminated | result.truncated)
        return RolloutResult(
            idx, reward, success_prob, done_prob, success, terminated, truncated, alive, frames
        )

    # --- forking and rewinding ---
    def fork(self, row: int, n: int, *, seed: int | None = None) -> ImaginedCore:
        """A new core of ``n`` rows, each an exact copy of row ``row`` (memory, step count,
        observation, generators), sharing this core's model and settings.

        With ``seed=None`` every copy continues row ``row``'s noise stream, so copies given
        the same actions imagine the same frames (common random numbers: candidate action
        sequences are compared under the same noise). ``seed=s`` gives copy ``i`` its own
        noise stream seeded with ``s + i`` (diverse futures of one action sequence).
        """
        if not 0 <= int(row) < self.num_rows:
            raise ValueError(f"row must be in 0..{self.num_rows - 1}, got {row!r}")
        n = _positive_int("n", n)
        snap = self.snapshot([row])
        child = ImaginedCore(
            self.checkpoint,
            n,
            success_threshold=self.success_threshold,
            success_hold=self.success_hold,
            done_threshold=self.done_threshold,
        )
        child.settings = self.settings
        child.max_episode_steps = self.max_episode_steps
        child.restore(_repeat_snapshot(snap, n))
        if seed is not None:
            for i in range(n):
                child._generators[i].manual_seed(int(seed) + i)
        return child

    def snapshot(self, rows: Sequence[int] | np.ndarray | None = None) -> ImaginedSnapshot:
        """An immutable copy of ``rows`` (all by default); every row must have been started.

        Raises:
            ResetNeeded: a row was never started.
        """
        idx = self._rows(rows)
        if self._state is None or not self._started[idx].all():
            raise ResetNeeded("call reset() before snapshot()")
        obs = {}
        for key, value in self._obs.items():
            frozen = value[idx].copy()
            frozen.flags.writeable = False
            obs[key] = frozen
        stale = self._stale[idx]
        return ImaginedSnapshot(
            state=self._state.select(idx.tolist()).clone(),
            steps=tuple(int(s) for s in self._steps[idx]),
            observation=types.MappingProxyType(obs),
            ended=tuple(bool(e) for e in self._ended[idx]),
            generator_states=tuple(self._generators[i].get_state() for i in idx),
            rng_states=tuple(
                types.MappingProxyType(copy.deepcopy(self._rngs[i].bit_generator.state))
                for i in idx
            ),
            latents=self._latents[torch.as_tensor(idx)].clone() if stale.any() else None,
            stale=tuple(bool(s) for s in stale),
            phase=tuple(int(p) for p in self._phase[idx]),
            pending_actions=self._pending[idx].copy(),
            outcome_probs=self._probs[idx].copy(),
            success_runs=tuple(int(r) for r in self._success_run[idx]),
        )

    def restore(
        self, snapshot: ImaginedSnapshot, rows: Sequence[int] | np.ndarray | None = None
    ) -> dict[str, np.ndarray]:
        """Put ``snapshot``'s rows into ``rows`` (default: rows ``0..R-1`` when the snapshot
        covers the whole core); returns copies of their observations.

        Raises:
            TypeError: not an :class:`ImaginedSnapshot`.
            ValueError: the snapshot's memory layout or row count does not fit.
        """
        if not isinstance(snapshot, ImaginedSnapshot):
            raise TypeError(
                f"restore() takes an ImaginedSnapshot from snapshot(), got {type(snapshot).__name__}"
            )
        if rows is None and snapshot.num_rows != self.num_rows:
            raise ValueError(
                f"the snapshot holds {snapshot.num_rows} rows but this env has {self.num_rows}; "
                "name the rows to restore"
            )
        idx = self._rows(rows)
        expected = self.model.init_state(1)
        state = snapshot.state
        if (
            state.batch_size != idx.size
            or set(state) != set(expected)
            or any(state[k].shape[1:] != expected[k].shape[1:] for k in expected)
        ):
            raise ValueError(
                f"the snapshot's memory ({state.batch_size} rows) does not fit {idx.size} rows of "
                "this env's model; snapshots move only between envs serving the same checkpoint"
            )
        # The model never writes into a state it is given, so the snapshot's can be shared.
        state = state.to(self.model.device)
        everyone = self._covers_all(idx)
        if self._state is None and not everyone:
            self._state = self.model.init_state(self.num_rows)
        self._state = state if everyone else self._state.put_rows(idx.tolist(), state)
        for key, value in snapshot.observation.items():
            self._obs[key][idx] = value
        self._steps[idx] = snapshot.steps
        self._success_run[idx] = snapshot.success_runs or 0
        self._ended[idx] = snapshot.ended
        self._started[idx] = True
        self._stale[idx] = snapshot.stale
        if snapshot.phase:
            self._phase[idx] = snapshot.phase
            self._pending[idx] = snapshot.pending_actions
            self._probs[idx] = snapshot.outcome_probs
        else:  # a snapshot made before grouped actions existed: nothing buffered
            self._phase[idx] = 0
            self._pending[idx] = 0.0
            self._probs[idx] = 0.0
        if snapshot.latents is not None:
            if self._latents is None:
                self._latents = torch.zeros(
                    (self.num_rows, *snapshot.latents.shape[1:]),
                    dtype=snapshot.latents.dtype,
                    device=self.model.device,
                )
            self._latents[torch.as_tensor(idx)] = snapshot.latents.to(self.model.device)
        for row, gen_state, rng_state in zip(
            idx.tolist(), snapshot.generator_states, snapshot.rng_states
        ):
            generator = torch.Generator(device=self.model.device)
            generator.set_state(gen_state)
            self._generators[row] = generator
            self._rngs[row].bit_generator.state = copy.deepcopy(dict(rng_state))
        return self.observations(idx)

    def close(self) -> None:
        """Drop the memory of every row; the (possibly shared) model stays loaded."""
        self._state = None
        self._latents = None
        self._started[:] = False

    # --- helpers ---
    def _rows(self, rows: Sequence[int] | np.ndarray | None) -> np.ndarray:
        if rows is None:
            return np.arange(self.num_rows)
        idx = np.asarray(rows, dtype=np.int64).reshape(-1)
        if idx.size == 0:
            raise ValueError("select at least one row")
        if idx.min() < 0 or idx.max() >= self.num_rows or len(set(idx.tolist())) != idx.size:
            raise ValueError(
                f"rows must be distinct indices in 0..{self.num_rows - 1}, got {idx.tolist()}"
            )
        return idx

    def _covers_all(self, idx: np.ndarray) -> bool:
        """Whether ``idx`` is every row in order (the batch is then used without select/put)."""
        return idx.size == self.num_rows and bool(np.array_equal(idx, np.arange(self.num_rows)))

    def _require_running(self, idx: np.ndarray) -> None:
        if self._state is None or not self._started[idx].all():
            raise ResetNeeded("call reset() before step()")
        if self._ended[idx].any():
            which = "" if self.num_rows == 1 else f" of env(s) {idx[self._ended[idx]].tolist()}"
            raise ResetNeeded(
                f"the episode{which} has ended (terminated or truncated); call reset()"
            )

    def _decode_stale(self, idx: np.ndarray) -> None:
        stale = idx[self._stale[idx]]
        if stale.size:
            latents = self._latents[torch.as_tensor(stale, device=self._latents.device)]
            self._obs[self.image_key][stale] = self.model.decode(latents).cpu().numpy()
            self._stale[stale] = False

    def _write_state_keys(self, idx: np.ndarray, outcomes: Mapping[str, torch.Tensor]) -> None:
        """Split the state head's ``[R, S]`` over the non-image keys (clipped into bounds)."""
        keys = self.checkpoint.observation_keys
        if not keys.state_keys:
            return
        state = outcomes["state"].detach().float().cpu().numpy()
        for key, value in keys.split_state(state).items():
            self._obs[key][idx] = value

    def _parse_observations(
        self, given: Any, rows: int, batched: bool, mask: np.ndarray | None
    ) -> tuple[dict[str, np.ndarray], ...]:
        space = self.observation_space
        if not batched:
            return (check_observation(given, space),) * rows
        if not isinstance(given, Mapping) or set(given) != set(space.spaces):
            raise ShapeError(
                f"options['observation'] must be a dict with keys {list(space.spaces)} of "
                f"[{rows}, ...] arrays (one row per env)"
            )
        for key, sub in space.spaces.items():
            shape = np.shape(given[key])
            if shape != (rows, *sub.shape):
                raise ShapeError(
                    f"options['observation'][{key!r}] must have shape {(rows, *sub.shape)} "
                    f"(one row per env), got {shape}"
                )
        return tuple(
            check_observation(
                {k: np.asarray(v)[i] for k, v in given.items()},
                space,
                what=f"options['observation'] row {i}",
            )
            if mask is None or mask[i]
            else {}
            for i in range(rows)
        )

    def __repr__(self) -> str:
        return f"ImaginedCore({str(self.checkpoint.path)!r}, num_rows={self.num_rows})"


class CoreView:
    """What :class:`ImaginedEnv` and :class:`ImaginedVectorEnv` read and set through to their
    core (``self.core``): sampler settings, thresholds and the episode limit."""

    core: ImaginedCore

    @property
    def settings(self) -> SamplerSettings:
        """The sampler settings (steps, shift, guidance, context noise)."""
        return self.core.settings

    @property
    def success_rule(self) -> SuccessRule:
        """How ``info["success"]`` is read from ``success_prob`` (threshold and hold)."""
        return self.core.success_rule

    @success_rule.setter
    def success_rule(self, rule: SuccessRule) -> None:
        self.core.success_rule = rule

    @property
    def success_threshold(self) -> float:
        """A step passes when ``success_prob > success_threshold``."""
        return self.core.success_threshold

    @success_threshold.setter
    def success_threshold(self, value: float) -> None:
        self.core.success_threshold = value

    @property
    def success_hold(self) -> int:
        """``info["success"]`` needs this many consecutive passing steps."""
        return self.core.success_hold

    @success_hold.setter
    def success_hold(self, value: int) -> None:
        self.core.success_hold = value

    @property
    def done_threshold(self) -> float:
        """``terminated`` is ``done_prob > done_threshold``."""
        return self.core.done_threshold

    @done_threshold.setter
    def done_threshold(self, value: float) -> None:
        self.core.done_threshold = value

    @property
    def max_episode_steps(self) -> int | None:
        """Steps after which an episode is truncated by the env itself (``None``: never)."""
        return self.core.max_episode_steps

    @max_episode_steps.setter
    def max_episode_steps(self, value: int | None) -> None:
        self.core.max_episode_steps = _positive_int("max_episode_steps", value, allow_none=True)

    @property
    def world_state(self) -> WorldState | None:
        """The memory of every row (each row has its own frame counter ``t``)."""
        return self.core.world_state


# --- validation shared by the core and its views ---
def resolve_checkpoint(
    checkpoint: str | os.PathLike | EnvCheckpoint | None, device: torch.device | str | None
) -> EnvCheckpoint:
    """Load ``checkpoint`` (a directory or None) or check a loaded one against ``device``.

    Raises:
        TypeError: ``checkpoint`` is neither a path, an EnvCheckpoint nor None.
        ValueError: a loaded checkpoint lives on another device than ``device``.
        CheckpointError: loading failed.
    """
    if isinstance(checkpoint, EnvCheckpoint):
        if device is not None and parse_device(device) != checkpoint.model.device:
            raise ValueError(
                f"the loaded checkpoint's model is on {checkpoint.model.device}, not "
                f"{parse_device(device)}; a shared model is never moved (load it there)"
            )
        ckpt = checkpoint
    elif checkpoint is None or isinstance(checkpoint, (str, os.PathLike)):
        ckpt = load_env_checkpoint(
            checkpoint, device="cpu" if device is None else check_device(device)
        )
    else:
        raise TypeError(
            "checkpoint must be a directory, an EnvCheckpoint or None, "
            f"got {type(checkpoint).__name__}"
        )
    return ckpt


def check_observation(
    obs: Any, space: gym.spaces.Dict, what: str = "options['observation']"
) -> dict[str, np.ndarray]:
    """Validate one observation against ``space`` and return a copy in the space's dtypes.

    Values of another dtype are accepted when numpy casts them safely within their kind
    (float64 -> float32, uint8 -> int64), never across kinds (a float image is refused).

    Raises:
        ShapeError: not a mapping, missing or extra keys, wrong shape or dtype, NaN or a
            value outside the space; the message names the key and the expected space.
    """
    if not isinstance(obs, Mapping):
        raise ShapeError(
            f"{what} must be a dict with keys {list(space.spaces)}, got {type(obs).__name__}"
        )
    if set(obs) != set(space.spaces):
        raise ShapeError(
            f"{what} must have exactly the keys {list(space.spaces)}, got {sorted(obs)}"
        )
    out: dict[str, np.ndarray] = {}
    for key, sub in space.spaces.items():
        arr = np.asarray(obs[key])
        if arr.shape != sub.shape:
            raise ShapeError(f"{what}[{key!r}] must have shape {sub.shape}, got {arr.shape}")
        if (
            not np.can_cast(arr.dtype, sub.dtype, casting="same_kind")
            or arr.dtype.kind not in "fiub"
        ):
            raise ShapeError(f"{what}[{key!r}] must be {sub.dtype}, got {arr.dtype}")
        if arr.dtype.kind in "iu" and np.dtype(sub.dtype).kind in "iu" and arr.size:
            # same_kind lets uint16 -> uint8 through; a value the target cannot hold would wrap.
            info = np.iinfo(sub.dtype)
            if arr.min() < info.min or arr.max() > info.max:
                raise ShapeError(
                    f"{what}[{key!r}] has values in [{arr.min()}, {arr.max()}], outside what "
                    f"{np.dtype(sub.dtype)} holds"
                )
        arr = arr.astype(sub.dtype, copy=True)
        if not sub.contains(arr):
            raise ShapeError(f"{what}[{key!r}] has NaN or values outside {sub}")
        out[key] = arr
    return out


def _positive_int(name: str, value: Any, allow_none: bool = False) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        suffix = " or None" if allow_none else ""
        raise ValueError(f"{name} must be a positive integer{suffix}, got {value!r}")
    return int(value)


def _threshold(name: str, value: Any) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float, np.floating, np.integer))
        or not 0.0 <= float(value) <= 1.0
    ):
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")
    return float(value)


def _sampler_settings(model: WorldModel, sample_steps: int | None) -> SamplerSettings:
    base = model.sampler
    if sample_steps is None:
        return base
    if (
        isinstance(sample_steps, bool)
        or not isinstance(sample_steps, (int, np.integer))
        or not 1 <= sample_steps <= 50
    ):
        raise ValueError(f"sample_steps must be an integer in 1..50 or None, got {sample_steps!r}")
    return SamplerSettings(int(sample_steps), base.shift, base.guidance_scale, base.context_sigma)


def _reset_index(index: Any, num_resets: int) -> int:
    if isinstance(index, np.generic):
        index = index.item()
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < num_resets:
        raise ValueError(
            f"options['reset_index'] must be an integer in 0..{num_resets - 1} "
            f"(the checkpoint stores {num_resets} reset observations), got {index!r}"
        )
    return index


def _repeat_snapshot(snap: ImaginedSnapshot, n: int) -> ImaginedSnapshot:
    """A 1-row snapshot repeated into ``n`` identical rows."""
    return ImaginedSnapshot(
        state=snap.state.repeat(n),
        steps=snap.steps * n,
        observation=types.MappingProxyType(
            {k: np.repeat(v, n, axis=0) for k, v in snap.observation.items()}
        ),
        ended=snap.ended * n,
        generator_states=snap.generator_states * n,
        rng_states=snap.rng_states * n,
        latents=None if snap.latents is None else snap.latents.repeat(n, 1, 1, 1),
        stale=snap.stale * n,
        phase=snap.phase * n,
        pending_actions=None
        if snap.pending_actions is None
        else np.repeat(snap.pending_actions, n, 0),
        outcome_probs=None if snap.outcome_probs is None else np.repeat(snap.outcome_probs, n, 0),
        success_runs=snap.success_runs * n,
    )
