"""The plain clipped forward KL (PROTOCOL sec. 2, OPSD): the oracle every fast kernel is tested on.

It has the shape of the release's code: several full [..., V] temporaries in fp32 (fp64 for
fp64 inputs). The conventions written here are the ones every implementation in
:mod:`pwopsd.kernels` follows:

* ``p_T,v = 0`` (a ``-inf`` teacher logit) contributes 0 (``0 log 0 = 0``); ``p_T,v > 0`` with
  ``p_S,v = 0`` contributes ``+inf``, i.e. ``tau_clip`` after the clip;
* a NaN anywhere in a row (or a row with no finite logit) gives that token a NaN loss: it is
  never zeroed or clipped away, so a broken forward pass shows up in the loss;
* the teacher is a constant: ``teacher_logits`` is detached.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from pwopsd.kernels.validate import check_logits_pair, check_temperature_clip

Tensor = torch.Tensor


def reference_per_token_clipped_fkl(
    student_logits: Tensor,
    teacher_logits: Tensor,
    temperature: float = 1.1,
    tau_clip: float | None = 0.05,
) -> Tensor:
    """The plain oracle: [..., V] x 2 -> [...] clipped forward KL per token (PROTOCOL sec. 2, OPSD).

    ``loss = sum_v min(p_T,v (log p_T,v - log p_S,v), tau_clip)`` with both distributions at
    ``temperature`` (``tau_clip=None``: no clip). Differentiable w.r.t. ``student_logits`` only.
    A garbage row (NaN, all ``-inf``) gives a NaN loss there and, even under a zero upstream
    gradient, a NaN gradient (``0 * NaN`` in the log-softmax backward): callers that mask rows
    must clean them first (the dispatch in :mod:`pwopsd.kernels.dispatch` does).
    """
    check_logits_pair(student_logits, teacher_logits, ndim=None)
    check_temperature_clip(temperature, tau_clip)
    dtype = torch.float64 if student_logits.dtype == torch.float64 else torch.float32
    log_p_s = F.log_softmax(student_logits.to(dtype) / temperature, dim=-1)  # [..., V]
    log_p_t = F.log_softmax(teacher_logits.detach().to(dtype) / temperature, dim=-1)  # [..., V]
    p_t = log_p_t.exp()  # [..., V]
    # 0 * log 0 = 0 where the teacher puts no mass; "== 0" (not "> 0") lets a NaN through.
    f = torch.where(p_t == 0, 0.0, p_t * (log_p_t - log_p_s))  # [..., V]
    if tau_clip is not None:
        f = torch.where(f > tau_clip, tau_clip, f)  # min(f, tau); NaN is kept (NaN > tau is False)
    return f.sum(-1)
