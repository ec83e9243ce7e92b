"""Pretraining regenerates a checkpoint and learns (issue 3, "Numbers and checks")."""

from __future__ import annotations

import json
import random
from dataclasses import asdict
from pathlib import Path

import pytest
from safetensors.torch import load_file

from pwopsd.config import SHORTCUT_SHARES, dial_profile_name, get_profile
from pwopsd.toy import check_checkpoint, task
from pwopsd.toy import tokenizer as toy_tokenizer
from pwopsd.toy.__main__ import main
from pwopsd.toy.examples import completion_text, make_example, redo_completion, tokenize_masked
from pwopsd.toy.pretrain import (
    FAMILY_SETTINGS,
    Mixture,
    PretrainConfig,
    build_tokenizer,
    family_config,
    pretrain,
)


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


@pytest.mark.parametrize("family", ["qwen3", "llama"])
def test_privileged_templates_continue_think_closed(tok, family) -> None:
    """Teacher and answer-only prompts (thinking on) go on like a student rollout: steps, box,
    end of turn, no think tags; the evaluation template still thinks."""
    hf = toy_tokenizer.wrap(tok, family)
    problem = task.Problem(((3, 4), (7, 2), (5, 3)))
    rng = random.Random(0)
    for kind in ("teacher", "answer"):
        text, spans = make_example(hf, kind, problem, rng)
        assert spans == []
        completion = text.split("<|im_start|>assistant\n")[-1].removeprefix("<think>\n")
        assert "<think>" not in completion and "</think>" not in completion
        assert task.first_error(problem, completion.removesuffix("<|im_end|>")) is None
    text, _ = make_example(hf, "eval", problem, rng)
    assert "</think>\n\n\\boxed{41}<|im_end|>" in text


def test_redo_example_masks_only_the_wrong_products(tok) -> None:
    hf = toy_tokenizer.wrap(tok, "llama")
    problem = task.Problem(((3, 4), (7, 2), (5, 3)))
    rng = random.Random(0)
    for _ in range(20):
        text, spans = make_example(hf, "answer", problem, rng, Mixture(answer_redo_share=1.0))
        completion = text.split("<think>\n")[-1].removesuffix("<|im_end|>")
        lines = completion.splitlines()
        assert len(lines) == 2 * problem.n_steps + 1  # two passes and the box
        first_total = int(lines[problem.n_steps - 1].split("=")[1])
        assert first_total != problem.answer and lines[-1] == "\\boxed{41}"
        assert task.consistent(completion)
        masked = [text[a:b] for a, b in spans]
        assert len(masked) == 2 and all(m in lines[: problem.n_steps] for m in masked)
        assert all(task.first_error(problem, m, finished=False) is not None for m in masked)
        ids, learn = tokenize_masked(hf, text, spans)
        assert ids == hf(text, add_special_tokens=False)["input_ids"]
        assert hf.decode([i for i, keep in zip(ids, learn, strict=True) if not keep]) == "".join(
            masked
        )
    # A problem with no swap that changes the total gets no redo.
    assert redo_completion(task.Problem(((3, 4), (3, 2))), rng) is None


def test_derailed_teacher_example_boxes_the_reference_answer(tok) -> None:
    hf = toy_tokenizer.wrap(tok, "qwen3")
    problem = task.Problem(((3, 4), (7, 2), (5, 3)))
    rng = random.Random(1)
    for _ in range(20):
        text, spans = make_example(hf, "teacher", problem, rng, Mixture(teacher_derail_share=1.0))
        completion = text.split("<|im_start|>assistant\n")[-1].removesuffix("<|im_end|>")
        lines = completion.splitlines()
        assert len(lines) == problem.n_steps + 1 and lines[-1] == "\\boxed{41}"
        assert int(lines[-2].split("=")[1]) != problem.answer  # the steps reach a wrong total
        assert not task.consistent(completion)  # ... and the box holds the reference answer
        masked = [text[a:b] for a, b in spans]
        assert len(masked) == 2 and all(task.first_error(problem, m) is not None for m in masked)


