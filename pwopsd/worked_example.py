"""One toy rollout scored token by token by OPSD and PW-OPSD (the book's worked example).

The student's rollout of one toy validation problem, sampled from the shipped toy checkpoint
with the training rollout sampling and a fixed seed (:class:`pwopsd.rollout.HFSampler`); its
student and teacher prompts and completion positions as the training loop builds them
(:func:`pwopsd.rollout.render_prompts`, :func:`pwopsd.rollout.align`); one forward pass of the
base model per prompt (the untrained student has no adapter); and per completion token

* the clipped forward KL of the paper's OPSD objective (PROTOCOL sec. 2),
  ``KL_t = sum_v min(p_T,v (log p_T,v - log p_S,v), tau_clip)``, ``p = softmax(logits / T)``,
  from :func:`pwopsd.losses.per_token_clipped_fkl` at the toy profile's ``T`` and ``tau_clip``
  (what the loop passes to :func:`pwopsd.losses.method_loss`);
* PW-OPSD's position weight (PROTOCOL sec. 2), ``w(u) = w_min + (1 - w_min) sigmoid((u - c) / s)``
  with ``u = (i - 0.5) / L``, Moderate schedule, from :func:`pwopsd.losses.position_weights`;
* the first wrong step: the token holding the first character no valid route continues with
  (:func:`pwopsd.toy.task.first_error`, the toy task's route checker).

The rule that picks the problem: the first validation problem, in file order, whose rollout
ends and has a wrong step (else the first problem).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from itertools import groupby
from typing import Any

import matplotlib.pyplot as plt  # headless: matplotlib falls back to Agg; kernels use inline
import pandas as pd
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
from transformers.utils import logging as hf_logging

from pwopsd import jsonl, losses
from pwopsd.config import TOY_DATA_DIR, TrainConfig, get_profile
from pwopsd.plots import method_color
from pwopsd.rollout import HFSampler, align, encode, gather_positions, render_prompts
from pwopsd.sampling import derive_seed
from pwopsd.toy import check_checkpoint, task
from pwopsd.vocab import DEFAULT_SCHEDULE, METHOD_LABELS

FAMILY = "qwen3"
SET_NAME = "toy_val"
SEED = 0
SCAN = 16  # how many validation problems the rule scans for a rollout with a wrong step
WRONG_COLOR = "#D55E00"  # the first wrong token's marker: Okabe-Ito vermillion, no method's
Tensor = torch.Tensor
Schedule = tuple[float, float, float]


@dataclass(frozen=True)
class WorkedExample:
    """One rollout and its per-token loss terms (index ``t``: the ``t``-th completion token)."""

    row: dict[str, str]  # the validation row: id, problem, answer, reference solution
    student_prompt: str
    teacher_prompt: str
    completion: tuple[int, ...]  # the completion's token ids, the end-of-turn token included
    tokens: tuple[str, ...]  # each completion token's text
    rollout: str  # the completion's text without the end-of-turn token
    finished: bool  # the rollout ended with the end-of-turn token
    answer: str | None  # what the rollout boxes (its last box); None: no box
    first_wrong: int | None  # index of the token holding the first wrong character, or None
    steps: tuple[int | None, ...]  # each token's 1-based step (line); None: box line, end token
    kl: tuple[float, ...]  # per-token clipped forward KL, teacher || student, nats
    weights: tuple[float, ...]  # per-token position weight w(u)
    opsd_loss: float  # OPSD's loss on this rollout alone: mean(kl)
    pw_opsd_loss: float  # PW-OPSD's loss on this rollout alone: sum(w * kl) / L
    temperature: float
    tau_clip: float | None
    schedule: Schedule  # (w_min, c, s)
    seed: int
    scanned: int  # validation problems sampled until this one was chosen (itself included)


def load_model(path: str) -> tuple[Any, Any]:
    """(tokenizer, fp32 model in eval mode) of a toy checkpoint, loaded without a progress bar."""
    check_checkpoint(path)
    bar = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # no progress bar on a book page's stderr
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    if bar:
        hf_logging.enable_progress_bar()
    return tok, model


def locate(tok: Any, row: dict[str, str], completion: list[int], finished: bool) -> dict[str, Any]:
    """Rollout text, boxed answer, first wrong token and each token's step, for one completion
    (ending in its end-of-turn token when ``finished``)."""
    body = completion[:-1] if finished else completion
    text = tok.decode(body)
    ends = [len(tok.decode(body[: j + 1])) for j in range(len(body))] + [float("inf")]
    err = task.first_error(task.parse_problem(row["problem"]), text, finished=finished)
    # the token whose text holds character ``err`` (past the text: the end-of-turn token)
    first_wrong = None if err is None else next(j for j, end in enumerate(ends) if end > err)
    box = text.rfind("\\boxed")
    steps: list[int | None] = []
    for j in range(len(completion)):
        start = ends[j - 1] if j else 0
        on_step = j < len(body) and (box < 0 or start < box)
        steps.append(text.count("\n", 0, start) + 1 if on_step else None)
    answer = (re.findall(r"\\boxed\{([^{}]*)\}", text) or [None])[-1]  # the last box
    return {"rollout": text, "answer": answer, "first_wrong": first_wrong, "steps": steps}


@torch.no_grad()
def aligned_logits(
    model: Any, tok: Any, prompts: tuple[str, str], completion: list[int], max_len: int
) -> tuple[Tensor, Tensor, Tensor]:
    """Student and teacher logits on the completion positions, and the mask: ([1, T, V] x 2,
    [1, T]), built by the training loop's :func:`pwopsd.rollout.align`."""
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    student, teacher = (encode(tok, p) for p in prompts)
    batch = align([student], [teacher], [completion], max_model_len=max_len, pad_id=pad)
    out_s = model(input_ids=batch.student_ids, attention_mask=batch.student_attention)
    out_t = model(input_ids=batch.teacher_ids, attention_mask=batch.teacher_attention)
    s_logits = gather_positions(out_s.logits, batch.student_positions)  # [1, T, V]
    t_logits = gather_positions(out_t.logits, batch.teacher_positions)  # [1, T, V]
    return s_logits, t_logits, batch.mask


