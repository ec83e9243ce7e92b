"""Numbers and settings as text for the book's Performance and Reproduce pages.

Significant figures, ratios and percentages (:func:`fmt_sig`, :func:`fmt_ratio`,
:func:`fmt_percent`), one configuration value (:func:`fmt_setting`) and a nested settings
mapping as a setting / value table (:func:`settings_frame`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pandas as pd

from pwopsd.config import REPO_ROOT


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
