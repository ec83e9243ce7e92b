"""On-policy rollouts and the aligned teacher/student batch (PROTOCOL sections 1 and 3).

Per optimizer step the current student (base + LoRA) samples one completion per prompt from
the *student* template (thinking off; think-closure for templates that always open a think
block, :func:`pwopsd.prompts.student_prompt`). The completion's token ids then feed two
forward passes:

* student: student prompt + completion, with grad (adapter on);
* teacher: teacher prompt (reference solution, thinking on) + the same completion, no grad,
  adapter disabled.

:func:`align` builds both right-padded batches and, per row, the positions whose logits
predict each completion token, so ``logits.gather`` gives two [B, T, V] tensors aligned on
completion positions (prompt and padding masked out).

Two samplers draw the rollouts:

* :class:`EngineSampler`: the engine factory's vLLM engine, serving the adapter saved after
  each update (merged into its weights by default; see :mod:`pwopsd.train`), one seed per
  sample;
* :class:`HFSampler`: ``generate`` on the live peft model in this process, one seed per
  micro-batch (the fallback backend; exact weight sync by construction).

Bad input is masked and counted, never fatal: an empty completion has no valid token; a prompt
too long for the context is skipped (empty completion); a completion that would push the
teacher sequence past ``max_model_len`` is cut to fit.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from pwopsd import prompts
from pwopsd.config import SamplingConfig
from pwopsd.sampling import derive_seed, eos_token_ids, hf_generate_kwargs

Tensor = torch.Tensor


@dataclass
class Rollouts:
    """One completion per prompt of a step (token ids, finish reasons) plus counters."""

    completions: list[tuple[int, ...]]
    """Sampled completion token ids (EOS kept when the model stopped)."""
    finish_reasons: list[str | None]
    """"stop", "length" or None (prompt skipped)."""
    seconds: float = 0.0
    """Wall time of sampling."""
    prompt_too_long: int = 0
    """Prompts skipped because prompt + budget exceed the context."""

    @property
    def num_tokens(self) -> int:
        return sum(len(c) for c in self.completions)


@dataclass
class AlignedBatch:
    """Teacher and student inputs of one micro-batch, aligned on completion positions."""

    student_ids: Tensor  # [B, Ls] right-padded
    student_attention: Tensor  # [B, Ls]
    student_positions: Tensor  # [B, T] index into Ls of the logits predicting token t
    teacher_ids: Tensor  # [B, Lt]
    teacher_attention: Tensor  # [B, Lt]
    teacher_positions: Tensor  # [B, T]
    tokens: Tensor  # [B, T] completion token ids (pad where masked)
    mask: Tensor  # [B, T] bool, valid completion tokens
    stats: dict[str, int] = field(default_factory=dict)
    """Counters: empty, cut_to_fit, prompt_too_long rows."""


def render_prompts(tokenizer: Any, row: dict[str, str]) -> tuple[str, str]:
    """(student prompt, teacher prompt) of one training row {problem, solution}."""
    return (
        prompts.student_prompt(tokenizer, row["problem"]),
        prompts.teacher_prompt(tokenizer, row["problem"], row["solution"]),
    )


def encode(tokenizer: Any, text: str) -> list[int]:
    """Token ids of a rendered prompt (the chat template already added special tokens)."""
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def align(
    student_prompts: Sequence[Sequence[int]],
    teacher_prompts: Sequence[Sequence[int]],
    completions: Sequence[Sequence[int]],
    *,
    max_model_len: int,
    pad_id: int,
) -> AlignedBatch:
    """Right-padded student/teacher inputs and the logit positions of each completion token.

    Token ``j`` of row ``b``'s completion is predicted by the logits at position
    ``len(prompt_b) + j - 1`` of that row's sequence. Rows are masked, not dropped, so the
    batch keeps its shape: an empty completion (or a skipped prompt) has no valid token; a
    completion that would make either sequence longer than ``max_model_len`` is cut to fit.
    """
    if not (len(student_prompts) == len(teacher_prompts) == len(completions)):
        raise ValueError(
            f"{len(student_prompts)} student prompts, {len(teacher_prompts)} teacher prompts and "
            f"{len(completions)} completions: one each per row"
        )
    stats = {"empty": 0, "cut_to_fit": 0, "prompt_too_long": 0}
    kept: list[list[int]] = []
    for sp, tp, comp in zip(student_prompts, teacher_prompts, completions):
        room = max_model_len - max(len(sp), len(tp))
        if room < 1:
            stats["prompt_too_long"] += 1
            kept.append([])
            continue
        comp = list(comp)
        if len(comp) > room:
            stats["cut_to_fit"] += 1
            comp = comp[:room]
        if not comp:
            stats["empty"] += 1
        kept.append(comp)
    batch = len(kept)
    t_max = max(1, max(len(c) for c in kept))

    def side(prompt_ids: Sequence[Sequence[int]]) -> tuple[Tensor, Tensor, Tensor]:
        # A row without a valid token needs no real forward pass: one pad token stands in.
        seqs = [list(p) + c if c else [pad_id] for p, c in zip(prompt_ids, kept)]
        length = max(len(s) for s in seqs)
        ids = torch.full((batch, length), pad_id, dtype=torch.long)  # [B, L]
        attention = torch.zeros((batch, length), dtype=torch.long)  # [B, L]
        positions = torch.zeros((batch, t_max), dtype=torch.long)  # [B, T]
        for b, (p, s, c) in enumerate(zip(prompt_ids, seqs, kept)):
            ids[b, : len(s)] = torch.tensor(s, dtype=torch.long)
            attention[b, : len(s)] = 1
            if c:
                positions[b, : len(c)] = torch.arange(len(p) - 1, len(p) - 1 + len(c))
        return ids, attention, positions

    s_ids, s_att, s_pos = side(student_prompts)
    t_ids, t_att, t_pos = side(teacher_prompts)
    tokens = torch.full((batch, t_max), pad_id, dtype=torch.long)  # [B, T]
    mask = torch.zeros((batch, t_max), dtype=torch.bool)  # [B, T]
    for b, c in enumerate(kept):
        if c:
            tokens[b, : len(c)] = torch.tensor(c, dtype=torch.long)
            mask[b, : len(c)] = True
    return AlignedBatch(s_ids, s_att, s_pos, t_ids, t_att, t_pos, tokens, mask, stats)


def gather_positions(logits: Tensor, positions: Tensor) -> Tensor:
    """[B, L, V] logits, [B, T] positions -> [B, T, V] logits at those positions."""
    index = positions.unsqueeze(-1).expand(-1, -1, logits.shape[-1])  # [B, T, V]
    return torch.gather(logits, 1, index)


# --------------------------------------------------------------------------------------
# Samplers
# --------------------------------------------------------------------------------------


class EngineSampler:
    """Rollouts from an engine of :func:`pwopsd.engine.make_engine` (vLLM), one seed per sample.

    ``adapter`` is the directory of the current LoRA, saved after each optimizer step; the
    engine serves each new directory (or rewrite) merged into its weights or as a new
    ``LoRARequest`` (:attr:`pwopsd.config.EngineConfig.adapter_mode`).
    """

    def __init__(self, engine: Any, max_model_len: int) -> None:
        self.engine = engine
        self.max_model_len = max_model_len

    def sample(
        self,
        prompt_texts: Sequence[str],
        prompt_ids: Sequence[Sequence[int]],
        sampling: SamplingConfig,
        seeds: Sequence[int],
        adapter: str | None,
        model: Any = None,
        tokenizer: Any = None,
    ) -> Rollouts:
        t0 = time.perf_counter()
        ok = _fitting(prompt_ids, self.max_model_len)
        outs = self.engine.generate(
            [prompt_texts[i] for i in ok], sampling, seeds=[seeds[i] for i in ok], adapter=adapter
        )
        drawn = [(tuple(o[0].token_ids), o[0].finish_reason) for o in outs]
        return _rollouts(len(prompt_texts), ok, drawn, t0)


class HFSampler:
    """Rollouts from ``generate`` on the live (peft) student in this process.

    One batched ``generate`` per call with left padding, seeded by ``seeds[0]``: callers pass
    one micro-batch at a time so the draws depend only on that micro-batch (the same with one
    process or several).
    """

    def __init__(self, max_model_len: int) -> None:
        self.max_model_len = max_model_len

    def sample(
        self,
        prompt_texts: Sequence[str],
        prompt_ids: Sequence[Sequence[int]],
        sampling: SamplingConfig,
        seeds: Sequence[int],
        adapter: str | None,
        model: Any = None,
        tokenizer: Any = None,
    ) -> Rollouts:
        t0 = time.perf_counter()
        ok = _fitting(prompt_ids, self.max_model_len)
        drawn: list[tuple[tuple[int, ...], str]] = []
        if ok:
            pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
            eos = eos_token_ids(tokenizer, getattr(model, "generation_config", None))
            width = max(len(prompt_ids[i]) for i in ok)
            ids = torch.full((len(ok), width), pad, dtype=torch.long)  # [B, P] left-padded
            attention = torch.zeros((len(ok), width), dtype=torch.long)  # [B, P]
            for r, i in enumerate(ok):
                p = list(prompt_ids[i])
                ids[r, width - len(p) :] = torch.tensor(p)
                attention[r, width - len(p) :] = 1
            budget = min(sampling.max_new_tokens, self.max_model_len - width)
            kwargs = hf_generate_kwargs(
                sampling, pad_token_id=pad, eos_token_id=sorted(eos), max_new_tokens=max(budget, 1)
            )
            torch.manual_seed(seeds[0])
            was_training = model.training
            model.eval()
            with torch.no_grad():
                out = model.generate(input_ids=ids, attention_mask=attention, **kwargs)  # [B, P+N]
            model.train(was_training)
            for r in range(len(ok)):
                new = out[r, width:].tolist()
                stop = next((j for j, t in enumerate(new) if t in eos), None)
                if stop is not None:
                    drawn.append((tuple(new[: stop + 1]), "stop"))  # EOS kept, as vLLM does
                else:
                    drawn.append((tuple(new), "length"))
        return _rollouts(len(prompt_texts), ok, drawn, t0)


def _fitting(prompt_ids: Sequence[Sequence[int]], max_model_len: int) -> list[int]:
    """Indices of prompts that leave room for at least one new token (the rest are skipped)."""
    return [i for i, p in enumerate(prompt_ids) if 0 < len(p) < max_model_len]


def _rollouts(
    n: int, ok: list[int], drawn: list[tuple[tuple[int, ...], str]], t0: float
) -> Rollouts:
    """Spread the drawn (completion, finish) pairs back over all ``n`` prompts."""
    completions: list[tuple[int, ...]] = [()] * n
    finish: list[str | None] = [None] * n
    for i, (c, f) in zip(ok, drawn, strict=True):
        completions[i], finish[i] = c, f
    return Rollouts(completions, finish, time.perf_counter() - t0, n - len(ok))


def rollout_seeds(seed: int, step: int, indices: Sequence[int]) -> list[int]:
    """One seed per prompt of a step: a function of (run seed, step, prompt index) only."""
    return [derive_seed("rollout", seed, step, i) for i in indices]
