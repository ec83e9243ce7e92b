"""Phases A-G of the branch-viability diagnostic (PROTOCOL section 5): the driver, resumable.

* A (spines): the student template, greedy; when greedy reaches no boxed answer within the
  budget, up to ``spine_fallback_tries`` sampled retries.
* B (teacher): one forward pass of the teacher (same weights, the final-answer template of
  :func:`pwopsd.prompts.answer_prompt`) along the spine: per position the full entropy, the
  top-k *valid*-token truncated entropy, the top-1 probability, the spine token's probability
  and the top valid children.
* C (candidates): filters (junk / EOS / special tokens, plausibility floor, minimum spacing,
  nothing from the final ``\\boxed`` on), then up to N highest-truncated-entropy positions.
* D (MC dropout): forward hooks that drop out the last layers' outputs, ``mc_samples`` passes:
  predictive entropy, mutual information, Dirichlet precision. Hooks removed in a ``finally``.
* E (continuations): student prompt + spine[:pos] + forced child, token ids exactly, sampled
  through the engine factory; one JSONL row per finished continuation.
* F, G (:mod:`pwopsd.diagnostic.report`): viability labels, Table 1, Figure 1 data.

The tensor-level work of B-D lives in :mod:`pwopsd.diagnostic.teacher`, the files in
:mod:`pwopsd.diagnostic.store`, the statistics in :mod:`pwopsd.diagnostic.stats`.

On disk (``<results_dir>/scratch/<tag>/``, not committed): ``plan.json`` (the settings the files were
made with; a rerun with other settings is refused, naming them), then one JSONL file per phase
A-E, appended and flushed row by row. A rerun reads them, skips finished problems (A-D) and
finished continuations (E), so a SIGKILL loses at most the rows in flight; a torn last line is
ignored. F and G are cheap and recomputed from those files on every run. The results the book
reads (``diagnostic.seed<k>.json``, ``table1.seed<k>.json``, ``figure1.seed<k>.json``) go to ``<results_dir>/``; a
smaller or otherwise configured run writes ``<stem>.<tag>.json`` beside them instead.
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pwopsd.config import REPO_ROOT, BenchmarkSpec, DiagnosticConfig, Profile
from pwopsd.data import Problem, load_benchmark
from pwopsd.diagnostic.report import LABELS, figure1_data, phase_f, table1
from pwopsd.diagnostic.store import Appender, check_plan, read_jsonl, sample_tag
from pwopsd.diagnostic.teacher import (
    DropoutHooks,
    boxed_start,
    eos_ids,
    hidden_states,
    mc_scores,
    select_candidates,
    teacher_position_stats,
    valid_token_mask,
)
from pwopsd.grading import extract_answer, is_correct
from pwopsd.provenance import write_json, write_results
from pwopsd.sampling import SampleRequest, derive_seed

SHARED_BENCHMARKS = REPO_ROOT.parent / "shared" / "data" / "benchmarks"
"""Offline copies of the paper's benchmarks (used by the paper profile when present)."""

PAPER_POOL_FILES = {
    "math500": "math500.jsonl",
    "aime24": "aime2024.jsonl",
    "aime25": "aime2025.jsonl",
}

PHASES = ("A", "B", "C", "D", "E", "F", "G")


# --------------------------------------------------------------------------------------
# Problems and budgets
# --------------------------------------------------------------------------------------


def pool_spec(profile: Profile, pool: str) -> BenchmarkSpec:
    """Where one pool comes from: the toy stand-in, the shared offline copy, or the hub."""
    by_name = {b.name: b for b in profile.benchmarks}
    if f"toy_{pool}" in by_name:
        return by_name[f"toy_{pool}"]
    local = SHARED_BENCHMARKS / PAPER_POOL_FILES[pool]
    if local.is_file():
        return BenchmarkSpec(name=pool, source=str(local), label=by_name[pool].label)
    return by_name[pool]


def select_problems(cfg: DiagnosticConfig, profile: Profile) -> list[tuple[str, Problem]]:
    """``max_problems`` (pool, problem) pairs: each pool shuffled by the seed, then round-robin."""
    pools = []
    for pool in cfg.pools:
        probs = list(load_benchmark(pool_spec(profile, pool)).problems)
        random.Random(derive_seed(cfg.seed, "diagnostic-problems", pool)).shuffle(probs)
        pools.append([(pool, p) for p in probs])
    out: list[tuple[str, Problem]] = []
    while len(out) < cfg.max_problems and any(pools):
        for queue in pools:
            if queue and len(out) < cfg.max_problems:
                out.append(queue.pop(0))
    return out


