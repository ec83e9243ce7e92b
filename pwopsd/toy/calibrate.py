"""Calibrate the shipped toy checkpoints (issue 3, "Deliver" 5).

``python -m pwopsd.toy calibrate [--families qwen3 llama olmo3] [--set toy_aime24]`` samples
each family's checkpoint with vLLM under the toy profile's evaluation settings (n=12,
temperature 1.0, top_p 0.95, no top-k, 384 new tokens) on the mid-difficulty set, under
four prompt templates rendered by ``pwopsd.prompts``:

* ``student``: the student training template (thinking off, think-closure where needed);
* ``eval``: the evaluation template (no "Problem:" prefix, thinking on);
* ``teacher_solution``: the teacher template, reference solution in the prompt;
* ``teacher_answer``: the diagnostic teacher template, final answer only;
* ``teacher_answer_wrong``: the same with a wrong answer (the true one + 10) in the prompt,
  scored against the true answer; ``boxes_given`` is the share of completions that box the
  wrong answer given. A teacher that reads its answer falls here (a check, not a band).

It grades with ``pwopsd.evaluate`` (Avg/Pass/Maj@12, PROTOCOL section 4), records each
template's mean completion length and the fraction of completions whose steps are
arithmetically consistent with their boxed answer (:func:`pwopsd.toy.task.consistent`),
checks the bands of issue 9 (student Avg@12 in [0.15, 0.70], Pass@12 at least 0.1 above
Avg@12, solution teacher >= student + 0.15, answer-only teacher >= student + 0.10 with a
mean completion length within 30% of the student's), also measures how far vLLM's
sampled-token logprobs are from the HF model's log-softmax on the same tokens, and writes
``results/toy/calibration.json``: one entry per family, each with its own "provenance"
block. ``python -m pwopsd.toy teacher-signal`` then adds each family's ``teacher_signal``
(``make calibrate`` runs both).

Each family runs in its own child process (one vLLM engine per process: :func:`calibrate`
starts ``python -m pwopsd.toy calibrate --worker FAMILY``, which calls :func:`run_family`).
``python -m pwopsd.toy calibrate --logprobs-only`` runs just the logprob check.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from pwopsd import prompts
from pwopsd.config import RESULTS_DIR, SamplingConfig, get_profile
from pwopsd.evaluate import extract_answer, problem_metrics
from pwopsd.provenance import provenance, write_json
from pwopsd.sampling import derive_seed, vllm_sampling_params
from pwopsd.toy.checkpoint import check_checkpoint
from pwopsd.toy.task import consistent
from pwopsd.vllm_build import build_vllm
from pwopsd.vocab import FAMILIES, METRICS

CALIBRATION_PATH = RESULTS_DIR / "toy" / "calibration.json"
DEFAULT_SET = "toy_aime24"
"""The mid-difficulty set (3 terms, 5 steps): second of four in rising difficulty."""
TEMPLATES = ("student", "eval", "teacher_solution", "teacher_answer", "teacher_answer_wrong")
WRONG_ANSWER_SHIFT = 10
BANDS = {
    "student_avg_min": 0.15,
    "student_avg_max": 0.70,
    "pass_margin_min": 0.10,
    "teacher_gap_min": 0.15,
    "answer_gap_min": 0.10,
    "answer_length_tolerance": 0.30,
}
PRETRAIN_KEYS = ("steps_done", "wall_seconds", "n_params", "final_loss")
"""What each entry's provenance copies from the checkpoint's pretrain_log.json."""


def _load_rows(set_name: str, max_problems: int | None) -> list[dict[str, str]]:
    spec = {b.name: b for b in get_profile("toy").benchmarks}[set_name]
    with open(spec.source) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return rows[:max_problems] if max_problems else rows


def render_prompts(tok: Any, template: str, rows: list[dict[str, str]]) -> list[str]:
    """The prompts of ``template`` for ``rows``, rendered with ``tok``'s chat template."""
    if template == "student":
        return [prompts.student_prompt(tok, r["problem"]) for r in rows]
    if template == "eval":
        return [prompts.eval_prompt(tok, r["problem"]) for r in rows]
    if template == "teacher_solution":
        return [prompts.teacher_prompt(tok, r["problem"], r["solution"]) for r in rows]
    if template == "teacher_answer":
        return [prompts.answer_prompt(tok, r["problem"], r["answer"]) for r in rows]
    if template == "teacher_answer_wrong":
        return [prompts.answer_prompt(tok, r["problem"], given_answer(template, r)) for r in rows]
    raise ValueError(f"template={template!r} is not known; allowed: {list(TEMPLATES)}")


