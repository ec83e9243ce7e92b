"""One micro-batch of an OPSD update and the statistics a step logs (PROTOCOL sections 1-3).

:func:`micro_step` runs the teacher pass (teacher template + completion, no grad; the teacher
``TrainConfig.teacher`` names, :mod:`pwopsd.train.teacher`; skipped for a teacher-free method),
the student pass (student template + completion, with grad), the method's loss
(:func:`pwopsd.losses.method_loss`) and its backward, and returns a :class:`MicroStats`.
:class:`StepStats` adds those up over a step's micro-batches (and processes) into one row of
``metrics.jsonl``. What the loss reports (mean clipped FKL, position weights, the EOPD and
REOPOLD terms) is logged as the loss computed it, not recomputed.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from pwopsd import losses
from pwopsd.config import TrainConfig
from pwopsd.rollout import AlignedBatch, gather_positions
from pwopsd.train.teacher import TeacherEMA, teacher_logits
from pwopsd.vocab import DEFAULT_SCHEDULE, TEACHER_FREE_METHODS


class TrainingError(RuntimeError):
    """The run cannot go on (a non-finite loss): the message says why and what is kept."""


@dataclass
class MicroStats:
    """What one micro-batch contributes to its step's metrics row."""

    loss: float
    valid_tokens: int
    rows: int
    rollout_tokens: int
    longest: int
    truncated: int
    empty: int
    cut_to_fit: int
    vocab: int
    """Vocabulary size of the logits (the denominator of the capped-entry fraction)."""
    loss_metrics: dict[str, float]
    """The loss's own metrics (``LossOutput.metrics``): token means, ``*_min``, ``*_max``."""
    clip: tuple[int, int, int] | None = None
    """(capped tokens, capped vocabulary entries, valid tokens), when clip stats are on."""
    teacher_seconds: float = 0.0
    """Wall time of the teacher pass (0 when the method skips it)."""


@torch.no_grad()
def clip_statistics(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    mask: torch.Tensor,
    temperature: float,
    tau_clip: float | None,
    chunk: int = 256,
) -> tuple[int, int, int]:
    """(capped tokens, capped vocabulary entries, valid tokens): where f_v > tau_clip.

    f_v = p_T,v (log p_T,v - log p_S,v) at ``temperature`` (PROTOCOL sec. 2); a token counts
    as capped when any of its entries is. Chunked over tokens: [chunk, V] temporaries.
    """
    s = student_logits[mask].float()  # [N, V]
    t = teacher_logits[mask].float()  # [N, V]
    if tau_clip is None or s.shape[0] == 0:
        return 0, 0, int(s.shape[0])
    tokens = entries = 0
    for i in range(0, s.shape[0], chunk):
        lps = torch.log_softmax(s[i : i + chunk] / temperature, dim=-1)  # [chunk, V]
        lpt = torch.log_softmax(t[i : i + chunk] / temperature, dim=-1)  # [chunk, V]
        f = torch.where(lpt > -math.inf, lpt.exp() * (lpt - lps), torch.zeros_like(lpt))
        capped = f > tau_clip  # [chunk, V]
        entries += int(capped.sum())
        tokens += int(capped.any(dim=-1).sum())
    return tokens, entries, int(s.shape[0])


def micro_step(
    model: Any,
    student: Any,
    acc: Any,
    batch: AlignedBatch,
    *,
    method: str,
    schedule: tuple[float, float, float] | None,
    step: int,
    cfg: TrainConfig,
    accumulation: int,
    last: bool,
    completions: list[tuple[int, ...]],
    finish: list[str | None],
    ema: TeacherEMA | None = None,
) -> MicroStats:
    """Teacher pass, student pass, loss and backward of one micro-batch.

    ``model`` is the (possibly distributed) wrapper that gets the backward, ``student`` the
    unwrapped peft model whose adapter the teacher pass disables. Gradients sync across
    processes on the ``last`` micro-batch of the step only; the loss is divided by the
    process's ``accumulation`` count so the step's gradient is the mean over micro-batches.
    ``ema`` is the run's EMA teacher when ``cfg.teacher == "ema"``.
    """
    t_logits, teacher_seconds = None, 0.0
    if method not in TEACHER_FREE_METHODS:
        t_logits, teacher_seconds = teacher_logits(student, batch, cfg, ema)  # [B, T, V]
    sync = contextlib.nullcontext() if last else acc.no_sync(model)
    with sync:
        out = model(input_ids=batch.student_ids, attention_mask=batch.student_attention)
        s_logits = gather_positions(out.logits, batch.student_positions)  # [B, T, V]
        result = losses.method_loss(
            method,
            s_logits,
            t_logits,
            batch.mask,
            tokens=batch.tokens,
            step=step,
            temperature=cfg.distill_temperature,
            tau_clip=cfg.tau_clip,
            schedule=schedule or DEFAULT_SCHEDULE,
            tau_low=cfg.teacher_free_tau_low,
            advantage=cfg.teacher_free_advantage,
        )
        if not torch.isfinite(result.loss):
            raise TrainingError(f"non-finite loss ({result.loss.item()}) at step {step + 1}")
        acc.backward(result.loss / accumulation)
    clip = None
    if cfg.clip_stats and t_logits is not None:
        clip = clip_statistics(
            s_logits.detach(), t_logits, batch.mask, cfg.distill_temperature, cfg.tau_clip
        )
    return MicroStats(
        loss=float(result.loss.detach()),
        valid_tokens=int(batch.mask.sum()),
        rows=len(completions),
        rollout_tokens=sum(len(c) for c in completions),
        longest=max((len(c) for c in completions), default=0),
        truncated=sum(f == "length" for f in finish),
        empty=batch.stats["empty"],
        cut_to_fit=batch.stats["cut_to_fit"],
        vocab=s_logits.shape[-1],
        loss_metrics=dict(result.metrics),
        clip=clip,
        teacher_seconds=teacher_seconds,
    )


