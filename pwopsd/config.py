"""Profiles (toy / paper) and the per-notebook configs that papermill parameters map onto.

A *profile* bundles every model name, data source and hyperparameter of one scale of the
study: ``paper`` holds the numbers of ../shared/reference/PROTOCOL.md (hub names, 4x H100
budgets), ``toy`` the laptop-scale world shipped in this repo (checkpoints/, data/toy/).
Nothing in the pipeline branches on which profile it runs: models are always loaded with
``from_pretrained(name_or_path)`` and benchmarks through the same loader.

Each notebook has a config dataclass below whose fields are exactly the notebook's
``parameters`` cell; ``Config.from_namespace(globals())`` validates what papermill injected
and fails before any compute, naming the bad parameter and the allowed values.
"""

from __future__ import annotations

import dataclasses
import math
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

REPO_ROOT = Path(__file__).resolve().parents[1]
"""The repository root (the package is installed editable; toy assets live beside it)."""

CHECKPOINTS_DIR = REPO_ROOT / "checkpoints"
TOY_DATA_DIR = REPO_ROOT / "data" / "toy"
RESULTS_DIR = REPO_ROOT / "results"


class ConfigError(ValueError):
    """A bad parameter: the message names it and the allowed values."""


# --------------------------------------------------------------------------------------
# Profiles
# --------------------------------------------------------------------------------------


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
    seed: int = 42
    """Training seed."""
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
    clip_stats: bool = True
    """Log the fraction of tokens and of vocabulary entries the clip caps (an extra no-grad
    pass over the [B, T, V] terms, chunked; off at paper scale)."""

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
        if not self.learning_rate > 0:
            raise ConfigError(f"learning_rate={self.learning_rate!r} must be > 0")
        if self.tau_clip is not None and not self.tau_clip > 0:
            raise ConfigError(f"tau_clip={self.tau_clip!r} must be > 0 or None")
        if self.lr_schedule not in ("linear", "constant"):
            raise ConfigError(f"lr_schedule={self.lr_schedule!r}; allowed: ['linear', 'constant']")
        if self.rollout_backend not in ("vllm", "hf"):
            raise ConfigError(f"rollout_backend={self.rollout_backend!r}; allowed: ['vllm', 'hf']")
        if self.rollout.n != 1:
            raise ConfigError(f"rollout.n={self.rollout.n}: OPSD draws one rollout per prompt")


ADAPTER_MODES = ("merge", "lora")
"""Ways the vLLM engine serves a LoRA adapter (:attr:`EngineConfig.adapter_mode`)."""


@dataclass(frozen=True)
class EngineConfig:
    """Settings of the inference engine (:func:`pwopsd.engine.build_vllm`), CPU and CUDA."""

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
    """Model family -> ``from_pretrained`` name or path. "qwen3" is the main model."""
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
        return self.models["qwen3"]


def _toy_models() -> dict[str, str]:
    return {fam: str(CHECKPOINTS_DIR / f"toy-{fam}") for fam in ("qwen3", "llama", "olmo3")}


TOY_BENCHMARK_NAMES = ("toy_math500", "toy_aime24", "toy_aime25", "toy_hmmt25")
"""Toy stand-ins for MATH-500, AIME 2024, AIME 2025 and HMMT 2025, in rising difficulty."""


def _toy_profile() -> Profile:
    labels = {
        "toy_math500": "Toy MATH-500",
        "toy_aime24": "Toy AIME 2024",
        "toy_aime25": "Toy AIME 2025",
        "toy_hmmt25": "Toy HMMT 2025",
    }
    return Profile(
        name="toy",
        models=_toy_models(),
        train_data=str(TOY_DATA_DIR / "train.jsonl"),
        benchmarks=tuple(
            BenchmarkSpec(name=b, source=str(TOY_DATA_DIR / f"{b}.jsonl"), label=labels[b])
            for b in TOY_BENCHMARK_NAMES
        ),
        eval_sampling=SamplingConfig(
            n=12, temperature=1.0, top_p=0.95, top_k=-1, max_new_tokens=384
        ),
        train=TrainConfig(
            lora_r=16,
            lora_alpha=32,
            # Tuned on toy_val only (python -m pwopsd.toy.recipe, results/toy/recipe_tuning.json).
            learning_rate=1e-3,
            tau_clip=0.5,
            max_grad_norm=1.0,
            max_steps=30,
            save_every=10,
            eval_step=20,
            prompts_per_step=16,
            micro_batch=16,
            rollout=SamplingConfig(n=1, temperature=1.1, top_p=0.95, top_k=20, max_new_tokens=384),
            dtype="float32",
            gradient_checkpointing=False,
        ),
        # 128 x 1024 tokens x 2-4 KiB per token: a 256-512 MiB KV cache for the toy models.
        engine=EngineConfig(
            dtype="float32", max_model_len=1024, max_num_seqs=128, gpu_memory_utilization=0.05
        ),
    )


