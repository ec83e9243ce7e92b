"""The on-policy self-distillation loop (PROTOCOL sections 1-3): OPSD, PW-OPSD and baselines.

Per optimizer step (``prompts_per_step`` prompts, one rollout each):

1. the current student (base + LoRA) samples one completion per prompt (:mod:`pwopsd.rollout`);
2. teacher pass: teacher template (reference solution, thinking on) + completion, adapter
   disabled, no grad; student pass: student template + completion, with grad; logits gathered
   on completion positions;
3. the method's loss (:func:`pwopsd.losses.method_loss`, whose clipped-FKL path is the
   chunked memory-efficient kernel), gradient accumulation over micro-batches, grad-norm clip,
   AdamW, learning-rate schedule.

**Weight sync.** After every optimizer step the rollout engine samples from the new weights.
The adapter is saved after each step to a new directory and the engine serves it as
``EngineConfig.adapter_mode`` says (:class:`pwopsd.sampling.VLLMEngine`). The default,
"merge", is the paper's sync: base + adapter merged (peft) and loaded into the running engine
with vLLM's in-place ``reload_weights``, which resolves the names of LoRA-wrapped layers (a
plain ``load_weights`` into a LoRA-enabled CPU engine failed in an earlier try, which is why
this loop first served a ``LoRARequest`` per update). The base is never unmerged: serving the
base again reloads its checkpoint, so no round-off accumulates. Merged weights decode 4.1x
faster than a LoRA request on the toy CPU model (8,466 vs 2,055 tokens/s at batch 64:
``python -m pwopsd.bench rollout``, ``results/bench/rollout.json``) and draw the same
samples; "lora" (a new ``LoRARequest`` per update) remains for engines that must keep their
base weights. The ``sync`` tests check, in both modes, that the engine's
log-probabilities after an update match the HF student's. The HF backend samples from the
live peft model, so it is in sync by construction.

**Runs** live in ``results/<profile>/runs/<model>/<method>/seed<k>/``: ``config.json``,
``metrics.jsonl`` (one row per step), ``checkpoints/step-<n>/`` (adapter, optimizer,
scheduler, RNG states, data position; written atomically) and ``DONE.json`` once finished. A
finished run is reused; a killed run restarts from its last checkpoint and, on CPU, ends with
the same adapter bit for bit (rollout seeds depend only on seed, step and prompt index).

**Processes.** ``python -m pwopsd.train`` runs one process; the same module runs under
``torchrun --nproc_per_node N`` or ``accelerate launch`` (``configs/accelerate/`` holds the
paper's 4x H100 DeepSpeed ZeRO-2 config). Micro-batch ``k`` of a step belongs to process
``k mod N``: one process and N processes see the same micro-batches.

CLI: ``python -m pwopsd.train --method pw_opsd --schedule moderate --seed 1 [--profile toy]
[--family qwen3] [--dry-run]``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import random
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from pwopsd.config import (
    FACTORIAL_CELLS,
    RESULTS_DIR,
    SCHEDULES,
    TRAINED_METHODS,
    ConfigError,
    Profile,
    TrainConfig,
    get_profile,
    resolve_schedule,
)
from pwopsd.provenance import model_fingerprint

TRAIN_METHODS = (*TRAINED_METHODS, *FACTORIAL_CELLS)
"""Every method the loop trains: the main-table methods and the reduction-factorial cells."""

POSITION_METHODS = (
    "pw_opsd",
    *(cell for cell, (weighting, _) in FACTORIAL_CELLS.items() if weighting == "position"),
)
"""Methods that use a position-weight schedule (PW-OPSD and the factorial's position cells)."""

Schedule = str | tuple[float, float, float]


class TrainingError(RuntimeError):
    """The run cannot go on (non-finite loss, a corrupt checkpoint): the message says why."""


# --------------------------------------------------------------------------------------
# What to train and where
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunSpec:
    """One training run: a (profile, model family, method, schedule, seed) cell."""

    method: str
    """One of :data:`TRAIN_METHODS`."""
    seed: int = 1
    """Training seed (LoRA init, data order, rollout seeds)."""
    family: str = "qwen3"
    """Model family of the profile ("qwen3", "llama", "olmo3")."""
    schedule: Schedule | None = None
    """Position-weight schedule (name or (w_min, c, s)); position methods default to Moderate."""
    profile: str = "toy"
    """"toy" or "paper"."""
    overrides: tuple[tuple[str, Any], ...] = ()
    """TrainConfig fields to replace, as (name, value) pairs."""
    root: str = ""
    """Runs root; "" means results/<profile>/runs."""

    def __post_init__(self) -> None:
        if self.method not in TRAIN_METHODS:
            raise ConfigError(
                f"method={self.method!r} is not known; allowed: {list(TRAIN_METHODS)}"
            )
        if self.schedule is not None:
            if self.method not in POSITION_METHODS:
                raise ConfigError(
                    f"schedule={self.schedule!r} given for method {self.method!r}, which has no "
                    f"position weights (position methods: {list(POSITION_METHODS)})"
                )
            resolve_schedule(self.schedule)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"seed={self.seed!r} must be a non-negative integer")

    @property
    def resolved_schedule(self) -> tuple[float, float, float] | None:
        if self.method not in POSITION_METHODS:
            return None
        return resolve_schedule(self.schedule or "moderate")

    @property
    def name(self) -> str:
        """The method's name in tables and paths: "opsd", "pw_opsd_moderate",
        "pw_opsd_w0.2_c0.4_s0.1"."""
        if self.method not in POSITION_METHODS:
            return self.method
        sched = self.schedule or "moderate"
        if isinstance(sched, str):
            return f"{self.method}_{sched}"
        w, c, s = resolve_schedule(sched)
        return f"{self.method}_w{w:g}_c{c:g}_s{s:g}"

    @property
    def dir_name(self) -> str:
        """:attr:`name`, plus a tag of the overrides when there are any, so a quick or
        differently configured run never shares (or replaces) a full run's directory."""
        if not self.overrides:
            return self.name
        import hashlib

        text = json.dumps(sorted(self.overrides), default=_jsonable)
        return f"{self.name}-{hashlib.sha256(text.encode()).hexdigest()[:8]}"

    def train_config(self, prof: Profile | None = None) -> TrainConfig:
        prof = prof or get_profile(self.profile)
        fields = {f.name for f in dataclasses.fields(TrainConfig)}
        for k, _ in self.overrides:
            if k not in fields:
                raise ConfigError(
                    f"override {k!r} is not a TrainConfig field; allowed: {sorted(fields)}"
                )
        return dataclasses.replace(prof.train, **dict(self.overrides))

    def run_dir(self) -> Path:
        root = Path(self.root) if self.root else RESULTS_DIR / self.profile / "runs"
        return root / self.family / self.dir_name / f"seed{self.seed}"


