"""Settings dataclasses of one scale of the study, and the checks every config shares.

:class:`Profile` bundles every model name, data source and hyperparameter of one scale
(:mod:`pwopsd.config.profiles` builds "toy" and "paper"); :class:`TrainConfig`,
:class:`SamplingConfig` and :class:`EngineConfig` are its parts. Nothing in the pipeline
branches on which profile it runs: models are always loaded with
``from_pretrained(name_or_path)`` and benchmarks through the same loader.
"""

from __future__ import annotations

import dataclasses
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pwopsd.vocab import BACKENDS, MAIN_FAMILY, SCHEDULES, TEACHERS

REPO_ROOT = Path(__file__).resolve().parents[2]
"""The repository root (the package is installed editable; toy assets live beside it)."""

CHECKPOINTS_DIR = REPO_ROOT / "checkpoints"
TOY_DATA_DIR = REPO_ROOT / "data" / "toy"
RESULTS_DIR = REPO_ROOT / "results"


class ConfigError(ValueError):
    """A bad parameter: the message names it and the allowed values."""


@dataclass(frozen=True)
class SamplingConfig:
    """vLLM sampling settings for one use (evaluation, rollouts)."""

    n: int
    """Samples per prompt."""
    temperature: float
    """Softmax temperature of sampling."""
    top_p: float
    """Nucleus mass; 1.0 disables."""
    top_k: int
    """Top-k cut; -1 disables (vLLM's convention)."""
    max_new_tokens: int
    """Generation budget per sample."""


@dataclass(frozen=True)
class BenchmarkSpec:
    """Where one evaluation set comes from."""

    name: str
    """Short name used in tables ("math500", "toy_aime24", ...)."""
    source: str
    """Hub dataset id, or a local .jsonl/.parquet path."""
    split: str = "train"
    """Hub split (ignored for local files)."""
    sha256: str | None = None
    """Expected SHA-256 of the local file, checked before use when set."""
    label: str = ""
    """Human-readable name for tables and plots."""


