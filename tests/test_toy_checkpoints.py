"""The shipped toy checkpoints: tokenizer, chat templates, model configs, bad paths (issue 3)."""

from __future__ import annotations

import shutil

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from pwopsd import prompts
from pwopsd.config import get_profile
from pwopsd.toy import CheckpointError, check_checkpoint
from pwopsd.toy.tokenizer import IM_END, PHRASE_TOKENS
from pwopsd.vocab import FAMILIES

PATHS = get_profile("toy").models
ARCHS = {"qwen3": "Qwen3ForCausalLM", "llama": "LlamaForCausalLM", "olmo3": "Olmo3ForCausalLM"}
PROBLEM = "Compute 3*4+7*2."
SOLUTION = "3*4=12\n7*2=14\n12+14=26\n\\boxed{26}"


@pytest.fixture(scope="module", params=FAMILIES)
def family(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def tok(family):
    return AutoTokenizer.from_pretrained(check_checkpoint(PATHS[family]))


def test_tokenizer_round_trips_and_keeps_digits_apart(tok) -> None:
    text = prompts.teacher_prompt(tok, PROBLEM, SOLUTION)
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == text
    pieces = tok.convert_ids_to_tokens(tok("12+14=26", add_special_tokens=False)["input_ids"])
    assert pieces == ["1", "2", "+", "1", "4", "=", "2", "6"]
    for phrase in PHRASE_TOKENS:  # fixed template strings are one token each
        assert len(tok(phrase, add_special_tokens=False)["input_ids"]) == 1
    assert tok.eos_token == IM_END
    assert tok.pad_token_id != tok.eos_token_id


def test_chat_template_thinking_flag(family, tok) -> None:
    on = prompts.render(tok, prompts.eval_text(PROBLEM), enable_thinking=True)
    off = prompts.render(tok, prompts.student_text(PROBLEM), enable_thinking=False)
    assert on.startswith("<|im_start|>user\n") and "<|im_end|>\n<|im_start|>assistant\n" in on
    # Every family's student prompt ends in a closed, empty think block...
    assert off.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    raw_off = tok.apply_chat_template(
        [{"role": "user", "content": "x"}],
        tokenize=False,
        add_generation_prompt=True,
        enable_thinking=False,
    )
    if family == "qwen3":
        # ...which Qwen3's template writes itself, and thinking on leaves the tag to the model.
        assert raw_off.endswith("</think>\n\n")
        assert on.endswith("assistant\n")
    else:
        # ...while R1-Distill/Olmo-3-Think-like templates ignore the flag: render() closes it.
        assert raw_off.endswith("<think>\n")
        assert on.endswith("assistant\n<think>\n")


def test_model_config_and_size(family) -> None:
    model = AutoModelForCausalLM.from_pretrained(PATHS[family], dtype=torch.float32)
    cfg = model.config
    assert cfg.architectures == [ARCHS[family]]
    assert cfg.hidden_size // cfg.num_attention_heads == 64 and getattr(cfg, "head_dim", 64) == 64
    assert cfg.max_position_embeddings >= 1024
    assert sum(p.numel() for p in model.parameters()) <= 5_000_000
    assert next(model.parameters()).dtype == torch.float32


def test_missing_checkpoint_names_path_and_fix(tmp_path) -> None:
    missing = tmp_path / "toy-llama"
    with pytest.raises(CheckpointError) as err:
        check_checkpoint(missing)
    msg = str(err.value)
    assert str(missing) in msg and "python -m pwopsd.toy pretrain --family llama" in msg


@pytest.mark.parametrize("damage", ["truncate_weights", "drop_tokenizer", "garble_config"])
def test_corrupt_checkpoint_names_path_and_fix(tmp_path, damage) -> None:
    broken = tmp_path / "toy-qwen3"
    shutil.copytree(PATHS["qwen3"], broken)
    if damage == "truncate_weights":
        data = (broken / "model.safetensors").read_bytes()
        (broken / "model.safetensors").write_bytes(data[:100])
    elif damage == "drop_tokenizer":
        (broken / "tokenizer.json").unlink()
    else:
        (broken / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError) as err:
        check_checkpoint(broken)
    msg = str(err.value)
    assert str(broken) in msg and "pwopsd.toy pretrain --family qwen3" in msg
