"""The per-notebook configs that papermill parameters map onto.

Each notebook has a config dataclass below whose fields are exactly the notebook's
``parameters`` cell; ``Config.from_namespace(globals())`` validates what papermill injected
and fails before any compute, naming the bad parameter and the allowed values.
"""

from __future__ import annotations

import dataclasses
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from pwopsd.config.profiles import PROFILES, SHORTCUT_SHARES, get_profile
from pwopsd.config.settings import (
    REPO_ROOT,
    RESULTS_DIR,
    ConfigError,
    Profile,
    TrainConfig,
    check_schedule,
    check_writable_dir,
)
from pwopsd.vocab import (
    BACKENDS,
    DEFAULT_SCHEDULE,
    FAMILIES,
    REDUCTIONS,
    SCHEDULES,
    TABLE_ROWS,
    WEIGHTINGS,
)

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

    def results_file(self, stem: str = "") -> Path:
        """Where a results file of this run goes: ``<stem>.seed<k>.json`` for the section's full
        configuration, ``<stem>.seed<k>.<tag>.json`` (:meth:`scale_tag`) for any smaller or
        other one, so a quick run never replaces the files the book reads. ``stem`` defaults to
        the notebook's name (the diagnostic writes several stems)."""
        tag = self.scale_tag()
        name = f"{stem or self.notebook}.seed{self.seed}"
        return self.results_dir / (f"{name}.{tag}.json" if tag else f"{name}.json")

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
    "list[float]": (list, tuple),
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
    position_orientation: str = "early"
    """Table 1's position score: "early" scores 1 - u (earlier = more likely real uncertainty,
    the paper's orientation, the one its AUROC 0.83 is published for), "late" scores
    u = (i - 0.5) / L. Results files made before this default were stored "late"; the book
    mirrors them (AUROC of 1 - u is 1 - AUROC of u)."""
    bootstrap: int = 1000
    """Cluster-bootstrap resamples (over problems) for the AUROC interval (G)."""
    ci_level: float = 0.95
    """Level of the percentile bootstrap interval (G); the paper reports 95%."""

    def validate(self) -> None:
        super().validate()
        _check_choice("backend", self.backend, BACKENDS)
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
    methods: list[str] = field(default_factory=lambda: list(TABLE_ROWS))
    """Methods to train and evaluate; any of "base", "opsd", "eopd", "reopold", "pw_opsd"."""
    schedules: list[str] = field(default_factory=lambda: ["moderate", "aggressive"])
    """PW-OPSD schedules to run (mild/moderate/sharp/aggressive)."""

    def validate(self) -> None:
        super().validate()
        _check_list_choice("methods", self.methods, TABLE_ROWS)
        _check_list_choice("schedules", self.schedules, tuple(SCHEDULES))


@dataclass
class ScheduleSweepConfig(TableSectionConfig):
    """Schedule sweep (paper Table 3, Figure 2): PW-OPSD under Mild/Moderate/Sharp/Aggressive
    (+ one custom schedule), with OPSD as the reference row."""

    notebook: ClassVar[str] = "schedule_sweep"
    schedules: list[str] = field(default_factory=lambda: list(tuple(SCHEDULES)))
    """Named schedules to run."""
    w_min: float | None = None
    """Custom schedule floor in [0, 1]; with c and s adds a "custom" schedule."""
    c: float | None = None
    """Custom schedule centre, a fraction of the rollout in [0, 1]."""
    s: float | None = None
    """Custom schedule slope scale (> 0)."""

    def validate(self) -> None:
        super().validate()
        _check_list_choice("schedules", self.schedules, tuple(SCHEDULES))
        custom = (self.w_min, self.c, self.s)
        if any(v is not None for v in custom) and any(v is None for v in custom):
            raise ConfigError("w_min, c and s must be given together for a custom schedule")
        if self.w_min is not None:
            check_schedule(self.w_min, self.c, self.s)


@dataclass
class CrossModelConfig(TableSectionConfig):
    """Cross-model table (paper Table 4): base, OPSD and PW-OPSD Moderate on three families."""

    notebook: ClassVar[str] = "cross_model"
    families: list[str] = field(default_factory=lambda: list(FAMILIES))
    """Model families (any of :data:`pwopsd.vocab.FAMILIES`)."""
    methods: list[str] = field(default_factory=lambda: ["base", "opsd", "pw_opsd"])
    """Methods per family (any of "base", "opsd", "eopd", "reopold", "pw_opsd")."""
    schedule: str = DEFAULT_SCHEDULE
    """PW-OPSD's schedule (the paper holds Moderate fixed across models)."""

    def validate(self) -> None:
        super().validate()
        _check_list_choice("families", self.families, FAMILIES)
        _check_list_choice("methods", self.methods, TABLE_ROWS)
        _check_choice("schedule", self.schedule, tuple(SCHEDULES))


@dataclass
class ReductionFactorialConfig(TableSectionConfig):
    """Appendix L (paper Table 6): {uniform, position} weight x {global, per-sequence} reduction."""

    notebook: ClassVar[str] = "reduction_factorial"
    weightings: list[str] = field(default_factory=lambda: list(WEIGHTINGS))
    """Token weightings ("uniform", "position")."""
    reductions: list[str] = field(default_factory=lambda: list(REDUCTIONS))
    """Reductions ("global", "per_sequence")."""
    schedule: str = DEFAULT_SCHEDULE
    """Schedule used by the position weighting."""

    def validate(self) -> None:
        super().validate()
        _check_list_choice("weightings", self.weightings, WEIGHTINGS)
        _check_list_choice("reductions", self.reductions, REDUCTIONS)
        _check_choice("schedule", self.schedule, tuple(SCHEDULES))