@dataclass(frozen=True)
class TrainConfig:
    """OPSD / PW-OPSD training hyperparameters (PROTOCOL section 3)."""

    lora_r: int = 64
    """LoRA rank."""
    lora_alpha: int = 128
    """LoRA alpha."""
    lora_targets: tuple[str, ...] = (
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
        "gate_proj",
        "up_proj",
        "down_proj",
    )
    """Module names that get LoRA adapters."""
    learning_rate: float = 5e-6
    """AdamW learning rate."""
    max_grad_norm: float = 0.1
    """Gradient-norm clip."""
    max_steps: int = 150
    """Optimizer steps."""
    save_every: int = 25
    """Checkpoint interval (optimizer steps)."""
    eval_step: int = 100
    """The checkpoint that is evaluated (the paper evaluates step 100)."""
    prompts_per_step: int = 32
    """Effective batch: prompts per optimizer step, one rollout each."""
    micro_batch: int = 4
    """Prompts per forward/backward pass on one process; prompts_per_step = processes x
    micro_batch x gradient-accumulation steps (paper: Qwen3-4B 4 GPUs x 4 x 2; the 8B/7B models
    2 x 4, ``--micro-batch 2``)."""
    distill_temperature: float = 1.1
    """Temperature applied to both logits before log-softmax in the loss."""
    tau_clip: float | None = 0.05
    """Per-vocabulary-entry clip of the forward-KL terms (None = unclipped)."""
    rollout: SamplingConfig = SamplingConfig(
        n=1, temperature=1.1, top_p=0.95, top_k=20, max_new_tokens=1024
    )
    """Rollout sampling (one completion per prompt)."""
    base_seed: int = 42
    """PROTOCOL's training seed (42). Mixed with the run's replicate seed (``RunSpec.seed``,
    the "training seed" 1, 2, 3 of the tables) into torch's global seed before the model
    loads; LoRA init, data order and rollouts derive from the replicate seed alone."""
    dtype: str = "bfloat16"
    """Training dtype."""
    gradient_checkpointing: bool = True
    """Recompute activations in backward."""
    lr_schedule: str = "linear"
    """"linear" (decay to 0 at max_steps, no warm-up) or "constant". PROTOCOL is silent; linear
    is the HF Trainer default the release's TRL trainer inherits **[our choice]**."""
    weight_decay: float = 0.0
    """AdamW weight decay (HF Trainer default)."""
    rollout_backend: str = "vllm"
    """"vllm" (the engine factory; the adapter saved after each update is served as
    ``EngineConfig.adapter_mode`` says) or "hf" (``generate`` on the live peft model, in
    process)."""
    matched_step: bool = False
    """**The matched-step control** (position methods only; not in PROTOCOL): each step's
    learning rate is divided by the step's mean position weight (token mean of w(u) over its
    completions), so PW-OPSD's update is not smaller than OPSD's merely because every w <= 1.
    Why the learning rate and not the loss (normalising by sum(w)): under AdamW a loss scaled by
    a per-step constant leaves the update unchanged (Adam divides by the gradient's running
    RMS), so that normalisation would be no control at all; the step size lives in the rate."""
    clip_stats: bool = True
    """Log the fraction of tokens and of vocabulary entries the clip caps (an extra no-grad
    pass over the [B, T, V] terms, chunked; off at paper scale)."""
    teacher: str = "base"
    """What plays the teacher (issue 20; :data:`pwopsd.vocab.TEACHERS`): "base", the paper's
    frozen base model (LoRA adapter disabled); "student", the live student (adapter on, no
    grad); "ema", an exponential moving average of the student's adapter weights
    (``teacher_ema_decay``). Every kind reads the privileged teacher prompt."""
    teacher_ema_decay: float = 0.99
    """Decay d of the "ema" teacher: after each optimizer step ``ema = d ema + (1 - d) theta``
    over the adapter's weights (from the LoRA init, whose B = 0 makes the EMA teacher start
    as the base model). In [0, 1); 0 makes it the student as of the last step."""
    teacher_free_tau_low: float = 0.1
    """The teacher-free control ("teacher_free"): a sampled token is "low-probability" when the
    student gives it p < this, at the distillation temperature. **Our choice** (arXiv
    2608.31046 as we read it gives no value we hold): 0.1 is well inside the rollouts' top-k 20
    / top-p 0.95 support yet below any token the student clearly prefers."""
    teacher_free_advantage: float = 1.0
    """The teacher-free control's fixed advantage magnitude A > 0: ``loss_t = A log p_S(y_t)``
    on low-probability sampled tokens. **Our choice**; under AdamW its size mostly cancels."""

    def validate(self, world_size: int = 1) -> None:
        """Raise ConfigError naming the field when the batch arithmetic or a value cannot work."""
        per_pass = world_size * self.micro_batch
        if self.micro_batch < 1 or self.prompts_per_step % per_pass:
            raise ConfigError(
                f"prompts_per_step={self.prompts_per_step} must be a multiple of processes "
                f"({world_size}) x micro_batch ({self.micro_batch})"
            )
        for name in ("lora_r", "lora_alpha", "max_steps", "save_every", "eval_step"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}={getattr(self, name)!r} must be >= 1")
        if self.eval_step > self.max_steps:
            raise ConfigError(f"eval_step={self.eval_step} exceeds max_steps={self.max_steps}")
        for name in ("learning_rate", "max_grad_norm", "distill_temperature"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ConfigError(f"{name}={value!r} must be a finite number > 0")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ConfigError(f"weight_decay={self.weight_decay!r} must be a finite number >= 0")
        if self.tau_clip is not None and not (math.isfinite(self.tau_clip) and self.tau_clip > 0):
            raise ConfigError(f"tau_clip={self.tau_clip!r} must be a finite number > 0 or None")
        if self.dtype not in TRAIN_DTYPES:
            raise ConfigError(f"dtype={self.dtype!r}; allowed: {list(TRAIN_DTYPES)}")
        if self.lr_schedule not in ("linear", "constant"):
            raise ConfigError(f"lr_schedule={self.lr_schedule!r}; allowed: ['linear', 'constant']")
        if self.rollout_backend not in BACKENDS:
            raise ConfigError(
                f"rollout_backend={self.rollout_backend!r}; allowed: {list(BACKENDS)}"
            )
        if self.rollout.n != 1:
            raise ConfigError(f"rollout.n={self.rollout.n}: OPSD draws one rollout per prompt")
        if self.teacher not in TEACHERS:
            raise ConfigError(f"teacher={self.teacher!r}; allowed: {list(TEACHERS)}")
        if not (math.isfinite(self.teacher_ema_decay) and 0.0 <= self.teacher_ema_decay < 1.0):
            raise ConfigError(f"teacher_ema_decay={self.teacher_ema_decay!r} must lie in [0, 1)")
        if not (math.isfinite(self.teacher_free_tau_low) and 0 < self.teacher_free_tau_low <= 1):
            raise ConfigError(
                f"teacher_free_tau_low={self.teacher_free_tau_low!r} must lie in (0, 1]"
            )
        if not (math.isfinite(self.teacher_free_advantage) and self.teacher_free_advantage > 0):
            raise ConfigError(
                f"teacher_free_advantage={self.teacher_free_advantage!r} must be a finite "
                "number > 0"
            )


TRAIN_DTYPES = ("float32", "bfloat16", "float16")
"""dtypes a training run may use (``TrainConfig.dtype``)."""


def _coerce(name: str, declared: str, value: Any) -> Any:
    """``value`` (as YAML read it) converted to a field's declared type, or ConfigError."""
    optional = declared.endswith(" | None")
    kind = declared.removesuffix(" | None")
    if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
        if optional:
            return None
        raise ConfigError(f"{name}=None is not allowed; {name} is {declared}")
    bad = ConfigError(f"{name}={value!r} is not {declared}")
    if kind == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise bad
    if kind == "int":
        if isinstance(value, bool):
            raise bad
        if isinstance(value, int):
            return value
        if isinstance(value, str) and value.strip().lstrip("+-").isdigit():
            return int(value)
        raise bad
    if kind == "float":
        if isinstance(value, bool):
            raise bad
        try:
            number = float(value)  # YAML reads 1e-3 as a string; float() takes every spelling
        except (TypeError, ValueError):
            raise bad from None
        if not math.isfinite(number):
            raise ConfigError(f"{name}={value!r} must be a finite number")
        return number
    if kind == "str":
        if isinstance(value, str):
            return value
        raise bad
    if kind == "tuple[str, ...]":
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list | tuple) or not all(isinstance(v, str) for v in items):
            raise bad
        return tuple(items)
    if kind == "SamplingConfig":
        # A mapping of the fields to change; RunSpec.train_config lays it over the profile's.
        if isinstance(value, SamplingConfig):
            value = dataclasses.asdict(value)
        if not isinstance(value, dict):
            raise ConfigError(f"{name}={value!r} must be a mapping of SamplingConfig fields")
        types = {f.name: f.type for f in dataclasses.fields(SamplingConfig)}
        unknown = sorted(set(value) - set(types))
        if unknown:
            raise ConfigError(f"{name}: unknown fields {unknown}; allowed: {sorted(types)}")
        return {k: _coerce(f"{name}.{k}", str(types[k]), v) for k, v in value.items()}
    raise ConfigError(f"{name} cannot be overridden (type {declared})")


