"""Per-file sampling weights: a small dataset is not drowned by a large one."""

from __future__ import annotations

import numpy as np
import pytest

from kairos_gym.train.config import DataConfig, TrainConfig
from kairos_gym.train.trainer import Trainer, load_config
from tests.train.conftest import write_config, write_data


@pytest.mark.parametrize("weights, message", [
    ([1.0], "2 paths"),
    ([1.0, 0.0], "positive"),
    ([1.0, float("nan")], "positive"),
    ([True, 1.0], "positive"),
    ("1, 2", "list of numbers"),
])
def test_bad_weights_are_named(weights, message):
    with pytest.raises(ValueError, match=message):
        DataConfig(paths=("a.hdf5", "b.hdf5"), weights=weights)


def test_weights_are_stored_only_when_set():
    raw = {"data": {"paths": ["a.hdf5", "b.hdf5"]}, "model": {"preset": "tiny"}}
    assert "weights" not in TrainConfig.from_dict(raw).to_dict()["data"]  # earlier runs resume
    weighted = TrainConfig.from_dict({**raw, "data": {**raw["data"], "weights": [1, 3]}})
    assert weighted.data.weights == (1.0, 3.0)
    assert weighted.to_dict()["data"]["weights"] == [1.0, 3.0]


def test_each_file_gets_its_weights_share_of_the_batches(tmp_path):
    small = write_data(tmp_path / "small.hdf5", episodes=3, steps=8)
    large = write_data(tmp_path / "large.hdf5", episodes=6, steps=16)
    path = write_config(tmp_path, small, extra="weights = [3, 1]")
    text = path.read_text().replace(f'paths = ["{small}"]', f'paths = ["{small}", "{large}"]')
    path.write_text(text)
    trainer = Trainer(load_config(path), tmp_path / "run", progress=False)
    clips = trainer._dataset(4, "train")
    files = clips.clip_files()
    assert len(files) == len(clips) and set(files.tolist()) == {0, 1}
    assert np.mean(files == 0) < 0.25  # uniform sampling would rarely pick the small file
    p = trainer._clip_probabilities(clips)
    assert p.sum() == pytest.approx(1.0)
    assert p[files == 0].sum() == pytest.approx(0.75) and p[files == 1].sum() == pytest.approx(0.25)
    drawn = np.concatenate([files[trainer._indices("world_model", s, len(clips), 64, p)]
                            for s in range(20)])
    assert abs(np.mean(drawn == 0) - 0.75) < 0.05
    # The draw is a function of the step: a resumed run sees the same batches.
    np.testing.assert_array_equal(trainer._indices("world_model", 7, len(clips), 8, p),
                                  trainer._indices("world_model", 7, len(clips), 8, p))
