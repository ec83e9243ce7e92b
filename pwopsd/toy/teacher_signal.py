"""Does the privileged teacher's per-token signal point at the student's mistakes? (issue 9)

``python -m pwopsd.toy teacher-signal [--families ...] [--set toy_val]`` samples student
rollouts on the validation set (student template, think-closed; the toy profile's rollout
sampling: temperature 1.1, top-p 0.95, top-k 20), then scores each rollout as OPSD does
(PROTOCOL section 1): one HF forward pass of the teacher template (reference solution in
the prompt, rendered with thinking on) + the rollout's tokens, one of the student template +
the same tokens. Per completion token, the unclipped forward KL (teacher || student) at the
distillation temperature (1.1) over the full vocabulary. Three numbers per family:

* ``format_share``: share of the forward-KL mass, pooled over all rollouts, on the three
  format positions (the first completion token, the first token of the ``\\boxed`` line and
  the end-of-turn token). Wanted: < 0.1.
* ``first_wrong_teacher_wins``: over wrong rollouts, the fraction where, at the first wrong
  token, the teacher gives the student's token less probability than the student does.
  "First wrong token" is found by the task's own route checker
  (:func:`pwopsd.toy.task.first_error`: the first character no valid route continues with:
  a wrong operand, a repeated or dropped term, an arithmetic slip, an early box). Wanted: >= 0.8.
* ``wrong_over_correct_fkl``: mean forward KL per token on wrong rollouts over that on right
  rollouts. Wanted: >= 2.

The same numbers for the answer-only (diagnostic) teacher are reported beside, for
information. Results go under each family's ``teacher_signal`` in
``results/toy/calibration.json`` (``--out`` elsewhere; ``--no-write`` prints only).
HF forward passes only: no vLLM engine.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm
from transformers import AutoModelForCausalLM, AutoTokenizer

from pwopsd import prompts
from pwopsd.config import TOY_DATA_DIR, get_profile
from pwopsd.grading import extract_answer, is_correct
from pwopsd.provenance import git_commit, write_json
from pwopsd.sampling import derive_seed, hf_generate_kwargs
from pwopsd.toy import task
from pwopsd.toy.calibrate import CALIBRATION_PATH, band_note
from pwopsd.toy.checkpoint import check_checkpoint

SIGNAL_SET = "toy_val"
ROLLOUTS_PER_PROBLEM = 2
BANDS = {"format_share_max": 0.10, "first_wrong_wins_min": 0.80, "wrong_over_correct_min": 2.0}
TEACHERS = ("solution", "answer")
"""The teacher templates scored: reference solution (OPSD's teacher) and answer-only."""
HEADLINE = ("format_share", "first_wrong_teacher_wins", "wrong_over_correct_fkl")
"""The three numbers of the signal (bands (a)-(c))."""


def token_index_of_char(tok: Any, ids: list[int], offset: int) -> int:
    """Index of the token of ``ids`` whose decoded text holds character ``offset``
    (``len(ids)`` when ``offset`` lies past the decoded text)."""
    for j in range(len(ids)):
        if len(tok.decode(ids[: j + 1])) > offset:
            return j
    return len(ids)


def _forward_logp(
    model: Any, prompt_ids: list[int], comp_ids: list[int], temp: float
) -> torch.Tensor:
    """Tempered log-probs [C, V] at the positions that predict each completion token."""
    ids = torch.tensor([prompt_ids + comp_ids])  # [1, P + C]
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0].float()  # [P + C, V]
    start = len(prompt_ids) - 1
    return torch.log_softmax(logits[start : start + len(comp_ids)] / temp, dim=-1)  # [C, V]


def summarise(rollouts: list[dict]) -> dict[str, Any]:
    """The three numbers (and their parts) from per-rollout records.

    Each record: ``fkl`` (per-token forward KL), ``format_idx`` (format positions),
    ``correct`` (bool), ``first_wrong`` (token index or None), ``lp_teacher`` and
    ``lp_student`` (log-probs of the token at ``first_wrong``).
    """
    total = sum(sum(r["fkl"]) for r in rollouts)
    fmt = sum(sum(r["fkl"][i] for i in r["format_idx"]) for r in rollouts)
    wrong = [r for r in rollouts if not r["correct"]]
    right = [r for r in rollouts if r["correct"]]

    def per_token(rs: list[dict]) -> float | None:
        n = sum(len(r["fkl"]) for r in rs)
        return sum(sum(r["fkl"]) for r in rs) / n if n else None

    located = [r for r in wrong if r["first_wrong"] is not None]
    wins = [r["lp_teacher"] < r["lp_student"] for r in located]
    fw, fr = per_token(wrong), per_token(right)
    return {
        "format_share": fmt / total if total > 0 else None,
        "first_wrong_teacher_wins": sum(wins) / len(wins) if wins else None,
        "wrong_over_correct_fkl": fw / fr if fw is not None and fr else None,
        "fkl_per_token_wrong": fw,
        "fkl_per_token_correct": fr,
        "fkl_per_rollout": total / len(rollouts) if rollouts else None,
        "n_rollouts": len(rollouts),
        "n_wrong": len(wrong),
        "n_wrong_located": len(located),
        "by_third": position_split(rollouts),
    }


