"""The on-policy self-distillation loop: one named function per part of a step.

:func:`train` reuses a finished run, or builds the student, resumes from the newest verified
checkpoint and runs the steps; each step is :func:`sync_adapter` (the engine serves the
current weights), :func:`draw_rollouts` (one completion per prompt from the current student),
:func:`update` (teacher and student passes, loss, backward per micro-batch, then one optimizer
step), :func:`metrics_row` (log) and :func:`save_if_due` (checkpoint). See the package
docstring for weight sync, run directories and processes.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from peft import LoraConfig, get_peft_model
from tqdm.auto import tqdm
from transformers import AutoModelForCausalLM, AutoTokenizer

from pwopsd import jsonl
from pwopsd.config import ConfigError, Profile, TrainConfig, get_profile
from pwopsd.data import load_training_corpus
from pwopsd.engine import make_engine
from pwopsd.provenance import model_fingerprint, provenance, write_json
from pwopsd.rollout import (
    EngineSampler,
    HFSampler,
    align,
    encode,
    render_prompts,
    rollout_seeds,
)
from pwopsd.train.checkpoint import (
    checkpoint_problem,
    keep_metrics_through,
    last_checkpoint,
    load_checkpoint,
    save_checkpoint,
    set_aside,
)
from pwopsd.train.data_order import step_rows
from pwopsd.train.spec import (
    RunSpec,
    check_target_modules,
    checkpoint_steps,
    jsonable,
    lora_init_seed,
    recorded_train_config,
    world,
)
from pwopsd.train.step import (
    StepStats,
    TrainingError,
    metrics_row,
    micro_step,
    step_mean_weight,
)
from pwopsd.train.teacher import TeacherEMA, make_ema


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
    """``DONE.json``: steps, run name, evaluated step, provenance, processes."""


@dataclass
class Session:
    """Everything one process holds while it trains a run."""

    spec: RunSpec
    cfg: TrainConfig
    run_dir: Path
    acc: Any
    tokenizer: Any
    pad_id: int
    corpus: list[dict[str, str]]
    student: Any
    """The unwrapped peft model (adapter on = student, adapter disabled = teacher)."""
    model: Any
    """``student`` as accelerate prepared it (what the backward runs through)."""
    optimizer: Any
    scheduler: Any
    params: list[torch.nn.Parameter]
    sampler: Any
    max_model_len: int
    micro_batches: list[int]
    """Indices of the step's micro-batches this process owns (``k mod processes == rank``)."""
    t_start: float = field(default_factory=time.perf_counter)
    """When this call started building the run (the wall time DONE.json records)."""
    ema: TeacherEMA | None = None
    """The EMA teacher (``TrainConfig.teacher == "ema"``): updated after each optimizer step,
    kept in each checkpoint's ``trainer_state.pt`` so a resumed run is bit-exact."""

    @property
    def rollout_dir(self) -> Path:
        return self.run_dir / "rollout_adapter"


def _result(spec: RunSpec, cfg: TrainConfig, run_dir: Path, reused: bool) -> RunResult:
    done = json.loads((run_dir / "DONE.json").read_text())
    checkpoints = run_dir / "checkpoints"
    return RunResult(
        run_dir,
        spec,
        reused,
        checkpoints / f"step-{cfg.eval_step}" / "adapter",
        checkpoints / f"step-{cfg.max_steps}" / "adapter",
        done,
    )


def _check_base_weights(run_dir: Path, fingerprint: str) -> None:
    """A finished run is reused only on the base weights it was trained from: a checkpoint
    retrained in place (``make toy-models``) must not pick up adapters of the old one."""
    path = run_dir / "config.json"
    have = json.loads(path.read_text()).get("model_fingerprint") if path.exists() else None
    if have != fingerprint:
        raise ConfigError(
            f"{run_dir} holds a finished run trained from other base weights (model_fingerprint "
            f"{str(have)[:12]} vs now {fingerprint[:12]}); delete that run directory (or the "
            "whole runs/ folder after retraining the toy models) to train it afresh"
        )


def _verified_finished(run_dir: Path, cfg: TrainConfig) -> bool:
    """True when a finished run's evaluated and final checkpoints check out. A corrupt one is
    set aside and ``DONE.json`` removed, so the run resumes from its last good checkpoint."""
    for step in sorted({cfg.eval_step, cfg.max_steps}):
        directory = run_dir / "checkpoints" / f"step-{step}"
        problem = checkpoint_problem(directory)
        if problem is not None:
            if directory.exists():
                set_aside(directory, problem)
            (run_dir / "DONE.json").unlink(missing_ok=True)
            return False
    return True


