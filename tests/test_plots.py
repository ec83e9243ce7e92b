"""Figures: one colour per method across figures, legends outside the axes, the paper's values
on the bars, and training losses of different objectives on different axes."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
from matplotlib.colors import to_hex  # noqa: E402

from pwopsd import curves, plots, tables  # noqa: E402
from pwopsd.vocab import FACTORIAL_CELLS, SCHEDULES, TABLE_ROWS  # noqa: E402

BENCH = [{"name": "toy_math500", "label": "Toy MATH-500"},
         {"name": "toy_aime24", "label": "Toy AIME 2024"}]  # fmt: skip


def _row(family: str, run: str | None, method: str, label: str, value: float, **factors) -> dict:
    s = {"mean": value, "sd": 0.01}
    return {"key": f"{family}/{run or method}", "label": label, "family": family,
            "method": method, "run": run, "factors": factors,
            "scores": {b["name"]: {"avg": s, "pass": s, "maj": s} for b in BENCH}}  # fmt: skip


def _metrics(loss: float, fkl: float | None) -> list[dict]:
    return [{"step": k, "loss": loss / k, "fkl_token_mean": fkl, "completion_len_mean": 50.0}
            for k in (1, 2, 3)]  # fmt: skip


def _table(rows: list[dict], losses: dict[str, float] | None = None) -> dict:
    """Two training seeds of ``rows``; ``losses``: row key -> its step-1 loss (a run each)."""
    per_seed = []
    for seed in (1, 2):
        runs = {k: {"metrics": _metrics(v * seed, None if "eopd" in k or "reopold" in k else 0.01)}
                for k, v in (losses or {}).items()}  # fmt: skip
        per_seed.append({"section": "s", "seed": seed, "benchmarks": BENCH, "rows": rows,
                         "sampling": {"n": 12}, "eval_seeds": [seed], "runs": runs,
                         "provenance": {"profile": "toy"}})  # fmt: skip
    return tables.aggregate(per_seed)


MAIN = [
    _row("qwen3", None, "base", "Base", 0.5),
    _row("qwen3", "opsd", "opsd", "OPSD", 0.8),
    _row("qwen3", "eopd", "eopd", "EOPD", 0.7),
    _row("qwen3", "reopold", "reopold", "REOPOLD", 0.7),
    _row("qwen3", "pw_opsd_moderate", "pw_opsd", "PW-OPSD Moderate", 0.75),
]
SWEEP = [
    _row("qwen3", "opsd", "opsd", "OPSD", 0.8),
    _row("qwen3", "pw_opsd_mild", "pw_opsd", "PW-OPSD Mild", 0.78),
    _row("qwen3", "pw_opsd_moderate", "pw_opsd", "PW-OPSD Moderate", 0.75),
]
LOSSES = {"qwen3/opsd": 0.02, "qwen3/eopd": 0.03, "qwen3/reopold": -0.01,
          "qwen3/pw_opsd_moderate": 0.01}  # fmt: skip


def _legend_colors(fig: plt.Figure) -> dict[str, str]:
    """Legend label -> the colour of its handle."""
    (legend,) = fig.legends
    out = {}
    for text, handle in zip(legend.get_texts(), legend.legend_handles, strict=True):
        color = handle.get_facecolor() if hasattr(handle, "get_height") else handle.get_color()
        out[text.get_text()] = to_hex(color)
    return out


def test_the_palette_names_every_method_once_and_each_colour_once() -> None:
    keys = [*TABLE_ROWS[:4], *(f"pw_opsd_{s}" for s in SCHEDULES), "uniform_per_sequence",
            "position_global"]  # fmt: skip
    assert set(keys) <= set(plots.METHOD_COLORS)
    colors = [to_hex(c) for c in plots.METHOD_COLORS.values()]
    assert len(set(colors)) == len(colors), "two methods share a colour"
    assert to_hex(plots.PAPER_COLOR) not in colors
    # a run, a table key, a control, a factorial cell with its schedule, bare PW-OPSD
    assert plots.palette_key("qwen3/pw_opsd_aggressive_matched") == "pw_opsd_aggressive"
    assert plots.palette_key("position_global_moderate") == "position_global"
    assert plots.palette_key({"run": None, "method": "base"}) == "base"
    assert plots.palette_key("pw_opsd") == "pw_opsd_moderate"
    assert set(FACTORIAL_CELLS) - {"uniform_global", "position_per_sequence"} <= {
        plots.palette_key(c) for c in FACTORIAL_CELLS
    }
    # a method the palette does not know keeps one colour, not one of the palette's
    assert plots.method_color("new_method") == plots.method_color("llama/new_method")
    assert plots.method_color("new_method") in plots.FALLBACK_COLORS


def test_a_method_has_the_same_colour_in_every_figure() -> None:
    main, sweep = _table(MAIN, LOSSES), _table(SWEEP)
    figures = {
        "main bars": _legend_colors(plots.plot_rows(main)),
        "sweep bars": _legend_colors(plots.plot_rows(sweep)),
        "main curves": _legend_colors(curves.plot_training_curves(main)),
    }
    for label, key in (("OPSD", "opsd"), ("PW-OPSD Moderate", "pw_opsd_moderate")):
        seen = {name: colors[label] for name, colors in figures.items()}
        assert set(seen.values()) == {plots.METHOD_COLORS[key].lower()}, (label, seen)
    assert figures["main bars"]["EOPD"] == plots.METHOD_COLORS["eopd"].lower()
    assert figures["sweep bars"]["PW-OPSD Mild"] == plots.METHOD_COLORS["pw_opsd_mild"].lower()
    plt.close("all")


def _overlaps(a, b) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


@pytest.mark.parametrize("kind", ["rows", "facets", "curves", "schedules"])
def test_no_legend_covers_an_axes(kind: str) -> None:
    main = _table(MAIN, LOSSES)
    fig = {
        "rows": lambda: plots.plot_rows(main),
        "facets": lambda: plots.plot_rows(
            _table([*SWEEP, _row("llama", "opsd", "opsd", "OPSD", 0.6)]), group_by_family=True
        ),
        "curves": lambda: curves.plot_training_curves(main),
        "schedules": lambda: plots.plot_schedules(),
    }[kind]()
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    assert fig.legends, "the legend belongs to the figure, outside the axes"
    for legend in fig.legends:
        box = legend.get_window_extent(renderer)
        for ax in fig.axes:
            if ax.get_visible():
                assert not _overlaps(box, ax.get_window_extent(renderer)), kind
    plt.close(fig)


def test_bars_mark_the_papers_value_where_it_has_one() -> None:
    fig = plots.plot_rows(_table(MAIN))
    ticks = {round(seg[0][1], 2) for coll in fig.axes[0].collections
             for seg in coll.get_segments() if len(seg) == 2 and seg[0][1] == seg[1][1]}  # fmt: skip
    opsd = tables.published_row("qwen3", "OPSD")
    assert opsd["scores"]["MATH-500"]["mean"] in ticks
    assert opsd["mean"] in ticks  # the mean of the four, over the "mean" group
    assert any(t.startswith("paper") for t in _legend_colors(fig))
    # the base model has no published row: five methods, four with a paper value per group
    assert len(ticks) >= 4
    plt.close(fig)


def test_losses_of_different_objectives_never_share_an_axis() -> None:
    fig = curves.plot_training_curves(_table(MAIN, LOSSES))
    titles = {ax.get_title(): ax for ax in fig.axes if ax.get_visible()}
    loss_panels = {t: ax for t, ax in titles.items() if t.startswith("training loss")}
    assert set(loss_panels) == {
        "training loss: clipped forward KL",
        "training loss: EOPD",
        "training loss: REOPOLD",
    }
    colors = {t: {to_hex(line.get_color()) for line in ax.get_lines() if len(line.get_xdata()) > 2}
              for t, ax in loss_panels.items()}  # fmt: skip
    assert colors["training loss: REOPOLD"] == {plots.METHOD_COLORS["reopold"].lower()}
    assert colors["training loss: clipped forward KL"] == {
        plots.METHOD_COLORS["opsd"].lower(),
        plots.METHOD_COLORS["pw_opsd_moderate"].lower(),
    }
    # the line is the mean over the two seeds, the band their min-max
    ax = loss_panels["training loss: REOPOLD"]
    (line,) = [ln for ln in ax.get_lines() if len(ln.get_xdata()) > 2]
    assert line.get_ydata()[0] == pytest.approx((-0.01 - 0.02) / 2)
    plt.close(fig)
