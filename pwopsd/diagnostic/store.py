"""The diagnostic's files on disk: the phase files, the scratch directory's name, the plan.

Each phase A-E appends one JSON row per finished item through :func:`pwopsd.jsonl.append`
(flushed and fsynced before the next), so a SIGKILL loses at most the rows in flight. Files
are read under :func:`pwopsd.jsonl.read`'s rule: a torn last line is dropped (and cut off by
:func:`resume` before a phase appends again); a bad line anywhere else is an error naming it.
``plan.json`` records the settings the files were made with (:func:`check_plan`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pwopsd import jsonl
from pwopsd.config import DiagnosticConfig
from pwopsd.provenance import model_fingerprint

SCRATCH_FORMAT = 2
"""Layout of the phase files, recorded in ``plan.json``: 2 names a problem ``problem_key`` in
every row (1, unrecorded, called it ``pid``); a scratch directory of another layout is refused."""

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


def resume(path: Path) -> list[dict[str, Any]]:
    """The rows a phase already wrote to ``path``; a torn last line (a kill mid-write) is cut
    off the file, so the rows the phase appends next start on a clean line."""
    return jsonl.read(path, repair=True)


def settings_tag(cfg: DiagnosticConfig) -> str:
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
    new weights) does not resume from the old one's spines. The refusal
    (:class:`pwopsd.jsonl.SettingsMismatch`, a ``ConfigError``) names each differing setting
    with the files' value and today's.
    """
    want = {
        "scratch_format": SCRATCH_FORMAT,
        "model": model,
        "model_fingerprint": model_fingerprint(model),
    }
    for keys in _PHASE_KEYS.values():
        want.update({k: getattr(cfg, k) for k in keys})
    jsonl.check_settings(
        scratch / "plan.json",
        want,
        what="a diagnostic run",
        fix="pass another out_dir or delete that scratch directory to start afresh",
    )
