"""The loss benchmark (``results/bench/loss.json``) for the Performance page.

Each implementation of ``python -m pwopsd.bench loss`` against its reference
(:data:`pwopsd.bench.loss.ORACLE_OF`): speed-up, memory above the inputs as a fraction of the
reference's, gradient error; the benchmark's own target checks; a bar figure of the ratios.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd

from pwopsd.bench.loss import ORACLE_OF
from pwopsd.perf.fmt import fmt_percent, fmt_ratio, fmt_sig

IMPL_LABELS = {
    "oracle": "reference, from logits",
    "chunked": "chunked",
    "triton": "Triton",
    "oracle_linear": "reference, from hidden states",
    "fused_linear": "fused linear",
}
"""How the page names each implementation of ``python -m pwopsd.bench loss``."""

LOSS_SETTING_LABELS = {
    "vocab": "vocabulary size V",
    "batch": "batch B (rows)",
    "seq": "sequence length T",
    "hidden": "hidden size H (fused-linear pair)",
    "chunk_size": "chunk size (tokens)",
    "temperature": "distillation temperature",
    "tau_clip": "tau_clip",
    "seed": "input seed",
    "device": "device",
    "compile": "torch.compile the chunk body",
    "weight_grad": "gradient of the lm_head weight",
    "row_lengths": "valid tokens per row",
    "reduction": "reduction",
    "dtype": "dtype",
}


def memory_above_inputs(impl_result: Mapping[str, Any]) -> float | None:
    """Bytes of peak memory above the inputs (CUDA when measured on a GPU, else RSS)."""
    if impl_result.get("peak_cuda_bytes") is not None:
        return impl_result["peak_cuda_bytes"] - impl_result["baseline_cuda_bytes"]
    if impl_result.get("peak_rss_bytes") is None:
        return None
    return impl_result["peak_rss_bytes"] - impl_result["baseline_rss_bytes"]


def _ok(result: Mapping[str, Any] | None) -> bool:
    return result is not None and "error" not in result and result.get("seconds") is not None


def loss_ratios(bench: Mapping[str, Any]) -> pd.DataFrame:
    """One row per implementation measured against a reference that also ran: speed-up
    (reference seconds / seconds) and memory fraction (memory above inputs / the reference's)."""
    impls = bench["impls"]
    rows = []
    for name, r in impls.items():
        ref_name = ORACLE_OF.get(name, name)
        ref = impls.get(ref_name)
        if ref_name == name or not (_ok(r) and _ok(ref)):
            continue
        mem, ref_mem = memory_above_inputs(r), memory_above_inputs(ref)
        rows.append(
            {
                "implementation": name,
                "reference": ref_name,
                "seconds": r["seconds"],
                "reference_seconds": ref["seconds"],
                "speedup": ref["seconds"] / r["seconds"],
                "memory_bytes": mem,
                "reference_memory_bytes": ref_mem,
                "memory_fraction": None if mem is None or not ref_mem else mem / ref_mem,
                "max_rel_grad_err": r.get("max_rel_grad_err"),
            }
        )
    return pd.DataFrame(rows).set_index("implementation") if rows else pd.DataFrame()


def loss_table(bench: Mapping[str, Any]) -> pd.DataFrame:
    """Every implementation, formatted: time, speed-up, memory above inputs, its fraction of
    the reference's, gradient error against the reference."""
    ratios = loss_ratios(bench)
    rows = []
    for name, r in bench["impls"].items():
        label = IMPL_LABELS.get(name, name)
        if not _ok(r):
            rows.append({"implementation": label, "time (s)": f"failed: {(r or {}).get('error')}"})
            continue
        mem = memory_above_inputs(r)
        row = {
            "implementation": label,
            "compared with": "(is the reference)",
            "time (s)": fmt_sig(r["seconds"]),
            "speed-up": "1x",
            "memory above inputs (GiB)": "n/a" if mem is None else fmt_sig(mem / 2**30),
            "memory fraction": "100%",
            "max rel. gradient error": "0 (is the reference)",
        }
        if name in ratios.index:
            q = ratios.loc[name]
            err = q["max_rel_grad_err"]
            row |= {
                "compared with": IMPL_LABELS.get(q["reference"], q["reference"]),
                "speed-up": fmt_ratio(q["speedup"]),
                "memory fraction": fmt_percent(q["memory_fraction"]),
                "max rel. gradient error": "n/a" if pd.isna(err) else f"{err:.2e}",
            }
        elif ORACLE_OF.get(name, name) != name:
            row |= {"compared with": "reference missing", "speed-up": "n/a"}
            row |= {"memory fraction": "n/a", "max rel. gradient error": "n/a"}
        rows.append(row)
    return pd.DataFrame(rows).set_index("implementation").fillna("")


def plot_loss_ratios(bench: Mapping[str, Any]) -> plt.Figure:
    """Horizontal bars: speed-up (left) and memory fraction (right) against the reference;
    the dashed line is the reference itself."""
    ratios = loss_ratios(bench)
    labels = [
        f"{IMPL_LABELS.get(n, n)}\nvs {IMPL_LABELS.get(r, r)}"
        for n, r in zip(ratios.index, ratios["reference"])
    ]
    fig, (ax_speed, ax_mem) = plt.subplots(1, 2, figsize=(9, 0.9 + 0.7 * len(ratios)), sharey=True)
    ys = range(len(ratios))
    panels = (
        (ax_speed, ratios["speedup"], 1.0, "speed-up (reference time / time)", fmt_ratio),
        (ax_mem, 100 * ratios["memory_fraction"], 100.0, "memory above inputs (% of reference)",
         lambda v: f"{fmt_sig(v)}%"),
    )  # fmt: skip
    for ax, values, ref, title, fmt in panels:
        ax.barh(
            list(ys), list(values), color="#4D4D4D" if ax is ax_speed else "#B3B3B3", height=0.6
        )
        ax.axvline(ref, color="grey", ls="--", lw=1)
        ax.text(ref, -0.55, "reference", ha="center", va="bottom", fontsize=7, color="grey")
        for y, v in zip(ys, values):
            ax.text(v, y, f" {fmt(v)}", va="center", fontsize=8)
        ax.set_xlim(0, 1.25 * max(ref, *values))
        ax.set_title(title, fontsize=9)
    ax_speed.set_yticks(list(ys))
    ax_speed.set_yticklabels(labels, fontsize=8)
    ax_speed.set_ylim(len(ratios) - 0.4, -0.8)  # first implementation on top, room for the label
    fig.tight_layout()
    return fig


TARGET_LABELS = {
    "speedup": "speed-up",
    "memory_ratio": "memory fraction",
    "grad_err": "max rel. gradient error",
}


def loss_targets_table(bench: Mapping[str, Any]) -> pd.DataFrame:
    """The benchmark's own target checks (``targets`` in loss.json), formatted."""
    rows = []
    for key, t in bench.get("targets", {}).items():
        impl, kind = next(
            ((key.removesuffix(f"_{k}"), k) for k in TARGET_LABELS if key.endswith(f"_{k}")),
            (key, ""),
        )
        value = t["value"]
        shown = {"speedup": fmt_ratio, "memory_ratio": fmt_percent}.get(kind, lambda v: f"{v:.2e}")
        rows.append(
            {
                "check": f"{IMPL_LABELS.get(impl, impl)}: {TARGET_LABELS.get(kind, kind)}",
                "measured": shown(value),
                "target": t.get("target", "(reported only)"),
                "met": {True: "yes", False: "NO"}.get(t.get("met"), ""),
            }
        )
    return pd.DataFrame(rows).set_index("check") if rows else pd.DataFrame()