def token_terms(
    logits: tuple[Tensor, Tensor, Tensor], cfg: TrainConfig, schedule: Schedule
) -> dict[str, Any]:
    """Per-token clipped forward KL and w(u), and the OPSD and PW-OPSD losses of the rollout, all
    from :mod:`pwopsd.losses` with the training loop's settings ``cfg``. ``logits``: student and
    teacher logits [B, T, V] and the mask [B, T] of :func:`aligned_logits`."""
    s_logits, t_logits, mask = logits
    temperature, tau_clip = cfg.distill_temperature, cfg.tau_clip
    kl = losses.per_token_clipped_fkl(s_logits, t_logits, temperature, tau_clip)  # [B, T]
    w = losses.position_weights(mask, *schedule)  # [B, T]
    args = (s_logits, t_logits, mask)
    kwargs = {"temperature": temperature, "tau_clip": tau_clip, "schedule": schedule}
    return {
        "kl": kl[mask].tolist(),
        "weights": w[mask].tolist(),
        "opsd_loss": float(losses.method_loss("opsd", *args, **kwargs).loss),
        "pw_opsd_loss": float(losses.method_loss("pw_opsd", *args, **kwargs).loss),
    }


def worked_example(family: str = FAMILY, seed: int = SEED, scan: int = SCAN) -> WorkedExample:
    """Sample, choose and score the worked example (deterministic for a given ``seed``)."""
    profile = get_profile("toy")
    cfg, max_len = profile.train, profile.engine.max_model_len
    schedule = losses.resolve_schedule(DEFAULT_SCHEDULE)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a 1M-parameter model: extra threads only contend
    try:
        tok, model = load_model(profile.models[family])
        sampler, chosen = HFSampler(max_len), None
        for n, row in enumerate(jsonl.read(TOY_DATA_DIR / f"{SET_NAME}.jsonl")[:scan], start=1):
            prompts = render_prompts(tok, row)
            draw = sampler.sample([prompts[0]], [encode(tok, prompts[0])], cfg.rollout,
                                  [derive_seed("worked_example", seed, row["id"])], None,
                                  model=model, tokenizer=tok)  # fmt: skip
            completion, finished = list(draw.completions[0]), draw.finish_reasons[0] == "stop"
            found = locate(tok, row, completion, finished)
            if chosen is None or (finished and found["first_wrong"] is not None):
                chosen = (n, row, prompts, completion, finished, found)
            if finished and found["first_wrong"] is not None:
                break
        n, row, prompts, completion, finished, found = chosen
        logits = aligned_logits(model, tok, prompts, completion, max_len)
        terms = token_terms(logits, cfg, schedule)
    finally:
        torch.set_num_threads(threads)
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in (found | terms).items()}
    return WorkedExample(row=row, student_prompt=prompts[0], teacher_prompt=prompts[1],
                         completion=tuple(completion), finished=finished,
                         tokens=tuple(tok.decode([t]) for t in completion),
                         temperature=cfg.distill_temperature, tau_clip=cfg.tau_clip,
                         schedule=schedule, seed=seed, scanned=n, **fields)  # fmt: skip


