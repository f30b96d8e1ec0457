"""Real success of recorded Lift episodes against the gripper-cube offset and yaw misalignment
at the first closing command (read from the recorded simulator states).

    python results/lift_dream/grasp_outcomes.py data/lift_dream/*.hdf5
"""
import math
import os
import sys

os.environ.setdefault("MUJOCO_GL", "egl")
import gymnasium as gym
import numpy as np

import kairos_gym  # noqa: F401  (registers the kairos_gym/... ids)
from kairos_gym.data.episodes import open_episodes
from kairos_gym.policies.robosuite_experts import R_DOWN, quat_yaw

env = gym.make("kairos_gym/Robosuite-Lift-v0", cameras=(), max_episode_steps=80, object_obs=True)
env.reset(seed=0)
base = env.unwrapped
rows = []
for path in sys.argv[1:]:
    with open_episodes(path) as reader:
        for ep in reader:
            acts = ep.actions
            closing = np.nonzero(acts[:, -1] > 0)[0]
            if len(closing) == 0:
                continue
            t = int(closing[0])
            base.observe_sim_state(ep.states[t])
            raw = base._raw
            cube_yaw = quat_yaw(raw["cube_quat"])
            eef = raw["robot0_eef_quat"]
            # eef rotation matrix
            x, y, z, w = eef
            M = np.array([[1-2*(y*y+z*z), 2*(x*y-z*w), 2*(x*z+y*w)],
                          [2*(x*y+z*w), 1-2*(x*x+z*z), 2*(y*z-x*w)],
                          [2*(x*z-y*w), 2*(y*z+x*w), 1-2*(x*x+y*y)]])
            Rz = M @ R_DOWN.T
            phi = math.atan2(Rz[1, 0], Rz[0, 0])
            rel = (cube_yaw - phi + math.pi / 4) % (math.pi / 2) - math.pi / 4
            off = np.linalg.norm(raw["robot0_eef_pos"][:2] - raw["cube_pos"][:2])
            dz = raw["robot0_eef_pos"][2] - raw["cube_pos"][2]
            rows.append((os.path.basename(path), abs(math.degrees(rel)), off * 100, dz * 100, bool(ep.attrs.get("success", False))))
r = np.array([(a, b, c, d) for _, a, b, c, d in rows], dtype=float)
print("episodes", len(r), "success", r[:, 3].mean())
for lo, hi in ((0, 10), (10, 20), (20, 30), (30, 46)):
    m = (r[:, 0] >= lo) & (r[:, 0] < hi)
    print(f"|yaw err| {lo}-{hi} deg: n={m.sum()}, success {r[m, 3].mean() if m.sum() else float('nan'):.2f}, mean offset {r[m,1].mean() if m.sum() else 0:.2f} cm")
for lo, hi in ((0, 1), (1, 2), (2, 3), (3, 5), (5, 100)):
    m = (r[:, 1] >= lo) & (r[:, 1] < hi)
    print(f"offset {lo}-{hi} cm: n={m.sum()}, success {r[m, 3].mean() if m.sum() else float('nan'):.2f}, mean |yaw| {r[m,0].mean() if m.sum() else 0:.1f}")
# joint: offset < 2cm
m = r[:, 1] < 2
for lo, hi in ((0, 15), (15, 30), (30, 46)):
    mm = m & (r[:, 0] >= lo) & (r[:, 0] < hi)
    print(f"offset<2cm & yaw {lo}-{hi}: n={mm.sum()}, success {r[mm, 3].mean() if mm.sum() else float('nan'):.2f}")
