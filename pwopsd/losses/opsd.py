"""OPSD, PW-OPSD and the reduction factorial (PROTOCOL section 2; the release's ``ea_opsd_trainer.py``).

* Per-token clipped forward KL (PROTOCOL sec. 2, "OPSD"): with ``p = softmax(logits / T)``,
  ``f_v = p_T,v (log p_T,v - log p_S,v)``, ``loss_t = sum_v min(f_v, tau_clip)``. The
  implementations (plain oracle, chunked, fused lm_head, Triton) and the choice between them
  live in :mod:`pwopsd.kernels`; :func:`per_token_clipped_fkl` and :func:`weighted_clipped_fkl`
  are re-exported here and every method below goes through the latter.
* Position weight (PROTOCOL sec. 2, "PW-OPSD"): ``w(u) = w_min + (1 - w_min) sigmoid((u - c) / s)``,
  ``u = (i - 0.5) / L``, ``i`` the 1-based index among the row's valid tokens, ``L`` the row's
  valid length.
* Reductions (PROTOCOL sec. 2 and Appendix L): global token mean ``sum(w x) / N_valid``, or per
  sequence ``sum_t(w x) / L_b`` then the mean over rows with at least one valid token.

Conventions shared by every implementation (tested against each other):

* logits may contain ``-inf`` (masked vocabulary): ``p_T,v = 0`` contributes 0, ``p_T,v > 0``
  with ``p_S,v = 0`` contributes ``+inf``, i.e. ``tau_clip`` after the clip. A valid token's
  row needs at least one finite logit.
* A NaN in a valid token's logits gives a NaN loss (never hidden by a clip or a zero fill).
* Positions outside ``mask`` never reach the value or the gradient, whatever their logits hold
  (NaN, all ``-inf``); an all-masked batch gives a loss of 0 with zero (not missing) gradients.
* The teacher is a constant: teacher logits are detached (the teacher pass runs under
  ``no_grad`` anyway); a teacher tensor that requires grad is accepted and gets no gradient.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from pwopsd.config import check_schedule, resolve_schedule
from pwopsd.kernels.dispatch import Impl, per_token_clipped_fkl, weighted_clipped_fkl
from pwopsd.kernels.reference import reference_per_token_clipped_fkl
from pwopsd.kernels.validate import as_bool_mask, check_logits_pair, check_temperature_clip
from pwopsd.vocab import DEFAULT_SCHEDULE, REDUCTIONS, SCHEDULES, WEIGHTINGS

Tensor = torch.Tensor

__all__ = [
    "Impl",
    "LossOutput",
    "factorial_loss",
    "per_token_clipped_fkl",
    "position_weights",
    "pw_opsd_loss",
    "reduce_tokens",
    "reference_per_token_clipped_fkl",
    "resolve_schedule",
    "token_coefficients",
    "weighted_clipped_fkl",
]

_MODERATE = SCHEDULES[DEFAULT_SCHEDULE]

# --------------------------------------------------------------------------------------
# Position weights and reductions
# --------------------------------------------------------------------------------------


def position_weights(
    mask: Tensor,
    w_min: float = _MODERATE[0],
    c: float = _MODERATE[1],
    s: float = _MODERATE[2],
) -> Tensor:
    """PW-OPSD position weights, [B, T] mask -> [B, T] fp32 (PROTOCOL sec. 2, PW-OPSD).

    ``w(u) = w_min + (1 - w_min) * sigmoid((u - c) / s)`` with ``u = (i - 0.5) / L``, ``i`` the
    1-based index of the token among its row's valid tokens and ``L`` the row's valid length
    (not the padded length), so ``u`` runs over (0, 1) in every row whatever its padding. Masked
    positions get weight 0. Defaults are the published Moderate schedule. The schedule goes
    through :func:`pwopsd.config.check_schedule` (ConfigError, a ValueError, when out of range).
    """
    check_schedule(w_min, c, s)
    mask = as_bool_mask(mask)
    mask_f = mask.to(torch.float32)  # [B, T]
    length = mask_f.sum(dim=1, keepdim=True).clamp(min=1.0)  # [B, 1]
    index = mask_f.cumsum(dim=1)  # [B, T]: 1-based index at valid positions
    u = (index - 0.5) / length  # [B, T]
    w = w_min + (1.0 - w_min) * torch.sigmoid((u - c) / s)  # [B, T]
    return torch.where(mask, w, torch.zeros_like(w))


def token_coefficients(
    mask: Tensor,
    weights: Tensor | None = None,
    per_sequence: bool = False,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """The [B, T] coefficients ``k`` with ``reduce_tokens(x, mask, weights, per_sequence) == sum(k * x)``.

    Global token mean: ``k = w * mask / N_valid``. Per sequence: ``k = w * mask / (L_b * R)``
    with ``L_b`` the row's valid length and ``R`` the number of rows with ``L_b > 0``. The fused
    kernels take these so the reduction (and its gradient) happens inside their single pass.
    """
    mask = as_bool_mask(mask)
    mask_f = mask.to(dtype)  # [B, T]
    if weights is not None:
        if not isinstance(weights, torch.Tensor) or tuple(weights.shape) != tuple(mask.shape):
            shape = (
                tuple(weights.shape)
                if isinstance(weights, torch.Tensor)
                else type(weights).__name__
            )
            raise ValueError(
                f"weights must be a [B, T] tensor like mask {tuple(mask.shape)}, got {shape}"
            )
        w = torch.where(mask, weights.detach().to(dtype), torch.zeros_like(mask_f))  # [B, T]
    else:
        w = mask_f
    if per_sequence:
        length = mask_f.sum(dim=1, keepdim=True)  # [B, 1]
        n_rows = (length > 0).sum().clamp(min=1).to(dtype)  # []
        return w / (length.clamp(min=1.0) * n_rows)
    return w / mask_f.sum().clamp(min=1.0)


def reduce_tokens(
    per_token: Tensor, mask: Tensor, weights: Tensor | None = None, per_sequence: bool = False
) -> Tensor:
    """Reduce a [B, T] per-token loss to a scalar (PROTOCOL sec. 2 and the Appendix L factorial).

    * ``per_sequence=False`` (OPSD): global mean over valid tokens, ``sum(w * x * mask) / N_valid``
      (divided by the token count, not by the sum of weights).
    * ``per_sequence=True`` (PW-OPSD): per row ``sum(w * x * mask) / L_b``, then the mean over rows
      with at least one valid token.

    ``weights`` (e.g. :func:`position_weights`) default to 1. Masked positions are excluded with
    a select, so NaN/inf there never leaks. No valid token at all gives 0 (with zero gradients).
    """
    if not isinstance(per_token, torch.Tensor) or per_token.ndim != 2:
        shape = (
            tuple(per_token.shape)
            if isinstance(per_token, torch.Tensor)
            else type(per_token).__name__
        )
        raise ValueError(f"per_token must be a 2-D [B, T] tensor, got {shape}")
    mask = as_bool_mask(mask, like=per_token)
    dtype = torch.float64 if per_token.dtype == torch.float64 else torch.float32
    coeff = token_coefficients(mask, weights, per_sequence, dtype).to(per_token.dtype)  # [B, T]
    terms = torch.where(mask, per_token * coeff, torch.zeros_like(per_token))  # [B, T]
    return terms.sum()


# --------------------------------------------------------------------------------------
# Method losses
# --------------------------------------------------------------------------------------


@dataclass
class LossOutput:
    """A scalar loss to backpropagate plus detached per-batch metrics for logging."""

    loss: Tensor
    metrics: dict[str, float] = field(default_factory=dict)


def masked_mean(x: Tensor, mask: Tensor | None = None) -> float:
    """Mean of ``x`` over ``mask`` (all of ``x`` when None) as a float; 0.0 when empty."""
    x = x.detach() if mask is None else x.detach()[mask]
    return float(x.float().mean()) if x.numel() else 0.0


def clipped_fkl_metrics(
    per_token: Tensor, weights: Tensor | None, mask: Tensor
) -> dict[str, float]:
    """What a clipped-FKL loss reports for logging: the mean per-token clipped FKL over valid
    tokens and, for position weightings, the mean, min and max of w(u) over them."""
    metrics = {"fkl_token_mean": masked_mean(per_token, mask)}
    if weights is not None:
        metrics["position_weight_mean"] = masked_mean(weights, mask)
        if bool(mask.any()):
            valid = weights.detach()[mask]  # [N]
            metrics["position_weight_min"] = float(valid.min())
            metrics["position_weight_max"] = float(valid.max())
    return metrics


def pw_opsd_loss(
    student_logits: Tensor,
    teacher_logits: Tensor,
    mask: Tensor,
    temperature: float = 1.1,
    tau_clip: float | None = 0.05,
    schedule: str | tuple[float, float, float] = DEFAULT_SCHEDULE,
    *,
    impl: Impl = "auto",
) -> LossOutput:
    """PW-OPSD: clipped FKL x w(u), per-sequence sum / L, mean over rows (PROTOCOL sec. 2, PW-OPSD)."""
    return factorial_loss(
        student_logits,
        teacher_logits,
        mask,
        "position",
        "per_sequence",
        temperature,
        tau_clip,
        schedule=schedule,
        impl=impl,
    )


def method_coefficients(
    mask: Tensor,
    weighting: str,
    reduction: str,
    schedule: str | tuple[float, float, float],
    dtype: torch.dtype,
) -> tuple[Tensor, Tensor | None]:
    """[B, T] token coefficients of one factorial cell and its position weights (None: uniform)."""
    if weighting not in WEIGHTINGS:
        raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    weights = (
        position_weights(mask, *resolve_schedule(schedule)) if weighting == "position" else None
    )  # [B, T] or None
    coeff = token_coefficients(mask, weights, reduction == "per_sequence", dtype)  # [B, T]
    return coeff, weights


def factorial_loss(
    student_logits: Tensor,
    teacher_logits: Tensor,
    mask: Tensor,
    weighting: str,
    reduction: str,
    temperature: float = 1.1,
    tau_clip: float | None = 0.05,
    schedule: str | tuple[float, float, float] = DEFAULT_SCHEDULE,
    *,
    impl: Impl = "auto",
) -> LossOutput:
    """One cell of the 2x2 reduction factorial (Appendix L): {uniform, position} x {global, per_sequence}.

    uniform/global is OPSD, position/per_sequence is PW-OPSD; the other two cells isolate the
    position schedule from the length normalisation of the per-sequence reduction.
    ``student_logits``/``teacher_logits`` [B, T, V], ``mask`` [B, T].
    """
    check_logits_pair(student_logits, teacher_logits, ndim=3)
    check_temperature_clip(temperature, tau_clip)
    mask = as_bool_mask(mask, like=student_logits)
    dtype = torch.float64 if student_logits.dtype == torch.float64 else torch.float32
    coeff, weights = method_coefficients(mask, weighting, reduction, schedule, dtype)
    loss, per_token = weighted_clipped_fkl(
        student_logits, teacher_logits, coeff, temperature, tau_clip, impl=impl
    )  # [], [B, T]
    return LossOutput(loss, clipped_fkl_metrics(per_token, weights, mask))
