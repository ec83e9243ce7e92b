"""Tables and figures for the book's Performance and Reproduce pages.

Benchmarks (``results/bench/*.json``) become ratios against their reference, readable
settings tables and one-line provenance. Notebook results files become a table of commands,
machines and wall times. The planned cost at paper scale is computed from
:data:`PROTOCOL_PAPER` (numbers from PROTOCOL.md) and :data:`OUR_ESTIMATES` (what PROTOCOL does
not give), so every step of the arithmetic is on the page.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd

from pwopsd.bench.loss import ORACLE_OF
from pwopsd.config import REPO_ROOT, RESULTS_DIR, DiagnosticConfig

# ------------------------------------------------------------------ number formatting


def fmt_sig(x: float | None, digits: int = 3) -> str:
    """``x`` to ``digits`` significant figures ("5.32", "0.948", "19.0"); whole numbers with
    thousands separators once they have more digits than that ("6,503")."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    if x == 0:
        return "0"
    if abs(x) >= 10**digits:
        return f"{round(x):,}"
    text = f"{x:#.{digits}g}"
    return text.rstrip(".") if "e" not in text else f"{x:.{digits - 1}e}"


def fmt_ratio(x: float | None) -> str:
    """A speed ratio: "5.32x"."""
    return "n/a" if x is None else f"{fmt_sig(x)}x"


def fmt_percent(fraction: float | None) -> str:
    """A fraction as a percentage: 0.1898 -> "19.0%"."""
    return "n/a" if fraction is None else f"{fmt_sig(100 * fraction)}%"


def fmt_setting(value: Any) -> str:
    """A configuration value as text: 151936 -> "151,936", True -> "yes", [1, 2] -> "1, 2"."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, str) and value.startswith(f"{REPO_ROOT}/"):
        return value.removeprefix(f"{REPO_ROOT}/")  # a path inside the repository
    if isinstance(value, list | tuple):
        return ", ".join(fmt_setting(v) for v in value)
    return str(value)


# ------------------------------------------------------------------ provenance and settings


def machine_text(hardware: Mapping[str, Any]) -> str:
    """ "2 CPUs, 23.6 GiB RAM" (+ CPU model and GPUs when recorded) from a provenance block."""
    parts = [f"{hardware.get('cpu_count', '?')} CPUs"]
    if hardware.get("processor"):
        parts[0] += f" ({hardware['processor']})"
    if hardware.get("memory_gib") is not None:
        parts.append(f"{hardware['memory_gib']} GiB RAM")
    if hardware.get("gpu"):
        parts.append(f"{hardware.get('gpu_count', 1)}x {hardware['gpu']}")
    return ", ".join(parts)


def commit_text(commit: str | None) -> str:
    """The first 12 characters of a commit, with "(uncommitted changes)" for a -dirty tree."""
    if not commit:
        return "unknown commit"
    short = f"`{commit.removesuffix('-dirty')[:12]}`"
    return short + (" (uncommitted changes)" if commit.endswith("-dirty") else "")


def date_text(written_at: str | None) -> str:
    """ "2026-11-27 15:58 UTC" from an ISO time stamp."""
    if not written_at:
        return "unknown date"
    return written_at[:16].replace("T", " ") + " UTC"


def provenance_line(doc: Mapping[str, Any]) -> str:
    """One sentence: machine, commit, date and wall time of a results file."""
    prov = doc.get("provenance") or {}
    line = (
        f"Measured on {machine_text(prov.get('hardware') or {})}, commit "
        f"{commit_text(prov.get('git_commit'))}, {date_text(prov.get('written_at'))}"
    )
    wall = prov.get("wall_seconds")
    if wall is not None:
        line += f"; {fmt_sig(wall)} s" if wall < 120 else f"; {fmt_sig(wall / 60)} min"
        line += " wall time"
    return line + "."


def flatten_settings(settings: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested settings as one level, keys joined by " / " ("sampling / temperature")."""
    flat: dict[str, Any] = {}
    for key, value in settings.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_settings(value, f"{name} / "))
        else:
            flat[name] = value
    return flat


