"""Tune the toy training recipe on the held-out validation set (never on the evaluation sets).

``python -m pwopsd.toy.recipe [--seeds 1] [--candidates NAME ...]`` trains OPSD with each
candidate recipe (a set of TrainConfig overrides on top of the toy profile), evaluates the
final adapter and the base model on ``data/toy/toy_val.jsonl`` (Avg@12 and Pass@12), and
writes ``results/toy/recipe_tuning.json`` with provenance. One vLLM engine serves every
rollout and evaluation. The toy profile's ``train`` settings are then set from the winner by
hand (the book's toy-world page shows the table and says which was chosen).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from typing import Any

from pwopsd.config import RESULTS_DIR, TOY_DATA_DIR, BenchmarkSpec, get_profile

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


def _overrides(changes: dict[str, Any], base: Any) -> tuple[tuple[str, Any], ...]:
    out = dict(changes)
    steps = out.get("max_steps", base.max_steps)
    out.setdefault("eval_step", steps)
    out.setdefault("save_every", min(base.save_every, steps))
    return tuple(sorted(out.items()))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pwopsd.toy.recipe", description=__doc__)
    ap.add_argument("--candidates", nargs="+", default=list(CANDIDATES), choices=list(CANDIDATES))
    ap.add_argument("--seeds", nargs="+", type=int, default=[1])
    ap.add_argument("--methods", nargs="+", default=["opsd"])
    ap.add_argument("--n", type=int, default=12)
    ap.add_argument("--root", default=str(RESULTS_DIR / "toy" / "runs" / "recipe"))
    ap.add_argument("--out", default=str(RESULTS_DIR / "toy" / "recipe_tuning.json"))
    args = ap.parse_args(argv)

    from pwopsd.evaluate import evaluate_model
    from pwopsd.provenance import write_results
    from pwopsd.sampling import make_engine
    from pwopsd.train import RunSpec, train

    if not VAL_SET.source or not __import__("pathlib").Path(VAL_SET.source).is_file():
        print(f"error: the validation set {VAL_SET.source} is missing", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    prof = get_profile("toy")
    engine = make_engine(
        "vllm", prof.main_model, profile=prof, enable_lora=True, max_lora_rank=prof.train.lora_r
    )
    eval_dir = RESULTS_DIR / "toy" / "runs" / "recipe_eval"
    rows: list[dict[str, Any]] = []
    try:
        base = evaluate_model(
            prof.main_model,
            [VAL_SET],
            n=args.n,
            seeds=[0],
            out_dir=eval_dir / "base",
            profile=prof,
            engine=engine,
            progress=False,
        )
        base_scores = base["benchmarks"]["toy_val"]["mean_sd"]
        for name in args.candidates:
            changes = CANDIDATES[name]
            for method in args.methods:
                for seed in args.seeds:
                    spec = RunSpec(
                        method=method,
                        seed=seed,
                        overrides=_overrides(changes, prof.train),
                        root=args.root,
                    )
                    run = train(spec, engine=engine)
                    s = evaluate_model(
                        prof.main_model,
                        [VAL_SET],
                        n=args.n,
                        seeds=[0],
                        adapter=str(run.eval_adapter),
                        out_dir=eval_dir / spec.dir_name / f"seed{seed}",
                        profile=prof,
                        engine=engine,
                        progress=False,
                    )
                    m = s["benchmarks"]["toy_val"]["mean_sd"]
                    rows.append(
                        {
                            "candidate": name,
                            "overrides": {k: v for k, v in changes.items()},
                            "method": method,
                            "seed": seed,
                            "avg": m["avg"]["mean"],
                            "pass": m["pass"]["mean"],
                            "gain_avg": m["avg"]["mean"] - base_scores["avg"]["mean"],
                            "train_seconds": run.summary["provenance"]["wall_seconds"],
                        }
                    )
                    print(
                        f"{name:24s} {method:8s} seed {seed}: Avg@{args.n} "
                        f"{100 * m['avg']['mean']:.1f} (base {100 * base_scores['avg']['mean']:.1f})"
                    )
    finally:
        engine.close()
    write_results(
        args.out,
        {
            "set": VAL_SET.source,
            "n": args.n,
            "base": {"avg": base_scores["avg"]["mean"], "pass": base_scores["pass"]["mean"]},
            "profile_train": dataclasses.asdict(prof.train),
            "rows": rows,
        },
        profile="toy",
        seed=args.seeds[0],
        wall_seconds=time.perf_counter() - t0,
    )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
