"""The EOPD and REOPOLD baselines as the release re-implements them (PROTOCOL section 2).

Plain [B, T, V] code (they are baselines, not the method under study).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from pwopsd.kernels.validate import as_bool_mask, check_logits_pair, check_temperature_clip
from pwopsd.losses.opsd import LossOutput, masked_mean, reduce_tokens

Tensor = torch.Tensor

# Baseline constants from the release (PROTOCOL section 2).
EOPD_ENTROPY_THRESHOLD = 0.8
EOPD_TOP_K = 16
EOPD_PPO_EPS = 0.2
REOPOLD_LAMBDA = 0.1
REOPOLD_BETA = 0.2
REOPOLD_T_SWITCH = 50


def _gather_token(logp: Tensor, tokens: Tensor) -> Tensor:
    """[B, T, V] log-probs at [B, T] token ids -> [B, T] (ids clamped: masked ids may be -100)."""
    return logp.gather(-1, tokens.clamp(min=0).unsqueeze(-1)).squeeze(-1)


def check_tokens(tokens: Tensor, logits: Tensor) -> None:
    if not isinstance(tokens, torch.Tensor) or tokens.dtype not in (torch.int32, torch.int64):
        dtype = tokens.dtype if isinstance(tokens, torch.Tensor) else type(tokens).__name__
        raise TypeError(f"tokens must be an integer [B, T] tensor of sampled ids, got {dtype}")
    if tuple(tokens.shape) != tuple(logits.shape[:2]):
        raise ValueError(
            f"tokens has shape {tuple(tokens.shape)}, expected {tuple(logits.shape[:2])}"
        )
    if bool((tokens >= logits.shape[-1]).any()):
        raise ValueError(f"tokens has ids >= the vocab size {logits.shape[-1]}")


def eopd_loss(
    student_logits: Tensor,
    teacher_logits: Tensor,
    tokens: Tensor,
    mask: Tensor,
    temperature: float = 1.1,
    *,
    entropy_threshold: float = EOPD_ENTROPY_THRESHOLD,
    top_k: int = EOPD_TOP_K,
    ppo_eps: float = EOPD_PPO_EPS,
) -> LossOutput:
    """EOPD baseline (Jin et al. 2026) as the release implements it (PROTOCOL sec. 2, EOPD).

    Per token ``L_OPD + 1[H_teacher > 0.8] * L_FKL``: ``L_OPD = max(-r A, -clip(r, 1-eps, 1+eps) A)``
    on the sampled token with ``A = log p_T(o) - log p_S(o)`` detached and
    ``r = exp(logp - logp.detach())``; ``L_FKL`` the forward KL over the teacher's top-16
    (teacher renormalised over its top-16, student at its full-vocab log-probs). ``H_teacher``
    is the full-vocab entropy. No KL clip; global token mean. Plain [B, T, V] code (a baseline).
    """
    check_logits_pair(student_logits, teacher_logits, ndim=3)
    check_temperature_clip(temperature, None)
    check_tokens(tokens, student_logits)
    mask = as_bool_mask(mask, like=student_logits)
    dtype = torch.float64 if student_logits.dtype == torch.float64 else torch.float32
    s = student_logits.to(dtype) / temperature  # [B, T, V]
    t = teacher_logits.detach().to(dtype) / temperature  # [B, T, V]
    log_p_s = F.log_softmax(s, dim=-1)
    with torch.no_grad():
        log_p_t = F.log_softmax(t, dim=-1)
        p_t = log_p_t.exp()
        entropy_t = -torch.where(p_t > 0, p_t * log_p_t, torch.zeros_like(p_t)).sum(-1)  # [B, T]
        topk_vals, topk_idx = torch.topk(t, k=min(top_k, t.shape[-1]), dim=-1)  # [B, T, k]
        log_q_t = F.log_softmax(topk_vals, dim=-1)  # teacher renormalised over its top-k
    logp_o = _gather_token(log_p_s, tokens)  # [B, T]
    advantage = (_gather_token(log_p_t, tokens) - logp_o).detach()
    ratio = torch.exp(logp_o - logp_o.detach())
    l_opd = torch.maximum(-ratio * advantage, -ratio.clamp(1 - ppo_eps, 1 + ppo_eps) * advantage)
    l_fkl = (log_q_t.exp() * (log_q_t - log_p_s.gather(-1, topk_idx))).sum(-1)  # [B, T]
    gate = (entropy_t > entropy_threshold).to(dtype)
    per_token = l_opd + gate * l_fkl
    loss = reduce_tokens(per_token, mask)
    metrics = {
        "teacher_entropy_mean": masked_mean(entropy_t, mask),
        "high_entropy_fraction": masked_mean(gate, mask),
        "l_opd_mean": masked_mean(l_opd.detach(), mask),
        "l_fkl_mean": masked_mean(l_fkl.detach(), mask),
    }
    return LossOutput(loss, metrics)


def reopold_loss(
    student_logits: Tensor,
    teacher_logits: Tensor,
    tokens: Tensor,
    mask: Tensor,
    step: int,
    temperature: float = 1.1,
    *,
    lam: float = REOPOLD_LAMBDA,
    beta: float = REOPOLD_BETA,
    t_switch: int = REOPOLD_T_SWITCH,
) -> LossOutput:
    """REOPOLD baseline (Ko et al. 2026) as the release implements it (PROTOCOL sec. 2, REOPOLD).

    Reward ``R = log p_T(o) - log p_S(o)`` (detached, full vocab), floor ``log(lam) / (1 - lam)``,
    ``R_hat = max(R, floor)``. Mask: ``step < t_switch``: ``1[R >= floor]``; later: tokens whose
    student entropy is in the top ``beta`` fraction of the micro-batch's valid tokens.
    Loss ``-sum(R_hat * M * log p_S(o)) / max(sum(M), 1)``.
    """
    check_logits_pair(student_logits, teacher_logits, ndim=3)
    check_temperature_clip(temperature, None)
    check_tokens(tokens, student_logits)
    if not 0.0 < lam < 1.0:
        raise ValueError(f"lam must be in (0, 1), got {lam!r}")
    if not 0.0 < beta <= 1.0:
        raise ValueError(f"beta must be in (0, 1], got {beta!r}")
    if not isinstance(step, int) or step < 0:
        raise ValueError(f"step must be a non-negative int (the optimizer step), got {step!r}")
    mask = as_bool_mask(mask, like=student_logits)
    dtype = torch.float64 if student_logits.dtype == torch.float64 else torch.float32
    log_p_s = F.log_softmax(student_logits.to(dtype) / temperature, dim=-1)  # [B, T, V]
    logp_o = torch.where(mask, _gather_token(log_p_s, tokens), torch.zeros((), dtype=dtype))
    with torch.no_grad():
        log_p_t = F.log_softmax(teacher_logits.to(dtype) / temperature, dim=-1)
        logp_t_o = torch.where(mask, _gather_token(log_p_t, tokens), torch.zeros((), dtype=dtype))
        reward = torch.nan_to_num(logp_t_o - logp_o.detach(), nan=0.0, posinf=0.0, neginf=-1e30)
        floor = math.log(lam) / (1.0 - lam)
        reward_hat = reward.clamp(min=floor)
        if step < t_switch:  # phase I, exploration
            keep = reward >= floor
        else:  # phase II, refinement: top-beta student entropy among valid tokens
            p_s = log_p_s.exp()
            entropy_s = -torch.where(p_s > 0, p_s * log_p_s, torch.zeros_like(p_s)).sum(-1)
            threshold = (
                torch.quantile(entropy_s[mask], 1.0 - beta)
                if bool(mask.any())
                else entropy_s.new_zeros(())
            )
            keep = entropy_s >= threshold
        m = (keep & mask).to(dtype)  # [B, T]
    loss = -(reward_hat * m * logp_o).sum() / m.sum().clamp(min=1.0)
    metrics = {
        "phase": float(step >= t_switch),
        "reward_mean": masked_mean(reward, mask),
        "mask_fraction": float(m.sum() / mask.sum().clamp(min=1)),
    }
    return LossOutput(loss, metrics)
