"""Sampling requests: what to draw, with which seed, and how each backend is asked for it.

Both engines of :mod:`pwopsd.engine` take rendered prompt strings (or :class:`SampleRequest`
objects) and return :class:`Completion` objects (text, token ids, log-probabilities of the
sampled tokens under the unprocessed model distribution, finish reason), so evaluation and
training rollouts share them.

Seeding: every sample carries its own seed (:func:`derive_seed` of the run seed and the
sample's identity), so a sample does not depend on which other requests ran beside it,
as long as the backend's numerics do not depend on batch composition (on GPUs they
may: batched matmuls reduce in a batch-size-dependent order).

One :class:`~pwopsd.config.SamplingConfig` becomes a backend's arguments in one place each:
:func:`vllm_sampling_params` (vLLM ``SamplingParams``) and :func:`hf_generate_kwargs` (HF
``generate``); :func:`eos_token_ids` says which token ids end a completion.
"""

from __future__ import annotations

import hashlib
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

from pwopsd.config import SamplingConfig


@dataclass(frozen=True)
class Completion:
    """One sampled continuation."""

    text: str
    token_ids: tuple[int, ...]
    logprobs: tuple[float, ...] | None
    """Log-probability of each sampled token (None unless requested)."""
    finish_reason: str | None
    """"stop" (EOS / stop string), "length" (budget hit), or None."""


@dataclass(frozen=True)
class SampleRequest:
    """One sample to draw: ``key`` comes back with its completion."""

    key: Hashable
    prompt: str | dict[str, list[int]]
    """A rendered prompt string, or (vLLM only) ``{"prompt_token_ids": [...]}``, a vLLM
    ``TokensPrompt``, for a prompt that must be exactly those tokens."""
    seed: int


def derive_seed(*parts: Any) -> int:
    """A 31-bit seed from the run seed and a sample's identity (benchmark, problem, index).

    SHA-256 of the parts' reprs: stable across processes and Python versions (unlike hash()).
    """
    digest = hashlib.sha256("\x1f".join(repr(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") % (2**31 - 1)


def check_sampling(sampling: SamplingConfig) -> None:
    """Raise ValueError naming the bad field (before any engine starts)."""
    if sampling.n < 1:
        raise ValueError(f"sampling.n={sampling.n} must be >= 1")
    if sampling.temperature < 0:
        raise ValueError(f"sampling.temperature={sampling.temperature} must be >= 0")
    if not 0 < sampling.top_p <= 1:
        raise ValueError(f"sampling.top_p={sampling.top_p} must lie in (0, 1]")
    if sampling.top_k == 0 or sampling.top_k < -1:
        raise ValueError(f"sampling.top_k={sampling.top_k} must be -1 (off) or >= 1")
    if sampling.max_new_tokens < 1:
        raise ValueError(f"sampling.max_new_tokens={sampling.max_new_tokens} must be >= 1")


def eos_token_ids(tokenizer: Any, generation_config: Any = None) -> set[int]:
    """The token ids that end a completion: the tokenizer's EOS and the generation config's
    ``eos_token_id`` (one id or a list; the config may be None)."""
    ids = {int(tokenizer.eos_token_id)} if tokenizer.eos_token_id is not None else set()
    gen_eos = getattr(generation_config, "eos_token_id", None)
    if isinstance(gen_eos, list | tuple):
        ids.update(int(x) for x in gen_eos)
    elif gen_eos is not None:
        ids.add(int(gen_eos))
    return ids


def vllm_sampling_params(
    sampling: SamplingConfig, seed: int | None, n: int = 1, logprobs: bool = False
) -> Any:
    """vLLM ``SamplingParams`` of ``sampling`` for one request: ``n`` samples from ``seed``
    (None: the engine's seed), with the sampled tokens' logprobs when ``logprobs``."""
    from vllm import SamplingParams  # vllm is an optional extra: imported only to sample with it

    return SamplingParams(
        n=n,
        temperature=sampling.temperature,
        top_p=sampling.top_p,
        top_k=sampling.top_k,
        max_tokens=sampling.max_new_tokens,
        seed=seed,
        logprobs=0 if logprobs else None,
    )


def hf_generate_kwargs(
    sampling: SamplingConfig,
    *,
    pad_token_id: int | None,
    eos_token_id: int | list[int] | None = None,
    max_new_tokens: int | None = None,
) -> dict[str, Any]:
    """Keyword arguments of HF ``generate`` for ``sampling``: greedy at temperature 0, else
    temperature, top-p and top-k (-1: off). ``eos_token_id`` (None: the model's generation
    config decides) and ``max_new_tokens`` (None: ``sampling.max_new_tokens``) as given."""
    greedy = sampling.temperature == 0
    kwargs: dict[str, Any] = dict(
        max_new_tokens=sampling.max_new_tokens if max_new_tokens is None else max_new_tokens,
        do_sample=not greedy,
        pad_token_id=pad_token_id,
    )
    if eos_token_id is not None:
        kwargs["eos_token_id"] = eos_token_id
    if not greedy:
        kwargs.update(
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            top_k=sampling.top_k if sampling.top_k > 0 else None,
        )
    return kwargs
