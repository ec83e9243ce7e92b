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
import re
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


# ------------------------------------------------------------------ the route checker


def _next_lines(pairs: list[tuple[int, int]], known: list[int]) -> list[tuple[str, tuple]]:
    """Every valid next line of a route in state (pairs not yet multiplied, values not yet
    added), each with the state it leads to; ``("\\\\boxed{N}", None)`` ends the route."""
    lines: list[tuple[str, tuple]] = []
    for i, (a, b) in enumerate(pairs):
        rest = pairs[:i] + pairs[i + 1 :]
        lines.append((f"{a}*{b}={a * b}", (rest, [*known, a * b])))
        # the fused shortcut (two products and their sum on one line, toy/examples.py's
        # position-premise dial): valid arithmetic, so a correct one is not an error
        for j, (c, d) in enumerate(rest):
            fused = (
                f"{a}*{b}+{c}*{d}={a * b + c * d}",
                (rest[:j] + rest[j + 1 :], [*known, a * b + c * d]),
            )
            lines.append(fused)
    for i, x in enumerate(known):
        for j, y in enumerate(known):
            if i != j:
                rest = [v for k, v in enumerate(known) if k not in (i, j)]
                lines.append((f"{x}+{y}={x + y}", (pairs, [*rest, x + y])))
    if not pairs and len(known) == 1:
        lines.append((f"\\boxed{{{known[0]}}}", None))
    return lines


def first_error(problem: Problem, text: str, finished: bool = True) -> int | None:
    """Offset of the first character of ``text`` that no valid route can continue with.

    ``text`` is a think-closed completion: step lines (``a*b=c`` for a factor pair of the
    problem not yet multiplied, ``x+y=z`` for two values computed and not yet added,
    ``a*b+c*d=s`` for two pairs multiplied and added at once: the shortcut), then
    ``\\boxed{N}`` once every product is summed into one value ``N``. A wrong operand, a
    repeated or dropped term, a slip in arithmetic or an early box all make some character
    impossible; that character's offset is returned. ``None``: ``text`` is a valid route
    (``finished=True``) or a prefix of one (``finished=False``: a completion cut short).
    A finished completion that stops before its box is wrong at ``len(text)``.
    """
    pairs: list[tuple[int, int]] = list(problem.pairs)
    known: list[int] = []
    pos = 0
    while True:
        options = _next_lines(pairs, known)
        end = text.find("\n", pos)
        line = text[pos:] if end < 0 else text[pos:end]
        match = next((o for o in options if o[0] == line), None)
        if match is None:
            # the longest start of ``line`` that some valid line shares
            good = max((_common_prefix(line, o[0]) for o in options), default=0)
            if good == len(line) and end < 0 and not finished:
                return None  # cut short inside a valid line
            return pos + good
        if match[1] is None:  # the box ends the route: nothing may follow it
            return None if end < 0 else end
        if end < 0:  # a valid step with nothing after it
            return len(text) if finished else None
        pairs, known = match[1]
        pos = end + 1


def _common_prefix(a: str, b: str) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


STEP_RE = re.compile(r"^(\d+)([*+])(\d+)=(\d+)$")
FUSED_RE = re.compile(r"^(\d+)\*(\d+)\+(\d+)\*(\d+)=(\d+)$")


def consistent(text: str) -> bool:
    """Every line before the box is true arithmetic and the box holds the last line's result
    (whether or not the steps solve the problem): the answer follows from the steps written."""
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    if len(lines) < 2:
        return False
    box = re.fullmatch(r"\\boxed\{(\d+)\}", lines[-1].strip())
    if not box:
        return False
    last = None
    for line in lines[:-1]:
        f = FUSED_RE.match(line.strip())
        if f:  # the shortcut a*b+c*d=s
            a, b, c, d, z = (int(g) for g in f.groups())
            if z != a * b + c * d:
                return False
            last = z
            continue
        m = STEP_RE.match(line.strip())
        if not m:
            return False
        x, op, y, z = int(m[1]), m[2], int(m[3]), int(m[4])
        if z != (x * y if op == "*" else x + y):
            return False
        last = z
    return last == int(box[1])