@dataclass
class PositionPremiseConfig(TableSectionConfig):
    """The position-premise study: at each setting of the toy world's dial (the share of
    teacher examples that open with a reference-only shortcut, ``Mixture.teacher_shortcut_share``),
    base, OPSD, PW-OPSD and the matched-step control on the ``qwen3`` family; plus, once per
    setting, the teacher-signal position split and the diagnostic's position AUROC."""

    notebook: ClassVar[str] = "position_premise"
    dial: list[float] = field(default_factory=lambda: [0.0, *SHORTCUT_SHARES])
    """Dial settings (shortcut shares): 0 is the shipped toy world; each other value needs its
    pretrained checkpoint (``pwopsd.config.profiles.SHORTCUT_SHARES``)."""
    schedules: list[str] = field(default_factory=lambda: ["moderate", "aggressive"])
    """PW-OPSD schedules trained at every setting."""
    matched_schedules: list[str] = field(default_factory=lambda: ["moderate", "aggressive"])
    """Schedules whose matched-step control (``TrainConfig.matched_step``) is trained too."""
    zero_controls: list[str] = field(
        default_factory=lambda: ["pw_opsd_mild", "pw_opsd_sharp", "position_global_moderate"]
    )
    """At share 0 only, further position runs (run names) trained with the matched step, so
    every PW-OPSD row of the sweep and the factorial has its control."""
    own_recipes: bool = True
    """At share 0, also train each method of the equal-budget per-method tuning
    (``results/toy/recipe_tuning_per_method.json``) with its own best validation recipe."""
    measure: bool = True
    """Measure the teacher-signal position split and the diagnostic at each setting (once per
    setting, measurement seed 1, cached beside the results; seed-independent)."""

    def validate(self) -> None:
        super().validate()
        if self.profile != "toy":
            raise ConfigError(
                f"profile={self.profile!r}: the position-premise dial exists only in the toy "
                "world (profile 'toy')"
            )
        allowed = (0.0, *SHORTCUT_SHARES)
        if not isinstance(self.dial, list | tuple) or not self.dial:
            raise ConfigError(f"dial must be a non-empty list drawn from {list(allowed)}")
        for share in self.dial:
            if isinstance(share, bool) or share not in allowed:
                raise ConfigError(
                    f"dial contains {share!r}, which has no pretrained checkpoint; allowed "
                    f"values: {list(allowed)}"
                )
        _check_list_choice("schedules", self.schedules, tuple(SCHEDULES))
        if self.matched_schedules:
            _check_list_choice("matched_schedules", self.matched_schedules, tuple(SCHEDULES))
        runs = tuple(f"{m}_{s}" for m in ("pw_opsd", "position_global") for s in SCHEDULES)
        if self.zero_controls:
            _check_list_choice("zero_controls", self.zero_controls, runs)


@dataclass
class BeyondConfig(TableSectionConfig):
    """Beyond the paper (issue 20; :mod:`pwopsd.beyond`): beside base, OPSD and PW-OPSD
    Moderate on the main family, PW-Mix per mixing shape, PW-OPSD with the schedule fitted to
    the diagnostic, the teacher-free control, and PW-OPSD Moderate under other teachers."""

    notebook: ClassVar[str] = "beyond"
    mix_schedules: list[str] = field(default_factory=lambda: ["moderate", "aggressive"])
    """Shapes of PW-Mix's mixing weight m(u) (its sweep axis); [] leaves PW-Mix out."""
    fitted_schedule: bool = True
    """Train PW-OPSD with the schedule fitted to the diagnostic's committed results."""
    teacher_free: bool = True
    """Train the teacher-free control (arXiv 2608.31046 as we read it)."""
    teachers: list[str] = field(default_factory=lambda: ["student", "ema"])
    """Other teachers for PW-OPSD Moderate ("student", "ema"; "base" is its own row)."""
    teacher_ema_decay: float = TrainConfig.teacher_ema_decay
    """Decay of the "ema" teacher (``TrainConfig.teacher_ema_decay``), in [0, 1)."""

    def validate(self) -> None:
        super().validate()
        if self.mix_schedules:
            _check_list_choice("mix_schedules", self.mix_schedules, tuple(SCHEDULES))
        if self.teachers:
            _check_list_choice("teachers", self.teachers, ("student", "ema"))
        if not 0.0 <= self.teacher_ema_decay < 1.0:
            raise ConfigError(f"teacher_ema_decay={self.teacher_ema_decay!r} must lie in [0, 1)")


NOTEBOOK_CONFIGS: dict[str, type[NotebookConfig]] = {
    c.notebook: c
    for c in (
        DiagnosticConfig,
        MainTableConfig,
        ScheduleSweepConfig,
        CrossModelConfig,
        ReductionFactorialConfig,
        PositionPremiseConfig,
        BeyondConfig,
    )
}
"""Notebook stem -> its config class."""
