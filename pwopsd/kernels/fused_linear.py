"""Fused lm_head + clipped forward KL: hidden states in, weighted loss out, no [B*T, V] logits.

Per chunk of ``chunk_size`` tokens: ``logits = hidden @ W^T`` for student and teacher ([c, V]),
the clipped-FKL chunk body of :mod:`pwopsd.kernels.chunked` (loss and ``dL/dlogits`` in one
pass, token coefficients fused in), then ``dL/dhidden = dL/dlogits @ W`` ([c, H]) and, when the
weight needs a gradient, ``dL/dW += dL/dlogits^T @ hidden`` ([V, H], fp32). Only [c, V] buffers
exist, so the memory above the inputs is a few chunks plus the hidden-state gradient (and the
weight gradient when asked for). Because the coefficients are known in the forward pass, all
gradients are finished there; backward only rescales by the incoming scalar.

Self-distillation shares one lm_head between student and teacher (LoRA does not touch it);
``teacher_weight`` is for the case where they differ.
"""

from __future__ import annotations

import torch

from pwopsd.kernels.chunked import call_body, want_compile
from pwopsd.kernels.validate import check_chunk_size, check_coefficients, check_temperature_clip

Tensor = torch.Tensor


class FusedLinearClippedFKL(torch.autograd.Function):
    """(h_S [N, H], h_T [N, H], W [V, H], W_T [V, H] | None, coeff [N]) -> (scalar, per-token [N])."""

    @staticmethod
    def forward(
        ctx, h_s, h_t, weight, teacher_weight, coeff, temperature, tau_clip, chunk_size, use_compile
    ):
        n = h_s.shape[0]
        v = weight.shape[0]
        dtype = torch.float64 if h_s.dtype == torch.float64 else torch.float32
        inv_temp = 1.0 / float(temperature)
        tau = None if tau_clip is None else float(tau_clip)
        w_t = weight if teacher_weight is None else teacher_weight
        need_h, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[2]
        loss = torch.empty(n, dtype=dtype, device=h_s.device)
        grad_h = torch.zeros_like(h_s) if need_h else None  # [N, H]
        grad_w = torch.zeros(weight.shape, dtype=dtype, device=weight.device) if need_w else None
        buf = torch.empty(min(chunk_size, n), v, dtype=dtype, device=h_s.device)  # dL/dlogits chunk
        c_all = coeff.to(dtype)
        starts = range(0, n, chunk_size)
        padded = torch.zeros(len(starts) * chunk_size, dtype=torch.bool, device=coeff.device)
        padded[:n] = coeff != 0
        # chunks whose coefficients are all 0 (padding) are not computed
        skip = (~padded.view(-1, chunk_size).any(dim=1)).tolist()
        with torch.no_grad():
            for start, skipped in zip(starts, skip):
                stop = min(start + chunk_size, n)
                if skipped:
                    loss[start:stop] = 0.0
                    continue
                full = stop - start == chunk_size
                s_logits = h_s[start:stop] @ weight.T  # [c, V]
                t_logits = h_t[start:stop] @ w_t.T  # [c, V]
                if not (need_h or need_w):
                    loss[start:stop] = call_body(
                        "fkl_chunk_loss", use_compile and full, s_logits, t_logits, inv_temp, tau
                    )
                    continue
                g = buf[: stop - start]
                loss[start:stop] = call_body(
                    "fkl_chunk_into",
                    use_compile and full,
                    s_logits,
                    t_logits,
                    c_all[start:stop],
                    g,
                    inv_temp,
                    tau,
                )
                del s_logits, t_logits
                g_mm = g.to(weight.dtype)
                if need_h:
                    grad_h[start:stop] = (g_mm @ weight).to(h_s.dtype)  # [c, H]
                if need_w:
                    # padding rows have g = 0 but may hold garbage hidden states: 0 * NaN = NaN,
                    # so they are zeroed before the outer product
                    h_c = h_s[start:stop].to(dtype)  # [c, H]
                    h_c = torch.where(c_all[start:stop, None] != 0, h_c, 0.0)
                    grad_w.addmm_(g.T, h_c)  # [V, H]
        total = torch.where(c_all != 0, c_all * loss, torch.zeros_like(loss)).sum()
        ctx.grads = (grad_h, grad_w)
        ctx.weight_dtype = weight.dtype
        ctx.mark_non_differentiable(loss)
        return total, loss

    @staticmethod
    def backward(ctx, grad_total, _grad_loss):
        grad_h, grad_w = ctx.grads  # small ([N, H], [V, H]): scaled out of place, reusable
        scale = grad_total
        if grad_h is not None:
            grad_h = grad_h * scale.to(grad_h.dtype)
        if grad_w is not None:
            grad_w = (grad_w * scale.to(grad_w.dtype)).to(ctx.weight_dtype)
        return grad_h, None, grad_w, None, None, None, None, None, None


