"""robosuite 1.4 single-arm tasks as Gymnasium environments with LIBERO-style spaces.

``RobosuiteEnv`` wraps robosuite's Lift, Stack, PickPlaceCan and Door with a Panda arm and
the ``OSC_POSE`` controller, so the action is the 7-D LIBERO action
``[dx, dy, dz, dax, day, daz, gripper]`` in [-1, 1] (position scaled by 0.05 m, rotation by
0.5 rad per control step, gripper -1 open / +1 closed) at 20 Hz.

Observation (flat ``gymnasium.spaces.Dict``):

- ``<camera>_image``: uint8 ``[H, W, 3]`` per requested camera, upright (robosuite renders
  with OpenGL's bottom-left origin; the rows are flipped back here).
- ``state``: float32 ``[8]``: end-effector position (3), end-effector orientation as
  axis-angle (3, from ``robot0_eef_quat`` exactly as LIBERO/VLA clients compute it) and the
  two gripper finger positions (2).
- ``object_state`` (``object_obs=True``) and ``joints`` (``joint_obs=True``): optional, see
  :class:`RobosuiteEnv`.

Seeding: robosuite 1.4 draws the object placement and the robot's initial joint noise from
numpy's *global* RNG (``np.random.uniform`` / ``np.random.randn``). Every robosuite call made
here runs with numpy's global state swapped for a per-environment ``RandomState`` derived
from ``reset(seed=...)``, and swapped back afterwards, so seeded resets are reproducible and
the caller's global RNG is neither read nor disturbed.

Rendering: every robosuite env owns an offscreen GL context, but robosuite 1.4 renders into,
and frees its GL objects in, whichever context is current. Each render here binds this env's
own context and releases it afterwards, and ``close`` frees the env inside its own context,
so creating, closing or dropping other envs in the process never changes this env's images.

Usage::

    import gymnasium as gym, kairos_gym
    env = gym.make("kairos_gym/Robosuite-Lift-v0", cameras=("agentview",), image_size=64)
    obs, info = env.reset(seed=0)     # obs["agentview_image"]: [64, 64, 3] uint8, obs["state"]: [8]
    obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np

from kairos_gym.envs.common import (
    EpisodeLimit,
    check_action,
    check_reset_options,
    validate_options,
)
from kairos_gym.envs.registration import ROBOSUITE_LIMITS
from kairos_gym.envs.rendering import close_robosuite, own_gl_context, release_new_context
from kairos_gym.errors import ResetNeeded, missing_dependency

ACTION_DIM = 7
STATE_DIM = 8
ARM_JOINTS = 7
CONTROL_FREQ = 20.0
DEFAULT_RENDER_CAMERA = "agentview"


@dataclass(frozen=True)
class TaskSpec:
    """What distinguishes one supported robosuite task from another.

    Attributes:
        env_name: robosuite environment name passed to ``robosuite.make``.
        instruction: natural-language instruction reported in ``info`` and ``env.instruction``.
        objects: privileged name -> robosuite observation key, copied by ``privileged()``.
        object_state: the ``objects`` concatenated, in this order, into the optional
            ``object_state`` observation (``object_obs=True``): what a world model must carry
            to know where the task's objects are and whether the task is done.
        kwargs: extra keyword arguments for ``robosuite.make``.
    """

    env_name: str
    instruction: str
    objects: dict[str, str]
    object_state: tuple[str, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)


TASKS: dict[str, TaskSpec] = {
    "Lift": TaskSpec(
        "Lift",
        "lift the red cube",
        {"cube_pos": "cube_pos", "cube_quat": "cube_quat"},
        ("cube_pos",),
    ),
    "Stack": TaskSpec(
        "Stack",
        "stack the red cube on the green cube",
        {
            "cubeA_pos": "cubeA_pos",
            "cubeA_quat": "cubeA_quat",
            "cubeB_pos": "cubeB_pos",
            "cubeB_quat": "cubeB_quat",
        },
        ("cubeA_pos", "cubeB_pos"),
    ),
    "PickPlaceCan": TaskSpec(
        "PickPlaceCan",
        "pick the can and place it in its bin",
        {"can_pos": "Can_pos", "can_quat": "Can_quat"},
        ("can_pos",),
    ),
    "Door": TaskSpec(
        "Door",
        "open the door",
        {
            "door_pos": "door_pos",
            "handle_pos": "handle_pos",
            "hinge_qpos": "hinge_qpos",
            "handle_qpos": "handle_qpos",
        },
        ("handle_pos", "hinge_qpos", "handle_qpos"),
    ),
}


def quat_to_axis_angle(quat_xyzw: np.ndarray) -> np.ndarray:
    """Axis-angle ``[3]`` of an ``(x, y, z, w)`` quaternion, the LIBERO/VLA state convention.

    The angle is ``2 acos(w)`` without sign canonicalisation (as robosuite's
    ``quat2axisangle``, which VLA clients use), so the state matches theirs bit for bit.
    """
    q = np.asarray(quat_xyzw, dtype=np.float64)
    w = min(max(float(q[3]), -1.0), 1.0)
    den = math.sqrt(1.0 - w * w)
    if math.isclose(den, 0.0):
        return np.zeros(3)
    return q[:3] * 2.0 * math.acos(w) / den


def panda_state(raw: dict[str, Any]) -> np.ndarray:
    """The 8-D VLA ``state`` float32 ``[8]`` of a robosuite Panda observation: end-effector
    position (3), axis-angle (3, :func:`quat_to_axis_angle`), gripper finger positions (2)."""
    axis_angle = quat_to_axis_angle(raw["robot0_eef_quat"])
    return np.concatenate([raw["robot0_eef_pos"], axis_angle, raw["robot0_gripper_qpos"]]).astype(
        np.float32
    )


def panda_ground_truth(sim: Any, eef_site_id: int, raw: dict[str, Any]) -> dict[str, np.ndarray]:
    """The arm's part of ``privileged()`` (float64 copies, world frame): ``eef_pos [3]`` (grip
    site), ``eef_quat [4]`` (xyzw, hand body as in ``state``), ``eef_mat [3, 3]`` (grip site
    rotation, the frame the OSC controls), ``gripper_qpos [2]``."""
    return {
        "eef_pos": np.array(sim.data.site_xpos[eef_site_id], dtype=np.float64),
        "eef_quat": np.array(raw["robot0_eef_quat"], dtype=np.float64),
        "eef_mat": np.array(sim.data.site_xmat[eef_site_id], dtype=np.float64).reshape(3, 3),
        "gripper_qpos": np.array(raw["robot0_gripper_qpos"], dtype=np.float64),
    }


def object_state(spec: TaskSpec, raw: dict[str, Any]) -> np.ndarray:
    """The ``object_state`` observation float32 ``[K]`` of a raw robosuite observation: the
    task's ``spec.object_state`` entries, flattened and concatenated."""
    parts = [np.asarray(raw[spec.objects[name]], dtype=np.float32).reshape(-1)
             for name in spec.object_state]
    return np.concatenate(parts)


