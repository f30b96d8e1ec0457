"""Scripted pick-and-place experts for the libero_spatial and libero_object suites.

Every task of these two suites has one goal predicate, read from the task's parsed BDDL
problem: ``(On <object> <target object>)`` (libero_spatial: a black bowl on the plate) or
``(In <object> <target>_contain_region)`` (libero_object: a grocery item in the basket).
:class:`LiberoPickPlaceExpert` reads privileged simulator state (the collision geometry and
pose of the object, its target and every other object and fixture) and drives the
``OSC_POSE`` controller through approach, descend, grasp, lift, transfer, lower, release and
retreat phases with the proportional law of :mod:`~kairos_gym.policies.robosuite_experts`:

- objects narrower than the open gripper (cans, boxes, bottles) are grasped at their centre,
  fingers closing across the object's narrowest horizontal extent;
- wider ones (the bowls) are pinched at the rim, on the side of the bowl where the fingers
  and the hand keep the most clearance from other objects and fixtures (a bowl inside a
  drawer, or between other dishes);
- the object is carried above the target, then lowered by feedback on the object's own
  position (the plate's 3 cm tolerance of ``On``, the basket's contain region of ``In``);
- a grasp that does not lift the object is retried.

With ``noise > 0`` Gaussian noise (seeded from the episode seed) is added to every action
before clipping to [-1, 1], for diverse demonstrations. Tasks of other suites (goal, 10, 90:
drawers, stoves, two-step goals) raise :class:`ValueError` on ``reset``.

Usage::

    import gymnasium as gym, kairos_gym
    from kairos_gym.policies import make_policy
    env = gym.make("kairos_gym/Libero-Spatial-v0", task_id=3, cameras=())
    expert = make_policy("expert", env, noise=0.05)
    obs, info = env.reset(options={"init_state": 0})
    expert.reset(seed=0, env=env)
    obs, reward, terminated, truncated, info = env.step(expert.act(obs))

``python -m kairos_gym.eval.libero_expert_success`` measures their success rates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from kairos_gym.policies.base import Policy
from kairos_gym.policies.robosuite_experts import (
    CLOSE,
    OPEN,
    POS_SCALE,
    R_DOWN,
    ROT_SCALE,
    mat_to_axis_angle,
    non_negative,
    rot_z,
)

SUPPORTED_SUITES = ("libero_spatial", "libero_object")
"""Suites whose every task is one pick-and-place goal this expert solves."""

# The Panda's fingers open to about 8 cm: anything wider is grasped at its rim.
MAX_CENTRE_GRASP_WIDTH = 0.07
# How far the open fingers and the widest part of the hand reach from the grip site along
# the closing direction (m); used to score the clearance of rim grasps.
FINGER_REACH = 0.045
HAND_REACH = 0.10
# MuJoCo geom types with a box-like extent from ``geom_size``.
_PLANE, _SPHERE, _CAPSULE, _ELLIPSOID, _CYLINDER, _BOX, _MESH = 0, 2, 3, 4, 5, 6, 7


@dataclass(frozen=True)
class Geometry:
    """World-frame extent of a body's collision geometry.

    Attributes:
        low, high: corners ``[3]`` of the axis-aligned bounding box.
        centre_xy: ``[2]`` centre of the narrowest horizontal bounding strip.
        width: the narrowest horizontal extent (m).
        width_angle: the direction (rad, about world z) along which ``width`` is measured.
    """

    low: np.ndarray
    high: np.ndarray
    centre_xy: np.ndarray
    width: float
    width_angle: float

    @property
    def top(self) -> float:
        """Highest point (m)."""
        return float(self.high[2])

    @property
    def bottom(self) -> float:
        """Lowest point (m)."""
        return float(self.low[2])


@dataclass(frozen=True)
class _Box:
    """An oriented box: a collision geom's extent, for clearance queries."""

    centre: np.ndarray
    rot: np.ndarray
    half: np.ndarray

    def distance(self, points: np.ndarray) -> np.ndarray:
        """Distance ``[N]`` from points ``[N, 3]`` to the box (0 inside)."""
        local = np.abs((points - self.centre) @ self.rot)
        return np.linalg.norm(np.maximum(local - self.half, 0.0), axis=1)