def coerce_train_overrides(overrides: Any) -> tuple[tuple[str, Any], ...]:
    """(field, value) pairs with each value parsed to its TrainConfig field's declared type.

    Floats take any YAML spelling ("1e-3", ".5"), ints refuse 2.5, bools take true/false,
    None/null only where the field allows it; an unknown field names the allowed ones.
    """
    declared = {f.name: f.type for f in dataclasses.fields(TrainConfig)}
    out = []
    for pair in overrides:
        if not isinstance(pair, tuple | list) or len(pair) != 2:
            raise ConfigError(f"override {pair!r} must be a (field, value) pair")
        key, value = pair
        if key not in declared:
            raise ConfigError(
                f"override {key!r} is not a TrainConfig field; allowed: {sorted(declared)}"
            )
        out.append((key, _coerce(key, str(declared[key]), value)))
    return tuple(out)


ADAPTER_MODES = ("merge", "lora")
"""Ways the vLLM engine serves a LoRA adapter (:attr:`EngineConfig.adapter_mode`)."""


@dataclass(frozen=True)
class EngineConfig:
    """Settings of the inference engine (:func:`pwopsd.vllm_build.build_vllm`), CPU and CUDA."""

    dtype: str
    """Inference dtype for vLLM and HF ("float32", "bfloat16", ...)."""
    max_model_len: int
    """Context length: prompt + completion tokens of one sequence."""
    max_num_seqs: int = 128
    """Sequences vLLM schedules at once. On CPU the KV cache is sized to hold this many
    sequences of ``max_model_len`` tokens, and the batched-token budget to prefill them all in
    one step (a split prefill crashes seeded sampling on the CPU build)."""
    cpu_kv_cache_bytes: int | None = None
    """CPU only: KV-cache size in bytes. None = ``max_num_seqs x max_model_len x`` the model's
    KV bytes per token (2 x layers x KV heads x head_dim x dtype bytes). Never a fraction of
    host memory: vLLM's fraction is of the NUMA node, which is small on many machines."""
    gpu_memory_utilization: float = 0.85
    """CUDA only: fraction of GPU memory for weights, activations and KV cache. Ignored on CPU."""
    enforce_eager: bool | None = None
    """Skip torch.compile / CUDA graphs. None = eager on CPU (starts in seconds instead of
    30-90 s), compiled on CUDA."""
    adapter_mode: str = "merge"
    """How the vLLM engine serves a LoRA adapter. "merge": base + adapter merged (peft's
    ``W + (alpha/r) B A``) and written into the running engine with vLLM's in-place
    ``reload_weights``, the paper's weight sync; the engine decodes at base-model speed (the
    adapter block of ``python -m pwopsd.bench rollout`` compares the two). "lora": a
    ``LoRARequest`` per adapter."""

    def __post_init__(self) -> None:
        if self.max_model_len < 1 or self.max_num_seqs < 1:
            raise ConfigError(
                f"engine.max_model_len={self.max_model_len} and engine.max_num_seqs="
                f"{self.max_num_seqs} must be >= 1"
            )
        if self.cpu_kv_cache_bytes is not None and self.cpu_kv_cache_bytes < 1:
            raise ConfigError(f"engine.cpu_kv_cache_bytes={self.cpu_kv_cache_bytes} must be > 0")
        if not 0 < self.gpu_memory_utilization <= 1:
            raise ConfigError(
                f"engine.gpu_memory_utilization={self.gpu_memory_utilization} must lie in (0, 1]"
            )
        if self.adapter_mode not in ADAPTER_MODES:
            raise ConfigError(
                f"engine.adapter_mode={self.adapter_mode!r} is not known; allowed: "
                f"{list(ADAPTER_MODES)}"
            )


