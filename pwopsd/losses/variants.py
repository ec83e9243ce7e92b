"""Losses beyond the paper (issue 20): position-conditioned KL mixing and the teacher-free control.

* :func:`pw_mix_loss` ("pw_mix", PW-Mix): the paper's future work, a per-token mix of the
  clipped forward KL (PROTOCOL sec. 2, OPSD) and the reverse KL, the mixing weight a function
  of position with the shape of the PW-OPSD schedule (:func:`pwopsd.losses.position_weights`):
  forward KL late, reverse KL early.
* :func:`teacher_free_loss` ("teacher_free"): the control of arXiv 2608.31046 ("Does On-Policy
  Distillation Really Distill?") as we read it: the same loop with the teacher's signal replaced
  by a fixed negative advantage on the student's low-probability sampled tokens.

Conventions as in :mod:`pwopsd.losses.opsd`: positions outside ``mask`` never reach the value or
the gradient whatever their logits hold; an all-masked batch gives 0 with zero gradients; a NaN
in a valid token's logits gives a NaN loss; the teacher is a constant (detached).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from pwopsd.config import TrainConfig, resolve_schedule
from pwopsd.kernels.dispatch import Impl, weighted_clipped_fkl
from pwopsd.kernels.validate import as_bool_mask, check_logits_pair, check_temperature_clip
from pwopsd.losses.baselines import check_tokens
from pwopsd.losses.opsd import LossOutput, masked_mean, position_weights, token_coefficients
from pwopsd.vocab import DEFAULT_SCHEDULE

Tensor = torch.Tensor

_DEFAULTS = TrainConfig()
TEACHER_FREE_TAU_LOW = _DEFAULTS.teacher_free_tau_low
"""Default probability threshold of the teacher-free control (``TrainConfig.teacher_free_tau_low``)."""
TEACHER_FREE_ADVANTAGE = _DEFAULTS.teacher_free_advantage
"""Default fixed advantage magnitude A (``TrainConfig.teacher_free_advantage``)."""


def _compute_dtype(logits: Tensor) -> torch.dtype:
    return torch.float64 if logits.dtype == torch.float64 else torch.float32


def reverse_kl_tokens(
    student_logits: Tensor, teacher_logits: Tensor, mask: Tensor, temperature: float
) -> Tensor:
    """Per-token reverse KL(student || teacher) on the full vocabulary, [B, T] (0 off ``mask``).

    ``RKL_t = sum_v p_S,v (log p_S,v - log p_T,v)`` with ``p = softmax(logits / temperature)``;
    differentiable w.r.t. the student, the teacher detached. Computed on the valid rows only
    ([N, V] temporaries). Entries with ``p_S,v = 0`` contribute 0 (and no NaN gradient);
    ``p_S,v > 0`` with ``p_T,v = 0`` contributes ``+inf``, as the divergence does.
    """
    dtype = _compute_dtype(student_logits)
    s = student_logits[mask].to(dtype) / temperature  # [N, V]
    t = teacher_logits.detach()[mask].to(dtype) / temperature  # [N, V]
    log_ps = F.log_softmax(s, dim=-1)  # [N, V]
    log_pt = F.log_softmax(t, dim=-1)  # [N, V]
    p_s = log_ps.exp()  # [N, V]
    support = p_s.detach() > 0  # [N, V]; a NaN row is False here and NaN through p_s below
    diff = torch.where(support, log_ps, 0.0) - torch.where(support, log_pt, 0.0)  # [N, V]
    terms = torch.where(support | p_s.isnan(), p_s * diff, 0.0)  # [N, V]
    out = torch.zeros(mask.shape, dtype=dtype, device=student_logits.device)  # [B, T]
    return out.masked_scatter(mask, terms.sum(-1))


def pw_mix_loss(
    student_logits: Tensor,
    teacher_logits: Tensor,
    mask: Tensor,
    temperature: float = 1.1,
    tau_clip: float | None = 0.05,
    schedule: str | tuple[float, float, float] = DEFAULT_SCHEDULE,
    *,
    impl: Impl = "auto",
) -> LossOutput:
    """PW-Mix: position-conditioned mixing of the forward and reverse KL (issue 20; the paper's
    future work).

    Per valid token ``loss_t = m(u_t) clippedFKL_t + (1 - m(u_t)) RKL_t``, with

    * ``m(u) = w_min + (1 - w_min) sigmoid((u - c) / s)`` the PW-OPSD weight of ``schedule``
      (:func:`pwopsd.losses.position_weights`, ``u = (i - 0.5) / L``): the forward KL dominates
      late, the reverse KL early;
    * ``clippedFKL_t = sum_v min(p_T,v (log p_T,v - log p_S,v), tau_clip)``, the OPSD term
      (PROTOCOL sec. 2), through the same kernels as PW-OPSD;
    * ``RKL_t = sum_v p_S,v (log p_S,v - log p_T,v)`` on the **full** distribution at the
      distillation temperature (:func:`reverse_kl_tokens`), not the sampled-token estimate
      ``log p_S(o) - log p_T(o)``: the full sum is exact and has no sampling variance, and it
      costs nothing extra once both [B, T, V] logits exist. Unclipped (mode-seeking: the
      student is pushed off tokens the teacher rules out).

    Reduction as PW-OPSD: per sequence ``sum_t loss_t / L_b``, then the mean over rows with at
    least one valid token. ``student_logits``/``teacher_logits`` [B, T, V], ``mask`` [B, T].
    """
    check_logits_pair(student_logits, teacher_logits, ndim=3)
    check_temperature_clip(temperature, tau_clip)
    mask = as_bool_mask(mask, like=student_logits)
    dtype = _compute_dtype(student_logits)
    m = position_weights(mask, *resolve_schedule(schedule)).to(dtype)  # [B, T]
    k = token_coefficients(mask, None, per_sequence=True, dtype=dtype)  # [B, T]
    fkl_loss, fkl_tok = weighted_clipped_fkl(
        student_logits, teacher_logits, m * k, temperature, tau_clip, impl=impl
    )  # [], [B, T]
    rkl_tok = reverse_kl_tokens(student_logits, teacher_logits, mask, temperature)  # [B, T]
    k_rev = (1.0 - m) * k  # [B, T]; 0 at padding
    rkl_loss = torch.where(k_rev != 0, rkl_tok * k_rev, 0.0).sum()  # []
    metrics = {
        "fkl_token_mean": masked_mean(fkl_tok, mask),
        "rkl_token_mean": masked_mean(rkl_tok, mask),
        "mix_weight_mean": masked_mean(m, mask),
    }
    if bool(mask.any()):
        metrics["mix_weight_min"] = float(m[mask].min())
        metrics["mix_weight_max"] = float(m[mask].max())
    return LossOutput(fkl_loss.to(dtype) + rkl_loss, metrics)


def check_teacher_free(tau_low: float, advantage: float) -> None:
    """``tau_low`` in (0, 1] and ``advantage`` a finite number > 0, or a ValueError naming them."""
    if isinstance(tau_low, bool) or not (isinstance(tau_low, int | float) and 0 < tau_low <= 1):
        raise ValueError(f"tau_low must lie in (0, 1], got {tau_low!r}")
    if isinstance(advantage, bool) or not (
        isinstance(advantage, int | float) and math.isfinite(advantage) and advantage > 0
    ):
        raise ValueError(f"advantage must be a finite number > 0, got {advantage!r}")


def teacher_free_loss(
    student_logits: Tensor,
    tokens: Tensor,
    mask: Tensor,
    temperature: float = 1.1,
    *,
    tau_low: float = TEACHER_FREE_TAU_LOW,
    advantage: float = TEACHER_FREE_ADVANTAGE,
) -> LossOutput:
    """The teacher-free control (arXiv 2608.31046, "Does On-Policy Distillation Really
    Distill?", **as we read it**; issue 20): the OPSD loop with no teacher at all.

    Per valid token ``loss_t = A log p_S(y_t) 1[p_S(y_t) < tau_low]``, with ``y_t`` the sampled
    token, ``p_S`` the student at the distillation temperature, the indicator on the detached
    probability and ``A = advantage > 0`` fixed. It is the policy-gradient loss
    ``-adv log p_S(y_t)`` with the advantage fixed at ``-A`` on the student's low-probability
    sampled tokens and 0 elsewhere: gradient descent pushes those tokens' probability down (a
    sharpening of the student's own distribution) and nothing else. Reduction: global mean over
    valid tokens (all of them, not only the gated ones), as OPSD. Under AdamW a constant ``A``
    mostly cancels (the update is normalised by the gradient's RMS), so ``A`` fixes the sign
    more than the size. ``student_logits`` [B, T, V]; ``tokens``/``mask`` [B, T].
    """
    if not isinstance(student_logits, torch.Tensor) or student_logits.ndim != 3:
        raise ValueError("student_logits must be a 3-D [B, T, V] tensor")
    check_temperature_clip(temperature, None)
    check_teacher_free(tau_low, advantage)
    mask = as_bool_mask(mask, like=student_logits)
    check_tokens(tokens, student_logits, mask)
    s = student_logits[mask].to(_compute_dtype(student_logits)) / temperature  # [N, V]
    log_ps = F.log_softmax(s, dim=-1)  # [N, V]
    logp_o = log_ps.gather(-1, tokens[mask].long()[:, None])[:, 0]  # [N]
    low = logp_o.detach().exp() < tau_low  # [N] bool
    per_token = advantage * logp_o * low.to(logp_o.dtype)  # [N]; 0 * NaN stays NaN
    loss = per_token.sum() / max(per_token.numel(), 1)  # global token mean; 0 when no token
    metrics = {
        "low_prob_fraction": masked_mean(low.float()),
        "sampled_logprob_mean": masked_mean(logp_o),
    }
    return LossOutput(loss, metrics)