def _geom_local_points(model: Any, g: int) -> np.ndarray | None:
    """Points ``[N, 3]`` in the geom's frame spanning its extent (mesh vertices or corners)."""
    kind = int(model.geom_type[g])
    size = np.asarray(model.geom_size[g], dtype=np.float64)
    if kind == _MESH:
        mesh = int(model.geom_dataid[g])
        start, count = int(model.mesh_vertadr[mesh]), int(model.mesh_vertnum[mesh])
        return np.asarray(model.mesh_vert[start : start + count], dtype=np.float64)
    if kind == _BOX or kind == _ELLIPSOID:
        half = size
    elif kind == _CYLINDER:
        half = np.array([size[0], size[0], size[1]])
    elif kind == _CAPSULE:
        half = np.array([size[0], size[0], size[1] + size[0]])
    elif kind == _SPHERE:
        half = np.full(3, size[0])
    else:  # planes and height fields have no useful extent
        return None
    signs = np.array([[i, j, k] for i in (-1, 1) for j in (-1, 1) for k in (-1, 1)])
    return signs * half


def _subtree_geoms(model: Any, root: int) -> list[int]:
    """Collision geoms (contype or conaffinity set) of the bodies under ``root``."""
    out = []
    for g in range(int(model.ngeom)):
        if int(model.geom_contype[g]) == 0 and int(model.geom_conaffinity[g]) == 0:
            continue
        body = int(model.geom_bodyid[g])
        while body not in (0, root):
            body = int(model.body_parentid[body])
        if body == root:
            out.append(g)
    return out


def body_geometry(sim: Any, root: int) -> Geometry:
    """World extent of the collision geoms under body ``root`` of a robosuite ``MjSim``.

    Raises:
        ValueError: the body has no collision geometry.
    """
    model, data = sim.model, sim.data
    clouds = []
    for g in _subtree_geoms(model, root):
        local = _geom_local_points(model, g)
        if local is not None:
            rot = np.asarray(data.geom_xmat[g], dtype=np.float64).reshape(3, 3)
            clouds.append(np.asarray(data.geom_xpos[g], dtype=np.float64) + local @ rot.T)
    if not clouds:
        raise ValueError(f"body {root} has no collision geometry to grasp")
    cloud = np.concatenate(clouds)
    angles = np.linspace(0.0, math.pi, 36, endpoint=False)
    dirs = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    proj = cloud[:, :2] @ dirs.T  # [N, 36]
    spans = proj.max(0) - proj.min(0)
    k = int(np.argmin(spans))
    normal = np.array([-dirs[k, 1], dirs[k, 0]])
    along = cloud[:, :2] @ normal
    mid_k = (proj[:, k].max() + proj[:, k].min()) / 2.0
    mid_n = (along.max() + along.min()) / 2.0
    return Geometry(
        low=cloud.min(0),
        high=cloud.max(0),
        centre_xy=mid_k * dirs[k] + mid_n * normal,
        width=float(spans[k]),
        width_angle=float(angles[k]),
    )


def _obstacle_boxes(sim: Any, roots: list[int]) -> list[_Box]:
    """Oriented boxes of every collision geom under the bodies ``roots``."""
    model, data = sim.model, sim.data
    boxes = []
    for root in roots:
        for g in _subtree_geoms(model, root):
            local = _geom_local_points(model, g)
            if local is None:
                continue
            low, high = local.min(0), local.max(0)
            rot = np.asarray(data.geom_xmat[g], dtype=np.float64).reshape(3, 3)
            centre = np.asarray(data.geom_xpos[g], dtype=np.float64) + rot @ ((low + high) / 2)
            boxes.append(_Box(centre, rot, (high - low) / 2.0))
    return boxes


def closing_yaw(angle: float) -> float:
    """Gripper yaw in [-pi/2, pi/2) whose fingers close along world direction ``angle``.

    With :data:`R_DOWN` the fingers close along world y (direction pi/2); ``rot_z(yaw)``
    turns that direction by ``yaw``, and the closing axis has no sign.
    """
    return angle % math.pi - math.pi / 2.0


