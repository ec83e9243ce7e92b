"""Append-only JSONL files and the settings guard: the one way results are streamed to disk.

Every streamed file (evaluation samples, training metrics, the diagnostic's phase files) is
written with :func:`append` (each call flushed and fsynced, so a SIGKILL loses at most the
rows in flight) and read with :func:`read`, under one rule:

* a **torn last line** (no trailing newline: a write cut off by a kill) is dropped; with
  ``repair=True`` it is also cut off the file so the next append starts on a clean line;
* a **bad line anywhere else** is corruption, not a kill: :class:`CorruptFileError` names the
  file and the line, and nothing is rewritten.

:func:`check_settings` is the guard every resumable job uses: the first run writes the
settings its files are made with; a rerun with other settings is refused, naming them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from pwopsd.config import ConfigError
from pwopsd.provenance import repo_relative, write_json


class CorruptFileError(ValueError):
    """A JSONL file has a bad line before its last one (the message names file and line)."""


def append(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    """Append ``rows`` to ``path`` (one JSON object a line), flushed and fsynced."""
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    with open(path, "a", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def read(path: Path, repair: bool = False) -> list[dict[str, Any]]:
    """The rows of ``path`` ([] when it does not exist), under the module's torn-line rule."""
    if not path.exists():
        return []
    raw = path.read_bytes()
    complete = raw[: raw.rfind(b"\n") + 1]  # everything up to the last newline
    if repair and len(complete) != len(raw):
        with open(path, "r+b") as f:
            f.truncate(len(complete))
            f.flush()
            os.fsync(f.fileno())
    rows = []
    for number, line in enumerate(complete.decode("utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise CorruptFileError(
                f"{path}, line {number}: not valid JSON ({err.msg}); a kill can only tear the "
                "last line, so this file was changed by something else: restore or delete it"
            ) from err
        if not isinstance(row, dict):
            raise CorruptFileError(f"{path}, line {number}: a JSON object was expected")
        rows.append(row)
    return rows


def rewrite(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    """Replace ``path`` by ``rows`` atomically (temp file, fsync, rename)."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def keep_rows(path: Path, keep: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
    """Keep only the rows of ``path`` for which ``keep`` holds (torn last line dropped), rewrite
    the file atomically when anything went, and return the kept rows."""
    rows = read(path)
    kept = [r for r in rows if keep(r)]
    if path.exists() and (len(kept) != len(rows) or not path.read_bytes().endswith(b"\n")):
        rewrite(path, kept)
    return kept


def check_settings(path: Path, settings: dict[str, Any], what: str, fix: str) -> None:
    """Write ``settings`` to ``path`` on a fresh run; on a rerun refuse other settings.

    ``what`` names what the directory holds ("samples", "a training run"); ``fix`` says what
    to do instead. The error lists every differing key with the files' and today's values.
    """
    # Compare as written: tuples read back as lists, paths in the repository as relative paths.
    settings = repo_relative(json.loads(json.dumps(settings)))
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json(path, settings)
        return
    have, want = _flat(json.loads(path.read_text())), _flat(settings)
    diff = sorted(k for k in set(have) | set(want) if have.get(k) != want.get(k))
    if diff:
        shown = ", ".join(f"{k}: files {have.get(k)!r} vs now {want.get(k)!r}" for k in diff)
        raise SettingsMismatch(
            f"{path.parent} holds {what} made with other settings ({shown}); {fix}"
        )


def _flat(settings: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested settings as {"train.learning_rate": ...}, so a mismatch names the leaf."""
    out: dict[str, Any] = {}
    for key, value in settings.items():
        if isinstance(value, dict) and value:
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


class SettingsMismatch(ConfigError):
    """A rerun asked for other settings than the files were made with."""