def problem_key(pool: str, problem: Problem) -> str:
    """The id a problem carries in every phase file (its cluster in the bootstrap)."""
    return f"{pool}/{problem.id}"


def spine_budget(cfg: DiagnosticConfig, profile: Profile) -> int:
    return cfg.spine_max_tokens or profile.eval_sampling.max_new_tokens


def continuation_budget(cfg: DiagnosticConfig, profile: Profile) -> int:
    return cfg.continuation_max_tokens or spine_budget(cfg, profile)


# --------------------------------------------------------------------------------------
# Tokens
# --------------------------------------------------------------------------------------


def prompt_ids(tokenizer: Any, text: str) -> list[int]:
    """Token ids of a rendered prompt (no extra special tokens: the template carries them)."""
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def continuation_prompt_ids(
    student_ids: list[int], spine: list[int], pos: int, child: int
) -> list[int]:
    """The forced branch: student prompt + spine[:pos] + child, as token ids (nothing else)."""
    if not 0 <= pos < len(spine):
        raise ValueError(f"pos={pos} outside the spine (length {len(spine)})")
    return [*student_ids, *spine[:pos], int(child)]


# --------------------------------------------------------------------------------------
# Engines: token-id prompts through the factory's engines
# --------------------------------------------------------------------------------------


def stream_ids(
    engine: Any, requests: list[tuple[Any, list[int], int]], sampling: Any
) -> Iterator[tuple[Any, Any]]:
    """Sample one continuation per ``(key, prompt token ids, seed)``; yield (key, Completion).

    vLLM takes the ids as a ``TokensPrompt``, so the prompt is exactly those tokens (no
    re-tokenisation of decoded text). The HF engine takes only strings, so for it the same
    ids go straight to its model's ``generate`` with the sample's seed, as
    :meth:`pwopsd.sampling.HFEngine._sample` does for strings.
    """
    if engine.backend == "vllm":
        reqs = [
            SampleRequest(key, {"prompt_token_ids": list(ids)}, seed) for key, ids, seed in requests
        ]
        yield from engine.stream(reqs, sampling)
        return
    for key, ids, seed in requests:
        yield key, engine.sample_ids(ids, sampling, seed)


# --------------------------------------------------------------------------------------
# The run context
# --------------------------------------------------------------------------------------


@dataclass
class Context:
    """What every phase needs: config, profile, paths, the problems, lazy engine and model."""

    cfg: DiagnosticConfig
    profile: Profile
    scratch: Path
    problems: list[tuple[str, Problem]]
    make_engine: Callable[[], Any] | None = None
    log: Callable[[str], None] = print
    _engine: Any = None
    _model: Any = None
    _tokenizer: Any = None
    _mask: list[bool] | None = None

    @property
    def model_name(self) -> str:
        return self.profile.main_model

    def file(self, phase: str) -> Path:
        return self.scratch / f"{phase}.jsonl"

    def engine(self) -> Any:
        if self._engine is None:
            if self.make_engine is not None:
                self._engine = self.make_engine()
            else:
                from pwopsd.sampling import make_engine

                self._engine = make_engine(
                    self.cfg.backend, self.model_name, profile=self.profile, seed=self.cfg.seed
                )
        return self._engine

    @property
    def tokenizer(self) -> Any:
        if self._tokenizer is None:
            from transformers import AutoTokenizer

            self._tokenizer = AutoTokenizer.from_pretrained(self.model_name)
        return self._tokenizer

    def model(self) -> Any:
        """The HF model for the teacher passes (B, D); freed by :meth:`free_model`."""
        if self._model is None:
            import torch
            from transformers import AutoModelForCausalLM

            if torch.cuda.is_available() and self._engine is not None:
                # vLLM holds most of the GPU: stop it while the teacher passes run (E
                # starts a fresh one). On CPU memory is plentiful and a restart costs ~30 s.
                self._engine.close()
                self._engine = None

            dtype = self.profile.engine.dtype
            net = AutoModelForCausalLM.from_pretrained(
                self.model_name, dtype=getattr(torch, dtype) if dtype != "auto" else "auto"
            )
            if torch.cuda.is_available():
                net = net.to("cuda")
            self._model = net.eval()
        return self._model

    def free_model(self) -> None:
        if self._model is not None:
            self._model = None
            import gc

            gc.collect()
            try:
                import torch

                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
            except ImportError:
                pass

    def valid_mask(self) -> list[bool]:
        if self._mask is None:
            net = self.model()
            self._mask = valid_token_mask(
                self.tokenizer,
                net.config.vocab_size,
                eos_ids(self.tokenizer, net.generation_config),
            )
        return self._mask

    def close(self) -> None:
        if self._engine is not None:
            self._engine.close()
            self._engine = None
        self.free_model()


