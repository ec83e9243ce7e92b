"""A position schedule fitted to the diagnostic (issue 20, "a schedule fitted to the diagnostic").

PW-OPSD's premise is that a teacher-disagreement position is *unreliable* where it is more often
real uncertainty (no forced child recovers) than benign diversity. The diagnostic measures that
directly: Figure 1's files (``figure1.seed<k>.json``) hold the normalised position u of every
labelled candidate, per label. From them:

1. :func:`reliability_curve`: per position bin, ``P(real | u) = n_real / (n_real + n_diversity)``
   (gray candidates excluded, counts pooled over the seeds' files), the reliability
   ``1 - P(real | u)`` and the target weight, that reliability rescaled to a maximum of 1 over
   the bins that hold candidates (PW-OPSD's weights top out at 1);
2. :func:`fit_schedule`: ``(w_min, c, s)`` of ``w(u) = w_min + (1 - w_min) sigmoid((u - c) / s)``
   (PROTOCOL sec. 2) by least squares weighted by each bin's candidate count, within the range
   :func:`pwopsd.config.check_schedule` allows (``w_min``, ``c`` in [0, 1]; ``s`` in
   [:data:`S_MIN`, :data:`S_MAX`]): a grid over (c, s) with ``w_min`` solved in closed form,
   then a bounded ``scipy.optimize.least_squares`` refinement from the best grid point;
3. :func:`save_fitted_schedule` writes ``fitted_schedule.json`` beside the diagnostic's results
   (with provenance and the SHA-256 of every input file); :func:`plot_fitted_schedule` draws it
   against the four named schedules.

The sigmoid only rises (s > 0): a measured reliability that falls with position fits as a
near-flat schedule (``w_min`` near 1), which is the honest reading of such a diagnostic.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from scipy.optimize import least_squares

from pwopsd.config import RESULTS_DIR, check_schedule
from pwopsd.provenance import write_results
from pwopsd.vocab import SCHEDULE_NOTES, SCHEDULES

S_MIN = 0.01
"""Narrowest transition the fit may pick (a step at the 1/100 resolution of u)."""
S_MAX = 1.0
"""Widest transition the fit may pick (beyond it the sigmoid is near-linear over [0, 1])."""
FILE_NAME = "fitted_schedule.json"
"""The fitted schedule's file, beside the diagnostic's results."""
DECIMALS = 3
"""The schedule PW-OPSD trains with is the fit rounded to this many decimals (a stable run name)."""


def sigmoid_schedule(u: np.ndarray, w_min: float, c: float, s: float) -> np.ndarray:
    """``w(u) = w_min + (1 - w_min) sigmoid((u - c) / s)`` (PROTOCOL sec. 2), numpy, any shape."""
    z = np.clip((np.asarray(u, dtype=float) - c) / s, -500.0, 500.0)
    return w_min + (1.0 - w_min) / (1.0 + np.exp(-z))


def figure_files(folder: Path) -> list[Path]:
    """The full-configuration ``figure1.seed<k>.json`` files of a diagnostic folder, by seed."""
    found = [(int(m[1]), p) for p in folder.glob("figure1.seed*.json")
             if (m := re.fullmatch(r"figure1\.seed(\d+)\.json", p.name))]  # fmt: skip
    return [p for _, p in sorted(found)]


def reliability_curve(
    figures: list[dict[str, Any]], edges: list[float] | None = None
) -> dict[str, list[float]]:
    """Per position bin: centre, candidate counts, ``P(real | u)``, reliability and the target.

    ``figures`` are parsed ``figure1`` files (their ``series.<label>.u`` lists); ``edges``
    default to the first file's. Counts are pooled over the files. Bins without a labelled
    candidate are left out. The target is the reliability divided by its maximum over the bins.
    """
    if not figures:
        raise ValueError("no diagnostic figure files to fit to")
    edges = list(edges if edges is not None else figures[0]["edges"])
    real = np.zeros(len(edges) - 1)
    diversity = np.zeros(len(edges) - 1)
    for fig in figures:
        real += np.histogram(fig["series"]["real_uncertain"]["u"], bins=edges)[0]
        diversity += np.histogram(fig["series"]["diversity"]["u"], bins=edges)[0]
    n = real + diversity
    keep = n > 0
    if not keep.any():
        raise ValueError("the diagnostic files hold no labelled candidate")
    p_real = real[keep] / n[keep]
    reliability = 1.0 - p_real
    top = reliability.max()
    target = reliability / top if top > 0 else np.ones_like(reliability)
    centres = (np.asarray(edges[:-1]) + np.asarray(edges[1:])) / 2
    return {
        "u": centres[keep].tolist(),
        "n_real_uncertain": real[keep].astype(int).tolist(),
        "n_diversity": diversity[keep].astype(int).tolist(),
        "p_real": p_real.tolist(),
        "reliability": reliability.tolist(),
        "target": target.tolist(),
        "weight": n[keep].tolist(),
    }


@dataclass(frozen=True)
class ScheduleFit:
    """A least-squares fit of the sigmoid schedule to a target curve."""

    w_min: float
    c: float
    s: float
    rmse: float
    """Root of the weighted mean squared residual (weights normalised to sum to 1)."""

    @property
    def schedule(self) -> tuple[float, float, float]:
        return self.w_min, self.c, self.s


def _w_min_closed_form(g: np.ndarray, y: np.ndarray, wt: np.ndarray) -> np.ndarray:
    """Best ``w_min`` in [0, 1] per row of sigmoid values ``g`` [K, n]: w = g + w_min (1 - g)
    is linear in w_min, so the weighted least-squares optimum is a ratio (then clipped)."""
    a = 1.0 - g  # [K, n]
    num = (wt * a * (y - g)).sum(-1)
    den = (wt * a * a).sum(-1)
    safe = np.where(den > 0, den, 1.0)
    return np.clip(np.where(den > 0, num / safe, 1.0), 0.0, 1.0)


def fit_schedule(
    u: list[float] | np.ndarray,
    target: list[float] | np.ndarray,
    weight: list[float] | np.ndarray | None = None,
    *,
    grid_c: int = 101,
    grid_s: int = 60,
) -> ScheduleFit:
    """Weighted least squares of ``w(u; w_min, c, s)`` to ``target`` (see the module docstring).

    Bounds: ``w_min``, ``c`` in [0, 1], ``s`` in [S_MIN, S_MAX]; the result passes
    :func:`pwopsd.config.check_schedule`. Deterministic (grid, then a local refinement).
    """
    u_arr = np.asarray(u, dtype=float)
    y = np.asarray(target, dtype=float)
    wt = np.ones_like(y) if weight is None else np.asarray(weight, dtype=float)
    if u_arr.shape != y.shape or wt.shape != y.shape or u_arr.size == 0:
        raise ValueError("u, target and weight must be non-empty and of one length")
    wt = wt / wt.sum()
    cs = np.linspace(0.0, 1.0, grid_c)
    ss = np.geomspace(S_MIN, S_MAX, grid_s)
    cc, sg = (a.ravel() for a in np.meshgrid(cs, ss, indexing="ij"))  # [K]
    g = 1.0 / (1.0 + np.exp(-np.clip((u_arr[None] - cc[:, None]) / sg[:, None], -500, 500)))
    w_min = _w_min_closed_form(g, y, wt)  # [K]
    sse = (wt * (w_min[:, None] + (1 - w_min[:, None]) * g - y) ** 2).sum(-1)  # [K]
    best = int(np.argmin(sse))
    start = np.array([w_min[best], cc[best], sg[best]])

    def residual(x: np.ndarray) -> np.ndarray:
        return np.sqrt(wt) * (sigmoid_schedule(u_arr, *x) - y)

    lo, hi = np.array([0.0, 0.0, S_MIN]), np.array([1.0, 1.0, S_MAX])
    refined = least_squares(residual, np.clip(start, lo, hi), bounds=(lo, hi), method="trf")
    x = refined.x if (refined.fun**2).sum() <= sse[best] else start
    w, c, s = (float(v) for v in np.clip(x, lo, hi))
    check_schedule(w, c, s)
    rmse = float(np.sqrt((residual(np.array([w, c, s])) ** 2).sum()))
    return ScheduleFit(w, c, s, rmse)


def rounded(fit: ScheduleFit) -> tuple[float, float, float]:
    """The schedule PW-OPSD trains with: the fit rounded to :data:`DECIMALS` (s >= S_MIN)."""
    w, c, s = (round(v, DECIMALS) for v in fit.schedule)
    return w, c, max(s, S_MIN)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fit_from_diagnostic(folder: Path | None = None, profile: str = "toy") -> dict[str, Any]:
    """The fit to a diagnostic folder's figure files (default ``results/<profile>/diagnostic``):
    curve, fit, the rounded schedule to train with, and the inputs' names and SHA-256."""
    folder = folder or RESULTS_DIR / profile / "diagnostic"
    files = figure_files(folder)
    if not files:
        raise FileNotFoundError(
            f"no figure1.seed<k>.json in {folder}: run the diagnostic first "
            "(papermill notebooks/diagnostic.ipynb out.ipynb -p seed 1)"
        )
    curve = reliability_curve([json.loads(p.read_text()) for p in files])
    fit = fit_schedule(curve["u"], curve["target"], curve["weight"])
    return {
        "fit": asdict(fit),
        "schedule": list(rounded(fit)),
        "curve": curve,
        "sources": {p.name: _sha256(p) for p in files},
        "bounds": {"w_min": [0.0, 1.0], "c": [0.0, 1.0], "s": [S_MIN, S_MAX]},
        "method": "weighted least squares of w(u) to (1 - P(real | u)) / max, weights = "
        "labelled candidates per bin; grid over (c, s), closed-form w_min, then "
        "scipy.optimize.least_squares",
    }


