"""Scripted experts for the bimanual ALOHA tasks (TransferCube, Insertion).

Each expert plans grip-point waypoints for both arms from privileged simulator state
(object and gripper poses from :meth:`AlohaEnv.privileged`), interpolates them in time, and
turns each interpolated pose into joint targets with damped-least-squares inverse kinematics
on the environment's MuJoCo model (``mujoco.mj_jac`` on a private ``MjData``, never the live
one). The output is the environment's 14-D joint-position action
``[left 6 joints, left gripper, right 6 joints, right gripper]``, optionally with seeded
Gaussian noise for diverse demonstrations.

A waypoint's target is computed from the simulator state at the moment its segment starts,
so later segments aim at where the object really is (a cube that slipped in the right hand
is still met by the left hand).

Example::

    import gymnasium as gym, kairos_gym
    from kairos_gym.policies import make_policy
    env = gym.make("kairos_gym/Aloha-TransferCube-v0", cameras=())
    expert = make_policy("expert", env, noise=0.0)
    obs, info = env.reset(seed=0)
    expert.reset(seed=0, env=env)
    for _ in range(400):
        obs, reward, terminated, truncated, info = env.step(expert.act(obs))
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from kairos_gym.policies.base import Policy

try:
    import mujoco
except ImportError as exc:  # pragma: no cover - exercised only without the [sim] extra
    from kairos_gym.errors import missing_dependency

    raise missing_dependency("mujoco", "sim") from exc

ARM_JOINTS = ("waist", "shoulder", "elbow", "forearm_roll", "wrist_angle", "wrist_rotate")
# Grip point in the gripper_link frame (same value as kairos_gym.envs.aloha_env.GRIP_POINT_OFFSET;
# repeated so this module imports without the environment).
GRIP_POINT_OFFSET = np.array([0.125, 0.0, 0.0])
# Horizontal position of each arm's base (waist axis) in the world.
ARM_BASE_XY = {"left": np.array([-0.469, 0.5]), "right": np.array([0.469, 0.5])}
OPEN, CLOSED = 1.0, 0.0
UP = np.array([0.0, 0.0, 1.0])


def gripper_frame(approach: np.ndarray, finger_axis: np.ndarray) -> np.ndarray:
    """Rotation ``[3, 3]`` of gripper_link whose x axis is ``approach`` and y axis ``finger_axis``.

    ``finger_axis`` is made orthogonal to ``approach`` (Gram-Schmidt) before use.
    """
    x = np.asarray(approach, dtype=np.float64)
    x = x / np.linalg.norm(x)
    y = np.asarray(finger_axis, dtype=np.float64)
    y = y - x * (x @ y)
    y = y / np.linalg.norm(y)
    return np.stack([x, y, np.cross(x, y)], axis=1)


def pitched_frame(
    side: str, target_xy: np.ndarray, pitch_deg: float, roll_deg: float = 0.0
) -> np.ndarray:
    """Gripper rotation ``[3, 3]`` pointing from ``side``'s base towards ``target_xy``.

    The approach axis leans ``pitch_deg`` below horizontal; the fingers slide horizontally
    (``roll_deg = 0``) or are rolled about the approach axis by ``roll_deg``.
    """
    heading = np.append(np.asarray(target_xy, dtype=np.float64) - ARM_BASE_XY[side], 0.0)
    heading /= np.linalg.norm(heading)
    pitch = np.deg2rad(pitch_deg)
    approach = np.cos(pitch) * heading - np.sin(pitch) * UP
    finger = np.cross(UP, heading)
    rot = gripper_frame(approach, finger)
    roll = np.deg2rad(roll_deg)
    c, s = np.cos(roll), np.sin(roll)
    return rot @ np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def _mat_to_quat(mat: np.ndarray) -> np.ndarray:
    quat = np.empty(4)
    mujoco.mju_mat2Quat(quat, np.ascontiguousarray(mat, dtype=np.float64).ravel())
    return quat


def _quat_to_mat(quat: np.ndarray) -> np.ndarray:
    mat = np.empty(9)
    mujoco.mju_quat2Mat(mat, quat)
    return mat.reshape(3, 3)


def slerp(rot0: np.ndarray, rot1: np.ndarray, frac: float) -> np.ndarray:
    """Rotation ``[3, 3]`` a fraction ``frac`` in [0, 1] of the way from ``rot0`` to ``rot1``."""
    q0, q1 = _mat_to_quat(rot0), _mat_to_quat(rot1)
    if q0 @ q1 < 0.0:
        q1 = -q1
    angle = np.arccos(np.clip(q0 @ q1, -1.0, 1.0))
    if angle < 1e-6:
        return rot1.copy()
    quat = (np.sin((1.0 - frac) * angle) * q0 + np.sin(frac * angle) * q1) / np.sin(angle)
    return _quat_to_mat(quat / np.linalg.norm(quat))


class ArmIK:
    """Damped-least-squares inverse kinematics of one ViperX arm's grip point.

    Works on its own ``mujoco.MjData`` so the simulation is never touched. Solves for the
    6 arm joints ``[6]`` that put the grip point at a world position ``[3]`` with a gripper
    rotation ``[3, 3]``.

    Args:
        model: the environment's ``mujoco.MjModel``.
        side: ``"left"`` or ``"right"``.
        damping: the DLS damping ``lambda`` (larger: slower but steadier near singularities).
        rot_weight: metres of position error worth one radian of orientation error.
    """

    def __init__(
        self, model: Any, side: str, *, damping: float = 0.03, rot_weight: float = 0.15
    ) -> None:
        if side not in ARM_BASE_XY:
            raise ValueError(f"side must be 'left' or 'right', got {side!r}")
        self.model = model
        self.data = mujoco.MjData(model)
        joints = [model.joint(f"vx300s_{side}/{name}") for name in ARM_JOINTS]
        self.qpos_adr = np.array([model.jnt_qposadr[j.id] for j in joints])
        self.dof_adr = np.array([model.jnt_dofadr[j.id] for j in joints])
        self.low = np.array([model.jnt_range[j.id][0] for j in joints])
        self.high = np.array([model.jnt_range[j.id][1] for j in joints])
        self.body = model.body(f"vx300s_{side}/gripper_link").id
        self.damping = damping
        self.rot_weight = rot_weight
        self._jacp = np.zeros((3, model.nv))
        self._jacr = np.zeros((3, model.nv))

    def forward(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Grip point ``[3]`` and gripper rotation ``[3, 3]`` for arm joints ``q`` ``[6]``."""
        self.data.qpos[self.qpos_adr] = q
        mujoco.mj_kinematics(self.model, self.data)
        rot = self.data.xmat[self.body].reshape(3, 3).copy()
        return self.data.xpos[self.body] + rot @ GRIP_POINT_OFFSET, rot

    def solve(
        self,
        q_init: np.ndarray,
        pos: np.ndarray,
        rot: np.ndarray,
        *,
        iters: int = 30,
        tol: float = 1e-4,
    ) -> tuple[np.ndarray, float]:
        """Joints ``[6]`` reaching ``pos [3]`` / ``rot [3, 3]``, and the final weighted error.

        Starts from ``q_init`` (the previous solution, so consecutive targets give smooth
        joint paths) and keeps every joint inside its range.
        """
        q = np.clip(np.asarray(q_init, dtype=np.float64).copy(), self.low, self.high)
        err_norm = np.inf
        for _ in range(iters):
            grip, cur = self.forward(q)
            # Small-angle rotation error (world frame) taking cur onto rot: half the sum of
            # the column cross products, i.e. the axial vector of the skew part of rot cur^T.
            rel = rot @ cur.T
            rot_err = 0.5 * np.array(
                [rel[2, 1] - rel[1, 2], rel[0, 2] - rel[2, 0], rel[1, 0] - rel[0, 1]]
            )
            err = np.concatenate([pos - grip, self.rot_weight * rot_err])
            err_norm = float(np.linalg.norm(err))
            if err_norm < tol:
                break
            mujoco.mj_comPos(self.model, self.data)
            mujoco.mj_jac(self.model, self.data, self._jacp, self._jacr, grip, self.body)
            jac = np.vstack(
                [self._jacp[:, self.dof_adr], self.rot_weight * self._jacr[:, self.dof_adr]]
            )
            lhs = jac @ jac.T + self.damping**2 * np.eye(6)
            dq = jac.T @ np.linalg.solve(lhs, err)
            # Bounded steps keep the linearisation valid far from the target.
            step = np.max(np.abs(dq))
            if step > 0.2:
                dq *= 0.2 / step
            q = np.clip(q + dq, self.low, self.high)
        return q, err_norm