def _few_threads(ctx: Context) -> Any:
    """A toy model's matmuls are too small to split: one torch thread avoids contention."""
    import contextlib

    import torch

    @contextlib.contextmanager
    def cm() -> Iterator[None]:
        n = torch.get_num_threads()
        small = sum(p.numel() for p in ctx.model().parameters()) < 50_000_000
        if small:
            torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.set_num_threads(n)

    return cm()


# --------------------------------------------------------------------------------------
# Phase A: spines
# --------------------------------------------------------------------------------------


def phase_a(ctx: Context) -> dict[str, Any]:
    """Greedy student-template spines, sampled fallback when no boxed answer is reached."""
    from pwopsd.config import SamplingConfig
    from pwopsd.prompts import student_prompt

    cfg, path = ctx.cfg, ctx.file("A")
    done = {r["pid"] for r in read_jsonl(path)}
    todo = [(pool, p) for pool, p in ctx.problems if problem_key(pool, p) not in done]
    if todo:
        tok = ctx.tokenizer
        budget = spine_budget(cfg, ctx.profile)
        by_key = {problem_key(pool, p): (pool, p) for pool, p in todo}
        ids = {k: prompt_ids(tok, student_prompt(tok, p.problem)) for k, (_, p) in by_key.items()}
        engine = ctx.engine()
        pending = list(by_key)
        with Appender(path) as out:
            for attempt in range(cfg.spine_fallback_tries + 1):
                if not pending:
                    break
                greedy = attempt == 0
                sampling = SamplingConfig(
                    n=1,
                    temperature=0.0 if greedy else cfg.spine_fallback_temperature,
                    top_p=1.0 if greedy else 0.95,
                    top_k=-1,
                    max_new_tokens=budget,
                )
                reqs = [(k, ids[k], derive_seed(cfg.seed, "A", k, attempt)) for k in pending]
                last = attempt == cfg.spine_fallback_tries
                still = []
                for key, comp in stream_ids(engine, reqs, sampling):
                    answer = extract_answer(comp.text)
                    if answer is None and not last:
                        still.append(key)
                        continue
                    pool, prob = by_key[key]
                    out.write(
                        {
                            "pid": key,
                            "pool": pool,
                            "problem": prob.problem,
                            "gold": prob.answer,
                            "student_prompt_ids": ids[key],
                            "spine": list(comp.token_ids),
                            "text": comp.text,
                            "finish_reason": comp.finish_reason,
                            "mode": "greedy" if greedy else "sampled",
                            "attempt": attempt,
                            "answer": answer,
                            "correct": bool(answer is not None and is_correct(answer, prob.answer)),
                        }
                    )
                pending = still
    rows = read_jsonl(path)
    return {
        "spines": len(rows),
        "greedy": sum(r["mode"] == "greedy" for r in rows),
        "sampled_fallback": sum(r["mode"] == "sampled" for r in rows),
        "no_boxed_answer": sum(r["answer"] is None for r in rows),
        "correct": sum(r["correct"] for r in rows),
        "mean_tokens": sum(len(r["spine"]) for r in rows) / max(len(rows), 1),
    }


# --------------------------------------------------------------------------------------
# Phase B: the teacher pass
# --------------------------------------------------------------------------------------


