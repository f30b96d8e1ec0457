"""Tests of the agreement protocol: statistics against hand-computed values, and both runners
over a real robosuite env and a tiny imagined env with the same spaces."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import kairos_gym
from kairos_gym.evaluation.agreement import (
    PolicyScores,
    SuccessRule,
    agreement_stats,
    bootstrap_stats,
    calibrated_reference,
    check_same_policies,
    combine_reports,
    mmrv,
    pearson,
    policy_weights,
    rescore,
    run_agreement,
    run_paired_agreement,
    spearman,
    weights_digest,
    wilson_interval,
)
from kairos_gym.policies import RandomPolicy
from kairos_gym.policies.wrappers import ConstantPolicy
from tests.imagined_helpers import lift_spec, write_checkpoint

ROOT = Path(__file__).resolve().parents[2]


def test_wilson_interval_known_values():
    lo, hi = wilson_interval(5, 10)
    assert lo == pytest.approx(0.2366, abs=1e-4) and hi == pytest.approx(0.7634, abs=1e-4)
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(0, 10)[1] == pytest.approx(0.2775, abs=1e-4)
    assert wilson_interval(10, 10)[1] == 1.0
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_correlations_and_mmrv():
    real = [0.1, 0.5, 0.9, 0.3]
    imagined = [0.2, 0.4, 0.95, 0.35]
    assert pearson(real, imagined) == pytest.approx(np.corrcoef(real, imagined)[0, 1])
    assert spearman(real, imagined) == pytest.approx(1.0)
    # Ties get average ranks: ranks (1, 2.5, 2.5, 4) against (1, 2, 3, 4).
    assert spearman([0.0, 0.5, 0.5, 1.0], [0.1, 0.2, 0.3, 0.4]) == pytest.approx(
        np.corrcoef([1, 2.5, 2.5, 4], [1, 2, 3, 4])[0, 1]
    )
    assert np.isnan(pearson([0.5, 0.5], [0.1, 0.2]))
    assert mmrv(real, imagined) == 0.0
    # Imagination swaps policies 0 (real 0.1) and 2 (real 0.9): both suffer a 0.8 violation;
    # policy 1 (0.5) is out of order with 2 (gap 0.4), policy 3 (0.3) with 2 (gap 0.6).
    assert mmrv(real, [0.9, 0.5, 0.1, 0.3]) == pytest.approx((0.8 + 0.4 + 0.8 + 0.6) / 4)
    with pytest.raises(ValueError, match="two equally long"):
        mmrv([0.1], [0.2])


def test_agreement_stats_and_summary():
    rows = [
        PolicyScores("a", real=[True, True, False, True], imagined=[True, True, True, True]),
        PolicyScores("b", real=[False, False, False, False], imagined=[False, True, False, False]),
        PolicyScores("c", real=[True, False, False, False], imagined=[False, False, False, False]),
    ]
    stats = agreement_stats(rows)
    assert stats["real_success_rates"] == [0.75, 0.0, 0.25]
    assert stats["imagined_success_rates"] == [1.0, 0.25, 0.0]
    assert stats["mean_abs_gap"] == pytest.approx((0.25 + 0.25 + 0.25) / 3)
    assert stats["episode_agreement"] == pytest.approx(9 / 12)
    assert stats["spearman"] == pytest.approx(0.5)
    s = rows[0].summary()
    assert s["real"]["successes"] == 3 and s["gap"] == pytest.approx(0.25)
    with pytest.raises(ValueError, match="at least two policies"):
        agreement_stats(rows[:1])


def test_bootstrap_intervals_follow_the_episodes():
    # Imagination agrees episode by episode: every resample keeps the gap and MMRV at zero.
    same = [PolicyScores(str(k), real=flags, imagined=list(flags))
            for k, flags in enumerate([[True] * 6 + [False] * 4, [True, False] * 5, [False] * 10])]
    spread = bootstrap_stats(same, draws=200)
    assert spread["mean_abs_gap"] == {"median": 0.0, "p05": 0.0, "p95": 0.0}
    assert spread["mmrv"]["p95"] == 0.0 and spread["pearson"]["p05"] == pytest.approx(1.0)
    # The same rates with the outcomes on other episodes: the resampled gaps are not zero.
    shuffled = [PolicyScores(p.name, real=p.real, imagined=p.real[::-1]) for p in same]
    assert bootstrap_stats(shuffled, draws=200)["mean_abs_gap"]["p95"] > 0.05
    assert bootstrap_stats(same, draws=50, seed=3) == bootstrap_stats(same, draws=50, seed=3)


def test_the_calibrated_reference_is_the_sampling_floor():
    # Certain outcomes are drawn the same on both sides.
    sure = calibrated_reference([0.0, 1.0, 1.0], [10, 10, 10], draws=100)
    assert sure["mean_abs_gap"]["p95"] == 0.0 and sure["mmrv"]["p95"] == 0.0
    assert sure["pearson"]["median"] == pytest.approx(1.0)
    # Ten episodes at rates spread over [0, 1] are far from perfect; ten thousand are close.
    rates = [0.0, 0.1, 0.3, 0.5, 0.5, 0.8, 1.0]
    few = calibrated_reference(rates, [10] * 7, draws=300)
    many = calibrated_reference(rates, [10_000] * 7, draws=300)
    assert few["pearson"]["median"] < 0.97 < many["pearson"]["p05"]
    assert few["mean_abs_gap"]["median"] > 0.05 > many["mean_abs_gap"]["p95"]
    with pytest.raises(ValueError, match="equally long"):
        calibrated_reference([0.5, 0.5], [10])


def test_agreement_stats_report_the_spread_unless_asked_not_to():
    rows = [PolicyScores("a", real=[True, False] * 3, imagined=[True] * 6),
            PolicyScores("b", real=[False] * 6, imagined=[False, True] + [False] * 4)]
    stats = agreement_stats(rows, draws=50)
    for key in ("bootstrap", "calibrated_reference"):
        assert set(stats[key]) == {"pearson", "spearman", "mmrv", "mean_abs_gap"}
    assert "bootstrap" not in agreement_stats(rows, draws=0)


@pytest.fixture(scope="module")
def envs(tmp_path_factory):
    pytest.importorskip("robosuite")
    ckpt = write_checkpoint(tmp_path_factory.mktemp("agreement") / "ckpt", lift_spec(max_episode_steps=4))
    real = gym.make("kairos_gym/Robosuite-Lift-v0", cameras=("agentview",), image_size=16,
                    max_episode_steps=4)
    imagined = kairos_gym.ImaginedEnv(ckpt, done_threshold=1.0, success_threshold=0.0)
    yield ckpt, real, imagined
    real.close()


def test_closed_loop_runner_starts_both_sides_from_the_same_reset(envs):
    _, real, imagined = envs
    policies = {"zero": ConstantPolicy(np.zeros(7)), "random": RandomPolicy(real.action_space)}
    rows = run_agreement(policies, real, imagined, episodes=2, seed=5, progress=False)
    assert [r.name for r in rows] == ["zero", "random"]
    for row in rows:
        # The real arm never lifts the cube in 4 steps; this imagined env calls every step a
        # success (threshold 0): the runner reports each side's own outcome.
        assert row.real == [False, False] and row.imagined == [True, True]
        assert row.imagined_first_success == [1, 1] and row.real_first_success == [None, None]
    with pytest.raises(ValueError, match="episodes must be >= 1"):
        run_agreement(policies, real, imagined, episodes=0)


def test_a_traced_run_scores_as_an_untraced_one_and_rescores(envs):
    _, real, imagined = envs
    policies = {"zero": ConstantPolicy(np.zeros(7))}
    plain = run_agreement(policies, real, imagined, episodes=2, seed=5, progress=False)
    traced = run_agreement(policies, real, imagined, episodes=2, seed=5, progress=False,
                           trace=True)
    for field in ("real", "imagined", "imagined_first_success", "imagined_returns"):
        assert getattr(traced[0], field) == pytest.approx(getattr(plain[0], field)), field
    # Past its first success (step 1 at threshold 0) every imagined episode ran to the limit.
    assert [len(t) for t in traced[0].imagined_success_probs] == [4, 4]
    assert [len(t) for t in traced[0].imagined_step_rewards] == [4, 4]
    assert plain[0].imagined_success_probs == []
    # The env's own rule reproduces the run; a stricter one moves the first success.
    again = rescore(traced, SuccessRule(0.0, 1))[0]
    assert again.imagined == traced[0].imagined
    assert again.imagined_returns == pytest.approx(traced[0].imagined_returns)
    assert rescore(traced, SuccessRule(0.0, 3))[0].imagined_first_success == [3, 3]
    probs = traced[0].imagined_success_probs
    above = SuccessRule(max(max(t) for t in probs), 1)  # strictly above the highest: never
    assert rescore(traced, above)[0].imagined == [False, False]
    assert rescore(traced, above)[0].imagined_returns == pytest.approx(
        [sum(r) for r in traced[0].imagined_step_rewards])
    with pytest.raises(ValueError, match="no per-step traces"):
        rescore(plain, SuccessRule())


def test_success_rules():
    rule = SuccessRule(0.5, 3)
    assert rule.first_success([0.6, 0.7, 0.4, 0.9, 0.8, 0.51, 0.9]) == 6
    assert rule.first_success([0.6, 0.7]) is None
    assert SuccessRule().first_success([0.5, 0.50001]) == 2  # strictly above, as the env
    assert SuccessRule.parse("0.8") == SuccessRule(0.8, 1)
    assert SuccessRule.parse("0.8:3") == SuccessRule(0.8, 3)
    for bad in ("high", "0.8:x", "1.5", "0.5:0"):
        with pytest.raises(ValueError):
            SuccessRule.parse(bad)
    row = PolicyScores("p", real=[True, False], imagined=[True, True],
                       imagined_success_probs=[[0.9, 0.9, 0.9], [0.9, 0.2, 0.9]],
                       imagined_step_rewards=[[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]])
    row.real_returns, row.real_first_success = [1.0, 0.0], [2, None]
    held = rescore([row], SuccessRule(0.5, 2))[0]
    assert held.imagined == [True, False] and held.imagined_first_success == [2, None]
    assert held.imagined_returns == [3.0, 6.0]
    assert held.real == row.real and held.real_first_success == row.real_first_success


def test_paired_runner(envs):
    _, real, imagined = envs
    rows = run_paired_agreement({"zero": ConstantPolicy(np.zeros(7))}, real, imagined,
                                episodes=2, image_key="agentview_image", progress=False)
    assert rows[0].real == [False, False] and rows[0].imagined == [True, True]
    assert len(rows[0].real_returns) == 2


def test_agreement_script_writes_json_and_refuses_the_expert_closed_loop(envs, tmp_path):
    ckpt, _, _ = envs
    out = tmp_path / "agreement.json"
    cmd = [sys.executable, "-m", "kairos_gym.eval.agreement", "--checkpoint", str(ckpt),
           "--episodes", "1", "--steps", "2", "--threads", "1", "--output", str(out), "--no-plot"]
    done = subprocess.run([*cmd, "--policies", "zero", "random+noise=0.2+execute=2"],
                          check=False, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())
    assert [p["name"] for p in report["policies"]] == ["zero", "random+noise=0.2+execute=2"]
    assert report["mode"] == "closed" and "pearson" in report["stats"]
    assert report["success_threshold"] == 0.5 and report["success_hold"] == 1  # the checkpoint's
    assert report["policy_weights"] == {"zero": None, "random+noise=0.2+execute=2": None}
    assert report["draw_state"] is True  # closed loop draws a stochastic dynamics' states
    assert "agreement:" in done.stderr  # the progress bar
    # The real side of that report is reused: the same outcomes, only imagination runs again.
    again = tmp_path / "again.json"
    done = subprocess.run([*cmd[:-3], "--output", str(again), "--no-plot", "--real-from", str(out),
                           "--no-progress", "--policies", "zero", "random+noise=0.2+execute=2"],
                          check=False, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert "agreement:" not in done.stderr
    assert [d["real"] for d in json.loads(again.read_text())["episodes_detail"]] == [
        d["real"] for d in report["episodes_detail"]]
    done = subprocess.run([*cmd, "--seed", "7", "--real-from", str(out), "--policies", "zero"],
                          check=False, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 2 and "other settings" in done.stderr
    done = subprocess.run([*cmd, "--policies", "expert", "zero"], check=False,
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 2 and "use --mode paired" in done.stderr
    done = subprocess.run([*cmd, "--policies", "zero+wobble"], check=False,
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 2 and "bad modifier 'wobble'" in done.stderr
    # A report without traces cannot be rescored; a traced one can, without running anything.
    rescored = tmp_path / "rescored.json"
    combine = [sys.executable, "-m", "kairos_gym.eval.agreement", "--output", str(rescored),
               "--no-plot", "--rescore", "0.5:2", "--combine"]
    done = subprocess.run([*combine, str(out)], check=False, capture_output=True, text=True,
                          timeout=300, cwd=ROOT)
    assert done.returncode == 2 and "no per-step traces" in done.stderr
    traced = tmp_path / "traced.json"
    done = subprocess.run([*cmd[:-3], "--output", str(traced), "--no-plot", "--trace",
                           "--real-from", str(out), "--policies", "zero", "random"],
                          check=False, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    report = json.loads(traced.read_text())
    assert report["traced"] is True
    # Number lists are written on one line each (a trace would otherwise take a line a step).
    probs_line = next(line for line in traced.read_text().splitlines()
                      if line.strip().startswith("[") and "." in line)
    assert probs_line.strip().endswith(("]", "],"))
    # Each trace runs to the imagined episode's end: the 2-step limit or the done head.
    assert 1 <= len(report["episodes_detail"][0]["imagined_success_probs"][0]) <= 2
    done = subprocess.run([*combine, str(traced)], check=False, capture_output=True, text=True,
                          timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    again = json.loads(rescored.read_text())
    assert again["success_threshold"] == 0.5 and again["success_hold"] == 2
    probs = report["episodes_detail"][0]["imagined_success_probs"][0]
    assert again["episodes_detail"][0]["imagined"] == [
        SuccessRule(0.5, 2).first_success(probs) is not None]
    done = subprocess.run([*cmd, "--policies", "zero", "--rescore", "0.8"], check=False,
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 2 and "use it with --combine" in done.stderr


def _report(seed: int, real: list[list[bool]], imagined: list[list[bool]], **extra) -> dict:
    """A closed-loop report as eval/agreement.py writes it (the fields combining reads)."""
    detail = [
        {"name": name, "real": r, "imagined": i, "real_returns": [float(x) for x in r],
         "imagined_returns": [float(x) for x in i],
         "real_first_success": [5 if x else None for x in r],
         "imagined_first_success": [6 if x else None for x in i]}
        for name, r, i in zip(("a", "b"), real, imagined)
    ]
    return {"benchmark": "agreement", "mode": "closed", "checkpoint": "ckpt", "env_id": "env",
            "steps": None, "embodiment": None, "seed": seed, "episodes": len(real[0]),
            "episodes_detail": detail, **extra}


def test_reports_over_disjoint_seeds_combine_into_one_run(tmp_path):
    first = _report(100, [[True, False], [False, False]], [[True, True], [False, True]])
    second = _report(102, [[True, True], [False, False]], [[False, True], [False, False]])
    rows = combine_reports([second, first])  # any order: joined in seed order
    assert [r.name for r in rows] == ["a", "b"]
    assert rows[0].real == [True, False, True, True]
    assert rows[0].imagined == [True, True, False, True]
    assert rows[1].imagined_first_success == [None, 6, None, None]
    whole = [PolicyScores("a", real=[True, False, True, True], imagined=[True, True, False, True]),
             PolicyScores("b", real=[False] * 4, imagined=[False, True, False, False])]
    assert agreement_stats(rows) == agreement_stats(whole)

    with pytest.raises(ValueError, match="overlap in seeds"):
        combine_reports([first, _report(101, [[True, True], [True, True]], [[True] * 2] * 2)])
    with pytest.raises(ValueError, match="differ in mode"):
        combine_reports([first, {**second, "mode": "paired"}])
    with pytest.raises(ValueError, match="differ in success_threshold"):
        combine_reports([first, {**second, "success_threshold": 0.9}])
    assert len(combine_reports([first, {**second, "success_threshold": 0.5}])[0].real) == 4
    renamed = {**second, "episodes_detail": second["episodes_detail"][::-1]}
    with pytest.raises(ValueError, match="other policies"):
        combine_reports([first, renamed])
    with pytest.raises(ValueError, match="at least one"):
        combine_reports([])
    assert [r.real for r in combine_reports([first])] == [[True, False], [False, False]]

    paths = []
    for k, report in enumerate((first, second)):
        paths.append(tmp_path / f"r{k}.json")
        paths[-1].write_text(json.dumps(report))
    out = tmp_path / "both.json"
    cmd = [sys.executable, "-m", "kairos_gym.eval.agreement", "--combine", *map(str, paths),
           "--output", str(out), "--no-plot"]
    done = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    combined = json.loads(out.read_text())
    assert combined["episodes"] == 4 and combined["seeds"] == [100, 101, 102, 103]
    assert combined["stats"]["episode_agreement"] == agreement_stats(whole)["episode_agreement"]
    assert [c["seed"] for c in combined["combined_from"]] == [100, 102]
    done = subprocess.run([*cmd[:3], "--combine", str(paths[0]), str(paths[0]), "--output",
                           str(out)], check=False, capture_output=True, text=True, timeout=300,
                          cwd=ROOT)
    assert done.returncode == 2 and "overlap in seeds" in done.stderr
    # One report is rescored: the spread of its statistics is added.
    done = subprocess.run([*cmd[:3], "--combine", str(paths[0]), "--output", str(out), "--no-plot"],
                          check=False, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert "calibrated imagination" in done.stdout
    assert set(json.loads(out.read_text())["stats"]["bootstrap"]) == {
        "pearson", "spearman", "mmrv", "mean_abs_gap"}


def test_a_copied_checkpoint_is_the_same_checkpoint(tmp_path):
    for name, payload in (("a", b"weights"), ("b", b"weights"), ("c", b"other")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "model.safetensors").write_bytes(payload)
    first = _report(100, [[True], [False]], [[True], [False]], checkpoint=str(tmp_path / "a"))
    copied = _report(101, [[True], [False]], [[True], [True]], checkpoint=str(tmp_path / "b"))
    other = _report(101, [[True], [False]], [[True], [True]], checkpoint=str(tmp_path / "c"))
    assert [r.imagined for r in combine_reports([first, copied])] == [[True, True], [False, True]]
    with pytest.raises(ValueError, match="differ in checkpoint"):
        combine_reports([first, other])


def test_open_env_pair_passes_the_success_threshold(envs):
    from kairos_gym.evaluation.real_vs_imagined import open_env_pair

    ckpt, _, _ = envs
    _, real, imagined = open_env_pair(str(ckpt), success_threshold=0.9, success_hold=3)
    try:
        assert imagined.unwrapped.core.success_rule == SuccessRule(0.9, 3)
    finally:
        real.close()
        imagined.close()


def test_reports_name_the_policy_weights_and_refuse_to_mix_them(tmp_path):
    # A spec names a folder: a rebuilt BC policy keeps its name and changes its weights.
    folder = tmp_path / "bc"
    folder.mkdir()
    assert weights_digest(str(folder)) is None
    (folder / "policy.json").write_text("{}")
    (folder / "policy.safetensors").write_bytes(b"first")
    first = weights_digest(str(folder))
    spec = f"bc:{folder}+noise=0.3"
    assert policy_weights([spec, "zero", "expert+noise=0.5"]) == {
        spec: first, "zero": None, "expert+noise=0.5": None}
    (folder / "policy.safetensors").write_bytes(b"rebuilt")
    now = policy_weights([spec])
    assert now[spec] != first
    check_same_policies({spec: now[spec]}, now)
    check_same_policies({}, now)  # reports written before weights were recorded
    with pytest.raises(ValueError, match="hold other weights"):
        check_same_policies({spec: first}, now)
    old = _report(100, [[True], [False]], [[True], [False]], policy_weights={"a": first, "b": None})
    new = _report(101, [[True], [False]], [[True], [True]], policy_weights={"a": now[spec], "b": None})
    with pytest.raises(ValueError, match=r"\['a'\] hold other weights"):
        combine_reports([old, new])
    assert len(combine_reports([old, {**new, "policy_weights": {"a": first}}])[0].real) == 2