def _paper_profile() -> Profile:
    return Profile(
        name="paper",
        models={
            "qwen3": "Qwen/Qwen3-4B",
            "llama": "deepseek-ai/DeepSeek-R1-Distill-Llama-8B",
            "olmo3": "allenai/Olmo-3-7B-Think",
        },
        train_data="siyanzhao/Openthoughts_math_30k_opsd",
        benchmarks=(
            BenchmarkSpec("math500", "HuggingFaceH4/MATH-500", "test", label="MATH-500"),
            BenchmarkSpec("aime24", "HuggingFaceH4/aime_2024", "train", label="AIME 2024"),
            BenchmarkSpec("aime25", "yentinglin/aime_2025", "train", label="AIME 2025"),
            BenchmarkSpec(
                "hmmt25",
                "data/hmmt_feb_2025.parquet",
                sha256="87bfb23d2c887fab12b42fcc2b2dd8cb5a9d1070e591490dac8755bc366ea25e",
                label="HMMT 2025",
            ),
        ),
        eval_sampling=SamplingConfig(
            n=12, temperature=1.0, top_p=0.95, top_k=-1, max_new_tokens=38912
        ),
        train=TrainConfig(),
        engine=EngineConfig(
            dtype="bfloat16", max_model_len=40960, max_num_seqs=256, gpu_memory_utilization=0.85
        ),
    )


PROFILES = {"toy": _toy_profile, "paper": _paper_profile}
"""Profile name -> constructor."""


def get_profile(name: str) -> Profile:
    """The profile called ``name`` ("toy" or "paper")."""
    if name not in PROFILES:
        raise ConfigError(f"profile={name!r} is not known; allowed: {sorted(PROFILES)}")
    return PROFILES[name]()


# --------------------------------------------------------------------------------------
# Methods and schedules
# --------------------------------------------------------------------------------------

TRAINED_METHODS = ("opsd", "eopd", "reopold", "pw_opsd")
"""Training methods of the main table; the one spelling used by losses, results files and the book."""

METHODS = ("base", *TRAINED_METHODS)
"""Main-table rows ("base" = the untrained model)."""

SCHEDULES: dict[str, tuple[float, float, float]] = {
    # [our choice] high floor, softest transition.
    "mild": (0.50, 0.30, 0.15),
    # Published default (w_min, c, s), held fixed across models.
    "moderate": (0.25, 0.30, 0.10),
    # [our choice] lower floor, steeper transition (same centre as Moderate).
    "sharp": (0.10, 0.30, 0.05),
    # [our choice] lowest floor and the latest transition.
    "aggressive": (0.05, 0.45, 0.05),
}
"""Position-weight schedules: name -> (w_min, c, s) of w(u) = w_min + (1-w_min) sigmoid((u-c)/s).

Only ``moderate`` = (0.25, 0.30, 0.10) is published. ``mild``, ``sharp`` and ``aggressive`` are
**this project's choice**: the paper describes them only in words (Mild: high floor, softest
transition; Sharp: lower floor, steeper; Aggressive: lowest floor, latest transition) and does
not publish their values. See :data:`SCHEDULE_NOTES`.
"""

SCHEDULE_NOTES: dict[str, str] = {
    "mild": "our choice (paper: high floor, softest transition; values not published)",
    "moderate": "published default (0.25, 0.30, 0.10)",
    "sharp": "our choice (paper: lower floor, steeper; values not published)",
    "aggressive": "our choice (paper: lowest floor, latest transition; values not published)",
}
"""Provenance of each schedule's numbers, for tables and the book to print beside them."""

