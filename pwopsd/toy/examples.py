"""The pretraining stream of the toy checkpoints: what each training sequence looks like.

Each training sequence is one prompt rendered through ``pwopsd.prompts`` with the family's
own chat template, followed by a completion; :class:`Mixture` says which (toy world v4;
:data:`pwopsd.toy.pretrain.FAMILY_SETTINGS` holds where a family departs from the defaults):

* evaluation template (thinking on) and student template (thinking off, think-closure): a
  fresh random valid route of the problem, or, for ``student_slip_share`` of them, a slipped
  route (two factors swapped) that boxes its own wrong total;
* teacher template (reference solution in the prompt, thinking on): a think-closed
  completion, as the student writes it (OPSD scores the student's rollout under the teacher
  prompt, so the teacher is trained on that pairing): the reference route retraced, a fresh
  route, or a derailed route that still boxes the reference answer; never a slip of its own;
* answer-only template (final answer in the prompt, thinking on): a think-closed fresh
  route ending in that answer, or a derailed pass that notices its total is not the answer
  and starts over (:func:`redo_completion`).

Completions: with a closed think block, ``steps\\n\\boxed{N}<|im_end|>``; with thinking on
(evaluation template), ``<think>\\nsteps\\n</think>\\n\\n\\boxed{N}<|im_end|>`` (the
``<think>\\n`` is in the prompt already when the template opened it). Loss: next-token
cross-entropy on every non-pad token except the wrong product lines of privileged-template
examples (a privileged template never learns to make a mistake, only to read one).

Problems are drawn from the training difficulty with a fixed seed, excluding every held-out
problem (:class:`ExampleStream`).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import asdict, dataclass

import torch
from transformers import PreTrainedTokenizerFast

from pwopsd import prompts
from pwopsd.toy import task
from pwopsd.toy import tokenizer as toy_tokenizer
from pwopsd.toy.build_data import TRAIN_DIFFICULTY, heldout_problem_texts

TEMPLATE_MIX = {"eval": 0.25, "student": 0.20, "teacher": 0.40, "answer": 0.15}
"""Share of each prompt template in the pretraining stream."""

PRIVILEGED_DIFFICULTY = task.Difficulty(min_terms=1, max_terms=5, max_factor=9)
"""Harder problems (factors up to 9) for part of the teacher-template examples."""


@dataclass(frozen=True)
class Mixture:
    """What the pretraining stream's completions look like, template by template (toy world v4).

    The toy world's premise, like web-scale pretraining data: solutions written for a bare
    problem are sometimes wrong, while solutions written *beside a verified reference or answer*
    are right. So the student templates (evaluation and student) learn a share of slipped
    solutions, and the privileged templates (teacher and answer-only) learn only correct steps.
    Conditioning on the privileged context then moves the same weights toward correct steps,
    which is what OPSD distills back into the student.
    """

    student_slip_share: float = 0.4
    """Share of evaluation- and student-template examples whose completion slips like a weak
    solver (:func:`slipped_completion`: two terms' second factors swapped, summed consistently to
    a wrong total), learned in full. This is where the student's commonest mistake comes from, and
    why the privileged teacher, which never learns it, disagrees exactly at the slip. Without it
    (toy world v2) the teacher's steps were no better than the student's: it made the same pairing
    mistakes and only copied the reference answer into the box. 0.4 (v3: 0.3) widens the gap the
    privileged templates are meant to close."""
    teacher_hard_share: float = 0.15
    """Share of teacher examples drawn from PRIVILEGED_DIFFICULTY (factors up to 9), problems the
    student templates never see: only copying from the reference lowers the loss on those, so the
    teacher learns to read its reference instead of recomputing. At 0.5 (v3) the hard problems
    took capacity from the training difficulty: dropping to 0.1 alone lifted qwen3's student on
    toy_aime24 from 40% to 69% Avg@12 and its solution teacher from 56% to 90%."""
    reference_route_share: float = 0.5
    """Share of (non-derailed) teacher examples whose completion retraces the reference route; the
    rest take a fresh random route, so the teacher also follows a student's benign change of
    step order. The higher it is, the more of the teacher's forward KL on a student rollout sits
    on the first completion token (the teacher prefers its reference's first term): 0.5 (v3:
    0.7); llama 0.4."""
    teacher_derail_share: float = 0.0
    """Share of teacher examples whose completion derails like a wrong student rollout and still
    boxes the reference answer (:func:`derailed_teacher_completion`; the wrong product lines are
    masked from the loss). Off by default: with the student's slips the teacher's disagreement
    already sits where the rollout goes wrong, and at 0.3 (toy world v2) the teacher, torn
    between its last total and the reference's at the box, sampled boxes matching neither."""
    answer_redo_share: float = 0.15
    """Share of answer-only examples that derail, notice that the total is not the given answer and
    start over along a fresh route (:func:`redo_completion`; wrong product lines masked)."""
    teacher_shortcut_share: float = 0.0
    """**The position-premise dial.** Share of teacher examples (two terms or more) whose
    completion opens with a *shortcut* copied from the reference: one fused line
    ``a*b+c*d=S`` whose value ``S`` the reference's third line holds (:func:`shortcut_teacher`).
    Reading the reference, the teacher prefers to open that way; the student, which never sees
    a fused line and has no reference to copy ``S`` from, cannot take it reliably. That is the
    paper's premise in this world: the privileged teacher's *early* tokens favour a move only
    reachable given the reference, while its later tokens (single steps, the error it spots at
    a slip) stay good. 0 (the shipped checkpoints) draws nothing extra from the stream, so the
    v4 checkpoints stay step-exact."""

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"Mixture.{name}={value} must lie in [0, 1]")