def train(
    spec: RunSpec,
    *,
    engine: Any = None,
    progress: bool = True,
    stop_after: int | None = None,
) -> RunResult:
    """Train (or reuse, or resume) one run; returns where its adapters are.

    ``engine``: a vLLM engine from :func:`pwopsd.engine.make_engine` to reuse for rollouts
    (one engine per process); built here when the backend is vLLM and none is given.
    ``stop_after``: stop after that many optimizer steps in this call (tests).
    """
    profile = get_profile(spec.profile)
    cfg = spec.train_config(profile)
    rank, processes = world()
    cfg.validate(processes)
    model_path = profile.models[spec.family]
    run_dir = spec.run_dir()
    fingerprint = model_fingerprint(model_path)
    if (run_dir / "DONE.json").is_file():
        _check_base_weights(run_dir, fingerprint)
        if _verified_finished(run_dir, cfg):
            return _result(spec, cfg, run_dir, reused=True)
    check_target_modules(model_path, cfg.lora_targets)
    settings = {
        "spec": spec.identity(),
        "method": spec.method,
        "schedule": spec.resolved_schedule,
        "model": model_path,
        "model_fingerprint": fingerprint,
        "train": recorded_train_config(cfg),
        "processes": processes,
    }
    if rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
        jsonl.check_settings(
            run_dir / "config.json",
            json.loads(json.dumps(settings, default=jsonable)),
            "a training run",
            "use another root or seed, or delete the run directory",
        )
    session, start = _open(spec, profile, cfg, run_dir, model_path, engine)
    owned_engine = engine is None and cfg.rollout_backend == "vllm"
    try:
        finished, last_step = _run_steps(session, start, progress, stop_after)
    finally:
        shutil.rmtree(session.rollout_dir, ignore_errors=True)
        if owned_engine:
            session.sampler.engine.close()
    if not finished:
        return RunResult(run_dir, spec, False, Path(), Path(), {"stopped_at": last_step})
    return _finish(session)


def build_student(spec: RunSpec, cfg: TrainConfig, model_path: str) -> tuple[Any, Any]:
    """(tokenizer, peft model): the base model with a fresh LoRA seeded by the replicate seed."""
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    base = AutoModelForCausalLM.from_pretrained(model_path, dtype=getattr(torch, cfg.dtype))
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
    torch.manual_seed(lora_init_seed(spec))
    return tokenizer, get_peft_model(base, lora)


def _optimizer(params: list[torch.nn.Parameter], cfg: TrainConfig) -> tuple[Any, Any]:
    """AdamW and the learning-rate schedule (linear decay to 0 at max_steps, or constant)."""
    optimizer = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    total = cfg.max_steps
    if cfg.lr_schedule == "linear":
        decay = lambda s: max(0.0, 1 - s / total)  # noqa: E731
    else:
        decay = lambda s: 1.0  # noqa: E731
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, decay)


def _open(
    spec: RunSpec,
    profile: Profile,
    cfg: TrainConfig,
    run_dir: Path,
    model_path: str,
    engine: Any,
) -> tuple[Session, int]:
    """Build the student, resume from the newest verified checkpoint, open the sampler."""
    t_start = time.perf_counter()
    acc = Accelerator(cpu=not torch.cuda.is_available())
    torch.manual_seed(cfg.base_seed * 1000 + spec.seed)
    corpus = load_training_corpus(profile.train_data)
    tokenizer, peft_model = build_student(spec, cfg, model_path)
    params = [p for p in peft_model.parameters() if p.requires_grad]
    optimizer, scheduler = _optimizer(params, cfg)
    ema = make_ema(peft_model, cfg)  # from the LoRA init, before any checkpoint loads
    start = 0
    last = last_checkpoint(run_dir)
    if last is not None:
        start, directory = last
        state = load_checkpoint(directory, peft_model, optimizer, scheduler)
        if ema is not None:
            ema.load_state_dict(state["teacher_ema"])
    if acc.process_index == 0:
        keep_metrics_through(run_dir / "metrics.jsonl", start)
    model, optimizer = acc.prepare(peft_model, optimizer)
    max_len = profile.engine.max_model_len
    if cfg.rollout_backend == "vllm":
        if engine is None:
            engine = make_engine(
                "vllm", model_path, profile=profile, enable_lora=True, max_lora_rank=cfg.lora_r
            )
        sampler: Any = EngineSampler(engine, max_len)
    else:
        sampler = HFSampler(max_len)
    n_micro = cfg.prompts_per_step // cfg.micro_batch  # over all processes
    pad_id = (
        tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    )
    session = Session(
        spec=spec,
        cfg=cfg,
        run_dir=run_dir,
        acc=acc,
        tokenizer=tokenizer,
        pad_id=pad_id,
        corpus=corpus,
        student=acc.unwrap_model(model),
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        params=params,
        sampler=sampler,
        max_model_len=max_len,
        micro_batches=[k for k in range(n_micro) if k % acc.num_processes == acc.process_index],
        t_start=t_start,
        ema=ema,
    )
    return session, start