SCHEDULE_NAMES = tuple(SCHEDULES)
"""Named position-weight schedules, in order of rising sharpness."""

WEIGHTINGS = ("uniform", "position")
"""Token weightings of the reduction factorial (Appendix L)."""
REDUCTIONS = ("global", "per_sequence")
"""Reductions of the reduction factorial (Appendix L)."""

FACTORIAL_CELLS: dict[str, tuple[str, str]] = {
    "uniform_global": ("uniform", "global"),  # = OPSD
    "uniform_per_sequence": ("uniform", "per_sequence"),
    "position_global": ("position", "global"),
    "position_per_sequence": ("position", "per_sequence"),  # = PW-OPSD
}
"""The 2x2 reduction factorial: cell name -> (weighting, reduction)."""


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


# --------------------------------------------------------------------------------------
# Notebook configs (papermill parameters)
# --------------------------------------------------------------------------------------

# Names IPython / papermill put in a kernel's namespace that are not parameters.
_KERNEL_NAMES = {"In", "Out", "get_ipython", "exit", "quit", "open"}


def _check_choice(name: str, value: Any, allowed: tuple[str, ...] | list[str]) -> None:
    if value not in allowed:
        raise ConfigError(f"{name}={value!r} is not allowed; allowed values: {list(allowed)}")


def _check_list_choice(name: str, values: Any, allowed: tuple[str, ...]) -> None:
    if not isinstance(values, list | tuple) or not values:
        raise ConfigError(
            f"{name} must be a non-empty list drawn from {list(allowed)}; got {values!r}"
        )
    for v in values:
        if v not in allowed:
            raise ConfigError(
                f"{name} contains {v!r}, which is not allowed; allowed values: {list(allowed)}"
            )


def check_writable_dir(name: str, path: Path, shown: str = "") -> None:
    """Raise ConfigError naming ``name`` unless ``path`` is (or can be made) a writable directory.

    Probes with a temporary directory that is removed at once, so a check leaves nothing
    behind (a path that does not exist yet is not created).
    """
    import tempfile

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


@dataclass
class NotebookConfig:
    """Fields shared by every notebook."""

    seed: int = 1
    """Run seed (training + evaluation seeds derive from it); a non-negative integer."""
    profile: str = "toy"
    """Scale of the run: "toy" (CPU, minutes) or "paper" (4x H100, hub models)."""
    out_dir: str = ""
    """Where results files go; "" means results/<profile>/<notebook>."""

    notebook: ClassVar[str] = ""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ConfigError naming the first bad field."""
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            expected = _FIELD_TYPES.get(f.type if isinstance(f.type, str) else "")
            if expected is not None and not _type_ok(value, expected):
                raise ConfigError(
                    f"{f.name}={value!r} has type {type(value).__name__}; expected {f.type}"
                )
        if self.seed < 0:
            raise ConfigError(f"seed={self.seed!r} must be a non-negative integer")
        _check_choice("profile", self.profile, tuple(PROFILES))
        check_writable_dir("out_dir", self.results_dir, shown=self.out_dir)

    @property
    def results_dir(self) -> Path:
        """Absolute output directory."""
        if self.out_dir:
            p = Path(self.out_dir)
            return p if p.is_absolute() else REPO_ROOT / p
        return RESULTS_DIR / self.profile / self.notebook

    def get_profile(self) -> Profile:
        return get_profile(self.profile)

    def scale_tag(self) -> str:
        """ "" for the section's full configuration; otherwise a tag naming the fields that
        differ from it (e.g. "max_problems2-eval_seeds1"), so a quick run's results go under
        their own name and never replace a full run's."""
        default = type(self)()
        parts = []
        for f in dataclasses.fields(self):
            if f.name in ("seed", "profile", "out_dir"):
                continue
            value = getattr(self, f.name)
            if value != getattr(default, f.name):
                text = "+".join(map(str, value)) if isinstance(value, list | tuple) else value
                parts.append(f"{f.name}{text}")
        return "-".join(parts)

    @classmethod
    def from_namespace(cls, namespace: dict[str, Any]) -> NotebookConfig:
        """Build from a notebook's globals(): reject names that are not parameters.

        Papermill only *warns* on an unknown ``-p`` name and injects it anyway, so the
        first cell after the parameters calls this to fail loudly instead.
        """
        allowed = [f.name for f in dataclasses.fields(cls)]
        params = {
            k: v
            for k, v in namespace.items()
            if not k.startswith("_")
            and k not in _KERNEL_NAMES
            and not isinstance(v, types.ModuleType | types.FunctionType | type)
        }
        unknown = sorted(set(params) - set(allowed))
        if unknown:
            raise ConfigError(
                f"unknown parameter(s) {unknown} for notebook {cls.notebook!r}; "
                f"allowed parameters: {allowed}"
            )
        return cls(**{k: v for k, v in params.items() if k in allowed})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "int": (int,),
    "str": (str,),
    "float": (int, float),
    "bool": (bool,),
    "list[str]": (list, tuple),
    "int | None": (int, type(None)),
    "float | None": (int, float, type(None)),
}