def summary(ex: WorkedExample) -> dict[str, Any]:
    """The rollout's summed clipped KL under OPSD (weight 1) and PW-OPSD (weight w(u)): in all,
    before the first wrong token and from it on, and where that token is (None: no wrong step)."""
    weighted = [w * k for w, k in zip(ex.weights, ex.kl, strict=True)]
    out = {"tokens": len(ex.kl), "total_opsd": sum(ex.kl), "total_pw_opsd": sum(weighted)}
    cut = ex.first_wrong
    out["first_wrong_token"] = None if cut is None else cut + 1
    out["first_wrong_step"] = None if cut is None else ex.steps[cut]
    out["first_wrong_u"] = None if cut is None else (cut + 0.5) / len(ex.kl)
    out["first_wrong_weight"] = None if cut is None else ex.weights[cut]
    for name, part in (("before", slice(0, cut)), ("from_wrong", slice(cut, None))):
        out[f"{name}_opsd"] = None if cut is None else sum(ex.kl[part])
        out[f"{name}_pw_opsd"] = None if cut is None else sum(weighted[part])
    return out


def _pct(part: float, whole: float) -> str:
    return f"{100 * part / whole:.0f}%" if whole else "-"


def explain(ex: WorkedExample) -> str:
    """What the figure shows, in words, every number read from ``ex`` (Markdown)."""
    s, (w_min, c, _) = summary(ex), ex.schedule
    n, total, kept = s["tokens"], s["total_opsd"], s["total_pw_opsd"]
    text = (
        f"Over its {n} tokens the rollout carries {total:.3f} nats of clipped KL. OPSD gives "
        f"every token weight 1 and averages: its loss on this rollout alone is {ex.opsd_loss:.4f}. "
        f"PW-OPSD keeps {kept:.3f} nats ({_pct(kept, total)} of the sum) and also divides by "
        f"{n}: {ex.pw_opsd_loss:.4f}."
    )
    if ex.first_wrong is None:
        return text + " The route checker finds no wrong step in this rollout."
    cut, step = ex.first_wrong, s["first_wrong_step"]
    where = "the end" if step is None else f"step {step}, `{ex.rollout.splitlines()[step - 1]}`"
    top = ", the largest of any token" if ex.kl[cut] == max(ex.kl) else ""
    text += (
        f" The first wrong step is {where}: no valid route continues with its token #{cut + 1} "
        f"(`{show_token(ex.tokens[cut])}`, u = {s['first_wrong_u']:.2f}). The teacher's clipped "
        f"KL there is {ex.kl[cut]:.3f} nats ({_pct(ex.kl[cut], total)} of the sum{top}); OPSD "
        f"counts it in full, PW-OPSD with weight {s['first_wrong_weight']:.2f}."
    )
    before, after = s["before_opsd"], s["from_wrong_opsd"]
    if cut:
        text += (
            f" The {cut} token{'s' * (cut > 1)} before it carr{'y' if cut > 1 else 'ies'} "
            f"{before:.3f} nats ({_pct(before, total)} of the sum), of which PW-OPSD removes "
            f"{_pct(before - s['before_pw_opsd'], before)}."
        )
    text += (
        f" From the first wrong token on, PW-OPSD removes "
        f"{_pct(after - s['from_wrong_pw_opsd'], after)} of {after:.3f} nats."
    )
    side = "before" if s["first_wrong_u"] < c else "after"
    text += f" The mistake lies {side} the centre of the Moderate schedule (u = {c:.2f}), "
    if side == "before":
        return text + (
            f"where the weight is near its floor of {w_min:.2f}: here position weighting turns "
            "down the teacher's signal at the student's own mistake."
        )
    return text + "so position weighting keeps most of the teacher's signal there."