def setting_label(key: str, labels: Mapping[str, str]) -> str:
    """A flattened key for reading: each part through ``labels``, else with spaces for "_"."""
    if key in labels:
        return labels[key]
    return " / ".join(labels.get(part, part.replace("_", " ")) for part in key.split(" / "))


def settings_frame(
    settings: Mapping[str, Any],
    labels: Mapping[str, str] | None = None,
    sources: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """Setting and value (as text), one row per flattened setting; with ``sources`` (top-level
    key -> where the number comes from) a third column, "source"."""
    labels = labels or {}
    rows = []
    for key, value in flatten_settings(settings).items():
        row = {"setting": setting_label(key, labels), "value": fmt_setting(value)}
        if sources is not None:
            row["source"] = sources.get(key.split(" / ")[0], "")
        rows.append(row)
    columns = ["setting", "value"] + (["source"] if sources is not None else [])
    return pd.DataFrame(rows, columns=columns).set_index("setting")


# ------------------------------------------------------------------ loss benchmark

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
        ax.barh(list(ys), list(values), color="C0" if ax is ax_speed else "C1", height=0.6)
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


def load_average_text(start: list[float] | None, end: list[float] | None, cpus: Any) -> str:
    """ "1-minute load average 4.34 at the start and 4.90 at the end, on 2 CPUs"."""
    if not start or not end:
        return ""
    return (
        f"1-minute load average {start[0]:.2f} at the start and {end[0]:.2f} at the end, "
        f"on {cpus} CPUs"
    )


# ------------------------------------------------------------------ rollout benchmark

ROLLOUT_TARGET_RATIO = 8.0
"""The training issue's target: the vLLM engine's rollouts at least 8x the tokens/s of HF
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
    return f"The engine reaches {reached}; the training issue's target is {target:g}x: {status}."


def plot_rollout(bench: Mapping[str, Any]) -> plt.Figure:
    """Grouped bars of tokens/s per batch size: vLLM engine beside HF generate."""
    frame = rollout_frame(bench)
    fig, ax = plt.subplots(figsize=(5.5, 3))
    xs = range(len(frame))
    width = 0.38
    for offset, col, label in ((-0.2, "engine", "vLLM engine"), (0.2, "hf", "HF generate")):
        bars = ax.bar([x + offset for x in xs], frame[col], width, label=label)
        ax.bar_label(bars, labels=[fmt_sig(v) for v in frame[col]], fontsize=7)
    ax.set_xticks(list(xs))
    ax.set_xticklabels([f"batch {b}" for b in frame.index])
    ax.set_ylabel("generated tokens/s")
    ax.set_ylim(0, 1.15 * frame[["engine", "hf"]].to_numpy().max())
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
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


# ------------------------------------------------------------------ grading benchmark


def grading_table(bench: Mapping[str, Any]) -> pd.DataFrame:
    """Serial grading against the process pool: samples/s, CPU per sample, cores used,
    speed-up over serial."""
    rows = [
        {
            "mode": "serial (this process)",
            "samples/s": fmt_sig(bench["serial_samples_per_s"]),
            "CPU ms per sample": fmt_sig(bench["serial_cpu_ms_per_sample"]),
            "cores used": fmt_sig(bench["serial_cores_used"]),
            "speed-up": "1x",
        },
        {
            "mode": f"process pool ({bench['workers']} workers)",
            "samples/s": fmt_sig(bench["pool_samples_per_s"]),
            "CPU ms per sample": fmt_sig(bench["pool_cpu_ms_per_sample"]),
            "cores used": fmt_sig(bench["pool_cores_used"]),
            "speed-up": fmt_ratio(bench["pool_samples_per_s"] / bench["serial_samples_per_s"]),
        },
    ]
    return pd.DataFrame(rows).set_index("mode")


def grading_settings(bench: Mapping[str, Any]) -> pd.DataFrame:
    """The grading benchmark's configuration as a setting / value table."""
    settings = {
        "pairs graded per round": bench["pairs_per_round"],
        "rounds (serial and pool alternate)": bench["rounds"],
        "pool workers": bench["workers"],
        "timeout per verdict (s)": bench.get("timeout_s"),
        "CPUs on the machine": bench.get("cpu_count"),
        "1-minute load average before": (bench.get("load_average_before") or [None])[0],
        "1-minute load average after": (bench.get("load_average_after") or [None])[0],
    }
    return settings_frame(settings)


def grading_details(bench: Mapping[str, Any]) -> str:
    """What else the grading benchmark measured, in one sentence."""
    rounds = ", ".join(fmt_ratio(r) for r in bench.get("speedup_per_round", []))
    methods = ", ".join(f"{v:,} by {k}" for k, v in sorted(bench.get("methods", {}).items()))
    return (
        f"Speed-up per round: {rounds} (the table shows the medians). The pool starts in "
        f"{fmt_sig(bench['pool_startup_seconds'])} s; {bench['verdict_mismatches']} verdicts "
        f"differ between serial and pool; {bench.get('pool_kills', 0)} workers were killed on "
        f"timeout. {fmt_percent(bench['correct_fraction'])} of the pairs are correct "
        f"(decided: {methods})."
    )


# ------------------------------------------------------------------ engine start-up


def startup_table(startup: Mapping[str, Any]) -> pd.DataFrame:
    """Engine start-up, eager against compiled: ``vllm.LLM(...)`` alone and the whole process."""
    s = startup["seconds"]
    rows = [
        {
            "engine": mode,
            "vllm.LLM(...) (s)": fmt_sig(s.get(mode)),
            "whole process (s)": fmt_sig(s.get(f"{mode}_process")),
        }
        for mode in ("eager", "compiled")
    ]
    return pd.DataFrame(rows).set_index("engine")


# ------------------------------------------------------------------ notebook wall times

TABLE_SECTIONS = ("main_table", "schedule_sweep", "cross_model", "reduction_factorial")
SECTIONS = ("diagnostic", *TABLE_SECTIONS)
"""The five notebooks, in the order ``make results`` runs them."""


def notebook_result_files(results_dir: Path) -> list[tuple[str, int | None, Path]]:
    """(section, seed from the file name or None, path) of every full-configuration results
    file under ``results_dir`` (``results/<profile>``): ``<section>/<section>.seed<k>.json``,
    and for the diagnostic also ``diagnostic/diagnostic.json``. Tagged (scaled) runs are
    skipped."""
    found = []
    for section in SECTIONS:
        folder = Path(results_dir) / section
        pattern = re.compile(rf"{section}\.seed(\d+)\.json")
        for path in sorted(folder.glob(f"{section}*.json")):
            if m := pattern.fullmatch(path.name):
                found.append((section, int(m[1]), path))
            elif section == "diagnostic" and path.name == "diagnostic.json":
                found.append((section, None, path))
    return found


def notebook_runs(results_dir: Path = RESULTS_DIR / "toy") -> pd.DataFrame:
    """One row per (seed, section) with a results file: command, machine, wall time, commit.

    The seed comes from the file name, else from its provenance; a seeded file wins over
    ``diagnostic.json`` for the same seed. ``wall_seconds`` is the unrounded time.
    """
    from pwopsd.plots import load_json

    rows: dict[tuple[int | None, str], dict[str, Any]] = {}
    for section, seed, path in notebook_result_files(results_dir):
        prov = (load_json(path) or {}).get("provenance") or {}
        seed = prov.get("seed") if seed is None else seed
        key = (seed, section)
        if key in rows and rows[key]["from_name"]:
            continue
        rows[key] = {
            "seed": seed,
            "section": section,
            "command": f"make {section} SEED={seed}",
            "machine": machine_text(prov.get("hardware") or {}),
            "wall time (min)": round((prov.get("wall_seconds") or 0) / 60, 1),
            "commit": commit_text(prov.get("git_commit")).replace("`", ""),
            "finished": date_text(prov.get("written_at")),
            "wall_seconds": prov.get("wall_seconds") or 0.0,
            "from_name": path.name != "diagnostic.json",
        }
    order = {s: i for i, s in enumerate(SECTIONS)}
    keys = sorted(rows, key=lambda k: (k[0] if k[0] is not None else -1, order[k[1]]))
    frame = pd.DataFrame([rows[k] for k in keys])
    return frame.drop(columns="from_name") if len(frame) else frame


def notebook_runs_table(runs: pd.DataFrame) -> pd.DataFrame:
    """:func:`notebook_runs` for the page: indexed by seed and section, no raw seconds."""
    if runs.empty:
        return runs
    return runs.drop(columns="wall_seconds").set_index(["seed", "section"])


def wall_time_per_seed(runs: pd.DataFrame) -> pd.DataFrame:
    """Per seed: how many of the five notebooks have results, which are missing, and their
    total wall time in minutes."""
    if runs.empty:
        return pd.DataFrame()
    rows = []
    for seed, group in runs.groupby("seed", sort=True):
        missing = [s for s in SECTIONS if s not in set(group["section"])]
        rows.append(
            {
                "seed": seed,
                "notebooks with results": f"{len(group)} of {len(SECTIONS)}",
                "not yet run": ", ".join(missing) or "none",
                "total wall time (min)": round(group["wall_seconds"].sum() / 60, 1),
            }
        )
    return pd.DataFrame(rows).set_index("seed")


# ------------------------------------------------------------------ planned cost at paper scale

PROTOCOL_PAPER: dict[str, Any] = {
    # PROTOCOL section 3 (Training, paper profile):
    #   "150 optimizer steps", "Effective batch 32 prompts, one rollout each",
    #   "bf16, gradient checkpointing, DeepSpeed ZeRO-2 via accelerate, 4x H100 80GB",
    #   rollout "max_completion_length 1024". Every training run uses the same budget.
    "optimizer_steps": 150,
    "prompts_per_step": 32,
    "gpus_per_run": 4,
    "gpu": "H100 80GB",
    "max_completion_tokens": 1024,
    # PROTOCOL section 4 (Evaluation): "n = 12 samples per problem", "max_new_tokens 38,912",
    # "Three evaluation seeds", benchmarks MATH-500 (500), AIME 2024 (30), AIME 2025 (30),
    # HMMT February 2025 (30).
    "eval_samples_per_problem": 12,
    "eval_seeds": 3,
    "eval_max_new_tokens": 38_912,
    "benchmark_problems": {"math500": 500, "aime24": 30, "aime25": 30, "hmmt25": 30},
    # PROTOCOL section 3: Qwen3-4B (main), DeepSeek-R1-Distill-Llama-8B, Olmo-3-7B-Think.
    "models": {"qwen3": "Qwen3-4B", "llama": "DSR1-Llama-8B", "olmo3": "Olmo-3-7B-Think"},
}
"""The paper's budgets, copied from ../shared/reference/PROTOCOL.md sections 3 and 4 (tests
check them against ``pwopsd.config``'s paper profile)."""

PAPER_SECTION_ROWS: dict[str, list[tuple[str, str]]] = {
    # PROTOCOL section 6 (the published rows) and section 2 (the four schedules, the 2x2
    # reduction factorial), as the section configs in pwopsd/config.py default to them.
    # (family, run): "base" is the untrained model, evaluated but not trained.
    "main_table": [
        ("qwen3", run)
        for run in ("base", "opsd", "eopd", "reopold", "pw_opsd_moderate", "pw_opsd_aggressive")
    ],
    "schedule_sweep": [
        ("qwen3", run)
        for run in (
            "opsd",
            "pw_opsd_mild",
            "pw_opsd_moderate",
            "pw_opsd_sharp",
            "pw_opsd_aggressive",
        )
    ],  # fmt: skip
    "cross_model": [
        (family, run)
        for family in ("qwen3", "llama", "olmo3")
        for run in ("base", "opsd", "pw_opsd_moderate")
    ],
    # uniform/global is OPSD and position/per-sequence is PW-OPSD Moderate (PROTOCOL section 2).
    "reduction_factorial": [
        ("qwen3", run)
        for run in ("opsd", "uniform_per_sequence", "position_global", "pw_opsd_moderate")
    ],
}
"""The rows (checkpoints) each table section evaluates at paper scale, in ``make`` order. A
run that an earlier section trained is reused, not retrained; the same holds for evaluations."""

OUR_ESTIMATES: dict[str, Any] = {
    # Seconds per optimizer step of one run on its 4 GPUs. PROTOCOL gives no time. Our
    # estimate: colocated vLLM samples 8 rollouts of up to 1,024 tokens per GPU (~20-30 s for a
    # 4B model, about twice that for 7-8B), the teacher and student passes with gradient
    # checkpointing take a few seconds, the LoRA merge and weight push ~5-10 s.
    "train_seconds_per_step": {"qwen3": 45, "llama": 80, "olmo3": 75},
    # Mean generated tokens per evaluation sample (thinking mode). PROTOCOL gives only the
    # 38,912-token budget. Our estimate: reasoning models write a few thousand tokens on
    # MATH-500 and 13-16 thousand on the competition sets.
    "eval_mean_tokens": {"math500": 4_000, "aime24": 13_000, "aime25": 14_000, "hmmt25": 16_000},
    # Evaluation decode throughput of vLLM on one H100, bf16, up to 256 sequences at a time,
    # long contexts (generated tokens/s). Our estimate.
    "eval_tokens_per_s_per_gpu": {"qwen3": 6_000, "llama": 3_500, "olmo3": 3_500},
    # Diagnostic: a continuation starts at a candidate inside the spine, so it writes on
    # average this fraction of a spine's length. Our estimate.
    "diagnostic_continuation_fraction": 0.5,
}
"""What PROTOCOL does not give, labelled "our estimate" wherever it is shown."""

COST_LABELS = {
    "optimizer_steps": "optimizer steps per run",
    "prompts_per_step": "prompts per step (one rollout each)",
    "gpus_per_run": "GPUs per training run",
    "gpu": "GPU",
    "max_completion_tokens": "rollout budget (tokens)",
    "eval_samples_per_problem": "evaluation samples per problem",
    "eval_seeds": "evaluation seeds",
    "eval_max_new_tokens": "evaluation budget (tokens per sample)",
    "benchmark_problems": "problems",
    "models / qwen3": "main model (family qwen3)",
    "models / llama": "cross-model (family llama)",
    "models / olmo3": "cross-model (family olmo3)",
    "train_seconds_per_step": "seconds per optimizer step",
    "eval_mean_tokens": "mean tokens per evaluation sample",
    "eval_tokens_per_s_per_gpu": "generated tokens/s on one GPU",
    "diagnostic_continuation_fraction": "diagnostic: continuation length / spine length",
    "math500": "MATH-500",
    "aime24": "AIME 2024",
    "aime25": "AIME 2025",
    "hmmt25": "HMMT 2025",
    **PROTOCOL_PAPER["models"],
}
"""Readable names for :data:`PROTOCOL_PAPER` and :data:`OUR_ESTIMATES` on the page."""

PROTOCOL_SOURCES = {
    "optimizer_steps": "PROTOCOL section 3",
    "prompts_per_step": "PROTOCOL section 3",
    "gpus_per_run": "PROTOCOL section 3",
    "gpu": "PROTOCOL section 3",
    "max_completion_tokens": "PROTOCOL section 3",
    "eval_samples_per_problem": "PROTOCOL section 4",
    "eval_seeds": "PROTOCOL section 4",
    "eval_max_new_tokens": "PROTOCOL section 4",
    "benchmark_problems": "PROTOCOL section 4",
    "models": "PROTOCOL section 3",
}
"""Where each entry of :data:`PROTOCOL_PAPER` is stated."""


def new_rows(
    section_rows: Mapping[str, list[tuple[str, str]]] = PAPER_SECTION_ROWS,
) -> dict[str, list[tuple[str, str]]]:
    """Per section, the rows no earlier section (in the mapping's order) already has."""
    seen: set[tuple[str, str]] = set()
    out = {}
    for section, rows in section_rows.items():
        out[section] = [r for r in rows if r not in seen]
        seen.update(rows)
    return out


def paper_training_cost(
    section_rows: Mapping[str, list[tuple[str, str]]] = PAPER_SECTION_ROWS,
    protocol: Mapping[str, Any] = PROTOCOL_PAPER,
    estimates: Mapping[str, Any] = OUR_ESTIMATES,
) -> pd.DataFrame:
    """GPU-hours of training per section and model: new runs x steps x seconds per step x GPUs
    (one training seed)."""
    steps, gpus = protocol["optimizer_steps"], protocol["gpus_per_run"]
    fresh = new_rows(section_rows)
    rows = []
    for section, all_rows in section_rows.items():
        for family in dict.fromkeys(f for f, _ in all_rows):
            trained = [r for f, r in all_rows if f == family and r != "base"]
            new = [r for f, r in fresh[section] if f == family and r != "base"]
            sec = estimates["train_seconds_per_step"][family]
            rows.append(
                {
                    "section": section,
                    "model": protocol["models"][family],
                    "runs in the table": len(trained),
                    "new runs": len(new),
                    "steps per run": steps,
                    "s per step (our estimate)": sec,
                    "GPUs per run": gpus,
                    "arithmetic": f"{len(new)} x {steps} x {sec} s x {gpus} GPUs / 3600",
                    "GPU-hours": len(new) * steps * sec * gpus / 3600,
                }
            )
    return pd.DataFrame(rows)


def eval_tokens_per_checkpoint(
    protocol: Mapping[str, Any] = PROTOCOL_PAPER, estimates: Mapping[str, Any] = OUR_ESTIMATES
) -> float:
    """Generated tokens to evaluate one checkpoint: seeds x samples x sum over benchmarks of
    problems x mean tokens per sample."""
    per_seed_sample = sum(
        n * estimates["eval_mean_tokens"][b] for b, n in protocol["benchmark_problems"].items()
    )
    return protocol["eval_seeds"] * protocol["eval_samples_per_problem"] * per_seed_sample


def eval_tokens_at_budget(protocol: Mapping[str, Any] = PROTOCOL_PAPER) -> int:
    """Generated tokens to evaluate one checkpoint if every sample used the whole budget."""
    problems = sum(protocol["benchmark_problems"].values())
    return (
        protocol["eval_seeds"]
        * protocol["eval_samples_per_problem"]
        * problems
        * protocol["eval_max_new_tokens"]
    )


def paper_eval_cost(
    section_rows: Mapping[str, list[tuple[str, str]]] = PAPER_SECTION_ROWS,
    protocol: Mapping[str, Any] = PROTOCOL_PAPER,
    estimates: Mapping[str, Any] = OUR_ESTIMATES,
) -> pd.DataFrame:
    """GPU-hours of evaluation per section and model: new checkpoints x tokens per checkpoint /
    tokens/s of one GPU."""
    samples = (
        protocol["eval_seeds"]
        * protocol["eval_samples_per_problem"]
        * sum(protocol["benchmark_problems"].values())
    )
    tokens = eval_tokens_per_checkpoint(protocol, estimates)
    fresh = new_rows(section_rows)
    rows = []
    for section, all_rows in section_rows.items():
        for family in dict.fromkeys(f for f, _ in all_rows):
            new = [r for f, r in fresh[section] if f == family]
            speed = estimates["eval_tokens_per_s_per_gpu"][family]
            rows.append(
                {
                    "section": section,
                    "model": protocol["models"][family],
                    "checkpoints in the table": sum(f == family for f, _ in all_rows),
                    "new checkpoints": len(new),
                    "samples per checkpoint": samples,
                    "tokens per checkpoint (our estimate)": tokens,
                    "tokens/s per GPU (our estimate)": speed,
                    "arithmetic": f"{len(new)} x {tokens / 1e6:.1f}M tokens / {speed:,} tok/s "
                    "/ 3600",
                    "GPU-hours": len(new) * tokens / speed / 3600,
                }
            )
    return pd.DataFrame(rows)


def paper_diagnostic_cost(
    config: DiagnosticConfig | None = None,
    estimates: Mapping[str, Any] = OUR_ESTIMATES,
    protocol: Mapping[str, Any] = PROTOCOL_PAPER,
) -> pd.DataFrame:
    """GPU-hours of the diagnostic's sampling (spines, then at most problems x candidates x
    children x rollouts continuations) on one GPU with the main model; the teacher forwards
    are small beside it. Counts are the notebook's defaults (this project's choice)."""
    cfg = config or DiagnosticConfig()
    spine = sum(estimates["eval_mean_tokens"][p] for p in cfg.pools) / len(cfg.pools)
    continuations = (
        cfg.max_problems
        * cfg.candidates_per_problem
        * cfg.children_per_candidate
        * cfg.rollouts_per_child
    )
    tokens = (
        cfg.max_problems * spine
        + continuations * spine * estimates["diagnostic_continuation_fraction"]
    )
    speed = estimates["eval_tokens_per_s_per_gpu"]["qwen3"]
    row = {
        "section": "diagnostic",
        "model": protocol["models"]["qwen3"],
        "spines": cfg.max_problems,
        "continuations (at most)": continuations,
        "spine tokens (our estimate)": spine,
        "continuation tokens (our estimate)": spine * estimates["diagnostic_continuation_fraction"],
        "tokens/s per GPU (our estimate)": speed,
        "arithmetic": f"({cfg.max_problems} x {spine:,.0f} + {continuations:,} x "
        f"{spine * estimates['diagnostic_continuation_fraction']:,.0f}) tokens / {speed:,} "
        "tok/s / 3600",
        "GPU-hours": tokens / speed / 3600,
    }
    return pd.DataFrame([row])


def paper_cost_summary(
    training: pd.DataFrame | None = None,
    evaluation: pd.DataFrame | None = None,
    diagnostic: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """GPU-hours per section (training, sampling and evaluation, total) and a total row."""
    training = paper_training_cost() if training is None else training
    evaluation = paper_eval_cost() if evaluation is None else evaluation
    diagnostic = paper_diagnostic_cost() if diagnostic is None else diagnostic
    train = training.groupby("section", sort=False)["GPU-hours"].sum()
    sample = pd.concat([diagnostic, evaluation]).groupby("section", sort=False)["GPU-hours"].sum()
    sections = [s for s in SECTIONS if s in set(train.index) | set(sample.index)]
    frame = pd.DataFrame(
        {
            "training GPU-hours": [train.get(s, 0.0) for s in sections],
            "sampling and evaluation GPU-hours": [sample.get(s, 0.0) for s in sections],
        },
        index=pd.Index(sections, name="section"),
    )
    frame["total GPU-hours"] = frame.sum(axis=1)
    frame.loc["all sections"] = frame.sum()
    return frame


def format_cost(frame: pd.DataFrame) -> pd.DataFrame:
    """A cost table for the page: GPU-hours to one decimal, other numbers as whole numbers
    with thousands separators."""
    out = frame.copy()
    for col in out.columns:
        if pd.api.types.is_numeric_dtype(out[col]):
            fmt = "{:,.1f}" if "GPU-hours" in col else "{:,.0f}"
            out[col] = [fmt.format(v) for v in out[col]]
    return out
