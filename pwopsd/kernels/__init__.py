"""Memory-efficient clipped forward KL (PROTOCOL sec. 2) that never holds a full [B, T, V] temporary.

* :mod:`~pwopsd.kernels.chunked`: token-chunked ``autograd.Function`` on logits; the gradient is
  formed in the forward pass, one chunk of [chunk, V] fp32 temporaries at a time, the chunk body
  optionally fused by ``torch.compile`` (inductor).
* :mod:`~pwopsd.kernels.fused_linear`: the same from final hidden states and the lm_head
  weight; no [B*T, V] logits tensor ever exists.
* :mod:`~pwopsd.kernels.triton_fkl`: a Triton kernel for CUDA (two logsumexp passes, the clipped
  sum, then the gradient), importable without CUDA.
"""

from __future__ import annotations

import functools


@functools.cache
def triton_available() -> bool:
    """True when Triton imports and a CUDA device is present."""
    try:
        import torch
        import triton  # noqa: F401
    except ImportError:
        return False
    return torch.cuda.is_available()


from pwopsd.kernels.chunked import chunked_clipped_fkl, weighted_chunked_clipped_fkl  # noqa: E402
from pwopsd.kernels.fused_linear import fused_linear_clipped_fkl  # noqa: E402

__all__ = [
    "chunked_clipped_fkl",
    "fused_linear_clipped_fkl",
    "triton_available",
    "weighted_chunked_clipped_fkl",
]
