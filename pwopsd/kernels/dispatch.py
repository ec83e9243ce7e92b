"""Which clipped-FKL implementation runs: the one place that chooses (PROTOCOL sec. 2, OPSD).

``impl`` is one of :data:`IMPLS`:

* "reference": :func:`~pwopsd.kernels.reference.reference_per_token_clipped_fkl`, the plain
  oracle (several [B, T, V] temporaries);
* "chunked": :mod:`pwopsd.kernels.chunked` (CPU or CUDA, any float dtype);
* "triton": :mod:`pwopsd.kernels.triton_fkl` (CUDA, fp32/bf16/fp16 logits); asked for
  explicitly on inputs it cannot take it raises a ValueError;
* "auto": Triton when Triton can run on the tensors' device and takes their dtype, else chunked.
  Inputs Triton does not take (fp64, CPU tensors) simply go to chunked. Only a genuine failure
  of the kernel on inputs it takes (e.g. a compile error) is recorded in
  :data:`TRITON_FAILURES`; after one, "auto" warns once and stays on chunked in this process.
  A CUDA out-of-memory error is not a kernel failure and propagates.

Every implementation gives the same values and gradients up to float rounding, and the same
edge behaviour (tested against each other): a NaN in a row that counts gives a NaN loss; a
row with coefficient 0 (padding) never reaches the value or the gradient whatever it holds;
the teacher is a constant (detached, never refused).
"""

from __future__ import annotations

import functools
import warnings
from typing import Literal

import torch

from pwopsd.kernels import triton_fkl
from pwopsd.kernels.chunked import chunked_clipped_fkl, weighted_chunked_clipped_fkl
from pwopsd.kernels.reference import reference_per_token_clipped_fkl
from pwopsd.kernels.validate import check_coefficients, check_logits_pair, check_temperature_clip

Tensor = torch.Tensor

Impl = Literal["auto", "reference", "chunked", "triton"]
IMPLS: tuple[str, ...] = ("auto", "reference", "chunked", "triton")

TRITON_FAILURES: list[str] = []
"""Genuine Triton kernel failures in this process (repr of the error); "auto" avoids Triton once
this is non-empty. Unsupported inputs (fp64, CPU tensors) are never recorded here."""


@functools.cache
def _triton_imports() -> bool:
    return triton_fkl.triton is not None  # triton_fkl imports Triton when it is installed


def triton_available(device: torch.device | str | None = None) -> bool:
    """True when Triton imports and can run kernels on ``device`` (a CUDA device).

    ``device=None``: on some CUDA device of this machine.
    """
    if not _triton_imports() or not torch.cuda.is_available():
        return False
    return device is None or torch.device(device).type == "cuda"


def triton_unsupported_reason(student: Tensor, teacher: Tensor) -> str | None:
    """Why the Triton kernel cannot take these logits (dtype, device), or None when it can."""
    return triton_fkl.unsupported_reason(student, teacher)


def choose_impl(impl: str, student: Tensor, teacher: Tensor) -> str:
    """Resolve ``impl`` (one of :data:`IMPLS`) to "reference", "chunked" or "triton"."""
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {'/'.join(IMPLS)}, got {impl!r}")
    if impl != "auto":
        return impl
    if TRITON_FAILURES or not triton_available(student.device):
        return "chunked"
    return "chunked" if triton_unsupported_reason(student, teacher) is not None else "triton"


def _run_triton(auto: bool, student: Tensor, teacher: Tensor, run_triton, run_chunked):
    """Run the Triton path. Explicit "triton": refuse unsupported inputs, let failures raise.

    Under "auto" (inputs already known to be supported) a failure of the kernel is recorded in
    :data:`TRITON_FAILURES`, warned about once, and the chunked kernel runs instead.
    """
    if not auto:
        reason = triton_unsupported_reason(student, teacher)
        if reason is not None:
            raise ValueError(f"impl='triton' cannot take these inputs: {reason}; use 'auto'")
        return run_triton()
    try:
        return run_triton()
    except torch.cuda.OutOfMemoryError:
        raise  # memory, not a broken kernel: the chunked kernel needs the same [N, V] gradient
    except Exception as err:  # a kernel that fails to compile must not stop training
        TRITON_FAILURES.append(repr(err))
        warnings.warn(
            f"Triton clipped FKL failed, using the chunked kernel from now on: {err!r}",
            stacklevel=3,
        )
        return run_chunked()


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
    negative (intended). Differentiable w.r.t. ``student_logits``; the teacher is a constant
    (detached). ``impl``: see the module docstring; all return the same values and gradients up
    to float rounding.

    No mask here: a garbage row gives a garbage value there. Reduce with a select (e.g.
    :func:`pwopsd.losses.reduce_tokens`), or use :func:`weighted_clipped_fkl`, which never lets
    a padding row into the value or the gradient.
    """
    check_logits_pair(student_logits, teacher_logits, ndim=3)
    check_temperature_clip(temperature, tau_clip)
    auto = impl == "auto"
    impl = choose_impl(impl, student_logits, teacher_logits)
    if impl == "reference":
        return reference_per_token_clipped_fkl(
            student_logits, teacher_logits, temperature, tau_clip
        )

    def run_chunked() -> Tensor:
        return chunked_clipped_fkl(
            student_logits, teacher_logits, temperature, tau_clip, chunk_size=chunk_size
        )

    if impl == "chunked":
        return run_chunked()

    def run_triton() -> Tensor:
        return triton_fkl.triton_clipped_fkl(student_logits, teacher_logits, temperature, tau_clip)

    return _run_triton(auto, student_logits, teacher_logits, run_triton, run_chunked)


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
    :func:`pwopsd.losses.token_coefficients` ([B, T], 0 at padding) it equals
    ``reduce_tokens(per_token_clipped_fkl(...), ...)``, but the chunked and Triton kernels fuse
    the coefficients into the gradient they form in the forward pass (no backward pass over
    [B, T, V]). Rows with coefficient 0 never reach the result or the gradient, even when their
    logits are NaN or all ``-inf``; the per-token loss there is meaningless (read it under the
    mask only). A NaN in a row with a non-zero coefficient gives a NaN result.
    """
    check_logits_pair(student_logits, teacher_logits, ndim=3)
    check_temperature_clip(temperature, tau_clip)
    check_coefficients(coefficients, student_logits.shape[:-1])
    auto = impl == "auto"
    impl = choose_impl(impl, student_logits, teacher_logits)
    if impl == "reference":
        # the plain oracle on logits whose zero-coefficient rows are cleaned first (a select:
        # their gradient is exactly 0, and no 0 * NaN from the log-softmax backward)
        keep = (coefficients != 0).unsqueeze(-1)  # [B, T, 1]
        s = torch.where(keep, student_logits, 0.0)  # [B, T, V]
        t = torch.where(keep, teacher_logits.detach(), 0.0)  # [B, T, V]
        per_token = reference_per_token_clipped_fkl(s, t, temperature, tau_clip)  # [B, T]
        k = coefficients.detach().to(per_token.dtype)  # [B, T]
        return (per_token * k).sum(), per_token.detach()

    def run_chunked() -> tuple[Tensor, Tensor]:
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

    def run_triton() -> tuple[Tensor, Tensor]:
        return triton_fkl.weighted_triton_clipped_fkl(
            student_logits, teacher_logits, coefficients, temperature, tau_clip
        )

    return _run_triton(auto, student_logits, teacher_logits, run_triton, run_chunked)
