"""Step-16 and mean PSNR of the Door versions over five sampling seeds, against the frames' own
version (``runs/door_rollouts/model``, "previous"): every later version keeps its frames and
changes only the carried state they are conditioned on.

    python results/door_adapt/fidelity_seeds/summary.py > results/door_adapt/fidelity_seeds/summary.txt

Seeds 1-4 (and 0 for windows96 and the later candidates) were measured with the card's fidelity command plus ``--seed S``,
writing ``{model}_seedS.json`` here; seed 0 of the others is their recorded run.
"""
import json

import numpy as np

RECORDED = {"previous": "results/door_rollouts/fidelity.json",
            "rollouts_det": "results/door_adapt/fidelity_door_adapt_rollouts_det_model.json",
            "long_windows": "results/door_adapt/fidelity_door_adapt_long_windows_model.json"}
SEEDS_AS = {"rollouts_det": "shipped"}  # its seed files were written when it was the shipped version
VERSIONS = ("rollouts_det", "long_windows", "windows96", "reset_head", "history_wide_unweighted")


def psnr(model: str, seed: int) -> np.ndarray:
    if seed == 0 and model in RECORDED:
        path = RECORDED[model]
    else:
        path = f"results/door_adapt/fidelity_seeds/{SEEDS_AS.get(model, model)}_seed{seed}.json"
    with open(path) as f:
        return np.array(json.load(f)["curves"]["psnr"])


print("Held-out PSNR (dB) of the Door versions, 12 expert+noise=0.1 episodes, sampling seeds 0-4;")
print("loss = the frames' own version (door_rollouts) minus the version, at step 16 and over steps 1..64")
print("seed  previous@16  " + "  ".join(f"{v:>12}@16 loss" for v in VERSIONS))
losses = {v: ([], []) for v in VERSIONS}
for seed in range(5):
    p = psnr("previous", seed)
    cells = []
    for v in VERSIONS:
        q = psnr(v, seed)
        losses[v][0].append(p[15] - q[15])
        losses[v][1].append(p.mean() - q.mean())
        cells.append(f"{q[15]:15.2f} {p[15] - q[15]:4.2f}")
    print(f"{seed:4d}  {p[15]:11.2f}  " + "  ".join(cells))
for v in VERSIONS:
    at16, overall = losses[v]
    print(f"{v}: mean loss at step 16 {np.mean(at16):.3f} dB (range {min(at16):.2f} to {max(at16):.2f}); "
          f"mean loss over steps 1..64 {np.mean(overall):.3f} dB")
