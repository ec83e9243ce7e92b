"""Pretrain the toy checkpoints (issue 3, "Deliver" 3).

``python -m pwopsd.toy.pretrain --family {qwen3,llama,olmo3,all} [--minutes M] [--steps N]
[--out DIR] [--seed S]`` trains each family from scratch and writes
``checkpoints/toy-<family>/`` (config, model.safetensors, tokenizer with the family's chat
template, generation_config, pretrain_log.json).

Each training sequence is one prompt rendered through ``pwopsd.prompts`` with the family's
own chat template, followed by a completion; :class:`Mixture` says which (toy world v4;
:data:`FAMILY_SETTINGS` holds where a family departs from the defaults):

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
problem. The schedule (linear warm-up, cosine decay) runs on ``progress = max(step/steps,
elapsed/(minutes*60))``: a run that hits the wall-clock cap first decays on time, so it is
reproducible only on a machine of the same speed. The defaults (2400 steps, 90-minute cap)
are step-exact on a 2-core machine, busy or not; each checkpoint's pretrain_log.json records
its steps, mixture and wall time.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from tokenizers import Tokenizer
from tqdm import tqdm
from transformers import GenerationConfig, PreTrainedTokenizerFast

from pwopsd import prompts
from pwopsd.config import CHECKPOINTS_DIR
from pwopsd.toy import models, task
from pwopsd.toy import tokenizer as toy_tokenizer
from pwopsd.toy.build_data import TRAIN_DIFFICULTY, heldout_problem_texts, train_set

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

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"Mixture.{name}={value} must lie in [0, 1]")


@dataclass
class PretrainConfig:
    family: str
    """Model family (see pwopsd.toy.models.FAMILIES)."""
    steps: int = 2400
    """Optimizer steps per family; the shipped checkpoints ran exactly these (see each
    checkpoint's pretrain_log.json for the wall time)."""
    minutes: float = 90.0
    """Wall-clock safety cap. The schedule decays on whichever of steps/time ends first, so a
    run that hits this cap is no longer step-exact (the log records steps_done)."""
    batch_size: int = 32
    """Sequences per optimizer step."""
    lr: float = 3e-3
    """Peak AdamW learning rate (the shipped llama and olmo3 use 1e-3: see FAMILY_SETTINGS)."""
    warmup_steps: int = 50
    """Linear warm-up steps before the cosine decay."""
    weight_decay: float = 0.01
    """AdamW weight decay on matrices (not on norms or biases)."""
    seed: int = 0
    """Seeds the weights (``seed``) and the example stream (``seed + 1``)."""
    mix: Mixture = field(default_factory=Mixture)
    """What the completions look like (see :class:`Mixture`)."""
    threads: int = 1
    """Torch threads. 1: on 2 shared cores, 2 threads spin-wait and run ~10x slower."""


FAMILY_SETTINGS: dict[str, dict[str, float]] = {
    "qwen3": {},
    "llama": {"lr": 1e-3, "reference_route_share": 0.4},
    "olmo3": {"lr": 1e-3},
}
"""Where a shipped family's pretraining departs from the PretrainConfig and Mixture defaults
(toy world v4; keys are PretrainConfig or Mixture field names). Measured in the session that
set them (each pair of runs otherwise identical, toy_aime24 Avg@12 and toy_val teacher signal):

* llama at lr 3e-3 never learned to read its reference (solution teacher 25.3 vs student 25.1);
  at 1e-3 its teacher leads by 26 points. Without Qwen3's q/k norms, the attention that copies
  a reference line seems to need the gentler rate.
* olmo3 at 1e-3: the teacher's forward KL on wrong over right rollouts rose from 1.44 to 2.79
  and the share on format positions fell from 0.17 to 0.06. qwen3 at 1e-3 went the other way
  (2.46 to 1.83), so it keeps 3e-3.
* llama with reference_route_share 0.4 (0.5 at lr 1e-3): the teacher prefers its reference's
  first term less, which cut the first token's share of the forward KL from 0.11 to 0.04.
"""


def family_config(family: str, **overrides: object) -> PretrainConfig:
    """The shipped pretraining config of ``family``: defaults, then FAMILY_SETTINGS, then
    ``overrides`` (PretrainConfig or Mixture field names; ``None`` values are ignored)."""
    if family not in FAMILY_SETTINGS:
        raise ValueError(f"family={family!r} is not known; allowed: {list(FAMILY_SETTINGS)}")
    settings = {**FAMILY_SETTINGS[family], **{k: v for k, v in overrides.items() if v is not None}}
    mix_fields = set(Mixture.__dataclass_fields__)
    unknown = set(settings) - mix_fields - set(PretrainConfig.__dataclass_fields__)
    if unknown:
        raise ValueError(f"unknown pretraining settings {sorted(unknown)} for family={family!r}")
    mix = Mixture(**{k: v for k, v in settings.items() if k in mix_fields})
    rest = {k: v for k, v in settings.items() if k not in mix_fields}
    return PretrainConfig(family=family, mix=mix, **rest)


# ------------------------------------------------------------------ tokenizer & examples


def build_tokenizer() -> Tokenizer:
    """The shared toy BPE, trained on the training corpus and the templates' fixed words."""
    rows = train_set()
    texts = [r["problem"] + "\n" + r["solution"] for r in rows]
    texts += ["user\n", "assistant\n", "system\n"] * 200
    return toy_tokenizer.train_tokenizer(texts)


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

    def __init__(self, hf_tok: PreTrainedTokenizerFast, seed: int, batch_size: int, mix: Mixture):
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

    def batches(self, bucket: int = 8):
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


# ------------------------------------------------------------------------------ training


def lr_at(progress: float, step: int, cfg: PretrainConfig) -> float:
    """Linear warm-up over ``warmup_steps``, then cosine decay to 10% of ``lr``."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))


def pretrain(cfg: PretrainConfig, out_dir: Path, tok: Tokenizer | None = None) -> dict:
    """Train one family and write its checkpoint to ``out_dir``; returns the training log."""
    torch.set_num_threads(cfg.threads)
    tok = tok if tok is not None else build_tokenizer()
    hf_tok = toy_tokenizer.wrap(tok, cfg.family)
    model = models.make_model(
        cfg.family, len(hf_tok), hf_tok.pad_token_id, hf_tok.eos_token_id, cfg.seed
    )
    model.train()
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": cfg.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=cfg.lr,
        betas=(0.9, 0.98),
    )
    stream = ExampleStream(hf_tok, cfg.seed + 1, cfg.batch_size, cfg.mix).batches()
    start = time.time()
    losses: list[float] = []
    bar = tqdm(total=cfg.steps, desc=f"pretrain {cfg.family}", mininterval=5.0)
    step = 0
    while True:
        progress = max(step / cfg.steps, (time.time() - start) / (cfg.minutes * 60))
        if progress >= 1.0:
            break
        for group in opt.param_groups:
            group["lr"] = lr_at(progress, step, cfg)
        input_ids, mask, loss_mask = next(stream)  # [B, T] each
        labels = input_ids.masked_fill(loss_mask == 0, -100)
        loss = model(input_ids=input_ids, attention_mask=mask, labels=labels).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
        step += 1
        bar.update(1)
        if step % 25 == 0:
            bar.set_postfix(loss=f"{sum(losses[-25:]) / 25:.4f}")
    bar.close()
    wall = time.time() - start
    tail = losses[-min(50, len(losses)) :]
    log = {
        "config": asdict(cfg),
        "steps_done": step,
        "wall_seconds": round(wall, 1),
        "n_params": models.n_params(model),
        "first_loss": losses[0] if losses else None,
        "final_loss": sum(tail) / len(tail) if tail else None,
        "loss_every_25": [
            round(sum(losses[i : i + 25]) / len(losses[i : i + 25]), 4)
            for i in range(0, len(losses), 25)
        ],
        "template_mix": TEMPLATE_MIX,
    }
    save_checkpoint(model, hf_tok, out_dir, log)
    return {**log, "losses": losses}


def save_checkpoint(model, hf_tok: PreTrainedTokenizerFast, out_dir: Path, log: dict) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    model.eval()
    model.generation_config = GenerationConfig(
        eos_token_id=hf_tok.eos_token_id, pad_token_id=hf_tok.pad_token_id
    )
    model.save_pretrained(str(out_dir))
    toy_tokenizer.save(hf_tok, out_dir)
    (out_dir / "pretrain_log.json").write_text(json.dumps(log, indent=2) + "\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Pretrain the toy checkpoints.")
    parser.add_argument("--family", choices=[*models.FAMILIES, "all"], default="all")
    parser.add_argument(
        "--minutes", type=float, default=PretrainConfig.minutes, help="wall-clock cap per family"
    )
    parser.add_argument(
        "--steps", type=int, default=PretrainConfig.steps, help="step cap per family"
    )
    parser.add_argument(
        "--out", type=Path, default=CHECKPOINTS_DIR, help="parent dir of toy-<family>/"
    )
    parser.add_argument("--seed", type=int, default=PretrainConfig.seed)
    parser.add_argument(
        "--lr", type=float, default=None, help="peak AdamW learning rate (default: the family's)"
    )
    for name in Mixture.__dataclass_fields__:
        parser.add_argument(
            "--" + name.replace("_", "-"),
            type=float,
            default=None,
            help=f"Mixture.{name} (default: the family's; see pwopsd.toy.pretrain.Mixture)",
        )
    args = parser.parse_args(argv)
    if args.minutes <= 0 or args.steps <= 0 or (args.lr is not None and args.lr <= 0):
        parser.error("--minutes, --steps and --lr must be > 0")
    families = models.FAMILIES if args.family == "all" else (args.family,)
    overrides = {name: getattr(args, name) for name in Mixture.__dataclass_fields__}
    # Every family's config is built (and checked) before any training starts.
    configs = [
        family_config(
            family, steps=args.steps, minutes=args.minutes, seed=args.seed, lr=args.lr, **overrides
        )
        for family in families
    ]
    tok = build_tokenizer()
    for cfg in configs:
        out = args.out / f"toy-{cfg.family}"
        log = pretrain(cfg, out, tok)
        print(
            f"{cfg.family}: {log['n_params']:,} params, {log['steps_done']} steps in "
            f"{log['wall_seconds']:.0f} s, loss {log['first_loss']:.4f} -> final {log['final_loss']:.4f}; wrote {out}"
        )


if __name__ == "__main__":
    main()
