"""Triton kernel for the clipped forward KL on CUDA (PROTOCOL sec. 2), same semantics as the oracle.

One program per token row, three sweeps over the vocabulary in tiles of ``BLOCK_V``:

1. online logsumexp of ``s = student / T`` and ``t = teacher / T`` (both normalisers: the clip
   needs them before any clipped entry can be formed);
2. ``f_v = p_T,v (log p_T,v - log p_S,v)``, the clipped sum ``sum_v min(f_v, tau)`` and the
   clipped-mass term ``A = sum_v p_T,v 1[f_v <= tau]``;
3. the gradient ``coeff * (p_S,v A - p_T,v 1[f_v <= tau]) / T`` written once, in the student's dtype.

The sweeps re-read the row (two logits rows of V entries), which mostly hits L2. The result
feeds the same autograd Functions as the chunked path (:class:`~pwopsd.kernels.chunked.PerTokenFKL`,
:class:`~pwopsd.kernels.chunked.WeightedFKL`), so backward is only a rescale.

Importable without CUDA (and without Triton: the kernel is defined only when Triton imports).
Under ``TRITON_INTERPRET=1`` the kernel runs on CPU tensors, which is how the tests check it
without a GPU. ``scripts/check_triton.py`` checks it against an fp64 oracle and times it on a GPU.
"""

from __future__ import annotations

import functools
import os

import torch

from pwopsd.kernels.chunked import PerTokenFKL, WeightedFKL, prepare_logits
from pwopsd.kernels.validate import check_coefficients

Tensor = torch.Tensor

try:
    import triton
    import triton.language as tl

    HAVE_TRITON = True
except ImportError:  # CPU-only installs
    triton = None
    tl = None
    HAVE_TRITON = False

DEFAULT_BLOCK_V = 4096

SUPPORTED_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
"""Logit dtypes the kernel takes (it computes in fp32; fp64 goes to the chunked kernel)."""


def unsupported_reason(student: Tensor, teacher: Tensor) -> str | None:
    """Why the kernel cannot run on these (already checked) logits, or None when it can.

    Input properties only (dtype, device), never a failure of the kernel itself: the dispatch
    (:mod:`pwopsd.kernels.dispatch`) sends such inputs to the chunked kernel without marking
    Triton as broken.
    """
    for name, x in (("student", student), ("teacher", teacher)):
        if x.dtype not in SUPPORTED_DTYPES:
            return f"{name} dtype {x.dtype} (the kernel takes fp32/bf16/fp16 and computes in fp32)"
    if not student.is_cuda and os.environ.get("TRITON_INTERPRET") != "1":
        return (
            f"tensors on {student.device} (the kernel needs CUDA, or TRITON_INTERPRET=1 for tests)"
        )
    return None


if HAVE_TRITON:

    @triton.jit
    def _clipped_fkl_kernel(
        S,  # [N, V] student logits
        T,  # [N, V] teacher logits
        G,  # [N, V] gradient out (student dtype); unused when not WRITE_GRAD
        LOSS,  # [N] fp32 per-token loss out
        COEF,  # [N] fp32 token coefficients (1 for the per-token API)
        stride_s,
        stride_t,
        stride_g,
        V,
        inv_temp,
        tau,
        HAS_CLIP: tl.constexpr,
        WRITE_GRAD: tl.constexpr,
        BLOCK_V: tl.constexpr,
    ):
        row = tl.program_id(0).to(tl.int64)
        s_row = S + row * stride_s
        t_row = T + row * stride_t
        offs0 = tl.arange(0, BLOCK_V)

        # sweep 1: online logsumexp of both rows
        m_s = float("-inf")
        d_s = 0.0
        m_t = float("-inf")
        d_t = 0.0
        for start in range(0, V, BLOCK_V):
            offs = start + offs0
            valid = offs < V
            s = tl.load(s_row + offs, mask=valid, other=float("-inf")).to(tl.float32) * inv_temp
            t = tl.load(t_row + offs, mask=valid, other=float("-inf")).to(tl.float32) * inv_temp
            new_m_s = tl.maximum(m_s, tl.max(s, axis=0))
            new_m_t = tl.maximum(m_t, tl.max(t, axis=0))
            # an all -inf prefix keeps the running max at -inf: shift by 0 then (no inf - inf)
            safe_s = tl.where(new_m_s == float("-inf"), 0.0, new_m_s)
            safe_t = tl.where(new_m_t == float("-inf"), 0.0, new_m_t)
            d_s = d_s * tl.exp(m_s - safe_s) + tl.sum(tl.exp(s - safe_s), axis=0)
            d_t = d_t * tl.exp(m_t - safe_t) + tl.sum(tl.exp(t - safe_t), axis=0)
            m_s = new_m_s
            m_t = new_m_t
        lse_s = m_s + tl.log(d_s)
        lse_t = m_t + tl.log(d_t)

        # sweep 2: clipped sum and clipped-mass term
        loss = 0.0
        a_sum = 0.0
        for start in range(0, V, BLOCK_V):
            offs = start + offs0
            valid = offs < V
            s = tl.load(s_row + offs, mask=valid, other=float("-inf")).to(tl.float32) * inv_temp
            t = tl.load(t_row + offs, mask=valid, other=float("-inf")).to(tl.float32) * inv_temp
            log_p_s = s - lse_s
            log_p_t = t - lse_t
            p_t = tl.exp(log_p_t)
            # 0 log 0 = 0 where p_T = 0; "== 0" (not "> 0") keeps a NaN from NaN logits
            f = tl.where(p_t == 0, 0.0, p_t * (log_p_t - log_p_s))
            if HAS_CLIP:
                clipped = f > tau  # NaN is never "clipped": it reaches the loss
                f = tl.where(clipped, tau, f)
                a = tl.where(clipped, 0.0, p_t)
            else:
                a = p_t
            loss += tl.sum(tl.where(valid, f, 0.0), axis=0)
            a_sum += tl.sum(a, axis=0)
        tl.store(LOSS + row, loss)

        # sweep 3: the gradient, written once
        if WRITE_GRAD:
            k = tl.load(COEF + row).to(tl.float32)
            scale = k * inv_temp
            g_row = G + row * stride_g
            for start in range(0, V, BLOCK_V):
                offs = start + offs0
                valid = offs < V
                s = tl.load(s_row + offs, mask=valid, other=float("-inf")).to(tl.float32) * inv_temp
                t = tl.load(t_row + offs, mask=valid, other=float("-inf")).to(tl.float32) * inv_temp
                log_p_s = s - lse_s
                log_p_t = t - lse_t
                p_t = tl.exp(log_p_t)
                if HAS_CLIP:
                    f = tl.where(p_t == 0, 0.0, p_t * (log_p_t - log_p_s))
                    a = tl.where(f > tau, 0.0, p_t)
                else:
                    a = p_t
                g = (tl.exp(log_p_s) * a_sum - a) * scale
                g = tl.where(k != 0, g, 0.0)  # padding rows: zero, never NaN
                tl.store(g_row + offs, g.to(G.dtype.element_ty), mask=valid)