# A waypoint target, computed when its segment starts: privileged state -> (grip point [3],
# rotation [3, 3], gripper opening in [0, 1]). None keeps the previous pose/opening.
TargetFn = Callable[
    [dict[str, np.ndarray]], tuple[np.ndarray | None, np.ndarray | None, float | None]
]


@dataclass
class Segment:
    """Move one arm to ``target`` over ``steps`` control steps (linear / slerp interpolation)."""

    steps: int
    target: TargetFn


class _ArmTrack:
    """Plays a list of segments for one arm, evaluating each target when its segment starts."""

    def __init__(
        self, segments: list[Segment], pos: np.ndarray, rot: np.ndarray, grip: float
    ) -> None:
        self.segments = segments
        self.index = -1
        self.elapsed = 0
        self.start = (pos, rot, grip)
        self.goal = (pos, rot, grip)

    def advance(self, priv: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, float]:
        while self.index < 0 or (
            self.elapsed >= self.segments[self.index].steps and self.index + 1 < len(self.segments)
        ):
            self.index += 1
            self.elapsed = 0
            self.start = self.goal
            pos, rot, grip = self.segments[self.index].target(priv)
            self.goal = (
                self.start[0] if pos is None else np.asarray(pos, dtype=np.float64),
                self.start[1] if rot is None else np.asarray(rot, dtype=np.float64),
                self.start[2] if grip is None else float(grip),
            )
        seg = self.segments[self.index]
        self.elapsed = min(self.elapsed + 1, seg.steps)
        # Smoothstep timing: zero velocity at both ends of every segment.
        frac = self.elapsed / seg.steps
        frac = frac * frac * (3.0 - 2.0 * frac)
        (p0, r0, g0), (p1, r1, g1) = self.start, self.goal
        return p0 + frac * (p1 - p0), slerp(r0, r1, frac), g0 + frac * (g1 - g0)


