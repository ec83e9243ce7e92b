"""The schedule fitted to the diagnostic (issue 20): recovery of known (w_min, c, s), bounds,
the results file and its reuse."""

from __future__ import annotations

import json

import matplotlib
import numpy as np
import pytest

from pwopsd.config import check_schedule
from pwopsd.diagnostic import schedule_fit as F

matplotlib.use("Agg")

KNOWN = [(0.25, 0.30, 0.10), (0.05, 0.45, 0.05), (0.6, 0.7, 0.2), (0.1, 0.3, 0.05)]


@pytest.mark.parametrize("params", KNOWN)
def test_fit_recovers_a_known_schedule_from_its_curve(params):
    u = (np.arange(20) + 0.5) / 20
    fit = F.fit_schedule(u, F.sigmoid_schedule(u, *params))
    assert fit.schedule == pytest.approx(params, abs=1e-4)
    assert fit.rmse < 1e-6


def _figure(u_real, u_div, edges):
    return {"edges": list(edges),
            "series": {"real_uncertain": {"u": list(u_real)}, "diversity": {"u": list(u_div)}}}  # fmt: skip


@pytest.mark.parametrize("params", [KNOWN[0], KNOWN[1], KNOWN[3]])
def test_fit_recovers_a_known_schedule_from_labelled_candidates(params):
    """Candidates drawn with P(real | u) = 1 - w(u): reliability is w(u), so the curve built
    from labels (binned, rescaled to max 1, split over three 'seed' files) gives back the
    schedule up to sampling noise. (Schedules whose w is ~1 at the last bin: the rescaling to
    max 1 would otherwise stretch the curve, by design.)"""
    rng = np.random.default_rng(0)
    edges = np.linspace(0.0, 1.0, 21)
    figures = []
    for _ in range(3):
        u = rng.uniform(0.0, 1.0, 100_000)
        real = rng.uniform(size=u.size) < 1.0 - F.sigmoid_schedule(u, *params)
        figures.append(_figure(u[real], u[~real], edges))
    curve = F.reliability_curve(figures)
    assert max(curve["target"]) == 1.0 and len(curve["u"]) == 20
    assert sum(curve["n_real_uncertain"]) + sum(curve["n_diversity"]) == 300_000
    fit = F.fit_schedule(curve["u"], curve["target"], curve["weight"])
    w_min, c, s = params
    assert fit.w_min == pytest.approx(w_min, abs=0.03)
    assert fit.c == pytest.approx(c, abs=0.03)
    assert fit.s == pytest.approx(s, abs=0.3 * s)


def test_reliability_is_one_minus_p_real_and_empty_bins_are_left_out():
    fig = _figure([0.1, 0.1, 0.5], [0.1, 0.1, 0.1, 0.5, 0.5, 0.5], [0.0, 0.25, 0.5, 0.75, 1.0])
    curve = F.reliability_curve([fig])
    assert curve["u"] == [0.125, 0.625]  # bins [0.25, 0.5) and [0.75, 1] hold no candidate
    assert curve["p_real"] == pytest.approx([0.4, 0.25])
    assert curve["reliability"] == pytest.approx([0.6, 0.75])
    assert curve["target"] == pytest.approx([0.8, 1.0])
    assert curve["weight"] == [5.0, 4.0]
    with pytest.raises(ValueError, match="no labelled candidate"):
        F.reliability_curve([_figure([], [], [0.0, 1.0])])


def test_a_falling_reliability_fits_flat_and_within_the_allowed_range():
    """The sigmoid only rises: a reliability that falls with u fits as w_min near the mean."""
    u = np.array([0.1, 0.3, 0.5, 0.7])
    target = np.array([1.0, 0.96, 0.93, 0.9])
    fit = F.fit_schedule(u, target, [4, 3, 2, 1])
    check_schedule(*fit.schedule)
    assert F.S_MIN <= fit.s <= F.S_MAX
    assert fit.w_min == pytest.approx(np.average(target, weights=[4, 3, 2, 1]), abs=0.01)
    check_schedule(*F.rounded(fit))


def test_save_writes_provenance_and_reuses_a_fit_of_the_same_inputs(tmp_path):
    rng = np.random.default_rng(1)
    u = rng.uniform(size=5000)
    real = rng.uniform(size=u.size) < 1.0 - F.sigmoid_schedule(u, 0.25, 0.3, 0.1)
    for seed in (1, 2):
        fig = _figure(u[real], u[~real], np.linspace(0, 1, 11))
        (tmp_path / f"figure1.seed{seed}.json").write_text(json.dumps(fig))
    (tmp_path / "figure1.seed1.max_problems2.json").write_text("not read: a quick look's file")
    first = F.save_fitted_schedule(folder=tmp_path)
    path = tmp_path / F.FILE_NAME
    assert path.exists() and "provenance" in first
    assert sorted(first["sources"]) == ["figure1.seed1.json", "figure1.seed2.json"]
    check_schedule(*first["schedule"])
    again = F.save_fitted_schedule(folder=tmp_path)
    assert again["provenance"]["written_at"] == first["provenance"]["written_at"]
    assert F.load_or_fit(folder=tmp_path) == first
    assert F.load_or_fit(folder=tmp_path / "nothing") is None
    fig = F.plot_fitted_schedule(first)
    assert len(fig.axes[0].lines) == 5  # four named schedules and the fitted one