@dataclass
class StepStats:
    """A step's running sums over its micro-batches (this process), then over processes."""

    loss: float = 0.0
    valid_tokens: int = 0
    rows: int = 0
    rollout_tokens: int = 0
    longest: int = 0
    truncated: int = 0
    empty: int = 0
    cut_to_fit: int = 0
    prompt_too_long: int = 0
    rollout_seconds: float = 0.0
    update_seconds: float = 0.0
    teacher_seconds: float = 0.0
    clip: list[int] | None = None
    """Clip counts summed over micro-batches; None while no micro-batch measured them."""
    weighted: dict[str, float] = field(default_factory=dict)
    """Token-weighted sums of the loss's mean metrics."""
    extremes: dict[str, float] = field(default_factory=dict)
    """The loss's ``*_min`` / ``*_max`` metrics, extreme over micro-batches."""

    def add(self, micro: MicroStats) -> None:
        self.loss += micro.loss
        self.valid_tokens += micro.valid_tokens
        self.rows += micro.rows
        self.rollout_tokens += micro.rollout_tokens
        self.longest = max(self.longest, micro.longest)
        self.truncated += micro.truncated
        self.empty += micro.empty
        self.cut_to_fit += micro.cut_to_fit
        self.teacher_seconds += micro.teacher_seconds
        if micro.clip is not None:
            base = self.clip or [0, 0, 0]
            self.clip = [a + b for a, b in zip(base, micro.clip, strict=True)]
        for key, value in micro.loss_metrics.items():
            if key.endswith("_min") or key.endswith("_max"):
                pick = min if key.endswith("_min") else max
                self.extremes[key] = pick(self.extremes.get(key, value), value)
            else:
                self.weighted[key] = self.weighted.get(key, 0.0) + value * micro.valid_tokens


def _all_sum(x: float, acc: Any) -> float:
    if acc.num_processes == 1:
        return x
    t = torch.tensor([x], dtype=torch.float64, device=acc.device)
    return float(acc.reduce(t, reduction="sum").item())


def _all_pick(x: float, acc: Any, pick: Any) -> float:
    if acc.num_processes == 1:
        return x
    t = torch.tensor([x], dtype=torch.float64, device=acc.device)
    return float(pick(acc.gather(t)).item())


def step_mean_weight(stats: StepStats, acc: Any) -> float | None:
    """The step's mean position weight: token mean of w(u) over every micro-batch and process
    (what the metrics row logs as ``position_weight_mean``); None when the loss has none."""
    if "position_weight_mean" not in stats.weighted:
        return None
    tokens = _all_sum(stats.valid_tokens, acc)
    return _all_sum(stats.weighted["position_weight_mean"], acc) / tokens if tokens else None


def metrics_row(
    cfg: TrainConfig,
    acc: Any,
    step: int,
    stats: StepStats,
    grad_norm: float,
    lr: float,
    vocab: int,
    t_step: float,
) -> dict[str, Any]:
    """One row of ``metrics.jsonl``: the step's sums over micro-batches and processes."""
    tokens = _all_sum(stats.valid_tokens, acc)
    rows = max(_all_sum(stats.rows, acc), 1)
    rollout_tokens = _all_sum(stats.rollout_tokens, acc)
    n_micro = cfg.prompts_per_step // cfg.micro_batch
    weighted = {k: _all_sum(v, acc) / max(tokens, 1) for k, v in stats.weighted.items()}
    row: dict[str, Any] = {
        "step": step + 1,
        "loss": _all_sum(stats.loss, acc) / n_micro,
        # EOPD and REOPOLD have no clipped forward KL: their rows log None, not 0
        "fkl_token_mean": weighted.pop("fkl_token_mean", None),
        "completion_len_mean": rollout_tokens / rows,
        "completion_len_max": int(_all_pick(stats.longest, acc, torch.max)),
        "frac_truncated": _all_sum(stats.truncated, acc) / rows,
        "empty": int(_all_sum(stats.empty, acc)),
        "cut_to_fit": int(_all_sum(stats.cut_to_fit, acc)),
        "prompt_too_long": int(_all_sum(stats.prompt_too_long, acc)),
        "valid_tokens": int(tokens),
        "rollout_tokens_per_s": rollout_tokens / max(_all_sum(stats.rollout_seconds, acc), 1e-9),
        "update_tokens_per_s": tokens / max(_all_sum(stats.update_seconds, acc), 1e-9),
        # the teacher pass's wall time this step, summed over micro-batches and processes
        "teacher_seconds": _all_sum(stats.teacher_seconds, acc),
        "grad_norm": grad_norm,
        "lr": lr,
        "seconds": time.perf_counter() - t_step,
    }
    row.update(weighted)  # position_weight_mean, the EOPD and REOPOLD terms
    for key, value in sorted(stats.extremes.items()):
        row[key] = _all_pick(value, acc, torch.min if key.endswith("_min") else torch.max)
    if cfg.clip_stats and stats.clip is not None:  # a teacher-free method measures none
        capped_tokens, capped_entries, valid = (_all_sum(v, acc) for v in stats.clip)
        row["clip_frac_tokens"] = capped_tokens / max(valid, 1)
        row["clip_frac_entries"] = capped_entries / max(valid * vocab, 1)
    return row