def logprob_gap(llm: Any, path: str, tok: Any, n_prompts: int = 4, max_tokens: int = 48) -> float:
    """Max |vLLM sampled-token logprob - HF log-softmax| over a few sampled sequences.

    Temperature 1, no top-p/top-k, so vLLM's reported (raw) logprobs and the model's
    log-softmax are the same quantity.
    """
    rows = _load_rows("toy_math500", n_prompts)
    texts = [prompts.eval_prompt(tok, r["problem"]) for r in rows]
    raw = SamplingConfig(n=1, temperature=1.0, top_p=1.0, top_k=-1, max_new_tokens=max_tokens)
    params = vllm_sampling_params(raw, None, logprobs=True)
    outs = llm.generate(texts, params, use_tqdm=False)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    worst = 0.0
    for out in outs:
        prompt_ids = list(out.prompt_token_ids)
        comp = out.outputs[0]
        ids = torch.tensor([prompt_ids + list(comp.token_ids)])  # [1, P + C]
        with torch.no_grad():
            logp = torch.log_softmax(model(input_ids=ids).logits.float(), dim=-1)[0]  # [P + C, V]
        for j, token in enumerate(comp.token_ids):
            hf = logp[len(prompt_ids) + j - 1, token].item()
            vl = comp.logprobs[j][token].logprob
            worst = max(worst, abs(hf - vl))
    return worst


def completion_consistent(text: str) -> bool:
    """:func:`pwopsd.toy.task.consistent` on a completion, think tags dropped."""
    return consistent(text.replace(prompts.THINK_OPEN, "").replace(prompts.THINK_CLOSE, ""))


def given_answer(template: str, row: dict[str, str]) -> str:
    """The answer a template's prompt carries (a wrong one for ``teacher_answer_wrong``)."""
    if template == "teacher_answer_wrong":
        return str(int(row["answer"]) + WRONG_ANSWER_SHIFT)
    return row["answer"]


def run_family(
    family: str,
    set_name: str,
    n: int | None,
    max_problems: int | None,
    logprobs_only: bool,
    checkpoints: Path | None = None,
) -> dict:
    """Calibrate one family in this process (starts one vLLM engine)."""
    profile = get_profile("toy")
    path = str(checkpoints / f"toy-{family}") if checkpoints else profile.models[family]
    check_checkpoint(path)
    start = time.time()
    tok = AutoTokenizer.from_pretrained(path)
    # The engine factory: explicit CPU KV-cache bytes, no split prefills, eager start-up.
    llm, _, _ = build_vllm(path, profile.engine, seed=0)
    entry: dict[str, Any] = {"logprob_max_abs_diff": logprob_gap(llm, path, tok)}
    if logprobs_only:
        return entry
    s = profile.eval_sampling
    n = n or s.n
    rows = _load_rows(set_name, max_problems)
    entry = {"set": set_name, "n": n, "problems": len(rows), **entry}
    for template in TEMPLATES:
        # One request per sample, each with its own seed (as pwopsd.evaluate does): the draws
        # then do not depend on batch composition, so reruns give the same numbers.
        prompts = [p for p in render_prompts(tok, template, rows) for _ in range(n)]
        params = [
            vllm_sampling_params(s, derive_seed(0, family, set_name, template, row["id"], j))
            for row in rows
            for j in range(n)
        ]
        flat = llm.generate(prompts, params, use_tqdm=True)
        outs = [[o.outputs[0] for o in flat[i * n : (i + 1) * n]] for i in range(len(rows))]
        per_problem = []
        for row, out in zip(rows, outs, strict=True):
            answers = [extract_answer(c.text) for c in out]
            per_problem.append(problem_metrics(answers, row["answer"]))
        entry[template] = {
            key: sum(p[key] for p in per_problem) / len(per_problem) for key in METRICS
        }
        entry[template]["invalid"] = sum(p["n_invalid"] for p in per_problem) / (len(rows) * n)
        entry[template]["mean_completion_tokens"] = sum(
            len(c.token_ids) for out in outs for c in out
        ) / (len(rows) * n)
        if template == "teacher_answer_wrong":
            entry[template]["boxes_given"] = sum(
                extract_answer(c.text) == given_answer(template, row)
                for row, out in zip(rows, outs, strict=True)
                for c in out
            ) / (len(rows) * n)
        entry[template]["consistent"] = sum(
            completion_consistent(c.text) for out in outs for c in out
        ) / (len(rows) * n)
    entry["checks"] = band_checks(entry)
    entry["wall_seconds"] = round(time.time() - start, 1)
    return entry


def band_checks(entry: dict) -> dict[str, bool]:
    """Issue 9's calibration bands, evaluated on one family's entry."""
    st, te, ta = entry["student"], entry["teacher_solution"], entry["teacher_answer"]
    length_ratio = ta["mean_completion_tokens"] / st["mean_completion_tokens"]
    tol = BANDS["answer_length_tolerance"]
    return {
        "student_avg_in_band": BANDS["student_avg_min"] <= st["avg"] <= BANDS["student_avg_max"],
        "student_pass_above_avg": st["pass"] >= st["avg"] + BANDS["pass_margin_min"],
        "teacher_at_least_15_above_student": te["avg"] >= st["avg"] + BANDS["teacher_gap_min"],
        "answer_only_at_least_10_above_student": ta["avg"] >= st["avg"] + BANDS["answer_gap_min"],
        "answer_only_length_within_30pct": abs(length_ratio - 1.0) <= tol,
    }