THIRDS = ("first", "middle", "last")
"""Thirds of a completion by relative position u = (i + 0.5) / C (the position split)."""


def third_of(index: int, length: int) -> str:
    """Which third of a ``length``-token completion token ``index`` lies in."""
    return THIRDS[min(int(3 * (index + 0.5) / length), 2)]


def position_split(rollouts: list[dict]) -> dict[str, dict[str, Any]]:
    """The signal split by position: per third of the completion, its share of the pooled
    forward-KL mass, and, over wrong rollouts whose first wrong token lies in that third, the
    fraction where the teacher wins there (gives the token less probability than the student).
    The position-premise dial should move forward-KL mass into the first third while the
    teacher keeps winning at first wrong steps in the later thirds."""
    total = sum(sum(r["fkl"]) for r in rollouts)
    mass = dict.fromkeys(THIRDS, 0.0)
    wins: dict[str, list[bool]] = {t: [] for t in THIRDS}
    for r in rollouts:
        n = len(r["fkl"])
        for i, value in enumerate(r["fkl"]):
            mass[third_of(i, n)] += value
        if not r["correct"] and r["first_wrong"] is not None and n:
            at = third_of(min(r["first_wrong"], n - 1), n)
            wins[at].append(r["lp_teacher"] < r["lp_student"])
    return {
        t: {
            "fkl_share": mass[t] / total if total > 0 else None,
            "first_wrong_teacher_wins": sum(wins[t]) / len(wins[t]) if wins[t] else None,
            "n_first_wrong": len(wins[t]),
        }
        for t in THIRDS
    }


def signal_checks(signal: dict) -> dict[str, bool]:
    """Issue 9's bands (a)-(c) on one family's ``teacher_signal``."""
    fs, fw, ratio = (
        signal.get("format_share"),
        signal.get("first_wrong_teacher_wins"),
        signal.get("wrong_over_correct_fkl"),
    )
    return {
        "format_share_below_0.1": fs is not None and fs < BANDS["format_share_max"],
        "first_wrong_teacher_wins_at_least_0.8": fw is not None
        and fw >= BANDS["first_wrong_wins_min"],
        "wrong_over_correct_fkl_at_least_2": ratio is not None
        and ratio >= BANDS["wrong_over_correct_min"],
    }


def _load_rows(set_name: str, max_problems: int | None) -> list[dict[str, str]]:
    with open(TOY_DATA_DIR / f"{set_name}.jsonl") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return rows[:max_problems] if max_problems else rows


def _ids(tok: Any, text: str) -> list[int]:
    return tok(text, add_special_tokens=False)["input_ids"]


def teacher_prompts(tok: Any, row: dict[str, str]) -> dict[str, str]:
    """Each teacher template's prompt for ``row`` (keys :data:`TEACHERS`)."""
    return {
        "solution": prompts.teacher_prompt(tok, row["problem"], row["solution"]),
        "answer": prompts.answer_prompt(tok, row["problem"], row["answer"]),
    }


def sample_completions(
    model: Any, tok: Any, prompt_ids: list[int], n: int, roll: Any
) -> list[list[int] | None]:
    """``n`` sampled completions of ``prompt_ids`` under rollout sampling ``roll``, each cut
    after its end-of-turn token; ``None`` for one that never ends (truncated)."""
    eos = tok.eos_token_id
    out = model.generate(
        torch.tensor([prompt_ids] * n),
        **hf_generate_kwargs(roll, pad_token_id=tok.pad_token_id, eos_token_id=eos),
    )
    completions: list[list[int] | None] = []
    for seq in out.tolist():
        comp = seq[len(prompt_ids) :]
        completions.append(comp[: comp.index(eos) + 1] if eos in comp else None)
    return completions


