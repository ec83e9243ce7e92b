"""Avg@k, Pass@k, Maj@k per problem, the unbiased pass@k estimator, mean/sd over seeds.

PROTOCOL section 4:

* Avg@k = mean correctness of the k samples; Pass@k = 1 if any sample is correct.
* Maj@k: samples are clustered by math equivalence (a joins the first cluster, in order of
  creation, whose representative r satisfies grade(a, r) or grade(r, a); the representative
  is the cluster's first member). All INVALID samples form one cluster that takes part in
  the vote and is wrong when it wins. The largest cluster wins; ties go to the cluster whose
  first member came first. Maj = correctness of the winner's representative.
* Benchmark score = mean over problems; over evaluation seeds: mean and sample (Bessel) sd.
* Two methods are compared by per-seed paired differences (:func:`paired_interval`): the mean
  difference with a Student-t interval, printed by :func:`format_interval`.

Nothing here grades: equivalence comes in through a batch callable, so the same code runs
serially (``pwopsd.evaluate.problem_metrics``) and over a worker pool (whole benchmarks).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

# scipy.special (not scipy.stats): the t quantile alone, without scipy.stats' import cost.
from scipy.special import stdtrit

from pwopsd.vocab import METRICS

Pair = tuple[str, str]
EquivalentBatch = Callable[[list[Pair]], list[bool]]
"""Maps (a, b) pairs to "a and b are the same answer" (both grading directions tried)."""


def is_invalid(answer: str | None) -> bool:
    """INVALID = no extracted answer (None) or a blank one."""
    return answer is None or not answer.strip()


def avg_at_k(verdicts: Sequence[bool]) -> float:
    """Mean correctness over the samples."""
    if not verdicts:
        raise ValueError("avg_at_k needs at least one sample")
    return sum(bool(v) for v in verdicts) / len(verdicts)


def pass_at_k(verdicts: Sequence[bool]) -> float:
    """1.0 if any sample is correct, else 0.0."""
    if not verdicts:
        raise ValueError("pass_at_k needs at least one sample")
    return float(any(verdicts))


def unbiased_pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples of which c are correct: 1 - C(n-c, k) / C(n, k).

    (Chen et al. 2021, "Evaluating Large Language Models Trained on Code", eq. 1.)
    """
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"need 0 <= c <= n and 1 <= k <= n; got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    # Product form: stable for large n, no huge binomials.
    prob_all_wrong = 1.0
    for i in range(n - c + 1, n + 1):
        prob_all_wrong *= 1.0 - k / i
    return 1.0 - prob_all_wrong


def cluster_answers(
    answer_lists: Sequence[Sequence[str | None]], equivalent: EquivalentBatch
) -> list[list[int]]:
    """Cluster id of every sample of every problem; INVALID samples get id -1.

    Identical strings always share a cluster. Distinct strings are compared with the
    representatives of the clusters that exist at their turn, in creation order, exactly
    like the sequential rule; the comparisons of all problems (and of all pending strings of
    a problem against the current representatives) go to ``equivalent`` in one batch per
    round, which is what lets a worker pool grade them in parallel.
    """
    uniques: list[list[str]] = []  # per problem: distinct valid answers, first-occurrence order
    for answers in answer_lists:
        seen: dict[str, None] = {}
        for a in answers:
            if not is_invalid(a):
                seen.setdefault(a, None)
        uniques.append(list(seen))
    cluster_of: list[dict[str, int]] = [{} for _ in answer_lists]
    reps: list[list[str]] = [[] for _ in answer_lists]
    pending: list[list[str]] = [list(u) for u in uniques]
    known: dict[Pair, bool] = {}

    while any(pending):
        # The first pending string of a problem with no representative yet starts one.
        for p, todo in enumerate(pending):
            if todo and not reps[p]:
                cluster_of[p][todo[0]] = 0
                reps[p].append(todo.pop(0))
        queries = sorted(
            {
                q
                for p, todo in enumerate(pending)
                for a in todo
                for r in reps[p]
                for q in ((a, r), (r, a))
                if q not in known
            }
        )
        if queries:
            for q, ok in zip(queries, equivalent(queries), strict=True):
                known[q] = bool(ok)
        for p, todo in enumerate(pending):
            still: list[str] = []
            new_rep = None
            for a in todo:
                match = next(
                    (i for i, r in enumerate(reps[p]) if known[(a, r)] or known[(r, a)]), None
                )
                if match is not None:
                    cluster_of[p][a] = match
                elif new_rep is None:
                    new_rep = a  # matches no existing cluster: it opens the next one
                else:
                    still.append(a)  # must also be compared with new_rep: next round
            if new_rep is not None:
                cluster_of[p][new_rep] = len(reps[p])
                reps[p].append(new_rep)
            pending[p] = still
    return [
        [-1 if is_invalid(a) else cluster_of[p][a] for a in answers]
        for p, answers in enumerate(answer_lists)
    ]