def phase_b(ctx: Context) -> dict[str, Any]:
    """The final-answer teacher along each spine (one HF forward pass, chunked lm_head)."""
    import torch

    from pwopsd.prompts import answer_prompt

    cfg, path = ctx.cfg, ctx.file("B")
    spines = read_jsonl(ctx.file("A"))
    done = {r["pid"] for r in read_jsonl(path)}
    todo = [s for s in spines if s["pid"] not in done]
    if todo:
        tok, net = ctx.tokenizer, ctx.model()
        valid = torch.tensor(ctx.valid_mask(), device=net.device)
        with Appender(path) as out, torch.no_grad(), _few_threads(ctx):
            for s in todo:
                t_ids = prompt_ids(tok, answer_prompt(tok, s["problem"], s["gold"]))
                spine = s["spine"]
                row: dict[str, Any] = {"pid": s["pid"], "teacher_prompt_len": len(t_ids)}
                if spine:
                    hidden = hidden_states(net, t_ids + spine)
                    # hidden at index j predicts token j + 1: spine[i] sits at len(t_ids) + i.
                    h = hidden[len(t_ids) - 1 : len(t_ids) - 1 + len(spine)]
                    lm_head = net.get_output_embeddings()
                    stats: dict[str, list] = {}
                    for a in range(0, len(spine), 1024):
                        part = teacher_position_stats(
                            lm_head(h[a : a + 1024]),
                            torch.tensor(spine[a : a + 1024], device=net.device),
                            valid,
                            cfg.entropy_top_k,
                            cfg.children_per_candidate,
                        )
                        for k, v in part.items():
                            stats.setdefault(k, []).extend(v)
                    row.update(stats)
                row["boxed_start"] = boxed_start(tok, spine)
                out.write(row)
    return {"teacher_passes": len(read_jsonl(path))}


# --------------------------------------------------------------------------------------
# Phase C: candidates
# --------------------------------------------------------------------------------------


def phase_c(ctx: Context) -> dict[str, Any]:
    """Filter positions and keep each problem's candidates with their forced children."""
    cfg, path = ctx.cfg, ctx.file("C")
    spines = {s["pid"]: s for s in read_jsonl(ctx.file("A"))}
    done = {r["pid"] for r in read_jsonl(path)}
    todo = [b for b in read_jsonl(ctx.file("B")) if b["pid"] not in done]
    if todo:
        net = ctx.model()
        valid = ctx.valid_mask()
        eos = eos_ids(ctx.tokenizer, net.generation_config)
        with Appender(path) as out:
            for b in todo:
                spine = spines[b["pid"]]["spine"]
                cands, drops = (
                    ([], {}) if not spine else select_candidates(spine, b, valid, cfg, eos)
                )
                out.write({"pid": b["pid"], "candidates": cands, "dropped": drops})
    rows = read_jsonl(path)
    return {
        "problems": len(rows),
        "candidates": sum(len(r["candidates"]) for r in rows),
        "problems_without_candidate": sum(not r["candidates"] for r in rows),
        "children": sum(len(c["children"]) for r in rows for c in r["candidates"]),
        "dropped_positions": {
            k: sum(r["dropped"].get(k, 0) for r in rows)
            for k in (
                "junk_or_special_token",
                "after_boxed",
                "implausible_children",
                "spacing",
                "eos_or_junk_children",
            )
        },
    }


# --------------------------------------------------------------------------------------
# Phase D: MC dropout
# --------------------------------------------------------------------------------------


def phase_d(ctx: Context) -> dict[str, Any]:
    """MC-dropout scores of the teacher at each candidate position."""
    import torch

    from pwopsd.prompts import answer_prompt

    cfg, path = ctx.cfg, ctx.file("D")
    spines = {s["pid"]: s for s in read_jsonl(ctx.file("A"))}
    done = {r["pid"] for r in read_jsonl(path)}
    todo = [c for c in read_jsonl(ctx.file("C")) if c["pid"] not in done]
    if todo:
        tok, net = ctx.tokenizer, ctx.model()
        valid = torch.tensor(ctx.valid_mask(), device=net.device)
        lm_head = net.get_output_embeddings()
        with Appender(path) as out, torch.no_grad(), _few_threads(ctx):
            for c in todo:
                if not c["candidates"]:
                    out.write({"pid": c["pid"], "scores": {}})
                    continue
                s = spines[c["pid"]]
                t_ids = prompt_ids(tok, answer_prompt(tok, s["problem"], s["gold"]))
                ids = t_ids + s["spine"]
                at = torch.tensor([len(t_ids) - 1 + cand["pos"] for cand in c["candidates"]])
                passes = []
                with DropoutHooks(
                    net, cfg.mc_layers, cfg.mc_dropout, derive_seed(cfg.seed, "D", c["pid"])
                ):
                    for _ in range(cfg.mc_samples):
                        h = hidden_states(net, ids)[at.to(net.device)]
                        passes.append(torch.softmax(lm_head(h).float(), dim=-1))
                scores = mc_scores(torch.stack(passes), cfg.entropy_top_k, valid)
                out.write(
                    {
                        "pid": c["pid"],
                        "positions": [cand["pos"] for cand in c["candidates"]],
                        "scores": scores,
                    }
                )
    return {"problems": len(read_jsonl(path))}


