"""Distillation losses: OPSD, PW-OPSD, the EOPD and REOPOLD baselines, the reduction factorial.

Everything here follows PROTOCOL section 2 (and the release's ``ea_opsd_trainer.py``):

* per-token clipped forward KL (Eq. "OPSD"): with ``p = softmax(logits / T)``,
  ``f_v = p_T,v * (log p_T,v - log p_S,v)``, ``loss_t = sum_v min(f_v, tau_clip)``;
* position weight (Eq. "PW-OPSD"): ``w(u) = w_min + (1 - w_min) * sigmoid((u - c) / s)``,
  ``u = (i - 0.5) / L`` with ``i`` the 1-based index among the row's valid tokens and ``L``
  the row's valid length;
* reductions: global token mean, or per-sequence ``sum(w * loss) / L`` then the mean over
  rows with at least one valid token.

Two implementations of the per-token loss exist: :func:`reference_per_token_clipped_fkl` is the
plain, obviously-correct version (several [B, T, V] temporaries) kept as the test oracle, and
the memory-efficient ones in :mod:`pwopsd.kernels` (token-chunked autograd Function, optional
``torch.compile``; fused lm_head variant; Triton on CUDA). :func:`per_token_clipped_fkl`
dispatches between them; every method loss below goes through it.

Conventions (shared by every implementation, tested against each other):

* logits may contain ``-inf`` (masked vocabulary). An entry with ``p_T,v = 0`` contributes 0
  (``0 * log 0 = 0``); an entry with ``p_T,v > 0`` and ``p_S,v = 0`` contributes ``+inf``, i.e.
  ``tau_clip`` after the clip. Each row needs at least one finite logit.
* The teacher is a constant (no gradient): the teacher pass runs under ``no_grad``.
* Positions outside ``mask`` never reach the loss value or the gradient (even if their logits
  are garbage); an all-masked batch gives a loss of 0 with zero (not missing) gradients.

For the training loop, :func:`method_loss` is the single entry point: it takes one method name
(``METHODS``) and the aligned completion tensors and returns a :class:`LossOutput`.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F

Tensor = torch.Tensor

# --------------------------------------------------------------------------------------
# Schedules (PROTOCOL section 2)
# --------------------------------------------------------------------------------------

SCHEDULES: dict[str, tuple[float, float, float]] = {
    # [our choice] high floor, softest transition.
    "mild": (0.50, 0.30, 0.15),
    # Published default (w_min, c, s), held fixed across models.
    "moderate": (0.25, 0.30, 0.10),
    # [our choice] lower floor, steeper transition (same centre as Moderate).
    "sharp": (0.10, 0.30, 0.05),
    # [our choice] lowest floor and the latest transition.
    "aggressive": (0.05, 0.45, 0.05),
}
"""Position-weight schedules: name -> (w_min, c, s) of w(u) = w_min + (1-w_min) sigmoid((u-c)/s).

Only ``moderate`` = (0.25, 0.30, 0.10) is published. ``mild``, ``sharp`` and ``aggressive`` are
**this project's choice**: the paper describes them only in words (Mild: high floor, softest
transition; Sharp: lower floor, steeper; Aggressive: lowest floor, latest transition) and does
not publish their values. See :data:`SCHEDULE_NOTES`.
"""

SCHEDULE_NOTES: dict[str, str] = {
    "mild": "our choice (paper: high floor, softest transition; values not published)",
    "moderate": "published default (0.25, 0.30, 0.10)",
    "sharp": "our choice (paper: lower floor, steeper; values not published)",
    "aggressive": "our choice (paper: lowest floor, latest transition; values not published)",
}
"""Provenance of each schedule's numbers, for tables and the book to print beside them."""

PUBLISHED_SCHEDULES = frozenset({"moderate"})

# The 2x2 reduction factorial (Appendix L): (weighting, reduction) per cell.
FACTORIAL_CELLS: dict[str, tuple[str, str]] = {
    "uniform_global": ("uniform", "global"),  # = OPSD
    "uniform_per_sequence": ("uniform", "per_sequence"),
    "position_global": ("position", "global"),
    "position_per_sequence": ("position", "per_sequence"),  # = PW-OPSD
}

METHODS = ("opsd", "pwopsd", "eopd", "reopold", *FACTORIAL_CELLS)
"""Names accepted by :func:`method_loss`."""