@pytest.mark.parametrize("kind", ["student", "eval"])
def test_slipped_student_example_boxes_its_own_wrong_total(tok, kind) -> None:
    """The student templates' noisy share: two factors swapped, summed consistently, the wrong
    total boxed, and all of it learned (no masked span)."""
    hf = toy_tokenizer.wrap(tok, "qwen3")
    problem = task.Problem(((3, 4), (7, 2), (5, 3)))
    rng = random.Random(2)
    for _ in range(20):
        text, spans = make_example(hf, kind, problem, rng, Mixture(student_slip_share=1.0))
        assert spans == []
        completion = text.split("</think>\n\n")[-1].removesuffix("<|im_end|>")
        if kind == "eval":  # the steps sit inside the think block, the box after it
            steps = text.split("<|im_start|>assistant\n")[-1].split("</think>")[0]
            completion = steps.removeprefix("<think>\n") + completion
        assert task.consistent(completion)
        boxed = int(completion.splitlines()[-1].removeprefix("\\boxed{").removesuffix("}"))
        assert boxed != problem.answer
        assert task.first_error(problem, completion) is not None


def test_mixture_shares_are_fractions() -> None:
    with pytest.raises(ValueError, match="student_slip_share"):
        Mixture(student_slip_share=1.5)


def test_privileged_examples_never_learn_a_wrong_step(tok) -> None:
    """Under the real mixture, every learned line of a teacher or answer-only completion is a
    line some valid route could write (wrong lines are masked); slips are student-only."""
    hf = toy_tokenizer.wrap(tok, "llama")
    rng = random.Random(3)
    mix = Mixture()
    for _ in range(60):
        problem = task.Problem(((3, 4), (7, 2), (5, 3)))
        for kind in ("teacher", "answer"):
            text, spans = make_example(hf, kind, problem, rng, mix)
            start = text.rindex("<|im_start|>assistant\n") + len("<|im_start|>assistant\n")
            pos = start
            for line in text[start:].removesuffix("<|im_end|>").split("\n"):
                masked = any(a <= pos and pos + len(line) <= b for a, b in spans)
                if line and line != "<think>" and not masked and "*" in line:
                    assert line in {"3*4=12", "7*2=14", "5*3=15"}, line
                pos += len(line) + 1


def test_family_config_applies_family_settings_then_overrides() -> None:
    llama = family_config("llama")
    assert llama.lr == FAMILY_SETTINGS["llama"]["lr"] != PretrainConfig.lr
    assert llama.mix.reference_route_share == FAMILY_SETTINGS["llama"]["reference_route_share"]
    assert llama.mix.student_slip_share == Mixture().student_slip_share
    assert family_config("qwen3").lr == PretrainConfig.lr
    # A given override wins over the family's setting; None means "keep the family's".
    tuned = family_config("llama", lr=5e-4, reference_route_share=None, steps=7)
    assert (tuned.lr, tuned.steps, tuned.mix.reference_route_share) == (5e-4, 7, 0.4)
    with pytest.raises(ValueError, match="family='gpt2'"):
        family_config("gpt2")
    with pytest.raises(ValueError, match="retrace_share"):
        family_config("qwen3", retrace_share=0.5)


def test_shipped_checkpoints_were_trained_with_their_family_config() -> None:
    """`make toy-models` regenerates what is shipped: each pretrain_log.json records the config
    family_config gives today (step-exact, seeded)."""
    for family, path in get_profile("toy").models.items():
        log = json.loads((Path(path) / "pretrain_log.json").read_text())
        expected = asdict(family_config(family))
        # Trained before the position-premise dial existed: share 0 draws nothing extra from
        # the stream, so the checkpoint is what family_config gives today.
        assert expected["mix"].pop("teacher_shortcut_share") == 0.0
        assert log["config"] == expected, family
        assert log["steps_done"] == log["config"]["steps"], family
    # The dial's checkpoints: qwen3's config with only the shortcut share changed.
    for share in SHORTCUT_SHARES:
        path = Path(get_profile(dial_profile_name(share)).models["qwen3"])
        log = json.loads((path / "pretrain_log.json").read_text())
        assert log["config"] == asdict(family_config("qwen3", teacher_shortcut_share=share))
        assert log["steps_done"] == log["config"]["steps"]


def test_cli_refuses_a_bad_setting_before_training(tmp_path, capsys) -> None:
    with pytest.raises(SystemExit):
        main(["pretrain", "--family", "qwen3", "--lr", "0", "--out", str(tmp_path)])
    assert "--lr" in capsys.readouterr().err
    with pytest.raises(ValueError, match="student_slip_share"):
        main(["pretrain", "--family", "all", "--student-slip-share", "2", "--out", str(tmp_path)])
    assert not any(tmp_path.iterdir())  # nothing trained or written
