"""Bimanual ALOHA environments (gym-aloha's TransferCube and Insertion) with kairos-gym spaces.

The physics and the task definitions (action mapping, reward stages) come from gym-aloha
0.1.5; this module drives them directly instead of through dm_control's ``control.Environment``,
which renders three 480x640 cameras on every step whatever the caller needs. Here only the
requested cameras are rendered, near the requested resolution, with one ``mujoco.Renderer``:
each image is drawn at twice its size without shadows or multisampling and averaged 2x2
(anti-aliased like 4x multisampling). On CPU Mesa that costs ~8 ms per 64x64 image, against
~50 ms with the model's own shadow map and multisampling, with nearly the same picture.

The action is RoboTwin 2.0's 14-D joint-position contract::

    [left waist, shoulder, elbow, forearm_roll, wrist_angle, wrist_rotate, left gripper,
     right waist, shoulder, elbow, forearm_roll, wrist_angle, wrist_rotate, right gripper]

Arm entries are absolute joint targets in radians, bounded by the position actuators'
control ranges (waist, forearm_roll, wrist_rotate: [-3.14158, 3.14158]; shoulder:
[-1.85005, 1.25664]; elbow: [-1.76278, 1.6057]; wrist_angle: [-1.8675, 2.23402]). Gripper
entries are normalised as gym-aloha does: 0 = closed, 1 = open, mapped linearly to the finger
position 0.01844 .. 0.058 m (the finger actuator then clips to its 0.021 .. 0.057 m range).
``state`` is the same 14 numbers measured: arm joint angles and normalised finger positions.

Physics divergence: gym-aloha's arms are undamped position servos (no joint damping or
armature), so targets that jump across the whole range every step (a uniform random policy)
pump energy into the arms until MuJoCo's accelerations blow up, typically within 10-30 steps
(halving the timestep, the implicit or RK4 integrators, and ramping targets across the
substeps only postpone it). The physics is kept as gym-aloha defines it; instead, when a
step diverges the episode ends cleanly: ``step`` returns the last valid observation, reward
0.0, ``terminated=False``, ``truncated=True`` and ``info["physics_error"]`` (dm_control's
message), and further ``step`` calls raise ``ResetNeeded`` until ``reset``. MuJoCo itself
resets the simulator data when it detects the divergence, so nothing is restored here and
the simulator state after such a step is meaningless.

Example::

    import gymnasium as gym, kairos_gym
    env = gym.make("kairos_gym/Aloha-TransferCube-v0", cameras=("top",), image_size=64)
    obs, info = env.reset(seed=0)
    # obs["top_image"]: uint8 [64, 64, 3], obs["state"]: float32 [14]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium import spaces

import kairos_gym.envs.rendering  # noqa: F401  (EGL is the default before mujoco is imported)
from kairos_gym.envs.common import (
    EpisodeLimit,
    check_action,
    check_reset_options,
    validate_options,
)
from kairos_gym.envs.registration import ALOHA_LIMITS
from kairos_gym.errors import ResetNeeded, missing_dependency

try:
    import mujoco
    from dm_control import mujoco as dm_mujoco
    from dm_control.rl.control import PhysicsError
    from gym_aloha.constants import ASSETS_DIR, DT, START_ARM_POSE
    from gym_aloha.tasks.sim import InsertionTask, TransferCubeTask
except ImportError as exc:  # pragma: no cover - exercised only without the [sim] extra
    raise missing_dependency(exc.name or "gym_aloha", "sim") from exc

# Grip point in the gripper_link frame: between the fingertips (the finger pads span
# x = 0.064 .. 0.154 m, narrowing towards the tip), where a grasped object sits.
GRIP_POINT_OFFSET = np.array([0.125, 0.0, 0.0])

ARM_JOINTS = ("waist", "shoulder", "elbow", "forearm_roll", "wrist_angle", "wrist_rotate")
# The cameras of gym-aloha's MJCF (scene.xml and the two arm files).
MJCF_CAMERAS = (
    "top", "angle", "front_close", "left_pillar", "right_pillar", "left_wrist", "right_wrist",
)
# RoboTwin 2.0's camera names -> the MJCF camera that plays each part. RoboTwin's
# aloha-agilex head camera looks down on the table from above the arms: ``top`` (0.8 m above
# the table's centre, like real ALOHA's high camera). Its wrist cameras ride on the grippers:
# ``left_wrist`` / ``right_wrist``, mounted on each gripper link and aimed between the
# fingers (narrower field of view than RoboTwin's: 20 degrees vertical).
ROBOTWIN_CAMERAS = {
    "head_camera": "top",
    "left_camera": "left_wrist",
    "right_camera": "right_wrist",
}
CAMERAS = MJCF_CAMERAS + tuple(ROBOTWIN_CAMERAS)


@dataclass(frozen=True)
class _TaskSpec:
    xml: str
    task_cls: type
    instruction: str
    # object body name -> (low, high) of its uniform xyz placement (gym-aloha's ranges).
    placements: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]]


TASKS: dict[str, _TaskSpec] = {
    "TransferCube": _TaskSpec(
        xml="bimanual_viperx_transfer_cube.xml",
        task_cls=TransferCubeTask,
        instruction="transfer the red cube from the right arm to the left arm",
        placements={"box": ((0.0, 0.4, 0.05), (0.2, 0.6, 0.05))},
    ),
    "Insertion": _TaskSpec(
        xml="bimanual_viperx_insertion.xml",
        task_cls=InsertionTask,
        instruction="insert the peg into the socket",
        placements={
            "peg": ((0.1, 0.4, 0.05), (0.2, 0.6, 0.05)),
            "socket": ((-0.2, 0.4, 0.05), (-0.1, 0.6, 0.05)),
        },
    ),
}

# How error messages name the action space (the Box repr spans several lines).
_ACTION_DESC = "the 14-D joint-position action space (float32 Box, see AlohaEnv.action_space)"

# Images are rendered this many times larger per side, then box-filtered down.
_SUPERSAMPLE = 2

# MuJoCo state components that make a restored state continue bit-for-bit.
_STATE_SPEC = mujoco.mjtState.mjSTATE_INTEGRATION


class AlohaEnv(EpisodeLimit, gym.Env):
    """Bimanual ViperX (ALOHA) TransferCube / Insertion with 14-D joint-position actions.

    Observation: ``{"<camera>_image": uint8 [H, W, 3] (upright), "state": float32 [14]}``.
    Action: float32 ``[14]`` joint targets (see the module docstring for layout and bounds).
    Reward: gym-aloha's staged reward in {0, 1, 2, 3, 4}; ``info["success"]`` is True when it
    reaches 4 (cube held by the left gripper in the air / peg touching the socket's pin).
    Control at 50 Hz (10 physics steps of 2 ms per action). A step whose physics diverges
    ends the episode with ``truncated=True`` and ``info["physics_error"]`` (see the module
    docstring); smooth policies such as the scripted experts never trigger it.

    Args:
        task: ``"TransferCube"`` or ``"Insertion"``.
        cameras: a tuple of camera names to observe (``()`` gives a state-only
            observation; a single string is refused, as by every kairos-gym env); any of
            ``top, angle, front_close, left_pillar, right_pillar, left_wrist, right_wrist``,
            or RoboTwin 2.0's names ``head_camera, left_camera, right_camera``, which render
            ``top, left_wrist, right_wrist`` (:data:`ROBOTWIN_CAMERAS`) under their own keys
            (``head_camera_image``, ...).
        image_size: side of the square images, or ``(height, width)``.
        max_episode_steps: the episode is truncated after this many steps (default 400;
            see :class:`~kairos_gym.envs.common.EpisodeLimit` for ``gym.make``).
        terminate_on_success: end the episode (``terminated=True``) on the first success.
        render_mode: ``None`` or ``"rgb_array"`` (``render()`` returns the first observed
            camera, or ``top`` when none is observed, at ``image_size``).
        object_obs: add the privileged ``object_state`` observation, float32: the task's
            object positions in the world frame (TransferCube: the cube [3]; Insertion: the
            peg, then the socket [6]). Off by default: policies should not see it. World
            models trained on data with it carry the objects' state beside the joints', so
            success (the cube in the left gripper, in the air) can be read from that state.

    Raises:
        ValueError: unknown task, camera or render mode; non-positive sizes or step limit.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"], "render_fps": 1.0 / DT}
    control_freq: float = 1.0 / DT

    def __init__(
        self,
        task: str,
        *,
        cameras: tuple[str, ...] = ("top",),
        image_size: int | tuple[int, int] = 64,
        max_episode_steps: int | None = None,
        terminate_on_success: bool = False,
        render_mode: str | None = None,
        object_obs: bool = False,
    ) -> None:
        if max_episode_steps is None and task in ALOHA_LIMITS:
            max_episode_steps = ALOHA_LIMITS[task]
        validate_options(
            family="ALOHA",
            task=task,
            tasks=TASKS,
            cameras=cameras,
            image_size=image_size,
            max_episode_steps=max_episode_steps,
            terminate_on_success=terminate_on_success,
            render_mode=render_mode,
            render_modes=self.metadata["render_modes"],
            known_cameras=CAMERAS,
        ).store_on(self)
        self._spec = TASKS[task]
        self.instruction = self._spec.instruction
        self.object_obs = bool(object_obs)

        self.physics = dm_mujoco.Physics.from_xml_path(str(ASSETS_DIR / self._spec.xml))
        self._task = self._spec.task_cls()
        model = self.physics.model.ptr
        height, width = self.image_hw
        # The offscreen buffer must hold the supersampled image; our own 2x2 averaging
        # replaces the (much slower on CPU) multisampled buffer.
        model.vis.global_.offwidth = max(int(model.vis.global_.offwidth), _SUPERSAMPLE * width)
        model.vis.global_.offheight = max(int(model.vis.global_.offheight), _SUPERSAMPLE * height)
        model.vis.quality.offsamples = 0
        self._n_substeps = round(DT / model.opt.timestep)
        self._renderer: Any = None
        self._free_qpos = {
            name: int(model.jnt_qposadr[model.body(name).jntadr[0]])
            for name in self._spec.placements
        }
        self._gripper_body = {
            side: model.body(f"vx300s_{side}/gripper_link").id for side in ("left", "right")
        }

        low, high = [], []
        for side in ("left", "right"):
            for joint in ARM_JOINTS:
                lo, hi = model.jnt_range[model.joint(f"vx300s_{side}/{joint}").id]
                low.append(lo)
                high.append(hi)
            low.append(0.0)
            high.append(1.0)
        # Joint ranges equal the actuators' control ranges in gym-aloha's XML.
        self.action_space = spaces.Box(
            low=np.array(low, dtype=np.float32),
            high=np.array(high, dtype=np.float32),
            dtype=np.float32,
        )
        obs_spaces: dict[str, spaces.Space] = {
            f"{cam}_image": spaces.Box(0, 255, shape=(height, width, 3), dtype=np.uint8)
            for cam in cameras
        }
        # Joint limits are soft in MuJoCo, so measured positions can leave the nominal range.
        obs_spaces["state"] = spaces.Box(-np.inf, np.inf, shape=(14,), dtype=np.float32)
        if self.object_obs:
            width = 3 * len(self._spec.placements)
            obs_spaces["object_state"] = spaces.Box(-np.inf, np.inf, (width,), np.float32)
        self.observation_space = spaces.Dict(obs_spaces)

        self._steps = 0
        self._needs_reset = True
        self._episode_over = False
        self._closed = False
        self._obs: dict[str, np.ndarray] | None = None

    @property
    def model(self) -> mujoco.MjModel:
        """The raw ``mujoco.MjModel`` (read it; do not edit it)."""
        return self.physics.model.ptr

    @property
    def data(self) -> mujoco.MjData:
        """The live ``mujoco.MjData`` (read it; copy before running kinematics on it)."""
        return self.physics.data.ptr

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Place the object(s) uniformly at random (seeded) and move both arms to the start pose.

        Placements (gym-aloha's ranges, metres): TransferCube cube x in [0, 0.2], y in [0.4, 0.6];
        Insertion peg x in [0.1, 0.2], socket x in [-0.2, -0.1], both y in [0.4, 0.6].

        Raises:
            ValueError / TypeError: reset options other than ``None`` or ``{}`` (the env takes
                none); the env is left as it was.
            ResetNeeded: the env is closed.
        """
        self._require_open()
        check_reset_options(options, "ALOHA")
        super().reset(seed=seed)
        poses = {}
        for name, (lo, hi) in self._spec.placements.items():
            poses[name] = self.np_random.uniform(lo, hi)
        with self.physics.reset_context():
            data = self.physics.data
            data.qpos[:16] = START_ARM_POSE
            data.ctrl[:] = START_ARM_POSE
            for name, pos in poses.items():
                adr = self._free_qpos[name]
                data.qpos[adr : adr + 3] = pos
                data.qpos[adr + 3 : adr + 7] = (1.0, 0.0, 0.0, 0.0)
        self._steps = 0
        self._needs_reset = False
        self._episode_over = False
        self._obs = self._observation()
        return self._copy_obs(), self._info(success=False)

    def step(
        self, action: np.ndarray
    ) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        """Apply one 14-D joint-position action for 20 ms of simulated time.

        If the physics diverges during the step, the episode ends: the last valid observation
        is returned with reward 0.0, ``truncated=True`` and ``info["physics_error"]``.

        Raises:
            ResetNeeded: before ``reset``, after the episode ended, or after ``close``.
            InvalidAction: wrong shape or dtype, NaN/inf, or outside the bounds (beyond a
                1e-5 tolerance); the simulator is not advanced.
        """
        self._require_open()
        if self._needs_reset:
            raise ResetNeeded("call reset() before step()")
        if self._episode_over:
            raise ResetNeeded("the episode has ended (terminated or truncated); call reset()")
        act = check_action(action, self.action_space, description=_ACTION_DESC)
        self._task.before_step(act.astype(np.float64), self.physics)
        try:
            self.physics.step(self._n_substeps)
        except PhysicsError as exc:
            # MuJoCo has already reset the data; report the last valid observation.
            self._steps += 1
            self._episode_over = True
            info = self._info(success=False)
            info["physics_error"] = str(exc)
            return self._copy_obs(), 0.0, False, True, info
        self._steps += 1
        stage = self._task.get_reward(self.physics)
        success = stage >= self._task.max_reward
        terminated = bool(success and self.terminate_on_success)
        limit = self.max_episode_steps
        truncated = limit is not None and self._steps >= limit and not terminated
        self._episode_over = terminated or truncated
        self._obs = self._observation()
        return self._copy_obs(), float(stage), terminated, truncated, self._info(success=success)

    def render(self) -> np.ndarray | None:
        """Return ``uint8 [H, W, 3]`` of the first observed camera (``top`` if none), or None."""
        if self.render_mode is None:
            return None
        self._require_open()
        if self._obs is None:
            raise ResetNeeded("call reset() before render()")
        if self.cameras:
            return self._obs[f"{self.cameras[0]}_image"].copy()
        return self._render_camera("top")

    def close(self) -> None:
        """Release the renderer; safe to call more than once."""
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
        self._closed = True
        self._obs = None

    def get_sim_state(self) -> np.ndarray:
        """Flat float64 MuJoCo state (``mjSTATE_INTEGRATION``: time, qpos, qvel, act, ctrl, ...)."""
        model, data = self.model, self.data
        state = np.empty(mujoco.mj_stateSize(model, _STATE_SPEC), dtype=np.float64)
        mujoco.mj_getState(model, data, state, _STATE_SPEC)
        return state

    def set_sim_state(self, state: np.ndarray) -> None:
        """Restore a state from :meth:`get_sim_state`; the episode step counter is kept."""
        state = np.asarray(state, dtype=np.float64)
        size = mujoco.mj_stateSize(self.model, _STATE_SPEC)
        if state.shape != (size,):
            raise ValueError(f"sim state must have shape ({size},), got {state.shape}")
        mujoco.mj_setState(self.model, self.data, state, _STATE_SPEC)
        mujoco.mj_forward(self.model, self.data)

    def observe_sim_state(self, state: np.ndarray) -> dict[str, np.ndarray]:
        """Put the simulator in a recorded ``state`` (:meth:`get_sim_state`, an episode file's
        ``states``) and return the observation there, as ``reset`` or ``step`` would give it.
        Keys a file was recorded without (``object_state``, another camera) are recomputed
        this way from its states. Raises ``ValueError`` for a state of the wrong width or with
        NaN."""
        self._require_open()
        flat = np.asarray(state, dtype=np.float64)
        if flat.ndim == 1 and not np.isfinite(flat).all():
            raise ValueError("a simulator state must be finite, got NaN/inf")
        self.set_sim_state(flat)
        self._obs = self._observation()
        return self._copy_obs()

    def privileged(self) -> dict[str, np.ndarray]:
        """Simulator ground truth for scripted experts (all float64, world frame, quats wxyz).

        Keys: ``qpos`` [14] (as ``state``); per side in (left, right): ``<side>_gripper_pos`` [3],
        ``<side>_gripper_quat`` [4], ``<side>_gripper_mat`` [3, 3] (gripper_link frame: x is
        the approach axis, y the finger sliding axis), ``<side>_grip_point`` [3]
        (:data:`GRIP_POINT_OFFSET` in that frame); per object (``box``; or ``peg`` and
        ``socket``): ``<obj>_pos`` [3], ``<obj>_quat`` [4]; ``stage``: the current reward stage.
        """
        self._require_open()
        if self._obs is None:
            raise ResetNeeded("call reset() before privileged()")
        data = self.data
        out: dict[str, np.ndarray] = {"qpos": self._task.get_qpos(self.physics)}
        for side, body in self._gripper_body.items():
            mat = data.xmat[body].reshape(3, 3).copy()
            out[f"{side}_gripper_pos"] = data.xpos[body].copy()
            out[f"{side}_gripper_quat"] = data.xquat[body].copy()
            out[f"{side}_gripper_mat"] = mat
            out[f"{side}_grip_point"] = data.xpos[body] + mat @ GRIP_POINT_OFFSET
        for name, adr in self._free_qpos.items():
            out[f"{name}_pos"] = data.qpos[adr : adr + 3].copy()
            out[f"{name}_quat"] = data.qpos[adr + 3 : adr + 7].copy()
        out["stage"] = np.array(float(self._task.get_reward(self.physics)))
        return out

    def camera_parameters(self, camera: str) -> dict[str, np.ndarray]:
        """Pinhole parameters of ``camera`` at the current state, at this env's image size.

        ``camera`` is any name ``cameras`` accepts (observed or not). See
        :func:`camera_matrices` for the three matrices.

        Raises:
            ValueError: an unknown camera name.
            ResetNeeded: before ``reset`` or after ``close``.
        """
        self._require_open()
        if self._obs is None:
            raise ResetNeeded("call reset() before camera_parameters()")
        return camera_matrices(self.model, self.data, camera, self.image_hw)

    def _require_open(self) -> None:
        if self._closed:
            raise ResetNeeded("the environment is closed")

    def _copy_obs(self) -> dict[str, np.ndarray]:
        # Callers may write into what they get; the cached observation must stay intact.
        return {key: value.copy() for key, value in (self._obs or {}).items()}

    def _observation(self) -> dict[str, np.ndarray]:
        obs = {f"{cam}_image": self._render_camera(cam) for cam in self.cameras}
        obs["state"] = self._task.get_qpos(self.physics).astype(np.float32)
        if self.object_obs:
            qpos = self.data.qpos
            obs["object_state"] = np.concatenate(
                [qpos[adr : adr + 3] for adr in self._free_qpos.values()]
            ).astype(np.float32)
        return obs

    def _render_camera(self, camera: str) -> np.ndarray:
        height, width = self.image_hw
        k = _SUPERSAMPLE
        if self._renderer is None:
            self._renderer = mujoco.Renderer(self.model, height=k * height, width=k * width)
        self._renderer.update_scene(self.data, camera=ROBOTWIN_CAMERAS.get(camera, camera))
        # The shadow pass alone costs more than the whole image on CPU Mesa.
        self._renderer.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = False
        big = self._renderer.render().astype(np.uint16)
        small = big.reshape(height, k, width, k, 3).sum(axis=(1, 3))
        return ((small + (k * k) // 2) // (k * k)).astype(np.uint8)

    def _info(self, *, success: bool) -> dict[str, Any]:
        return {"success": bool(success), "instruction": self.instruction}


def camera_matrices(
    model: mujoco.MjModel, data: mujoco.MjData, camera: str, image_hw: tuple[int, int]
) -> dict[str, np.ndarray]:
    """Intrinsics and extrinsics of a MuJoCo camera, in the layout RoboTwin 2.0 reports.

    Reads the camera pose from ``data`` (``cam_xpos`` / ``cam_xmat``, as of the last
    kinematics pass) and its vertical field of view from ``model``; pixels are square, as
    MuJoCo renders them.

    Args:
        model, data: the MuJoCo model and a data whose kinematics are current.
        camera: an MJCF camera name or one of :data:`ROBOTWIN_CAMERAS`' keys.
        image_hw: ``(height, width)`` of the rendered image.

    Returns:
        ``intrinsic_cv`` float64 ``[3, 3]`` (OpenCV: pixel centres at integer coordinates,
        ``u`` right, ``v`` down), ``extrinsic_cv`` float64 ``[3, 4]`` (world -> OpenCV camera
        frame: ``x`` right, ``y`` down, ``z`` forward) and ``cam2world_gl`` float64 ``[4, 4]``
        (the camera's pose in the world, OpenGL axes: ``x`` right, ``y`` up, looking along
        ``-z``, which is MuJoCo's camera frame).

    Raises:
        ValueError: an unknown camera name.
    """
    name = ROBOTWIN_CAMERAS.get(camera, camera)
    cam_id = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, name)
    if cam_id < 0:
        raise ValueError(f"unknown ALOHA camera {camera!r}; choose one of {list(CAMERAS)}")
    height, width = image_hw
    focal = 0.5 * height / np.tan(0.5 * np.deg2rad(float(model.cam_fovy[cam_id])))
    intrinsic = np.array(
        [[focal, 0.0, 0.5 * (width - 1)], [0.0, focal, 0.5 * (height - 1)], [0.0, 0.0, 1.0]]
    )
    cam2world = np.eye(4)
    cam2world[:3, :3] = np.asarray(data.cam_xmat[cam_id]).reshape(3, 3)
    cam2world[:3, 3] = data.cam_xpos[cam_id]
    # OpenCV's camera frame is OpenGL's turned half a turn about x (y and z flipped).
    cam2world_cv = cam2world @ np.diag([1.0, -1.0, -1.0, 1.0])
    rot, pos = cam2world_cv[:3, :3], cam2world_cv[:3, 3]
    extrinsic = np.concatenate([rot.T, (-rot.T @ pos)[:, None]], axis=1)
    return {"intrinsic_cv": intrinsic, "extrinsic_cv": extrinsic, "cam2world_gl": cam2world}