def save_fitted_schedule(
    profile: str = "toy", folder: Path | None = None, out: Path | None = None
) -> dict[str, Any]:
    """Fit (:func:`fit_from_diagnostic`) and write ``fitted_schedule.json`` (default: beside the
    diagnostic's results) with provenance. An existing file fitted to the same input files
    (same SHA-256) is reused, not rewritten. Returns the file's content."""
    folder = folder or RESULTS_DIR / profile / "diagnostic"
    out = out or folder / FILE_NAME
    start = time.time()
    result = fit_from_diagnostic(folder, profile)
    if out.exists():
        have = json.loads(out.read_text())
        if have.get("sources") == result["sources"]:
            return have
    write_results(out, result, profile=profile, wall_seconds=time.time() - start)
    return json.loads(out.read_text())


def load_or_fit(profile: str = "toy", folder: Path | None = None) -> dict[str, Any] | None:
    """The saved fit, else a fit in memory from the diagnostic's files (nothing written); None
    when the diagnostic has no results."""
    folder = folder or RESULTS_DIR / profile / "diagnostic"
    if (folder / FILE_NAME).exists():
        return json.loads((folder / FILE_NAME).read_text())
    try:
        return fit_from_diagnostic(folder, profile)
    except FileNotFoundError:
        return None


