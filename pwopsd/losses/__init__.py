"""Distillation losses: OPSD, PW-OPSD, the EOPD and REOPOLD baselines, the reduction factorial.

Everything here follows PROTOCOL section 2 (and the release's ``ea_opsd_trainer.py``):

* :mod:`pwopsd.losses.opsd`: per-token clipped forward KL (re-exported from
  :mod:`pwopsd.kernels`), position weights, reductions, OPSD, PW-OPSD and the factorial cells;
* :mod:`pwopsd.losses.baselines`: EOPD and REOPOLD;
* :mod:`pwopsd.losses.variants`: beyond the paper (issue 20): PW-Mix (position-conditioned
  forward/reverse KL mixing) and the teacher-free control.

For the training loop, :func:`method_loss` is the single entry point: it takes one method name
(:data:`pwopsd.vocab.TRAINABLE_METHODS`) and the aligned completion tensors and returns a
:class:`LossOutput` whose metrics are what the loop logs; :func:`fused_method_loss` is the same
for the clipped-FKL methods from hidden states (no [B, T, V] logits).

Method names, schedules and factorial cells have one home, :mod:`pwopsd.vocab`.
"""

from __future__ import annotations

import torch

from pwopsd.config import check_schedule
from pwopsd.kernels.dispatch import IMPLS, Impl
from pwopsd.kernels.fused_linear import fused_linear_clipped_fkl
from pwopsd.kernels.validate import as_bool_mask, check_logits_pair, check_temperature_clip
from pwopsd.losses.baselines import (
    EOPD_ENTROPY_THRESHOLD,
    EOPD_PPO_EPS,
    EOPD_TOP_K,
    REOPOLD_BETA,
    REOPOLD_LAMBDA,
    REOPOLD_T_SWITCH,
    eopd_loss,
    reopold_loss,
)
from pwopsd.losses.opsd import (
    LossOutput,
    clipped_fkl_metrics,
    factorial_loss,
    method_coefficients,
    per_token_clipped_fkl,
    position_weights,
    pw_opsd_loss,
    reduce_tokens,
    reference_per_token_clipped_fkl,
    resolve_schedule,
    token_coefficients,
    weighted_clipped_fkl,
)
from pwopsd.losses.variants import (
    TEACHER_FREE_ADVANTAGE,
    TEACHER_FREE_TAU_LOW,
    pw_mix_loss,
    reverse_kl_tokens,
    teacher_free_loss,
)
from pwopsd.vocab import CLIPPED_FKL_METHODS, DEFAULT_SCHEDULE, TRAINABLE_METHODS

Tensor = torch.Tensor

__all__ = [
    "EOPD_ENTROPY_THRESHOLD",
    "EOPD_PPO_EPS",
    "EOPD_TOP_K",
    "IMPLS",
    "REOPOLD_BETA",
    "REOPOLD_LAMBDA",
    "REOPOLD_T_SWITCH",
    "TEACHER_FREE_ADVANTAGE",
    "TEACHER_FREE_TAU_LOW",
    "Impl",
    "LossOutput",
    "as_bool_mask",
    "check_logits_pair",
    "check_schedule",
    "check_temperature_clip",
    "eopd_loss",
    "factorial_loss",
    "fused_method_loss",
    "method_loss",
    "per_token_clipped_fkl",
    "position_weights",
    "pw_mix_loss",
    "pw_opsd_loss",
    "reduce_tokens",
    "reference_per_token_clipped_fkl",
    "reopold_loss",
    "resolve_schedule",
    "reverse_kl_tokens",
    "teacher_free_loss",
    "token_coefficients",
    "weighted_clipped_fkl",
]


