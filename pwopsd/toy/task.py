"""The toy reasoning task: sums of products, solved step by step (issue 3, "Deliver" 1).

A problem is ``Compute 3*4+7*2+5*3.``: ``k`` products of small factors, added up. A worked
solution computes every product (one step each) and then adds them (``k - 1`` steps), so a
problem has ``2k - 1`` steps and an integer answer written as ``\\boxed{N}``:

    5*3=15
    3*4=12
    15+12=27
    7*2=14
    27+14=41
    \\boxed{41}

Why this task:

* benign diversity: the products may be computed in any order and each partial sum may be
  taken as soon as its product is known, so many step orders reach the same answer;
* derailing steps: every step's result feeds a later one, so one wrong early product or
  sum makes the final answer wrong;
* a difficulty knob: the number of terms ``k`` (steps) and the largest factor.

Everything is drawn from a ``random.Random(seed)``, so each split is deterministic.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Difficulty:
    """How hard a split is: term count range (inclusive) and the largest factor."""

    min_terms: int
    max_terms: int
    max_factor: int = 9

    def __post_init__(self) -> None:
        if not 1 <= self.min_terms <= self.max_terms:
            raise ValueError(f"need 1 <= min_terms <= max_terms; got {self}")
        if self.max_factor < 2:
            raise ValueError(f"max_factor={self.max_factor} must be >= 2")


@dataclass(frozen=True)
class Problem:
    """One problem: its factor pairs, text and answer."""

    pairs: tuple[tuple[int, int], ...]

    @property
    def text(self) -> str:
        return "Compute " + "+".join(f"{a}*{b}" for a, b in self.pairs) + "."

    @property
    def answer(self) -> int:
        return sum(a * b for a, b in self.pairs)

    @property
    def n_steps(self) -> int:
        return 2 * len(self.pairs) - 1


def sample_problem(rng: random.Random, difficulty: Difficulty) -> Problem:
    k = rng.randint(difficulty.min_terms, difficulty.max_terms)
    pairs = tuple(
        (rng.randint(1, difficulty.max_factor), rng.randint(2, difficulty.max_factor))
        for _ in range(k)
    )
    return Problem(pairs)


def solution_steps(problem: Problem, rng: random.Random | None = None) -> list[str]:
    """The step lines of one valid route; ``rng`` picks the route (None: canonical order).

    Canonical route: products left to right, then the running sum left to right. A random
    route permutes the products and, after each product, adds it to the running sum with
    probability 1/2 (any deferred sums are taken at the end, in order).
    """
    order = list(range(len(problem.pairs)))
    if rng is not None:
        rng.shuffle(order)
    steps: list[str] = []
    total: int | None = None
    pending: list[int] = []  # products computed but not yet added
    for idx in order:
        a, b = problem.pairs[idx]
        steps.append(f"{a}*{b}={a * b}")
        pending.append(a * b)
        if rng is not None and rng.random() < 0.5:
            total, pending = _add_all(total, pending, steps)
    total, _ = _add_all(total, pending, steps)
    assert total == problem.answer
    return steps


def _add_all(total: int | None, pending: list[int], steps: list[str]) -> tuple[int | None, list]:
    for value in pending:
        if total is None:
            total = value
        else:
            steps.append(f"{total}+{value}={total + value}")
            total += value
    return total, []


def format_solution(steps: list[str], answer: int) -> str:
    """A worked solution: one step per line, then ``\\boxed{answer}``."""
    return "\n".join([*steps, f"\\boxed{{{answer}}}"])


def make_rows(
    n: int,
    difficulty: Difficulty,
    seed: int,
    prefix: str,
    diverse: bool,
    exclude: set[str] = frozenset(),
) -> list[dict[str, str]]:
    """``n`` distinct problems as benchmark rows ``{id, problem, answer, solution}``.

    ``diverse=True`` draws a random route for each reference solution (training corpus);
    held-out sets use the canonical route. Problems whose text is in ``exclude`` are skipped.
    """
    rng = random.Random(seed)
    rows: list[dict[str, str]] = []
    seen: set[str] = set(exclude)
    while len(rows) < n:
        problem = sample_problem(rng, difficulty)
        if problem.text in seen:
            continue
        seen.add(problem.text)
        steps = solution_steps(problem, rng if diverse else None)
        rows.append(
            {
                "id": f"{prefix}-{len(rows):05d}",
                "problem": problem.text,
                "answer": str(problem.answer),
                "solution": format_solution(steps, problem.answer),
            }
        )
    return rows


def parse_problem(text: str) -> Problem:
    """Inverse of :attr:`Problem.text` (lets the pretraining mix re-draw routes)."""
    if not (text.startswith("Compute ") and text.endswith(".")):
        raise ValueError(f"not a toy problem: {text!r}")
    body = text[len("Compute ") : -1]
    pairs = tuple(tuple(int(x) for x in term.split("*")) for term in body.split("+"))
    if any(len(p) != 2 for p in pairs):
        raise ValueError(f"not a toy problem: {text!r}")
    return Problem(pairs)  # type: ignore[arg-type]
