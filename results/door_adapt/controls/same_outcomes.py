"""How many imagined episode outcomes of a model differ from the shipped Door export's, on the
same real resets (first BC family, seeds 100-139): the run-to-run spread of a recipe.

    python results/door_adapt/controls/same_outcomes.py windows96_seed1 windows96_seed2 ...

Each name is a folder under results/door_adapt/ holding family1/agreement_seed*.json.
"""
import glob
import json
import os
import sys

ROOT = "results/door_adapt"
SHIPPED = f"{ROOT}/windows96_fam1"


def main() -> None:
    for name in sys.argv[1:]:
        episodes = differ = 0
        for path in sorted(glob.glob(f"{ROOT}/{name}/family1/agreement_seed*.json")):
            with open(f"{SHIPPED}/{os.path.basename(path)}") as f:
                shipped = json.load(f)["episodes_detail"]
            with open(path) as f:
                mine = json.load(f)["episodes_detail"]
            for a, b in zip(shipped, mine, strict=True):
                assert a["name"] == b["name"]
                episodes += len(a["imagined"])
                differ += sum(x != y for x, y in zip(a["imagined"], b["imagined"], strict=True))
        print(f"{name}: {episodes} episodes, {differ} imagined outcomes differ from the shipped export's")


if __name__ == "__main__":
    main()
