"""Phases A and E of the diagnostic: what the student samples through the engine.

* A (spines): the student template, greedy; when greedy reaches no boxed answer within the
  budget, up to ``spine_fallback_tries`` sampled retries. One row per problem.
* E (continuations): student prompt + spine[:pos] + forced child, token ids exactly, sampled
  through the engine factory; one row per finished continuation.

Each phase skips what its file already holds, so a rerun resumes where a kill stopped it.
"""

from __future__ import annotations

from typing import Any

from pwopsd import jsonl
from pwopsd.config import SamplingConfig
from pwopsd.data import Problem
from pwopsd.diagnostic import store
from pwopsd.diagnostic.context import (
    Context,
    continuation_prompt_ids,
    prompt_ids,
    stream_ids,
)
from pwopsd.diagnostic.problems import continuation_budget, problem_key, spine_budget
from pwopsd.grading import extract_answer, is_correct
from pwopsd.prompts import student_prompt
from pwopsd.sampling import derive_seed

Request = tuple[tuple, list[int], int]
"""One continuation to sample: (key, prompt token ids, seed)."""

# --------------------------------------------------------------------------------------
# Phase A: spines
# --------------------------------------------------------------------------------------


def phase_a(ctx: Context) -> dict[str, Any]:
    """Greedy student-template spines, sampled fallback when no boxed answer is reached."""
    path = ctx.file("A")
    done = {r["problem_key"] for r in store.resume(path)}
    todo = [(pool, p) for pool, p in ctx.problems if problem_key(pool, p) not in done]
    if todo:
        _sample_spines(ctx, todo)
    rows = jsonl.read(path)
    return {
        "spines": len(rows),
        "greedy": sum(r["mode"] == "greedy" for r in rows),
        "sampled_fallback": sum(r["mode"] == "sampled" for r in rows),
        "no_boxed_answer": sum(r["answer"] is None for r in rows),
        "correct": sum(r["correct"] for r in rows),
        "mean_tokens": sum(len(r["spine"]) for r in rows) / max(len(rows), 1),
    }


def _sample_spines(ctx: Context, todo: list[tuple[str, Problem]]) -> None:
    """Greedy first; the problems without a boxed answer again, sampled, until the last try
    (whose spine is kept whatever it holds). Each spine is appended as it finishes."""
    cfg, path, tok = ctx.cfg, ctx.file("A"), ctx.tokenizer
    budget = spine_budget(cfg, ctx.profile)
    by_key = {problem_key(pool, p): (pool, p) for pool, p in todo}
    ids = {k: prompt_ids(tok, student_prompt(tok, p.problem)) for k, (_, p) in by_key.items()}
    engine = ctx.engine()
    pending = list(by_key)
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
            row = {
                "problem_key": key,
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
            jsonl.append(path, [row])
        pending = still


# --------------------------------------------------------------------------------------
# Phase E: forced-child continuations
# --------------------------------------------------------------------------------------


def continuation_requests(ctx: Context) -> list[Request]:
    """Every (key, prompt ids, seed) of phase E; key = (problem key, pos, child, rollout index)."""
    cfg = ctx.cfg
    spines = {s["problem_key"]: s for s in jsonl.read(ctx.file("A"))}
    reqs = []
    for c in jsonl.read(ctx.file("C")):
        s = spines[c["problem_key"]]
        for cand in c["candidates"]:
            for child in cand["children"]:
                ids = continuation_prompt_ids(
                    s["student_prompt_ids"], s["spine"], cand["pos"], child
                )
                for r in range(cfg.rollouts_per_child):
                    key = (c["problem_key"], cand["pos"], child, r)
                    reqs.append((key, ids, derive_seed(cfg.seed, "E", *key)))
    return reqs


def phase_e(ctx: Context) -> dict[str, Any]:
    """Sample the continuations not yet on disk; one row per finished continuation."""
    path = ctx.file("E")
    done = {tuple(r["key"]) for r in store.resume(path)}
    todo = [q for q in continuation_requests(ctx) if tuple(q[0]) not in done]
    buckets, too_long = {}, 0
    if todo:
        budget = continuation_budget(ctx.cfg, ctx.profile)
        buckets, too_long = budget_buckets(todo, budget, ctx.profile.engine.max_model_len)
    if buckets:
        _sample_continuations(ctx, buckets)
    rows = jsonl.read(path)
    return {
        "continuations": len(rows),
        "requested": len(continuation_requests(ctx)),
        "skipped_too_long": too_long,
        "ended_at_once": sum(r["new_tokens"] <= 1 and r["finish_reason"] == "stop" for r in rows),
        "truncated": sum(r["finish_reason"] == "length" for r in rows),
        "mean_new_tokens": sum(r["new_tokens"] for r in rows) / max(len(rows), 1),
    }


def budget_buckets(
    requests: list[Request], budget: int, max_len: int
) -> tuple[dict[int, list[Request]], int]:
    """Requests grouped by the new-token budget the context length leaves them, and how many
    have no room at all (skipped).

    Requests share a SamplingConfig per stream, so a budget cut by the context length is
    rounded down to a multiple of 512 to keep the groups few (all equal at toy scale).
    """
    buckets: dict[int, list[Request]] = {}
    too_long = 0
    for key, ids, seed in requests:
        room = min(budget, max_len - len(ids))
        if room < 1:
            too_long += 1
            continue
        room = room if room == budget else max(1, room - room % 512)
        buckets.setdefault(room, []).append((key, ids, seed))
    return buckets, too_long


def _sample_continuations(ctx: Context, buckets: dict[int, list[Request]]) -> None:
    """Sample each bucket with its budget; append one row per finished continuation."""
    cfg, path, tok = ctx.cfg, ctx.file("E"), ctx.tokenizer
    engine = ctx.engine()
    for room, reqs in sorted(buckets.items()):
        sampling = SamplingConfig(
            n=1,
            temperature=cfg.continuation_temperature,
            top_p=cfg.continuation_top_p,
            top_k=-1,
            max_new_tokens=room,
        )
        prefix_text: dict[tuple, str] = {}
        ids_of = {q[0]: q[1] for q in reqs}
        for key, comp in stream_ids(engine, reqs, sampling):
            branch, pos = key[:3], key[1]  # (problem key, pos, child): one forced prefix
            if branch not in prefix_text:
                ids = ids_of[key]
                # the forced prefix's own text (from the spine start): a box the child opens
                # still counts
                n_prompt = len(ids) - pos - 1
                prefix_text[branch] = tok.decode(ids[n_prompt:], skip_special_tokens=True)
            text = prefix_text[branch] + comp.text
            row = {
                "key": list(key),
                "answer": extract_answer(text),
                "finish_reason": comp.finish_reason,
                "new_tokens": len(comp.token_ids),
            }
            jsonl.append(path, [row])