def _import_robosuite() -> Any:
    try:
        import robosuite
    except ImportError as exc:
        raise missing_dependency("robosuite", "sim") from exc
    return robosuite


class RobosuiteEnv(EpisodeLimit, gym.Env):
    """A robosuite 1.4 task (Panda, ``OSC_POSE``, 20 Hz) with kairos-gym's shared spaces.

    Args:
        task: one of ``"Lift"``, ``"Stack"``, ``"PickPlaceCan"``, ``"Door"``.
        cameras: camera names rendered into the observation (``<camera>_image``), e.g.
            ``("agentview", "robot0_eye_in_hand")``; ``()`` renders nothing (fastest; the
            observation then only holds ``state``).
        image_size: side of the square images, or ``(H, W)``.
        max_episode_steps: truncation length; ``None`` picks the task's default
            (Lift 200, Stack 300, PickPlaceCan 400, Door 300; the registered limits). See
            :class:`~kairos_gym.envs.common.EpisodeLimit` for ``gym.make``.
        terminate_on_success: end the episode (``terminated=True``) on the first success.
        reward_shaping: robosuite's dense shaped reward instead of its sparse one.
        render_mode: ``None`` or ``"rgb_array"`` (``render()`` returns the first camera's
            upright frame ``[H, W, 3]``, or the ``agentview`` camera when ``cameras=()``).
        object_obs: add the privileged ``object_state`` observation, float32: the task's
            object positions (Lift: cube position [3]; Stack: both cubes [6]; PickPlaceCan:
            the can [3]; Door: handle position, hinge and latch angles [5]). Off by default:
            policies should not see it. World models trained on data with it carry the
            objects' state, as they carry the arm's (``model.proprio_conditioning``).
        joint_obs: add the ``joints`` observation, float32 ``[14]``: the arm's seven joint
            angles (rad) and seven joint velocities (rad/s), read from the simulator. Where
            the arm ends a step depends on its joint configuration and speed, which the
            end-effector pose of ``state`` does not determine; a world model that carries
            them predicts the arm's motion better. A real arm's encoders give them, so they
            are not privileged.

    Attributes:
        instruction: the task instruction (also in every ``info``).
        control_freq: control rate in Hz (20).
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"], "render_fps": CONTROL_FREQ}

    def __init__(
        self,
        task: str,
        *,
        cameras: Sequence[str] = ("agentview",),
        image_size: int | Sequence[int] = 64,
        max_episode_steps: int | None = None,
        terminate_on_success: bool = False,
        reward_shaping: bool = False,
        render_mode: str | None = None,
        object_obs: bool = False,
        joint_obs: bool = False,
    ) -> None:
        if max_episode_steps is None and task in TASKS:
            max_episode_steps = ROBOSUITE_LIMITS[task]
        validate_options(
            family="robosuite",
            task=task,
            tasks=TASKS,
            cameras=cameras,
            image_size=image_size,
            max_episode_steps=max_episode_steps,
            terminate_on_success=terminate_on_success,
            render_mode=render_mode,
            render_modes=self.metadata["render_modes"],
        ).store_on(self)
        spec = TASKS[task]
        cameras = self.cameras
        self.instruction = spec.instruction
        self.control_freq = CONTROL_FREQ
        self.metadata = {"render_modes": ["rgb_array"], "render_fps": CONTROL_FREQ}
        self._spec = spec
        self.object_obs = bool(object_obs)
        self.joint_obs = bool(joint_obs)

        robosuite = _import_robosuite()
        needs_renderer = bool(cameras) or render_mode == "rgb_array"
        # Placement happens inside robosuite's constructor too: keep it off the global RNG.
        self._legacy_rng = np.random.RandomState(0)
        with self._robosuite_rng():
            self._env = robosuite.make(
                spec.env_name,
                robots="Panda",
                controller_configs=robosuite.load_controller_config(default_controller="OSC_POSE"),
                has_renderer=False,
                has_offscreen_renderer=needs_renderer,
                use_camera_obs=False,
                use_object_obs=True,
                reward_shaping=bool(reward_shaping),
                control_freq=int(CONTROL_FREQ),
                horizon=self.max_episode_steps,
                # Truncation is ours; robosuite would otherwise raise after its horizon.
                ignore_done=True,
                # A hard reset rebuilds the model and the GL context on every reset: slow and
                # leaky. The soft reset re-randomises placements just the same.
                hard_reset=False,
                **spec.kwargs,
            )
        # robosuite leaves the new context current; see own_gl_context for why not.
        release_new_context(self._env)
        available = tuple(self._env.sim.model.camera_names)
        unknown = [c for c in cameras if c not in available]
        if unknown:
            close_robosuite(self._env)
            raise ValueError(
                f"unknown camera(s) {unknown} for task {task!r}; available: {available}"
            )
        robot = self._env.robots[0]
        self._eef_site_id = robot.eef_site_id
        self._joint_qpos = np.asarray(robot._ref_joint_pos_indexes, dtype=np.int64)
        self._joint_qvel = np.asarray(robot._ref_joint_vel_indexes, dtype=np.int64)

        h, w = self.image_hw
        spaces: dict[str, gym.spaces.Space] = {
            f"{cam}_image": gym.spaces.Box(0, 255, (h, w, 3), np.uint8) for cam in cameras
        }
        spaces["state"] = gym.spaces.Box(-np.inf, np.inf, (STATE_DIM,), np.float32)
        if self.object_obs:
            width = object_state(spec, self._env.observation_spec()).size
            spaces["object_state"] = gym.spaces.Box(-np.inf, np.inf, (width,), np.float32)
        if self.joint_obs:
            spaces["joints"] = gym.spaces.Box(-np.inf, np.inf, (2 * ARM_JOINTS,), np.float32)
        self.observation_space = gym.spaces.Dict(spaces)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (ACTION_DIM,), np.float32)

        self._raw: dict[str, np.ndarray] | None = None
        self._obs: dict[str, np.ndarray] | None = None
        self._steps = 0
        self._episode_over = False
        self._closed = False

    @contextlib.contextmanager
    def _robosuite_rng(self) -> Iterator[None]:
        """Run robosuite with numpy's global RNG replaced by this env's own stream."""
        saved = np.random.get_state()
        np.random.set_state(self._legacy_rng.get_state())
        try:
            yield
        finally:
            self._legacy_rng.set_state(np.random.get_state())
            np.random.set_state(saved)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Start an episode; the same ``seed`` gives the same placement, state and images.

        Args:
            seed: seeds the episode's placement.
            options: ``None`` or ``{}``; the env takes no reset options.

        Returns:
            ``(observation, info)`` with ``info = {"success": bool, "instruction": str}``.

        Raises:
            ValueError / TypeError: reset options (the env is left as it was).
            ResetNeeded: the env is closed.
        """
        self._require_open()
        # Checked before the seed is applied, so a refused call changes nothing.
        check_reset_options(options, "robosuite")
        super().reset(seed=seed)
        # One draw from the Gymnasium generator seeds robosuite's stream, so unseeded resets
        # after a seeded one continue a reproducible sequence.
        self._legacy_rng = np.random.RandomState(int(self.np_random.integers(0, 2**32)))
        with self._robosuite_rng():
            self._raw = self._env.reset()
        self._steps = 0
        self._episode_over = False
        self._obs = self._make_obs()
        return self._copy_obs(), self._info()

    def step(
        self, action: np.ndarray
    ) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        """Apply one 7-D action for one control step (1/20 s, 25 physics sub-steps).

        Raises:
            ResetNeeded: before ``reset``, after the episode ended, or after ``close``.
            InvalidAction: wrong shape or dtype, NaN/inf, or outside [-1, 1]; the simulator
                is not advanced.
        """
        self._require_open()
        if self._raw is None:
            raise ResetNeeded("call reset() before step()")
        if self._episode_over:
            raise ResetNeeded("the episode has ended (terminated or truncated); call reset()")
        act = check_action(action, self.action_space)
        with self._robosuite_rng():
            self._raw, reward, _, _ = self._env.step(act.astype(np.float64))
        self._steps += 1
        self._obs = self._make_obs()
        info = self._info()
        terminated = self.terminate_on_success and info["success"]
        limit = self.max_episode_steps
        truncated = limit is not None and self._steps >= limit and not terminated
        self._episode_over = terminated or truncated
        return self._copy_obs(), float(reward), bool(terminated), bool(truncated), info

    def render(self) -> np.ndarray | None:
        """Upright frame ``[H, W, 3]`` uint8 of the first camera (``agentview`` if none).

        Returns ``None`` unless ``render_mode="rgb_array"``.
        """
        self._require_open()
        if self.render_mode != "rgb_array":
            return None
        if self._obs is None:
            raise ResetNeeded("call reset() before render()")
        if self.cameras:
            return self._obs[f"{self.cameras[0]}_image"].copy()
        return self._render_camera(DEFAULT_RENDER_CAMERA)

    def close(self) -> None:
        """Free the simulator and its rendering context; safe to call more than once.

        Every later ``reset``, ``step``, ``render``, ``get_sim_state`` or ``privileged``
        raises :class:`~kairos_gym.errors.ResetNeeded`; other environments are unaffected.
        """
        if not getattr(self, "_closed", False) and getattr(self, "_env", None) is not None:
            close_robosuite(self._env)
        self._closed = True
        self._raw = None
        self._obs = None

    def __del__(self) -> None:
        # Left to robosuite, an env dropped without close() is freed in whichever GL context
        # is current at collection time, deleting that context's objects (another renderer's,
        # e.g. the mujoco.Renderer ALOHA uses): free it here, in its own context. A finalizer
        # must not raise, and at interpreter exit EGL may already be terminated.
        with contextlib.suppress(Exception):
            self.close()

    def get_sim_state(self) -> np.ndarray:
        """Flat MuJoCo state ``[1 + nq + nv]`` float64: ``[time, qpos, qvel]``.

        The robomimic/LIBERO ``states`` layout; restore with
        ``robosuite_env.sim.set_state_from_flattened(state)`` followed by ``sim.forward()``.
        """
        self._require_open()
        return np.asarray(self._env.sim.get_state().flatten(), dtype=np.float64)

    def observe_sim_state(self, state: np.ndarray) -> dict[str, np.ndarray]:
        """Put the simulator in a recorded ``state`` and return the observation there.

        Args:
            state: a flat MuJoCo state ``[1 + nq + nv]`` from :meth:`get_sim_state` or an
                episode file's ``states``.

        Returns:
            The observation in that state (a copy), as ``reset`` or ``step`` would give it.
            Observations recorded without a key (``object_state``, another camera) are
            recomputed this way from the episode's states.

        Raises:
            ValueError: a state of the wrong width or with NaN.
        """
        self._require_open()
        sim = self._env.sim
        flat = np.asarray(state, dtype=np.float64)
        width = 1 + sim.model.nq + sim.model.nv
        finite = bool(np.isfinite(flat).all())
        if flat.shape != (width,) or not finite:
            raise ValueError(
                f"a simulator state of this task is {width} finite values [time, qpos, qvel], "
                f"got shape {flat.shape}" + ("" if finite else " with NaN/inf")
            )
        sim.set_state_from_flattened(flat)
        sim.forward()
        self._raw = self._env._get_observations(force_update=True)
        self._obs = self._make_obs()
        return self._copy_obs()

    def privileged(self) -> dict[str, np.ndarray]:
        """Simulator ground truth for scripted experts (never part of the observation).

        Keys (float64 copies, world frame, metres / radians):
            ``eef_pos [3]``, ``eef_quat [4]`` (xyzw, hand body as in ``state``),
            ``eef_mat [3, 3]`` (rotation of the grip site, the frame the OSC controls),
            ``gripper_qpos [2]``; and per task
            Lift: ``cube_pos [3]``, ``cube_quat [4]``;
            Stack: ``cubeA_pos``, ``cubeA_quat`` (red, picked), ``cubeB_pos``, ``cubeB_quat``
            (green);
            PickPlaceCan: ``can_pos``, ``can_quat``, ``target_pos [3]`` (centre of the can's bin
            compartment at bin-floor height), ``target_half_size [2]`` (its x/y half extents);
            Door: ``door_pos``, ``handle_pos [3]``, ``hinge_qpos [1]``, ``handle_qpos [1]``
            (door and latch-handle joint angles), ``hinge_anchor [3]``, ``hinge_axis [3]``,
            ``latch_anchor [3]``, ``latch_axis [3]`` (world position and unit axis of the door
            hinge and of the handle's latch joint; the latch opens past about 1.3 rad).
        """
        self._require_open()
        if self._raw is None:
            raise ResetNeeded("call reset() before privileged()")
        sim = self._env.sim
        out = panda_ground_truth(sim, self._eef_site_id, self._raw)
        for name, key in self._spec.objects.items():
            out[name] = np.array(self._raw[key], dtype=np.float64)
        if self.task == "PickPlaceCan":
            env = self._env
            target = np.array(env.target_bin_placements[env.object_id], dtype=np.float64)
            target[2] = env.bin2_pos[2]
            out["target_pos"] = target
            out["target_half_size"] = np.array(env.bin_size[:2], dtype=np.float64) / 4.0
        if self.task == "Door":
            model, data = sim.model, sim.data
            hinge_joint, latch_joint = self._env.door.joints[:2]
            for name, joint in (("hinge", hinge_joint), ("latch", latch_joint)):
                jid = model.joint_name2id(joint)
                out[f"{name}_anchor"] = np.array(data.xanchor[jid], dtype=np.float64)
                out[f"{name}_axis"] = np.array(data.xaxis[jid], dtype=np.float64)
        return out

    @property
    def robosuite_env(self) -> Any:
        """The wrapped robosuite environment (for inspection; stepping it bypasses the checks).

        Rendering through it directly draws into whichever GL context is current; use
        :meth:`render` or the observation's images instead.
        """
        self._require_open()
        return self._env

    def _require_open(self) -> None:
        if self._closed:
            raise ResetNeeded(
                f"the Robosuite-{self.task} environment is closed; reset() cannot reopen it, "
                "make a new environment"
            )

    def _render_camera(self, camera: str) -> np.ndarray:
        h, w = self.image_hw
        # Creating or freeing another env changes the current GL context: bind ours.
        with own_gl_context(self._env):
            frame = self._env.sim.render(width=w, height=h, camera_name=camera)
        # OpenGL's origin is bottom-left: flip rows to get an upright image.
        return np.ascontiguousarray(frame[::-1], dtype=np.uint8)

    def _make_obs(self) -> dict[str, np.ndarray]:
        obs = {f"{cam}_image": self._render_camera(cam) for cam in self.cameras}
        obs["state"] = panda_state(self._raw)
        if self.object_obs:
            obs["object_state"] = object_state(self._spec, self._raw)
        if self.joint_obs:
            data = self._env.sim.data
            obs["joints"] = np.concatenate(
                [data.qpos[self._joint_qpos], data.qvel[self._joint_qvel]]).astype(np.float32)
        return obs

    def _copy_obs(self) -> dict[str, np.ndarray]:
        return {k: v.copy() for k, v in self._obs.items()}

    def _info(self) -> dict[str, Any]:
        return {"success": bool(self._env._check_success()), "instruction": self.instruction}