def triton_loop(
    student: Tensor,
    teacher: Tensor,
    coeff: Tensor | None,
    want_grad: bool,
    *,
    temperature: float,
    tau_clip: float | None,
    block_v: int = DEFAULT_BLOCK_V,
) -> tuple[Tensor, Tensor | None]:
    """Launch the kernel: [N, V] x 2 (+ [N] coefficients) -> (loss [N] fp32, gradient [N, V] | None)."""
    if not HAVE_TRITON:
        raise RuntimeError("Triton is not installed: use impl='chunked'")
    reason = unsupported_reason(student, teacher)
    if reason is not None:
        raise TypeError(f"the Triton clipped FKL cannot take these inputs: {reason}")
    n, v = student.shape
    student = student if student.stride(-1) == 1 else student.contiguous()
    teacher = teacher if teacher.stride(-1) == 1 else teacher.contiguous()
    loss = torch.empty(n, dtype=torch.float32, device=student.device)
    grad = torch.empty_like(student) if want_grad else None
    if coeff is None:
        coeff = torch.ones(n, dtype=torch.float32, device=student.device)
    coeff = coeff.to(torch.float32).contiguous()
    if n == 0:
        return loss, grad
    block_v = min(block_v, triton.next_power_of_2(v))
    _clipped_fkl_kernel[(n,)](
        student,
        teacher,
        grad if grad is not None else loss,  # dummy pointer when no gradient is written
        loss,
        coeff,
        student.stride(0),
        teacher.stride(0),
        grad.stride(0) if grad is not None else 0,
        v,
        1.0 / float(temperature),
        0.0 if tau_clip is None else float(tau_clip),
        HAS_CLIP=tau_clip is not None,
        WRITE_GRAD=grad is not None,
        BLOCK_V=block_v,
        num_warps=8 if block_v >= 2048 else 4,
    )
    return loss, grad


def triton_clipped_fkl(
    student_logits: Tensor,
    teacher_logits: Tensor,
    temperature: float = 1.1,
    tau_clip: float | None = 0.05,
    *,
    block_v: int = DEFAULT_BLOCK_V,
) -> Tensor:
    """Per-token clipped FKL on CUDA, [..., V] x 2 -> [...] fp32 (see :mod:`pwopsd.kernels.dispatch`)."""
    s, t = prepare_logits(student_logits, teacher_logits, temperature, tau_clip, 1)
    loop = functools.partial(
        triton_loop, temperature=temperature, tau_clip=tau_clip, block_v=block_v
    )
    return PerTokenFKL.apply(s, t, loop).reshape(student_logits.shape[:-1])


def weighted_triton_clipped_fkl(
    student_logits: Tensor,
    teacher_logits: Tensor,
    coefficients: Tensor,
    temperature: float = 1.1,
    tau_clip: float | None = 0.05,
    *,
    block_v: int = DEFAULT_BLOCK_V,
) -> tuple[Tensor, Tensor]:
    """``sum(coefficients * loss)`` and the detached per-token loss, coefficients fused in the kernel."""
    s, t = prepare_logits(student_logits, teacher_logits, temperature, tau_clip, 1)
    check_coefficients(coefficients, student_logits.shape[:-1])
    loop = functools.partial(
        triton_loop, temperature=temperature, tau_clip=tau_clip, block_v=block_v
    )
    total, loss = WeightedFKL.apply(s, t, coefficients.detach().reshape(-1), loop)
    return total, loss.reshape(student_logits.shape[:-1])
