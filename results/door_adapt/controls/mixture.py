"""Expected closed-loop figures of an ensemble of two Door dynamics that draws one member per
episode, computed from each member's own runs on the same seeds (nothing is run): each
policy's imagined rate is the mean of the members' rates, every episode counted once per member.

    python results/door_adapt/controls/mixture.py
"""
import glob
import json

from kairos_gym.evaluation.agreement import PolicyScores, agreement_stats, combine_reports

ROOT = "results/door_adapt"
RUNS = {  # model -> family -> folders of agreement_seed*.json (40 seeds per policy each)
    "shipped": {1: [f"{ROOT}/windows96_fam1"],
                2: [f"{ROOT}/family2/windows96", f"{ROOT}/family2/windows96_more"],
                3: [f"{ROOT}/family3/windows96", f"{ROOT}/family3/windows96_more"]},
    "history_wide_windows96": {f: [f"{ROOT}/history_wide_windows96/family{f}"] if f == 1 else
                               [f"{ROOT}/history_wide_windows96/family{f}/{s}" for s in "ab"]
                               for f in (1, 2, 3)},
    "joints_windows96": {f: [f"{ROOT}/joints_windows96/family{f}"] if f == 1 else
                         [f"{ROOT}/joints_windows96/family{f}/{s}" for s in "ab"] for f in (1, 2, 3)},
}


def rows(model: str, family: int) -> dict[str, PolicyScores]:
    reports = []
    for folder in RUNS[model][family]:
        for path in sorted(glob.glob(f"{folder}/agreement_seed*.json")):
            with open(path) as f:
                reports.append(json.load(f))
    return {r.name: r for r in combine_reports(reports)}


def mixture(models: list[str], families: list[int]) -> list[PolicyScores]:
    out: dict[str, PolicyScores] = {}
    for family in families:
        members = [rows(m, family) for m in models]
        for name in members[0]:
            key = name if name in ("zero", "random") else f"{family}:{name}"
            row = out.setdefault(key, PolicyScores(key, real=[], imagined=[]))
            for member in members:
                row.real.extend(member[name].real)
                row.imagined.extend(member[name].imagined)
    return list(out.values())


def figures(models: list[str], families: list[int]) -> str:
    s = agreement_stats(mixture(models, families))
    return (f"{s['pearson']:.3f} / {s['spearman']:.3f} / {s['mmrv']:.3f} / {s['mean_abs_gap']:.3f} "
            f"({s['episode_agreement']:.3f})")


def main() -> None:
    print("Pearson / Spearman / MMRV / mean gap (episode agreement), 40 seeds per policy")
    for models in (["shipped"], ["history_wide_windows96"], ["joints_windows96"],
                   ["shipped", "history_wide_windows96"], ["shipped", "joints_windows96"]):
        print(" + ".join(models))
        for label, families in (("  first family", [1]), ("  second and third pooled", [2, 3])):
            print(f"{label}: {figures(models, families)}")


if __name__ == "__main__":
    main()