# Baseline constants from the release (PROTOCOL section 2).
EOPD_ENTROPY_THRESHOLD = 0.8
EOPD_TOP_K = 16
EOPD_PPO_EPS = 0.2
REOPOLD_LAMBDA = 0.1
REOPOLD_BETA = 0.2
REOPOLD_T_SWITCH = 50

Impl = Literal["auto", "reference", "chunked", "triton"]

# --------------------------------------------------------------------------------------
# Input checks (cheap, before any [B, T, V] work)
# --------------------------------------------------------------------------------------


def check_logits_pair(student_logits: Tensor, teacher_logits: Tensor, ndim: int | None = 3) -> None:
    """Raise a ValueError/TypeError naming the culprit when the two logits tensors can't pair up."""
    for name, x in (("student_logits", student_logits), ("teacher_logits", teacher_logits)):
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
        if not x.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
        if ndim is not None and x.ndim != ndim:
            raise ValueError(f"{name} must be {ndim}-D [B, T, V], got shape {tuple(x.shape)}")
        if x.ndim < 2:
            raise ValueError(f"{name} must be at least 2-D [..., V], got shape {tuple(x.shape)}")
    if student_logits.shape[-1] != teacher_logits.shape[-1]:
        raise ValueError(
            "student_logits and teacher_logits have different vocab sizes "
            f"({student_logits.shape[-1]} vs {teacher_logits.shape[-1]}): pad or slice both "
            "to the tokenizer's vocabulary first"
        )
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(
            f"student_logits {tuple(student_logits.shape)} and teacher_logits "
            f"{tuple(teacher_logits.shape)} must have the same shape (aligned completion positions)"
        )
    if student_logits.device != teacher_logits.device:
        raise ValueError(
            f"student_logits is on {student_logits.device} but teacher_logits on {teacher_logits.device}"
        )


def check_temperature_clip(temperature: float, tau_clip: float | None) -> None:
    if not (
        isinstance(temperature, int | float) and math.isfinite(temperature) and temperature > 0
    ):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
    if tau_clip is not None and not (
        isinstance(tau_clip, int | float) and not math.isnan(tau_clip)
    ):
        raise ValueError(f"tau_clip must be a number or None, got {tau_clip!r}")


def _as_bool_mask(mask: Tensor, like: Tensor | None = None, name: str = "mask") -> Tensor:
    """[B, T] bool from a bool or 0/1 tensor; checks its shape against ``like``'s first two dims."""
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(mask).__name__}")
    if mask.ndim != 2:
        raise ValueError(f"{name} must be 2-D [B, T], got shape {tuple(mask.shape)}")
    if like is not None and tuple(mask.shape) != tuple(like.shape[:2]):
        raise ValueError(
            f"{name} has shape {tuple(mask.shape)} but the loss is {tuple(like.shape[:2])}"
        )
    if mask.dtype == torch.bool:
        return mask
    if not ((mask == 0) | (mask == 1)).all():
        raise ValueError(f"{name} must be boolean or 0/1, got other values (dtype {mask.dtype})")
    return mask.bool()


# --------------------------------------------------------------------------------------
# Per-token clipped forward KL
# --------------------------------------------------------------------------------------

_TRITON_FAILED: list[str] = []  # "auto" stops trying Triton after its first failure


def _auto_impl(x: Tensor) -> str:
    """ "auto": Triton for CUDA tensors when it imports (and has not failed here), else chunked."""
    from pwopsd.kernels import triton_available

    return "triton" if x.is_cuda and triton_available() and not _TRITON_FAILED else "chunked"


def _triton_or_chunked(auto: bool, run_triton, run_chunked):
    """Run the Triton path; under impl="auto" fall back to chunked (one warning) if it fails."""
    if not auto:
        return run_triton()
    try:
        return run_triton()
    except Exception as err:  # a kernel that fails to compile must not stop training
        _TRITON_FAILED.append(repr(err))
        warnings.warn(f"Triton clipped FKL failed, using the chunked kernel: {err!r}", stacklevel=3)
        return run_chunked()


