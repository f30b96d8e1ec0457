"""Scripted experts for the robosuite tasks (Lift, Stack, PickPlaceCan, Door).

Each expert reads privileged simulator state through ``RobosuiteEnv.privileged()`` (object
poses, end-effector pose, joint angles) and drives a short sequence of waypoints through the
``OSC_POSE`` controller: a proportional law turns the position and orientation error into
the 7-D delta action (``0.05 m`` and ``0.5 rad`` per unit), and each phase ends when its
waypoint is reached or its step budget runs out. With ``noise > 0`` Gaussian noise (seeded
from the episode seed) is added to every action before clipping to [-1, 1], for diverse
demonstrations.

Usage::

    env = gym.make("kairos_gym/Robosuite-Lift-v0", cameras=())
    expert = LiftExpert(noise=0.0)
    obs, info = env.reset(seed=0)
    expert.reset(seed=0, env=env)
    obs, reward, terminated, truncated, info = env.step(expert.act(obs))

``python -m kairos_gym.eval.expert_success --env all`` measures their success rates.
"""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np

from kairos_gym.policies.base import Policy

# OSC_POSE maps an action of 1 to these deltas per control step (robosuite's default config).
POS_SCALE = 0.05
ROT_SCALE = 0.5
OPEN, CLOSE = -1.0, 1.0

# Gripper pointing straight down with the fingers closing along world y: the Panda's
# nominal start pose (columns are the grip site's axes in world coordinates).
R_DOWN = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, -1.0]])


def rot_z(angle: float) -> np.ndarray:
    """Rotation matrix ``[3, 3]`` about world z."""
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def rot_axis(axis: np.ndarray, angle: float) -> np.ndarray:
    """Rotation matrix ``[3, 3]`` of ``angle`` radians about the unit vector ``axis``."""
    x, y, z = np.asarray(axis, dtype=np.float64) / np.linalg.norm(axis)
    k = np.array([[0.0, -z, y], [z, 0.0, -x], [-y, x, 0.0]])
    return np.eye(3) + math.sin(angle) * k + (1.0 - math.cos(angle)) * (k @ k)


def mat_to_axis_angle(mat: np.ndarray) -> np.ndarray:
    """Axis-angle vector ``[3]`` (angle in [0, pi]) of a rotation matrix ``[3, 3]``."""
    cos = min(max((np.trace(mat) - 1.0) / 2.0, -1.0), 1.0)
    angle = math.acos(cos)
    if angle < 1e-8:
        return np.zeros(3)
    vec = np.array([mat[2, 1] - mat[1, 2], mat[0, 2] - mat[2, 0], mat[1, 0] - mat[0, 1]])
    if math.pi - angle < 1e-4:
        # Near pi the skew part vanishes; take the axis from the symmetric part instead.
        sym = (mat + np.eye(3)) / 2.0
        axis = sym[int(np.argmax(np.diag(sym)))]
        return axis / np.linalg.norm(axis) * angle
    return vec / (2.0 * math.sin(angle)) * angle


def quat_yaw(quat_xyzw: np.ndarray) -> float:
    """Heading (rotation about world z) of an ``(x, y, z, w)`` quaternion, in radians."""
    x, y, z, w = quat_xyzw
    return math.atan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z))


def square_grasp_yaw(object_yaw: float) -> float:
    """Gripper yaw in [-pi/4, pi/4] that lines the fingers up with a square object's faces."""
    return (object_yaw + math.pi / 4.0) % (math.pi / 2.0) - math.pi / 4.0