def band_note(entry: dict) -> str:
    """One line naming the bands an entry does not meet (calibration and teacher signal)."""
    checks = dict(entry.get("checks", {}))
    signal = entry.get("teacher_signal")
    checks.update(signal["checks"] if signal else {"teacher_signal_measured": False})
    unmet = [name for name, ok in checks.items() if not ok]
    if not unmet:
        return "every band is met"
    return "not met: " + ", ".join(name.replace("_", " ") for name in unmet)


def checkpoint_paths(families: list[str], checkpoints: Path | None = None) -> dict[str, str]:
    """Family -> its checkpoint: ``checkpoints/toy-<family>`` or the toy profile's model."""
    models = get_profile("toy").models
    return {f: str(checkpoints / f"toy-{f}") if checkpoints else models[f] for f in families}


def worker_command(
    family: str,
    out: Path,
    set_name: str = DEFAULT_SET,
    n: int | None = None,
    max_problems: int | None = None,
    logprobs_only: bool = False,
    checkpoints: Path | None = None,
) -> list[str]:
    """The child process that runs :func:`run_family` and writes its entry to ``out``."""
    cmd = [sys.executable, "-m", "pwopsd.toy", "calibrate", "--worker", family]
    cmd += ["--worker-out", str(out), "--set", set_name]
    if n:
        cmd += ["--n", str(n)]
    if max_problems:
        cmd += ["--max-problems", str(max_problems)]
    if logprobs_only:
        cmd.append("--logprobs-only")
    if checkpoints:
        cmd += ["--checkpoints", str(checkpoints)]
    return cmd


def _run_child(family: str, **options: Any) -> dict:
    """:func:`run_family` in a child process (``options``: :func:`worker_command`'s)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "entry.json"
        subprocess.run(worker_command(family, out, **options), check=True)
        return json.loads(out.read_text())


def _provenance(entry: dict, path: str) -> dict:
    """The provenance block of one family's entry (with its pretraining run's numbers)."""
    log_path = Path(path) / "pretrain_log.json"
    pretrain_log = json.loads(log_path.read_text()) if log_path.exists() else None
    return provenance(
        profile="toy",
        seed=0,
        wall_seconds=entry.get("wall_seconds"),
        checkpoint=path,
        sampling=get_profile("toy").eval_sampling.__dict__,
        pretrain={k: pretrain_log[k] for k in PRETRAIN_KEYS} if pretrain_log else None,
    )


def calibrate(
    families: list[str],
    set_name: str = DEFAULT_SET,
    n: int | None = None,
    max_problems: int | None = None,
    logprobs_only: bool = False,
    checkpoints: Path | None = None,
) -> dict[str, dict]:
    """Calibrate ``families``, each in its own child process; returns family -> entry.

    Every checkpoint is checked before any engine starts. Full entries carry provenance;
    ``logprobs_only`` entries hold only ``logprob_max_abs_diff``.
    """
    paths = checkpoint_paths(families, checkpoints)
    for family in families:  # fail before any engine starts
        check_checkpoint(paths[family])
    results: dict[str, dict] = {}
    for family in families:
        entry = _run_child(
            family,
            set_name=set_name,
            n=n,
            max_problems=max_problems,
            logprobs_only=logprobs_only,
            checkpoints=checkpoints,
        )
        if not logprobs_only:
            entry["provenance"] = _provenance(entry, paths[family])
        results[family] = entry
    return results


def write_calibration(results: dict[str, dict], out: Path = CALIBRATION_PATH) -> None:
    """Write ``results`` to ``out``, each entry with its band note. A run over some families
    updates their entries and keeps the others already in ``out``."""
    if out.exists():
        previous = json.loads(out.read_text())
        results = {
            f: results.get(f, previous.get(f)) for f in FAMILIES if f in results or f in previous
        }
    for entry in results.values():
        entry["note"] = band_note(entry)
    write_json(out, results)


def print_table(results: dict[str, dict]) -> None:
    """Each family's scores per template, its band checks and its logprob gap."""
    metrics = " ".join(f"{k:>6}" for k in METRICS)
    print(
        f"\n{'family':8} {'template':17} {metrics} {'invalid':>8} {'tokens':>7} {'consistent':>10}"
    )
    for family, entry in results.items():
        for template in TEMPLATES:
            m = entry[template]
            scores = " ".join(f"{m[k]:6.3f}" for k in METRICS)
            print(
                f"{family:8} {template:17} {scores}"
                f" {m['invalid']:8.3f} {m['mean_completion_tokens']:7.1f} {m['consistent']:10.3f}"
            )
        print(
            f"{family:8} checks: {entry['checks']}  logprob max|diff|: {entry['logprob_max_abs_diff']:.2e}"
        )
