"""What to train and where: a run's identity (:class:`RunSpec`), its plan, the pre-load checks."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig, AutoModelForCausalLM

from pwopsd.config import RESULTS_DIR, ConfigError, Profile, TrainConfig, get_profile
from pwopsd.config.settings import coerce_train_overrides, resolve_schedule
from pwopsd.sampling import derive_seed
from pwopsd.vocab import (
    DEFAULT_SCHEDULE,
    FAMILIES,
    MAIN_FAMILY,
    POSITION_METHODS,
    POSITION_WEIGHTED_METHODS,
    TEACHER_FREE_METHODS,
    TRAINABLE_METHODS,
)

Schedule = str | tuple[float, float, float]


@dataclass(frozen=True)
class RunSpec:
    """One training run: a (profile, model family, method, schedule, seed) cell."""

    method: str
    """One of :data:`pwopsd.vocab.TRAINABLE_METHODS`."""
    seed: int = 1
    """The run's replicate seed, the "training seed" of the tables (LoRA init, data order,
    rollout seeds). ``TrainConfig.base_seed`` is PROTOCOL's fixed 42, not a second choice."""
    family: str = MAIN_FAMILY
    """Model family of the profile (:data:`pwopsd.vocab.FAMILIES`)."""
    schedule: Schedule | None = None
    """Position-weight schedule (name or (w_min, c, s)); position methods default to Moderate."""
    profile: str = "toy"
    """"toy" or "paper"."""
    overrides: tuple[tuple[str, Any], ...] = ()
    """TrainConfig fields to replace, as (name, value) pairs, parsed to each field's type."""
    root: str = ""
    """Runs root; "" means results/<profile>/runs. Not part of the run's identity: a run
    directory moved to another root resumes there."""

    def __post_init__(self) -> None:
        if self.method not in TRAINABLE_METHODS:
            raise ConfigError(
                f"method={self.method!r} is not known; allowed: {list(TRAINABLE_METHODS)}"
            )
        if self.family not in FAMILIES:
            raise ConfigError(f"family={self.family!r} is not known; allowed: {list(FAMILIES)}")
        get_profile(self.profile)  # names the profile when unknown
        if self.schedule is not None:
            if self.method not in POSITION_METHODS:
                raise ConfigError(
                    f"schedule={self.schedule!r} given for method {self.method!r}, which has no "
                    f"position weights (position methods: {list(POSITION_METHODS)})"
                )
            resolve_schedule(self.schedule)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"seed={self.seed!r} must be a non-negative integer")
        # Parse every override to its field's type now: a bad value fails before anything.
        object.__setattr__(self, "overrides", coerce_train_overrides(self.overrides))
        given = dict(self.overrides)
        if given.get("matched_step") and self.method not in POSITION_WEIGHTED_METHODS:
            raise ConfigError(
                f"matched_step=True given for method {self.method!r}, whose loss is not scaled "
                f"by position weights (position-weighted methods: {list(POSITION_WEIGHTED_METHODS)})"
            )
        if given.get("teacher", "base") != "base" and self.method in TEACHER_FREE_METHODS:
            raise ConfigError(
                f"teacher={given['teacher']!r} given for method {self.method!r}, which reads no "
                "teacher (the teacher pass is skipped)"
            )

    @property
    def resolved_schedule(self) -> tuple[float, float, float] | None:
        if self.method not in POSITION_METHODS:
            return None
        return resolve_schedule(self.schedule or DEFAULT_SCHEDULE)

    @property
    def name(self) -> str:
        """The run's name in tables and paths: "opsd", "pw_opsd_moderate",
        "pw_opsd_w0.2_c0.4_s0.1"."""
        if self.method not in POSITION_METHODS:
            return self.method
        schedule = self.schedule or DEFAULT_SCHEDULE
        if isinstance(schedule, str):
            return f"{self.method}_{schedule}"
        w, c, s = resolve_schedule(schedule)
        return f"{self.method}_w{w:g}_c{c:g}_s{s:g}"

    @property
    def dir_name(self) -> str:
        """:attr:`name`, plus a tag of the overrides when there are any, so a quick or
        differently configured run never shares (or replaces) a full run's directory."""
        if not self.overrides:
            return self.name
        text = json.dumps(sorted(self.overrides), default=jsonable)
        return f"{self.name}-{hashlib.sha256(text.encode()).hexdigest()[:8]}"

    def train_config(self, profile: Profile | None = None) -> TrainConfig:
        """The profile's TrainConfig with the overrides applied. Lowering ``max_steps`` lowers
        ``eval_step`` and ``save_every`` with it unless they are overridden too (one rule for
        ``--max-steps N`` and ``--set max_steps=N``)."""
        base = (profile or get_profile(self.profile)).train
        given = dict(self.overrides)
        if "max_steps" in given:
            for name in ("eval_step", "save_every"):
                given.setdefault(name, min(getattr(base, name), given["max_steps"]))
        if isinstance(given.get("rollout"), dict):
            given["rollout"] = dataclasses.replace(base.rollout, **given["rollout"])
        return dataclasses.replace(base, **given)

    def run_dir(self) -> Path:
        root = Path(self.root) if self.root else RESULTS_DIR / self.profile / "runs"
        return root / self.family / self.dir_name / f"seed{self.seed}"

    def identity(self) -> dict[str, Any]:
        """What makes two runs the same run (recorded in ``config.json``; the root is not)."""
        return {
            "method": self.method,
            "seed": self.seed,
            "family": self.family,
            "schedule": self.schedule,
            "profile": self.profile,
            "overrides": dict(self.overrides),
        }

    def is_done(self) -> bool:
        return (self.run_dir() / "DONE.json").is_file()


