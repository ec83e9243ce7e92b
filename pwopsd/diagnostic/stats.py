"""Phase G statistics (PROTOCOL section 5): residualised AUROC, AUPRC, cluster bootstrap.

Label 1 = *real uncertainty*, label 0 = *benign diversity* (gray candidates are excluded before
these functions see anything). A score is residualised within its group (problem): each
group's mean score is subtracted, so a score that only says "this problem is hard" earns
nothing. AUROC uses mid-ranks for ties (the Mann-Whitney statistic), and **no sign flip is
ever applied**: a score oriented the wrong way reads below 0.5. Orientation is the caller's
choice, stated beside each row of Table 1.

Pure numpy; no model, no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

ArrayLike = Sequence[float] | np.ndarray


def _as_arrays(scores: ArrayLike, labels: ArrayLike, groups: Sequence | np.ndarray | None = None):
    s = np.asarray(scores, dtype=float)
    y = np.asarray(labels)
    if s.ndim != 1 or y.shape != s.shape:
        raise ValueError(f"scores {s.shape} and labels {y.shape} must be 1-D of equal length")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("labels must be 0 (diversity) or 1 (real uncertainty)")
    if not np.isfinite(s).all():
        raise ValueError("scores must be finite (drop or impute missing scores first)")
    y = y.astype(int)
    if groups is None:
        return s, y, None
    g = np.asarray(groups)
    if g.shape != s.shape:
        raise ValueError(f"groups {g.shape} must match scores {s.shape}")
    return s, y, g


def group_codes(groups: Sequence | np.ndarray) -> np.ndarray:
    """Integer codes 0..G-1 for arbitrary (hashable) group labels."""
    _, codes = np.unique(np.asarray(groups).astype(str), return_inverse=True)
    return codes.reshape(-1)


def residualise(scores: ArrayLike, groups: Sequence | np.ndarray) -> np.ndarray:
    """``scores`` minus the mean score of each item's group.

    Rounded to 12 decimals so that floating-point noise of the subtraction does not break
    ties the scores really have (AUROC counts ties as one half).
    """
    s = np.asarray(scores, dtype=float)
    codes = group_codes(groups)
    sums = np.bincount(codes, weights=s)
    counts = np.bincount(codes)
    return np.round(s - (sums / counts)[codes], 12)


def midranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks of ``x`` with ties given their average rank."""
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    ranks_sorted = np.empty(len(x), dtype=float)
    # boundaries of runs of equal values
    edges = np.flatnonzero(np.diff(xs) != 0) + 1
    starts = np.concatenate(([0], edges))
    ends = np.concatenate((edges, [len(x)]))
    for a, b in zip(starts, ends, strict=True):
        ranks_sorted[a:b] = 0.5 * (a + 1 + b)
    ranks = np.empty(len(x), dtype=float)
    ranks[order] = ranks_sorted
    return ranks