# --------------------------------------------------------------------------------------
# Phase E: forced-child continuations
# --------------------------------------------------------------------------------------


def continuation_requests(ctx: Context) -> list[tuple[tuple, list[int], int]]:
    """Every (key, prompt ids, seed) of phase E; key = (pid, pos, child, rollout index)."""
    cfg = ctx.cfg
    spines = {s["pid"]: s for s in read_jsonl(ctx.file("A"))}
    reqs = []
    for c in read_jsonl(ctx.file("C")):
        s = spines[c["pid"]]
        for cand in c["candidates"]:
            for child in cand["children"]:
                ids = continuation_prompt_ids(
                    s["student_prompt_ids"], s["spine"], cand["pos"], child
                )
                for r in range(cfg.rollouts_per_child):
                    key = (c["pid"], cand["pos"], child, r)
                    reqs.append((key, ids, derive_seed(cfg.seed, "E", *key)))
    return reqs


def phase_e(ctx: Context) -> dict[str, Any]:
    """Sample the continuations not yet on disk; one row per finished continuation."""
    from pwopsd.config import SamplingConfig

    cfg, path = ctx.cfg, ctx.file("E")
    done = {tuple(r["key"]) for r in read_jsonl(path)}
    todo = [q for q in continuation_requests(ctx) if tuple(q[0]) not in done]
    too_long = 0
    if todo:
        tok = ctx.tokenizer
        budget = continuation_budget(cfg, ctx.profile)
        max_len = ctx.profile.engine.max_model_len
        # Requests share a SamplingConfig per stream: bucket the budgets that the context
        # length leaves (all equal at toy scale).
        buckets: dict[int, list] = {}
        for key, ids, seed in todo:
            room = min(budget, max_len - len(ids))
            if room < 1:
                too_long += 1
                continue
            room = room if room == budget else max(1, room - room % 512)
            buckets.setdefault(room, []).append((key, ids, seed))
        engine = ctx.engine() if buckets else None
        with Appender(path) as out:
            for room, reqs in sorted(buckets.items()):
                sampling = SamplingConfig(
                    n=1,
                    temperature=cfg.continuation_temperature,
                    top_p=cfg.continuation_top_p,
                    top_k=-1,
                    max_new_tokens=room,
                )
                prefix_text = {}
                ids_of = {q[0]: q[1] for q in reqs}
                for key, comp in stream_ids(engine, reqs, sampling):
                    pid, pos, child, r = key
                    if (pid, pos, child) not in prefix_text:
                        ids = ids_of[key]
                        # the forced prefix's own text (from the spine start): a box the child
                        # opens still counts
                        n_prompt = len(ids) - pos - 1
                        prefix_text[(pid, pos, child)] = tok.decode(
                            ids[n_prompt:], skip_special_tokens=True
                        )
                    text = prefix_text[(pid, pos, child)] + comp.text
                    out.write(
                        {
                            "key": list(key),
                            "answer": extract_answer(text),
                            "finish_reason": comp.finish_reason,
                            "new_tokens": len(comp.token_ids),
                        }
                    )
    rows = read_jsonl(path)
    return {
        "continuations": len(rows),
        "requested": len(continuation_requests(ctx)),
        "skipped_too_long": too_long,
        "ended_at_once": sum(r["new_tokens"] <= 1 and r["finish_reason"] == "stop" for r in rows),
        "truncated": sum(r["finish_reason"] == "length" for r in rows),
        "mean_new_tokens": sum(r["new_tokens"] for r in rows) / max(len(rows), 1),
    }


# --------------------------------------------------------------------------------------
# Phase F: viability labels
# --------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------
# Phase G: Table 1 and Figure 1
# --------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------


def output_path(cfg: DiagnosticConfig, stem: str) -> Path:
    """``<results_dir>/<stem>.seed<k>.json`` for the full configuration, and
    ``<stem>.seed<k>.<tag>.json`` for a smaller or otherwise different one
    (:meth:`~pwopsd.config.NotebookConfig.scale_tag`), so a quick run never replaces the files
    the book reads; each seed adds its own files."""
    tag = cfg.scale_tag()
    name = f"{stem}.seed{cfg.seed}"
    return cfg.results_dir / (f"{name}.{tag}.json" if tag else f"{name}.json")


def scratch_dir(cfg: DiagnosticConfig) -> Path:
    """``<results_dir>/scratch/<seed and sampling tag>/``: one directory per set of the settings
    phases A-E depend on, so runs differing only in F/G thresholds share the samples."""
    return cfg.results_dir / "scratch" / sample_tag(cfg)


