"""The diagnostic's files on disk: JSONL rows appended one by one, and the run's plan.

Each phase A-E appends one JSON row per finished item, flushed and fsynced before the next,
so a SIGKILL loses at most the rows in flight; a torn last line is ignored on reading and
fenced off on the next append. ``plan.json`` records the settings the files were made with.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from pwopsd.config import ConfigError, DiagnosticConfig
from pwopsd.provenance import model_fingerprint, write_json

# Settings each phase's files depend on (a changed one invalidates that phase and later ones).
_PHASE_KEYS = {
    "A": ("profile", "backend", "pools", "max_problems", "seed", "spine_max_tokens",
          "spine_fallback_tries", "spine_fallback_temperature"),
    "B": ("entropy_top_k", "children_per_candidate"),
    "C": ("plausibility_floor", "min_children", "min_spacing", "candidates_per_problem"),
    "D": ("mc_samples", "mc_dropout", "mc_layers"),
    "E": ("rollouts_per_child", "continuation_temperature", "continuation_top_p",
          "continuation_max_tokens"),
}  # fmt: skip


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Rows of a phase file; a torn (unparsable) row, as a SIGKILL can leave last, is dropped."""
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


class Appender:
    """Append JSON rows to a file, each flushed and fsynced before the next is accepted."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Repair a torn last line: start the next row on a fresh line.
        torn = path.exists() and path.stat().st_size > 0 and not path.read_bytes().endswith(b"\n")
        self.f = path.open("a")
        if torn:
            self.f.write("\n")

    def write(self, row: dict[str, Any]) -> None:
        self.f.write(json.dumps(row, separators=(",", ":")) + "\n")
        self.f.flush()
        os.fsync(self.f.fileno())

    def close(self) -> None:
        self.f.close()

    def __enter__(self) -> Appender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def sample_tag(cfg: DiagnosticConfig) -> str:
    """Name of a run's scratch directory: the seed, then every setting phases A-E depend on
    that differs from its default ("seed1-full" for the default configuration)."""
    default = type(cfg)()
    parts = [f"seed{cfg.seed}"]
    for keys in _PHASE_KEYS.values():
        for k in keys:
            if k in ("profile", "seed"):
                continue
            value = getattr(cfg, k)
            if value != getattr(default, k):
                text = "+".join(map(str, value)) if isinstance(value, list | tuple) else value
                parts.append(f"{k}{text}")
    return "-".join(parts) if len(parts) > 1 else f"{parts[0]}-full"


def check_plan(scratch: Path, cfg: DiagnosticConfig, model: str) -> None:
    """Write ``plan.json`` on a fresh run; on a rerun refuse settings the files were not made with.

    Settings that only F and G read (thresholds, orientation, bootstrap) may change freely.
    The model's fingerprint is part of the plan: a checkpoint retrained in place (same path,
    new weights) does not resume from the old one's spines.
    """
    want = {"model": model, "model_fingerprint": model_fingerprint(model)}
    for keys in _PHASE_KEYS.values():
        want.update({k: getattr(cfg, k) for k in keys})
    path = scratch / "plan.json"
    if path.exists():
        have = json.loads(path.read_text())
        diff = sorted(k for k in want if have.get(k) != want[k])
        if diff:
            shown = ", ".join(f"{k}: files {have.get(k)!r} vs now {want[k]!r}" for k in diff)
            raise ConfigError(
                f"{scratch} holds a diagnostic run made with other settings ({shown}); pass "
                "another out_dir or delete that scratch directory to start afresh"
            )
        return
    write_json(path, want)