def _type_ok(value: Any, expected: tuple[type, ...]) -> bool:
    # bool is an int subclass; a seed of True is a mistake, not a number.
    if isinstance(value, bool) and bool not in expected:
        return False
    return isinstance(value, expected)


DIAGNOSTIC_POOLS = ("math500", "aime24", "aime25")
"""Problem pools of the diagnostic (PROTOCOL section 5: MATH-500, AIME 2024, AIME 2025); the toy
profile reads its stand-ins ``toy_math500``, ``toy_aime24``, ``toy_aime25``."""

DIAGNOSTIC_BACKENDS = ("vllm", "hf")
"""Generation backends for spines and continuations (:func:`pwopsd.sampling.make_engine`)."""

POSITION_ORIENTATIONS = ("late", "early")
"""How the position score is oriented in Table 1: "late" scores u, "early" scores 1 - u."""


@dataclass
class DiagnosticConfig(NotebookConfig):
    """Branch-viability diagnostic (paper Sec. 3.2, Appendix A; PROTOCOL section 5).

    The paper publishes none of the thresholds and counts below: every default is **this
    project's choice** (PROTOCOL section 5, last line), picked so the toy profile finishes
    on 2 CPU cores in about 15 minutes with enough labelled candidates for a usable interval.
    ``book/diagnostic.md`` lists them as such.
    """

    notebook: ClassVar[str] = "diagnostic"
    backend: str = "vllm"
    """Engine for spines (A) and continuations (E): "vllm" or "hf" (HF generate; slow, exact)."""
    pools: list[str] = field(default_factory=lambda: list(DIAGNOSTIC_POOLS))
    """Problem pools, any of "math500", "aime24", "aime25" (toy profile: their toy stand-ins)."""
    max_problems: int = 192
    """Problems analysed, drawn round-robin from the pools in a seeded order. Our choice."""
    spine_max_tokens: int | None = None
    """Token budget of a spine (A); None = the profile's evaluation budget (toy 384, paper
    38,912)."""
    spine_fallback_tries: int = 4
    """Sampled retries when the greedy spine has no boxed answer within the budget (A). Our
    choice."""
    spine_fallback_temperature: float = 1.0
    """Temperature of those retries (top_p 0.95, as evaluation). Our choice."""
    entropy_top_k: int = 20
    """k of the teacher's top-k valid-token truncated entropy (B); also the components of the
    Dirichlet precision (D). Our choice."""
    plausibility_floor: float = 0.05
    """A child token needs at least this teacher probability (C). Our choice."""
    min_children: int = 2
    """A candidate position needs at least this many plausible valid children (C). Our choice."""
    min_spacing: int = 4
    """Minimum distance in tokens between two candidates of one problem (C). Our choice."""
    candidates_per_problem: int = 8
    """Highest-truncated-entropy positions kept per problem (C, "N"). Our choice."""
    children_per_candidate: int = 3
    """Teacher top-k valid child tokens forced at each candidate (C). Our choice."""
    mc_samples: int = 8
    """MC-dropout forward passes of the teacher (D). Our choice."""
    mc_dropout: float = 0.1
    """Dropout probability applied by the hooks on the last layers' outputs (D). Our choice."""
    mc_layers: int = 2
    """How many of the last decoder layers get the dropout hook (D). Our choice."""
    rollouts_per_child: int = 8
    """Student continuations sampled per forced child (E). Our choice."""
    continuation_temperature: float = 1.0
    """Sampling temperature of the continuations (E); evaluation's value. Our choice."""
    continuation_top_p: float = 0.95
    """Nucleus mass of the continuations (E); evaluation's value. Our choice."""
    continuation_max_tokens: int | None = None
    """Token budget of a continuation (E); None = the spine budget. Our choice."""
    viable_threshold: float = 0.5
    """A child is *viable* when at least this fraction of its continuations is correct (F).
    Our choice."""
    min_viable_children: int = 2
    """Diversity = at least this many viable children (F; PROTOCOL: "at least two")."""
    real_max_child_viability: float = 0.2
    """Real uncertainty needs every child's viability below this (F). Our choice."""
    real_max_mean_viability: float = 0.1
    """... and the children's mean viability below this (F). Our choice."""
    position_orientation: str = "late"
    """Table 1's position score: "late" scores u = (i - 0.5) / L (later = more likely real
    uncertainty), "early" scores 1 - u. Never flipped after seeing the data. Our reading."""
    bootstrap: int = 1000
    """Cluster-bootstrap resamples (over problems) for the AUROC interval (G)."""
    ci_level: float = 0.95
    """Level of the percentile bootstrap interval (G); the paper reports 95%."""

    def validate(self) -> None:
        super().validate()
        _check_choice("backend", self.backend, DIAGNOSTIC_BACKENDS)
        _check_list_choice("pools", self.pools, DIAGNOSTIC_POOLS)
        _check_choice("position_orientation", self.position_orientation, POSITION_ORIENTATIONS)
        for name in (
            "max_problems",
            "spine_max_tokens",
            "entropy_top_k",
            "min_children",
            "min_spacing",
            "candidates_per_problem",
            "children_per_candidate",
            "mc_samples",
            "mc_layers",
            "rollouts_per_child",
            "continuation_max_tokens",
            "min_viable_children",
            "bootstrap",
        ):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"{name}={value!r} must be >= 1")
        if self.spine_fallback_tries < 0:
            raise ConfigError(f"spine_fallback_tries={self.spine_fallback_tries!r} must be >= 0")
        for name in (
            "plausibility_floor",
            "viable_threshold",
            "real_max_child_viability",
            "real_max_mean_viability",
        ):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"{name}={value!r} must lie in [0, 1]")
        if not 0.0 <= self.mc_dropout < 1.0:
            raise ConfigError(f"mc_dropout={self.mc_dropout!r} must lie in [0, 1)")
        if not 0.0 < self.ci_level < 1.0:
            raise ConfigError(f"ci_level={self.ci_level!r} must lie in (0, 1)")
        if not 0.0 < self.continuation_top_p <= 1.0:
            raise ConfigError(f"continuation_top_p={self.continuation_top_p!r} must lie in (0, 1]")
        for name in ("continuation_temperature", "spine_fallback_temperature"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name}={getattr(self, name)!r} must be > 0")
        for name in ("min_children", "min_viable_children"):
            if getattr(self, name) > self.children_per_candidate:
                raise ConfigError(
                    f"{name}={getattr(self, name)!r} must be <= children_per_candidate="
                    f"{self.children_per_candidate}"
                )
        if self.entropy_top_k < self.children_per_candidate:
            raise ConfigError(
                f"entropy_top_k={self.entropy_top_k!r} must be >= children_per_candidate="
                f"{self.children_per_candidate}"
            )