class AlohaExpert(Policy):
    """Base class of the ALOHA scripted experts: waypoint tracks -> IK -> 14-D joint targets.

    Subclasses implement :meth:`plan` returning one list of :class:`Segment` per arm.

    Args:
        noise: standard deviation of Gaussian noise added to every action entry (radians
            for arm joints, normalised units for grippers), seeded by :meth:`reset`; the
            noisy action is clipped to the action space.
    """

    def __init__(self, noise: float = 0.0) -> None:
        if not np.isfinite(noise) or noise < 0.0:
            raise ValueError(f"noise must be a finite number >= 0, got {noise!r}")
        self.noise = float(noise)
        self._env: Any = None
        self._rng = np.random.default_rng()
        self._tracks: dict[str, _ArmTrack] = {}
        self._ik: dict[str, ArmIK] = {}
        self._q: dict[str, np.ndarray] = {}
        self.max_ik_error = 0.0

    def reset(self, *, seed: int | None = None, env: gym.Env | None = None) -> None:
        """Start an episode in ``env``; the first :meth:`act` plans from the state it sees.

        Planning lazily means the expert works whether the environment is reset before or
        after the expert.

        Raises:
            ValueError: ``env`` is missing or is not a kairos-gym ALOHA environment.
        """
        base = getattr(env, "unwrapped", env)
        if base is None or not hasattr(base, "privileged") or not hasattr(base, "model"):
            raise ValueError(
                f"{type(self).__name__} needs the ALOHA environment in reset(env=...), got {env!r}"
            )
        self._env = base
        self._rng = np.random.default_rng(seed)
        self._tracks = {}
        self.max_ik_error = 0.0

    def _start(self, priv: dict[str, np.ndarray]) -> None:
        base = self._env
        self._ik = {side: ArmIK(base.model, side) for side in ("left", "right")}
        for ik in self._ik.values():
            ik.data.qpos[:] = base.data.qpos
        qpos = priv["qpos"]
        self._q = {"left": qpos[0:6].copy(), "right": qpos[7:13].copy()}
        grips = {"left": float(qpos[6]), "right": float(qpos[13])}
        plans = self.plan(priv)
        self._tracks = {
            side: _ArmTrack(
                plans[side], priv[f"{side}_grip_point"], priv[f"{side}_gripper_mat"], grips[side]
            )
            for side in ("left", "right")
        }

    def plan(self, priv: dict[str, np.ndarray]) -> dict[str, list[Segment]]:
        """Segments for ``"left"`` and ``"right"``, given the state at the episode's first step."""
        raise NotImplementedError

    def act(self, observation: dict[str, np.ndarray], instruction: str = "") -> np.ndarray:
        """Next 14-D float32 joint-position action ``[14]``.

        Raises:
            RuntimeError: called before :meth:`reset` gave an environment.
        """
        if self._env is None:
            raise RuntimeError(f"call {type(self).__name__}.reset(seed=..., env=env) before act()")
        priv = self._env.privileged()
        if not self._tracks:
            self._start(priv)
        action = np.empty(14)
        for side, offset in (("left", 0), ("right", 7)):
            pos, rot, grip = self._tracks[side].advance(priv)
            q, err = self._ik[side].solve(self._q[side], pos, rot)
            self._q[side] = q
            self.max_ik_error = max(self.max_ik_error, err)
            action[offset : offset + 6] = q
            action[offset + 6] = grip
        if self.noise > 0.0:
            action += self._rng.normal(0.0, self.noise, size=14)
        space = self._env.action_space
        return np.clip(action, space.low, space.high).astype(np.float32)


