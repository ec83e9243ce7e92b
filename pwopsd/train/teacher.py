"""The teacher pass and its variants (PROTOCOL section 1; issue 20's teacher variants).

``TrainConfig.teacher`` picks what reads the privileged prompt and the student's completion:

* "base" (the paper): the same model with the LoRA adapter disabled, fixed for the whole run;
* "student": the live student, adapter on, under ``no_grad`` (a self-teacher that moves);
* "ema": the adapter's weights replaced, for the pass only, by their exponential moving
  average (:class:`TeacherEMA`), updated after every optimizer step.

:func:`teacher_logits` runs the pass and times it (the metrics row's ``teacher_seconds``).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

import torch

from pwopsd.config import ConfigError, TrainConfig
from pwopsd.rollout import AlignedBatch, gather_positions


class TeacherEMA:
    """Exponential moving average of the adapter's trainable weights: the "ema" teacher.

    ``shadow[name] = decay * shadow[name] + (1 - decay) * theta[name]`` after each optimizer
    step (:meth:`update`), starting from the weights it is built with (the LoRA init, whose
    B = 0 makes the EMA teacher start as the base model). The shadow is kept in fp32 whatever
    the training dtype (a bf16 average with decay 0.99 would lose most of each update).
    """

    def __init__(self, named_params: list[tuple[str, torch.nn.Parameter]], decay: float) -> None:
        if not 0.0 <= decay < 1.0:
            raise ConfigError(f"teacher_ema_decay={decay!r} must lie in [0, 1)")
        self.decay = decay
        self.params = named_params
        self.shadow = {name: p.detach().float().clone() for name, p in named_params}

    @torch.no_grad()
    def update(self) -> None:
        """One EMA step towards the current weights (call after ``optimizer.step()``)."""
        for name, p in self.params:
            self.shadow[name].mul_(self.decay).add_(p.detach().float(), alpha=1.0 - self.decay)

    @contextlib.contextmanager
    def swapped_in(self) -> Iterator[None]:
        """The EMA values in the adapter's parameters for the duration of the block; the
        student's own values are restored bit for bit afterwards (even on an error)."""
        with torch.no_grad():
            backup = [p.detach().clone() for _, p in self.params]
            for name, p in self.params:
                p.copy_(self.shadow[name].to(p.dtype))
        try:
            yield
        finally:
            with torch.no_grad():
                for (_, p), saved in zip(self.params, backup, strict=True):
                    p.copy_(saved)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The shadow weights on the CPU (what a checkpoint's ``trainer_state.pt`` keeps)."""
        return {name: t.detach().cpu().clone() for name, t in self.shadow.items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore the shadow from a checkpoint (resume); the names must match the adapter's."""
        if set(state) != set(self.shadow):
            raise ConfigError(
                "the checkpoint's teacher EMA does not match this run's adapter "
                f"({len(state)} vs {len(self.shadow)} tensors)"
            )
        for name, t in state.items():
            self.shadow[name].copy_(t)


def make_ema(student: Any, cfg: TrainConfig) -> TeacherEMA | None:
    """The run's EMA teacher over the peft model's trainable weights, or None unless
    ``cfg.teacher == "ema"``."""
    if cfg.teacher != "ema":
        return None
    named = [(n, p) for n, p in student.named_parameters() if p.requires_grad]
    return TeacherEMA(named, cfg.teacher_ema_decay)


def teacher_logits(
    student: Any, batch: AlignedBatch, cfg: TrainConfig, ema: TeacherEMA | None
) -> tuple[torch.Tensor, float]:
    """The teacher's [B, T, V] logits on the completion positions and the seconds the pass took.

    ``student`` is the unwrapped peft model; the pass runs without grad on the teacher prompt +
    completion (:attr:`AlignedBatch.teacher_ids`) with the teacher ``cfg.teacher`` names.
    """
    start = time.perf_counter()
    if cfg.teacher == "base":
        kind: Any = student.disable_adapter()
    elif cfg.teacher == "student":
        kind = contextlib.nullcontext()
    elif cfg.teacher == "ema":
        if ema is None:
            raise ConfigError('teacher="ema" needs the run\'s TeacherEMA (make_ema)')
        kind = ema.swapped_in()
    else:
        raise ConfigError(f"teacher={cfg.teacher!r} is not known")
    with torch.no_grad(), kind:
        out = student(input_ids=batch.teacher_ids, attention_mask=batch.teacher_attention)
        logits = gather_positions(out.logits, batch.teacher_positions)  # [B, T, V]
    if logits.is_cuda:
        torch.cuda.synchronize(logits.device)  # time the pass, not its launch
    return logits, time.perf_counter() - start
