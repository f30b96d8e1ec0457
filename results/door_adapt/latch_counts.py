"""Count, in Door episode files, the episodes whose latch turned past 0.3 rad, those where it
then sprang back by more than 0.3 rad without the door opening, and those where the door
opened (hinge past 0.3 rad), from the recorded object_state (hinge angle [3], latch angle [4]).

    python results/door_adapt/latch_counts.py
"""
import glob

from kairos_gym.data.reader import open_episodes


def count(files: list[str]) -> tuple[int, int, int, int]:
    episodes = turned = sprang_back = opened = 0
    for path in files:
        with open_episodes(path) as reader:
            for episode in reader:
                state = episode.obs("object_state")
                hinge, latch = state[:, 3], state[:, 4]
                episodes += 1
                if latch.max() > 0.3:
                    turned += 1
                    if hinge.max() > 0.3:
                        opened += 1
                    elif latch[-1] < latch.max() - 0.3:
                        sprang_back += 1
    return episodes, turned, sprang_back, opened


dreams = [p for p in sorted(glob.glob("data/door_dream/*.hdf5")) if not p.endswith(("random.hdf5", "zero.hdf5"))]
for label, files in (("BC dreams, replayed", dreams),
                     ("BC rollouts (real, closed loop)", sorted(glob.glob("data/door_roll_obs/*.hdf5"))),
                     ("more BC rollouts (data/door_roll_obs2)", sorted(glob.glob("data/door_roll_obs2/*.hdf5"))),
                     ("expert, expert+noise=0.1", ["data/door/expert0.hdf5", "data/door/expert10.hdf5"]),
                     ("expert+noise=0.3 (state-only)", ["data/door_state/noise03.hdf5"])):
    n, turned, back, opened = count(files)
    print(f"{label}: {n} episodes, latch past 0.3 rad in {turned}, sprang back in {back}, opened in {opened}")
