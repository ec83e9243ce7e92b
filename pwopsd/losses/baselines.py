"""The EOPD and REOPOLD baselines as the release re-implements them (PROTOCOL section 2).

Plain [N, V] code (they are baselines, not the method under study). Both select the valid
positions first (``logits[mask]``, [B, T, V] -> [N, V]), so masked positions never reach the
value or the gradient whatever their logits hold, and the full-vocabulary log-softmax runs on
valid rows only. A NaN in a valid token's logits gives a NaN loss. The teacher is a constant.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from pwopsd.kernels.validate import as_bool_mask, check_logits_pair, check_temperature_clip
from pwopsd.losses.opsd import LossOutput, masked_mean

Tensor = torch.Tensor

# Baseline constants from the release (PROTOCOL section 2).
EOPD_ENTROPY_THRESHOLD = 0.8
EOPD_TOP_K = 16
EOPD_PPO_EPS = 0.2
REOPOLD_LAMBDA = 0.1
REOPOLD_BETA = 0.2
REOPOLD_T_SWITCH = 50


def check_tokens(tokens: Tensor, logits: Tensor, mask: Tensor) -> None:
    """``tokens`` [B, T] integer ids, in [0, V) at valid positions (padding may hold anything)."""
    if not isinstance(tokens, torch.Tensor) or tokens.dtype not in (torch.int32, torch.int64):
        dtype = tokens.dtype if isinstance(tokens, torch.Tensor) else type(tokens).__name__
        raise TypeError(f"tokens must be an integer [B, T] tensor of sampled ids, got {dtype}")
    if tuple(tokens.shape) != tuple(logits.shape[:2]):
        raise ValueError(
            f"tokens has shape {tuple(tokens.shape)}, expected {tuple(logits.shape[:2])}"
        )
    valid = tokens[mask]  # [N]
    if bool(((valid < 0) | (valid >= logits.shape[-1])).any()):
        raise ValueError(
            f"tokens has ids >= the vocab size {logits.shape[-1]} or < 0 at valid positions"
        )


def _valid_rows(
    student_logits: Tensor, teacher_logits: Tensor, tokens: Tensor, mask: Tensor, temperature: float
) -> tuple[Tensor, Tensor, Tensor]:
    """[B, T, V] x 2, [B, T] ids -> valid rows only: student, teacher / T ([N, V], compute dtype), ids [N]."""
    dtype = torch.float64 if student_logits.dtype == torch.float64 else torch.float32
    s = student_logits[mask].to(dtype) / temperature  # [N, V]
    t = teacher_logits.detach()[mask].to(dtype) / temperature  # [N, V]
    return s, t, tokens[mask].long()  # [N]


def _entropy(log_p: Tensor) -> Tensor:
    """[N, V] log-probs -> [N] entropy (``0 log 0 = 0``; a NaN row stays NaN)."""
    p = log_p.exp()
    return -torch.where(p == 0, 0.0, p * log_p).sum(-1)


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

    Per token ``L_OPD + 1[H_teacher > 0.8] * L_FKL``:

    * ``L_OPD = max(-r A, -clip(r, 1 - eps, 1 + eps) A)`` on the sampled token ``o``, with
      ``A = log p_T(o) - log p_S(o)`` detached and ``r = exp(log p_S(o) - log p_S(o).detach())``
      (1 in value; its gradient is that of ``log p_S(o)``);
    * ``L_FKL = sum_{v in top16(T)} q_v (log q_v - log p_S,v)``, ``q`` the teacher renormalised
      over its top-16 logits, the student at its full-vocab log-probs. Top-k entries with
      ``q_v = 0`` (a teacher with fewer than 16 finite logits) contribute 0;
    * ``H_teacher`` the full-vocab teacher entropy. No KL clip; global mean over valid tokens.

    ``student_logits``/``teacher_logits`` [B, T, V], ``tokens``/``mask`` [B, T].
    """
    check_logits_pair(student_logits, teacher_logits, ndim=3)
    check_temperature_clip(temperature, None)
    mask = as_bool_mask(mask, like=student_logits)
    check_tokens(tokens, student_logits, mask)
    s, t, tok = _valid_rows(student_logits, teacher_logits, tokens, mask, temperature)
    log_p_s = F.log_softmax(s, dim=-1)  # [N, V]
    with torch.no_grad():
        log_p_t = F.log_softmax(t, dim=-1)  # [N, V]
        entropy_t = _entropy(log_p_t)  # [N]
        topk_vals, topk_idx = torch.topk(t, k=min(top_k, t.shape[-1]), dim=-1)  # [N, k]
        log_q_t = F.log_softmax(topk_vals, dim=-1)  # [N, k]: teacher renormalised over top-k
        q_t = log_q_t.exp()  # [N, k]
    logp_o = log_p_s.gather(-1, tok[:, None])[:, 0]  # [N]
    advantage = (log_p_t.gather(-1, tok[:, None])[:, 0] - logp_o).detach()  # [N]
    ratio = torch.exp(logp_o - logp_o.detach())  # [N], 1 in value
    l_opd = torch.maximum(
        -ratio * advantage, -ratio.clamp(1 - ppo_eps, 1 + ppo_eps) * advantage
    )  # [N]
    # q = 0 entries contribute 0 (0 * -inf would be NaN); "== 0" lets a NaN through
    terms = torch.where(q_t == 0, 0.0, q_t * (log_q_t - log_p_s.gather(-1, topk_idx)))  # [N, k]
    l_fkl = terms.sum(-1)  # [N]
    gate = entropy_t > entropy_threshold  # [N] bool
    per_token = l_opd + torch.where(gate, l_fkl, 0.0)  # [N]; a closed gate adds 0, even to inf
    loss = per_token.sum() / max(per_token.numel(), 1)  # global token mean; 0 when no token
    metrics = {
        "teacher_entropy_mean": masked_mean(entropy_t),
        "high_entropy_fraction": masked_mean(gate.float()),
        "l_opd_mean": masked_mean(l_opd),
        "l_fkl_mean": masked_mean(l_fkl),
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
    Loss ``-sum(R_hat * M * log p_S(o)) / max(sum(M), 1)``. ``R = -inf`` (the teacher gives the
    token no mass) reads as the floor; a NaN reward (NaN logits at a valid token) gives NaN.
    """
    check_logits_pair(student_logits, teacher_logits, ndim=3)
    check_temperature_clip(temperature, None)
    if not 0.0 < lam < 1.0:
        raise ValueError(f"lam must be in (0, 1), got {lam!r}")
    if not 0.0 < beta <= 1.0:
        raise ValueError(f"beta must be in (0, 1], got {beta!r}")
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ValueError(f"step must be a non-negative int (the optimizer step), got {step!r}")
    mask = as_bool_mask(mask, like=student_logits)
    check_tokens(tokens, student_logits, mask)
    s, t, tok = _valid_rows(student_logits, teacher_logits, tokens, mask, temperature)
    log_p_s = F.log_softmax(s, dim=-1)  # [N, V]
    logp_o = log_p_s.gather(-1, tok[:, None])[:, 0]  # [N]
    with torch.no_grad():
        logp_t_o = F.log_softmax(t, dim=-1).gather(-1, tok[:, None])[:, 0]  # [N]
        reward = (logp_t_o - logp_o).nan_to_num(nan=math.nan, posinf=0.0, neginf=-1e30)  # [N]
        floor = math.log(lam) / (1.0 - lam)
        reward_hat = reward.clamp(min=floor)  # [N]
        if step < t_switch:  # phase I, exploration
            keep = reward >= floor  # [N]
        else:  # phase II, refinement: top-beta student entropy among valid tokens
            entropy_s = _entropy(log_p_s)  # [N]
            threshold = (
                torch.quantile(entropy_s, 1.0 - beta) if entropy_s.numel() else entropy_s.sum()
            )
            keep = entropy_s >= threshold  # [N]
        m = keep.to(logp_o.dtype)  # [N]
    loss = -(reward_hat * m * logp_o).sum() / m.sum().clamp(min=1.0)
    metrics = {
        "phase": float(step >= t_switch),
        "reward_mean": masked_mean(reward),
        "mask_fraction": float(m.sum() / max(m.numel(), 1)),
    }
    return LossOutput(loss, metrics)
