"""A whole evaluation run (PROTOCOL section 4): check, lock, draw what is missing, score.

:func:`evaluate_model` checks every argument before any engine starts, takes the out_dir's
lock (one writer per directory), opens each (benchmark, seed) cell's sample files
(:mod:`pwopsd.evaluate.samples`), streams only the missing samples through one engine,
grades and appends them in small batches, and scores every cell
(:mod:`pwopsd.evaluate.scoring`) into ``summary.json``.

Each sample's seed is derived from (seed, benchmark, problem id, sample index), so a resumed
run draws the same samples wherever the backend is batch-invariant.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm
from transformers import AutoTokenizer

from pwopsd.config import BenchmarkSpec, Profile, SamplingConfig, get_profile
from pwopsd.data import Benchmark, is_local, load_benchmark
from pwopsd.engine import make_engine
from pwopsd.evaluate.samples import SampleKey, Task, open_task, sample_row
from pwopsd.evaluate.scoring import score_tasks
from pwopsd.grading import GradingPool, extract_answer
from pwopsd.prompts import eval_prompt
from pwopsd.provenance import model_fingerprint, provenance, write_json
from pwopsd.sampling import SampleRequest, check_sampling, derive_seed
from pwopsd.vocab import BACKENDS

FLUSH_SAMPLES = 64
FLUSH_SECONDS = 2.0
"""Finished samples are graded and appended every FLUSH_SAMPLES samples or FLUSH_SECONDS
seconds, whichever comes first: cheap IPC to the graders, and little is lost to a kill."""


# --------------------------------------------------------------------------------------
# Arguments
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


def prompt_template_hash(tokenizer_or_model: Any) -> str:
    """SHA-256 of the evaluation prompt rendered around a placeholder problem.

    Covers everything between the problem and the model: the chat template (and its
    thinking switch) and the instruction line. Takes a tokenizer or a model name/path.
    """
    tok = tokenizer_or_model
    if isinstance(tok, str):
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
            f"pass an engine built for that model ({make_engine.__module__}.make_engine) "
            "or none"
        )
    if getattr(engine, "backend", None) == "hf" and adapter != engine.adapter:
        raise ValueError(
            f"the HF engine was built with adapter {engine.adapter!r} but evaluate_model was "
            f"asked for adapter {adapter!r}; HF engines serve only the adapter they were built with"
        )


# --------------------------------------------------------------------------------------
# A whole evaluation
# --------------------------------------------------------------------------------------


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
    ``engine`` reuses an engine built by ``make_engine`` (its model must be ``model``);
    otherwise one engine is built for all benchmarks and seeds and closed at the end.
    ``grader_workers`` grading processes (default: the core count, at most 8).

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
    with open(path, "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as e:
            raise RuntimeError(f"another evaluation is writing to {path.parent}") from e
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _sample_settings(
    model: str, adapter: str | None, backend: str, sampling: SamplingConfig, engine: Any
) -> dict[str, Any]:
    """What the samples depend on: a rerun with other settings must not reuse them."""
    return {
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
    """The run itself, under the out_dir lock: open the cells, draw what is missing, score."""
    if engine is not None:
        _check_engine_serves(engine, model, adapter)
        backend = engine.backend
    settings = _sample_settings(model, adapter, backend, sampling, engine)
    tasks = [open_task(out, bench, seed, settings) for bench in benches for seed in seeds]
    missing = sum(
        (p.id, j) not in t.done for t in tasks for p in t.bench.problems for j in range(sampling.n)
    )
    engine_seconds = 0.0
    with GradingPool(workers=grader_workers) as pool:
        if missing:
            with _engine_for(engine, backend, model, prof, adapter) as (live, engine_seconds):
                _sample_missing(live, tasks, sampling, pool, missing, progress, adapter)
        results = score_tasks(tasks, sampling.n, pool)

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


@contextlib.contextmanager
def _engine_for(
    engine: Any, backend: str, model: str, prof: Profile, adapter: str | None
) -> Iterator[tuple[Any, float]]:
    """``(engine, 0.0)`` for an engine handed in; otherwise a new engine and its startup
    seconds, closed on exit (which frees the KV cache for whatever runs next)."""
    if engine is not None:
        yield engine, 0.0
        return
    t_engine = time.perf_counter()
    own = make_engine(backend, model, profile=prof, adapter=adapter)
    try:
        yield own, time.perf_counter() - t_engine
    finally:
        own.close()


# --------------------------------------------------------------------------------------
# Drawing the missing samples
# --------------------------------------------------------------------------------------


def _missing_requests(
    tasks: list[Task], n: int, tokenizer: Any
) -> tuple[list[SampleRequest], dict[tuple[int, str], str]]:
    """A request for every sample no task holds yet, and the gold answer of each problem."""
    requests = []
    gold: dict[tuple[int, str], str] = {}
    for ti, t in enumerate(tasks):
        for p in t.bench.problems:
            prompt = None
            gold[(ti, p.id)] = p.answer
            for j in range(n):
                if (p.id, j) in t.done:
                    continue
                prompt = prompt or eval_prompt(tokenizer, p.problem)
                seed = derive_seed(t.seed, t.bench.name, p.id, j)
                requests.append(SampleRequest((ti, p.id, j, seed), prompt, seed))
    return requests, gold


def _grade_and_append(
    buffer: list[tuple[SampleKey, Any]],
    tasks: list[Task],
    gold: dict[tuple[int, str], str],
    pool: GradingPool,
    bar: tqdm,
) -> None:
    """Grade the finished completions in ``buffer``, append them to their tasks' files and
    empty the buffer."""
    answers = [extract_answer(c.text) for _, c in buffer]
    verdicts = pool.grade([(a, gold[(k[0], k[1])]) for a, (k, _) in zip(answers, buffer)])
    per_task: dict[int, list[dict[str, Any]]] = {}
    for (key, c), a, v in zip(buffer, answers, verdicts, strict=True):
        per_task.setdefault(key[0], []).append(sample_row(tasks[key[0]], key, c, a, v))
    for ti, rows in per_task.items():
        tasks[ti].add(rows)
    bar.update(len(buffer))
    buffer.clear()


def _sample_missing(
    engine: Any,
    tasks: list[Task],
    sampling: SamplingConfig,
    pool: GradingPool,
    missing: int,
    progress: bool,
    adapter: str | None,
) -> None:
    """Stream every missing sample through ``engine``; grade and append in small batches."""
    requests, gold = _missing_requests(tasks, sampling.n, engine.tokenizer)
    assert len(requests) == missing, (len(requests), missing)
    bar = tqdm(total=missing, desc="sampling", disable=not progress, dynamic_ncols=True)
    buffer: list[tuple[SampleKey, Any]] = []
    last_flush = time.monotonic()
    try:
        for key, completion in engine.stream(requests, sampling, adapter=adapter):
            buffer.append((key, completion))
            if len(buffer) >= FLUSH_SAMPLES or time.monotonic() - last_flush > FLUSH_SECONDS:
                _grade_and_append(buffer, tasks, gold, pool, bar)
                last_flush = time.monotonic()
    finally:
        # Keep what finished even when the engine (or a Ctrl-C) stops the run.
        if buffer:
            _grade_and_append(buffer, tasks, gold, pool, bar)
        bar.close()