# --------------------------------------------------------------------------------------
# Distributed helpers (one process or many)
# --------------------------------------------------------------------------------------


def world() -> tuple[int, int]:
    """(rank, world size) from the launcher's environment (torchrun / accelerate launch)."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def _all_sum(x: float, acc: Any) -> float:
    if acc is None or acc.num_processes == 1:
        return x
    t = torch.tensor([x], dtype=torch.float64, device=acc.device)
    return float(acc.reduce(t, reduction="sum").item())


# --------------------------------------------------------------------------------------
# Checks before anything loads
# --------------------------------------------------------------------------------------


def check_target_modules(model: str, targets: tuple[str, ...]) -> None:
    """Fail (naming the module) when a LoRA target is not in the model, before weights load.

    Builds the architecture on the meta device from its config: no weights, no memory.
    """
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg = AutoConfig.from_pretrained(model)
    with torch.device("meta"):
        net = AutoModelForCausalLM.from_config(cfg)
    leaves = {name.rsplit(".", 1)[-1] for name, _ in net.named_modules()}
    missing = [t for t in targets if t not in leaves]
    if missing:
        raise ConfigError(
            f"lora_targets {missing} are not modules of {model!r}; it has e.g. "
            f"{sorted(x for x in leaves if x.endswith('proj'))[:12]}"
        )


def plan(spec: RunSpec, world_size: int | None = None) -> dict[str, Any]:
    """The batch arithmetic and checkpoints of a run (validated; nothing downloads)."""
    prof = get_profile(spec.profile)
    cfg = spec.train_config(prof)
    ws = world_size or world()[1]
    cfg.validate(ws)
    accum = cfg.prompts_per_step // (ws * cfg.micro_batch)
    saves = sorted(
        {s for s in range(cfg.save_every, cfg.max_steps + 1, cfg.save_every)}
        | {cfg.eval_step, cfg.max_steps}
    )
    return {
        "run_dir": str(spec.run_dir()),
        "model": prof.models[spec.family],
        "method": spec.name,
        "schedule": spec.resolved_schedule,
        "steps": cfg.max_steps,
        "processes": ws,
        "micro_batch_per_process": cfg.micro_batch,
        "grad_accumulation": accum,
        "prompts_per_step": cfg.prompts_per_step,
        "rollouts_per_step": cfg.prompts_per_step * cfg.rollout.n,
        "checkpoints": [f"step-{s}" for s in saves],
        "evaluated_step": cfg.eval_step,
        "learning_rate": cfg.learning_rate,
        "lr_schedule": cfg.lr_schedule,
        "lora": {"r": cfg.lora_r, "alpha": cfg.lora_alpha, "targets": list(cfg.lora_targets)},
        "loss": {"distill_temperature": cfg.distill_temperature, "tau_clip": cfg.tau_clip},
        "rollout": dataclasses.asdict(cfg.rollout),
        "rollout_backend": cfg.rollout_backend,
        "dtype": cfg.dtype,
        "gradient_checkpointing": cfg.gradient_checkpointing,
        "launch": (
            "accelerate launch --config_file configs/accelerate/paper_4xh100_zero2.yaml "
            f"-m pwopsd.train --profile paper --method {spec.method} --seed {spec.seed}"
            if spec.profile == "paper"
            else f"python -m pwopsd.train --method {spec.method} --seed {spec.seed}"
        ),
    }


# --------------------------------------------------------------------------------------
# Data order
# --------------------------------------------------------------------------------------


def step_rows(corpus: list[dict[str, str]], step: int, per_step: int, seed: int) -> list[int]:
    """Corpus indices of a step's prompts: a seeded permutation per epoch, read in order."""
    out = []
    for pos in range(step * per_step, (step + 1) * per_step):
        epoch, i = divmod(pos, len(corpus))
        perm = _epoch_perm(len(corpus), seed, epoch)
        out.append(perm[i])
    return out