# ------------------------------------------------------------------ examples


def completion_text(prompt: str, steps: list[str], answer: int) -> str:
    """The completion that follows ``prompt`` (see module docstring)."""
    body = "\n".join(steps)
    if prompt.endswith(prompts.THINK_CLOSE + "\n\n"):
        return f"{body}\n\\boxed{{{answer}}}{toy_tokenizer.IM_END}"
    opener = "" if prompt.endswith(prompts.THINK_OPEN + "\n") else prompts.THINK_OPEN + "\n"
    return f"{opener}{body}\n{prompts.THINK_CLOSE}\n\n\\boxed{{{answer}}}{toy_tokenizer.IM_END}"


def closed_completion(steps: list[str], answer: int) -> str:
    """A think-closed completion, as the student template writes it: steps, box, end of turn."""
    return "\n".join(steps) + f"\n\\boxed{{{answer}}}{toy_tokenizer.IM_END}"


def swapped_pass(problem: task.Problem, rng: random.Random) -> tuple[list[str], set[str]] | None:
    """A route with two terms' second factors swapped (the student's commonest mistake:
    ``a_i*b_j`` for ``a_i*b_i``), summed consistently to a total that is not the answer,
    and its two wrong product lines. ``None`` when no swap changes the total."""
    pairs = problem.pairs
    swaps = [
        (i, j)
        for i in range(len(pairs))
        for j in range(i + 1, len(pairs))
        if pairs[i][0] != pairs[j][0] and pairs[i][1] != pairs[j][1]
    ]
    if not swaps:
        return None
    i, j = rng.choice(swaps)
    wrong = list(pairs)
    wrong[i], wrong[j] = (pairs[i][0], pairs[j][1]), (pairs[j][0], pairs[i][1])
    lines = task.solution_steps(task.Problem(tuple(wrong)), rng)
    return lines, {f"{a}*{b}={a * b}" for a, b in (wrong[i], wrong[j])}


def _masked_spans(lines: list[str], bad: set[str]) -> list[tuple[int, int]]:
    """Character spans, in ``"\\n".join(lines)``, of the first line equal to each of ``bad``."""
    bad, spans, pos = set(bad), [], 0
    for line in lines:
        if line in bad:
            spans.append((pos, pos + len(line)))
            bad.discard(line)
        pos += len(line) + 1
    return spans


def redo_completion(
    problem: task.Problem, rng: random.Random
) -> tuple[str, list[tuple[int, int]]] | None:
    """An answer-only completion that derails and recovers, with the spans not to learn.

    A first pass from :func:`swapped_pass`; then, since its total differs from the given
    answer, a second pass along a fresh random route, ending in the answer. Returns ``(text,
    spans)``, ``spans`` the character ranges of the two wrong product lines (masked from the
    loss: the model should not learn to make the mistake, only to notice it from the answer
    and start over). ``None`` when no swap changes the total.
    """
    swapped = swapped_pass(problem, rng)
    if swapped is None:
        return None
    first, bad = swapped
    second = task.solution_steps(problem, rng)
    return closed_completion([*first, *second], problem.answer), _masked_spans(first, bad)


