"""The evaluation's sample files under the one JSONL rule (no model needed).

A torn last line is dropped by readers and cut off by a resuming run; a bad middle line is
refused naming file and line, with nothing rewritten; other settings are refused.
"""

from __future__ import annotations

import json
import re

import pytest

from pwopsd.data import Benchmark, Problem
from pwopsd.evaluate.samples import open_task, read_samples
from pwopsd.jsonl import CorruptFileError, SettingsMismatch

BENCH = Benchmark("b", "b.jsonl", (Problem("p0", "1+1", "2"), Problem("p1", "2+2", "4")), "abc")
SETTINGS = {"model": "m", "sampling": {"n": 2, "temperature": 1.0}}


def _rows(n: int) -> list[dict]:
    return [{"problem_id": f"p{i // 2}", "sample": i % 2, "answer": str(i)} for i in range(n)]


def _write(path, rows, tail: str = "") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + tail)


def test_torn_last_line_is_dropped_by_readers_and_cut_off_on_resume(tmp_path):
    path = tmp_path / "b" / "seed0.samples.jsonl"
    _write(path, _rows(3), tail='{"problem_id": "p1", "sam')
    size = path.stat().st_size
    assert read_samples(path) == _rows(3)
    assert path.stat().st_size == size  # a plain read never changes the file
    task = open_task(tmp_path, BENCH, 0, SETTINGS)
    assert sorted(task.done) == [("p0", 0), ("p0", 1), ("p1", 0)]
    assert path.read_text().endswith("}\n")  # cut off: the next append starts a clean line
    task.add([{"problem_id": "p1", "sample": 1, "answer": "x"}])
    assert [(r["problem_id"], r["sample"]) for r in read_samples(path)] == sorted(task.done)


def test_corrupt_middle_line_names_file_and_line(tmp_path):
    path = tmp_path / "b" / "seed0.samples.jsonl"
    _write(path, _rows(3))
    text = path.read_text().replace('"answer": "1"}', '"answer": "1"')
    path.write_text(text)
    with pytest.raises(CorruptFileError, match=re.escape(f"{path}, line 2")):
        open_task(tmp_path, BENCH, 0, SETTINGS)
    assert path.read_text() == text


def test_other_settings_are_refused_naming_them(tmp_path):
    open_task(tmp_path, BENCH, 0, SETTINGS)
    meta = json.loads((tmp_path / "b" / "seed0.meta.json").read_text())
    assert meta == {**SETTINGS, "seed": 0, "benchmark": "b.jsonl", "checksum": "abc"}
    other = {**SETTINGS, "sampling": {"n": 2, "temperature": 0.5}}
    with pytest.raises(SettingsMismatch, match="holds samples made with other settings.*"
                       "sampling.*; use a fresh out_dir"):  # fmt: skip
        open_task(tmp_path, BENCH, 0, other)
    assert isinstance(SettingsMismatch("x"), ValueError)
    open_task(tmp_path, BENCH, 1, other)  # another seed is another cell