def auroc(scores: ArrayLike, labels: ArrayLike) -> float:
    """AUROC of ``scores`` for label 1, mid-rank ties; NaN when one class is absent."""
    s, y, _ = _as_arrays(scores, labels)
    n1 = int(y.sum())
    n0 = len(y) - n1
    if n1 == 0 or n0 == 0:
        return float("nan")
    r = midranks(s)
    return float((r[y == 1].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def residual_auroc(scores: ArrayLike, labels: ArrayLike, groups: Sequence | np.ndarray) -> float:
    """AUROC (label 1 = real uncertainty, mid-rank ties) of within-group residualised scores.

    Each group's (problem's) mean score is subtracted first. No automatic sign flip. NaN when
    the labels hold one class only.
    """
    s, y, g = _as_arrays(scores, labels, groups)
    return auroc(residualise(s, g), y)


def auprc(scores: ArrayLike, labels: ArrayLike) -> float:
    """Area under the precision-recall curve for label 1 (average precision; ties as one step).

    The chance level is the positive rate. NaN when there is no positive.
    """
    s, y, _ = _as_arrays(scores, labels)
    n1 = int(y.sum())
    if n1 == 0:
        return float("nan")
    order = np.argsort(-s, kind="mergesort")
    s_sorted, y_sorted = s[order], y[order]
    # one threshold per distinct score: the last index of each run of equal scores
    last = np.r_[np.flatnonzero(np.diff(s_sorted) != 0), len(s) - 1]
    tp = np.cumsum(y_sorted)[last]
    fp = (last + 1) - tp
    precision = tp / (tp + fp)
    recall = tp / n1
    d_recall = np.diff(np.r_[0.0, recall])
    return float((d_recall * precision).sum())


def residual_auprc(scores: ArrayLike, labels: ArrayLike, groups: Sequence | np.ndarray) -> float:
    """:func:`auprc` of within-group residualised scores (same residualisation as the AUROC)."""
    s, y, g = _as_arrays(scores, labels, groups)
    return auprc(residualise(s, g), y)


class BootstrapCI(tuple):
    """``(lo, hi)`` that also carries how many resamples were used and skipped."""

    n_used: int
    n_skipped: int

    def __new__(cls, lo: float, hi: float, n_used: int, n_skipped: int) -> BootstrapCI:
        obj = super().__new__(cls, (lo, hi))
        obj.n_used = n_used
        obj.n_skipped = n_skipped
        return obj

    @property
    def lo(self) -> float:
        return self[0]

    @property
    def hi(self) -> float:
        return self[1]

    def __repr__(self) -> str:
        return (
            f"BootstrapCI(lo={self[0]!r}, hi={self[1]!r}, n_used={self.n_used}, "
            f"n_skipped={self.n_skipped})"
        )


def cluster_bootstrap_ci(
    scores: ArrayLike,
    labels: ArrayLike,
    groups: Sequence | np.ndarray,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> BootstrapCI:
    """Percentile interval of :func:`residual_auroc` under a cluster bootstrap over groups.

    Each resample draws as many groups as there are, with replacement; a group drawn twice
    enters twice (as two clusters), and residualisation is recomputed on the resample.
    Resamples holding one class only are skipped and counted (``.n_skipped``). Returns
    ``(lo, hi)`` (a :class:`BootstrapCI`; NaNs when every resample was skipped).
    """
    if n_boot < 1:
        raise ValueError(f"n_boot={n_boot} must be >= 1")
    if not 0 < level < 1:
        raise ValueError(f"level={level} must lie in (0, 1)")
    s, y, g = _as_arrays(scores, labels, groups)
    codes = group_codes(g)
    n_groups = int(codes.max()) + 1 if len(codes) else 0
    if n_groups == 0:
        return BootstrapCI(float("nan"), float("nan"), 0, n_boot)
    # Residuals do not depend on which other groups are drawn: compute them once.
    resid = residualise(s, codes)
    members = [np.flatnonzero(codes == k) for k in range(n_groups)]
    rng = np.random.default_rng(seed)
    values: list[float] = []
    skipped = 0
    for _ in range(n_boot):
        pick = rng.integers(0, n_groups, size=n_groups)
        idx = np.concatenate([members[k] for k in pick])
        yb = y[idx]
        if yb.min() == yb.max():
            skipped += 1
            continue
        values.append(auroc(resid[idx], yb))
    if not values:
        return BootstrapCI(float("nan"), float("nan"), 0, skipped)
    alpha = (1 - level) / 2
    lo, hi = np.quantile(values, [alpha, 1 - alpha])
    return BootstrapCI(float(lo), float(hi), len(values), skipped)


def single_label_groups(labels: ArrayLike, groups: Sequence | np.ndarray) -> int:
    """How many groups hold one label only (they add no within-problem contrast)."""
    y = np.asarray(labels).astype(int)
    codes = group_codes(groups)
    pos = np.bincount(codes, weights=y)
    cnt = np.bincount(codes)
    return int(((pos == 0) | (pos == cnt)).sum())