def show_token(text: str) -> str:
    """A token as the table and the figure print it (a newline as the return sign)."""
    return text.replace("\n", "\u21b5") or "\u2205"


def token_frame(ex: WorkedExample) -> pd.DataFrame:
    """One row per completion token, indexed by position ("#"): token, step ("-" on the box line
    and the end-of-turn token), clipped KL, w(u), w x KL (as printed); the first wrong is flagged."""
    rows = []
    for t, (tok, step, k, w) in enumerate(zip(ex.tokens, ex.steps, ex.kl, ex.weights, strict=True)):
        rows.append({
            "Token": show_token(tok) + (" \u25c0 first wrong" if t == ex.first_wrong else ""),
            "Step": "-" if step is None else str(step),
            "Clipped KL (nats)": f"{k:.3f}",
            "w(u)": f"{w:.2f}",
            "w \u00d7 KL (nats)": f"{w * k:.3f}",
        })  # fmt: skip
    frame = pd.DataFrame(rows, index=range(1, len(rows) + 1))
    frame.columns.name = "#"  # printed in the header's corner: one header row
    return frame


def plot_worked_example(ex: WorkedExample) -> plt.Figure:
    """Top: each token's clipped forward KL (OPSD's weight 1) and w(u) x KL (PW-OPSD); bottom:
    w(u); under it, each line of the rollout below its tokens. A dashed line marks the first
    wrong token, the tokens before it are shaded."""
    x, lines = list(range(1, len(ex.kl) + 1)), ex.rollout.split("\n")
    weighted = [w * k for w, k in zip(ex.weights, ex.kl, strict=True)]
    fig, (top, low) = plt.subplots(2, 1, figsize=(8.5, 4.6), sharex=True, layout="constrained",
                                   gridspec_kw={"height_ratios": (2.2, 1.0)})  # fmt: skip
    opsd, pw = method_color("opsd"), method_color(f"pw_opsd_{DEFAULT_SCHEDULE}")
    pw_name = f"{METHOD_LABELS['pw_opsd']}, {DEFAULT_SCHEDULE.capitalize()}"
    handles = [
        top.bar(x, ex.kl, width=0.8, color=opsd, alpha=0.45, label="clipped KL: OPSD (weight 1)"),
        top.bar(x, weighted, width=0.45, color=pw, label=f"w(u) \u00d7 clipped KL: {pw_name}"),
        *low.plot(x, ex.weights, color=pw, lw=2, marker=".", label=f"w(u): {pw_name}"),
        low.axhline(1.0, color=opsd, ls=":", lw=1.2, label="weight in OPSD: 1"),
    ]
    top.axhline(0, color="grey", lw=0.6)
    top.set(ylabel="clipped KL (nats)")
    low.set(ylim=(0, 1.08), xlim=(0.4, len(x) + 0.6), ylabel="w(u)", xticks=x, xticklabels=[])
    low.set_xlabel("completion tokens (one tick each) under the line they write", labelpad=16)
    wrong = -1 if ex.first_wrong is None else ex.first_wrong + 1
    for step, group in groupby(x, key=lambda i: ex.steps[i - 1]):
        span, box = list(group), ex.rollout.rfind("\\boxed")
        text = lines[step - 1] if step else ex.rollout[box:] if box >= 0 else ""
        low.text((span[0] + span[-1]) / 2, -0.1, text, transform=low.get_xaxis_transform(),
                 ha="center", va="top", fontsize=8.5, fontfamily="monospace",
                 color=WRONG_COLOR if wrong in span else "black")  # fmt: skip
        for ax in (top, low):
            ax.axvline(span[-1] + 0.5, color="grey", lw=0.5, alpha=0.4)
    if ex.first_wrong is not None:
        for ax in (top, low):
            line = ax.axvline(wrong, color=WRONG_COLOR, ls="--", lw=1.4)
            shade = ax.axvspan(0.4, wrong - 0.5, color="grey", alpha=0.15, label="tokens before it")
        line.set_label(f"first wrong token (#{wrong})")
        handles += [line, shade] if wrong > 1 else [line]
    fig.legend(handles=handles, loc="outside lower center", ncol=3, fontsize=8, frameon=False)
    return fig
