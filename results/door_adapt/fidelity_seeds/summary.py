"""Step-16 and mean PSNR of the previous and the shipped Door model over five sampling seeds.

    python results/door_adapt/fidelity_seeds/summary.py > results/door_adapt/fidelity_seeds/summary.txt

Seeds 1-4 were measured with the card's fidelity command plus ``--seed S``, writing
``{previous,shipped}_seedS.json`` here; seed 0 is the recorded run of each model.
"""
import json

import numpy as np

RECORDED = {"previous": "results/door_rollouts/fidelity.json",
            "shipped": "results/door_adapt/fidelity_door_adapt_rollouts_det_model.json"}


def psnr(model: str, seed: int) -> np.ndarray:
    path = RECORDED[model] if seed == 0 else f"results/door_adapt/fidelity_seeds/{model}_seed{seed}.json"
    with open(path) as f:
        return np.array(json.load(f)["curves"]["psnr"])


print("Held-out PSNR (dB) of the Door models, 12 expert+noise=0.1 episodes, sampling seeds 0-4")
print("(seed 0: the recorded fidelity files; seeds 1-4: results/door_adapt/fidelity_seeds/)")
print("seed  previous@16  shipped@16  loss@16  previous 1..64  shipped 1..64")
at16, overall = [], []
for seed in range(5):
    p, q = psnr("previous", seed), psnr("shipped", seed)
    at16.append(p[15] - q[15])
    overall.append(p.mean() - q.mean())
    print(f"{seed:4d}  {p[15]:11.2f}  {q[15]:10.2f}  {p[15] - q[15]:7.2f}  {p.mean():14.2f}  {q.mean():13.2f}")
print(f"mean loss at step 16 {np.mean(at16):.3f} dB (range {min(at16):.2f} to {max(at16):.2f}); "
      f"mean loss over steps 1..64 {np.mean(overall):.3f} dB")