_PERMS: dict[tuple[int, int, int], list[int]] = {}


def _epoch_perm(n: int, seed: int, epoch: int) -> list[int]:
    key = (n, seed, epoch)
    if key not in _PERMS:
        perm = list(range(n))
        random.Random(f"data-{seed}-{epoch}").shuffle(perm)
        _PERMS[key] = perm
    return _PERMS[key]


# --------------------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------------------


def _rng_state() -> dict[str, Any]:
    import numpy as np

    state = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": np.random.get_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    import numpy as np

    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def last_checkpoint(run_dir: Path) -> tuple[int, Path] | None:
    """(step, directory) of the newest complete checkpoint, or None."""
    best = None
    for d in (run_dir / "checkpoints").glob("step-*"):
        if d.name.endswith(".tmp") or not (d / "trainer_state.pt").is_file():
            continue
        step = int(d.name.split("-", 1)[1])
        if best is None or step > best[0]:
            best = (step, d)
    return best


def save_checkpoint(
    run_dir: Path, step: int, peft_model: Any, optimizer: Any, scheduler: Any, per_step: int
) -> Path:
    """Write ``checkpoints/step-<step>/`` atomically (a temp dir renamed when complete)."""
    final = run_dir / "checkpoints" / f"step-{step}"
    tmp = final.with_name(final.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    peft_model.save_pretrained(tmp / "adapter")
    torch.save(
        {
            "step": step,
            "data_position": step * per_step,
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "rng": _rng_state(),
        },
        tmp / "trainer_state.pt",
    )
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    return final


def _load_adapter_weights(peft_model: Any, adapter_dir: Path) -> None:
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    set_peft_model_state_dict(peft_model, load_file(str(adapter_dir / "adapter_model.safetensors")))


def _truncate_metrics(path: Path, keep_through_step: int) -> None:
    """Drop metric rows of steps after the checkpoint we resume from (they are redone)."""
    if not path.exists():
        return
    rows = []
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            break  # a torn last line from a kill
        if row["step"] <= keep_through_step:
            rows.append(line)
    path.write_text("".join(r + "\n" for r in rows))


# --------------------------------------------------------------------------------------
# Per-micro-batch statistics
# --------------------------------------------------------------------------------------


@torch.no_grad()
def clip_statistics(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    mask: torch.Tensor,
    temperature: float,
    tau_clip: float | None,
    chunk: int = 256,
) -> tuple[int, int, int]:
    """(capped tokens, capped vocabulary entries, valid tokens): where f_v > tau_clip.

    f_v = p_T,v (log p_T,v - log p_S,v) at ``temperature`` (PROTOCOL sec. 2); a token counts
    as capped when any of its entries is. Chunked over tokens: [chunk, V] temporaries.
    """
    s = student_logits[mask].float()  # [N, V]
    t = teacher_logits[mask].float()  # [N, V]
    if tau_clip is None or s.shape[0] == 0:
        return 0, 0, int(s.shape[0])
    tokens = entries = 0
    for i in range(0, s.shape[0], chunk):
        lps = torch.log_softmax(s[i : i + chunk] / temperature, dim=-1)
        lpt = torch.log_softmax(t[i : i + chunk] / temperature, dim=-1)
        f = torch.where(lpt > -math.inf, lpt.exp() * (lpt - lps), torch.zeros_like(lpt))
        capped = f > tau_clip  # [chunk, V]
        entries += int(capped.sum())
        tokens += int(capped.any(dim=-1).sum())
    return tokens, entries, int(s.shape[0])


# --------------------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------------------


@dataclass
class RunResult:
    """What a finished (or reused) run hands to its caller."""

    run_dir: Path
    spec: RunSpec
    reused: bool
    eval_adapter: Path
    """The adapter of the evaluated step (``eval_step``)."""
    final_adapter: Path
    summary: dict[str, Any] = field(default_factory=dict)


def _result(spec: RunSpec, cfg: TrainConfig, rd: Path, reused: bool) -> RunResult:
    done = json.loads((rd / "DONE.json").read_text())
    return RunResult(
        rd,
        spec,
        reused,
        rd / "checkpoints" / f"step-{cfg.eval_step}" / "adapter",
        rd / "checkpoints" / f"step-{cfg.max_steps}" / "adapter",
        done,
    )


def _jsonable(x: Any) -> Any:
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return dataclasses.asdict(x)
    if isinstance(x, tuple | set | frozenset):
        return list(x)
    return str(x)


def _check_config(rd: Path, payload: dict[str, Any]) -> None:
    path = rd / "config.json"
    if path.exists():
        old = json.loads(path.read_text())
        diff = sorted(k for k in set(old) | set(payload) if old.get(k) != payload.get(k))
        if diff:
            raise ConfigError(
                f"{rd} holds a run with other settings (differs in {diff}); "
                "use another root or seed, or delete the run directory"
            )
    else:
        from pwopsd.provenance import write_json

        write_json(path, payload)


def _check_base_weights(rd: Path, fingerprint: str) -> None:
    """A finished run is reused only on the base weights it was trained from: a checkpoint
    retrained in place (``make toy-models``) must not pick up adapters of the old one."""
    path = rd / "config.json"
    have = json.loads(path.read_text()).get("model_fingerprint") if path.exists() else None
    if have != fingerprint:
        raise ConfigError(
            f"{rd} holds a finished run trained from other base weights (model_fingerprint "
            f"{str(have)[:12]} vs now {fingerprint[:12]}); delete that run directory (or the "
            "whole runs/ folder after retraining the toy models) to train it afresh"
        )


def train(
    spec: RunSpec,
    *,
    engine: Any = None,
    progress: bool = True,
    stop_after: int | None = None,
) -> RunResult:
    """Train (or reuse, or resume) one run; returns where its adapters are.

    ``engine``: a vLLM engine from :func:`pwopsd.sampling.make_engine` to
    reuse for rollouts (one engine per process); built here when the backend is vLLM and none
    is given. ``stop_after``: stop after that many optimizer steps in this call (tests).
    """
    prof = get_profile(spec.profile)
    cfg = spec.train_config(prof)
    rank, ws = world()
    cfg.validate(ws)
    model_path = prof.models[spec.family]
    rd = spec.run_dir()
    fingerprint = model_fingerprint(model_path)
    if (rd / "DONE.json").is_file():
        _check_base_weights(rd, fingerprint)
        return _result(spec, cfg, rd, reused=True)
    check_target_modules(model_path, cfg.lora_targets)
    payload = {
        "spec": {**dataclasses.asdict(spec), "overrides": dict(spec.overrides)},
        "method": spec.method,
        "schedule": spec.resolved_schedule,
        "model": model_path,
        "model_fingerprint": fingerprint,
        "train": dataclasses.asdict(cfg),
        "processes": ws,
    }
    payload = json.loads(json.dumps(payload, default=_jsonable))
    if rank == 0:
        rd.mkdir(parents=True, exist_ok=True)
        _check_config(rd, payload)
    return _train_loop(spec, prof, cfg, rd, model_path, engine, progress, stop_after)


def _train_loop(
    spec: RunSpec,
    prof: Profile,
    cfg: TrainConfig,
    rd: Path,
    model_path: str,
    engine: Any,
    progress: bool,
    stop_after: int | None,
) -> RunResult:
    from accelerate import Accelerator
    from peft import LoraConfig, get_peft_model
    from tqdm.auto import tqdm
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from pwopsd import losses
    from pwopsd.data import load_training_corpus
    from pwopsd.provenance import provenance, write_json
    from pwopsd.rollout import (
        EngineSampler,
        HFSampler,
        align,
        encode,
        gather_positions,
        render_prompts,
        rollout_seeds,
    )

    t_start = time.perf_counter()
    acc = Accelerator(cpu=not torch.cuda.is_available())
    rank, ws = acc.process_index, acc.num_processes
    torch.manual_seed(cfg.seed * 1000 + spec.seed)
    corpus = load_training_corpus(prof.train_data)
    tok = AutoTokenizer.from_pretrained(model_path)
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    dtype = getattr(torch, cfg.dtype)
    base = AutoModelForCausalLM.from_pretrained(model_path, dtype=dtype)
    if cfg.gradient_checkpointing:
        base.gradient_checkpointing_enable()
        base.enable_input_require_grads()
    lora = LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=0.0,
        target_modules=list(cfg.lora_targets),
        task_type="CAUSAL_LM",
    )
    torch.manual_seed(derive_run_seed(spec))
    peft_model = get_peft_model(base, lora)
    params = [p for p in peft_model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    total = cfg.max_steps
    if cfg.lr_schedule == "linear":
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: max(0.0, 1 - s / total))
    else:
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)

    start = 0
    last = last_checkpoint(rd)
    if last is not None:
        start, ck = last
        _load_adapter_weights(peft_model, ck / "adapter")
        state = torch.load(ck / "trainer_state.pt", weights_only=False)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        _set_rng_state(state["rng"])
    metrics_path = rd / "metrics.jsonl"
    if rank == 0:
        _truncate_metrics(metrics_path, start)
    model, optimizer = acc.prepare(peft_model, optimizer)
    unwrapped = acc.unwrap_model(model)

    own_engine = None
    if cfg.rollout_backend == "vllm":
        if engine is None:
            from pwopsd.sampling import make_engine

            engine = own_engine = make_engine(
                "vllm", model_path, profile=prof, enable_lora=True, max_lora_rank=cfg.lora_r
            )
        sampler: Any = EngineSampler(engine, prof.engine.max_model_len)
    else:
        sampler = HFSampler(prof.engine.max_model_len)

    schedule = spec.resolved_schedule
    per_pass = ws * cfg.micro_batch
    n_micro = cfg.prompts_per_step // cfg.micro_batch  # over all processes
    mine = [k for k in range(n_micro) if k % ws == rank]
    max_len = prof.engine.max_model_len
    bar = tqdm(
        total=cfg.max_steps,
        initial=start,
        desc=f"train {spec.name} seed{spec.seed}",
        disable=not progress or rank != 0,
        dynamic_ncols=True,
    )
    rollout_dir = rd / "rollout_adapter"
    steps_here = 0
    try:
        for step in range(start, cfg.max_steps):
            t_step = time.perf_counter()
            idx = step_rows(corpus, step, cfg.prompts_per_step, spec.seed)
            # Weight sync: the engine serves the adapter of the current weights.
            adapter = None
            if cfg.rollout_backend == "vllm":
                adapter_dir = rollout_dir / f"step-{step}"
                if rank == 0:
                    shutil.rmtree(rollout_dir, ignore_errors=True)
                    unwrapped.save_pretrained(adapter_dir)
                acc.wait_for_everyone()
                adapter = str(adapter_dir)
            sums = dict.fromkeys(
                (
                    "loss",
                    "fkl",
                    "w_mean",
                    "tokens",
                    "rollout_tokens",
                    "rollout_s",
                    "update_s",
                    "truncated",
                    "empty",
                    "cut_to_fit",
                    "prompt_too_long",
                    "clip_tokens",
                    "clip_entries",
                    "clip_valid",
                    "rows",
                    "len_max",
                ),
                0.0,
            )
            w_min_seen, w_max_seen = math.inf, -math.inf
            micro = []
            for k in mine:
                rows = [corpus[i] for i in idx[k * cfg.micro_batch : (k + 1) * cfg.micro_batch]]
                texts = [render_prompts(tok, r) for r in rows]
                micro.append((k, rows, texts))
            # Rollouts: vLLM takes every prompt of this process at once (a seed per prompt);
            # HF generates one micro-batch at a time (a seed per micro-batch).
            rollouts = {}
            if cfg.rollout_backend == "vllm":
                flat = [(k, j, t) for k, _, texts in micro for j, t in enumerate(texts)]
                ids = [encode(tok, t[0]) for _, _, t in flat]
                seeds = rollout_seeds(
                    spec.seed, step, [k * cfg.micro_batch + j for k, j, _ in flat]
                )
                r = sampler.sample([t[0] for _, _, t in flat], ids, cfg.rollout, seeds, adapter)
                for n, (k, _j, _) in enumerate(flat):
                    rollouts.setdefault(k, []).append((r.completions[n], r.finish_reasons[n]))
                sums["rollout_s"] += r.seconds
                sums["prompt_too_long"] += r.prompt_too_long
            else:
                for k, _, texts in micro:
                    ids = [encode(tok, t[0]) for t in texts]
                    r = sampler.sample(
                        [t[0] for t in texts],
                        ids,
                        cfg.rollout,
                        rollout_seeds(spec.seed, step, [k]),
                        None,
                        model=unwrapped,
                        tokenizer=tok,
                    )
                    rollouts[k] = list(zip(r.completions, r.finish_reasons))
                    sums["rollout_s"] += r.seconds
                    sums["prompt_too_long"] += r.prompt_too_long

            t_update = time.perf_counter()
            model.train()
            for n, (k, _rows, texts) in enumerate(micro):
                comps = [c for c, _ in rollouts[k]]
                finish = [f for _, f in rollouts[k]]
                batch = align(
                    [encode(tok, t[0]) for t in texts],
                    [encode(tok, t[1]) for t in texts],
                    comps,
                    max_model_len=max_len,
                    pad_id=pad_id,
                )
                with torch.no_grad(), unwrapped.disable_adapter():
                    t_logits = unwrapped(
                        input_ids=batch.teacher_ids, attention_mask=batch.teacher_attention
                    ).logits
                    t_logits = gather_positions(t_logits, batch.teacher_positions)  # [B, T, V]
                sync = acc.no_sync(model) if n < len(micro) - 1 else contextlib.nullcontext()
                with sync:
                    s_logits = model(
                        input_ids=batch.student_ids, attention_mask=batch.student_attention
                    ).logits
                    s_logits = gather_positions(s_logits, batch.student_positions)  # [B, T, V]
                    out = losses.method_loss(
                        spec.method,
                        s_logits,
                        t_logits,
                        batch.mask,
                        tokens=batch.tokens,
                        step=step,
                        temperature=cfg.distill_temperature,
                        tau_clip=cfg.tau_clip,
                        schedule=schedule or "moderate",
                    )
                    if not torch.isfinite(out.loss):
                        raise TrainingError(
                            f"non-finite loss ({out.loss.item()}) at step {step + 1}, "
                            f"micro-batch {k}; the last good checkpoint is kept in "
                            f"{rd / 'checkpoints'} (rerun resumes from it)"
                        )
                    acc.backward(out.loss / len(mine))
                valid = int(batch.mask.sum())
                sums["loss"] += float(out.loss.detach())
                # EOPD and REOPOLD have no clipped forward KL: their rows log None, not 0
                has_fkl = "fkl_token_mean" in out.metrics
                sums["fkl"] += out.metrics.get("fkl_token_mean", 0.0) * valid
                sums["tokens"] += valid
                sums["rollout_tokens"] += sum(len(c) for c in comps)
                sums["truncated"] += sum(f == "length" for f in finish)
                sums["empty"] += batch.stats["empty"]
                sums["cut_to_fit"] += batch.stats["cut_to_fit"]
                sums["rows"] += len(comps)
                sums["len_max"] = max(sums["len_max"], max((len(c) for c in comps), default=0))
                if schedule is not None and valid:
                    w = losses.position_weights(batch.mask, *schedule)[batch.mask]
                    sums["w_mean"] += float(w.sum())
                    w_min_seen = min(w_min_seen, float(w.min()))
                    w_max_seen = max(w_max_seen, float(w.max()))
                if cfg.clip_stats:
                    ct, ce, cv = clip_statistics(
                        s_logits.detach(),
                        t_logits,
                        batch.mask,
                        cfg.distill_temperature,
                        cfg.tau_clip,
                    )
                    sums["clip_tokens"] += ct
                    sums["clip_entries"] += ce
                    sums["clip_valid"] += cv
            grad_norm = acc.clip_grad_norm_(params, cfg.max_grad_norm)
            lr = scheduler.get_last_lr()[0]
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            update_s = time.perf_counter() - t_update

            tot = {k: _all_sum(v, acc) for k, v in sums.items() if k != "len_max"}
            vocab = s_logits.shape[-1]
            row = {
                "step": step + 1,
                "loss": tot["loss"] / n_micro,
                "fkl_token_mean": tot["fkl"] / max(tot["tokens"], 1) if has_fkl else None,
                "completion_len_mean": tot["rollout_tokens"] / max(tot["rows"], 1),
                "completion_len_max": sums["len_max"],
                "frac_truncated": tot["truncated"] / max(tot["rows"], 1),
                "empty": int(tot["empty"]),
                "cut_to_fit": int(tot["cut_to_fit"]),
                "prompt_too_long": int(tot["prompt_too_long"]),
                "valid_tokens": int(tot["tokens"]),
                "rollout_tokens_per_s": tot["rollout_tokens"] / max(tot["rollout_s"], 1e-9),
                "update_tokens_per_s": tot["tokens"] / max(_all_sum(update_s, acc), 1e-9),
                "grad_norm": float(grad_norm),
                "lr": lr,
                "seconds": time.perf_counter() - t_step,
            }
            if schedule is not None:
                row["position_weight_mean"] = tot["w_mean"] / max(tot["tokens"], 1)
                row["position_weight_min"] = w_min_seen if w_min_seen < math.inf else None
                row["position_weight_max"] = w_max_seen if w_max_seen > -math.inf else None
            if cfg.clip_stats:
                row["clip_frac_tokens"] = tot["clip_tokens"] / max(tot["clip_valid"], 1)
                row["clip_frac_entries"] = tot["clip_entries"] / max(tot["clip_valid"] * vocab, 1)
            if rank == 0:
                with open(metrics_path, "a") as f:
                    f.write(json.dumps(row) + "\n")
            done = step + 1
            if done % cfg.save_every == 0 or done in (cfg.eval_step, cfg.max_steps):
                if rank == 0:
                    save_checkpoint(rd, done, unwrapped, optimizer, scheduler, cfg.prompts_per_step)
                acc.wait_for_everyone()
            bar.update(1)
            bar.set_postfix(
                loss=f"{row['loss']:.4f}",
                tok_s=f"{row['rollout_tokens_per_s']:.0f}",
            )
            steps_here += 1
            if stop_after is not None and steps_here >= stop_after and done < cfg.max_steps:
                return RunResult(rd, spec, False, Path(), Path(), {"stopped_at": done})
    finally:
        bar.close()
        shutil.rmtree(rollout_dir, ignore_errors=True)
        if own_engine is not None:
            own_engine.close()
    if rank == 0:
        write_json(
            rd / "DONE.json",
            {
                "steps": cfg.max_steps,
                "method": spec.name,
                "eval_step": cfg.eval_step,
                "provenance": provenance(
                    profile=spec.profile,
                    seed=spec.seed,
                    wall_seconds=time.perf_counter() - t_start,
                ),
                "processes": ws,
                "per_pass": per_pass,
            },
        )
    acc.wait_for_everyone()
    return _result(spec, cfg, rd, reused=False)


