"""Phases B, C and D of the diagnostic: the teacher along each spine, on the HF model.

* B (teacher): one forward pass of the teacher (same weights, the final-answer template of
  :func:`pwopsd.prompts.answer_prompt`) along the spine: per position the full entropy, the
  top-k *valid*-token truncated entropy, the top-1 probability, the spine token's probability
  and the top valid children.
* C (candidates): filters (junk / EOS / special tokens, plausibility floor, minimum spacing,
  nothing from the final ``\\boxed`` on), then up to N highest-truncated-entropy positions.
* D (MC dropout): forward hooks that drop out the last layers' outputs, ``mc_samples`` passes:
  predictive entropy, mutual information, Dirichlet precision. Hooks removed in a ``finally``.

One row per problem each; the tensor work is in :mod:`pwopsd.diagnostic.teacher`.
"""

from __future__ import annotations

from typing import Any

import torch

from pwopsd import jsonl
from pwopsd.diagnostic import store
from pwopsd.diagnostic.context import Context, few_threads, prompt_ids
from pwopsd.diagnostic.teacher import (
    DropoutHooks,
    boxed_start,
    hidden_states,
    mc_scores,
    select_candidates,
    teacher_position_stats,
)
from pwopsd.prompts import answer_prompt
from pwopsd.sampling import derive_seed, eos_token_ids

LM_HEAD_CHUNK = 1024
"""Spine positions sent through the lm_head at once in phase B (bounds the [T, V] logits)."""

DROP_REASONS = (
    "junk_or_special_token",
    "after_boxed",
    "implausible_children",
    "spacing",
    "eos_or_junk_children",
)
"""Why phase C drops a position (the counts :func:`~pwopsd.diagnostic.teacher.select_candidates`
returns), in the order phase C's summary lists them."""

# --------------------------------------------------------------------------------------
# Phase B: the teacher pass
# --------------------------------------------------------------------------------------


def phase_b(ctx: Context) -> dict[str, Any]:
    """The final-answer teacher along each spine (one HF forward pass, chunked lm_head)."""
    path = ctx.file("B")
    spines = jsonl.read(ctx.file("A"))
    done = {r["problem_key"] for r in store.resume(path)}
    todo = [s for s in spines if s["problem_key"] not in done]
    if todo:
        tok, net = ctx.tokenizer, ctx.model()
        valid = torch.tensor(ctx.valid_mask(), device=net.device)  # [V] bool
        with torch.no_grad(), few_threads(ctx):
            for s in todo:
                t_ids = prompt_ids(tok, answer_prompt(tok, s["problem"], s["gold"]))
                spine = s["spine"]
                row: dict[str, Any] = {
                    "problem_key": s["problem_key"],
                    "teacher_prompt_len": len(t_ids),
                }
                if spine:
                    row.update(_spine_stats(ctx, net, t_ids, spine, valid))
                row["boxed_start"] = boxed_start(tok, spine)
                jsonl.append(path, [row])
    return {"teacher_passes": len(jsonl.read(path))}


def _spine_stats(
    ctx: Context, net: Any, t_ids: list[int], spine: list[int], valid: torch.Tensor
) -> dict[str, list]:
    """:func:`~pwopsd.diagnostic.teacher.teacher_position_stats` of every spine position."""
    hidden = hidden_states(net, t_ids + spine)  # [P + T, H]
    # hidden at index j predicts token j + 1: spine[i] sits at len(t_ids) + i.
    h = hidden[len(t_ids) - 1 : len(t_ids) - 1 + len(spine)]  # [T, H]
    lm_head = net.get_output_embeddings()
    stats: dict[str, list] = {}
    for a in range(0, len(spine), LM_HEAD_CHUNK):
        part = teacher_position_stats(
            lm_head(h[a : a + LM_HEAD_CHUNK]),  # [chunk, V]
            torch.tensor(spine[a : a + LM_HEAD_CHUNK], device=net.device),  # [chunk]
            valid,
            ctx.cfg.entropy_top_k,
            ctx.cfg.children_per_candidate,
        )
        for k, v in part.items():
            stats.setdefault(k, []).extend(v)
    return stats


# --------------------------------------------------------------------------------------
# Phase C: candidates
# --------------------------------------------------------------------------------------


def phase_c(ctx: Context) -> dict[str, Any]:
    """Filter positions and keep each problem's candidates with their forced children."""
    cfg, path = ctx.cfg, ctx.file("C")
    spines = {s["problem_key"]: s for s in jsonl.read(ctx.file("A"))}
    done = {r["problem_key"] for r in store.resume(path)}
    todo = [b for b in jsonl.read(ctx.file("B")) if b["problem_key"] not in done]
    if todo:
        net = ctx.model()
        valid = ctx.valid_mask()
        eos = eos_token_ids(ctx.tokenizer, net.generation_config)
        for b in todo:
            spine = spines[b["problem_key"]]["spine"]
            cands, drops = ([], {}) if not spine else select_candidates(spine, b, valid, cfg, eos)
            row = {"problem_key": b["problem_key"], "candidates": cands, "dropped": drops}
            jsonl.append(path, [row])
    rows = jsonl.read(path)
    return {
        "problems": len(rows),
        "candidates": sum(len(r["candidates"]) for r in rows),
        "problems_without_candidate": sum(not r["candidates"] for r in rows),
        "children": sum(len(c["children"]) for r in rows for c in r["candidates"]),
        "dropped_positions": {k: sum(r["dropped"].get(k, 0) for r in rows) for k in DROP_REASONS},
    }


# --------------------------------------------------------------------------------------
# Phase D: MC dropout
# --------------------------------------------------------------------------------------


def phase_d(ctx: Context) -> dict[str, Any]:
    """MC-dropout scores of the teacher at each candidate position."""
    cfg, path = ctx.cfg, ctx.file("D")
    spines = {s["problem_key"]: s for s in jsonl.read(ctx.file("A"))}
    done = {r["problem_key"] for r in store.resume(path)}
    todo = [c for c in jsonl.read(ctx.file("C")) if c["problem_key"] not in done]
    if todo:
        tok, net = ctx.tokenizer, ctx.model()
        valid = torch.tensor(ctx.valid_mask(), device=net.device)  # [V] bool
        lm_head = net.get_output_embeddings()
        with torch.no_grad(), few_threads(ctx):
            for c in todo:
                key = c["problem_key"]
                if not c["candidates"]:
                    jsonl.append(path, [{"problem_key": key, "scores": {}}])
                    continue
                s = spines[key]
                t_ids = prompt_ids(tok, answer_prompt(tok, s["problem"], s["gold"]))
                ids = t_ids + s["spine"]
                positions = [cand["pos"] for cand in c["candidates"]]
                # hidden at index j predicts token j + 1: spine[i] sits at len(t_ids) + i.
                at = torch.tensor([len(t_ids) - 1 + pos for pos in positions])  # [N]
                passes = []
                with DropoutHooks(
                    net, cfg.mc_layers, cfg.mc_dropout, derive_seed(cfg.seed, "D", key)
                ):
                    for _ in range(cfg.mc_samples):
                        h = hidden_states(net, ids)[at.to(net.device)]  # [N, H]
                        passes.append(torch.softmax(lm_head(h).float(), dim=-1))  # [N, V]
                probs = torch.stack(passes)  # [S, N, V]
                scores = mc_scores(probs, cfg.entropy_top_k, valid)
                row = {"problem_key": key, "positions": positions, "scores": scores}
                jsonl.append(path, [row])
    return {"problems": len(jsonl.read(path))}
