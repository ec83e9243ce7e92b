"""Benchmark / corpus loaders on the real benchmark copies (offline), local files, checksums."""

from __future__ import annotations

import json
import os

import pytest

from pwopsd.config import REPO_ROOT, BenchmarkSpec, get_profile
from pwopsd.data import DataError, load_benchmark, load_training_corpus, sha256_file

os.environ.setdefault("HF_HUB_OFFLINE", "1")

BENCH_DIR = REPO_ROOT.parent / "shared" / "data" / "benchmarks"
needs_benchmarks = pytest.mark.skipif(
    not BENCH_DIR.is_dir(), reason=f"real benchmark copies not found at {BENCH_DIR}"
)

# Rows and SHA-256 from ../shared/data/benchmarks/PROVENANCE.md.
REAL = {
    "math500": (500, "93d093692b4ba42918def62690927f56db1bb9a46937ecf3596f9cedbdda755c"),
    "aime2024": (30, "af65a272a95c774a114c68facfcd63a1a6173a615426f3dcd6b5dc99fca0011d"),
    "aime2025": (30, "d97dd0934dd2b6bf65fe87c25c3e8b1260bf53daa590d064302d75885dfbb687"),
    "hmmt_feb_2025": (30, "be37242d00ab8b37e8d7ce0a1c914e549a6b383438d45c2be3f4701e5ae56dd5"),
}


@needs_benchmarks
@pytest.mark.parametrize("name", sorted(REAL))
def test_real_benchmarks_load_with_checksum(name):
    rows, digest = REAL[name]
    bench = load_benchmark(BenchmarkSpec(name, str(BENCH_DIR / f"{name}.jsonl"), sha256=digest))
    assert len(bench) == rows
    assert bench.checksum == digest
    assert len({p.id for p in bench.problems}) == rows
    assert all(p.problem.strip() and p.answer.strip() for p in bench.problems)


@needs_benchmarks
def test_real_answers_are_verbatim():
    aime24 = load_benchmark(str(BENCH_DIR / "aime2024.jsonl"))
    assert aime24.problems[0].id == "aime_2024_I/1" and aime24.problems[0].answer == "204"
    assert "025" in {p.answer for p in aime24.problems}  # leading zeros kept
    hmmt = {p.id: p.answer for p in load_benchmark(str(BENCH_DIR / "hmmt_feb_2025.jsonl")).problems}
    assert hmmt["hmmt_feb_2025/4"] == "-984"
    assert hmmt["hmmt_feb_2025/3"] == "\\frac{1}{576}"
    math500 = load_benchmark(str(BENCH_DIR / "math500.jsonl"), max_problems=5)
    assert len(math500) == 5 and math500.problems[0].id.startswith("test/")


@needs_benchmarks
def test_checksum_mismatch_is_a_clear_error(tmp_path):
    path = BENCH_DIR / "aime2025.jsonl"
    wrong = "0" * 64
    with pytest.raises(DataError, match=f"SHA-256 mismatch for {path}.*expected {wrong}"):
        load_benchmark(BenchmarkSpec("aime25", str(path), sha256=wrong))
    # A corrupt copy is caught by its checksum before anything parses it.
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{not json\n")
    with pytest.raises(DataError, match="SHA-256 mismatch"):
        load_benchmark(BenchmarkSpec("bad", str(bad), sha256=sha256_file(path)))


@needs_benchmarks
def test_parquet_copy_loads_like_the_jsonl(tmp_path):
    import pandas as pd

    rows = [json.loads(line) for line in open(BENCH_DIR / "hmmt_feb_2025.jsonl", encoding="utf-8")]
    df = pd.DataFrame(rows)
    df["answer_int"] = range(len(df))
    path = tmp_path / "hmmt.parquet"
    df.to_parquet(path)
    a = load_benchmark(str(path))
    b = load_benchmark(str(BENCH_DIR / "hmmt_feb_2025.jsonl"))
    assert a.problems == b.problems
    assert a.checksum == sha256_file(path)


def test_integer_answers_become_strings_and_ids_default_to_row_index(tmp_path):
    path = tmp_path / "ints.jsonl"
    path.write_text("\n".join(json.dumps({"problem": f"p{i}", "answer": i}) for i in range(3)))
    bench = load_benchmark(str(path))
    assert [(p.id, p.answer) for p in bench.problems] == [("0", "0"), ("1", "1"), ("2", "2")]


def test_bad_files_name_the_culprit(tmp_path):
    path = tmp_path / "cols.jsonl"
    path.write_text(json.dumps({"question": "q", "answer": "1"}) + "\n")
    with pytest.raises(DataError, match=r"lacks column\(s\) \['problem'\]"):
        load_benchmark(str(path))
    with pytest.raises(DataError, match="does not exist"):
        load_benchmark(str(tmp_path / "missing.jsonl"))
    dup = tmp_path / "dup.jsonl"
    dup.write_text(
        "\n".join(json.dumps({"id": "a", "problem": "p", "answer": "1"}) for _ in range(2))
    )
    with pytest.raises(DataError, match="'a' occurs more than once"):
        load_benchmark(str(dup))
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"problem": "p", "answer": "1"}\n{oops\n')
    with pytest.raises(DataError, match="broken.jsonl:2: not valid JSON"):
        load_benchmark(str(broken))


def test_hub_source_offline_fails_clearly(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(DataError, match="could not load hub dataset 'no-such-org/no-such-set'"):
        load_benchmark(BenchmarkSpec("x", "no-such-org/no-such-set", split="test"))


def test_training_corpus(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text(
        "\n".join(json.dumps({"problem": f"p{i}", "solution": f"s{i}", "x": 1}) for i in range(4))
    )
    rows = load_training_corpus(str(path), max_rows=3)
    assert rows == [{"problem": f"p{i}", "solution": f"s{i}"} for i in range(3)]
    no_sol = tmp_path / "nosol.jsonl"
    no_sol.write_text(json.dumps({"problem": "p"}))
    with pytest.raises(DataError, match="solution"):
        load_training_corpus(str(no_sol))


def test_toy_profile_benchmarks_load():
    for spec in get_profile("toy").benchmarks:
        assert os.path.exists(spec.source), f"{spec.source} is committed: `make toy-data`"
        bench = load_benchmark(spec)
        assert len(bench) > 0
