"""The book's worked example: its numbers are the loss's numbers, recomputed here independently.

One rollout of the shipped toy checkpoint (a few seconds on a CPU). The per-token clipped forward
KL is recomputed in float64 from logits of a forward pass built here without the training
loop's alignment helpers; w(u) from its formula; the first wrong token from the route checker.
"""

from __future__ import annotations

import math

import matplotlib
import pytest
import torch

from pwopsd import worked_example as we
from pwopsd.config import get_profile
from pwopsd.toy import task
from pwopsd.vocab import SCHEDULES

matplotlib.use("Agg")


@pytest.fixture(scope="module")
def example() -> we.WorkedExample:
    return we.worked_example()


@pytest.fixture(scope="module")
def model_and_tok() -> tuple:
    tok, model = we.load_model(get_profile("toy").models[we.FAMILY])
    return model, tok


def _completion_logits(model, tok, prompt: str, completion: list[int]) -> torch.Tensor:
    """[T, V] logits predicting each completion token after ``prompt``: one unpadded pass."""
    prompt_ids = tok(prompt, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([prompt_ids + completion])  # [1, P + T]
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0]  # [P + T, V]
    return logits[len(prompt_ids) - 1 : len(prompt_ids) - 1 + len(completion)]  # [T, V]


def test_settings_are_the_toy_training_ones(example):
    train = get_profile("toy").train
    assert example.temperature == train.distill_temperature
    assert example.tau_clip == train.tau_clip
    assert example.schedule == SCHEDULES["moderate"]


def test_the_rule_picks_a_finished_rollout_with_a_wrong_step(example, model_and_tok):
    assert example.finished and example.completion[-1] == model_and_tok[1].eos_token_id
    assert example.first_wrong is not None
    assert 1 <= example.scanned <= we.SCAN
    problem = task.parse_problem(example.row["problem"])
    assert task.first_error(problem, example.rollout) is not None
    n = len(example.completion)
    assert len(example.tokens) == len(example.kl) == len(example.weights) == len(example.steps) == n


def test_per_token_kl_is_the_clipped_forward_kl_in_float64(example, model_and_tok):
    model, tok = model_and_tok
    comp = list(example.completion)
    s = _completion_logits(model, tok, example.student_prompt, comp).double()  # [T, V]
    t = _completion_logits(model, tok, example.teacher_prompt, comp).double()  # [T, V]
    temp, tau = example.temperature, example.tau_clip
    log_s = torch.log_softmax(s / temp, dim=-1)  # [T, V]
    log_t = torch.log_softmax(t / temp, dim=-1)  # [T, V]
    f = log_t.exp() * (log_t - log_s)  # [T, V]: p_T,v (log p_T,v - log p_S,v)
    expected = f.clamp(max=tau).sum(-1)  # [T]: each entry capped before the sum
    assert torch.allclose(torch.tensor(example.kl, dtype=torch.float64), expected, atol=1e-5)
    # the clip is active somewhere on this rollout: without it the values differ
    assert not torch.allclose(f.sum(-1), expected, atol=1e-5)


def test_losses_are_the_means_of_the_per_token_terms(example):
    n = len(example.kl)
    weighted = sum(w * k for w, k in zip(example.weights, example.kl, strict=True))
    assert example.opsd_loss == pytest.approx(sum(example.kl) / n, rel=1e-5, abs=1e-7)
    assert example.pw_opsd_loss == pytest.approx(weighted / n, rel=1e-5, abs=1e-7)
    summary = we.summary(example)
    assert summary["total_pw_opsd"] == pytest.approx(weighted)
    cut = example.first_wrong
    assert summary["before_opsd"] + summary["from_wrong_opsd"] == pytest.approx(sum(example.kl))
    assert summary["before_opsd"] == pytest.approx(sum(example.kl[:cut]), abs=1e-12)


def test_position_weights_follow_the_moderate_schedule(example):
    w_min, c, s = example.schedule
    n = len(example.weights)
    for i, w in enumerate(example.weights, start=1):
        u = (i - 0.5) / n
        assert w == pytest.approx(w_min + (1 - w_min) / (1 + math.exp(-(u - c) / s)), abs=1e-6)
        assert w_min <= w <= 1.0
    assert all(b > a for a, b in zip(example.weights, example.weights[1:]))


def test_first_wrong_token_on_a_constructed_rollout(model_and_tok):
    from pwopsd.toy.teacher_signal import token_index_of_char  # the teacher-signal's mapping

    _, tok = model_and_tok
    row = {"problem": "Compute 2*3+4*5.", "answer": "26"}
    eos = [tok.eos_token_id]
    wrong = "2*3=6\n4*5=21\n6+21=27\n\\boxed{27}"
    ids = tok(wrong, add_special_tokens=False)["input_ids"]
    found = we.locate(tok, row, ids + eos, finished=True)
    offset = task.first_error(task.parse_problem(row["problem"]), wrong)
    assert wrong[offset] == "1"  # "4*5=2" is a valid start; "21" is not 4*5
    assert found["first_wrong"] == token_index_of_char(tok, ids, offset)
    assert tok.decode([ids[found["first_wrong"]]]).endswith("1")
    assert found["steps"][found["first_wrong"]] == 2
    assert found["answer"] == "27"
    assert found["steps"][-1] is None and found["steps"][0] == 1
    right = "2*3=6\n4*5=20\n6+20=26\n\\boxed{26}"
    ok = we.locate(tok, row, tok(right, add_special_tokens=False)["input_ids"] + eos, True)
    assert ok["first_wrong"] is None and ok["answer"] == "26"
    unboxed = tok("2*3=6\n4*5=20\n6+20=26", add_special_tokens=False)["input_ids"]
    cut = we.locate(tok, row, unboxed + eos, finished=True)
    assert cut["first_wrong"] == len(unboxed)  # ends before its box: the end-of-turn token


def test_deterministic_across_calls(example):
    assert we.worked_example() == example


def test_table_explanation_and_figure(example):
    frame = we.token_frame(example)
    assert len(frame) == len(example.kl)
    assert all("_" not in c for c in frame.columns)
    flagged = frame["Token"].str.contains("first wrong")
    assert flagged.sum() == 1 and flagged.iloc[example.first_wrong]
    boxed = [i for i, s in enumerate(example.steps) if s is None]
    assert (frame["Step"].iloc[boxed] == "-").all()
    text = we.explain(example)
    for number in (f"{example.opsd_loss:.4f}", f"{example.pw_opsd_loss:.4f}"):
        assert number in text
    assert f"#{example.first_wrong + 1}" in text
    fig = we.plot_worked_example(example)
    assert len(fig.axes) == 2 and len(fig.legends) == 1
    assert all(ax.get_legend() is None for ax in fig.axes)  # the legend sits outside the axes