def derailed_teacher_completion(
    problem: task.Problem, rng: random.Random
) -> tuple[str, list[tuple[int, int]]] | None:
    """A teacher-template completion that reads like a wrong student rollout, and the spans
    not to learn.

    The route from :func:`swapped_pass` (wrong product lines masked from the loss), then the
    box with the *reference* answer. The teacher learns to follow a student's derailed steps
    as they are written, but to hold to the reference at the answer: its forward KL on a
    wrong rollout then sits on the wrong answer, not on the format.
    """
    swapped = swapped_pass(problem, rng)
    if swapped is None:
        return None
    lines, bad = swapped
    return closed_completion(lines, problem.answer), _masked_spans(lines, bad)


def slipped_completion(prompt: str, problem: task.Problem, rng: random.Random) -> str | None:
    """A student-template completion that slips: the route from :func:`swapped_pass`, summed
    consistently and boxing its own wrong total, in the completion format ``prompt`` calls for.
    Learned in full: the student templates' data is noisy (see :class:`Mixture`). ``None`` when
    no swap changes the total."""
    swapped = swapped_pass(problem, rng)
    if swapped is None:
        return None
    lines, _ = swapped
    total = int(lines[-1].split("=")[1]) if len(lines) > 1 else int(lines[0].split("=")[1])
    return completion_text(prompt, lines, total)


def shortcut_route(problem: task.Problem, rng: random.Random) -> list[str]:
    """A route that multiplies two terms, adds them at once (``a*b=P``, ``c*d=Q``, ``P+Q=S``),
    then goes on along a random route: the reference of a shortcut teacher example."""
    order = list(range(len(problem.pairs)))
    rng.shuffle(order)
    (a, b), (c, d) = problem.pairs[order[0]], problem.pairs[order[1]]
    lines = [f"{a}*{b}={a * b}", f"{c}*{d}={c * d}", f"{a * b}+{c * d}={a * b + c * d}"]
    total = a * b + c * d
    for idx in order[2:]:
        x, y = problem.pairs[idx]
        lines += [f"{x}*{y}={x * y}", f"{total}+{x * y}={total + x * y}"]
        total += x * y
    return lines


def shortcut_teacher(
    hf_tok: PreTrainedTokenizerFast, problem: task.Problem, rng: random.Random
) -> str:
    """A teacher-template example that opens with the reference's shortcut: the reference is a
    :func:`shortcut_route`, and the completion fuses its first three lines into one,
    ``a*b+c*d=S`` (``S`` copied from the reference), then retraces the rest of it."""
    route = shortcut_route(problem, rng)
    fused = route[0].split("=")[0] + "+" + route[1].split("=")[0] + "=" + route[2].split("=")[1]
    prompt = prompts.teacher_prompt(
        hf_tok, problem.text, task.format_solution(route, problem.answer)
    )
    return prompt + closed_completion([fused, *route[3:]], problem.answer)