@dataclass
class TableSectionConfig(NotebookConfig):
    """Fields shared by the sections that train methods and evaluate them into a table."""

    eval_seeds: int = 3
    """Evaluation seeds per checkpoint (mean and Bessel sd are reported)."""
    max_problems: int | None = None
    """Cap on problems per benchmark (None = all); for quick looks. Such runs write results
    under their own name and never replace full ones."""
    train_steps: int | None = None
    """Cap on optimizer steps per training run (None = the profile's); for quick looks. Such
    runs get their own run directories and never replace full ones."""

    def validate(self) -> None:
        super().validate()
        if self.train_steps is not None and self.train_steps < 1:
            raise ConfigError(f"train_steps={self.train_steps!r} must be >= 1 or None")
        if self.eval_seeds < 1:
            raise ConfigError(f"eval_seeds={self.eval_seeds!r} must be >= 1")
        if self.max_problems is not None and self.max_problems < 1:
            raise ConfigError(f"max_problems={self.max_problems!r} must be >= 1 or None")


@dataclass
class MainTableConfig(TableSectionConfig):
    """Main results table (paper Table 1): methods x benchmarks, Avg/Pass/Maj@12."""

    notebook: ClassVar[str] = "main_table"
    methods: list[str] = field(default_factory=lambda: list(METHODS))
    """Methods to train and evaluate; any of "base", "opsd", "eopd", "reopold", "pw_opsd"."""
    schedules: list[str] = field(default_factory=lambda: ["moderate", "aggressive"])
    """PW-OPSD schedules to run (mild/moderate/sharp/aggressive)."""

    def validate(self) -> None:
        super().validate()
        _check_list_choice("methods", self.methods, METHODS)
        _check_list_choice("schedules", self.schedules, SCHEDULE_NAMES)