def method_loss(
    method: str,
    student_logits: Tensor,
    teacher_logits: Tensor | None,
    mask: Tensor,
    *,
    tokens: Tensor | None = None,
    step: int = 0,
    temperature: float = 1.1,
    tau_clip: float | None = 0.05,
    schedule: str | tuple[float, float, float] = DEFAULT_SCHEDULE,
    impl: Impl = "auto",
    tau_low: float = TEACHER_FREE_TAU_LOW,
    advantage: float = TEACHER_FREE_ADVANTAGE,
) -> LossOutput:
    """The training loop's one call: the loss of ``method`` (one of
    :data:`pwopsd.vocab.TRAINABLE_METHODS`) on a micro-batch.

    Inputs are aligned on completion positions: ``student_logits``/``teacher_logits`` [B, T, V]
    (the teacher is a constant: detached), ``mask`` [B, T] valid completion tokens, ``tokens``
    [B, T] the sampled completion ids (needed by "eopd", "reopold" and "teacher_free"), ``step``
    the optimizer step (REOPOLD's phase switch). ``schedule`` applies to the position methods
    (PW-Mix's mixing weight included), ``tau_clip`` and ``impl`` to the clipped-FKL ones
    (PROTOCOL sec. 2), ``tau_low`` and ``advantage`` to "teacher_free", which reads no teacher
    (``teacher_logits`` may be None for it).
    """
    if method not in TRAINABLE_METHODS:
        raise ValueError(f"method must be one of {TRAINABLE_METHODS}, got {method!r}")
    if method in ("eopd", "reopold", "teacher_free") and tokens is None:
        raise ValueError(f"method {method!r} needs tokens (the sampled completion ids)")
    if method == "teacher_free":
        return teacher_free_loss(
            student_logits, tokens, mask, temperature, tau_low=tau_low, advantage=advantage
        )
    if teacher_logits is None:
        raise ValueError(f"method {method!r} needs teacher_logits")
    if method == "pw_mix":
        return pw_mix_loss(
            student_logits, teacher_logits, mask, temperature, tau_clip, schedule, impl=impl
        )
    if method == "eopd" or method == "reopold":
        if method == "eopd":
            return eopd_loss(student_logits, teacher_logits, tokens, mask, temperature)
        return reopold_loss(student_logits, teacher_logits, tokens, mask, step, temperature)
    weighting, reduction = CLIPPED_FKL_METHODS[method]
    return factorial_loss(
        student_logits,
        teacher_logits,
        mask,
        weighting,
        reduction,
        temperature,
        tau_clip,
        schedule,
        impl=impl,
    )


def fused_method_loss(
    method: str,
    student_hidden: Tensor,
    teacher_hidden: Tensor,
    lm_head_weight: Tensor,
    mask: Tensor,
    *,
    temperature: float = 1.1,
    tau_clip: float | None = 0.05,
    schedule: str | tuple[float, float, float] = DEFAULT_SCHEDULE,
    teacher_weight: Tensor | None = None,
    chunk_size: int = 256,
) -> LossOutput:
    """:func:`method_loss` for the clipped-FKL methods from hidden states: no [B, T, V] logits.

    ``student_hidden``/``teacher_hidden`` [B, T, H] are the inputs of the lm_head (after the
    final norm) on the aligned completion positions, ``lm_head_weight`` [V, H] (shared by
    student and teacher unless ``teacher_weight`` is given; the teacher side is a constant).
    Methods: :data:`pwopsd.vocab.CLIPPED_FKL_METHODS` ("opsd", "pw_opsd" and the factorial cells); EOPD and
    REOPOLD need full logits (use :func:`method_loss`).
    """
    if method not in CLIPPED_FKL_METHODS:
        raise ValueError(
            f"fused_method_loss handles {sorted(CLIPPED_FKL_METHODS)}, got {method!r} "
            "(EOPD/REOPOLD: use method_loss)"
        )
    if not isinstance(student_hidden, torch.Tensor) or student_hidden.ndim != 3:
        raise ValueError("student_hidden must be a 3-D [B, T, H] tensor")
    weighting, reduction = CLIPPED_FKL_METHODS[method]
    mask = as_bool_mask(mask, like=student_hidden)
    dtype = torch.float64 if student_hidden.dtype == torch.float64 else torch.float32
    coeff, weights = method_coefficients(mask, weighting, reduction, schedule, dtype)  # [B, T]
    loss, per_token = fused_linear_clipped_fkl(
        student_hidden,
        teacher_hidden,
        lm_head_weight,
        coeff,
        temperature,
        tau_clip,
        teacher_weight=teacher_weight,
        chunk_size=chunk_size,
    )  # [], [B, T]
    return LossOutput(loss, clipped_fkl_metrics(per_token, weights, mask))
