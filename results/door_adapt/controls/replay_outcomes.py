"""Whether Door dynamics reach the real outcome of recorded rollouts, the frames left out.

Each episode's first recorded state is carried by the dynamics under the episode's recorded
actions (as the imagined env carries it), and the state outcome head reads the carried states;
an episode is imagined a success where the head's probability passes 0.5 at any step. Counted
against the recorded success, per file: if every version reaches the real outcomes here, the
differences between them closed loop come from what the policies are shown.

    python results/door_adapt/controls/replay_outcomes.py FILE[,FILE...] CHECKPOINT_DIR...
"""
import sys
from pathlib import Path

import h5py
import torch

sys.path.insert(0, str(Path(__file__).parents[1] / "dynamics_inputs"))
from fit import episodes
from measure import checkpoint_order

from kairos_gym.imagined.checkpoint import load_env_checkpoint


def main() -> None:
    torch.set_num_threads(1)
    files = sys.argv[1].split(",")
    for name in sys.argv[2:]:
        checkpoint = load_env_checkpoint(name)
        dit = checkpoint.model.dit
        order = checkpoint_order(checkpoint.state_keys)
        cells = []
        with torch.no_grad():
            for path in files:
                with h5py.File(path) as f:
                    real = [bool(f["data"][n]["success"][:].any()) for n in f["data"]]
                counts = {True: [0, 0], False: [0, 0]}
                for k, (states, actions) in enumerate(episodes(path, False)):
                    carried = dit.proprio_dynamics.unroll(
                        dit.normalize_state(torch.tensor(states[:, order])[None]),
                        torch.tensor(actions)[None], start=1)
                    success = torch.sigmoid(dit.proprio_dynamics.outcomes(carried)["success"])
                    counts[real[k]][0] += bool((success > 0.5).any())
                    counts[real[k]][1] += 1
                cells.append(f"{Path(path).stem}: real successes imagined {counts[True][0]}/{counts[True][1]}, "
                             f"real failures imagined {counts[False][0]}/{counts[False][1]}")
        print(f"{Path(name).parent.name}: " + "; ".join(cells), flush=True)


if __name__ == "__main__":
    main()
