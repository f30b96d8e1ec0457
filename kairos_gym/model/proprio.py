"""The proprioceptive path: a low-dimensional dynamics model whose state conditions the frames.

A video model that sees actions only through its conditioning can ignore them wherever its
training data made the next frame predictable without them: along the expert's path, the
history of frames says where the arm goes next. The proprioceptive path makes the action's
effect explicit. A small network predicts the robot's next proprioceptive state from the
current one and the action,

    s_t = s_{t-1} + f(s_{t-1}, s_{t-1} - s_{t-2}, a_t)        (normalised units)

and every frame is conditioned on its ``s_t``. The dynamics of a low-dimensional state are
easy to learn from any actions, including random ones (an operational-space controller moves
the end effector almost linearly in the action), and the frames then follow the state: a
random policy's arm wanders where its actions take it instead of where the expert went.

The previous difference ``s_{t-1} - s_{t-2}`` stands in for the velocity, which the state
does not hold; after a reset the arm is at rest and it is zero.

With ``outcomes=True`` a second small network reads the reward, success and termination off
the carried state (``state_outcomes`` models). Where the state holds the objects the task is
about, whether a Lift cube is up is then a property of where the dynamics put it: a grasp
the actions missed leaves the cube on the table and the episode unsuccessful, however
plausible the imagined frames look.

With ``object_frame`` the dynamics also sees where the object is in the gripper's frame. Whether
a grasp holds depends on the cube's offset along the fingers' axis, a product of the offset and
the gripper's yaw that a small network fed world-frame coordinates learns poorly from a few
hundred near misses; rotated into the gripper's frame it is a coordinate the network reads
directly.

With ``arm_entries`` the arm's pose is predicted by its own network, which sees only the
robot's entries and the action, not the objects'. An operational-space controller moves the
arm where the action says whatever the cube does (the cube weighs little against the arm).
A single network fitted on expert data also learns that the gripper goes to the cube, a
correlation of the expert's actions rather than of the physics, and imagines a gripper
drifting onto the cube under actions that miss it: imagined grasps then hold where real ones
miss. Blind to the objects, the arm cannot drift towards them.

With ``position_targets`` some state entries are positions that the action commands directly
(ALOHA's 14-D action holds absolute joint-position targets for the 14 measured joints). A
residual on the previous state, ``s_t = s_{t-1} + f``, integrates its own errors: over the
hundreds of steps of a bimanual episode a small bias per step walks the arms off by radians.
Those entries are predicted instead as the commanded target plus a learned residual (the
servo's tracking lag), ``s_t = a_t + f``, so where the state is wrong the next target pulls
it back, as the real servo does, and the error stays bounded along the episode.

With ``stochastic`` a third small network predicts how far the next state may lie from the
predicted one: a standard deviation per entry, ``s_t ~ N(mean, sigma^2)``, and the imagined env
draws the carried state from it. The state leaves out what decides a step exactly (the arm's
joint velocities, the contact forces), so under jittery actions the real next state scatters
millimetres around any prediction from it. A deterministic dynamics imagines the average of
that scatter; its gripper then closes on the cube more cleanly than a real noisy arm does,
and a policy that fails half its grasps in reality succeeds in imagination. Sampled, the
imagined arm jitters as much as the real one where the data say it does (noisy actions) and
hardly at all where they say it does not (clean ones).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from kairos_gym.model.noise import Generators, randn

OBJECT_FRAME_SCALE = 0.03
"""Metres per unit of the object-in-gripper-frame features (about a Lift cube's half-width)."""

LOG_SCALE_RANGE = (-9.0, -1.5)
"""Bounds of the noise head's log standard deviation (normalised units): below, the noise is
nothing; above (0.22 of the state's spread per step), a sampled state would leave the data."""


def axis_angle_to_matrix(axis_angle: torch.Tensor) -> torch.Tensor:
    """Rotation matrices ``[..., 3, 3]`` of axis-angle vectors ``[..., 3]`` (Rodrigues)."""
    theta = axis_angle.norm(dim=-1, keepdim=True).clamp_min(1e-8)
    kx, ky, kz = (axis_angle / theta).unbind(-1)
    zero = torch.zeros_like(kx)
    cross = torch.stack([zero, -kz, ky, kz, zero, -kx, -ky, kx, zero], dim=-1).unflatten(-1, (3, 3))
    angle = theta[..., None]
    eye = torch.eye(3, dtype=axis_angle.dtype, device=axis_angle.device)
    return eye + angle.sin() * cross + (1 - angle.cos()) * (cross @ cross)


def object_in_gripper_frame(state: torch.Tensor, object_start: int, gripper_start: int) -> torch.Tensor:
    """The object's position relative to the gripper, in the gripper's frame ``[..., 3]``.

    Args:
        state: states in environment units ``[..., S]`` holding the object's position at
            ``[object_start, object_start + 3)`` and the gripper's position and axis-angle
            orientation at ``[gripper_start, gripper_start + 6)`` (robosuite's ``object_state``
            then ``state`` layout: ``object_start = 0``, ``gripper_start`` = the object
            state's width).
    """
    rotation = axis_angle_to_matrix(state[..., gripper_start + 3:gripper_start + 6])
    offset = state[..., object_start:object_start + 3] - state[..., gripper_start:gripper_start + 3]
    return (rotation.transpose(-1, -2) @ offset[..., None])[..., 0]


class ProprioDynamics(nn.Module):
    """``s_t = s_{t-1} + f([s_{t-1}, s_{t-1} - s_{t-2}, a_t])`` on normalised states (for
    ``position_targets`` entries: ``s_t = a_t + f(...)``).

    Args:
        state_dim: ``S``, the width of the proprioceptive state.
        action_dim: ``A``, the width of one action.
        hidden: width of the two hidden layers.
        outcomes: also build :attr:`outcome_head` (see :meth:`outcomes`).
        object_frame: ``(object_start, gripper_start)``: also feed the object's position in
            the gripper's frame (:func:`object_in_gripper_frame`, in units of
            :data:`OBJECT_FRAME_SCALE`). It is computed in environment units, so the owner sets
            :attr:`to_environment_units` (the denoiser binds its state normalisation).
        position_targets: ``(state_start, action_start, width)``: state entries
            ``[state_start, state_start + width)`` are positions that action entries
            ``[action_start, action_start + width)`` command, in the same units; they are
            predicted as that target plus a residual. The owner sets
            :attr:`to_environment_units` and :attr:`to_normalised_units`.
        arm_entries: ``(start, stop)``: state entries ``[start, stop)`` (the end effector's
            pose) are predicted by :attr:`arm_net` from the entries ``[start, S)`` (the robot's
            own, laid after the objects' ``[0, start)``) and the action, blind to the objects.
        action_history: both networks also read the previous action (the one that led into
            ``state``) and the difference of states before the last one: how fast the arm moves
            at the step's start, which the last difference only averages. ``None`` previous
            actions (and the first steps of an unroll) mean zero: at rest, as after a reset.
        stochastic: also build :attr:`noise_head`, the log standard deviation of the next
            state around the prediction (see :meth:`sample`).
        noise_entries: ``(start, stop)``: with ``stochastic``, only the entries
            ``[start, stop)`` are drawn and the others take the prediction (``None``: all).
            Lift draws the robot's entries and not the cube's: the real scatter comes from the
            arm, and the cube moves only as the (drawn) arm pushes or carries it, while noise
            on the cube's own height would let it drift up off the table.

    The last layer starts at zero, so a fresh model predicts "no motion" and adding this
    module to a trained world model leaves its state predictions to be learned.
    """

    def __init__(self, state_dim: int, action_dim: int, hidden: int = 256, *,
                 outcomes: bool = False, object_frame: tuple[int, int] | None = None,
                 position_targets: tuple[int, int, int] | None = None,
                 arm_entries: tuple[int, int] | None = None,
                 action_history: bool = False, stochastic: bool = False,
                 noise_entries: tuple[int, int] | None = None) -> None:
        super().__init__()
        self.state_dim = state_dim
        self.action_dim = action_dim
        self.action_history = bool(action_history)
        # Extra inputs of the history: the previous action and the difference before the last.
        history = action_dim if action_history else 0
        self.object_frame = None if object_frame is None else (int(object_frame[0]), int(object_frame[1]))
        self.position_targets = None
        if position_targets is not None:
            start, action_start, width = (int(i) for i in position_targets)
            if min(start, action_start) < 0 or width < 1 or start + width > state_dim or (
                    action_start + width > action_dim):
                raise ValueError(
                    f"position_targets (state_start, action_start, width) must lie inside the "
                    f"state ({state_dim}) and the action ({action_dim}), got {position_targets!r}")
            self.position_targets = (start, action_start, width)
        self.arm_entries = None
        self.arm_net: nn.Sequential | None = None
        if arm_entries is not None:
            start, stop = (int(i) for i in arm_entries)
            if not 0 < start < stop <= state_dim:
                raise ValueError(f"arm_entries (start, stop) must satisfy 0 < start < stop <= the "
                                 f"state's width ({state_dim}), got {arm_entries!r}")
            self.arm_entries = (start, stop)
            robot = state_dim - start
            self.arm_net = _residual_mlp((3 if action_history else 2) * robot + action_dim + history,
                                         hidden, stop - start)
        self.to_environment_units: Callable[[torch.Tensor], torch.Tensor] = lambda s: s
        """Maps normalised states to environment units (object-frame features, position targets)."""
        self.to_normalised_units: Callable[[torch.Tensor], torch.Tensor] = lambda s: s
        """Maps states in environment units to normalised ones (position targets)."""
        extra = 3 if object_frame is not None else 0
        width = (3 if action_history else 2) * state_dim + action_dim + history + extra
        self.net = _residual_mlp(width, hidden, state_dim)
        self.noise_head: nn.Sequential | None = None
        self.noise_entries = None
        if noise_entries is not None:
            start, stop = (int(i) for i in noise_entries)
            if not stochastic or not 0 <= start < stop <= state_dim:
                raise ValueError(f"noise_entries (start, stop) must satisfy 0 <= start < stop <= the "
                                 f"state's width ({state_dim}) in a stochastic dynamics, got {noise_entries!r}")
            self.noise_entries = (start, stop)
        if stochastic:
            self.noise_head = _residual_mlp(width, hidden, state_dim)
            self.reset_noise_head()
        self.outcome_head: nn.Sequential | None = None
        if outcomes:
            self.outcome_head = nn.Sequential(
                nn.Linear(state_dim, hidden), nn.SiLU(),
                nn.Linear(hidden, hidden), nn.SiLU(),
                nn.Linear(hidden, 3),
            )

    def outcomes(self, state: torch.Tensor) -> dict[str, torch.Tensor]:
        """Raw outcomes of normalised states ``[..., S]``: ``reward`` and the logits
        ``success`` and ``done``, each ``[...]`` (models built with ``outcomes=True``)."""
        if self.outcome_head is None:
            raise RuntimeError("this dynamics model has no outcome head (outcomes=False)")
        out = self.outcome_head(state.to(self.outcome_head[0].weight.dtype)).to(state.dtype)
        return {"reward": out[..., 0], "success": out[..., 1], "done": out[..., 2]}

    def reset_noise_head(self, scale: torch.Tensor | None = None) -> None:
        """Fresh weights for :attr:`noise_head`, predicting the standard deviation ``scale``
        ``[S]`` everywhere (a fit starts from the data's overall spread); by default the lower
        bound of :data:`LOG_SCALE_RANGE`: an unfitted head adds (almost) no noise."""
        if self.noise_head is None:
            raise RuntimeError("this dynamics model has no noise head (stochastic=False)")
        for layer in self.noise_head:
            if isinstance(layer, nn.Linear):
                layer.reset_parameters()
        last = self.noise_head[-1]
        nn.init.zeros_(last.weight)
        with torch.no_grad():
            if scale is None:
                last.bias.fill_(LOG_SCALE_RANGE[0])
            else:
                last.bias.copy_(scale.to(last.bias).clamp_min(1e-12).log().clamp(*LOG_SCALE_RANGE))

    @property
    def stochastic(self) -> bool:
        """Whether the dynamics predicts a spread around its next state (:meth:`sample`)."""
        return self.noise_head is not None

    def _features(self, state: torch.Tensor, previous: torch.Tensor, action: torch.Tensor,
                  previous_action: torch.Tensor | None, before: torch.Tensor | None) -> torch.Tensor:
        """The inputs of :attr:`net` and :attr:`noise_head` ``[B, F]``."""
        parts = [state, state - previous, action]
        if self.action_history:
            if previous_action is None:
                previous_action = torch.zeros_like(action)
            if before is None:
                before = previous
            parts += [previous - before, previous_action.to(action.dtype)]
        if self.object_frame is not None:
            raw = self.to_environment_units(state)
            parts.append(object_in_gripper_frame(raw, *self.object_frame).to(state.dtype) / OBJECT_FRAME_SCALE)
        return torch.cat(parts, dim=-1).to(self.net[0].weight.dtype)

    def forward(self, state: torch.Tensor, previous: torch.Tensor, action: torch.Tensor,
                previous_action: torch.Tensor | None = None,
                before: torch.Tensor | None = None) -> torch.Tensor:
        """The next normalised state ``[B, S]`` from ``state`` and ``previous`` ``[B, S]`` (the
        two latest states) and the ``action`` ``[B, A]`` that leads out of ``state``; for a
        ``stochastic`` dynamics, the mean of its distribution.

        With ``action_history``, also ``previous_action`` ``[B, A]`` (the one that led into
        ``state``) and ``before`` ``[B, S]`` (the state before ``previous``); ``None`` means
        zero and ``previous`` respectively: at rest.
        """
        x = self._features(state, previous, action, previous_action, before)
        return self._predict(x, state, previous, action, previous_action, before)

    def _predict(self, x: torch.Tensor, state: torch.Tensor, previous: torch.Tensor,
                 action: torch.Tensor, previous_action: torch.Tensor | None,
                 before: torch.Tensor | None) -> torch.Tensor:
        """:meth:`forward` from its features ``x`` (:meth:`_features`)."""
        step = self.net(x).to(state.dtype)
        if self.arm_net is not None:
            start, stop = self.arm_entries
            robot = state[..., start:]
            inputs = [robot, robot - previous[..., start:], action]
            if self.action_history:
                if previous_action is None:
                    previous_action = torch.zeros_like(action)
                if before is None:
                    before = previous
                inputs += [previous[..., start:] - before[..., start:], previous_action.to(action.dtype)]
            arm = torch.cat(inputs, dim=-1)
            step = torch.cat([step[..., :start], self.arm_net(arm.to(x.dtype)).to(state.dtype),
                              step[..., stop:]], dim=-1)
        return self._base(state, action) + step

    def log_scale(self, state: torch.Tensor, previous: torch.Tensor, action: torch.Tensor,
                  previous_action: torch.Tensor | None = None,
                  before: torch.Tensor | None = None) -> torch.Tensor:
        """Log standard deviation ``[B, S]`` of the next normalised state around :meth:`forward`'s
        prediction (arguments as there), within :data:`LOG_SCALE_RANGE` (``stochastic`` only)."""
        if self.noise_head is None:
            raise RuntimeError("this dynamics model has no noise head (stochastic=False)")
        x = self._features(state, previous, action, previous_action, before)
        return self._log_scale(x, state.dtype)

    def _log_scale(self, x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """:meth:`log_scale` from the features ``x`` (:meth:`_features`)."""
        return self.noise_head(x).to(dtype).clamp(*LOG_SCALE_RANGE)

    def sample(self, state: torch.Tensor, previous: torch.Tensor, action: torch.Tensor,
               previous_action: torch.Tensor | None = None, before: torch.Tensor | None = None,
               generator: Generators = None) -> torch.Tensor:
        """A draw of the next normalised state ``[B, S]`` (arguments as :meth:`forward`):
        the prediction plus Gaussian noise of :meth:`log_scale`'s spread (on the
        ``noise_entries`` only), from ``generator`` (one, or one per row). A deterministic
        dynamics returns its prediction."""
        x = self._features(state, previous, action, previous_action, before)
        mean = self._predict(x, state, previous, action, previous_action, before)
        if self.noise_head is None:
            return mean
        scale = self._log_scale(x, state.dtype).exp()
        drawn = torch.ones_like(scale, dtype=torch.bool)
        if self.noise_entries is not None:
            start, stop = self.noise_entries
            drawn = torch.zeros_like(drawn)
            drawn[..., start:stop] = True
        draw = mean + scale * randn(tuple(mean.shape), generator, mean.device, mean.dtype)
        return torch.where(drawn, draw, mean)

    def _base(self, state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """What the residual is added to: the state, with position-target entries replaced by
        the commanded targets in normalised units ``[B, S]``."""
        if self.position_targets is None:
            return state
        start, action_start, width = self.position_targets
        raw = self.to_environment_units(state).clone()
        raw[..., start:start + width] = action[..., action_start:action_start + width].to(raw.dtype)
        target = self.to_normalised_units(raw)[..., start:start + width].to(state.dtype)
        return torch.cat([state[..., :start], target, state[..., start + width:]], dim=-1)

    def unroll(self, states: torch.Tensor, actions: torch.Tensor, start: int = 2, *,
               sample: bool = False, generator: Generators = None) -> torch.Tensor:
        """Predict ``states[:, start:]`` from the first ``start`` true states, open loop.

        Args:
            states: true normalised states ``[B, T, S]``; only ``states[:, :start]`` is read.
            actions: ``[B, T, A]``, ``actions[:, t]`` leads into frame ``t``.
            start: how many leading states are given (1: the previous difference starts at zero,
                as after a reset).
            sample: draw each state (:meth:`sample`, from ``generator``) instead of taking the
                prediction, as the imagined env does with a ``stochastic`` dynamics.

        Returns:
            ``[B, T, S]``: the given leading states, then the predicted ones.
        """
        t = states.shape[1]
        out = [states[:, i] for i in range(min(start, t))]
        for i in range(len(out), t):
            # The states before the first given one are taken at rest (equal to it).
            previous = out[-2] if len(out) > 1 else out[-1]
            before = out[-3] if len(out) > 2 else previous
            if sample:
                nxt = self.sample(out[-1], previous, actions[:, i], actions[:, i - 1], before, generator)
            else:
                nxt = self(out[-1], previous, actions[:, i], actions[:, i - 1], before)
            out.append(nxt)
        return torch.stack(out, dim=1)

    def teacher_forced(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """One-step predictions ``[B, T-1, S]`` of ``states[:, 1:]`` from the true states before
        them (the first step with a zero previous difference)."""
        args, (b, t1, s) = self.teacher_forced_inputs(states, actions)
        return self(*args).view(b, t1, s)

    def teacher_forced_log_scale(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """:meth:`log_scale` ``[B, T-1, S]`` of each one-step prediction of :meth:`teacher_forced`."""
        args, (b, t1, s) = self.teacher_forced_inputs(states, actions)
        return self.log_scale(*args).view(b, t1, s)

    def teacher_forced_inputs(self, states: torch.Tensor, actions: torch.Tensor
                               ) -> tuple[tuple[torch.Tensor, ...], tuple[int, int, int]]:
        """:meth:`forward`'s arguments for every one-step prediction of ``states[:, 1:]``
        (normalised ``[B, T, S]``; ``actions`` ``[B, T, A]`` as in :meth:`unroll`), flattened to
        ``[B * (T-1), ...]``, and ``(B, T-1, S)``."""
        current = states[:, :-1]
        previous = torch.cat([states[:, :1], states[:, :-2]], dim=1)
        before = torch.cat([previous[:, :1], previous[:, :-1]], dim=1)
        b, t1, s = current.shape
        return ((current.reshape(b * t1, s), previous.reshape(b * t1, s),
                 actions[:, 1:].reshape(b * t1, -1), actions[:, :-1].reshape(b * t1, -1),
                 before.reshape(b * t1, s)), (b, t1, s))


def _residual_mlp(width_in: int, hidden: int, width_out: int) -> nn.Sequential:
    """Two hidden SiLU layers; the last layer starts at zero (a fresh residual predicts no motion)."""
    net = nn.Sequential(nn.Linear(width_in, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(),
                        nn.Linear(hidden, width_out))
    nn.init.zeros_(net[-1].weight)
    nn.init.zeros_(net[-1].bias)
    return net
