"""Where and when a results file was made, in words: machine, commit, date, wall time, load.

Reads the ``provenance`` block :func:`pwopsd.provenance.write_results` puts in every results
file.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pwopsd.perf.fmt import fmt_sig


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


def load_average_text(start: list[float] | None, end: list[float] | None, cpus: Any) -> str:
    """ "1-minute load average 4.34 at the start and 4.90 at the end, on 2 CPUs"."""
    if not start or not end:
        return ""
    return (
        f"1-minute load average {start[0]:.2f} at the start and {end[0]:.2f} at the end, "
        f"on {cpus} CPUs"
    )