def derive_run_seed(spec: RunSpec) -> int:
    """LoRA-init seed of a run: a function of the run seed only (same init for every method)."""
    from pwopsd.sampling import derive_seed

    return derive_seed("lora-init", spec.seed)


# --------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------


def _parse_schedule(text: str | None) -> Schedule | None:
    if text is None or text in SCHEDULES:
        return text
    parts = text.split(",")
    if len(parts) != 3:
        raise ConfigError(
            f"--schedule {text!r}: a name {list(SCHEDULES)} or 'w_min,c,s' (e.g. 0.25,0.3,0.1)"
        )
    return tuple(float(p) for p in parts)  # type: ignore[return-value]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pwopsd.train", description=__doc__.split("\n")[0])
    ap.add_argument("--method", required=True, choices=TRAIN_METHODS)
    ap.add_argument("--schedule", default=None, help="name or w_min,c,s (position methods)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--family", default="qwen3")
    ap.add_argument("--profile", default="toy")
    ap.add_argument("--root", default="", help="runs root (default results/<profile>/runs)")
    ap.add_argument("--max-steps", type=int, default=None)
    ap.add_argument("--micro-batch", type=int, default=None)
    ap.add_argument("--learning-rate", type=float, default=None)
    ap.add_argument("--backend", choices=("vllm", "hf"), default=None, help="rollout backend")
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="any TrainConfig field, value as YAML (e.g. --set tau_clip=null --set save_every=5)",
    )
    ap.add_argument(
        "--processes", type=int, default=None, help="with --dry-run: plan for this many processes"
    )
    ap.add_argument("--dry-run", action="store_true", help="validate and print the plan")
    args = ap.parse_args(argv)
    import yaml

    overrides: list[tuple[str, Any]] = []
    for item in args.set:
        if "=" not in item:
            print(f"error: --set {item!r} must look like FIELD=VALUE", file=sys.stderr)
            return 2
        key, value = item.split("=", 1)
        overrides.append((key.strip(), yaml.safe_load(value)))
    for name, value in (
        ("max_steps", args.max_steps),
        ("micro_batch", args.micro_batch),
        ("learning_rate", args.learning_rate),
        ("rollout_backend", args.backend),
    ):
        if value is not None:
            overrides.append((name, value))
    if args.max_steps is not None:
        prof_cfg = get_profile(args.profile).train
        overrides.append(("eval_step", min(prof_cfg.eval_step, args.max_steps)))
    try:
        spec = RunSpec(
            method=args.method,
            seed=args.seed,
            family=args.family,
            schedule=_parse_schedule(args.schedule),
            profile=args.profile,
            overrides=tuple(overrides),
            root=args.root,
        )
        the_plan = plan(spec, world_size=args.processes)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.dry_run:
        print(json.dumps(the_plan, indent=2))
        return 0
    result = train(spec)
    print(f"{'reused' if result.reused else 'trained'} {result.run_dir}")
    print(f"evaluated adapter: {result.eval_adapter}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