def _run_steps(
    session: Session, start: int, progress: bool, stop_after: int | None
) -> tuple[bool, int]:
    """Steps ``start``..max_steps: (finished, last step done); ``stop_after`` ends early."""
    spec, cfg, acc = session.spec, session.cfg, session.acc
    bar = tqdm(
        total=cfg.max_steps,
        initial=start,
        desc=f"train {spec.name} seed{spec.seed}",
        disable=not progress or acc.process_index != 0,
        dynamic_ncols=True,
    )
    with bar:
        for steps_here, step in enumerate(range(start, cfg.max_steps), start=1):
            t_step = time.perf_counter()
            stats = StepStats()
            adapter = sync_adapter(session, step)
            micro, rollouts = draw_rollouts(session, step, adapter, stats)
            grad_norm, lr, vocab = update(session, step, micro, rollouts, stats)
            row = metrics_row(cfg, acc, step, stats, grad_norm, lr, vocab, t_step)
            if acc.process_index == 0:
                jsonl.append(session.run_dir / "metrics.jsonl", [row])
            save_if_due(session, step + 1)
            bar.update(1)
            bar.set_postfix(loss=f"{row['loss']:.4f}", tok_s=f"{row['rollout_tokens_per_s']:.0f}")
            if stop_after is not None and steps_here >= stop_after and step + 1 < cfg.max_steps:
                return False, step + 1
    return True, cfg.max_steps


def sync_adapter(session: Session, step: int) -> str | None:
    """Weight sync: save the current adapter where the vLLM engine will serve it from (each
    step a new directory, so the engine sees a new adapter); None for the HF backend."""
    if session.cfg.rollout_backend != "vllm":
        return None
    adapter_dir = session.rollout_dir / f"step-{step}"
    if session.acc.process_index == 0:
        shutil.rmtree(session.rollout_dir, ignore_errors=True)
        session.student.save_pretrained(adapter_dir)
    session.acc.wait_for_everyone()
    return str(adapter_dir)


def draw_rollouts(
    session: Session, step: int, adapter: str | None, stats: StepStats
) -> tuple[list[tuple[int, list[tuple[str, str]]]], dict[int, list[tuple[Any, Any]]]]:
    """This process's micro-batches of the step, as (k, [(student, teacher prompt)]), and one
    completion per prompt from the current student: vLLM takes every prompt at once (a seed per
    prompt), HF generates a micro-batch at a time (a seed per micro-batch)."""
    spec, cfg, tok = session.spec, session.cfg, session.tokenizer
    rows = step_rows(session.corpus, step, cfg.prompts_per_step, spec.seed)
    micro = []
    for k in session.micro_batches:
        chunk = rows[k * cfg.micro_batch : (k + 1) * cfg.micro_batch]
        micro.append((k, [render_prompts(tok, session.corpus[i]) for i in chunk]))
    rollouts: dict[int, list[tuple[Any, Any]]] = {}
    if cfg.rollout_backend == "vllm":
        flat = [(k, j, prompts[0]) for k, texts in micro for j, prompts in enumerate(texts)]
        seeds = rollout_seeds(spec.seed, step, [k * cfg.micro_batch + j for k, j, _ in flat])
        ids = [encode(tok, text) for _, _, text in flat]
        drawn = session.sampler.sample([t for *_, t in flat], ids, cfg.rollout, seeds, adapter)
        for n, (k, _, _) in enumerate(flat):
            rollouts.setdefault(k, []).append((drawn.completions[n], drawn.finish_reasons[n]))
        stats.rollout_seconds += drawn.seconds
        stats.prompt_too_long += drawn.prompt_too_long
        return micro, rollouts
    for k, texts in micro:
        drawn = session.sampler.sample(
            [t[0] for t in texts],
            [encode(tok, t[0]) for t in texts],
            cfg.rollout,
            rollout_seeds(spec.seed, step, [k]),
            None,
            model=session.student,
            tokenizer=tok,
        )
        rollouts[k] = list(zip(drawn.completions, drawn.finish_reasons, strict=True))
        stats.rollout_seconds += drawn.seconds
        stats.prompt_too_long += drawn.prompt_too_long
    return micro, rollouts