def reference_per_token_clipped_fkl(
    student_logits: Tensor,
    teacher_logits: Tensor,
    temperature: float = 1.1,
    tau_clip: float | None = 0.05,
) -> Tensor:
    """The plain oracle: [..., V] x 2 -> [...] clipped forward KL per token (PROTOCOL sec. 2, OPSD).

    ``loss = sum_v min(p_T,v (log p_T,v - log p_S,v), tau_clip)`` with both distributions at
    ``temperature``. Computed in fp32 (fp64 for fp64 inputs) with full [..., V] temporaries,
    exactly the shape of the release's code; used as the test and benchmark oracle.
    """
    check_logits_pair(student_logits, teacher_logits, ndim=None)
    check_temperature_clip(temperature, tau_clip)
    dtype = torch.float64 if student_logits.dtype == torch.float64 else torch.float32
    log_p_s = F.log_softmax(student_logits.to(dtype) / temperature, dim=-1)  # [..., V]
    log_p_t = F.log_softmax(teacher_logits.detach().to(dtype) / temperature, dim=-1)  # [..., V]
    p_t = log_p_t.exp()
    # 0 * log 0 = 0 where the teacher puts no mass (masked vocabulary entries).
    f = torch.where(p_t > 0, p_t * (log_p_t - log_p_s), torch.zeros_like(p_t))  # [..., V]
    if tau_clip is not None:
        f = f.clamp(max=tau_clip)
    return f.sum(-1)


def per_token_clipped_fkl(
    student_logits: Tensor,
    teacher_logits: Tensor,
    temperature: float = 1.1,
    tau_clip: float | None = 0.05,
    *,
    impl: Impl = "auto",
    chunk_size: int = 256,
) -> Tensor:
    """Per-token clipped forward KL(teacher || student), [B, T, V] x 2 -> [B, T] (PROTOCOL sec. 2).

    ``f_v = p_T,v (log p_T,v - log p_S,v)`` with ``p = softmax(logits / temperature)``, each entry
    clamped at ``tau_clip`` (None: no clip) *before* the vocabulary sum, so a token's loss can be
    negative (intended). Differentiable w.r.t. ``student_logits``; the teacher is a constant.

    ``impl``: "reference" (the plain oracle), "chunked" (:mod:`pwopsd.kernels.chunked`: never
    more than ``chunk_size`` tokens of [tokens, V] fp32 temporaries, gradient formed in the
    forward pass), "triton" (CUDA only), "auto" (Triton on CUDA when available, else chunked;
    if the Triton kernel fails once, "auto" warns and stays on chunked). All return the same
    values and gradients up to float rounding.
    """
    check_logits_pair(student_logits, teacher_logits, ndim=3)
    check_temperature_clip(temperature, tau_clip)
    auto = impl == "auto"
    if auto:
        impl = _auto_impl(student_logits)
    if impl == "reference":
        return reference_per_token_clipped_fkl(
            student_logits, teacher_logits, temperature, tau_clip
        )
    from pwopsd.kernels.chunked import chunked_clipped_fkl

    def run_chunked():
        return chunked_clipped_fkl(
            student_logits, teacher_logits, temperature, tau_clip, chunk_size=chunk_size
        )

    if impl == "chunked":
        return run_chunked()
    if impl == "triton":
        from pwopsd.kernels.triton_fkl import triton_clipped_fkl

        return _triton_or_chunked(
            auto,
            lambda: triton_clipped_fkl(student_logits, teacher_logits, temperature, tau_clip),
            run_chunked,
        )
    raise ValueError(f"impl must be one of auto/reference/chunked/triton, got {impl!r}")


