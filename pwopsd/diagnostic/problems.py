"""The diagnostic's problems: where each pool comes from, the seeded draw, keys and budgets.

Every phase file names a problem by its :func:`problem_key` (``<pool>/<problem id>``), which
is also its cluster in the bootstrap of phase G.
"""

from __future__ import annotations

import random

from pwopsd.config import REPO_ROOT, BenchmarkSpec, DiagnosticConfig, Profile
from pwopsd.data import Problem, load_benchmark
from pwopsd.sampling import derive_seed

SHARED_BENCHMARKS = REPO_ROOT.parent / "shared" / "data" / "benchmarks"
"""Offline copies of the paper's benchmarks (used by the paper profile when present)."""

PAPER_POOL_FILES = {
    "math500": "math500.jsonl",
    "aime24": "aime2024.jsonl",
    "aime25": "aime2025.jsonl",
}
"""Pool -> its file under :data:`SHARED_BENCHMARKS`."""


def pool_spec(profile: Profile, pool: str) -> BenchmarkSpec:
    """Where one pool comes from: the toy stand-in, the shared offline copy, or the hub."""
    by_name = {b.name: b for b in profile.benchmarks}
    if f"toy_{pool}" in by_name:
        return by_name[f"toy_{pool}"]
    local = SHARED_BENCHMARKS / PAPER_POOL_FILES[pool]
    if local.is_file():
        return BenchmarkSpec(name=pool, source=str(local), label=by_name[pool].label)
    return by_name[pool]


def select_problems(cfg: DiagnosticConfig, profile: Profile) -> list[tuple[str, Problem]]:
    """``max_problems`` (pool, problem) pairs: each pool shuffled by the seed, then round-robin."""
    pools = []
    for pool in cfg.pools:
        probs = list(load_benchmark(pool_spec(profile, pool)).problems)
        random.Random(derive_seed(cfg.seed, "diagnostic-problems", pool)).shuffle(probs)
        pools.append([(pool, p) for p in probs])
    out: list[tuple[str, Problem]] = []
    while len(out) < cfg.max_problems and any(pools):
        for queue in pools:
            if queue and len(out) < cfg.max_problems:
                out.append(queue.pop(0))
    return out


def problem_key(pool: str, problem: Problem) -> str:
    """The key a problem carries in every phase file (its cluster in the bootstrap)."""
    return f"{pool}/{problem.id}"


def spine_budget(cfg: DiagnosticConfig, profile: Profile) -> int:
    """New-token budget of a spine (phase A): the config's, else the profile's evaluation one."""
    return cfg.spine_max_tokens or profile.eval_sampling.max_new_tokens


def continuation_budget(cfg: DiagnosticConfig, profile: Profile) -> int:
    """New-token budget of a forced continuation (phase E): the config's, else the spine's."""
    return cfg.continuation_max_tokens or spine_budget(cfg, profile)