def majority_winner(cluster_ids: Sequence[int]) -> int:
    """Index of the sample that represents the winning cluster (its first member).

    The INVALID cluster (id -1) votes like any other; ties go to the cluster whose first
    member came first.
    """
    if not cluster_ids:
        raise ValueError("majority_winner needs at least one sample")
    counts: dict[int, int] = {}
    first: dict[int, int] = {}
    for i, c in enumerate(cluster_ids):
        counts[c] = counts.get(c, 0) + 1
        first.setdefault(c, i)
    best = max(counts, key=lambda c: (counts[c], -first[c]))
    return first[best]


def problem_scores(
    answers: Sequence[str | None], verdicts: Sequence[bool], cluster_ids: Sequence[int]
) -> dict[str, float | int]:
    """Avg@k, Pass@k, Maj@k and counts of one problem (k = len(answers))."""
    if not len(answers) == len(verdicts) == len(cluster_ids):
        raise ValueError(
            f"answers ({len(answers)}), verdicts ({len(verdicts)}) and cluster_ids "
            f"({len(cluster_ids)}) must have the same length"
        )
    winner = majority_winner(cluster_ids)
    maj = 0.0 if is_invalid(answers[winner]) else float(bool(verdicts[winner]))
    return {
        "avg": avg_at_k(verdicts),
        "pass": pass_at_k(verdicts),
        "maj": maj,
        "n": len(answers),
        "n_correct": sum(bool(v) for v in verdicts),
        "n_invalid": sum(is_invalid(a) for a in answers),
    }


def mean_sd(values: Sequence[float]) -> dict[str, float | int | None]:
    """Mean and sample (Bessel, ddof=1) standard deviation; sd is None for one value."""
    if not values:
        raise ValueError("mean_sd needs at least one value")
    n = len(values)
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else None
    return {"mean": mean, "sd": sd, "n": n}


def benchmark_scores(per_problem: Sequence[dict[str, float | int]]) -> dict[str, float | int]:
    """Benchmark score = mean over problems of each per-problem metric."""
    if not per_problem:
        raise ValueError("benchmark_scores needs at least one problem")
    out: dict[str, float | int] = {
        key: sum(float(p[key]) for p in per_problem) / len(per_problem) for key in METRICS
    }
    out["problems"] = len(per_problem)
    out["samples"] = sum(int(p["n"]) for p in per_problem)
    out["invalid_fraction"] = sum(int(p["n_invalid"]) for p in per_problem) / out["samples"]
    return out


@dataclass(frozen=True)
class PairedInterval:
    """Mean of per-seed paired differences and its two-sided Student-t interval.

    ``low`` and ``high`` are NaN when ``n`` is 1 (one difference has no spread to judge by).
    """

    mean: float
    low: float
    high: float
    n: int

    @property
    def excludes_zero(self) -> bool:
        """True when the whole interval lies on one side of 0 (False without an interval)."""
        return self.low > 0 or self.high < 0  # NaN compares False


def paired_interval(differences: Sequence[float], confidence: float = 0.95) -> PairedInterval:
    """Mean of per-seed paired differences with a Student-t interval.

    Each difference is method A minus method B on the same training seed, each scored on the
    same evaluation seeds, so what the two runs of a seed share cancels. The interval is
    ``mean ± t_{(1 + confidence) / 2, n - 1} * sd / sqrt(n)`` with the sample (Bessel, ddof=1)
    sd of the differences; with one difference ``low`` and ``high`` are NaN. A NaN difference
    is an error naming its position.
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence={confidence!r} must lie in (0, 1)")
    values = [float(d) for d in differences]
    if not values:
        raise ValueError("paired_interval needs at least one difference")
    bad = [i for i, d in enumerate(values) if math.isnan(d)]
    if bad:
        raise ValueError(f"difference at position {bad[0]} is NaN (positions {bad})")
    n = len(values)
    mean = sum(values) / n
    if n == 1:
        return PairedInterval(mean, math.nan, math.nan, 1)
    sd = math.sqrt(sum((d - mean) ** 2 for d in values) / (n - 1))
    half = float(stdtrit(n - 1, (1 + confidence) / 2)) * sd / math.sqrt(n)
    return PairedInterval(mean, mean - half, mean + half, n)


def format_interval(
    iv: PairedInterval, scale: float = 1.0, digits: int = 1, show_n: bool = True
) -> str:
    """``"-0.8 [-3.1, +1.5] (n = 3)"``: signed mean and interval, times ``scale``.

    ``digits`` is the least number of decimals: an interval that excludes 0 gets up to three
    more where a bound would otherwise print as 0 (``"-0.76 [-1.50, -0.02]"``, never
    ``"[-1.5, -0.0]"``). ``show_n`` False drops the count; ``"[no interval]"`` when there is
    none (one difference).
    """
    d = digits
    while iv.excludes_zero and d < digits + 3 and 0 in (round(scale * iv.low, d),
                                                        round(scale * iv.high, d)):  # fmt: skip
        d += 1

    def num(x: float) -> str:
        return f"{scale * x:+.{d}f}"

    count = f" (n = {iv.n})" if show_n else ""
    if math.isnan(iv.low) or math.isnan(iv.high):
        return f"{num(iv.mean)} [no interval]{count}"
    return f"{num(iv.mean)} [{num(iv.low)}, {num(iv.high)}]{count}"
