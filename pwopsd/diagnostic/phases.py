"""Phases A-G of the branch-viability diagnostic (PROTOCOL section 5), each resumable on disk.

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
* F (labels): a child's viability = fraction of its continuations with a correct boxed answer;
  diversity / real-uncertain / gray.
* G (statistics): Table 1 and Figure 1 data (:mod:`pwopsd.diagnostic.stats`).

On disk (``<results_dir>/scratch/``, not committed): ``plan.json`` (the settings the files were
made with; a rerun with other settings is refused, naming them), then one JSONL file per phase
A-E, appended and flushed row by row. A rerun reads them, skips finished problems (A-D) and
finished continuations (E), so a SIGKILL loses at most the rows in flight; a torn last line is
ignored. F and G are cheap and recomputed from those files on every run. The results the book
reads (``diagnostic.json``, ``table1.json``, ``figure1.json``) go to ``<results_dir>/``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pwopsd.config import REPO_ROOT, BenchmarkSpec, ConfigError, DiagnosticConfig, Profile
from pwopsd.data import Problem, load_benchmark
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

LABELS = ("diversity", "real_uncertain", "gray")

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
# Files: JSONL appended row by row, torn last line ignored
# --------------------------------------------------------------------------------------


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Rows of a phase file; a torn (unparsable) row, as a SIGKILL can leave last, is dropped."""
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


