"""Evaluation (PROTOCOL section 4): grading API, Avg/Pass/Maj@k, resumable runs, CLI.

Public API (fixed names, called by outside checks):

* :func:`extract_answer` ``(completion) -> str | None`` (None = INVALID),
* :func:`is_correct` ``(answer, gold) -> bool``,
* :func:`problem_metrics` ``(answers, gold) -> {"avg", "pass", "maj", ...}``,

and for notebooks :func:`evaluate_model`, which samples ``n`` completions per problem for
every benchmark and evaluation seed with one engine, grades them in worker processes and
returns per-seed Avg/Pass/Maj@n with the mean and Bessel sd over seeds.

Files under ``out_dir``:

* ``<benchmark>/seed<k>.samples.jsonl``: one row per sample (text, extracted answer,
  verdict), appended as samples finish. A killed run restarted with the same arguments
  keeps every complete row, drops a torn last line, and samples only what is missing.
  Each sample's seed is derived from (seed, benchmark, problem id, sample index), so the
  resumed run draws the same samples wherever the backend is batch-invariant.
* ``<benchmark>/seed<k>.meta.json``: the settings the samples were drawn with; a restart
  with different settings is refused instead of mixing samples.
* ``summary.json``: scores plus provenance (model, adapter, git commit, packages, sampling
  parameters, dataset checksums, wall time, hardware).

CLI: ``python -m pwopsd.evaluate --model M --benchmarks toy_math500 toy_aime24 --n 12
--seed 1 --out results/toy/eval/base``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from pwopsd.config import BenchmarkSpec, Profile, SamplingConfig, get_profile
from pwopsd.data import Benchmark, is_local, load_benchmark
from pwopsd.grading import GradingPool, Verdict, extract_answer, grade_pair, is_correct
from pwopsd.metrics import (
    benchmark_scores,
    cluster_answers,
    mean_sd,
    problem_scores,
    unbiased_pass_at_k,
)
from pwopsd.provenance import model_fingerprint, provenance, write_json
from pwopsd.sampling import BACKENDS, SampleRequest, check_sampling, derive_seed, make_engine

__all__ = [
    "GradingPool",
    "Verdict",
    "evaluate_model",
    "extract_answer",
    "is_correct",
    "problem_metrics",
]

METRICS = ("avg", "pass", "maj")


# --------------------------------------------------------------------------------------
# One problem (public API)
# --------------------------------------------------------------------------------------


def _serial_equivalent(pairs: list[tuple[str, str]]) -> list[bool]:
    return [grade_pair(a, b).correct for a, b in pairs]


def problem_metrics(answers: list[str | None], gold: str) -> dict:
    """Avg@k, Pass@k and Maj@k of one problem's k extracted answers (None = INVALID).

    Returns a dict with ``avg``, ``pass``, ``maj`` (fractions in [0, 1]) plus ``n``,
    ``n_correct`` and ``n_invalid``. Grades in this process (call it from the main thread).
    """
    if not answers:
        raise ValueError("problem_metrics needs at least one answer")
    verdicts = [is_correct(a, gold) for a in answers]
    clusters = cluster_answers([answers], _serial_equivalent)[0]
    return problem_scores(answers, verdicts, clusters)


# --------------------------------------------------------------------------------------
# Sample files (append-only JSONL, resumable)
# --------------------------------------------------------------------------------------


def read_samples(path: Path) -> list[dict[str, Any]]:
    """Complete rows of a samples file; a torn last line (killed mid-write) is cut off."""
    if not path.exists():
        return []
    raw = path.read_bytes()
    keep = raw[: raw.rfind(b"\n") + 1]  # everything up to the last newline
    if len(keep) != len(raw):
        with open(path, "r+b") as f:
            f.truncate(len(keep))
    rows = []
    for line in keep.decode("utf-8").splitlines():
        if line.strip():
            rows.append(json.loads(line))
    return rows


def _append(path: Path, rows: list[dict[str, Any]]) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        f.flush()
        os.fsync(f.fileno())


@dataclasses.dataclass
class _Task:
    """One (benchmark, seed) cell of a run."""

    bench: Benchmark
    seed: int
    samples_path: Path
    done: dict[tuple[str, int], dict[str, Any]]


def _check_meta(path: Path, meta: dict[str, Any]) -> None:
    if path.exists():
        old = json.loads(path.read_text())
        diff = {k: (old.get(k), v) for k, v in meta.items() if old.get(k) != v}
        if diff:
            raise ValueError(
                f"{path.parent} holds samples drawn with other settings "
                f"({', '.join(f'{k}: {a!r} -> {b!r}' for k, (a, b) in diff.items())}); "
                "use a fresh out_dir"
            )
    else:
        write_json(path, meta)


# --------------------------------------------------------------------------------------
# A whole evaluation
# --------------------------------------------------------------------------------------


def resolve_benchmarks(
    benchmarks: Sequence[BenchmarkSpec | str], profile: Profile
) -> list[BenchmarkSpec]:
    """Specs for names of the profile's benchmarks, local paths or hub ids."""
    known = {b.name: b for b in profile.benchmarks}
    specs = []
    for b in benchmarks:
        if isinstance(b, BenchmarkSpec):
            specs.append(b)
        elif b in known:
            specs.append(known[b])
        elif is_local(b) or "/" in b:
            specs.append(
                BenchmarkSpec(name=Path(b).stem if is_local(b) else b.replace("/", "__"), source=b)
            )
        else:
            raise ValueError(
                f"benchmark {b!r} is neither a {profile.name!r} profile benchmark "
                f"({sorted(known)}) nor a file or hub id"
            )
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ValueError(f"benchmark names must be distinct; got {names}")
    return specs