def score_rollout(
    model: Any,
    tok: Any,
    row: dict[str, str],
    student_ids: list[int],
    teacher_ids: dict[str, list[int]],
    comp: list[int],
    temp: float,
) -> dict[str, dict]:
    """Teacher -> the record :func:`summarise` reads, for one completion ``comp`` (ending in
    its end-of-turn token) of the student prompt ``student_ids``."""
    text = tok.decode(comp[:-1])
    correct = is_correct(extract_answer(text), row["answer"])
    err = None if correct else task.first_error(task.parse_problem(row["problem"]), text)
    first_wrong = None if err is None else token_index_of_char(tok, comp[:-1], err)
    box = text.rfind("\\boxed")
    format_idx = {0, len(comp) - 1}
    if box >= 0:
        format_idx.add(token_index_of_char(tok, comp[:-1], box))
    lp_s = _forward_logp(model, student_ids, comp, temp)
    records = {}
    for kind, ids in teacher_ids.items():
        lp_t = _forward_logp(model, ids, comp, temp)
        fkl = (lp_t.exp() * (lp_t - lp_s)).sum(-1)  # [C]
        rec = {
            "fkl": fkl.tolist(),
            "format_idx": sorted(format_idx),
            "correct": correct,
            "first_wrong": first_wrong,
        }
        if first_wrong is not None:
            token = comp[first_wrong]
            rec["lp_teacher"] = lp_t[first_wrong, token].item()
            rec["lp_student"] = lp_s[first_wrong, token].item()
        records[kind] = rec
    return records


def _signal(records: dict[str, list[dict]], n_truncated: int) -> dict[str, Any]:
    """The solution teacher's summary and checks, the answer teacher's three numbers beside."""
    solution = records["solution"]
    signal = summarise(solution)
    signal["n_truncated"] = n_truncated
    signal["student_accuracy"] = (
        sum(r["correct"] for r in solution) / len(solution) if solution else None
    )
    signal["checks"] = signal_checks(signal)
    answer = summarise(records["answer"])
    signal["answer_teacher"] = {k: answer[k] for k in HEADLINE}
    return signal


def measure(
    path: str,
    set_name: str = SIGNAL_SET,
    per_problem: int = ROLLOUTS_PER_PROBLEM,
    max_problems: int | None = None,
    seed: int = 0,
    progress: bool = False,
) -> dict[str, Any]:
    """Sample student rollouts from the checkpoint at ``path`` and measure the signal."""
    check_checkpoint(path)
    torch.set_num_threads(1)
    profile = get_profile("toy")
    roll, temp = profile.train.rollout, profile.train.distill_temperature
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    rows = _load_rows(set_name, max_problems)
    records: dict[str, list[dict]] = {kind: [] for kind in TEACHERS}
    n_truncated = 0
    start = time.time()
    for row in tqdm(rows, desc=f"teacher signal {set_name}", disable=not progress):
        s_ids = _ids(tok, prompts.student_prompt(tok, row["problem"]))
        t_ids = {k: _ids(tok, v) for k, v in teacher_prompts(tok, row).items()}
        torch.manual_seed(derive_seed(seed, "teacher_signal", set_name, row["id"]))
        for comp in sample_completions(model, tok, s_ids, per_problem, roll):
            if comp is None:
                n_truncated += 1
                continue
            for kind, rec in score_rollout(model, tok, row, s_ids, t_ids, comp, temp).items():
                records[kind].append(rec)
    signal = _signal(records, n_truncated)
    signal.update(
        set=set_name,
        rollouts_per_problem=per_problem,
        problems=len(rows),
        distill_temperature=temp,
        rollout_sampling=roll.__dict__,
        seed=seed,
        wall_seconds=round(time.time() - start, 1),
    )
    return signal


def summary_line(family: str, sig: dict[str, Any]) -> str:
    """One line of a family's signal, for the terminal."""
    return (
        f"{family}: format_share {sig['format_share']:.3f}  first_wrong_teacher_wins "
        f"{sig['first_wrong_teacher_wins']}  wrong_over_correct_fkl "
        f"{sig['wrong_over_correct_fkl']}  (student acc {sig['student_accuracy']:.3f}, "
        f"{sig['n_wrong']} wrong of {sig['n_rollouts']}) answer teacher: "
        f"{sig['answer_teacher']}"
    )


def write_signal(results: dict[str, dict], out: Path = CALIBRATION_PATH) -> None:
    """Write each family's signal under its ``teacher_signal`` in ``out`` (the calibration
    file; other keys kept) and refresh the family's band note."""
    payload = json.loads(out.read_text()) if out.exists() else {}
    for family, sig in results.items():
        sig["git_commit"] = git_commit()
        payload.setdefault(family, {})["teacher_signal"] = sig
        payload[family]["note"] = band_note(payload[family])
    write_json(out, payload)