LATER_TRAIN_FIELDS = (
    "teacher",
    "teacher_ema_decay",
    "teacher_free_tau_low",
    "teacher_free_advantage",
)
"""TrainConfig fields added after runs were committed (issue 20). ``config.json`` records them
only when they differ from their defaults, so a run started before they existed still passes
the settings check (:func:`pwopsd.jsonl.check_settings` compares every key) and resumes."""


def recorded_train_config(cfg: TrainConfig) -> dict[str, Any]:
    """``cfg`` as a run's ``config.json`` records it (see :data:`LATER_TRAIN_FIELDS`)."""
    default = TrainConfig()
    out = dataclasses.asdict(cfg)
    for name in LATER_TRAIN_FIELDS:
        if getattr(cfg, name) == getattr(default, name):
            out.pop(name)
    return out


def method_settings(spec: RunSpec, cfg: TrainConfig) -> dict[str, Any]:
    """What the run's method and teacher use beyond the shared loss settings (the plan prints
    it): the teacher (none for a teacher-free method), PW-Mix's mixing schedule, the
    teacher-free control's threshold and advantage."""
    out: dict[str, Any] = {"method": spec.method}
    if spec.method in TEACHER_FREE_METHODS:
        out["teacher"] = None
        out["teacher_free"] = {
            "tau_low": cfg.teacher_free_tau_low,
            "advantage": cfg.teacher_free_advantage,
            "reduction": "global token mean",
        }
        return out
    out["teacher"] = {"kind": cfg.teacher}
    if cfg.teacher == "ema":
        out["teacher"]["ema_decay"] = cfg.teacher_ema_decay
    if spec.method == "pw_mix":
        out["pw_mix"] = {
            "mix_schedule": spec.resolved_schedule,
            "forward_kl": "clipped, weight m(u)",
            "reverse_kl": "full distribution, weight 1 - m(u)",
            "reduction": "per sequence",
        }
    return out


def jsonable(x: Any) -> Any:
    """``json.dumps`` default for configs: dataclasses as dicts, tuples and sets as lists."""
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return dataclasses.asdict(x)
    if isinstance(x, tuple | set | frozenset):
        return list(x)
    return str(x)


