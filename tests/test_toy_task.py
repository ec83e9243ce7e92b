"""The toy task and its data files (issue 3, "Deliver" 1)."""

from __future__ import annotations

import json
import random
import re

import pytest

from pwopsd.config import TOY_DATA_DIR, get_profile
from pwopsd.evaluate import extract_answer, is_correct
from pwopsd.toy import build_data, task
from pwopsd.vocab import TOY_BENCHMARKS

STEP = re.compile(r"^(\d+)([*+])(\d+)=(\d+)$")


def _check_route(problem: task.Problem, steps: list[str]) -> None:
    """Every step is true arithmetic, uses only known values, and the last value is the answer."""
    products = sorted(a * b for a, b in problem.pairs)
    known: list[int] = []
    made_products = []
    for line in steps:
        m = STEP.match(line)
        assert m, line
        x, op, y, z = int(m[1]), m[2], int(m[3]), int(m[4])
        assert z == (x * y if op == "*" else x + y), line
        if op == "*":
            assert (x, y) in problem.pairs
            made_products.append(z)
        else:
            assert x in known and y in known, f"{line} adds a value not yet computed"
            known.remove(x)
            known.remove(y)
        known.append(z)
    assert sorted(made_products) == products
    assert known == [problem.answer]


def test_routes_are_valid_and_diverse() -> None:
    rng = random.Random(0)
    problem = task.Problem(((3, 4), (7, 2), (5, 3), (2, 9)))
    routes = set()
    for _ in range(200):
        steps = task.solution_steps(problem, rng)
        _check_route(problem, steps)
        assert len(steps) == problem.n_steps == 7
        routes.add(tuple(steps))
    # Benign diversity: many distinct valid step orders reach the same answer.
    assert len(routes) > 20
    _check_route(problem, task.solution_steps(problem))


def _replay(steps: list[str], first_result: int) -> int:
    """Carry out a route, but with its first step's result replaced (an early slip)."""
    values: list[tuple[int, int]] = []  # (value as written in the route, value as computed)

    def take(written: int) -> int:
        i = next(i for i, (w, _) in enumerate(values) if w == written)
        return values.pop(i)[1]

    for i, line in enumerate(steps):
        x, op, y, z = STEP.match(line).groups()
        if op == "*":
            computed = int(x) * int(y) if i else first_result
        else:
            computed = take(int(x)) + take(int(y))
        values.append((int(z), computed))
    assert len(values) == 1
    return values[0][1]


def test_an_early_wrong_step_derails_the_answer() -> None:
    rows = _read(TOY_DATA_DIR / "toy_aime24.jsonl")
    for r in rows[:20]:
        steps = r["solution"].splitlines()[:-1]
        right = int(STEP.match(steps[0])[4])
        assert _replay(steps, right) == int(r["answer"])
        derailed = _replay(steps, right + 1)
        assert not is_correct(str(derailed), r["answer"])


def test_parse_problem_round_trips_and_rejects_junk() -> None:
    p = task.Problem(((3, 4), (7, 2)))
    assert task.parse_problem(p.text) == p
    with pytest.raises(ValueError, match="not a toy problem"):
        task.parse_problem("What is 2+2?")


def test_difficulty_rejects_bad_knobs() -> None:
    with pytest.raises(ValueError):
        task.Difficulty(3, 2)
    with pytest.raises(ValueError):
        task.Difficulty(1, 2, max_factor=1)


def _read(path) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f]


def test_shipped_data_matches_the_generator(tmp_path) -> None:
    counts = build_data.build(tmp_path)
    assert counts["train"] == build_data.TRAIN_SIZE
    assert counts[build_data.VAL_NAME] == build_data.EVAL_SIZE
    for name in (*TOY_BENCHMARKS, build_data.VAL_NAME, "train"):
        shipped = TOY_DATA_DIR / f"{name}.jsonl"
        assert shipped.read_bytes() == (tmp_path / f"{name}.jsonl").read_bytes(), (
            f"{shipped} differs from `python -m pwopsd.toy data`"
        )


def test_benchmark_rows_grade_correct_and_rise_in_difficulty() -> None:
    profile = get_profile("toy")
    assert [b.name for b in profile.benchmarks] == list(TOY_BENCHMARKS)
    eval_texts = set()
    mean_steps = []
    for spec in profile.benchmarks:
        rows = _read(spec.source)
        assert len(rows) == build_data.EVAL_SIZE
        assert len({r["id"] for r in rows}) == len(rows)
        steps = []
        for r in rows:
            assert set(r) == {"id", "problem", "answer", "solution"}
            assert r["solution"].endswith(f"\\boxed{{{r['answer']}}}")
            assert extract_answer(r["solution"]) == r["answer"]
            problem = task.parse_problem(r["problem"])
            assert str(problem.answer) == r["answer"]
            _check_route(problem, r["solution"].splitlines()[:-1])
            steps.append(problem.n_steps)
            eval_texts.add(r["problem"])
        mean_steps.append(sum(steps) / len(steps))
        assert is_correct(rows[0]["answer"], rows[0]["answer"])
    assert mean_steps == sorted(mean_steps) and mean_steps[0] < mean_steps[-1]
    train = {r["problem"] for r in _read(profile.train_data)}
    val = {r["problem"] for r in _read(TOY_DATA_DIR / f"{build_data.VAL_NAME}.jsonl")}
    assert not eval_texts & train, "held-out problems leak into train"
    assert not val & train and not val & eval_texts, "the validation set overlaps another split"
    assert eval_texts == build_data.eval_problem_texts()
    assert eval_texts | val == build_data.heldout_problem_texts()


PROBLEM = task.Problem(((3, 4), (7, 2), (5, 3)))


def test_first_error_accepts_every_valid_route() -> None:
    rng = random.Random(1)
    for _ in range(50):
        text = task.format_solution(task.solution_steps(PROBLEM, rng), PROBLEM.answer)
        assert task.first_error(PROBLEM, text) is None
        cut = text[: rng.randrange(len(text))]
        assert task.first_error(PROBLEM, cut, finished=False) is None


@pytest.mark.parametrize(
    ("text", "wrong_at"),
    [
        ("3*2=6", "3*|2=6"),  # wrong operand: 3 is paired with 4, not 2
        ("3*4=12\n3*4=12", "3*4=12\n|3*4=12"),  # repeated term
        ("3*4=13", "3*4=1|3"),  # arithmetic slip
        ("3*4=12\n7*2=14\n12+14=26\n\\boxed{26}", "3*4=12\n7*2=14\n12+14=26\n|\\boxed{26}"),
        ("3*4=12\n7*2=14\n12+15=27", "3*4=12\n7*2=14\n12+1|5=27"),  # adds an unknown value
        ("3*4=12\n7*2=14\n5*3=15\n12+14=26", "3*4=12\n7*2=14\n5*3=15\n12+14=26|"),  # stops
    ],
)
def test_first_error_points_at_the_first_impossible_character(text, wrong_at) -> None:
    assert task.first_error(PROBLEM, text) == wrong_at.index("|")


def test_consistent_checks_the_arithmetic_and_the_box_not_the_route() -> None:
    assert task.consistent("3*2=6\n7*4=28\n6+28=34\n\\boxed{34}")  # wrong route, consistent
    assert not task.consistent("3*2=6\n7*4=28\n6+28=34\n\\boxed{41}")  # copied box
    assert not task.consistent("3*2=7\n\\boxed{7}")  # arithmetic slip
    assert not task.consistent("\\boxed{41}")  # no worked steps
