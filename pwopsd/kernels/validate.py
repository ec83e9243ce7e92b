"""Cheap input checks shared by every clipped-FKL implementation and the losses built on them.

They run before any [B, T, V] work and name the culprit. They live here, on the lowest floor,
so that :mod:`pwopsd.kernels` never imports :mod:`pwopsd.losses` (arrows point down only).
"""

from __future__ import annotations

import math

import torch

Tensor = torch.Tensor


def check_logits_pair(student_logits: Tensor, teacher_logits: Tensor, ndim: int | None = 3) -> None:
    """Raise a ValueError/TypeError naming the culprit when the two logits tensors can't pair up.

    ``ndim=3`` asks for [B, T, V]; ``None`` accepts any [..., V] with at least 2 dims.
    """
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
            f"student_logits is on {student_logits.device} but teacher_logits on "
            f"{teacher_logits.device}"
        )


def check_temperature_clip(temperature: float, tau_clip: float | None) -> None:
    """``temperature`` a finite number > 0; ``tau_clip`` a number (not NaN) or None (no clip)."""
    if isinstance(temperature, bool) or not (
        isinstance(temperature, int | float) and math.isfinite(temperature) and temperature > 0
    ):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
    if tau_clip is not None and (
        isinstance(tau_clip, bool)
        or not (isinstance(tau_clip, int | float) and not math.isnan(tau_clip))
    ):
        raise ValueError(f"tau_clip must be a number or None, got {tau_clip!r}")


def check_chunk_size(chunk_size: int) -> None:
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive int, got {chunk_size!r}")


def check_coefficients(coefficients: Tensor, shape: tuple[int, ...] | torch.Size) -> None:
    """The per-token coefficients must be a tensor of the loss's token shape (e.g. [B, T])."""
    if not isinstance(coefficients, torch.Tensor) or tuple(coefficients.shape) != tuple(shape):
        got = (
            tuple(coefficients.shape)
            if isinstance(coefficients, torch.Tensor)
            else type(coefficients).__name__
        )
        raise ValueError(f"coefficients must have shape {tuple(shape)}, got {got}")


def as_bool_mask(mask: Tensor, like: Tensor | None = None, name: str = "mask") -> Tensor:
    """[B, T] bool from a bool or 0/1 tensor; checks its shape against ``like``'s first two dims."""
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(mask).__name__}")
    if mask.ndim != 2:
        raise ValueError(f"{name} must be 2-D [B, T], got shape {tuple(mask.shape)}")
    if like is not None and tuple(mask.shape) != tuple(like.shape[:2]):
        raise ValueError(
            f"{name} has shape {tuple(mask.shape)} but the loss is {tuple(like.shape[:2])}"
        )
    if like is not None and mask.device != like.device:
        raise ValueError(f"{name} is on {mask.device} but the logits on {like.device}")
    if mask.dtype == torch.bool:
        return mask
    if not ((mask == 0) | (mask == 1)).all():
        raise ValueError(f"{name} must be boolean or 0/1, got other values (dtype {mask.dtype})")
    return mask.bool()