def evaluate_model(
    model: str,
    benchmarks: Sequence[BenchmarkSpec | str],
    *,
    n: int | None = None,
    seeds: Sequence[int] = (0,),
    sampling: SamplingConfig | None = None,
    out_dir: str | Path,
    adapter: str | None = None,
    max_problems: int | None = None,
    backend: str = "vllm",
    profile: Profile | str = "toy",
    engine: Any = None,
    grader_workers: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Sample, grade and score ``model`` on ``benchmarks`` for every seed in ``seeds``.

    ``sampling`` defaults to the profile's ``eval_sampling``; ``n`` overrides its ``n``.
    ``engine`` reuses an engine built by :func:`pwopsd.sampling.make_engine` (its model must
    be ``model``); otherwise one engine is built for all benchmarks and seeds and closed at
    the end. ``grader_workers`` grading processes (default: the core count, at most 8).

    Example (a notebook)::

        from pwopsd.config import get_profile
        from pwopsd.evaluate import evaluate_model

        prof = get_profile("toy")
        s = evaluate_model(prof.main_model, list(prof.benchmarks), seeds=[0, 1, 2],
                           out_dir="results/toy/eval/base", profile=prof)
        s["benchmarks"]["toy_aime24"]["mean_sd"]["avg"]  # {"mean": ..., "sd": ..., "n": 3}
    Returns ``{"benchmarks": {name: {"seeds": {seed: scores}, "mean_sd": {metric: {mean, sd}}}}}``
    plus settings and provenance; the same dict is written to ``out_dir/summary.json``.
    """
    t0 = time.perf_counter()
    prof = get_profile(profile) if isinstance(profile, str) else profile
    sampling = sampling or prof.eval_sampling
    if n is not None:
        sampling = dataclasses.replace(sampling, n=n)
    check_sampling(sampling)
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r} is not known; allowed: {list(BACKENDS)}")
    seeds = [int(s) for s in seeds]
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise ValueError(f"seeds={seeds} must be distinct non-negative integers")
    out = Path(out_dir)
    specs = resolve_benchmarks(benchmarks, prof)
    benches = [load_benchmark(s, max_problems=max_problems) for s in specs]  # checksums first
    out.mkdir(parents=True, exist_ok=True)
    with _exclusive(out / ".lock"):
        return _evaluate_locked(
            model,
            benches,
            seeds,
            sampling,
            out,
            adapter,
            max_problems,
            backend,
            prof,
            engine,
            grader_workers,
            progress,
            t0,
        )


@contextlib.contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    """One run per out_dir: two writers appending to the same files would duplicate rows."""
    import fcntl

    with open(path, "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as e:
            raise RuntimeError(f"another evaluation is writing to {path.parent}") from e
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def prompt_template_hash(tokenizer_or_model: Any) -> str:
    """SHA-256 of the evaluation prompt rendered around a placeholder problem.

    Covers everything between the problem and the model: the chat template (and its
    thinking switch) and the instruction line. Takes a tokenizer or a model name/path.
    """
    import hashlib

    from pwopsd.prompts import eval_prompt

    tok = tokenizer_or_model
    if isinstance(tok, str):
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(tok)
    rendered = eval_prompt(tok, "\x00PROBLEM\x00")
    return hashlib.sha256(rendered.encode("utf-8")).hexdigest()


def _same_model(a: str, b: str) -> bool:
    pa, pb = Path(a).expanduser(), Path(b).expanduser()
    if pa.exists() or pb.exists():
        return pa.exists() and pb.exists() and pa.resolve() == pb.resolve()
    return a == b


def _check_engine_serves(engine: Any, model: str, adapter: str | None) -> None:
    """An engine handed in must serve ``model`` (and, on HF, ``adapter``), or samples lie."""
    served = getattr(engine, "model", None)
    if served is None or not _same_model(str(served), model):
        raise ValueError(
            f"engine serves model {served!r} but evaluate_model was asked for {model!r}; "
            "pass an engine built for that model (pwopsd.sampling.make_engine) or none"
        )
    if getattr(engine, "backend", None) == "hf" and adapter != engine.adapter:
        raise ValueError(
            f"the HF engine was built with adapter {engine.adapter!r} but evaluate_model was "
            f"asked for adapter {adapter!r}; HF engines serve only the adapter they were built with"
        )


def _evaluate_locked(
    model: str,
    benches: list[Benchmark],
    seeds: list[int],
    sampling: SamplingConfig,
    out: Path,
    adapter: str | None,
    max_problems: int | None,
    backend: str,
    prof: Profile,
    engine: Any,
    grader_workers: int | None,
    progress: bool,
    t0: float,
) -> dict[str, Any]:
    if engine is not None:
        _check_engine_serves(engine, model, adapter)
        backend = engine.backend
    meta_base = {
        "model": model,
        "adapter": adapter,
        # The weights, not only their path: a checkpoint retrained in place (make toy-models)
        # or an adapter re-trained into the same run directory must not reuse old samples.
        "model_fingerprint": model_fingerprint(model),
        "adapter_fingerprint": model_fingerprint(adapter) if adapter else None,
        "backend": backend,
        "sampling": dataclasses.asdict(sampling),
        # The rendered template, not a label: a changed chat template or instruction line
        # must refuse to mix old and new samples.
        "prompt_template_sha256": prompt_template_hash(engine.tokenizer if engine else model),
    }
    tasks: list[_Task] = []
    for bench in benches:
        for seed in seeds:
            d = out / bench.name
            d.mkdir(parents=True, exist_ok=True)
            _check_meta(
                d / f"seed{seed}.meta.json",
                {**meta_base, "seed": seed, "benchmark": bench.source, "checksum": bench.checksum},
            )
            path = d / f"seed{seed}.samples.jsonl"
            done = {}
            for row in read_samples(path):
                done.setdefault((row["problem_id"], row["sample"]), row)
            tasks.append(_Task(bench, seed, path, done))

    # Rows of problems outside this call (a larger max_problems before) stay on disk, unused.
    missing = sum(
        (p.id, j) not in t.done for t in tasks for p in t.bench.problems for j in range(sampling.n)
    )
    engine_seconds = 0.0
    own_engine = None
    with GradingPool(workers=grader_workers) as pool:
        try:
            if missing:
                if engine is None:
                    t_engine = time.perf_counter()
                    engine = own_engine = make_engine(backend, model, profile=prof, adapter=adapter)
                    engine_seconds = time.perf_counter() - t_engine
                _sample_missing(engine, tasks, sampling, pool, missing, progress, adapter)
        finally:
            if own_engine is not None:
                own_engine.close()  # frees the KV cache for whatever runs next
        results = _score(tasks, sampling.n, pool)

    wall = time.perf_counter() - t0
    summary = {
        "model": model,
        "adapter": adapter,
        "backend": backend,
        "profile": prof.name,
        "sampling": dataclasses.asdict(sampling),
        "seeds": seeds,
        "max_problems": max_problems,
        "datasets": {
            b.name: {"source": b.source, "checksum": b.checksum, "problems": len(b)}
            for b in benches
        },
        "samples_drawn_this_call": missing,
        "engine_startup_seconds": engine_seconds,
        "benchmarks": results,
    }
    summary["provenance"] = provenance(profile=prof.name, seed=seeds[0], wall_seconds=wall)
    write_json(out / "summary.json", summary)
    return summary


def _sample_missing(
    engine: Any,
    tasks: list[_Task],
    sampling: SamplingConfig,
    pool: GradingPool,
    missing: int,
    progress: bool,
    adapter: str | None,
) -> None:
    """Stream every missing sample through ``engine``; grade and append in small batches."""
    from tqdm.auto import tqdm

    from pwopsd.prompts import eval_prompt

    tokenizer = engine.tokenizer
    requests = []
    gold: dict[tuple[int, str], str] = {}
    for ti, t in enumerate(tasks):
        for p in t.bench.problems:
            prompt = None
            gold[(ti, p.id)] = p.answer
            for j in range(sampling.n):
                if (p.id, j) in t.done:
                    continue
                prompt = prompt or eval_prompt(tokenizer, p.problem)
                seed = derive_seed(t.seed, t.bench.name, p.id, j)
                requests.append(SampleRequest((ti, p.id, j, seed), prompt, seed))
    assert len(requests) == missing, (len(requests), missing)

    bar = tqdm(total=missing, desc="sampling", disable=not progress, dynamic_ncols=True)
    buffer: list[tuple[tuple[int, str, int, int], Any]] = []
    last_flush = time.monotonic()

    def flush() -> None:
        answers = [extract_answer(c.text) for _, c in buffer]
        verdicts = pool.grade([(a, gold[(k[0], k[1])]) for a, (k, _) in zip(answers, buffer)])
        per_task: dict[int, list[dict[str, Any]]] = {}
        for (key, c), a, v in zip(buffer, answers, verdicts, strict=True):
            ti, pid, j, seed = key
            per_task.setdefault(ti, []).append(
                {
                    "benchmark": tasks[ti].bench.name,
                    "seed": tasks[ti].seed,
                    "problem_id": pid,
                    "sample": j,
                    "sample_seed": seed,
                    "answer": a,
                    "correct": v.correct,
                    "grade_method": v.method,
                    "num_tokens": len(c.token_ids),
                    "finish_reason": c.finish_reason,
                    "text": c.text,
                }
            )
        for ti, rows in per_task.items():
            _append(tasks[ti].samples_path, rows)
            for r in rows:
                tasks[ti].done[(r["problem_id"], r["sample"])] = r
        bar.update(len(buffer))
        buffer.clear()

    try:
        for key, completion in engine.stream(requests, sampling, adapter=adapter):
            buffer.append((key, completion))
            # Grade and append in small batches: cheap IPC, and little is lost to a kill.
            if len(buffer) >= 64 or time.monotonic() - last_flush > 2.0:
                flush()
                last_flush = time.monotonic()
    finally:
        # Keep what finished even when the engine (or a Ctrl-C) stops the run.
        if buffer:
            flush()
        bar.close()


def _score(tasks: list[_Task], n: int, pool: GradingPool) -> dict[str, Any]:
    """Per benchmark: scores per seed, their mean and Bessel sd, per-problem details."""

    def equivalent(pairs: list[tuple[str, str]]) -> list[bool]:
        return [v.correct for v in pool.grade(pairs)]

    results: dict[str, Any] = {}
    for t in tasks:
        answer_lists, verdict_lists = [], []
        for p in t.bench.problems:
            rows = [t.done.get((p.id, j)) for j in range(n)]
            if any(r is None for r in rows):
                raise RuntimeError(
                    f"{t.samples_path}: problem {p.id!r} lacks samples after the run"
                )
            answer_lists.append([r["answer"] for r in rows])
            verdict_lists.append([bool(r["correct"]) for r in rows])
        clusters = cluster_answers(answer_lists, equivalent)
        per_problem = [
            {"id": p.id, **problem_scores(a, v, c)}
            for p, a, v, c in zip(t.bench.problems, answer_lists, verdict_lists, clusters)
        ]
        scores = benchmark_scores(per_problem)
        for k in sorted({k for k in (1, 2, 4, 8, n) if k <= n}):
            scores[f"pass@{k}_unbiased"] = sum(
                unbiased_pass_at_k(n, int(pp["n_correct"]), k) for pp in per_problem
            ) / len(per_problem)
        write_json(t.samples_path.with_name(f"seed{t.seed}.problems.json"), per_problem)
        entry = results.setdefault(t.bench.name, {"seeds": {}})
        entry["seeds"][str(t.seed)] = scores
    for entry in results.values():
        per_seed = list(entry["seeds"].values())
        entry["mean_sd"] = {
            m: mean_sd([s[m] for s in per_seed])
            for m in (*METRICS, *[k for k in per_seed[0] if k.startswith("pass@")])
        }
    return results


# --------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m pwopsd.evaluate",
        description="Sample, grade and score a model (PROTOCOL section 4); resumable.",
    )
    ap.add_argument("--model", required=True, help="from_pretrained path or hub name")
    ap.add_argument("--adapter", default=None, help="PEFT LoRA adapter directory")
    ap.add_argument(
        "--benchmarks",
        nargs="+",
        required=True,
        help="profile benchmark names, local .jsonl/.parquet files or hub ids",
    )
    ap.add_argument("--profile", default="toy", help="toy or paper (default sampling, dtype)")
    ap.add_argument("--n", type=int, default=None, help="samples per problem (default: profile)")
    ap.add_argument("--seed", type=int, nargs="+", default=[0], help="evaluation seed(s)")
    ap.add_argument("--max-new-tokens", type=int, default=None)
    ap.add_argument("--max-problems", type=int, default=None)
    ap.add_argument("--backend", choices=BACKENDS, default="vllm")
    ap.add_argument(
        "--grader-workers", type=int, default=None, help="grading processes (default: cores, <= 8)"
    )
    ap.add_argument("--out", required=True, help="output directory (resumes what is there)")
    args = ap.parse_args(argv)
    prof = get_profile(args.profile)
    sampling = prof.eval_sampling
    if args.max_new_tokens is not None:
        sampling = dataclasses.replace(sampling, max_new_tokens=args.max_new_tokens)
    summary = evaluate_model(
        args.model,
        args.benchmarks,
        n=args.n,
        seeds=args.seed,
        sampling=sampling,
        out_dir=args.out,
        adapter=args.adapter,
        max_problems=args.max_problems,
        backend=args.backend,
        profile=prof,
        grader_workers=args.grader_workers,
    )
    for name, entry in summary["benchmarks"].items():
        cells = "  ".join(
            f"{m}@{summary['sampling']['n']} {100 * entry['mean_sd'][m]['mean']:.2f}"
            + (
                f"+-{100 * entry['mean_sd'][m]['sd']:.2f}"
                if entry["mean_sd"][m]["sd"] is not None
                else ""
            )
            for m in METRICS
        )
        print(f"{name:16s} {cells}")
    print(f"wrote {Path(args.out) / 'summary.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
