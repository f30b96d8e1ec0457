"""The carried state's drift: each Door version's dynamics replayed open loop under the recorded
actions of 16 real `n60_s2000` rollouts of the second BC family, the mean absolute error of
every state entry at steps 50 and 100 (object_state: handle x, y, z, hinge, latch; state:
end-effector x, y, z, axis-angle x, y, z, two fingers).

    python results/door_adapt/screening/drift.py > results/door_adapt/screening/drift.txt

(The same figures, per version: ``python -m kairos_gym.eval.dynamics_replay --checkpoint C
--data DATA --error-steps 50 100 --entry-errors``.)
"""
import numpy as np

from kairos_gym.evaluation.dynamics_replay import replay_dynamics, summarize
from kairos_gym.imagined.checkpoint import load_env_checkpoint

DATA = "data/door_roll_obs2/f2_n60_s2000.hdf5"
VERSIONS = ("runs/door_adapt_rollouts_det/model", "runs/door_adapt_long_windows/model",
            "runs/door_adapt_windows96/model", "runs/door_adapt_episode_windows/model")

np.set_printoptions(precision=3, suppress=True, linewidth=120)
for checkpoint in VERSIONS:
    errors = summarize([replay_dynamics(load_env_checkpoint(checkpoint), DATA)], (50, 100),
                       entries=True)["entry_error_at"]
    print(checkpoint)
    for step, values in errors.items():
        print(f"  step {step:3d}:", np.array(values))
