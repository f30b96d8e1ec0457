import pytest
import torch

from kairos_gym.model.state import WorldState


def _state(b=3):
    return WorldState({"t": torch.arange(b), "blocks.0.k": torch.arange(b * 2.0).view(b, 2)})


def test_select_repeat_clone_and_put_rows():
    s = _state()
    assert s.select([2, 0])["t"].tolist() == [2, 0]
    assert s.select(torch.tensor([True, False, True]))["t"].tolist() == [0, 2]
    assert s.repeat(2)["t"].tolist() == [0, 0, 1, 1, 2, 2]
    c = s.clone()
    c["blocks.0.k"].zero_()
    assert s["blocks.0.k"].sum() > 0
    p = s.put_rows([1], _state(1))
    assert p["t"].tolist() == [0, 0, 2] and s["t"].tolist() == [0, 1, 2]
    assert WorldState.concat([s, s]).batch_size == 6


def test_state_errors_are_clear():
    with pytest.raises(ValueError, match="same batch size"):
        WorldState({"t": torch.zeros(2), "x": torch.zeros(3)})
    with pytest.raises(IndexError, match="row index out of range for a batch of 3"):
        _state().select([5])
    with pytest.raises(ValueError, match="a row mask needs shape \\(3,\\)"):
        _state().select(torch.tensor([True, False]))
    with pytest.raises(ValueError, match="repeat needs n >= 1"):
        _state().repeat(0)
    with pytest.raises(ValueError, match="different memory layouts"):
        _state().put_rows([0], WorldState({"t": torch.zeros(1)}))