def _hold(steps: int) -> Segment:
    return Segment(steps, lambda priv: (None, None, None))


class TransferCubeExpert(AlohaExpert):
    """Right arm picks the cube, both arms meet mid-air, the left arm takes it over.

    Timeline at 50 Hz (400 steps): right approaches from above-behind (0-1.6 s), descends and
    closes (1.6-2.6 s), lifts the cube to the meeting point (2.6-3.8 s) while the left arm
    waits beside it with its fingers rolled 90 degrees (so the two grasps cross instead of
    colliding); the left arm slides onto the cube and closes, the right opens and backs away,
    and the left holds the cube in the air until the end.
    """

    meet = np.array([0.0, 0.5, 0.25])

    def plan(self, priv: dict[str, np.ndarray]) -> dict[str, list[Segment]]:
        cube = priv["box_pos"].copy()
        grasp_rot = pitched_frame("right", cube[:2], pitch_deg=60.0)
        # Keeping the grasp pitch while lifting keeps the cube's faces level for the left fingers.
        right_meet_rot = pitched_frame("right", self.meet[:2], pitch_deg=60.0)
        left_meet_rot = pitched_frame("left", self.meet[:2], pitch_deg=0.0, roll_deg=90.0)
        back = grasp_rot[:, 0]

        def right_grasp_target(p: dict[str, np.ndarray]) -> tuple:
            return p["box_pos"] + np.array([0.0, 0.0, -0.005]), grasp_rot, OPEN

        def left_take_target(p: dict[str, np.ndarray]) -> tuple:
            return p["box_pos"] + np.array([-0.005, 0.0, 0.0]), left_meet_rot, OPEN

        right = [
            Segment(80, lambda p: (cube - 0.10 * back, grasp_rot, OPEN)),
            Segment(40, right_grasp_target),
            Segment(20, lambda p: (None, None, CLOSED)),
            Segment(60, lambda p: (self.meet + np.array([0.02, 0.0, 0.0]), right_meet_rot, CLOSED)),
            _hold(70),
            Segment(20, lambda p: (None, None, OPEN)),
            Segment(40, lambda p: (p["right_grip_point"] + np.array([0.12, 0.0, 0.0]), None, OPEN)),
            _hold(70),
        ]
        left = [
            Segment(140, lambda p: (self.meet - np.array([0.14, 0.0, 0.0]), left_meet_rot, OPEN)),
            _hold(60),
            Segment(50, left_take_target),
            Segment(20, lambda p: (None, None, CLOSED)),
            _hold(60),  # while the right hand lets go
            Segment(40, lambda p: (p["left_grip_point"] + [-0.03, 0.0, 0.02], None, CLOSED)),
            _hold(30),
        ]
        return {"left": left, "right": right}