class Appender:
    """Append JSON rows to a file, each flushed and fsynced before the next is accepted."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Repair a torn last line: start the next row on a fresh line.
        torn = path.exists() and path.stat().st_size > 0 and not path.read_bytes().endswith(b"\n")
        self.f = path.open("a")
        if torn:
            self.f.write("\n")

    def write(self, row: dict[str, Any]) -> None:
        self.f.write(json.dumps(row, separators=(",", ":")) + "\n")
        self.f.flush()
        os.fsync(self.f.fileno())

    def close(self) -> None:
        self.f.close()

    def __enter__(self) -> Appender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def check_plan(scratch: Path, cfg: DiagnosticConfig, model: str) -> None:
    """Write ``plan.json`` on a fresh run; on a rerun refuse settings the files were not made with.

    Settings that only F and G read (thresholds, orientation, bootstrap) may change freely.
    """
    want = {"model": model}
    for keys in _PHASE_KEYS.values():
        want.update({k: getattr(cfg, k) for k in keys})
    path = scratch / "plan.json"
    if path.exists():
        have = json.loads(path.read_text())
        diff = sorted(k for k in want if have.get(k) != want[k])
        if diff:
            shown = ", ".join(f"{k}: files {have.get(k)!r} vs now {want[k]!r}" for k in diff)
            raise ConfigError(
                f"{scratch} holds a diagnostic run made with other settings ({shown}); pass "
                "another out_dir or delete that scratch directory to start afresh"
            )
        return
    write_json(path, want)


# --------------------------------------------------------------------------------------
# Tokens
# --------------------------------------------------------------------------------------


def eos_ids(tokenizer: Any, model_config: Any = None) -> set[int]:
    ids = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    gen_eos = getattr(model_config, "eos_token_id", None) if model_config is not None else None
    if isinstance(gen_eos, int):
        ids.add(gen_eos)
    elif isinstance(gen_eos, list | tuple):
        ids.update(int(x) for x in gen_eos)
    return ids


def valid_token_mask(tokenizer: Any, vocab_size: int, eos: set[int]) -> list[bool]:
    """Per vocabulary id: may it be a candidate's spine token or a forced child?

    Invalid ("junk"): EOS, special and added tokens (chat markers, think tags, the toy
    world's prompt phrases), ids past the tokenizer's vocabulary, tokens that decode to
    whitespace only or to nothing, and partial UTF-8 bytes (decode to U+FFFD). Our choice.
    """
    special = set(tokenizer.all_special_ids) | set(tokenizer.get_added_vocab().values()) | eos
    n_tok = len(tokenizer)
    mask = []
    for i in range(vocab_size):
        if i >= n_tok or i in special:
            mask.append(False)
            continue
        text = tokenizer.decode([i])
        mask.append(bool(text.strip()) and "\ufffd" not in text)
    return mask


def boxed_start(tokenizer: Any, ids: list[int]) -> int | None:
    """Index of the spine token holding the first character of the final ``\\boxed``.

    None without a box. Binary search over decoded prefix lengths (O(log T) decodes).
    """
    text = tokenizer.decode(ids, skip_special_tokens=True)
    at = text.rfind("\\boxed")
    if at < 0:
        return None
    lo, hi = 0, len(ids)  # smallest i with len(decode(ids[:i])) > at
    while lo < hi:
        mid = (lo + hi) // 2
        if len(tokenizer.decode(ids[:mid], skip_special_tokens=True)) > at:
            hi = mid
        else:
            lo = mid + 1
    return max(lo - 1, 0)


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
        yield from engine.stream(reqs, sampling)  # type: ignore[arg-type]
        return
    for key, ids, seed in requests:
        yield key, _hf_sample_ids(engine, ids, sampling, seed)


def _hf_sample_ids(engine: Any, ids: list[int], sampling: Any, seed: int) -> Any:
    import torch

    from pwopsd.sampling import Completion

    tok = engine.tokenizer
    net = engine.net
    greedy = sampling.temperature == 0
    kwargs: dict[str, Any] = dict(
        max_new_tokens=sampling.max_new_tokens,
        do_sample=not greedy,
        pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id,
    )
    if not greedy:
        kwargs.update(
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            top_k=sampling.top_k if sampling.top_k > 0 else None,
        )
    torch.manual_seed(seed)
    x = torch.tensor([ids], device=net.device)
    with torch.no_grad():
        out = net.generate(input_ids=x, attention_mask=torch.ones_like(x), **kwargs)
    new = out[0, len(ids) :].tolist()
    eos = eos_ids(tok, net.generation_config)
    finish = "stop" if new and new[-1] in eos else "length"
    return Completion(tok.decode(new, skip_special_tokens=True), tuple(new), None, finish)


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


def _hidden_states(net: Any, ids: list[int]) -> Any:
    """Last hidden states [T, H] (after the final norm) of one sequence."""
    import torch

    base = getattr(net, net.base_model_prefix)
    x = torch.tensor([ids], device=net.device)
    return base(input_ids=x).last_hidden_state[0]


def teacher_position_stats(
    logits: Any, spine_tokens: Any, valid: Any, top_k: int, n_children: int
) -> dict[str, list]:
    """Per position, from teacher logits [T, V] that predict ``spine_tokens`` [T].

    Returns lists of: full entropy, top-k valid-token truncated entropy (the teacher's
    probabilities of its k most likely valid tokens, renormalised), top-1 probability,
    probability of the spine token, and the top ``n_children`` valid ids with their
    probabilities.
    """
    import torch

    logp = torch.log_softmax(logits.float(), dim=-1)  # [T, V]
    p = logp.exp()
    full_h = -(p * logp).sum(-1)  # [T]
    masked = logp.masked_fill(~valid, float("-inf"))
    top_lp, top_ids = masked.topk(top_k, dim=-1)  # [T, k]
    top_p = top_lp.exp()
    q = top_p / top_p.sum(-1, keepdim=True).clamp_min(1e-30)
    trunc_h = -(q * q.clamp_min(1e-30).log()).sum(-1)
    spine_p = p.gather(1, spine_tokens[:, None])[:, 0]
    r = lambda t: [round(float(x), 6) for x in t]  # noqa: E731
    return {
        "entropy": r(full_h),
        "trunc_entropy": r(trunc_h),
        "top1": r(p.max(-1).values),
        "spine_prob": r(spine_p),
        "child_ids": top_ids[:, :n_children].tolist(),
        "child_probs": [r(row) for row in top_p[:, :n_children]],
    }


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
                    hidden = _hidden_states(net, t_ids + spine)
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


def select_candidates(
    spine: list[int],
    stats: dict[str, Any],
    valid: list[bool],
    cfg: DiagnosticConfig,
    eos: set[int],
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Candidate positions of one spine and why the others were dropped (counts).

    A position is eligible when the spine token there is valid (not junk, EOS or special),
    it lies before the final ``\\boxed`` (the whole spine when there is none), and at least
    ``min_children`` of the teacher's top valid children reach ``plausibility_floor``. The
    eligible positions are taken by falling truncated entropy, skipping any closer than
    ``min_spacing`` to one already taken, up to ``candidates_per_problem``.
    """
    drops = {
        "junk_or_special_token": 0,
        "after_boxed": 0,
        "implausible_children": 0,
        "spacing": 0,
        "eos_or_junk_children": 0,
    }
    n_body = len(spine) - (1 if spine and spine[-1] in eos else 0)
    limit = stats.get("boxed_start")
    limit = n_body if limit is None else min(limit, n_body)
    eligible = []
    for i in range(len(spine)):
        if i >= limit:
            drops["after_boxed"] += 1
            continue
        if not valid[spine[i]]:
            drops["junk_or_special_token"] += 1
            continue
        pairs = list(zip(stats["child_ids"][i], stats["child_probs"][i], strict=True))
        kids = [(c, p) for c, p in pairs if valid[c] and c not in eos]
        # B keeps only valid children; a child that would end the sequence is dropped here too
        drops["eos_or_junk_children"] += len(pairs) - len(kids)
        kids = [(c, p) for c, p in kids if p >= cfg.plausibility_floor]
        if len(kids) < cfg.min_children:
            drops["implausible_children"] += 1
            continue
        eligible.append((stats["trunc_entropy"][i], i, kids))
    eligible.sort(key=lambda e: (-e[0], e[1]))
    chosen: list[dict[str, Any]] = []
    for h, i, kids in eligible:
        if len(chosen) >= cfg.candidates_per_problem:
            break
        if any(abs(i - c["pos"]) < cfg.min_spacing for c in chosen):
            drops["spacing"] += 1
            continue
        chosen.append(
            {
                "pos": i,
                "u": (i + 0.5) / n_body,
                "spine_token": spine[i],
                "children": [c for c, _ in kids],
                "child_probs": [p for _, p in kids],
                "trunc_entropy": h,
                "entropy": stats["entropy"][i],
                "top1": stats["top1"][i],
                "spine_prob": stats["spine_prob"][i],
            }
        )
    chosen.sort(key=lambda c: c["pos"])
    return chosen, drops


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


class DropoutHooks:
    """Context manager: dropout on the outputs of the last ``n_layers`` decoder layers.

    Forward hooks, so the weights are untouched; every hook is removed in a ``finally``,
    even when a pass raises. ``generator`` makes the masks reproducible.
    """

    def __init__(self, net: Any, n_layers: int, p: float, seed: int) -> None:
        import torch

        self.layers = list(decoder_layers(net))[-n_layers:]
        self.p = p
        self.gen = torch.Generator(device=net.device).manual_seed(seed)
        self.handles: list[Any] = []

    def _hook(self, module: Any, args: Any, output: Any) -> Any:
        import torch

        h = output[0] if isinstance(output, tuple) else output
        if self.p > 0:
            keep = torch.rand(h.shape, generator=self.gen, device=h.device) >= self.p
            h = h * keep.to(h.dtype) / (1 - self.p)
        return (h, *output[1:]) if isinstance(output, tuple) else h

    def __enter__(self) -> DropoutHooks:
        try:
            for layer in self.layers:
                self.handles.append(layer.register_forward_hook(self._hook))
        except BaseException:
            self.remove()
            raise
        return self

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles = []

    def __exit__(self, *exc: object) -> None:
        self.remove()


def decoder_layers(net: Any) -> Any:
    """The decoder layer list of a causal LM (``model.layers`` for Qwen3 / Llama / Olmo)."""
    base = getattr(net, net.base_model_prefix)
    layers = getattr(base, "layers", None)
    if layers is None:
        raise ValueError(
            f"{type(net).__name__}: no decoder layer list at .{net.base_model_prefix}.layers"
        )
    return layers


def mc_scores(probs: Any, top_k: int, valid: Any) -> dict[str, list[float]]:
    """MC-dropout scores from ``probs`` [S passes, N positions, V].

    * predictive entropy H[mean_s p_s];
    * mutual information H[mean p] - mean_s H[p_s] (the epistemic part);
    * Dirichlet precision alpha_0 by the method of moments, per component j of the top-k
      valid tokens of the mean: m_j (1 - m_j) / v_j - 1, combined by a geometric mean over
      the components with v_j > 0 (our choice of estimator). Large = confident.
    """
    import torch

    eps = 1e-12
    mean = probs.mean(0)  # [N, V]
    pred_h = -(mean * (mean + eps).log()).sum(-1)
    exp_h = -(probs * (probs + eps).log()).sum(-1).mean(0)
    mi = (pred_h - exp_h).clamp_min(0)
    top_ids = mean.masked_fill(~valid, -1).topk(top_k, dim=-1).indices  # [N, k]
    comp = probs.gather(2, top_ids.unsqueeze(0).expand(probs.shape[0], -1, -1))  # [S, N, k]
    m = comp.mean(0)
    v = comp.var(0, unbiased=True) if probs.shape[0] > 1 else torch.zeros_like(m)
    ok = v > 1e-12
    a0 = torch.where(ok, m * (1 - m) / v.clamp_min(1e-12) - 1, torch.ones_like(m)).clamp_min(1e-6)
    log_a0 = torch.where(ok, a0.log(), torch.zeros_like(a0)).sum(-1) / ok.sum(-1).clamp_min(1)
    prec = torch.where(ok.any(-1), log_a0.exp(), torch.full_like(log_a0, 1e6))
    r = lambda t: [round(float(x), 6) for x in t]  # noqa: E731
    return {
        "mc_pred_entropy": r(pred_h),
        "mc_mutual_info": r(mi),
        "mc_dirichlet_precision": r(prec),
    }


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
                        h = _hidden_states(net, ids)[at.to(net.device)]
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


def label_candidate(viabilities: list[float], cfg: DiagnosticConfig) -> str:
    """diversity / real_uncertain / gray from the children's viabilities (PROTOCOL section 5)."""
    if sum(v >= cfg.viable_threshold for v in viabilities) >= cfg.min_viable_children:
        return "diversity"
    mean = sum(viabilities) / len(viabilities)
    if (
        all(v < cfg.real_max_child_viability for v in viabilities)
        and mean < cfg.real_max_mean_viability
    ):
        return "real_uncertain"
    return "gray"


def phase_f(ctx: Context) -> list[dict[str, Any]]:
    """One record per candidate: its scores, children's viabilities and label."""
    cfg = ctx.cfg
    spines = {s["pid"]: s for s in read_jsonl(ctx.file("A"))}
    mc = {d["pid"]: d for d in read_jsonl(ctx.file("D"))}
    by_child: dict[tuple, list] = {}
    for r in read_jsonl(ctx.file("E")):
        pid, pos, child, _ = r["key"]
        by_child.setdefault((pid, pos, child), []).append(r["answer"])
    cache: dict[tuple, bool] = {}

    def correct(answer: str | None, gold: str) -> bool:
        if answer is None:
            return False
        if (answer, gold) not in cache:
            cache[(answer, gold)] = is_correct(answer, gold)
        return cache[(answer, gold)]

    records = []
    for c in read_jsonl(ctx.file("C")):
        s = spines[c["pid"]]
        d = mc.get(c["pid"], {}).get("scores", {})
        for j, cand in enumerate(c["candidates"]):
            answers = [by_child.get((c["pid"], cand["pos"], ch), []) for ch in cand["children"]]
            complete = all(len(a) == cfg.rollouts_per_child for a in answers)
            via = [
                sum(correct(a, s["gold"]) for a in ans) / len(ans) if ans else 0.0
                for ans in answers
            ]
            rec = {
                "pid": c["pid"],
                "pool": s["pool"],
                "spine_correct": s["correct"],
                **{
                    k: cand[k]
                    for k in ("pos", "u", "trunc_entropy", "entropy", "top1", "spine_prob")
                },
                "children": cand["children"],
                "child_is_spine_token": [ch == cand["spine_token"] for ch in cand["children"]],
                "viability": via,
                "label": label_candidate(via, cfg) if complete else "incomplete",
            }
            for k, vals in d.items():
                rec[k] = vals[j]
            records.append(rec)
    return records


# --------------------------------------------------------------------------------------
# Phase G: Table 1 and Figure 1
# --------------------------------------------------------------------------------------


def score_definitions(orientation: str) -> list[tuple[str, str, Callable[[dict], float]]]:
    """Table 1's scores: (name, orientation stated in words, value from a candidate record).

    Every local score is oriented so that *higher = more uncertain*, fixed before looking at
    any label; the position score as ``position_orientation`` says.
    """
    if orientation == "late":
        pos = ("position u = (i - 0.5) / L", "higher = later in the spine", lambda r: r["u"])
    else:
        pos = ("early-position score 1 - u", "higher = earlier in the spine", lambda r: 1 - r["u"])
    return [
        pos,
        ("teacher top-k truncated entropy", "higher = more uncertain", lambda r: r["trunc_entropy"]),
        ("teacher full entropy", "higher = more uncertain", lambda r: r["entropy"]),
        ("teacher 1 - top-1 probability", "higher = more uncertain", lambda r: 1 - r["top1"]),
        ("teacher surprisal of the spine token", "higher = more uncertain", lambda r: -math.log(max(r["spine_prob"], 1e-12))),
        ("MC-dropout predictive entropy", "higher = more uncertain", lambda r: r["mc_pred_entropy"]),
        ("MC-dropout mutual information", "higher = more uncertain", lambda r: r["mc_mutual_info"]),
        ("MC-dropout Dirichlet precision, negated", "higher = more uncertain (lower precision)", lambda r: -math.log(r["mc_dirichlet_precision"])),
    ]  # fmt: skip


def table1(records: list[dict[str, Any]], cfg: DiagnosticConfig) -> list[dict[str, Any]]:
    """One row per score over the labelled (diversity / real-uncertain) candidates."""
    import numpy as np

    from pwopsd.diagnostic.stats import (
        cluster_bootstrap_ci,
        residual_auprc,
        residual_auroc,
        single_label_groups,
    )

    lab = [r for r in records if r["label"] in ("diversity", "real_uncertain")]
    y = np.array([r["label"] == "real_uncertain" for r in lab], dtype=int)
    g = np.array([r["pid"] for r in lab])
    rows = []
    for name, orient, fn in score_definitions(cfg.position_orientation):
        usable = [i for i, r in enumerate(lab) if _has(r, fn)]
        s = np.array([fn(lab[i]) for i in usable], dtype=float)
        yy, gg = y[usable], g[usable]
        row: dict[str, Any] = {
            "score": name,
            "orientation": orient,
            "auroc": None,
            "ci_low": None,
            "ci_high": None,
            "auprc": None,
            "auprc_chance": None,
            "n_real_uncertain": int(yy.sum()),
            "n_diversity": int(len(yy) - yy.sum()),
            "n_problems": len(set(gg.tolist())),
            "n_single_label_problems": single_label_groups(yy, gg) if len(yy) else 0,
        }
        if len(yy) and 0 < yy.sum() < len(yy):
            ci = cluster_bootstrap_ci(
                s, yy, gg, n_boot=cfg.bootstrap, seed=cfg.seed, level=cfg.ci_level
            )
            row.update(
                auroc=residual_auroc(s, yy, gg),
                ci_low=_finite(ci.lo),
                ci_high=_finite(ci.hi),
                auprc=residual_auprc(s, yy, gg),
                auprc_chance=float(yy.mean()),
                bootstrap_used=ci.n_used,
                bootstrap_skipped=ci.n_skipped,
            )
        rows.append(row)
    return rows


def _has(record: dict[str, Any], fn: Callable[[dict], float]) -> bool:
    try:
        return math.isfinite(fn(record))
    except (KeyError, TypeError, ValueError):
        return False


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def figure1_data(records: list[dict[str, Any]], n_bins: int = 5) -> dict[str, Any]:
    """Failure rate (1 - mean child viability) by normalised position, per label, and the
    candidates' positions (Figure 1)."""
    edges = [i / n_bins for i in range(n_bins + 1)]
    series: dict[str, Any] = {}
    for label in ("diversity", "real_uncertain", "gray", "all"):
        rs = [
            r
            for r in records
            if r["label"] != "incomplete" and (label == "all" or r["label"] == label)
        ]
        bins = []
        for a, b in zip(edges[:-1], edges[1:], strict=True):
            inside = [r for r in rs if a <= r["u"] < b or (b == 1.0 and r["u"] == 1.0)]
            fail = [1 - sum(r["viability"]) / len(r["viability"]) for r in inside]
            bins.append(
                {
                    "lo": a,
                    "hi": b,
                    "n": len(inside),
                    "failure_rate": sum(fail) / len(fail) if fail else None,
                }
            )
        series[label] = {"bins": bins, "u": [round(r["u"], 4) for r in rs]}
    return {"edges": edges, "series": series}


# --------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------


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
        "scratch": str(cfg.results_dir / "scratch"),
        "results": [
            str(cfg.results_dir / f) for f in ("diagnostic.json", "table1.json", "figure1.json")
        ],
    }


def run(
    cfg: DiagnosticConfig,
    *,
    make_engine: Callable[[], Any] | None = None,
    stop_after: str | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run (or resume) phases A-G; write diagnostic.json, table1.json and figure1.json.

    ``make_engine`` replaces the factory call (tests pass a fake); ``stop_after`` ("A".."E")
    stops once that phase is on disk.
    """
    profile = cfg.get_profile()
    scratch = cfg.results_dir / "scratch"
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
    out = cfg.results_dir
    prov = dict(profile=cfg.profile, seed=cfg.seed, wall_seconds=wall)
    write_results(out / "table1.json", {"rows": rows}, **prov)
    write_results(out / "figure1.json", {**fig, "records": records}, **prov)
    result = {
        "section": "diagnostic",
        "status": "ok",
        "model": profile.main_model,
        "counts": counts,
        "phase_seconds": timings,
        "position_orientation": cfg.position_orientation,
        "config": cfg.to_dict(),
    }
    write_results(out / "diagnostic.json", result, **prov)
    log(f"[diagnostic] labels {labels}; wrote {out}/table1.json in {wall:.0f} s")
    return {**result, "table1": rows}