def weighted_clipped_fkl(
    student_logits: Tensor,
    teacher_logits: Tensor,
    coefficients: Tensor,
    temperature: float = 1.1,
    tau_clip: float | None = 0.05,
    *,
    impl: Impl = "auto",
    chunk_size: int = 256,
) -> tuple[Tensor, Tensor]:
    """``sum(coefficients * per_token_clipped_fkl)`` and the detached per-token loss [B, T].

    The fast path of every clipped-FKL method: with ``coefficients`` from
    :func:`token_coefficients` it equals ``reduce_tokens(per_token_clipped_fkl(...), ...)`` but the
    chunked kernel fuses the coefficients into the gradient it forms in the forward pass (no
    backward pass over [B, T, V]). Rows with coefficient 0 (padding) never reach the result.
    """
    check_logits_pair(student_logits, teacher_logits, ndim=3)
    check_temperature_clip(temperature, tau_clip)
    auto = impl == "auto"
    if auto:
        impl = _auto_impl(student_logits)
    from pwopsd.kernels.chunked import weighted_chunked_clipped_fkl

    def run_chunked():
        return weighted_chunked_clipped_fkl(
            student_logits,
            teacher_logits,
            coefficients,
            temperature,
            tau_clip,
            chunk_size=chunk_size,
        )

    if impl == "chunked":
        return run_chunked()
    if impl == "triton":
        from pwopsd.kernels.triton_fkl import weighted_triton_clipped_fkl

        return _triton_or_chunked(
            auto,
            lambda: weighted_triton_clipped_fkl(
                student_logits, teacher_logits, coefficients, temperature, tau_clip
            ),
            run_chunked,
        )
    if impl != "reference":
        raise ValueError(f"impl must be one of auto/reference/chunked/triton, got {impl!r}")
    per_token = per_token_clipped_fkl(
        student_logits, teacher_logits, temperature, tau_clip, impl=impl
    )
    k = coefficients.detach().to(per_token.dtype)
    total = torch.where(k != 0, per_token * k, torch.zeros_like(per_token)).sum()
    return total, per_token.detach()


# --------------------------------------------------------------------------------------
# Position weights and reductions
# --------------------------------------------------------------------------------------


def check_schedule(w_min: float, c: float, s: float) -> None:
    if not (isinstance(w_min, int | float) and 0.0 <= w_min <= 1.0):
        raise ValueError(f"w_min must be in [0, 1], got {w_min!r}")
    if not (isinstance(c, int | float) and math.isfinite(c)):
        raise ValueError(f"c (transition centre) must be a finite number, got {c!r}")
    if not (isinstance(s, int | float) and math.isfinite(s) and s > 0):
        raise ValueError(f"s (transition width) must be a finite number > 0, got {s!r}")


def resolve_schedule(schedule: str | tuple[float, float, float]) -> tuple[float, float, float]:
    """A schedule name from :data:`SCHEDULES` or an explicit (w_min, c, s) -> (w_min, c, s)."""
    if isinstance(schedule, str):
        if schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {sorted(SCHEDULES)}, got {schedule!r}")
        return SCHEDULES[schedule]
    if len(schedule) != 3:
        raise ValueError(f"schedule must be a name or (w_min, c, s), got {schedule!r}")
    w_min, c, s = (float(v) for v in schedule)
    check_schedule(w_min, c, s)
    return w_min, c, s


def position_weights(mask: Tensor, w_min: float = 0.25, c: float = 0.30, s: float = 0.10) -> Tensor:
    """PW-OPSD position weights, [B, T] mask -> [B, T] fp32 (PROTOCOL sec. 2, PW-OPSD).

    ``w(u) = w_min + (1 - w_min) * sigmoid((u - c) / s)`` with ``u = (i - 0.5) / L``, ``i`` the
    1-based index of the token among its row's valid tokens and ``L`` the row's valid length
    (not the padded length), so ``u`` runs over (0, 1) in every row whatever its padding. Masked
    positions get weight 0. Defaults are the published Moderate schedule.
    """
    check_schedule(w_min, c, s)
    mask = _as_bool_mask(mask)
    mask_f = mask.to(torch.float32)  # [B, T]
    length = mask_f.sum(dim=1, keepdim=True).clamp(min=1.0)  # [B, 1]
    index = mask_f.cumsum(dim=1)  # [B, T]: 1-based index at valid positions
    u = (index - 0.5) / length  # [B, T]
    w = w_min + (1.0 - w_min) * torch.sigmoid((u - c) / s)
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
    mask = _as_bool_mask(mask)
    mask_f = mask.to(dtype)
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
        w = torch.where(mask, weights.detach().to(dtype), torch.zeros_like(mask_f))
    else:
        w = mask_f
    if per_sequence:
        length = mask_f.sum(dim=1, keepdim=True)  # [B, 1]
        n_rows = (length > 0).sum().clamp(min=1).to(dtype)
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
    mask = _as_bool_mask(mask, like=per_token)
    dtype = torch.float64 if per_token.dtype == torch.float64 else torch.float32
    coeff = token_coefficients(mask, weights, per_sequence, dtype).to(per_token.dtype)  # [B, T]
    terms = torch.where(mask, per_token * coeff, torch.zeros_like(per_token))
    return terms.sum()


