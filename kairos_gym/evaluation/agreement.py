"""Does a policy score the same in imagination as in the real simulator? The agreement protocol.

Each policy runs ``N`` episodes closed-loop in the real simulator and ``N`` closed-loop in
imagination from the same real resets (the imagined env starts from the real reset
observation and the policy then sees only imagined observations). Per policy the report
gives real and imagined success rates with Wilson 95% intervals, mean returns and the mean
first-success step; across policies the Pearson and Spearman correlations of the success
rates, MMRV (mean maximum rank violation, as SIMPLER defines it) and the mean absolute
success gap::

    from kairos_gym.evaluation.agreement import agreement_stats, PolicyScores

    rows = [PolicyScores("expert", real=[True, True], imagined=[True, False]), ...]
    stats = agreement_stats(rows)     # {"pearson", "spearman", "mmrv", "mean_abs_gap", ...}

:func:`run_agreement` runs the episodes (through :mod:`kairos_gym.rollout`);
``eval/agreement.py`` is the benchmark script that writes the JSON and the scatter plot.

How an imagined episode is scored is itself a choice: a step succeeds when the predicted
success probability passes a threshold, and a model that hedges (0.6 on a grasp it is unsure
of) is scored very differently at 0.5 and at 0.8. ``run_agreement(..., trace=True)`` runs
every imagined episode to its end and keeps each step's probability and reward, so
:func:`rescore` can score the same episodes under any :class:`SuccessRule` (a threshold, and
how many consecutive steps must pass it) without running them again.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import gymnasium as gym
import numpy as np

from kairos_gym.imagined.success import SuccessRule
from kairos_gym.policies.base import Policy

__all__ = [
    "STAT_NAMES",
    "PolicyScores",
    "SuccessRule",
    "agreement_stats",
    "bootstrap_stats",
    "calibrated_reference",
    "check_same_policies",
    "combine_reports",
    "mmrv",
    "pearson",
    "policy_weights",
    "rescore",
    "run_agreement",
    "run_paired_agreement",
    "scatter_plot",
    "spearman",
    "weights_digest",
    "wilson_interval",
]


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of a success rate (95% for ``z=1.96``); ``(0, 1)`` for n=0.

    Unlike the normal approximation it stays inside [0, 1] and is sensible at 0/n and n/n,
    which small benchmark runs hit often.
    """
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def pearson(x: Sequence[float], y: Sequence[float]) -> float:
    """Pearson correlation; NaN when either side is constant (correlation is undefined)."""
    a, b = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if len(a) != len(b) or len(a) < 2:
        raise ValueError(f"need two equally long sequences of >= 2 values, got {len(a)} and {len(b)}")
    a, b = a - a.mean(), b - b.mean()
    denom = math.sqrt(float((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / denom) if denom > 0 else float("nan")


def _ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n with ties given their average rank."""
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = np.arange(1, len(values) + 1)
    for value in np.unique(values):
        tied = values == value
        ranks[tied] = ranks[tied].mean()
    return ranks


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman rank correlation (Pearson of average ranks); NaN when a side is constant."""
    return pearson(_ranks(np.asarray(x, dtype=np.float64)), _ranks(np.asarray(y, dtype=np.float64)))


def mmrv(real: Sequence[float], imagined: Sequence[float]) -> float:
    """Mean maximum rank violation: for each policy ``i``, the largest real-rate gap
    ``|r_i - r_j|`` to a policy ``j`` the imagined rates order the other way round; averaged.

    0 means imagination orders every pair as reality does; a violation between two policies
    with nearly equal real rates costs almost nothing.
    """
    r, s = np.asarray(real, dtype=np.float64), np.asarray(imagined, dtype=np.float64)
    if len(r) != len(s) or len(r) < 2:
        raise ValueError(f"need two equally long sequences of >= 2 values, got {len(r)} and {len(s)}")
    violated = (s[:, None] < s[None, :]) != (r[:, None] < r[None, :])
    gaps = np.abs(r[:, None] - r[None, :]) * violated
    return float(gaps.max(axis=1).mean())


@dataclasses.dataclass
class PolicyScores:
    """One policy's episodes on both sides.

    Attributes:
        name: the policy's name.
        real, imagined: per episode, whether it succeeded (``info["success"]`` at some step).
        real_returns, imagined_returns: per episode, the summed reward (real or predicted).
        real_first_success, imagined_first_success: per episode, the first success step or None.
        imagined_success_probs, imagined_step_rewards: per episode, every imagined step's
            predicted success probability and reward, to the episode's end (traced runs
            only: ``run_agreement(..., trace=True)``; empty otherwise).
    """

    name: str
    real: list[bool]
    imagined: list[bool]
    real_returns: list[float] = dataclasses.field(default_factory=list)
    imagined_returns: list[float] = dataclasses.field(default_factory=list)
    real_first_success: list[int | None] = dataclasses.field(default_factory=list)
    imagined_first_success: list[int | None] = dataclasses.field(default_factory=list)
    imagined_success_probs: list[list[float]] = dataclasses.field(default_factory=list)
    imagined_step_rewards: list[list[float]] = dataclasses.field(default_factory=list)

    def add(self, side: str, success: bool, episode_return: float, first_success: int | None) -> None:
        """Record one episode of ``side`` (``"real"`` or ``"imagined"``)."""
        getattr(self, side).append(bool(success))
        getattr(self, f"{side}_returns").append(float(episode_return))
        getattr(self, f"{side}_first_success").append(first_success)

    def summary(self) -> dict[str, Any]:
        """Success rates with Wilson intervals, mean returns and first-success steps, both sides."""
        out: dict[str, Any] = {"name": self.name}
        for side in ("real", "imagined"):
            flags = getattr(self, side)
            n, k = len(flags), int(sum(flags))
            firsts = [s for s in getattr(self, f"{side}_first_success") if s is not None]
            returns = getattr(self, f"{side}_returns")
            out[side] = {
                "episodes": n,
                "successes": k,
                "success_rate": k / n if n else float("nan"),
                "ci95": list(wilson_interval(k, n)),
                "mean_return": float(np.mean(returns)) if returns else None,
                "mean_first_success_step": float(np.mean(firsts)) if firsts else None,
            }
        out["gap"] = out["imagined"]["success_rate"] - out["real"]["success_rate"]
        return out


STAT_NAMES = ("pearson", "spearman", "mmrv", "mean_abs_gap")
"""The across-policy statistics, in the order reports give them."""


def _rate_stats(real: np.ndarray, imagined: np.ndarray) -> tuple[float, float, float, float]:
    """Pearson, Spearman, MMRV and mean absolute gap of two success-rate vectors ``[P]``."""
    return (pearson(real, imagined), spearman(real, imagined), mmrv(real, imagined),
            float(np.mean(np.abs(imagined - real))))


def _spread(draws: np.ndarray) -> dict[str, dict[str, float | None]]:
    """Median and 5th / 95th percentiles of each statistic over ``draws`` ``[D, 4]`` (draws
    where a correlation is undefined, a side being constant, are left out of that one)."""
    out: dict[str, dict[str, float | None]] = {}
    for name, column in zip(STAT_NAMES, draws.T):
        column = column[np.isfinite(column)]
        if not column.size:
            out[name] = {"median": None, "p05": None, "p95": None}
            continue
        p05, median, p95 = np.percentile(column, [5, 50, 95])
        out[name] = {"median": float(median), "p05": float(p05), "p95": float(p95)}
    return out


def bootstrap_stats(policies: Sequence[PolicyScores], draws: int = 1000,
                    seed: int = 0) -> dict[str, dict[str, float | None]]:
    """How much the across-policy statistics move with the episodes drawn: each draw resamples
    every policy's episodes with replacement (the same indices on both sides, since episode
    ``k`` starts from the same real reset in both worlds) and recomputes them.

    Returns:
        per statistic (:data:`STAT_NAMES`), the median and the 5th / 95th percentiles: a 90%
        bootstrap interval.
    """
    rng = np.random.default_rng(seed)
    real = [np.asarray(p.real, dtype=np.float64) for p in policies]
    imagined = [np.asarray(p.imagined, dtype=np.float64) for p in policies]
    out = np.empty((draws, len(STAT_NAMES)))
    for d in range(draws):
        picks = [rng.integers(0, len(r), len(r)) for r in real]
        out[d] = _rate_stats(np.array([r[i].mean() for r, i in zip(real, picks)]),
                             np.array([m[i].mean() for m, i in zip(imagined, picks)]))
    return _spread(out)


def calibrated_reference(real_rates: Sequence[float], episodes: Sequence[int], draws: int = 1000,
                         seed: int = 0) -> dict[str, dict[str, float | None]]:
    """What a perfectly calibrated but independent imagination would score: both worlds draw
    each policy's ``episodes`` outcomes independently at its real success rate (taken as the
    true probability), and the statistics are computed between the two draws.

    A model that predicts every policy's success probability exactly but not which episodes
    succeed scores about this; one that also follows each episode from its real reset can do
    better. With few episodes per policy the reference is far from perfect (ten episodes at
    rates between 0 and 1 give a Pearson near 0.9), which says how many episodes a target
    needs before a model can be judged against it.

    Returns:
        per statistic (:data:`STAT_NAMES`), the median and the 5th / 95th percentiles.
    """
    rng = np.random.default_rng(seed)
    p = np.asarray(real_rates, dtype=np.float64)
    n = np.asarray(episodes, dtype=np.int64)
    if p.shape != n.shape or p.size < 2:
        raise ValueError(f"need equally long rates and episode counts for >= 2 policies, got "
                         f"{p.size} and {n.size}")
    out = np.empty((draws, len(STAT_NAMES)))
    for d in range(draws):
        out[d] = _rate_stats(rng.binomial(n, p) / n, rng.binomial(n, p) / n)
    return _spread(out)


def agreement_stats(policies: Sequence[PolicyScores], draws: int = 1000) -> dict[str, Any]:
    """Across policies: Pearson, Spearman, MMRV and the mean absolute gap of success rates,
    plus per-episode agreement (the fraction of paired episodes whose outcomes agree), with
    how far the episodes drawn move them (``bootstrap``: :func:`bootstrap_stats`) and what a
    calibrated but independent imagination would score on the same policies
    (``calibrated_reference``: :func:`calibrated_reference`); ``draws=0`` leaves both out.

    Raises:
        ValueError: fewer than two policies.
    """
    if len(policies) < 2:
        raise ValueError(f"agreement needs at least two policies, got {len(policies)}")
    real = [float(np.mean(p.real)) for p in policies]
    imagined = [float(np.mean(p.imagined)) for p in policies]
    paired = [a == b for p in policies for a, b in zip(p.real, p.imagined)]
    stats: dict[str, Any] = {
        "policies": len(policies),
        **dict(zip(STAT_NAMES, _rate_stats(np.array(real), np.array(imagined)))),
        "episode_agreement": float(np.mean(paired)) if paired else float("nan"),
        "real_success_rates": real,
        "imagined_success_rates": imagined,
    }
    if draws:
        stats["bootstrap"] = bootstrap_stats(policies, draws)
        stats["calibrated_reference"] = calibrated_reference(real, [len(p.real) for p in policies],
                                                             draws)
    return stats


def combine_reports(reports: Sequence[Mapping[str, Any]]) -> list[PolicyScores]:
    """The episodes of several agreement reports over disjoint seeds, as one run (of one
    report: its episodes, for recomputing its statistics).

    Each report is the parsed JSON ``eval/agreement.py`` writes. They must share the mode,
    checkpoint (the same path, or folders with the same weight files: a copied checkpoint),
    step limit, success rule and policies (in order, with the same weights where both record
    them: ``policy_weights``), and cover disjoint seed ranges
    (``seed .. seed + episodes - 1``); the episodes are joined in seed order, so ten
    episodes run as two runs of five give the rows one run of ten would.

    Raises:
        ValueError: no report, or reports that differ in any of the above or
            overlap in seeds.
    """
    if not reports:
        raise ValueError("combine needs at least one report")
    first = reports[0]
    # Reports written before the success rule was an option used 0.5, held 1 step.
    defaults = {"success_threshold": 0.5, "success_hold": 1}
    for key in ("mode", "checkpoint", "steps", "embodiment", "success_threshold", "success_hold"):
        values = {str(r.get(key, defaults.get(key))) for r in reports}
        if key == "checkpoint" and len(values) > 1:
            values = {_weights_identity(v) for v in values}
        if len(values) > 1:
            raise ValueError(f"the reports differ in {key}: {sorted(values)}")
    names = [d["name"] for d in first["episodes_detail"]]
    for r in reports[1:]:
        check_same_policies(first.get("policy_weights") or {}, r.get("policy_weights") or {})
        other = [d["name"] for d in r["episodes_detail"]]
        if other != names:
            raise ValueError(f"the reports have other policies: {names} against {other}")
    ordered = sorted(reports, key=lambda r: int(r["seed"]))
    for a, b in itertools.pairwise(ordered):
        if int(a["seed"]) + int(a["episodes"]) > int(b["seed"]):
            raise ValueError(
                f"the reports overlap in seeds: {a['seed']}+{a['episodes']} episodes and "
                f"{b['seed']}"
            )
    rows = [PolicyScores(name, real=[], imagined=[]) for name in names]
    fields = ("real", "imagined", "real_returns", "imagined_returns", "real_first_success",
              "imagined_first_success", "imagined_success_probs", "imagined_step_rewards")
    for r in ordered:
        for row, detail in zip(rows, r["episodes_detail"]):
            for name in fields:
                getattr(row, name).extend(detail.get(name) or [])
    return rows


def _weights_identity(checkpoint: str) -> str:
    """A checkpoint folder's identity by content (:func:`weights_digest`; the path itself
    when it holds no weight files here)."""
    return weights_digest(checkpoint) or checkpoint


def weights_digest(folder: str) -> str | None:
    """The SHA-256 of a folder's ``*.safetensors`` files (names and bytes, in name order), or
    ``None`` when it holds none. Two folders with the same digest hold the same weights."""
    import hashlib
    from pathlib import Path

    files = sorted(Path(folder).glob("*.safetensors")) if Path(folder).is_dir() else []
    if not files:
        return None
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def policy_weights(specs: Sequence[str]) -> dict[str, str | None]:
    """Per policy spec, the :func:`weights_digest` of its learned weights (``bc:DIR``), or
    ``None`` for policies without any (scripted, random, served).

    A policy spec names a folder, not weights: a BC family rebuilt from the same commands on
    another machine holds other weights and other success rates. Reports record these so a
    real side is only reused with the policies that produced it.
    """
    from kairos_gym.policies.registry import parse_spec

    digests: dict[str, str | None] = {}  # per folder: a family's variants share one
    out: dict[str, str | None] = {}
    for spec in specs:
        base, _ = parse_spec(spec)
        if base.startswith("bc:"):
            folder = base[len("bc:"):]
            if folder not in digests:
                digests[folder] = weights_digest(folder)
            out[spec] = digests[folder]
        else:
            out[spec] = None
    return out


def check_same_policies(recorded: Mapping[str, str | None], current: Mapping[str, str | None]) -> None:
    """Raise ``ValueError`` naming the policies whose recorded weights differ from the current
    ones (a policy recorded or current without weights is not compared)."""
    differ = [name for name, digest in current.items()
              if digest is not None and recorded.get(name) not in (None, digest)]
    if differ:
        raise ValueError(f"policies {differ} hold other weights than the report's (rebuilt or "
                         "retrained?): their real side must be run again")


def rescore(policies: Sequence[PolicyScores], rule: SuccessRule) -> list[PolicyScores]:
    """The same episodes with the imagined side scored by ``rule``; the real side is kept.

    An imagined episode succeeds at :meth:`SuccessRule.first_success` of its traced
    probabilities; its return is the reward summed to that step (to the end if it never
    succeeds), as a run that stopped there would have summed it.

    Raises:
        ValueError: a policy without traces (a run without ``trace=True``).
    """
    out = []
    for row in policies:
        if len(row.imagined_success_probs) != len(row.imagined):
            raise ValueError(f"{row.name}: no per-step traces to rescore (run with trace=True)")
        new = dataclasses.replace(row, imagined=[], imagined_returns=[], imagined_first_success=[])
        for probs, rewards in zip(row.imagined_success_probs, row.imagined_step_rewards):
            first = rule.first_success(probs)
            new.add("imagined", first is not None, _return_to(rewards, first), first)
        out.append(new)
    return out


def _return_to(rewards: Sequence[float], first_success: int | None) -> float:
    """The rewards ``[T]`` summed to the first success (step ``first_success``, 1-based) or to
    the end: the return of an episode stopped at its first success."""
    return float(np.sum(rewards[:first_success] if first_success is not None else rewards))


def run_agreement(
    policies: Mapping[str, Policy],
    real: gym.Env,
    imagined: gym.Env,
    *,
    episodes: int,
    seed: int = 0,
    max_steps: int | None = None,
    execute: int | None = None,
    progress: bool = True,
    known_real: Mapping[str, PolicyScores] | None = None,
    trace: bool = False,
) -> list[PolicyScores]:
    """Run every policy closed-loop in ``real`` and in ``imagined`` from the same real resets.

    Episode ``k`` of every policy resets the real env with seed ``seed + k``; the imagined
    env starts from that reset observation (``options={"observation": obs}``) with the same
    seed, and from then on the policy sees only imagined observations. Both sides stop at
    the first success (the outcome being scored), or when the env ends the episode or after
    ``max_steps``.

    Args:
        policies: name -> an observation-only policy (scripted experts that read the real
            simulator cannot act in imagination: use the paired protocol for them).
        real: the real env (e.g. ``gym.make(spec.env_id, **spec.env_kwargs)``).
        imagined: the imagined env (``kairos_gym.ImaginedEnv`` or ``gym.make`` of the id).
        episodes: ``N`` episodes per policy and side.
        seed: seed of the first episode.
        max_steps: at most this many steps per episode (``None``: the envs' limits).
        execute: actions executed per chunk before asking the policy again.
        progress: a progress bar over episodes.
        known_real: real-side results of an earlier run with the same policies, seeds and
            step limit (the real simulator and the policies are deterministic given the
            seed): those policies' real episodes are not stepped again, only reset to get
            the start observation. Comparing several models this way costs one real run.
        trace: run every imagined episode past its first success, to the env's end or
            ``max_steps``, keeping each step's ``info["success_prob"]`` and reward (see
            :func:`rescore`). The success, return and first-success step recorded are those
            of the run without tracing: the policy does not see the outcome, so the steps
            before the first success are the same.

    Returns:
        One :class:`PolicyScores` per policy, in the order given.
    """
    from tqdm import tqdm

    from kairos_gym.rollout import run_episode

    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    scores = []
    bar = tqdm(total=len(policies) * episodes, desc="agreement", unit="ep", disable=not progress)
    try:
        for name, policy in policies.items():
            row = PolicyScores(name, real=[], imagined=[])
            known = (known_real or {}).get(name)
            if known is not None and len(known.real) < episodes:
                raise ValueError(f"known_real[{name!r}] has {len(known.real)} episodes, not {episodes}")
            for k in range(episodes):
                if known is None:
                    starts: list[dict[str, np.ndarray]] = []
                    outcome = run_episode(
                        real, policy, seed=seed + k, max_steps=max_steps, execute=execute,
                        stop_on_success=True,
                        on_reset=lambda obs, info, keep=starts: keep.append(obs),
                    )
                    start = starts[0]
                    row.add("real", outcome.success, outcome.total_reward, outcome.first_success)
                else:
                    start, _ = real.reset(seed=seed + k)
                    row.add("real", known.real[k],
                            known.real_returns[k] if known.real_returns else 0.0,
                            known.real_first_success[k])
                probs: list[float] = []
                dream = run_episode(
                    imagined, policy, seed=seed + k, options={"observation": start},
                    max_steps=max_steps, execute=execute, stop_on_success=not trace,
                    on_step=(lambda t, keep=probs: keep.append(_success_prob(t.info)))
                    if trace else None,
                )
                row.add("imagined", dream.success,
                        _return_to(dream.rewards, dream.first_success), dream.first_success)
                if trace:
                    row.imagined_success_probs.append(probs)
                    row.imagined_step_rewards.append([float(r) for r in dream.rewards])
                bar.update(1)
                bar.set_postfix(policy=name, refresh=False)
            scores.append(row)
    finally:
        bar.close()
    return scores


def _success_prob(info: Mapping[str, Any]) -> float:
    """An imagined step's predicted success probability (``info["success_prob"]``)."""
    if "success_prob" not in info:
        raise ValueError("trace=True needs an imagined env that reports info['success_prob']")
    return float(info["success_prob"])


def run_paired_agreement(
    policies: Mapping[str, Policy],
    real: gym.Env,
    imagined: gym.Env,
    *,
    episodes: int,
    image_key: str,
    seed: int = 0,
    max_steps: int | None = None,
    progress: bool = True,
) -> list[PolicyScores]:
    """The paired protocol per policy: the policy acts on the real observations and every
    action also goes to the imagined env (:func:`kairos_gym.rollout.run_paired`); a side
    succeeds when its ``info["success"]`` is true at some step. For policies that read
    privileged simulator state (scripted experts), which cannot run closed-loop in imagination.
    """
    from tqdm import tqdm

    from kairos_gym.rollout import run_paired

    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    scores = []
    bar = tqdm(total=len(policies) * episodes, desc="paired", unit="ep", disable=not progress)
    try:
        for name, policy in policies.items():
            row = PolicyScores(name, real=[], imagined=[])
            for k in range(episodes):
                paired = run_paired(real, imagined, policy, seed=seed + k, image_key=image_key,
                                    max_steps=max_steps)
                for side, flag, reward in (("real", "success", "reward"),
                                           ("imagined", "imagined_success", "imagined_reward")):
                    first = next((st.step for st in paired.steps if getattr(st, flag)), None)
                    row.add(side, first is not None,
                            sum(getattr(st, reward) for st in paired.steps), first)
                bar.update(1)
            scores.append(row)
    finally:
        bar.close()
    return scores


def scatter_plot(policies: Sequence[PolicyScores], stats: Mapping[str, Any], path: str) -> None:
    """Imagined against real success rate per policy, with Wilson intervals and y = x.

    Needs matplotlib (the ``eval`` extra).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.2, 5.0), dpi=110)
    ax.plot([0, 1], [0, 1], color="0.6", lw=1, ls="--", label="imagined = real")
    for p in policies:
        s = p.summary()
        x, y = s["real"]["success_rate"], s["imagined"]["success_rate"]
        # max(0, .): float rounding can put an interval end a hair inside the rate.
        xerr = [[max(0.0, x - s["real"]["ci95"][0])], [max(0.0, s["real"]["ci95"][1] - x)]]
        yerr = [[max(0.0, y - s["imagined"]["ci95"][0])], [max(0.0, s["imagined"]["ci95"][1] - y)]]
        ax.errorbar(x, y, xerr=xerr, yerr=yerr, fmt="o", ms=5, capsize=2, alpha=0.8)
        ax.annotate(_short_name(p.name), (x, y), fontsize=6, xytext=(3, 3),
                    textcoords="offset points")
    ax.set(xlim=(-0.05, 1.05), ylim=(-0.05, 1.05), xlabel="real success rate",
           ylabel="imagined success rate")
    ax.set_title(
        f"Pearson {stats['pearson']:.2f}  Spearman {stats['spearman']:.2f}  "
        f"MMRV {stats['mmrv']:.3f}  |gap| {stats['mean_abs_gap']:.2f}", fontsize=8,
    )
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _short_name(spec: str) -> str:
    """A plot label: ``bc:runs/bc/n40+noise=0.3`` -> ``bc:n40+noise=0.3``."""
    base, sep, rest = spec.partition("+")
    if base.startswith("bc:"):
        base = "bc:" + base[3:].rstrip("/").rsplit("/", 1)[-1]
    return base + sep + rest
