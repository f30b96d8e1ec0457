"""Would a stricter imagined success rule (a threshold held for some steps) fix the Door
closed loop's optimism? Rescores the traced closed-loop runs of the shipped model, nothing run.

    python results/door_adapt/hold_rule/hold_rule.py > results/door_adapt/hold_rule/summary.txt

1. Every rule of a grid on the first family (seeds 100-139), ranked by how many of the four
   closed-loop targets it meets, then by the mean gap.
2. The best of them on the second and third families (seeds 140-159, 160-179).
3. Which imagined successes the hold removes: true or false ones, and when they came.
"""
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pooled import pooled

from kairos_gym.evaluation.agreement import agreement_stats, rescore
from kairos_gym.imagined.success import SuccessRule

FAMILIES = {"first": "results/door_adapt/long_windows_fam1",
            "second": "results/door_adapt/family2/long_windows",
            "third": "results/door_adapt/family3/long_windows"}


def stats(rows) -> dict:
    return agreement_stats(rows, draws=0)


def figures(s: dict) -> str:
    return f"{s['pearson']:.3f} / {s['spearman']:.3f} / {s['mmrv']:.3f} / {s['mean_abs_gap']:.3f}"


def met(s: dict) -> int:
    return (s["pearson"] >= 0.95) + (s["spearman"] >= 0.9) + (s["mmrv"] <= 0.05) + (s["mean_abs_gap"] <= 0.08)


rows = {name: pooled([folder]) for name, folder in FAMILIES.items()}
grid = [SuccessRule(t, h) for t in (0.5, 0.8, 0.9, 0.99) for h in (1, 3, 5, 8, 10, 12, 15, 20, 25)]
on_first = {rule: stats(rescore(rows["first"], rule)) for rule in grid}  # each rule scored once
ranked = sorted(grid, key=lambda r: (-met(on_first[r]), on_first[r]["mean_abs_gap"]))
print("Rules on the first family (Pearson / Spearman / MMRV / mean gap), best 8 of", len(grid))
for rule in ranked[:8]:
    print(f"  {rule!s:>7}: {figures(on_first[rule])}  targets met {met(on_first[rule])}")
best = ranked[0]
print(f"\nThe plain rule 0.5 and the first family's best, {best}, on every family:")
for name in FAMILIES:
    print(f"  {name:>6}: 0.5 {figures(stats(rows[name]))}   {best} {figures(stats(rescore(rows[name], best)))}")
print(f"\nImagined successes {best} removes (against 0.5):")
for name in FAMILIES:
    plain, strict = rescore(rows[name], SuccessRule()), rescore(rows[name], best)
    true = false = 0
    steps = []
    for a, b in zip(plain, strict):
        for real, x, y, first in zip(a.real, a.imagined, b.imagined, a.imagined_first_success):
            if x and not y:
                steps.append(first)
                true += bool(real)
                false += not real
    print(f"  {name:>6}: {true} true, {false} false; first success at step {np.median(steps):.0f} "
          f"(median), {np.mean(np.array(steps) > 120 - best.hold):.0%} after step {120 - best.hold}")
