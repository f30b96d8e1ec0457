"""The Door closed loop over every observation-only BC policy of the three families at once.

Each family (``runs/bc_door_obs``, ``bc_door_obs2``, ``bc_door_obs3``: 11 BC policies plus
``zero`` and ``random``) was run on its own seeds (100-139, 140-159, 160-179). A family's
13 rates make a small sample, in which one policy's 20 episodes move Pearson by several
hundredths; pooled, 33 BC policies and the two baselines (their episodes of every family
joined) judge a model on 35 rates. Each family's chunks are joined with
``combine_reports`` (so they must share one checkpoint), then the families are concatenated.

    python results/door_adapt/pooled.py NAME DIR1 DIR2 [DIR3]   # the agreement_seed*.json of each

prints the table and statistics and writes ``results/door_adapt/pooled/NAME.json``.
"""
import dataclasses
import glob
import json
import sys
from pathlib import Path

from kairos_gym.evaluation.agreement import PolicyScores, agreement_stats, combine_reports

# Every per-episode list of a row (all of PolicyScores but its name).
FIELDS = tuple(f.name for f in dataclasses.fields(PolicyScores) if f.name != "name")


def pooled(folders: list[str]) -> list[PolicyScores]:
    """Every family's policies, those in several families (zero, random) with their episodes joined."""
    rows: dict[str, PolicyScores] = {}
    for folder in folders:
        reports = [json.loads(Path(p).read_text())
                   for p in sorted(glob.glob(f"{folder}/agreement_seed*.json"))]
        for row in combine_reports(reports):
            into = rows.setdefault(row.name, PolicyScores(row.name, real=[], imagined=[]))
            for name in FIELDS:
                getattr(into, name).extend(getattr(row, name))
    return list(rows.values())


def main() -> None:
    name, folders = sys.argv[1], sys.argv[2:]
    rows = pooled(folders)
    stats = agreement_stats(rows)
    print(f"{'policy':<44} {'n':>3} {'real':>5} {'imag':>5}")
    for row in rows:
        s = row.summary()
        print(f"{row.name[-44:]:<44} {len(row.real):>3} {s['real']['success_rate']:>5.2f} "
              f"{s['imagined']['success_rate']:>5.2f}")
    print(f"{len(rows)} policies: Pearson {stats['pearson']:.3f}, Spearman {stats['spearman']:.3f}, "
          f"MMRV {stats['mmrv']:.3f}, mean |gap| {stats['mean_abs_gap']:.3f}, "
          f"episode agreement {stats['episode_agreement']:.3f}")
    for key in ("bootstrap", "calibrated_reference"):
        print(f"  {key}: " + ", ".join(f"{k} {v['median']:.3f} [{v['p05']:.3f}, {v['p95']:.3f}]"
                                      for k, v in stats[key].items()))
    out = Path("results/door_adapt/pooled") / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    stats = {k: v for k, v in stats.items() if not k.endswith("_rates")}
    out.write_text(json.dumps({"command": "python results/door_adapt/pooled.py " + " ".join(sys.argv[1:]),
                               "folders": folders, "stats": stats,
                               "policies": [r.summary() for r in rows]}, indent=1) + "\n")
    print("wrote", out)


if __name__ == "__main__":
    main()
