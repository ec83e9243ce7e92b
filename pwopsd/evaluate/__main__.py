"""``python -m pwopsd.evaluate``: sample, grade and score a model; resumes what is in --out.

Example: ``python -m pwopsd.evaluate --model M --benchmarks toy_math500 toy_aime24 --n 12
--seed 1 --out results/toy/eval/base``.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

from pwopsd.config import get_profile
from pwopsd.evaluate.run import evaluate_model
from pwopsd.vocab import BACKENDS, METRICS


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m pwopsd.evaluate",
        description="Sample, grade and score a model (PROTOCOL section 4); resumable.",
    )
    ap.add_argument("--model", required=True, help="from_pretrained path or hub name")
    ap.add_argument("--adapter", default=None, help="PEFT LoRA adapter directory")
    ap.add_argument(
        "--benchmarks",
        nargs="+",
        required=True,
        help="profile benchmark names, local .jsonl/.parquet files or hub ids",
    )
    ap.add_argument("--profile", default="toy", help="toy or paper (default sampling, dtype)")
    ap.add_argument("--n", type=int, default=None, help="samples per problem (default: profile)")
    ap.add_argument("--seed", type=int, nargs="+", default=[0], help="evaluation seed(s)")
    ap.add_argument("--max-new-tokens", type=int, default=None)
    ap.add_argument("--max-problems", type=int, default=None)
    ap.add_argument("--backend", choices=BACKENDS, default="vllm")
    ap.add_argument(
        "--grader-workers", type=int, default=None, help="grading processes (default: cores, <= 8)"
    )
    ap.add_argument("--out", required=True, help="output directory (resumes what is there)")
    return ap


def _score_line(name: str, entry: dict[str, Any], n: int) -> str:
    """One benchmark's Avg/Pass/Maj@n in percent, with the sd over seeds when there is one."""
    cells = []
    for m in METRICS:
        stat = entry["mean_sd"][m]
        sd = f"+-{100 * stat['sd']:.2f}" if stat["sd"] is not None else ""
        cells.append(f"{m}@{n} {100 * stat['mean']:.2f}{sd}")
    return f"{name:16s} {'  '.join(cells)}"


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    prof = get_profile(args.profile)
    sampling = prof.eval_sampling
    if args.max_new_tokens is not None:
        sampling = dataclasses.replace(sampling, max_new_tokens=args.max_new_tokens)
    summary = evaluate_model(
        args.model,
        args.benchmarks,
        n=args.n,
        seeds=args.seed,
        sampling=sampling,
        out_dir=args.out,
        adapter=args.adapter,
        max_problems=args.max_problems,
        backend=args.backend,
        profile=prof,
        grader_workers=args.grader_workers,
    )
    for name, entry in summary["benchmarks"].items():
        print(_score_line(name, entry, summary["sampling"]["n"]))
    print(f"wrote {Path(args.out) / 'summary.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