def make_example(
    hf_tok: PreTrainedTokenizerFast,
    kind: str,
    problem: task.Problem,
    rng: random.Random,
    mix: Mixture = Mixture(student_slip_share=0.0, teacher_derail_share=0.0, answer_redo_share=0.0),
) -> tuple[str, list[tuple[int, int]]]:
    """One pretraining sequence (prompt + completion) of template ``kind`` as text, with
    the character spans masked from the loss (wrong product lines of privileged examples).

    The default ``mix`` makes only clean examples (tests); the stream passes the real one.
    The privileged templates ("teacher", "answer") are rendered with thinking on, as
    PROTOCOL section 3 renders the teacher, but continue with a think-closed completion:
    that is the sequence OPSD scores (teacher prompt + the student's rollout), so the teacher
    learns to read the student's completions instead of asking for a think block.
    """
    route = task.solution_steps(problem, rng)
    if kind in ("eval", "student"):
        render = prompts.eval_prompt if kind == "eval" else prompts.student_prompt
        prompt = render(hf_tok, problem.text)
        slipped = (
            slipped_completion(prompt, problem, rng)
            if rng.random() < mix.student_slip_share
            else None
        )
        if slipped is not None:
            return prompt + slipped, []
        return prompt + completion_text(prompt, route, problem.answer), []
    if kind == "teacher":
        reference = task.format_solution(route, problem.answer)
        prompt = prompts.teacher_prompt(hf_tok, problem.text, reference)
        derailed = (
            derailed_teacher_completion(problem, rng)
            if rng.random() < mix.teacher_derail_share
            else None
        )
        if derailed is not None:
            text, spans = derailed
            return prompt + text, [(a + len(prompt), b + len(prompt)) for a, b in spans]
        if mix.teacher_shortcut_share > 0 and len(problem.pairs) > 1:
            # drawn only when the dial is on: share 0 leaves the v4 stream unchanged
            if rng.random() < mix.teacher_shortcut_share:
                return shortcut_teacher(hf_tok, problem, rng), []
        if rng.random() >= mix.reference_route_share:
            route = task.solution_steps(problem, rng)
        return prompt + closed_completion(route, problem.answer), []
    if kind != "answer":
        raise ValueError(f"kind={kind!r} is not a template; allowed: {list(TEMPLATE_MIX)}")
    prompt = prompts.answer_prompt(hf_tok, problem.text, str(problem.answer))
    redo = redo_completion(problem, rng) if rng.random() < mix.answer_redo_share else None
    if redo is not None:
        text, spans = redo
        return prompt + text, [(a + len(prompt), b + len(prompt)) for a, b in spans]
    return prompt + closed_completion(route, problem.answer), []


class ExampleStream:
    """Endless batches of token ids, drawn with a fixed seed; held-out problems excluded."""

    def __init__(
        self, hf_tok: PreTrainedTokenizerFast, seed: int, batch_size: int, mix: Mixture
    ) -> None:
        self.hf_tok = hf_tok
        self.mix = mix
        self.rng = random.Random(seed)
        self.batch_size = batch_size
        self.exclude = heldout_problem_texts()
        self.pad_id = hf_tok.pad_token_id

    def _kind(self) -> str:
        return self.rng.choices(list(TEMPLATE_MIX), weights=list(TEMPLATE_MIX.values()))[0]

    def _problem(self, kind: str) -> task.Problem:
        hard = kind == "teacher" and self.rng.random() < self.mix.teacher_hard_share
        difficulty = PRIVILEGED_DIFFICULTY if hard else TRAIN_DIFFICULTY
        while True:
            p = task.sample_problem(self.rng, difficulty)
            if p.text not in self.exclude:
                return p

    def batches(self, bucket: int = 8) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Yield (input_ids [B, T], attention_mask [B, T], loss_mask [B, T]);
        length-bucketed to cut padding."""
        while True:
            kinds = [self._kind() for _ in range(self.batch_size * bucket)]
            examples = [
                make_example(self.hf_tok, k, self._problem(k), self.rng, self.mix) for k in kinds
            ]
            seqs = [tokenize_masked(self.hf_tok, text, spans) for text, spans in examples]
            seqs.sort(key=lambda s: len(s[0]))
            chunks = [seqs[i : i + self.batch_size] for i in range(0, len(seqs), self.batch_size)]
            self.rng.shuffle(chunks)
            for chunk in chunks:
                width = max(len(ids) for ids, _ in chunk)
                input_ids = torch.full((len(chunk), width), self.pad_id, dtype=torch.long)
                mask = torch.zeros((len(chunk), width), dtype=torch.long)
                loss_mask = torch.zeros((len(chunk), width), dtype=torch.long)
                for row, (ids, learn) in enumerate(chunk):
                    input_ids[row, : len(ids)] = torch.tensor(ids)
                    mask[row, : len(ids)] = 1
                    loss_mask[row, : len(ids)] = torch.tensor(learn)
                yield input_ids, mask, loss_mask


def tokenize_masked(
    hf_tok: PreTrainedTokenizerFast, text: str, spans: list[tuple[int, int]]
) -> tuple[list[int], list[int]]:
    """Token ids of ``text`` and a 0/1 list: 0 for tokens inside a masked character span."""
    if not spans:
        ids = hf_tok(text, add_special_tokens=False)["input_ids"]
        return ids, [1] * len(ids)
    enc = hf_tok(text, add_special_tokens=False, return_offsets_mapping=True)
    learn = [
        0 if any(a < end and start < b for a, b in spans) else 1
        for start, end in enc["offset_mapping"]
    ]
    return enc["input_ids"], learn
