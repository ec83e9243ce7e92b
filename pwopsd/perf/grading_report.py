"""The grading benchmark (``results/bench/grading.json``) for the Performance page.

Serial grading against the process pool (samples/s, CPU per sample, cores used, speed-up),
the settings, and what else the benchmark measured in one sentence.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from pwopsd.perf.fmt import fmt_percent, fmt_ratio, fmt_sig, settings_frame


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