def fused_linear_clipped_fkl(
    student_hidden: Tensor,
    teacher_hidden: Tensor,
    weight: Tensor,
    coefficients: Tensor,
    temperature: float = 1.1,
    tau_clip: float | None = 0.05,
    *,
    teacher_weight: Tensor | None = None,
    chunk_size: int = 256,
    compile: bool | str = "auto",
) -> tuple[Tensor, Tensor]:
    """``sum_t coefficients_t * clipped_fkl_t`` from hidden states [..., H] and lm_head ``weight`` [V, H].

    Returns (scalar loss, per-token loss [...] detached). Equals
    ``weighted sum of reference_per_token_clipped_fkl(h_S @ W^T, h_T @ W_T^T)`` without ever
    forming the logits. Gradients: ``student_hidden`` always when it requires grad, ``weight``
    only when it requires grad (frozen lm_head under LoRA: leave it off, it costs a [V, H]
    fp32 buffer). The teacher is a constant: ``teacher_hidden`` and ``teacher_weight`` are
    detached (and when ``teacher_weight`` is None the teacher's use of ``weight`` carries no
    gradient either). Rows with coefficient 0 never reach the loss or any gradient, even when
    their hidden states are garbage; a NaN in a row with a coefficient gives a NaN loss.
    """
    check_temperature_clip(temperature, tau_clip)
    check_chunk_size(chunk_size)
    for name, x in (
        ("student_hidden", student_hidden),
        ("teacher_hidden", teacher_hidden),
        ("weight", weight),
    ):
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor")
    if student_hidden.shape != teacher_hidden.shape:
        raise ValueError(
            f"student_hidden {tuple(student_hidden.shape)} and teacher_hidden "
            f"{tuple(teacher_hidden.shape)} must have the same shape"
        )
    if weight.ndim != 2 or weight.shape[1] != student_hidden.shape[-1]:
        raise ValueError(
            f"weight must be [V, H] with H = {student_hidden.shape[-1]} (hidden width), "
            f"got {tuple(weight.shape)}"
        )
    if teacher_weight is not None and teacher_weight.shape != weight.shape:
        raise ValueError(
            f"teacher_weight {tuple(teacher_weight.shape)} must match weight {tuple(weight.shape)} "
            "(same vocabulary and width)"
        )
    check_coefficients(coefficients, student_hidden.shape[:-1])
    if teacher_weight is not None:
        teacher_weight = teacher_weight.detach()  # the teacher is a constant
    h = student_hidden.shape[-1]
    h_s, h_t = student_hidden.reshape(-1, h), teacher_hidden.detach().reshape(-1, h)
    use_compile = want_compile(compile, h_s.dtype, h_s.shape[0], weight.shape[0], chunk_size)
    total, loss = FusedLinearClippedFKL.apply(
        h_s,
        h_t,
        weight,
        teacher_weight,
        coefficients.detach().reshape(-1),
        temperature,
        tau_clip,
        chunk_size,
        use_compile,
    )
    return total, loss.reshape(student_hidden.shape[:-1])
