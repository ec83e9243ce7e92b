"""Engine start-up (``results/bench/engine_startup.json``, written by
``python -m pwopsd.bench engine --compare-startup``) for the Performance page."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from pwopsd.perf.fmt import fmt_sig


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