@dataclass(frozen=True)
class Profile:
    """Everything that changes between the toy world and the paper's scale."""

    name: str
    """"toy" or "paper"."""
    models: dict[str, str]
    """Model family -> ``from_pretrained`` name or path. :data:`pwopsd.vocab.MAIN_FAMILY` is the main model."""
    train_data: str
    """Training corpus (columns problem, solution): hub id or local path."""
    benchmarks: tuple[BenchmarkSpec, ...]
    """Evaluation sets in table order (easiest first)."""
    eval_sampling: SamplingConfig
    """Evaluation sampling (PROTOCOL section 4)."""
    train: TrainConfig
    """Training hyperparameters."""
    engine: EngineConfig
    """Inference engine settings (vLLM on CPU or CUDA; HF generate uses ``dtype``)."""

    @property
    def main_model(self) -> str:
        return self.models[MAIN_FAMILY]


def check_schedule(w_min: Any, c: Any, s: Any) -> None:
    """Raise ConfigError (a ValueError) naming the bad parameter of a (w_min, c, s) schedule.

    ``w_min`` (the floor) and ``c`` (the transition centre, a fraction of the rollout) lie in
    [0, 1]; ``s`` (the transition width) is a finite number > 0. The notebooks' configs and
    :func:`pwopsd.losses.position_weights` both call this one check.
    """
    for name, value in (("w_min", w_min), ("c", c), ("s", s)):
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise ConfigError(f"{name}={value!r} must be a finite number")
    if not 0.0 <= w_min <= 1.0:
        raise ConfigError(f"w_min={w_min!r} (schedule floor) must lie in [0, 1]")
    if not 0.0 <= c <= 1.0:
        raise ConfigError(
            f"c={c!r} (transition centre, a fraction of the rollout) must lie in [0, 1]"
        )
    if s <= 0:
        raise ConfigError(f"s={s!r} (transition width) must be > 0")


def check_writable_dir(name: str, path: Path, shown: str = "") -> None:
    """Raise ConfigError naming ``name`` unless ``path`` is (or can be made) a writable directory.

    Probes with a temporary directory that is removed at once, so a check leaves nothing
    behind (a path that does not exist yet is not created).
    """
    shown = shown or str(path)
    probe_in = path
    while not probe_in.exists():
        probe_in = probe_in.parent
    if not probe_in.is_dir():
        raise ConfigError(f"{name}={shown!r} is not usable: {probe_in} is a file, not a directory")
    try:
        tempfile.TemporaryDirectory(dir=probe_in).cleanup()
    except OSError as err:
        raise ConfigError(
            f"{name}={shown!r} is not writable ({probe_in}: {err.strerror or err}); "
            "pass a directory you can write to"
        ) from err


def resolve_schedule(
    schedule: str | tuple[float, float, float] | list[float],
) -> tuple[float, float, float]:
    """A schedule name from :data:`SCHEDULES` or an explicit (w_min, c, s) -> checked (w_min, c, s).

    Explicit values go through :func:`check_schedule`; losses, training runs and the notebooks'
    configs all resolve schedules here.
    """
    if isinstance(schedule, str):
        if schedule not in SCHEDULES:
            raise ConfigError(f"schedule must be one of {sorted(SCHEDULES)}, got {schedule!r}")
        return SCHEDULES[schedule]
    if not isinstance(schedule, tuple | list) or len(schedule) != 3:
        raise ConfigError(f"schedule must be a name or (w_min, c, s), got {schedule!r}")
    check_schedule(*schedule)
    w_min, c, s = (float(v) for v in schedule)
    return w_min, c, s
