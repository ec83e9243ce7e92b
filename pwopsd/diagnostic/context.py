"""What every phase of the diagnostic shares: the run :class:`Context` and token-id prompts.

* :class:`Context`: config, profile, scratch directory, the problems, and the lazily built
  sampling engine (phases A, E) and HF model (the teacher passes B, D), one at a time on a GPU;
* token helpers: a rendered prompt's ids, the forced-branch prompt of phase E;
* :func:`stream_ids`: token-id prompts through either backend's engine.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from pwopsd.config import DiagnosticConfig, Profile
from pwopsd.data import Problem
from pwopsd.diagnostic.teacher import valid_token_mask
from pwopsd.engine import make_engine as factory_engine
from pwopsd.sampling import SampleRequest, eos_token_ids

# --------------------------------------------------------------------------------------
# Tokens
# --------------------------------------------------------------------------------------


def prompt_ids(tokenizer: Any, text: str) -> list[int]:
    """Token ids of a rendered prompt (no extra special tokens: the template carries them)."""
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def continuation_prompt_ids(
    student_ids: list[int], spine: list[int], pos: int, child: int
) -> list[int]:
    """The forced branch: student prompt + spine[:pos] + child, as token ids (nothing else)."""
    if not 0 <= pos < len(spine):
        raise ValueError(f"pos={pos} outside the spine (length {len(spine)})")
    return [*student_ids, *spine[:pos], int(child)]


# --------------------------------------------------------------------------------------
# Engines: token-id prompts through the factory's engines
# --------------------------------------------------------------------------------------


def stream_ids(
    engine: Any, requests: list[tuple[Any, list[int], int]], sampling: Any
) -> Iterator[tuple[Any, Any]]:
    """Sample one continuation per ``(key, prompt token ids, seed)``; yield (key, Completion).

    vLLM takes the ids as a ``TokensPrompt``, so the prompt is exactly those tokens (no
    re-tokenisation of decoded text). The HF engine takes only strings, so for it the same
    ids go straight to its model's ``generate`` with the sample's seed, as
    :meth:`pwopsd.engine.HFEngine._sample` does for strings.
    """
    if engine.backend == "vllm":
        reqs = [
            SampleRequest(key, {"prompt_token_ids": list(ids)}, seed) for key, ids, seed in requests
        ]
        yield from engine.stream(reqs, sampling)
        return
    for key, ids, seed in requests:
        yield key, engine.sample_ids(ids, sampling, seed)


# --------------------------------------------------------------------------------------
# The run context
# --------------------------------------------------------------------------------------


@dataclass
class Context:
    """What every phase needs: config, profile, paths, the problems, lazy engine and model."""

    cfg: DiagnosticConfig
    profile: Profile
    scratch: Path
    problems: list[tuple[str, Problem]]
    make_engine: Callable[[], Any] | None = None
    log: Callable[[str], None] = print
    _engine: Any = None
    _model: Any = None
    _tokenizer: Any = None
    _mask: list[bool] | None = None

    @property
    def model_name(self) -> str:
        """The model under study (the profile's main model): student and teacher alike."""
        return self.profile.main_model

    def file(self, phase: str) -> Path:
        """The JSONL file of one phase ("A".."E") in the scratch directory."""
        return self.scratch / f"{phase}.jsonl"

    def engine(self) -> Any:
        """The sampling engine (phases A, E): ``make_engine()`` when given, else the factory's."""
        if self._engine is None:
            if self.make_engine is not None:
                self._engine = self.make_engine()
            else:
                self._engine = factory_engine(
                    self.cfg.backend, self.model_name, profile=self.profile, seed=self.cfg.seed
                )
        return self._engine

    @property
    def tokenizer(self) -> Any:
        """The model's tokenizer (loaded once)."""
        if self._tokenizer is None:
            self._tokenizer = AutoTokenizer.from_pretrained(self.model_name)
        return self._tokenizer

    def model(self) -> Any:
        """The HF model for the teacher passes (B, D); freed by :meth:`free_model`."""
        if self._model is None:
            if torch.cuda.is_available() and self._engine is not None:
                # vLLM holds most of the GPU: stop it while the teacher passes run (E
                # starts a fresh one). On CPU memory is plentiful and a restart costs ~30 s.
                self._engine.close()
                self._engine = None

            dtype = self.profile.engine.dtype
            net = AutoModelForCausalLM.from_pretrained(
                self.model_name, dtype=getattr(torch, dtype) if dtype != "auto" else "auto"
            )
            if torch.cuda.is_available():
                net = net.to("cuda")
            self._model = net.eval()
        return self._model

    def free_model(self) -> None:
        """Drop the HF model and give its GPU memory back (the engine needs it in phase E)."""
        if self._model is not None:
            self._model = None
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()

    def valid_mask(self) -> list[bool]:
        """Per vocabulary id: may it be a candidate's token or a forced child (teacher.py)."""
        if self._mask is None:
            net = self.model()
            self._mask = valid_token_mask(
                self.tokenizer,
                net.config.vocab_size,
                eos_token_ids(self.tokenizer, net.generation_config),
            )
        return self._mask

    def close(self) -> None:
        """Stop the engine and free the model."""
        if self._engine is not None:
            self._engine.close()
            self._engine = None
        self.free_model()


@contextlib.contextmanager
def few_threads(ctx: Context) -> Iterator[None]:
    """A toy model's matmuls are too small to split: one torch thread avoids contention."""
    n = torch.get_num_threads()
    small = sum(p.numel() for p in ctx.model().parameters()) < 50_000_000
    if small:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)