@dataclass
class ScheduleSweepConfig(TableSectionConfig):
    """Schedule sweep (paper Table 3, Figure 2): PW-OPSD under Mild/Moderate/Sharp/Aggressive
    (+ one custom schedule), with OPSD as the reference row."""

    notebook: ClassVar[str] = "schedule_sweep"
    schedules: list[str] = field(default_factory=lambda: list(SCHEDULE_NAMES))
    """Named schedules to run."""
    w_min: float | None = None
    """Custom schedule floor in [0, 1]; with c and s adds a "custom" schedule."""
    c: float | None = None
    """Custom schedule centre, a fraction of the rollout in [0, 1]."""
    s: float | None = None
    """Custom schedule slope scale (> 0)."""

    def validate(self) -> None:
        super().validate()
        _check_list_choice("schedules", self.schedules, SCHEDULE_NAMES)
        custom = (self.w_min, self.c, self.s)
        if any(v is not None for v in custom) and any(v is None for v in custom):
            raise ConfigError("w_min, c and s must be given together for a custom schedule")
        if self.w_min is not None:
            check_schedule(self.w_min, self.c, self.s)


FAMILIES = ("qwen3", "llama", "olmo3")
"""Model families of the cross-model table (toy stand-ins at the toy profile)."""


@dataclass
class CrossModelConfig(TableSectionConfig):
    """Cross-model table (paper Table 4): base, OPSD and PW-OPSD Moderate on three families."""

    notebook: ClassVar[str] = "cross_model"
    families: list[str] = field(default_factory=lambda: list(FAMILIES))
    """Model families ("qwen3", "llama", "olmo3")."""
    methods: list[str] = field(default_factory=lambda: ["base", "opsd", "pw_opsd"])
    """Methods per family (any of "base", "opsd", "eopd", "reopold", "pw_opsd")."""
    schedule: str = "moderate"
    """PW-OPSD's schedule (the paper holds Moderate fixed across models)."""

    def validate(self) -> None:
        super().validate()
        _check_list_choice("families", self.families, FAMILIES)
        _check_list_choice("methods", self.methods, METHODS)
        _check_choice("schedule", self.schedule, SCHEDULE_NAMES)


@dataclass
class ReductionFactorialConfig(TableSectionConfig):
    """Appendix L (paper Table 6): {uniform, position} weight x {global, per-sequence} reduction."""

    notebook: ClassVar[str] = "reduction_factorial"
    weightings: list[str] = field(default_factory=lambda: list(WEIGHTINGS))
    """Token weightings ("uniform", "position")."""
    reductions: list[str] = field(default_factory=lambda: list(REDUCTIONS))
    """Reductions ("global", "per_sequence")."""
    schedule: str = "moderate"
    """Schedule used by the position weighting."""

    def validate(self) -> None:
        super().validate()
        _check_list_choice("weightings", self.weightings, WEIGHTINGS)
        _check_list_choice("reductions", self.reductions, REDUCTIONS)
        _check_choice("schedule", self.schedule, SCHEDULE_NAMES)


NOTEBOOK_CONFIGS: dict[str, type[NotebookConfig]] = {
    c.notebook: c
    for c in (
        DiagnosticConfig,
        MainTableConfig,
        ScheduleSweepConfig,
        CrossModelConfig,
        ReductionFactorialConfig,
    )
}
"""Notebook stem -> its config class."""
