"""Phase G statistics on synthetic data with planted effects (issue 11, "Checks")."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from pwopsd.diagnostic import auprc, cluster_bootstrap_ci, residual_auroc
from pwopsd.diagnostic.stats import auroc, residualise, single_label_groups


def _planted(rng, n_groups, per_group, d, offset_sd=0.0):
    """Balanced groups (half label 1), score = d*label + noise + a per-group offset."""
    labels = np.tile(np.r_[np.ones(per_group // 2), np.zeros(per_group - per_group // 2)], n_groups)
    groups = np.repeat(np.arange(n_groups), per_group)
    offsets = rng.normal(0, offset_sd, n_groups)[groups]
    scores = d * labels + rng.normal(0, 1, len(labels)) + offsets
    return scores, labels.astype(int), groups


def test_auroc_matches_sklearn_with_ties():
    rng = np.random.default_rng(0)
    s = rng.integers(0, 5, 200).astype(float)  # many ties
    y = rng.integers(0, 2, 200)
    assert auroc(s, y) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert auroc([1.0, 1.0, 1.0], [1, 0, 1]) == 0.5


def test_no_sign_flip():
    s = np.arange(10.0)
    y = (s < 5).astype(int)  # real uncertainty at low scores
    assert residual_auroc(s, y, np.zeros(10)) == 0.0
    assert residual_auroc(-s, y, np.zeros(10)) == 1.0


def test_auprc_matches_sklearn():
    rng = np.random.default_rng(1)
    s = rng.normal(size=300)
    y = (s + rng.normal(size=300) > 0.5).astype(int)
    assert auprc(s, y) == pytest.approx(average_precision_score(y, s), abs=1e-12)
    s_t = np.round(s)  # ties: one step per distinct score, as sklearn
    assert auprc(s_t, y) == pytest.approx(average_precision_score(y, s_t), abs=1e-12)


def test_planted_position_effect_is_recovered():
    # Position-like score: real uncertainty sits later in the solution (d = 1.3 -> AUROC ~0.82)
    rng = np.random.default_rng(2)
    s, y, g = _planted(rng, n_groups=2000, per_group=4, d=1.3)
    truth = _population_value(1.3, 4)
    assert residual_auroc(s, y, g) == pytest.approx(truth, abs=0.015)
    assert 0.78 < truth < 0.86


def test_planted_offset_is_removed_by_residualisation():
    # Harder problems have higher scores AND more real-uncertain candidates, but within a
    # problem the score says nothing: the raw AUROC is high, the residual one ~0.5.
    rng = np.random.default_rng(3)
    n_groups, per = 400, 6
    groups = np.repeat(np.arange(n_groups), per)
    hardness = rng.uniform(0, 1, n_groups)
    labels = (rng.uniform(0, 1, n_groups * per) < hardness[groups]).astype(int)
    scores = 5 * hardness[groups] + rng.normal(0, 0.3, n_groups * per)
    assert auroc(scores, labels) > 0.75
    assert residual_auroc(scores, labels, groups) == pytest.approx(0.5, abs=0.04)
    # A planted within-problem effect survives any per-problem offset.
    s, y, g = _planted(rng, n_groups=1000, per_group=4, d=1.3, offset_sd=10.0)
    assert residual_auroc(s, y, g) == pytest.approx(_population_value(1.3, 4), abs=0.02)
    assert np.allclose(np.bincount(g, weights=residualise(s, g)), 0.0, atol=1e-9)


def _population_value(d: float, per_group: int) -> float:
    # The residualised AUROC of the balanced design, by a large simulation (fixed seed).
    rng = np.random.default_rng(12345)
    s, y, g = _planted(rng, n_groups=50_000, per_group=per_group, d=d)
    return residual_auroc(s, y, g)


def test_bootstrap_interval_covers_planted_value_at_nominal_rate():
    truth = _population_value(1.0, 4)
    rng = np.random.default_rng(4)
    reps, hits = 120, 0
    for rep in range(reps):
        s, y, g = _planted(rng, n_groups=30, per_group=4, d=1.0, offset_sd=1.0)
        lo, hi = cluster_bootstrap_ci(s, y, g, n_boot=200, seed=rep)
        hits += lo <= truth <= hi
    rate = hits / reps
    assert 0.85 <= rate <= 0.995, f"coverage {rate:.2f} for a nominal 0.95"


def test_bootstrap_skips_and_counts_one_class_resamples():
    # Two groups, each with one label only: many resamples draw one group twice.
    s = np.array([0.1, 0.2, 0.9, 0.8])
    y = np.array([0, 0, 1, 1])
    g = np.array(["a", "a", "b", "b"])
    ci = cluster_bootstrap_ci(s, y, g, n_boot=400, seed=0)
    assert ci.n_skipped > 100 and ci.n_used + ci.n_skipped == 400
    lo, hi = ci
    assert lo == hi == 0.5  # residualised within single-label groups: all ties
    assert single_label_groups(y, g) == 2
    # Every resample one-class: NaN interval, all counted.
    ci = cluster_bootstrap_ci([0.1, 0.2], [1, 1], ["a", "b"], n_boot=10)
    assert np.isnan(ci.lo) and ci.n_skipped == 10


def test_bootstrap_is_deterministic_and_validates():
    rng = np.random.default_rng(5)
    s, y, g = _planted(rng, 20, 4, 1.0)
    assert cluster_bootstrap_ci(s, y, g, n_boot=50, seed=7) == cluster_bootstrap_ci(
        s, y, g, n_boot=50, seed=7
    )
    with pytest.raises(ValueError, match="labels"):
        residual_auroc([0.1, 0.2], [0, 2], [0, 0])
    with pytest.raises(ValueError, match="n_boot"):
        cluster_bootstrap_ci(s, y, g, n_boot=0)
    assert np.isnan(residual_auroc([0.1, 0.2], [1, 1], [0, 1]))