def non_negative(name: str, value: Any) -> float:
    """``value`` as a float, or a ValueError naming ``name`` unless it is finite and >= 0."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if not (math.isfinite(number) and number >= 0.0):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return number


class RobosuiteExpert(Policy):
    """Waypoint-following expert base class; subclasses implement :meth:`plan`.

    Args:
        noise: standard deviation of the Gaussian noise added to each action (action
            units, before clipping to [-1, 1]); 0 gives the deterministic expert.
        pos_gain: proportional gain on the position error, in units of ``POS_SCALE``.
        rot_gain: proportional gain on the orientation error, in units of ``ROT_SCALE``.
        aim_error: radius in metres of a horizontal offset, drawn once per episode (uniform
            in the disk), that the expert adds to every grasp point: ``0`` grasps where it
            should, a few centimetres gives near misses (grasps on an edge, pushes, drops),
            the failures a weak policy makes and the successful expert never shows.
    """

    task: str = ""

    def __init__(self, noise: float = 0.0, *, pos_gain: float = 1.0, rot_gain: float = 1.0,
                 aim_error: float = 0.0) -> None:
        self.noise = non_negative("noise", noise)
        self.aim_error = non_negative("aim_error", aim_error)
        self._aim_offset = np.zeros(3)
        self.pos_gain = float(pos_gain)
        self.rot_gain = float(rot_gain)
        self._env: Any = None
        self._rng = np.random.default_rng()
        self.phase = ""
        self._phase_steps = 0
        self._memory: dict[str, Any] = {}

    def reset(self, *, seed: int | None = None, env: gym.Env | None = None) -> None:
        """Bind to ``env`` (a robosuite ``RobosuiteEnv`` or a wrapper of one) for one episode.

        Raises:
            TypeError: ``env`` is missing or not a robosuite environment of this expert's task.
        """
        base = env.unwrapped if env is not None else None
        if base is None or not hasattr(base, "privileged"):
            raise TypeError(
                f"{type(self).__name__} reads simulator state: pass the robosuite environment as "
                f"reset(seed=..., env=env), got {env!r}"
            )
        env_task = getattr(base, "task", None)
        if env_task != self.task:
            raise TypeError(
                f"{type(self).__name__} solves {self.task!r}, got an env of task {env_task!r}"
            )
        self._env = base
        self._rng = np.random.default_rng(seed)
        self._memory = {}
        # Drawn from its own stream so that an aim error leaves the action noise unchanged.
        aim_rng = np.random.default_rng(None if seed is None else [seed, 1])
        radius = self.aim_error * math.sqrt(aim_rng.uniform())
        angle = aim_rng.uniform(0.0, 2.0 * math.pi)
        self._aim_offset = np.array([radius * math.cos(angle), radius * math.sin(angle), 0.0])
        self._set_phase("approach")

    def act(self, observation: dict[str, np.ndarray], instruction: str = "") -> np.ndarray:
        """Next action ``[7]`` float32 in [-1, 1] (observation and instruction are unused)."""
        if self._env is None:
            raise RuntimeError(f"call {type(self).__name__}.reset(seed=..., env=env) before act()")
        p = self._env.privileged()
        target_pos, target_mat, gripper = self.plan(p)
        self._phase_steps += 1
        action = np.zeros(7)
        action[:3] = np.clip((target_pos - p["eef_pos"]) / POS_SCALE * self.pos_gain, -1.0, 1.0)
        rot_err = mat_to_axis_angle(target_mat @ p["eef_mat"].T)
        action[3:6] = np.clip(rot_err / ROT_SCALE * self.rot_gain, -1.0, 1.0)
        action[6] = gripper
        if self.noise > 0.0:
            action = action + self._rng.normal(0.0, self.noise, size=7)
        return np.clip(action, -1.0, 1.0).astype(np.float32)

    def plan(self, p: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, float]:
        """Return ``(target eef position [3], target rotation [3, 3], gripper command)``."""
        raise NotImplementedError

    def _set_phase(self, phase: str) -> None:
        self.phase = phase
        self._phase_steps = 0

    @staticmethod
    def _aligned(p: dict[str, np.ndarray], target_mat: np.ndarray, tol: float) -> bool:
        return float(np.linalg.norm(mat_to_axis_angle(target_mat @ p["eef_mat"].T))) < tol

    @staticmethod
    def _near(p: dict[str, np.ndarray], target: np.ndarray, tol: float) -> bool:
        return float(np.linalg.norm(target - p["eef_pos"])) < tol

    def _pick(
        self,
        p: dict[str, np.ndarray],
        obj_pos: np.ndarray,
        grasp_mat: np.ndarray,
        *,
        grasp_dz: float = 0.0,
        hover: float = 0.10,
        approach_dir: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray, float] | None:
        """Shared approach / descend / grasp phases; ``None`` once the object is held.

        The gripper first goes to ``hover`` metres before the grasp point, against
        ``approach_dir`` (default straight down, i.e. it hovers above), then moves in.
        """
        direction = np.array([0.0, 0.0, -1.0]) if approach_dir is None else approach_dir
        grasp = obj_pos + self._aim_offset + np.array([0.0, 0.0, grasp_dz])
        above = grasp - direction * hover
        if self.phase == "approach":
            aligned = self._aligned(p, grasp_mat, 0.1)
            if (self._near(p, above, 0.015) and aligned) or self._phase_steps > 60:
                self._set_phase("descend")
            else:
                return above, grasp_mat, OPEN
        if self.phase == "descend":
            if self._near(p, grasp, 0.008) or self._phase_steps > 40:
                self._set_phase("grasp")
            else:
                return grasp, grasp_mat, OPEN
        if self.phase == "grasp":
            if self._phase_steps >= 10:
                self._memory["grip_offset"] = p["eef_pos"] - obj_pos
                self._set_phase("carry")
                return None
            return grasp, grasp_mat, CLOSE
        return None


class LiftExpert(RobosuiteExpert):
    """Lift: hover over the cube, descend, grasp with the fingers square to it, lift 15 cm."""

    task = "Lift"

    def plan(self, p: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, float]:
        if "grasp_mat" not in self._memory:
            self._memory["grasp_mat"] = rot_z(square_grasp_yaw(quat_yaw(p["cube_quat"]))) @ R_DOWN
        grasp_mat = self._memory["grasp_mat"]
        out = self._pick(p, p["cube_pos"], grasp_mat)
        if out is not None:
            return out
        if "lift_target" not in self._memory:
            self._memory["lift_target"] = p["eef_pos"] + np.array([0.0, 0.0, 0.15])
        return self._memory["lift_target"], grasp_mat, CLOSE


class StackExpert(RobosuiteExpert):
    """Stack: pick the red cube, carry it over the green one, lower it on top, release, retreat."""

    task = "Stack"

    def plan(self, p: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, float]:
        if "grasp_mat" not in self._memory:
            self._memory["grasp_mat"] = rot_z(square_grasp_yaw(quat_yaw(p["cubeA_quat"]))) @ R_DOWN
        grasp_mat = self._memory["grasp_mat"]
        out = self._pick(p, p["cubeA_pos"], grasp_mat)
        if out is not None:
            return out
        offset = self._memory["grip_offset"]
        # Cube half sizes are about 0.02 (red) and 0.025 (green): rest the red one on top.
        place = p["cubeB_pos"] + offset + np.array([0.0, 0.0, 0.05])
        above = place + np.array([0.0, 0.0, 0.08])
        if self.phase == "carry":
            if self._near(p, above, 0.015) or self._phase_steps > 80:
                self._set_phase("lower")
            else:
                # Rise first, then travel, so the red cube does not sweep the green one.
                lifted = p["eef_pos"][2] > place[2] + 0.04
                target = above if lifted else p["eef_pos"] + np.array([0.0, 0.0, 0.05])
                return target, grasp_mat, CLOSE
        if self.phase == "lower":
            if self._near(p, place, 0.008) or self._phase_steps > 40:
                self._set_phase("release")
            else:
                return place, grasp_mat, CLOSE
        if self.phase == "release":
            if self._phase_steps >= 8:
                self._set_phase("retreat")
                self._memory["retreat"] = p["eef_pos"] + np.array([0.0, 0.0, 0.10])
            else:
                return place, grasp_mat, OPEN
        return self._memory["retreat"], grasp_mat, OPEN


class PickPlaceCanExpert(RobosuiteExpert):
    """PickPlaceCan: grasp the can near its top, lift, carry it to its bin compartment, drop."""

    task = "PickPlaceCan"
    carry_height = 0.25
    wall_margin = 0.05

    def plan(self, p: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, float]:
        grasp_mat = R_DOWN
        out = self._pick(p, p["can_pos"], grasp_mat, grasp_dz=0.01)
        if out is not None:
            return out
        offset = self._memory["grip_offset"]
        travel_z = p["target_pos"][2] + self.carry_height
        # The compartment centre is at the edge of the Panda's reach: aim for its corner
        # nearest the robot (which stands at -x, y = 0), keeping the can clear of the walls.
        half = p["target_half_size"]
        drop_xy = p["target_pos"][:2] - np.maximum(half - self.wall_margin, 0.0)
        over_bin = np.array([*(drop_xy + offset[:2]), travel_z])
        # The can's origin sits 6 cm above its bottom; release it a few cm above the bin floor.
        drop_can_z = p["target_pos"][2] + 0.06 + 0.03
        drop = np.array([*over_bin[:2], drop_can_z + offset[2]])
        if self.phase == "carry":
            if p["eef_pos"][2] < travel_z - 0.03 and self._phase_steps < 40:
                return np.array([*p["eef_pos"][:2], travel_z]), grasp_mat, CLOSE
            self._set_phase("transfer")
        if self.phase == "transfer":
            if np.linalg.norm(over_bin[:2] - p["eef_pos"][:2]) < 0.02 or self._phase_steps > 80:
                self._set_phase("lower")
            else:
                return over_bin, grasp_mat, CLOSE
        if self.phase == "lower":
            if p["can_pos"][2] < drop_can_z + 0.01 or self._phase_steps > 40:
                self._set_phase("release")
            else:
                # Aim below the drop point: the can's weight leaves the arm short of its goal.
                return drop - np.array([0.0, 0.0, 0.03]), grasp_mat, CLOSE
        if self.phase == "release":
            if self._phase_steps >= 8:
                self._set_phase("retreat")
                self._memory["retreat"] = p["eef_pos"] + np.array([0.0, 0.0, 0.12])
            else:
                return p["eef_pos"], grasp_mat, OPEN
        return self._memory["retreat"], grasp_mat, OPEN


class DoorExpert(RobosuiteExpert):
    """Door: pinch the latch lever, turn it down past the latch, pull the door along its arc."""

    task = "Door"
    turn_angle = 1.45
    turn_steps = 40
    # Where to pinch the lever, as a fraction of the way from the latch axis to the handle site.
    grasp_fraction = 0.8

    def plan(self, p: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, float]:
        mem = self._memory
        if "grasp_point" not in mem:
            anchor, axis = p["latch_anchor"], p["latch_axis"]
            # The lever stands off the door along the latch axis; slide along the lever only.
            axial = axis * float((p["handle_pos"] - anchor) @ axis)
            radial = p["handle_pos"] - anchor - axial
            mem["grasp_point"] = anchor + axial + radial * self.grasp_fraction
            mem["anchor"] = anchor
            mem["axis"] = axis
            # Face the door along the latch axis with the fingers vertical, so they pinch the
            # lever's top and bottom (the hand is too wide to pinch it from above); this sign of
            # the finger axis is a 90 degree turn from the start pose (the other is nearly 180).
            fingers = np.array([0.0, 0.0, -1.0])
            mem["grasp_mat"] = np.stack([fingers, np.cross(axis, fingers), axis], axis=1)
            # Turn the handle's free end downwards: pick the axis sign that lowers it.
            down_turn = rot_axis(axis, 0.1) @ radial
            mem["turn_sign"] = 1.0 if down_turn[2] < radial[2] else -1.0
        grasp_mat = mem["grasp_mat"]
        grasp_point = mem["grasp_point"]
        if self.phase in ("approach", "descend", "grasp"):
            out = self._pick(p, grasp_point, grasp_mat, hover=0.10, approach_dir=mem["axis"])
            if out is not None:
                return out
            self._set_phase("turn")
        if self.phase == "turn":
            frac = min(1.0, self._phase_steps / self.turn_steps)
            turned = abs(float(p["handle_qpos"].ravel()[0])) > 1.3
            if (frac >= 1.0 and turned) or self._phase_steps > 2 * self.turn_steps:
                self._set_phase("pull")
            else:
                rot = rot_axis(mem["axis"], mem["turn_sign"] * self.turn_angle * frac)
                return mem["anchor"] + rot @ (grasp_point - mem["anchor"]), rot @ grasp_mat, CLOSE
        hinge = float(p["hinge_qpos"].ravel()[0])
        turn = rot_axis(mem["axis"], mem["turn_sign"] * self.turn_angle)
        held = mem["anchor"] + turn @ (grasp_point - mem["anchor"])
        # Follow the door's arc about its hinge and lead it a little further each step.
        lead = rot_z(min(hinge + 0.15, 0.45))
        hinge_anchor = p["hinge_anchor"]
        target = hinge_anchor + lead @ (held - hinge_anchor)
        return target, lead @ turn @ grasp_mat, CLOSE
