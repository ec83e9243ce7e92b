"""Tune the toy training recipe on the held-out validation set (never on the evaluation sets).

``python -m pwopsd.toy recipe [--seeds 1] [--candidates NAME ...]`` trains OPSD with each
candidate recipe (a set of TrainConfig overrides on top of the toy profile), evaluates the
final adapter and the base model on ``data/toy/toy_val.jsonl`` (Avg@12 and Pass@12), and
writes ``results/toy/recipe_tuning.json`` with provenance. One vLLM engine serves every
rollout and evaluation. The toy profile's ``train`` settings are then set from the winner by
hand (the book's toy-world page shows the table and says which was chosen).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

from pwopsd.config import RESULTS_DIR, TOY_DATA_DIR, BenchmarkSpec, Profile, get_profile
from pwopsd.engine import make_engine
from pwopsd.evaluate import evaluate_model
from pwopsd.provenance import write_results
from pwopsd.train import RunSpec, train
from pwopsd.vocab import SCHEDULES, TRAINABLE_METHODS

CANDIDATES: dict[str, dict[str, Any]] = {
    "profile": {},
    "clip0.05_lr1e-4": {"tau_clip": 0.05, "learning_rate": 1e-4},
    "noclip_lr1e-4": {"tau_clip": None, "learning_rate": 1e-4},
    "noclip_lr3e-4": {"tau_clip": None, "learning_rate": 3e-4},
    "clip0.5_lr3e-4": {"tau_clip": 0.5, "learning_rate": 3e-4},
    "noclip_lr3e-4_60steps": {"tau_clip": None, "learning_rate": 3e-4, "max_steps": 60},
    "noclip_lr1e-3": {"tau_clip": None, "learning_rate": 1e-3},
    "clip0.5_lr1e-3": {"tau_clip": 0.5, "learning_rate": 1e-3},
    "clip0.5_lr1e-3_60steps": {"tau_clip": 0.5, "learning_rate": 1e-3, "max_steps": 60},
}
"""Candidate recipes: name -> TrainConfig overrides (on top of the toy profile)."""

VAL_SET = BenchmarkSpec("toy_val", str(TOY_DATA_DIR / "toy_val.jsonl"), label="Toy validation")

RUNS_ROOT = RESULTS_DIR / "toy" / "runs" / "recipe"
"""Where the candidates' training runs go (``--root``)."""
EVAL_DIR = RESULTS_DIR / "toy" / "runs" / "recipe_eval"
"""Where the base model's and each adapter's validation samples go."""
TUNING_PATH = RESULTS_DIR / "toy" / "recipe_tuning.json"
"""The tuning table (``--out``)."""


PER_METHOD_PATH = RESULTS_DIR / "toy" / "recipe_tuning_per_method.json"
"""The equal-budget per-method tuning (the same candidates for OPSD, PW-OPSD Moderate and
Aggressive; the position-premise study's "own recipe" rows)."""

PER_METHOD = ("opsd", "pw_opsd_moderate", "pw_opsd_aggressive")
"""Methods of the per-method tuning, as run names."""


def method_spec(name: str) -> tuple[str, str | None]:
    """A tuned method as (training method, schedule): "opsd", "eopd", ... or
    "pw_opsd_<schedule>" ("pw_opsd" alone is PW-OPSD Moderate). Raises ValueError naming it."""
    if name in TRAINABLE_METHODS:
        return name, None
    if name.startswith("pw_opsd_") and name.removeprefix("pw_opsd_") in SCHEDULES:
        return "pw_opsd", name.removeprefix("pw_opsd_")
    raise ValueError(
        f"method {name!r} is not known; allowed: {[*TRAINABLE_METHODS]} or pw_opsd_<schedule> "
        f"with a schedule of {list(SCHEDULES)}"
    )


