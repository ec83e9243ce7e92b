"""Does the privileged teacher's per-token signal point at the student's mistakes? (issue 9)

``python -m pwopsd.toy.teacher_signal [--families ...] [--set toy_val]`` samples student
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

import argparse
import json
import time
from pathlib import Path
from typing import Any

from pwopsd.config import TOY_DATA_DIR, get_profile

SIGNAL_SET = "toy_val"
ROLLOUTS_PER_PROBLEM = 2
BANDS = {"format_share_max": 0.10, "first_wrong_wins_min": 0.80, "wrong_over_correct_min": 2.0}


def token_index_of_char(tok: Any, ids: list[int], offset: int) -> int:
    """Index of the token of ``ids`` whose decoded text holds character ``offset``
    (``len(ids)`` when ``offset`` lies past the decoded text)."""
    for j in range(len(ids)):
        if len(tok.decode(ids[: j + 1])) > offset:
            return j
    return len(ids)


def _forward_logp(model: Any, prompt_ids: list[int], comp_ids: list[int], temp: float):
    """Tempered log-probs [C, V] at the positions that predict each completion token."""
    import torch

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


def measure(
    path: str,
    set_name: str = SIGNAL_SET,
    per_problem: int = ROLLOUTS_PER_PROBLEM,
    max_problems: int | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Sample student rollouts from the checkpoint at ``path`` and measure the signal."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from pwopsd import prompts
    from pwopsd.grading import extract_answer, is_correct
    from pwopsd.sampling import derive_seed
    from pwopsd.toy import task
    from pwopsd.toy.checkpoint import check_checkpoint

    check_checkpoint(path)
    torch.set_num_threads(1)
    profile = get_profile("toy")
    roll, temp = profile.train.rollout, profile.train.distill_temperature
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    with open(TOY_DATA_DIR / f"{set_name}.jsonl") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    rows = rows[:max_problems] if max_problems else rows
    eos = tok.eos_token_id
    records: dict[str, list[dict]] = {"solution": [], "answer": []}
    n_truncated = 0
    start = time.time()
    for row in rows:
        problem = task.parse_problem(row["problem"])
        s_ids = tok(prompts.student_prompt(tok, row["problem"]), add_special_tokens=False)
        s_ids = s_ids["input_ids"]
        teachers = {
            "solution": prompts.teacher_prompt(tok, row["problem"], row["solution"]),
            "answer": prompts.answer_prompt(tok, row["problem"], row["answer"]),
        }
        t_ids = {k: tok(v, add_special_tokens=False)["input_ids"] for k, v in teachers.items()}
        torch.manual_seed(derive_seed(seed, "teacher_signal", set_name, row["id"]))
        out = model.generate(
            torch.tensor([s_ids] * per_problem),
            do_sample=True,
            temperature=roll.temperature,
            top_p=roll.top_p,
            top_k=roll.top_k,
            max_new_tokens=roll.max_new_tokens,
            pad_token_id=tok.pad_token_id,
            eos_token_id=eos,
        )
        for seq in out.tolist():
            comp = seq[len(s_ids) :]
            if eos not in comp:
                n_truncated += 1
                continue
            comp = comp[: comp.index(eos) + 1]
            text = tok.decode(comp[:-1])
            correct = is_correct(extract_answer(text), row["answer"])
            err = None if correct else task.first_error(problem, text)
            first_wrong = None if err is None else token_index_of_char(tok, comp[:-1], err)
            box = text.rfind("\\boxed")
            format_idx = {0, len(comp) - 1}
            if box >= 0:
                format_idx.add(token_index_of_char(tok, comp[:-1], box))
            lp_s = _forward_logp(model, s_ids, comp, temp)
            for kind in ("solution", "answer"):
                lp_t = _forward_logp(model, t_ids[kind], comp, temp)
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
                records[kind].append(rec)
    signal = summarise(records["solution"])
    signal["n_truncated"] = n_truncated
    signal["student_accuracy"] = (
        sum(r["correct"] for r in records["solution"]) / len(records["solution"])
        if records["solution"]
        else None
    )
    signal["checks"] = signal_checks(signal)
    answer = summarise(records["answer"])
    signal["answer_teacher"] = {
        k: answer[k] for k in ("format_share", "first_wrong_teacher_wins", "wrong_over_correct_fkl")
    }
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


def main(argv: list[str] | None = None) -> None:
    from pwopsd.toy.calibrate import CALIBRATION_PATH
    from pwopsd.toy.models import FAMILIES

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", nargs="+", choices=FAMILIES, default=list(FAMILIES))
    parser.add_argument("--set", default=SIGNAL_SET, help="held-out set (default: toy_val)")
    parser.add_argument("--per-problem", type=int, default=ROLLOUTS_PER_PROBLEM)
    parser.add_argument("--max-problems", type=int, default=None)
    parser.add_argument(
        "--checkpoints", type=Path, default=None, help="parent dir of toy-<family>/"
    )
    parser.add_argument("--out", type=Path, default=CALIBRATION_PATH)
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    profile = get_profile("toy")
    results = {}
    for family in args.families:
        path = (
            str(args.checkpoints / f"toy-{family}") if args.checkpoints else profile.models[family]
        )
        results[family] = measure(path, args.set, args.per_problem, args.max_problems)
        sig = results[family]
        print(
            f"{family}: format_share {sig['format_share']:.3f}  first_wrong_teacher_wins "
            f"{sig['first_wrong_teacher_wins']}  wrong_over_correct_fkl "
            f"{sig['wrong_over_correct_fkl']}  (student acc {sig['student_accuracy']:.3f}, "
            f"{sig['n_wrong']} wrong of {sig['n_rollouts']}) answer teacher: "
            f"{sig['answer_teacher']}",
            flush=True,
        )
    reduced = (
        args.max_problems or args.set != SIGNAL_SET or args.per_problem != ROLLOUTS_PER_PROBLEM
    )
    if args.no_write or (reduced and args.out == CALIBRATION_PATH):
        if not args.no_write:
            print(f"reduced run: not writing {CALIBRATION_PATH} (pass --out to keep it)")
        return
    from pwopsd.provenance import git_commit, write_json
    from pwopsd.toy.calibrate import band_note

    payload = json.loads(args.out.read_text()) if args.out.exists() else {}
    for family, sig in results.items():
        sig["git_commit"] = git_commit()
        payload.setdefault(family, {})["teacher_signal"] = sig
        payload[family]["note"] = band_note(payload[family])
    write_json(args.out, payload)
    print(f"wrote teacher_signal into {args.out}")


if __name__ == "__main__":
    main()
