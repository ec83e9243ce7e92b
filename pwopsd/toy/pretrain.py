"""Pretrain the toy checkpoints (issue 3, "Deliver" 3).

``python -m pwopsd.toy pretrain --family {qwen3,llama,olmo3,all} [--minutes M] [--steps N]
[--out DIR] [--seed S]`` trains each family from scratch and writes
``checkpoints/toy-<family>/`` (config, model.safetensors, tokenizer with the family's chat
template, generation_config, pretrain_log.json).

What each training sequence looks like (prompt templates, completions, masked spans) is
:mod:`pwopsd.toy.examples`: :class:`Mixture` holds the shares and :data:`FAMILY_SETTINGS`
where a family departs from the defaults.

Problems are drawn from the training difficulty with a fixed seed, excluding every held-out
problem. The schedule (linear warm-up, cosine decay) runs on ``progress = max(step/steps,
elapsed/(minutes*60))``: a run that hits the wall-clock cap first decays on time, so it is
reproducible only on a machine of the same speed. The defaults (2400 steps, 90-minute cap)
are step-exact on a 2-core machine, busy or not; each checkpoint's pretrain_log.json records
its steps, mixture and wall time.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from tokenizers import Tokenizer
from tqdm import tqdm
from transformers import GenerationConfig, PreTrainedModel, PreTrainedTokenizerFast

from pwopsd.toy import models
from pwopsd.toy import tokenizer as toy_tokenizer
from pwopsd.toy.build_data import train_set
from pwopsd.toy.examples import TEMPLATE_MIX, ExampleStream, Mixture

__all__ = [
    "FAMILY_SETTINGS",
    "Mixture",
    "PretrainConfig",
    "build_tokenizer",
    "family_config",
    "lr_at",
    "pretrain",
    "save_checkpoint",
]
"""``Mixture`` lives in :mod:`pwopsd.toy.examples`; it is re-exported here, beside the config
that holds it (``PretrainConfig.mix``)."""


@dataclass
class PretrainConfig:
    """One family's pretraining run: schedule, optimizer, seed and example mixture."""

    family: str
    """Model family (see pwopsd.vocab.FAMILIES)."""
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


# ------------------------------------------------------------------ tokenizer


def build_tokenizer() -> Tokenizer:
    """The shared toy BPE, trained on the training corpus and the templates' fixed words."""
    rows = train_set()
    texts = [r["problem"] + "\n" + r["solution"] for r in rows]
    texts += ["user\n", "assistant\n", "system\n"] * 200
    return toy_tokenizer.train_tokenizer(texts)


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


def save_checkpoint(
    model: PreTrainedModel, hf_tok: PreTrainedTokenizerFast, out_dir: Path, log: dict
) -> None:
    """Write ``model``, its tokenizer, generation config and ``log`` (pretrain_log.json)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    model.eval()
    model.generation_config = GenerationConfig(
        eos_token_id=hf_tok.eos_token_id, pad_token_id=hf_tok.pad_token_id
    )
    model.save_pretrained(str(out_dir))
    toy_tokenizer.save(hf_tok, out_dir)
    (out_dir / "pretrain_log.json").write_text(json.dumps(log, indent=2) + "\n")
