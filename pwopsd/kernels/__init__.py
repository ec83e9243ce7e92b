"""Clipped forward KL (PROTOCOL sec. 2) kernels, their validators and the choice between them.

* :mod:`~pwopsd.kernels.reference`: the plain oracle (several [..., V] temporaries).
* :mod:`~pwopsd.kernels.chunked`: token-chunked ``autograd.Function`` on logits; the gradient is
  formed in the forward pass, one chunk of [chunk, V] fp32 temporaries at a time, the chunk body
  optionally fused by ``torch.compile`` (inductor).
* :mod:`~pwopsd.kernels.fused_linear`: the same from final hidden states and the lm_head
  weight; no [B*T, V] logits tensor ever exists.
* :mod:`~pwopsd.kernels.triton_fkl`: a Triton kernel for CUDA (two logsumexp passes, the clipped
  sum, then the gradient), importable without CUDA.
* :mod:`~pwopsd.kernels.dispatch`: ``impl`` = auto / reference / chunked / triton, the Triton
  fallback; :mod:`~pwopsd.kernels.validate`: the input checks.

This package is a floor below :mod:`pwopsd.losses`: it never imports it.
"""

from __future__ import annotations

from pwopsd.kernels.chunked import chunked_clipped_fkl, weighted_chunked_clipped_fkl
from pwopsd.kernels.dispatch import (
    IMPLS,
    Impl,
    per_token_clipped_fkl,
    triton_available,
    weighted_clipped_fkl,
)
from pwopsd.kernels.fused_linear import fused_linear_clipped_fkl
from pwopsd.kernels.reference import reference_per_token_clipped_fkl
from pwopsd.kernels.validate import as_bool_mask, check_logits_pair, check_temperature_clip

__all__ = [
    "IMPLS",
    "Impl",
    "as_bool_mask",
    "check_logits_pair",
    "check_temperature_clip",
    "chunked_clipped_fkl",
    "fused_linear_clipped_fkl",
    "per_token_clipped_fkl",
    "reference_per_token_clipped_fkl",
    "triton_available",
    "weighted_chunked_clipped_fkl",
    "weighted_clipped_fkl",
]
