"""Pretraining regenerates a checkpoint and learns (issue 3, "Numbers and checks")."""

from __future__ import annotations

import json

import pytest
from safetensors.torch import load_file

from pwopsd.toy import check_checkpoint
from pwopsd.toy.pretrain import PretrainConfig, build_tokenizer, completion_text, pretrain


@pytest.fixture(scope="module")
def tok():
    return build_tokenizer()


def test_short_schedule_lowers_the_loss_and_writes_a_loadable_checkpoint(tmp_path, tok) -> None:
    cfg = PretrainConfig(family="qwen3", steps=40, minutes=30.0, batch_size=16, warmup_steps=5)
    log = pretrain(cfg, tmp_path / "toy-qwen3", tok)
    losses = log["losses"]
    assert log["steps_done"] == len(losses) == 40
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < 0.7 * first, f"loss did not fall: {first:.3f} -> {last:.3f}"
    check_checkpoint(tmp_path / "toy-qwen3")
    written = json.loads((tmp_path / "toy-qwen3" / "pretrain_log.json").read_text())
    assert written["steps_done"] == 40 and "losses" not in written


def test_fixed_seed_gives_identical_weights(tmp_path, tok) -> None:
    cfg = PretrainConfig(family="llama", steps=3, minutes=30.0, batch_size=4, warmup_steps=1)
    pretrain(cfg, tmp_path / "a" / "toy-llama", tok)
    pretrain(cfg, tmp_path / "b" / "toy-llama", tok)
    a = load_file(tmp_path / "a" / "toy-llama" / "model.safetensors")
    b = load_file(tmp_path / "b" / "toy-llama" / "model.safetensors")
    assert a.keys() == b.keys()
    assert all((a[k] == b[k]).all() for k in a)


def test_completion_follows_the_prompt_ending() -> None:
    steps, answer = ["3*4=12"], 12
    closed = completion_text("...assistant\n<think>\n\n</think>\n\n", steps, answer)
    assert closed == "3*4=12\n\\boxed{12}<|im_end|>"
    opened = completion_text("...assistant\n<think>\n", steps, answer)
    assert opened == "3*4=12\n</think>\n\n\\boxed{12}<|im_end|>"
    fresh = completion_text("...assistant\n", steps, answer)
    assert fresh == "<think>\n3*4=12\n</think>\n\n\\boxed{12}<|im_end|>"