def carry_target(
    priv: dict[str, np.ndarray], side: str, obj: str, obj_pos: np.ndarray, obj_rot: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Grip point ``[3]`` and rotation ``[3, 3]`` that bring a held object to a new pose.

    Keeps the measured object-in-gripper transform, so a peg that tilted or slid in the
    fingers is still placed where it is wanted (``obj_pos [3]``, ``obj_rot [3, 3]``).
    """
    cur_obj_rot = _quat_to_mat(priv[f"{obj}_quat"])
    delta = obj_rot @ cur_obj_rot.T
    grip_rel = priv[f"{side}_grip_point"] - priv[f"{obj}_pos"]
    return obj_pos + delta @ grip_rel, delta @ priv[f"{side}_gripper_mat"]


class InsertionExpert(AlohaExpert):
    """Right arm picks the peg, left arm picks the socket; they meet and the peg slides in.

    Both objects lie along the x axis. The right arm grasps the peg near its middle and the
    left arm the socket near its outer end, both with a shallow pitch (the 2 cm peg is too
    low for a steep grasp: the fingertips would hit the table). Both lift to a meeting
    height; the right arm puts the peg on the socket's measured axis just outside its
    opening, corrects once more, and pushes along that axis until the peg touches the pin.
    """

    height = 0.25
    half_length = 0.06  # of both the peg and the socket, along their x axis
    peg_pitch = 30.0  # degrees below horizontal of the right gripper's approach axis
    peg_lift = 0.008  # grip point above the peg's centre: lower, the fingertips hit the table
    # Steps of: approach, descend, close, lift to the meeting point, pause, align, re-align,
    # insert (both arms share the first four).
    timeline = (80, 40, 20, 70, 10, 50, 20, 60)

    def plan(self, priv: dict[str, np.ndarray]) -> dict[str, list[Segment]]:
        # Objects start 5 cm high and fall onto the table, so grasp heights are read live.
        # Near the peg's middle: torsional friction is tiny, so an off-centre grasp lets the
        # peg swing down around the finger axis.
        peg_offset = np.array([0.01, 0.0, self.peg_lift])
        socket_offset = np.array([-0.035, 0.0, 0.0])
        peg_grasp = priv["peg_pos"] + peg_offset
        socket_grasp = priv["socket_pos"] + socket_offset
        right_rot = pitched_frame("right", peg_grasp[:2], pitch_deg=self.peg_pitch)
        left_rot = pitched_frame("left", socket_grasp[:2], pitch_deg=45.0)
        # Same pitch as the grasp, so the held objects stay level; only the heading turns.
        right_lift_rot = pitched_frame("right", np.array([0.0, 0.5]), pitch_deg=self.peg_pitch)
        left_lift_rot = pitched_frame("left", np.array([0.0, 0.5]), pitch_deg=45.0)
        right_meet = np.array([0.15, 0.5, self.height])
        left_meet = np.array([-0.10, 0.5, self.height])

        def peg_on_axis(depth: float) -> TargetFn:
            # Peg centre on the socket's axis, ``depth`` from the socket's centre towards +x.
            def target(p: dict[str, np.ndarray]) -> tuple:
                if p["peg_pos"][2] < 0.5 * self.height:
                    return None, None, None  # the peg was dropped: do not chase it
                socket_rot = _quat_to_mat(p["socket_quat"])
                want = p["socket_pos"] + depth * socket_rot[:, 0]
                pos, rot = carry_target(p, "right", "peg", want, socket_rot)
                return pos, rot, None

            return target

        outside = 2 * self.half_length + 0.015
        T = self.timeline
        right = [
            Segment(T[0], lambda p: (peg_grasp - 0.08 * right_rot[:, 0], right_rot, OPEN)),
            Segment(T[1], lambda p: (p["peg_pos"] + peg_offset, right_rot, OPEN)),
            Segment(T[2], lambda p: (None, None, CLOSED)),
            Segment(T[3], lambda p: (right_meet, right_lift_rot, CLOSED)),
            _hold(T[4]),
            Segment(T[5], peg_on_axis(outside)),
            Segment(T[6], peg_on_axis(outside)),
            # The pin spans +-4 cm inside the socket: stop 1 cm past first contact, since
            # pushing harder levers the peg out of the fingers.
            Segment(T[7], peg_on_axis(2 * self.half_length - 0.03)),
            _hold(400),
        ]
        left = [
            Segment(T[0], lambda p: (socket_grasp - 0.08 * left_rot[:, 0], left_rot, OPEN)),
            Segment(T[1], lambda p: (p["socket_pos"] + socket_offset, left_rot, OPEN)),
            Segment(T[2], lambda p: (None, None, CLOSED)),
            Segment(T[3], lambda p: (left_meet, left_lift_rot, CLOSED)),
            _hold(400),
        ]
        return {"left": left, "right": right}