def plot_fitted_schedule(result: dict[str, Any]) -> plt.Figure:
    """The measured target (marker area ~ candidates per bin), the fitted schedule and the four
    named schedules (:data:`pwopsd.vocab.SCHEDULES`)."""
    u = np.linspace(0.0, 1.0, 201)
    fig, ax = plt.subplots(figsize=(7.5, 3.6))
    for name, (w_min, c, s) in SCHEDULES.items():
        ours = " (ours)" if SCHEDULE_NOTES[name].startswith("our choice") else ""
        ax.plot(u, sigmoid_schedule(u, w_min, c, s), linewidth=1, alpha=0.7,
                label=f"{name.capitalize()}{ours} ({w_min:g}, {c:g}, {s:g})")  # fmt: skip
    w_min, c, s = result["schedule"]
    ax.plot(u, sigmoid_schedule(u, w_min, c, s), color="black", linewidth=2.2,
            label=f"fitted ({w_min:g}, {c:g}, {s:g})")  # fmt: skip
    curve = result["curve"]
    sizes = 200 * np.asarray(curve["weight"]) / max(curve["weight"])
    ax.scatter(curve["u"], curve["target"], s=sizes + 10, color="black", marker="o",
               facecolors="none", label="measured: (1 - P(real | u)) / max")  # fmt: skip
    ax.set_xlabel("normalised position u = (i - 0.5) / L")
    ax.set_ylabel("token weight w(u)")
    ax.set_ylim(-0.05, 1.08)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize=8)
    fig.tight_layout()
    return fig