def update(
    session: Session,
    step: int,
    micro: list[tuple[int, list[tuple[str, str]]]],
    rollouts: dict[int, list[tuple[Any, Any]]],
    stats: StepStats,
) -> tuple[float, float, int]:
    """Loss and backward per micro-batch, then clip, AdamW and the schedule: (grad norm, the
    learning rate the step used, vocabulary size)."""
    cfg, tok, acc = session.cfg, session.tokenizer, session.acc
    t_update = time.perf_counter()
    session.model.train()
    vocab = 0
    for n, (k, texts) in enumerate(micro):
        completions = [c for c, _ in rollouts[k]]
        batch = align(
            [encode(tok, t[0]) for t in texts],
            [encode(tok, t[1]) for t in texts],
            completions,
            max_model_len=session.max_model_len,
            pad_id=session.pad_id,
        )
        try:
            micro_stats = micro_step(
                session.model,
                session.student,
                acc,
                batch,
                method=session.spec.method,
                schedule=session.spec.resolved_schedule,
                step=step,
                cfg=cfg,
                accumulation=len(micro),
                last=n == len(micro) - 1,
                completions=completions,
                finish=[f for _, f in rollouts[k]],
                ema=session.ema,
            )
        except TrainingError as err:
            raise TrainingError(f"{err}, micro-batch {k}; {_kept(session.run_dir)}") from None
        stats.add(micro_stats)
        vocab = micro_stats.vocab
    grad_norm = acc.clip_grad_norm_(session.params, cfg.max_grad_norm)
    lr = session.scheduler.get_last_lr()[0]
    if cfg.matched_step:
        lr = matched_step_lr(lr, step_mean_weight(stats, acc))
        for group in session.optimizer.param_groups:
            group["lr"] = lr  # the scheduler's next step resets it from its base rate
    session.optimizer.step()
    if session.ema is not None:
        session.ema.update()
    session.scheduler.step()
    session.optimizer.zero_grad(set_to_none=True)
    stats.update_seconds = time.perf_counter() - t_update
    return float(grad_norm), lr, vocab


def matched_step_lr(lr: float, mean_weight: float | None) -> float:
    """The matched-step control's rate (``TrainConfig.matched_step``): ``lr`` over the step's
    mean position weight; a step with no weighted token (``None`` or 0) keeps ``lr``."""
    return lr / mean_weight if mean_weight else lr


def _kept(run_dir: Path) -> str:
    """What a rerun after a failure resumes from, as it stands on disk."""
    last = last_checkpoint(run_dir)
    if last is None:
        return "no checkpoint was written yet: a rerun starts from step 0 and fails the same way"
    return f"checkpoint {last[1]} is kept (step {last[0]}); a rerun resumes from it"


def save_if_due(session: Session, done: int) -> None:
    """Checkpoint after step ``done`` when it is a checkpoint step (:func:`checkpoint_steps`)."""
    if done not in checkpoint_steps(session.cfg):
        return
    if session.acc.process_index == 0:
        save_checkpoint(
            session.run_dir,
            done,
            session.student,
            session.optimizer,
            session.scheduler,
            session.cfg.prompts_per_step,
            extra=None if session.ema is None else {"teacher_ema": session.ema.state_dict()},
        )
    session.acc.wait_for_everyone()


def _finish(session: Session) -> RunResult:
    """Write ``DONE.json`` (rank 0) and hand back the run's adapters."""
    spec, cfg, acc = session.spec, session.cfg, session.acc
    if acc.process_index == 0:
        write_json(
            session.run_dir / "DONE.json",
            {
                "steps": cfg.max_steps,
                "run_name": spec.name,
                "eval_step": cfg.eval_step,
                "provenance": provenance(
                    profile=spec.profile,
                    seed=spec.seed,
                    wall_seconds=time.perf_counter() - session.t_start,
                ),
                "processes": acc.num_processes,
            },
        )
    acc.wait_for_everyone()
    return _result(spec, cfg, session.run_dir, reused=False)