def world() -> tuple[int, int]:
    """(rank, world size) from the launcher's environment (torchrun / accelerate launch)."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def lora_init_seed(spec: RunSpec) -> int:
    """LoRA-init seed of a run: a function of the replicate seed only (same init for every
    method, so methods are compared from the same starting adapter)."""
    return derive_seed("lora-init", spec.seed)


def check_target_modules(model: str, targets: tuple[str, ...]) -> None:
    """Fail (naming the module) when a LoRA target is not in the model, before weights load.

    Builds the architecture on the meta device from its config: no weights, no memory.
    """
    model_config = AutoConfig.from_pretrained(model)
    with torch.device("meta"):
        net = AutoModelForCausalLM.from_config(model_config)
    leaves = {name.rsplit(".", 1)[-1] for name, _ in net.named_modules()}
    missing = [t for t in targets if t not in leaves]
    if missing:
        raise ConfigError(
            f"lora_targets {missing} are not modules of {model!r}; it has e.g. "
            f"{sorted(x for x in leaves if x.endswith('proj'))[:12]}"
        )


def checkpoint_steps(cfg: TrainConfig) -> list[int]:
    """Steps whose checkpoint is written: every ``save_every``, the evaluated and the last."""
    regular = set(range(cfg.save_every, cfg.max_steps + 1, cfg.save_every))
    return sorted(regular | {cfg.eval_step, cfg.max_steps})


def launch_command(spec: RunSpec) -> str:
    """The shell command that reproduces ``spec`` exactly (the dry-run plan prints it)."""
    if spec.profile == "paper":
        head = (
            "accelerate launch --config_file configs/accelerate/paper_4xh100_zero2.yaml "
            "-m pwopsd.train --profile paper"
        )
    else:
        head = "python -m pwopsd.train"
        if spec.profile != "toy":
            head += f" --profile {spec.profile}"
    parts = [head, f"--method {spec.method}", f"--seed {spec.seed}"]
    if spec.family != MAIN_FAMILY:
        parts.append(f"--family {spec.family}")
    if spec.schedule is not None:
        text = (
            spec.schedule if isinstance(spec.schedule, str) else ",".join(map(str, spec.schedule))
        )
        parts.append(f"--schedule {text}")
    if spec.root:
        parts.append(f"--root {shlex.quote(spec.root)}")
    for key, value in spec.overrides:
        # JSON is YAML, which is how --set reads values; quoted so a shell passes it whole
        parts.append(f"--set {shlex.quote(f'{key}={json.dumps(value, default=jsonable)}')}")
    return " ".join(parts)


def plan(spec: RunSpec, world_size: int | None = None) -> dict[str, Any]:
    """The batch arithmetic and checkpoints of a run (validated; nothing downloads)."""
    profile = get_profile(spec.profile)
    cfg = spec.train_config(profile)
    processes = world_size or world()[1]
    cfg.validate(processes)
    return {
        "run_dir": str(spec.run_dir()),
        "model": profile.models[spec.family],
        "run_name": spec.name,
        "schedule": spec.resolved_schedule,
        "steps": cfg.max_steps,
        "processes": processes,
        "micro_batch_per_process": cfg.micro_batch,
        "grad_accumulation": cfg.prompts_per_step // (processes * cfg.micro_batch),
        "prompts_per_step": cfg.prompts_per_step,
        "rollouts_per_step": cfg.prompts_per_step * cfg.rollout.n,
        "checkpoints": [f"step-{s}" for s in checkpoint_steps(cfg)],
        "evaluated_step": cfg.eval_step,
        "learning_rate": cfg.learning_rate,
        "lr_schedule": cfg.lr_schedule,
        "lora": {"r": cfg.lora_r, "alpha": cfg.lora_alpha, "targets": list(cfg.lora_targets)},
        "loss": {"distill_temperature": cfg.distill_temperature, "tau_clip": cfg.tau_clip},
        "method_settings": method_settings(spec, cfg),
        "rollout": dataclasses.asdict(cfg.rollout),
        "rollout_backend": cfg.rollout_backend,
        "dtype": cfg.dtype,
        "gradient_checkpointing": cfg.gradient_checkpointing,
        "launch": launch_command(spec),
    }
