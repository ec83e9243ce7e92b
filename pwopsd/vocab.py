"""The project's vocabulary: one home for every name a config, a results file or the book uses.

Families, methods, schedules, backends, metrics and labels are spelled here once; every other
module imports them (this module imports nothing of the project, so anything may). The
spellings are the ones in results files: changing one changes what old files mean.
"""

from __future__ import annotations

# ------------------------------------------------------------------ model families

FAMILIES = ("qwen3", "llama", "olmo3")
"""Model families: the keys of a profile's ``models`` (toy checkpoints ``toy-<family>``)."""

MAIN_FAMILY = "qwen3"
"""The family of the paper's main results (Qwen3-4B); every single-model section uses it."""

PAPER_MODEL_IDS = {
    "qwen3": "Qwen/Qwen3-4B",
    "llama": "deepseek-ai/DeepSeek-R1-Distill-Llama-8B",
    "olmo3": "allenai/Olmo-3-7B-Think",
}
"""Family -> the paper's hub model (PROTOCOL section 3)."""

PAPER_MODEL_LABELS = {"qwen3": "Qwen3-4B", "llama": "DSR1-Llama-8B", "olmo3": "Olmo-3-7B-Think"}
"""Family -> the paper's short name for its model (tables, the cost plan)."""

# ------------------------------------------------------------------ methods

MAIN_TABLE_METHODS = ("opsd", "eopd", "reopold", "pw_opsd")
"""Trained methods of the main table (Table 1), in the paper's row order."""

TABLE_ROWS = ("base", *MAIN_TABLE_METHODS)
"""Rows a table section may show: "base" (the untrained model) and the main-table methods."""

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

BEYOND_METHODS = ("pw_mix", "teacher_free")
"""Methods beyond the paper (issue 20, :mod:`pwopsd.losses.variants`): "pw_mix", the clipped
forward KL mixed with the reverse KL by position (the paper's future work), and
"teacher_free", the control with no teacher (a fixed negative advantage on the student's
low-probability sampled tokens; arXiv 2608.31046 as we read it)."""

TRAINABLE_METHODS = (*MAIN_TABLE_METHODS, *FACTORIAL_CELLS, *BEYOND_METHODS)
"""Every method the training loop (and :func:`pwopsd.losses.method_loss`) accepts."""

TEACHER_FREE_METHODS = ("teacher_free",)
"""Methods whose loss reads no teacher logits: the training loop skips the teacher pass."""

TEACHERS = ("base", "student", "ema")
"""What plays the teacher (``TrainConfig.teacher``): "base" the frozen base model (the paper:
the LoRA adapter disabled), "student" the live student (adapter on, no grad), "ema" an
exponential moving average of the student's adapter weights. All read the privileged prompt."""

CLIPPED_FKL_METHODS: dict[str, tuple[str, str]] = {
    "opsd": ("uniform", "global"),
    "pw_opsd": ("position", "per_sequence"),
    **FACTORIAL_CELLS,
}
"""Methods whose loss is the clipped forward KL: method -> (weighting, reduction)
(PROTOCOL section 2). EOPD and REOPOLD have losses of their own."""

POSITION_WEIGHTED_METHODS = tuple(
    m for m, (weighting, _) in CLIPPED_FKL_METHODS.items() if weighting == "position"
)
"""Clipped-FKL methods whose loss is scaled by w(u) (PW-OPSD and the factorial's position cells):
the ones the matched-step control (``TrainConfig.matched_step``) applies to."""

POSITION_METHODS = (*POSITION_WEIGHTED_METHODS, "pw_mix")
"""Methods that take a position schedule: the position-weighted ones, and PW-Mix, whose
forward/reverse KL mixing weight m(u) has the same shape."""

METHOD_LABELS = {
    "base": "Base",
    "opsd": "OPSD",
    "eopd": "EOPD",
    "reopold": "REOPOLD",
    "pw_opsd": "PW-OPSD",
    "pw_mix": "PW-Mix",
    "teacher_free": "Teacher-free",
}
"""How the book names each table row (the paper's spelling)."""

# ------------------------------------------------------------------ schedules

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
"""Position-weight schedules, in order of rising sharpness: name -> (w_min, c, s) of
w(u) = w_min + (1-w_min) sigmoid((u-c)/s) (PROTOCOL section 2).

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

DEFAULT_SCHEDULE = "moderate"
"""The schedule a position method uses when none is named (the published one)."""

# ------------------------------------------------------------------ engines and metrics

BACKENDS = ("vllm", "hf")
"""Sampling backends: the vLLM engine, or HF ``generate`` on the live model."""

METRICS = ("avg", "pass", "maj")
"""Per-benchmark metrics (PROTOCOL section 4): Avg@n, Pass@n, Maj@n, in percent in tables."""

# ------------------------------------------------------------------ benchmarks

TOY_BENCHMARKS = ("toy_math500", "toy_aime24", "toy_aime25", "toy_hmmt25")
"""Toy stand-ins for MATH-500, AIME 2024, AIME 2025 and HMMT 2025, in rising difficulty."""

PAPER_BENCHMARKS = ("math500", "aime24", "aime25", "hmmt25")
"""The paper's four benchmarks (PROTOCOL section 4)."""

BENCHMARK_LABELS = {
    "math500": "MATH-500",
    "aime24": "AIME 2024",
    "aime25": "AIME 2025",
    "hmmt25": "HMMT 2025",
    **{f"toy_{b}": f"Toy {label}" for b, label in (
        ("math500", "MATH-500"), ("aime24", "AIME 2024"), ("aime25", "AIME 2025"),
        ("hmmt25", "HMMT 2025"),
    )},
}  # fmt: skip
"""Benchmark name -> how tables name it ("Toy AIME 2024" for a toy set)."""

PAPER_COLUMN = {**{b: BENCHMARK_LABELS[b] for b in PAPER_BENCHMARKS},
                **{f"toy_{b}": BENCHMARK_LABELS[b] for b in PAPER_BENCHMARKS}}  # fmt: skip
"""Benchmark name (toy or paper) -> the paper's column it stands for ("AIME 2024")."""

SECTION_TITLES = {
    "diagnostic": "Diagnostic",
    "main_table": "Main table",
    "schedule_sweep": "Schedule sweep",
    "cross_model": "Cross-model",
    "reduction_factorial": "Reduction factorial",
    "position_premise": "Position premise",
    "beyond": "Beyond the paper",
}
"""How tables name each notebook (section)."""