# --------------------------------------------------------------------------------------
# Method losses
# --------------------------------------------------------------------------------------


@dataclass
class LossOutput:
    """A scalar loss to backpropagate plus detached per-batch metrics for logging."""

    loss: Tensor
    metrics: dict[str, float] = field(default_factory=dict)


def _masked_mean(x: Tensor, mask: Tensor) -> float:
    return float(x[mask].float().mean()) if bool(mask.any()) else 0.0


def opsd_loss(
    student_logits: Tensor,
    teacher_logits: Tensor,
    mask: Tensor,
    temperature: float = 1.1,
    tau_clip: float | None = 0.05,
    *,
    impl: Impl = "auto",
) -> LossOutput:
    """OPSD: per-token clipped FKL, global mean over valid tokens (PROTOCOL sec. 2, OPSD)."""
    return factorial_loss(
        student_logits, teacher_logits, mask, "uniform", "global", temperature, tau_clip, impl=impl
    )


def pwopsd_loss(
    student_logits: Tensor,
    teacher_logits: Tensor,
    mask: Tensor,
    temperature: float = 1.1,
    tau_clip: float | None = 0.05,
    schedule: str | tuple[float, float, float] = "moderate",
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


def factorial_loss(
    student_logits: Tensor,
    teacher_logits: Tensor,
    mask: Tensor,
    weighting: Literal["uniform", "position"],
    reduction: Literal["global", "per_sequence"],
    temperature: float = 1.1,
    tau_clip: float | None = 0.05,
    schedule: str | tuple[float, float, float] = "moderate",
    *,
    impl: Impl = "auto",
) -> LossOutput:
    """One cell of the 2x2 reduction factorial (Appendix L): {uniform, position} x {global, per-sequence}.

    uniform/global is OPSD, position/per_sequence is PW-OPSD; the other two cells isolate the
    position schedule from the length normalisation of the per-sequence reduction.
    """
    if weighting not in ("uniform", "position"):
        raise ValueError(f"weighting must be 'uniform' or 'position', got {weighting!r}")
    if reduction not in ("global", "per_sequence"):
        raise ValueError(f"reduction must be 'global' or 'per_sequence', got {reduction!r}")
    check_logits_pair(student_logits, teacher_logits, ndim=3)
    check_temperature_clip(temperature, tau_clip)
    mask = _as_bool_mask(mask, like=student_logits)
    weights = (
        position_weights(mask, *resolve_schedule(schedule)) if weighting == "position" else None
    )
    dtype = torch.float64 if student_logits.dtype == torch.float64 else torch.float32
    coeff = token_coefficients(mask, weights, reduction == "per_sequence", dtype)  # [B, T]
    loss, per_token = weighted_clipped_fkl(
        student_logits, teacher_logits, coeff, temperature, tau_clip, impl=impl
    )
    metrics = {"fkl_token_mean": _masked_mean(per_token, mask)}
    if weights is not None:
        metrics["position_weight_mean"] = _masked_mean(weights, mask)
    return LossOutput(loss, metrics)


def _gather_token(logp: Tensor, tokens: Tensor) -> Tensor:
    """[B, T, V] log-probs at [B, T] token ids -> [B, T] (ids clamped: masked ids may be -100)."""
    return logp.gather(-1, tokens.clamp(min=0).unsqueeze(-1)).squeeze(-1)


def _check_tokens(tokens: Tensor, logits: Tensor) -> None:
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
    _check_tokens(tokens, student_logits)
    mask = _as_bool_mask(mask, like=student_logits)
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
        "teacher_entropy_mean": _masked_mean(entropy_t, mask),
        "high_entropy_fraction": _masked_mean(gate, mask),
        "l_opd_mean": _masked_mean(l_opd.detach(), mask),
        "l_fkl_mean": _masked_mean(l_fkl.detach(), mask),
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
    _check_tokens(tokens, student_logits)
    if not 0.0 < lam < 1.0:
        raise ValueError(f"lam must be in (0, 1), got {lam!r}")
    if not 0.0 < beta <= 1.0:
        raise ValueError(f"beta must be in (0, 1], got {beta!r}")
    if not isinstance(step, int) or step < 0:
        raise ValueError(f"step must be a non-negative int (the optimizer step), got {step!r}")
    mask = _as_bool_mask(mask, like=student_logits)
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
        "reward_mean": _masked_mean(reward, mask),
        "mask_fraction": float(m.sum() / mask.sum().clamp(min=1)),
    }
    return LossOutput(loss, metrics)


