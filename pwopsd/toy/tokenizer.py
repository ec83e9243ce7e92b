"""The toy tokenizer and chat templates (issue 3, "Deliver" 2).

A real Hugging Face fast tokenizer (``tokenizers`` byte-level BPE, digits split one per
token so arithmetic stays digit-wise, except a second factor, which is one token with its ``*``:
see :data:`FACTOR_TOKENS`) trained on the toy corpus rendered through the
templates. The prompt's long fixed strings (PROTOCOL section 3's reason line, the teacher
instruction, the reference markers) are added tokens, one token each: they are constant,
so spelling them out would only cost training compute.

Two chat templates, both with Qwen3's turn format (``<|im_start|>role\\n...<|im_end|>``) and
``<think>...</think>`` tags:

* ``QWEN3_TEMPLATE`` honours ``enable_thinking`` like Qwen3: with thinking off the
  generation prompt carries an empty, closed think block;
* ``ALWAYS_THINK_TEMPLATE`` ignores the flag and always opens ``<think>`` (like
  DeepSeek-R1-Distill and Olmo-3-Think), so ``pwopsd.prompts.render`` must close it
  ("think-closure"). The "llama" and "olmo3" toy families use it.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from pwopsd import prompts

IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
PAD = "<|endoftext|>"
SPECIAL_TOKENS = (PAD, IM_START, IM_END)
"""Control tokens (skipped when decoding with skip_special_tokens)."""

PHRASE_TOKENS = (
    prompts.THINK_OPEN,
    prompts.THINK_CLOSE,
    prompts.REASON_LINE,
    prompts.TEACHER_INSTRUCTION,
    prompts.ANSWER_INSTRUCTION,
    prompts.SOLUTION_BEGIN,
    prompts.SOLUTION_END,
    prompts.ANSWER_BEGIN,
    prompts.ANSWER_END,
    "Problem:",
)
"""Added, non-special tokens: kept in decoded text (Qwen3 treats its think tags the same way)."""

FACTOR_TOKENS = tuple(f"*{d}" for d in range(10))
"""``*`` and the second factor as one token (toy world v3). With ``*`` on its own, writing the
partner of a first factor needs a two-token lookup (``a`` then ``*``) that the 1M-parameter
models never learned sharply in their budget: every family mixed up factor pairs between
terms, and the privileged teacher could not copy its reference's lines either. As one token,
the partner is what follows ``a`` in the problem (or the reference): a one-token induction."""

VOCAB_SIZE = 384
"""Byte alphabet (256) + BPE merges + added tokens."""

_TURNS = (
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' -}}"
    "{%- endfor -%}"
)

QWEN3_TEMPLATE = (
    _TURNS + "{%- if add_generation_prompt -%}"
    "{{- '<|im_start|>assistant\\n' -}}"
    "{%- if enable_thinking is defined and enable_thinking is false -%}"
    "{{- '<think>\\n\\n</think>\\n\\n' -}}"
    "{%- endif -%}"
    "{%- endif -%}"
)
"""Qwen3-like: thinking on by default; ``enable_thinking=False`` pre-fills an empty think block."""

ALWAYS_THINK_TEMPLATE = (
    _TURNS
    + "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n<think>\\n' -}}{%- endif -%}"
)
"""R1-Distill / Olmo-3-Think-like: always opens a think block, ignores ``enable_thinking``."""

FAMILY_TEMPLATES = {
    "qwen3": QWEN3_TEMPLATE,
    "llama": ALWAYS_THINK_TEMPLATE,
    "olmo3": ALWAYS_THINK_TEMPLATE,
}


def train_tokenizer(texts: Iterable[str], vocab_size: int = VOCAB_SIZE) -> Tokenizer:
    """Byte-level BPE trained on ``texts``; digits are always single tokens."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - len(SPECIAL_TOKENS) - len(PHRASE_TOKENS) - len(FACTOR_TOKENS),
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    # Added after training: training would reassign the ids of tokens added before it.
    tok.add_tokens(list(PHRASE_TOKENS) + list(FACTOR_TOKENS))
    return tok


def wrap(tok: Tokenizer, family: str) -> PreTrainedTokenizerFast:
    """The HF tokenizer of one family: ``tok`` plus the family's chat template."""
    if family not in FAMILY_TEMPLATES:
        raise ValueError(f"family={family!r} is not known; allowed: {sorted(FAMILY_TEMPLATES)}")
    hf = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=IM_END,
        pad_token=PAD,
        unk_token=None,
        bos_token=None,
        clean_up_tokenization_spaces=False,
        model_max_length=1024,
    )
    hf.chat_template = FAMILY_TEMPLATES[family]
    return hf


def save(hf: PreTrainedTokenizerFast, out_dir: str | Path) -> None:
    hf.save_pretrained(str(out_dir))
