"""Tests of SuccessRule: how an imagined step's success is read from its probability."""

from __future__ import annotations

import numpy as np
import pytest

from kairos_gym.imagined.success import SuccessRule


def test_a_rule_needs_hold_consecutive_steps_strictly_above_the_threshold():
    rule = SuccessRule(0.5, 3)
    probs = [0.6, 0.7, 0.4, 0.9, 0.8, 0.51, 0.9]
    assert rule.first_success(probs) == 6
    run = np.zeros(1, dtype=np.int64)
    met = []
    for p in probs:  # stepping the rule as the core does gives the same first step
        run = rule.advance(run, np.array([p]))
        met.append(bool(rule.met(run)[0]))
    assert met.index(True) + 1 == 6
    assert SuccessRule().first_success([0.5, 0.50001]) == 2
    assert SuccessRule(1.0).first_success([1.0, 1.0]) is None  # 1 never succeeds
    np.testing.assert_array_equal(rule.advance(np.array([2, 2, 0]), np.array([0.9, 0.5, 0.9])),
                                  [3, 0, 1])


def test_parse_dict_round_trip_and_text():
    assert SuccessRule.parse("0.8") == SuccessRule(0.8, 1)
    assert SuccessRule.parse("0.8:3") == SuccessRule(0.8, 3)
    rule = SuccessRule(0.5, 5)
    assert SuccessRule.from_dict(rule.to_dict()) == rule
    assert SuccessRule.from_dict({}) == SuccessRule()
    assert str(rule) == "0.5:5" and str(SuccessRule(0.7)) == "0.7"
    assert SuccessRule(np.float32(0.5), np.int64(2)) == SuccessRule(0.5, 2)


@pytest.mark.parametrize("text", ["high", "0.8:x", "1.5", "-0.1", "0.5:0", "nan", "0.5:1.5"])
def test_bad_rules_are_refused_with_the_format(text):
    with pytest.raises(ValueError, match="THRESHOLD"):
        SuccessRule.parse(text)


@pytest.mark.parametrize("data", [{"threshold": 2.0}, {"hold": 0}, {"hold": True},
                                  {"threshold": "0.5"}, {"treshold": 0.5}, [0.5, 1]])
def test_bad_stored_rules_are_refused(data):
    with pytest.raises(ValueError):
        SuccessRule.from_dict(data)
