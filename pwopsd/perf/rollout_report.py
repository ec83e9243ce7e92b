"""The rollout benchmark (``results/bench/rollout.json``) for the Performance page.

Tokens/s of the vLLM engine against HF ``generate`` per batch size and their ratio against the
the project's target; tokens/s with a LoRA adapter by how it is served; the settings.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd

from pwopsd.perf.fmt import fmt_ratio, fmt_sig, settings_frame
from pwopsd.plots import legend_outside

ROLLOUT_TARGET_RATIO = 8.0
"""The project's target: the vLLM engine's rollouts at least 8x the tokens/s of HF
``generate`` at equal batch."""


def rollout_frame(bench: Mapping[str, Any]) -> pd.DataFrame:
    """Tokens/s of the engine and HF generate per batch size, and their ratio (numbers)."""
    rows = [
        {
            "batch": int(b),
            "engine": v["engine_tokens_per_s"],
            "hf": v["hf_tokens_per_s"],
            "ratio": v["engine_tokens_per_s"] / v["hf_tokens_per_s"],
        }
        for b, v in bench["batches"].items()
    ]
    return pd.DataFrame(rows).set_index("batch").sort_index()


def rollout_table(bench: Mapping[str, Any]) -> pd.DataFrame:
    """:func:`rollout_frame` formatted, with the tokens each backend generated."""
    frame = rollout_frame(bench)
    rows = []
    for b, r in frame.iterrows():
        raw = bench["batches"][str(b)]
        rows.append(
            {
                "batch (prompts)": b,
                "vLLM engine (tokens/s)": fmt_sig(r["engine"]),
                "HF generate (tokens/s)": fmt_sig(r["hf"]),
                "engine / HF": fmt_ratio(r["ratio"]),
                "tokens generated (engine, HF)": f"{fmt_sig(raw.get('engine_tokens'))}, "
                f"{fmt_sig(raw.get('hf_tokens'))}",
            }
        )
    return pd.DataFrame(rows).set_index("batch (prompts)")


def rollout_verdict(bench: Mapping[str, Any], target: float = ROLLOUT_TARGET_RATIO) -> str:
    """The ratio at each batch against the target, in one sentence."""
    frame = rollout_frame(bench)
    parts = [f"{fmt_ratio(r)} at batch {b}" for b, r in frame["ratio"].items()]
    parts[0] = parts[0].replace(" at ", " the tokens/s of HF generate at ", 1)
    reached = ", ".join(parts[:-1]) + (" and " if len(parts) > 1 else "") + parts[-1]
    met = [b for b, r in frame["ratio"].items() if r >= target]
    status = (
        "not met at any batch measured"
        if not met
        else "met at batch " + ", ".join(str(b) for b in met)
    )
    return f"The engine reaches {reached}; the project's target is {target:g}x: {status}."


def plot_rollout(bench: Mapping[str, Any]) -> plt.Figure:
    """Grouped bars of tokens/s per batch size: vLLM engine beside HF generate."""
    frame = rollout_frame(bench)
    fig, ax = plt.subplots(figsize=(7, 3), layout="constrained")
    xs = range(len(frame))
    width = 0.38
    # greys: the method colours (pwopsd.plots.METHOD_COLORS) stay with methods
    for offset, col, label, color in ((-0.2, "engine", "vLLM engine", "#4D4D4D"),
                                      (0.2, "hf", "HF generate", "#B3B3B3")):  # fmt: skip
        bars = ax.bar([x + offset for x in xs], frame[col], width, label=label, color=color)
        ax.bar_label(bars, labels=[fmt_sig(v) for v in frame[col]], fontsize=7)
    ax.set_xticks(list(xs))
    ax.set_xticklabels([f"batch {b}" for b in frame.index])
    ax.set_ylabel("generated tokens/s")
    ax.set_ylim(0, 1.15 * frame[["engine", "hf"]].to_numpy().max())
    legend_outside(fig, *ax.get_legend_handles_labels())
    return fig


def adapter_table(bench: Mapping[str, Any]) -> pd.DataFrame | None:
    """Tokens/s with a LoRA adapter, by how it is served (None when not measured)."""
    a = bench.get("adapter")
    if not a:
        return None
    hf = a["hf_peft_tokens_per_s"]
    rows = [
        ("vLLM engine, adapter merged into its weights (default)", a["merged_tokens_per_s"]),
        ("vLLM engine, adapter as a LoRARequest", a["lora_request_tokens_per_s"]),
        ("HF generate on the peft model", hf),
    ]
    return pd.DataFrame(
        [{"served as": k, "tokens/s": fmt_sig(v), "vs HF generate": fmt_ratio(v / hf)}
         for k, v in rows]
    ).set_index("served as")  # fmt: skip


def adapter_sentence(bench: Mapping[str, Any]) -> str:
    """What merging buys, from the adapter block, in one sentence."""
    a = bench.get("adapter")
    if not a:
        return "_The adapter block was not measured: rerun `python -m pwopsd.bench rollout`._"
    return (
        f"With a rank-{a['lora_r']} adapter at batch {a['batch']}, merging it into the engine's "
        f"weights decodes {fmt_ratio(a['merged_over_lora_request'])} the tokens/s of serving it "
        f"as a LoRARequest and {fmt_ratio(a['merged_over_hf_peft'])} those of HF generate; "
        f"switching the merged engine to a new adapter (merge, reload, one 1-token request) "
        f"took {fmt_sig(a['switch_seconds'])} s."
    )


def rollout_settings(bench: Mapping[str, Any]) -> pd.DataFrame:
    """The rollout benchmark's configuration as a setting / value table."""
    keys = ("model", "sampling", "engine", "hf", "repeats", "torch_threads")
    settings = {k: bench[k] for k in keys if k in bench}
    if "load_average_1min_at_end" in bench:
        settings["1-minute load average at the end"] = bench["load_average_1min_at_end"]
    labels = {"hf": "HF", "repeats": "timed repeats (best kept, after a warm-up)"}
    return settings_frame(settings, labels)