def method_loss(
    method: str,
    student_logits: Tensor,
    teacher_logits: Tensor,
    mask: Tensor,
    *,
    tokens: Tensor | None = None,
    step: int = 0,
    temperature: float = 1.1,
    tau_clip: float | None = 0.05,
    schedule: str | tuple[float, float, float] = "moderate",
    impl: Impl = "auto",
) -> LossOutput:
    """The training loop's one call: the loss of ``method`` (one of :data:`METHODS`) on a micro-batch.

    Inputs are aligned on completion positions: ``student_logits``/``teacher_logits`` [B, T, V]
    (teacher computed without grad), ``mask`` [B, T] valid completion tokens, ``tokens`` [B, T]
    the sampled completion ids (needed by "eopd" and "reopold"), ``step`` the optimizer step
    (REOPOLD's phase switch). ``schedule`` applies to the position-weighted methods.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if method in ("eopd", "reopold") and tokens is None:
        raise ValueError(f"method {method!r} needs tokens (the sampled completion ids)")
    if method == "opsd":
        return opsd_loss(student_logits, teacher_logits, mask, temperature, tau_clip, impl=impl)
    if method == "pwopsd":
        return pwopsd_loss(
            student_logits, teacher_logits, mask, temperature, tau_clip, schedule, impl=impl
        )
    if method == "eopd":
        return eopd_loss(student_logits, teacher_logits, tokens, mask, temperature)
    if method == "reopold":
        return reopold_loss(student_logits, teacher_logits, tokens, mask, step, temperature)
    weighting, reduction = FACTORIAL_CELLS[method]
    return factorial_loss(
        student_logits,
        teacher_logits,
        mask,
        weighting,  # type: ignore[arg-type]
        reduction,  # type: ignore[arg-type]
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
    schedule: str | tuple[float, float, float] = "moderate",
    teacher_weight: Tensor | None = None,
    chunk_size: int = 256,
) -> LossOutput:
    """:func:`method_loss` for the clipped-FKL methods from hidden states: no [B, T, V] logits.

    ``student_hidden``/``teacher_hidden`` [B, T, H] are the inputs of the lm_head (after the
    final norm) on the aligned completion positions, ``lm_head_weight`` [V, H] (shared by
    student and teacher unless ``teacher_weight`` is given). Methods: "opsd", "pwopsd" and the
    factorial cells; EOPD and REOPOLD need full logits (use :func:`method_loss`).
    """
    cells = {
        "opsd": ("uniform", "global"),
        "pwopsd": ("position", "per_sequence"),
        **FACTORIAL_CELLS,
    }
    if method not in cells:
        raise ValueError(
            f"fused_method_loss handles {sorted(cells)}, got {method!r} (EOPD/REOPOLD: use method_loss)"
        )
    from pwopsd.kernels.fused_linear import fused_linear_clipped_fkl

    if not isinstance(student_hidden, torch.Tensor) or student_hidden.ndim != 3:
        raise ValueError("student_hidden must be a 3-D [B, T, H] tensor")
    weighting, reduction = cells[method]
    mask = _as_bool_mask(mask, like=student_hidden)
    weights = (
        position_weights(mask, *resolve_schedule(schedule)) if weighting == "position" else None
    )
    dtype = torch.float64 if student_hidden.dtype == torch.float64 else torch.float32
    coeff = token_coefficients(mask, weights, reduction == "per_sequence", dtype)
    loss, per_token = fused_linear_clipped_fkl(
        student_hidden,
        teacher_hidden,
        lm_head_weight,
        coeff,
        temperature,
        tau_clip,
        teacher_weight=teacher_weight,
        chunk_size=chunk_size,
    )
    metrics = {"fkl_token_mean": _masked_mean(per_token, mask)}
    if weights is not None:
        metrics["position_weight_mean"] = _masked_mean(weights, mask)
    return LossOutput(loss, metrics)