class LiberoPickPlaceExpert(Policy):
    """Pick the goal's object and place it on (or in) its target; see the module docstring.

    Args:
        noise: standard deviation of the Gaussian noise added to each action (action
            units, before clipping to [-1, 1]); 0 gives the deterministic expert.
        pos_gain: proportional gain on the position error, in units of ``POS_SCALE``.
        rot_gain: proportional gain on the orientation error, in units of ``ROT_SCALE``.

    Attributes:
        phase: the current phase (``"approach"``, ``"descend"``, ``"grasp"``, ``"lift"``,
            ``"transfer"``, ``"lower"``, ``"release"``, ``"retreat"``).
        goal: ``(predicate, object, target)`` of the current task, e.g.
            ``("on", "akita_black_bowl_1", "plate_1")``.
        grasp_kind: ``"centre"`` or ``"rim"``.
        attempts: grasps tried this episode.
    """

    suites: tuple[str, ...] = SUPPORTED_SUITES
    max_attempts = 3
    # Release once the object's origin is this close (m) to its place in the plane.
    place_tolerance = 0.01
    # Extra gain on the object's horizontal error while carrying it (the load sags the arm).
    xy_gain = 2.0

    def __init__(self, noise: float = 0.0, *, pos_gain: float = 1.0, rot_gain: float = 1.0) -> None:
        self.noise = non_negative("noise", noise)
        self.pos_gain = float(pos_gain)
        self.rot_gain = float(rot_gain)
        self._env: Any = None
        self._rng = np.random.default_rng()
        self.phase = ""
        self.goal: tuple[str, str, str] = ("", "", "")
        self.grasp_kind = ""
        self.attempts = 0
        self._phase_steps = 0
        self._memory: dict[str, Any] = {}

    def reset(self, *, seed: int | None = None, env: gym.Env | None = None) -> None:
        """Bind to ``env`` (a :class:`~kairos_gym.envs.libero_env.LiberoEnv` or a wrapper of
        one, already reset) for one episode and plan the grasp.

        Raises:
            TypeError: ``env`` is missing or not a LIBERO environment.
            ValueError: the task is not of a supported suite, or its goal is not one
                ``On``/``In`` predicate.
        """
        base = env.unwrapped if env is not None else None
        if base is None or not hasattr(base, "libero_env") or not hasattr(base, "privileged"):
            raise TypeError(
                f"{type(self).__name__} reads simulator state: pass the LIBERO environment as "
                f"reset(seed=..., env=env), got {env!r}"
            )
        suite = getattr(base, "suite", None)
        if suite not in self.suites:
            raise ValueError(
                f"{type(self).__name__} covers the suites {list(self.suites)}, got {suite} "
                f"task {getattr(base, 'task_id', '?')} ({getattr(base, 'task', '?')})"
            )
        inner = base.libero_env.env
        goals = inner.parsed_problem["goal_state"]
        if len(goals) != 1 or len(goals[0]) != 3 or goals[0][0].lower() not in ("on", "in"):
            raise ValueError(
                f"{type(self).__name__} solves one On/In goal, got {goals} for {base.task}"
            )
        predicate, obj, target = goals[0]
        self.goal = (predicate.lower(), obj, target)
        self._env = base
        self._inner = inner
        self._rng = np.random.default_rng(seed)
        self.attempts = 0
        self._memory = {}
        self._plan_grasp()
        self._set_phase("approach")

    def act(self, observation: dict[str, np.ndarray], instruction: str = "") -> np.ndarray:
        """Next action ``[7]`` float32 in [-1, 1] (observation and instruction are unused)."""
        if self._env is None:
            raise RuntimeError(f"call {type(self).__name__}.reset(seed=..., env=env) before act()")
        p = self._env.privileged()
        target_pos, target_mat, gripper = self._plan(p)
        self._phase_steps += 1
        action = np.zeros(7)
        action[:3] = np.clip((target_pos - p["eef_pos"]) / POS_SCALE * self.pos_gain, -1.0, 1.0)
        rot_err = mat_to_axis_angle(target_mat @ p["eef_mat"].T)
        action[3:6] = np.clip(rot_err / ROT_SCALE * self.rot_gain, -1.0, 1.0)
        action[6] = gripper
        if self.noise > 0.0:
            action = action + self._rng.normal(0.0, self.noise, size=7)
        return np.clip(action, -1.0, 1.0).astype(np.float32)

    def _body(self, name: str) -> int:
        return int(self._inner.obj_body_id[name])

    def _target_body(self) -> str:
        """The body the object goes on or into (a region site names its parent object)."""
        target = self.goal[2]
        if target in self._inner.obj_body_id:
            return target
        site = self._inner.object_sites_dict.get(target)
        parent = getattr(site, "parent_name", None)
        if parent is None:
            raise ValueError(f"cannot find the body of the goal target {target!r}")
        return parent

    def _object_pos(self) -> np.ndarray:
        return np.array(self._inner.sim.data.body_xpos[self._body(self.goal[1])], dtype=np.float64)

    def _plan_grasp(self) -> None:
        """Choose the grasp point, gripper rotation and the carry and placing heights."""
        sim, mem = self._inner.sim, self._memory
        obj, target = self.goal[1], self._target_body()
        geo = body_geometry(sim, self._body(obj))
        tgeo = body_geometry(sim, self._body(target))
        body = self._object_pos()
        height = geo.top - geo.bottom
        others = [
            int(i)
            for name, i in self._inner.obj_body_id.items()
            if name != obj
            and (name in self._inner.objects_dict or name in self._inner.fixtures_dict)
        ]
        if geo.width <= MAX_CENTRE_GRASP_WIDTH:
            self.grasp_kind = "centre"
            xy = geo.centre_xy
            # Deep enough for a firm hold on tall items, clear of the ground on flat ones.
            z = max(geo.top - 0.035, geo.bottom + min(0.5 * height, 0.012))
            yaw = closing_yaw(geo.width_angle)
        else:
            self.grasp_kind = "rim"
            xy, yaw = self._rim_grasp(geo, _obstacle_boxes(sim, others))
            z = geo.top - 0.02
        grasp = np.array([xy[0], xy[1], z])
        mem["grasp_offset"] = grasp - body  # grasp point relative to the object's origin
        mem["grasp_mat"] = rot_z(yaw) @ R_DOWN
        mem["hover"] = max(geo.top + 0.06, z + 0.08) - z
        mem["object_bottom"] = geo.bottom - body[2]  # object's lowest point below its origin
        # Carry the object's bottom well above the target and where it started.
        mem["carry_bottom"] = max(tgeo.top, geo.bottom) + 0.06
        if self.goal[0] == "on":
            # Come to rest on the target's top surface, released from 1 cm.
            mem["place_bottom"] = tgeo.top + 0.01
        else:
            # Into the container: down to just above its floor.
            mem["place_bottom"] = tgeo.bottom + 0.04

    def _rim_grasp(self, geo: Geometry, obstacles: list[_Box]) -> tuple[np.ndarray, float]:
        """Rim point ``[2]`` and gripper yaw with the most clearance from ``obstacles``."""
        centre = (geo.low[:2] + geo.high[:2]) / 2.0
        radius = min(geo.high[0] - geo.low[0], geo.high[1] - geo.low[1]) / 2.0
        rim = radius - 0.008  # just inside the outer wall
        z = geo.top - 0.02
        robot = self._inner.robots[0].robot_model.root_body
        base_xy = np.array(self._inner.sim.data.get_body_xpos(robot)[:2], dtype=np.float64)
        candidates: list[tuple[float, np.ndarray, float]] = []
        for angle in np.arange(8) * (math.pi / 4.0):
            d = np.array([math.cos(angle), math.sin(angle)])
            point = centre + rim * d
            probes = np.array(
                [
                    [*(point + sign * offset * d), z + dz]
                    for offset, dz in (
                        (FINGER_REACH, 0.0),
                        (FINGER_REACH, 0.03),
                        (HAND_REACH, 0.08),
                    )
                    for sign in (-1.0, 1.0)
                ]
            )
            clearance = min((float(box.distance(probes).min()) for box in obstacles), default=1.0)
            yaw = closing_yaw(float(angle))
            # Enough clearance is enough: then prefer the side nearer the robot (the far
            # side of a bowl can be out of the arm's reach) and the least wrist turn.
            reach = float(np.linalg.norm(point - base_xy))
            score = min(clearance, 0.04) - 0.2 * reach - 0.01 * abs(yaw) / (math.pi / 2.0)
            candidates.append((score, point, yaw))
        _, point, yaw = max(candidates, key=lambda c: c[0])
        return point, yaw

    def _plan(self, p: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, float]:
        """``(target eef position [3], target rotation [3, 3], gripper command)``."""
        mem = self._memory
        mat = mem["grasp_mat"]
        obj = self._object_pos()
        if self.phase == "approach":
            # Follow the object until the descent starts (a failed grasp may have moved it).
            grasp = mem["grasp"] = obj + mem["grasp_offset"]
            above = grasp + np.array([0.0, 0.0, mem["hover"]])
            # Rise first when below the hover height, so the hand does not sweep the scene.
            if p["eef_pos"][2] < above[2] - 0.03 and not self._near_xy(p, above, 0.02):
                return np.array([*p["eef_pos"][:2], above[2]]), mat, OPEN
            if (self._near(p, above, 0.015) and self._aligned(p, mat, 0.08)) or (
                self._phase_steps > 80
            ):
                self._set_phase("descend")
            else:
                return above, mat, OPEN
        if self.phase == "descend":
            grasp = mem["grasp"]
            if self._near(p, grasp, 0.008) or self._phase_steps > 40:
                self._set_phase("grasp")
            else:
                return grasp, mat, OPEN
        if self.phase == "grasp":
            if self._phase_steps >= 12:
                mem["lift_from"] = obj.copy()
                mem["eef_from"] = p["eef_pos"].copy()
                self._set_phase("lift")
            else:
                return mem["grasp"], mat, CLOSE
        bottom = obj[2] + mem["object_bottom"]
        if self.phase == "lift":
            rose_eef = p["eef_pos"][2] - mem["eef_from"][2]
            rose_obj = obj[2] - mem["lift_from"][2]
            if (
                rose_eef > 0.05
                and rose_obj < 0.5 * rose_eef
                and self.attempts + 1 < self.max_attempts
            ):
                # The object stayed behind: open and try again from above it.
                self.attempts += 1
                self._set_phase("approach")
                return p["eef_pos"] + np.array([0.0, 0.0, 0.05]), mat, OPEN
            if bottom >= mem["carry_bottom"] - 0.01 or self._phase_steps > 60:
                self.attempts += 1
                self._set_phase("transfer")
            else:
                lift = mem["carry_bottom"] - bottom + 0.02
                return p["eef_pos"] + np.array([0.0, 0.0, lift]), mat, CLOSE
        target_xy = self._target_xy()
        if self.phase == "transfer":
            err = target_xy - obj[:2]
            dist = float(np.linalg.norm(err))
            # A loaded, outstretched arm can stall a centimetre or so short: lowering goes on
            # correcting the position.
            if dist < 0.01 or (dist < 0.02 and self._phase_steps > 30) or self._phase_steps > 100:
                self._set_phase("lower")
            else:
                z = p["eef_pos"][2] + (mem["carry_bottom"] - bottom)
                xy = p["eef_pos"][:2] + self.xy_gain * err
                return np.array([xy[0], xy[1], z]), mat, CLOSE
        if self.phase == "lower":
            dz = mem["place_bottom"] - bottom
            err = target_xy - obj[:2]
            settled = dz > -0.005 and float(np.linalg.norm(err)) < self.place_tolerance
            if settled or self._phase_steps > 60:
                self._set_phase("release")
            else:
                # Fast while high, slowly near the end so the load does not swing in the
                # fingers; aim a little below (the load leaves the arm short of its goal) and
                # never below the placing height.
                speed = 0.05 if dz < -0.05 else 0.025
                step = float(np.clip(dz - 0.01, -speed, 0.0)) if dz < -0.005 else 0.0
                xy = self.xy_gain * err
                return p["eef_pos"] + np.array([xy[0], xy[1], step]), mat, CLOSE
        if self.phase == "release":
            if self._phase_steps >= 10:
                self._set_phase("retreat")
                mem["retreat"] = p["eef_pos"] + np.array([0.0, 0.0, 0.10])
            else:
                return p["eef_pos"], mat, OPEN
        return mem["retreat"], mat, OPEN

    def _target_xy(self) -> np.ndarray:
        """Where the object's origin should end up, in the horizontal plane."""
        data = self._inner.sim.data
        target = self.goal[2]
        if target in self._inner.obj_body_id:
            return np.array(data.body_xpos[self._body(target)][:2], dtype=np.float64)
        return np.array(data.get_site_xpos(target)[:2], dtype=np.float64)

    def _set_phase(self, phase: str) -> None:
        self.phase = phase
        self._phase_steps = 0

    @staticmethod
    def _aligned(p: dict[str, np.ndarray], target_mat: np.ndarray, tol: float) -> bool:
        return float(np.linalg.norm(mat_to_axis_angle(target_mat @ p["eef_mat"].T))) < tol

    @staticmethod
    def _near(p: dict[str, np.ndarray], target: np.ndarray, tol: float) -> bool:
        return float(np.linalg.norm(target - p["eef_pos"])) < tol

    @staticmethod
    def _near_xy(p: dict[str, np.ndarray], target: np.ndarray, tol: float) -> bool:
        return float(np.linalg.norm(target[:2] - p["eef_pos"][:2])) < tol