def plan_summary(cfg: DiagnosticConfig, profile: Profile) -> dict[str, Any]:
    """What a run would do (``--dry-run``): model, pools, budgets, upper bounds on the work."""
    pools: dict[str, Any] = {}
    for pool in cfg.pools:
        spec = pool_spec(profile, pool)
        pools[pool] = {"source": spec.source, "split": spec.split}
    try:  # local files: say how many problems each pool gives (hub pools would need the net)
        for pool, _ in select_problems(cfg, profile):
            pools[pool]["drawn"] = pools[pool].get("drawn", 0) + 1
    except Exception as err:  # noqa: BLE001 - a plan is still useful without the counts
        pools["note"] = f"pool sizes unknown offline ({type(err).__name__})"
    n_cand = cfg.max_problems * cfg.candidates_per_problem
    return {
        "profile": profile.name,
        "model": profile.main_model,
        "backend": cfg.backend,
        "engine": dataclasses.asdict(profile.engine),
        "pools": pools,
        "problems": cfg.max_problems,
        "spine_budget_tokens": spine_budget(cfg, profile),
        "continuation_budget_tokens": continuation_budget(cfg, profile),
        "max_candidates": n_cand,
        "max_forced_children": n_cand * cfg.children_per_candidate,
        "max_continuations": n_cand * cfg.children_per_candidate * cfg.rollouts_per_child,
        "mc_dropout_passes": cfg.max_problems * cfg.mc_samples,
        "scratch": str(scratch_dir(cfg)),
        "results": [str(output_path(cfg, stem)) for stem in ("diagnostic", "table1", "figure1")],
    }


def run(
    cfg: DiagnosticConfig,
    *,
    make_engine: Callable[[], Any] | None = None,
    stop_after: str | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run (or resume) phases A-G; write the diagnostic, table1 and figure1 files of this seed.

    ``make_engine`` replaces the factory call (tests pass a fake); ``stop_after`` ("A".."E")
    stops once that phase is on disk.
    """
    profile = cfg.get_profile()
    scratch = scratch_dir(cfg)
    scratch.mkdir(parents=True, exist_ok=True)
    check_plan(scratch, cfg, profile.main_model)
    ctx = Context(cfg, profile, scratch, select_problems(cfg, profile), make_engine, log)
    start = time.time()
    timings: dict[str, float] = {}
    counts: dict[str, Any] = {}
    try:
        for name, fn in (
            ("A", phase_a),
            ("B", phase_b),
            ("C", phase_c),
            ("D", phase_d),
            ("E", phase_e),
        ):
            if name == "E":
                ctx.free_model()  # the teacher model is not needed while the engine samples
            t0 = time.time()
            counts[name] = fn(ctx)
            timings[name] = round(time.time() - t0, 2)
            log(f"[diagnostic] phase {name}: {counts[name]} ({timings[name]:.1f} s)")
            if stop_after == name:
                return {"status": "stopped", "after": name, "counts": counts}
    finally:
        ctx.close()
    t0 = time.time()
    records = phase_f(ctx)
    labels = {k: sum(r["label"] == k for r in records) for k in (*LABELS, "incomplete")}
    counts["F"] = {"candidates": len(records), **labels}
    timings["F"] = round(time.time() - t0, 2)
    t0 = time.time()
    rows = table1(records, cfg)
    fig = figure1_data(records)
    timings["G"] = round(time.time() - t0, 2)
    wall = time.time() - start
    files = {stem: output_path(cfg, stem) for stem in ("diagnostic", "table1", "figure1")}
    prov = dict(profile=cfg.profile, seed=cfg.seed, wall_seconds=wall)
    write_results(files["table1"], {"rows": rows}, **prov)
    write_results(files["figure1"], fig, **prov)
    # every candidate with its scores, viabilities and label, for inspection (not committed)
    write_json(scratch / "candidates.json", records)
    result = {
        "section": "diagnostic",
        "status": "ok",
        "model": profile.main_model,
        "counts": counts,
        "phase_seconds": timings,
        "position_orientation": cfg.position_orientation,
        "config": cfg.to_dict(),
        "scale_tag": cfg.scale_tag(),
        "files": {stem: path.name for stem, path in files.items()},
    }
    write_results(files["diagnostic"], result, **prov)
    log(f"[diagnostic] labels {labels}; wrote {files['table1']} in {wall:.0f} s")
    return {**result, "table1": rows, "paths": {k: str(v) for k, v in files.items()}}