def best_recipes(tuning: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per tuned method: the candidate with the highest validation Avg (mean over its seeds),
    as {"candidate", "overrides", "avg"}; ties keep the earlier candidate."""
    scores: dict[str, dict[str, list[float]]] = {}
    overrides: dict[str, dict[str, Any]] = {}
    for row in tuning["rows"]:
        scores.setdefault(row["method"], {}).setdefault(row["candidate"], []).append(row["avg"])
        overrides[row["candidate"]] = row["overrides"]
    best = {}
    for method, by_candidate in scores.items():
        name = max(by_candidate, key=lambda c: sum(by_candidate[c]) / len(by_candidate[c]))
        avg = sum(by_candidate[name]) / len(by_candidate[name])
        best[method] = {"candidate": name, "overrides": overrides[name], "avg": avg}
    return best


def recipe_overrides(changes: dict[str, Any], base: Any) -> tuple[tuple[str, Any], ...]:
    """A candidate's TrainConfig overrides as a run takes them: evaluated at its last step."""
    out = dict(changes)
    steps = out.get("max_steps", base.max_steps)
    out.setdefault("eval_step", steps)
    out.setdefault("save_every", min(base.save_every, steps))
    return tuple(sorted(out.items()))


def val_set_present() -> bool:
    """Whether the validation set's file is there (``python -m pwopsd.toy data`` writes it)."""
    return bool(VAL_SET.source) and Path(VAL_SET.source).is_file()


def val_scores(
    prof: Profile, engine: Any, n: int, out_dir: Path, adapter: str | None = None
) -> dict[str, Any]:
    """Mean (and sd) Avg@n and Pass@n on the validation set, of the base model or ``adapter``."""
    result = evaluate_model(
        prof.main_model,
        [VAL_SET],
        n=n,
        seeds=[0],
        adapter=adapter,
        out_dir=out_dir,
        profile=prof,
        engine=engine,
        progress=False,
    )
    return result["benchmarks"]["toy_val"]["mean_sd"]


def tune_candidate(
    prof: Profile, engine: Any, name: str, method: str, seed: int, n: int, root: str, base: dict
) -> dict[str, Any]:
    """Train ``method`` under candidate ``name`` with ``seed`` and score its final adapter:
    one row of the tuning table (``base``: the base model's :func:`val_scores`)."""
    changes = CANDIDATES[name]
    trained, schedule = method_spec(method)
    spec = RunSpec(method=trained, seed=seed, schedule=schedule,
                   overrides=recipe_overrides(changes, prof.train), root=root)  # fmt: skip
    run = train(spec, engine=engine)
    out_dir = EVAL_DIR / spec.dir_name / f"seed{seed}"
    m = val_scores(prof, engine, n, out_dir, adapter=str(run.eval_adapter))
    print(
        f"{name:24s} {method:8s} seed {seed}: Avg@{n} "
        f"{100 * m['avg']['mean']:.1f} (base {100 * base['avg']['mean']:.1f})"
    )
    return {
        "candidate": name,
        "overrides": {k: v for k, v in changes.items()},
        "method": method,
        "seed": seed,
        "avg": m["avg"]["mean"],
        "pass": m["pass"]["mean"],
        "gain_avg": m["avg"]["mean"] - base["avg"]["mean"],
        "train_seconds": run.summary["provenance"]["wall_seconds"],
    }


def tune(
    candidates: list[str],
    seeds: list[int],
    methods: list[str],
    n: int = 12,
    root: str = str(RUNS_ROOT),
    out: str = str(TUNING_PATH),
) -> Path:
    """Score the base model and every (candidate, method, seed) on the validation set with one
    vLLM engine, and write the table with provenance to ``out``; returns its path."""
    for method in methods:
        method_spec(method)  # an unknown name fails before the engine starts
    t0 = time.perf_counter()
    prof = get_profile("toy")
    engine = make_engine(
        "vllm", prof.main_model, profile=prof, enable_lora=True, max_lora_rank=prof.train.lora_r
    )
    rows: list[dict[str, Any]] = []
    try:
        base = val_scores(prof, engine, n, EVAL_DIR / "base")
        for name in candidates:
            for method in methods:
                for seed in seeds:
                    rows.append(tune_candidate(prof, engine, name, method, seed, n, root, base))
    finally:
        engine.close()
    return write_results(
        out,
        {
            "set": VAL_SET.source,
            "n": n,
            "base": {"avg": base["avg"]["mean"], "pass": base["pass"]["mean"]},
            "profile_train": dataclasses.asdict(prof.train),
            "rows": rows,
        },
        profile="toy",
        seed=seeds[0],
        wall_seconds=time.perf_counter() - t0,
    )
