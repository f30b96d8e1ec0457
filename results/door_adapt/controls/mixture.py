"""Expected closed-loop figures of an ensemble of two Door dynamics that draws one member per
episode, computed from each member's own runs on the same seeds (nothing is run): each
policy's imagined rate is the mean of the members' rates, every episode counted once per member.

    python results/door_adapt/controls/mixture.py
"""
import sys
from pathlib import Path

from kairos_gym.evaluation.agreement import PolicyScores, agreement_stats

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pooled import pooled  # results/door_adapt/pooled.py: a model's rows, the families joined

ROOT = "results/door_adapt"


def candidate_runs(name: str) -> dict[int, list[str]]:
    """A candidate's folders: ``family1/`` (seeds 100-139), and ``familyN/a`` and ``/b`` for the
    unseen families (their two 20-seed sets)."""
    return {f: [f"{ROOT}/{name}/family{f}"] if f == 1 else [f"{ROOT}/{name}/family{f}/{s}" for s in "ab"]
            for f in (1, 2, 3)}


RUNS = {  # model -> family -> folders of agreement_seed*.json (40 seeds per policy each)
    "shipped": {1: [f"{ROOT}/windows96_fam1"],
                2: [f"{ROOT}/family2/windows96", f"{ROOT}/family2/windows96_more"],
                3: [f"{ROOT}/family3/windows96", f"{ROOT}/family3/windows96_more"]},
    **{name: candidate_runs(name)
       for name in ("history_wide_windows96", "joints_windows96", "history_wide_unweighted")},
}


def mixture(models: list[str], families: list[int]) -> list[PolicyScores]:
    """Each policy's rows of every member joined (the BC policies' names differ by family)."""
    members = [{r.name: r for r in pooled([d for f in families for d in RUNS[m][f]])} for m in models]
    return [PolicyScores(name, real=[x for m in members for x in m[name].real],
                         imagined=[x for m in members for x in m[name].imagined])
            for name in members[0]]


def figures(models: list[str], families: list[int]) -> str:
    s = agreement_stats(mixture(models, families))
    return (f"{s['pearson']:.3f} / {s['spearman']:.3f} / {s['mmrv']:.3f} / {s['mean_abs_gap']:.3f} "
            f"({s['episode_agreement']:.3f})")


def main() -> None:
    print("Pearson / Spearman / MMRV / mean gap (episode agreement), 40 seeds per policy")
    for models in (["shipped"], ["history_wide_windows96"], ["joints_windows96"],
                   ["shipped", "history_wide_windows96"], ["shipped", "joints_windows96"],
                   ["history_wide_unweighted"], ["shipped", "history_wide_unweighted"]):
        print(" + ".join(models))
        for label, families in (("  first family", [1]), ("  second and third pooled", [2, 3])):
            print(f"{label}: {figures(models, families)}")


if __name__ == "__main__":
    main()
