"""Benchmark and training-corpus loaders: hub datasets or local JSONL/parquet files.

* Benchmarks (PROTOCOL section 4): rows with a ``problem`` and an ``answer`` (any type,
  kept as its string form, so AIME's "025" stays "025"); the id comes from ``id`` /
  ``unique_id`` / ``problem_idx`` or the row index. Hub sources go through
  ``datasets.load_dataset(source, split=...)``; a source ending in .jsonl / .json /
  .parquet is a local file (relative paths resolve against the repo root) and is checked
  against ``BenchmarkSpec.sha256`` when one is configured, before anything else reads it.
* Training corpus (PROTOCOL section 3): rows with ``problem`` and ``solution``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import pandas as pd

from pwopsd.config import REPO_ROOT, BenchmarkSpec

LOCAL_SUFFIXES = (".jsonl", ".json", ".parquet")
ID_COLUMNS = ("id", "unique_id", "problem_idx")


class DataError(ValueError):
    """Bad or missing data: the message names the file/dataset and what is wrong."""


@dataclass(frozen=True)
class Problem:
    """One benchmark problem."""

    id: str
    problem: str
    answer: str


@dataclass(frozen=True)
class Benchmark:
    """A loaded evaluation set and where it came from."""

    name: str
    source: str
    problems: tuple[Problem, ...]
    checksum: str
    """SHA-256 of the local file, or "hub:<fingerprint>" of a hub dataset split."""

    def __len__(self) -> int:
        return len(self.problems)


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def is_local(source: str) -> bool:
    """True for a local data file (a known suffix, or any existing path), else a hub id."""
    return source.lower().endswith(LOCAL_SUFFIXES) or Path(source).exists()


def resolve_local(source: str) -> Path:
    """A local source as a path; relative paths resolve against the repo root."""
    path = Path(source)
    return path if path.is_absolute() else REPO_ROOT / path


def _read_local(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise DataError(f"data file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return pd.read_parquet(path).to_dict(orient="records")
    if suffix == ".json":
        rows = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(rows, list):
            raise DataError(f"{path}: a .json data file must hold a list of rows")
        return rows
    rows = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{lineno}: not valid JSON ({e.msg})") from e
    return rows


def _read_hub(source: str, split: str) -> tuple[list[dict[str, Any]], str]:
    try:
        ds = datasets.load_dataset(source, split=split)
    except Exception as e:
        raise DataError(
            f"could not load hub dataset {source!r} (split {split!r}): {e}. Offline? Point the "
            "BenchmarkSpec at a local .jsonl/.parquet copy instead."
        ) from e
    return [dict(r) for r in ds], f"hub:{getattr(ds, '_fingerprint', 'unknown')}"


def read_rows(
    source: str, split: str = "train", sha256: str | None = None
) -> tuple[list[dict[str, Any]], str]:
    """Rows of a hub dataset or local file plus its checksum; verifies ``sha256`` first."""
    if is_local(source):
        path = resolve_local(source)
        if not path.is_file():
            raise DataError(f"data file {path} does not exist")
        digest = sha256_file(path)
        if sha256 is not None and digest != sha256.lower():
            raise DataError(
                f"SHA-256 mismatch for {path}: expected {sha256}, got {digest}. "
                "The file is not the configured copy."
            )
        return _read_local(path), digest
    if sha256 is not None:
        raise DataError(f"sha256 is set for {source!r}, but checksums apply to local files only")
    return _read_hub(source, split)


def _require_columns(rows: list[dict[str, Any]], columns: tuple[str, ...], where: str) -> None:
    if not rows:
        raise DataError(f"{where} has no rows")
    missing = [c for c in columns if c not in rows[0]]
    if missing:
        raise DataError(f"{where} lacks column(s) {missing}; it has {sorted(rows[0])}")


def _row_id(row: dict[str, Any], index: int) -> str:
    for col in ID_COLUMNS:
        if row.get(col) is not None:
            return str(row[col])
    return str(index)


def load_benchmark(spec: BenchmarkSpec | str, *, max_problems: int | None = None) -> Benchmark:
    """Load an evaluation set (``spec`` may be a bare source: hub id or local path)."""
    if isinstance(spec, str):
        spec = BenchmarkSpec(name=Path(spec).stem if is_local(spec) else spec, source=spec)
    if max_problems is not None and max_problems < 1:
        raise DataError(f"max_problems={max_problems} must be >= 1 or None")
    rows, checksum = read_rows(spec.source, spec.split, spec.sha256)
    where = f"benchmark {spec.name!r} ({spec.source})"
    _require_columns(rows, ("problem", "answer"), where)
    problems = []
    for i, row in enumerate(rows):
        if row["answer"] is None or row["problem"] is None:
            raise DataError(f"{where}: row {i} has an empty problem or answer")
        problems.append(Problem(_row_id(row, i), str(row["problem"]), str(row["answer"])))
    ids = [p.id for p in problems]
    if len(set(ids)) != len(ids):
        dup = next(x for x in ids if ids.count(x) > 1)
        raise DataError(f"{where}: problem id {dup!r} occurs more than once")
    if max_problems is not None:
        problems = problems[:max_problems]
    return Benchmark(spec.name, spec.source, tuple(problems), checksum)


def load_training_corpus(
    source: str, split: str = "train", *, max_rows: int | None = None, sha256: str | None = None
) -> list[dict[str, str]]:
    """Training prompts: a list of {"problem", "solution"} (PROTOCOL section 3)."""
    rows, _ = read_rows(source, split, sha256)
    _require_columns(rows, ("problem", "solution"), f"training corpus {source!r}")
    out = [{"problem": str(r["problem"]), "solution": str(r["solution"])} for r in rows]
    return out[:max_rows] if max_rows is not None else out
