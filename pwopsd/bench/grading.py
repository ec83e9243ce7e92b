"""Grading throughput: serial (one process) vs :class:`pwopsd.grading.GradingPool`.

``python -m pwopsd.bench grading [--workers 2] [--pairs 800] [--rounds 3] [--out PATH]``

The pairs are (prediction, gold) with golds from the real benchmark copies in
../shared/data/benchmarks (or a built-in fallback set) and predictions that are the gold,
LaTeX rewrites of it, or wrong answers: the mix a model's boxed answers produce. Every pair
is distinct and every round grades new pairs, so no cache (the pool's verdicts, sympy's)
helps either side. Serial and pooled runs alternate in order, so a change in machine load
hits both; the medians are reported. Worker start-up is timed separately. CPU seconds per sample
(this process for serial, the workers for the pool) show whether the pool adds work or
only waits for cores: on a shared machine the wall-clock ratio is bounded by the CPU
share the benchmark gets, which the load average printed alongside tells.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

from pwopsd.config import REPO_ROOT, RESULTS_DIR
from pwopsd.grading import TIMEOUT_S, GradingPool, grade_serial
from pwopsd.provenance import write_results

BENCH_DIR = REPO_ROOT.parent / "shared" / "data" / "benchmarks"
FALLBACK_GOLDS = [
    "204",
    "\\frac{1}{576}",
    "8\\sqrt{10}",
    "1-\\frac{2}{\\pi}",
    "-984",
    "(3,\\frac{\\pi}{2})",
]


def gold_answers() -> list[str]:
    golds: list[str] = []
    for path in sorted(BENCH_DIR.glob("*.jsonl")):
        with open(path, encoding="utf-8") as f:
            golds += [str(json.loads(line)["answer"]) for line in f if line.strip()]
    return golds or FALLBACK_GOLDS


def make_pairs(n_pairs: int, offset: int = 0) -> list[tuple[str, str]]:
    """Distinct (prediction, gold) pairs: exact, rewritten and wrong predictions.

    Different offsets give different pairs (the wrong answers carry the index).
    """
    golds = gold_answers()
    variants = [
        lambda g, i: g,
        lambda g, i: f" {g} ",
        lambda g, i: g.replace("\\frac", "\\dfrac"),
        lambda g, i: f"{g}+{i}",
        lambda g, i: f"{i}",
        lambda g, i: f"\\frac{{{i}}}{{{i + 1}}}",
        lambda g, i: f"2\\cdot({g})",
        lambda g, i: f"\\sqrt{{{i}}}",
    ]
    pairs: list[tuple[str, str]] = []
    seen = set()
    i = offset
    while len(pairs) < n_pairs:
        gold = golds[(i * 37) % len(golds)]  # stride: every benchmark's answers show up
        pred = variants[i % len(variants)](gold, i)
        if (pred, gold) not in seen:
            seen.add((pred, gold))
            pairs.append((pred, gold))
        i += 1
    return pairs


def _cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds of the given processes so far (Linux /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        except (OSError, IndexError, ValueError):
            continue
    return total / tick


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pwopsd.bench grading", description=__doc__)
    ap.add_argument("--workers", type=int, default=2, help="pool processes (default 2)")
    ap.add_argument("--pairs", type=int, default=800, help="distinct pairs per round")
    ap.add_argument("--rounds", type=int, default=3, help="alternating serial/pool rounds")
    ap.add_argument("--out", default=str(RESULTS_DIR / "bench" / "grading.json"))
    args = ap.parse_args(argv)
    pairs = make_pairs(args.pairs)
    load_before = os.getloadavg()

    grade_serial(pairs[:8])  # import math_verify / sympy before timing
    t0 = time.perf_counter()
    pool = GradingPool(workers=args.workers)
    pool.grade([(str(k), "1") for k in range(2 * args.workers)])
    startup_s = time.perf_counter() - t0

    serial_s, pool_s, serial_cpu, pool_cpu, mismatches, kills = [], [], [], [], 0, 0
    try:
        for r in range(args.rounds):
            # Fresh pairs each round (no answer is warm in any sympy cache), and the order
            # of the two modes alternates so that drifting load hits both alike.
            pairs = make_pairs(args.pairs, offset=(r + 1) * 100_000)
            for mode in ("serial", "pool") if r % 2 == 0 else ("pool", "serial"):
                if mode == "serial":
                    c0, t0 = time.process_time(), time.perf_counter()
                    serial = grade_serial(pairs)
                    serial_s.append(time.perf_counter() - t0)
                    serial_cpu.append(time.process_time() - c0)
                else:
                    pids = pool.worker_pids()
                    c0, t0 = _cpu_seconds(pids), time.perf_counter()
                    pooled = pool.grade(pairs, progress=False)
                    pool_s.append(time.perf_counter() - t0)
                    pool_cpu.append(_cpu_seconds(pids) - c0)
            mismatches += sum(a.correct != b.correct for a, b in zip(serial, pooled, strict=True))
            print(
                f"round {r}: serial {len(pairs) / serial_s[-1]:7.1f} samples/s   "
                f"pool {len(pairs) / pool_s[-1]:7.1f} samples/s   "
                f"ratio {serial_s[-1] / pool_s[-1]:.2f}   load {os.getloadavg()[0]:.2f}"
            )
        kills = pool.kills
    finally:
        pool.close()

    s_med, p_med = statistics.median(serial_s), statistics.median(pool_s)
    results = {
        "pairs_per_round": len(pairs),
        "rounds": args.rounds,
        "workers": args.workers,
        "serial_samples_per_s": len(pairs) / s_med,
        "pool_samples_per_s": len(pairs) / p_med,
        "speedup": s_med / p_med,
        "speedup_per_round": [s / p for s, p in zip(serial_s, pool_s, strict=True)],
        "pool_startup_seconds": startup_s,
        "serial_cpu_ms_per_sample": 1000 * sum(serial_cpu) / (len(pairs) * args.rounds),
        "pool_cpu_ms_per_sample": 1000 * sum(pool_cpu) / (len(pairs) * args.rounds),
        # Cores each mode actually got (CPU seconds / wall seconds): on a shared machine the
        # speedup cannot exceed pool_cores_used / serial_cores_used.
        "serial_cores_used": sum(serial_cpu) / sum(serial_s),
        "pool_cores_used": sum(pool_cpu) / sum(pool_s),
        "verdict_mismatches": mismatches,
        "correct_fraction": sum(v.correct for v in serial) / len(pairs),
        "methods": {m: sum(v.method == m for v in serial) for m in {v.method for v in serial}},
        "pool_kills": kills,
        "cpu_count": os.cpu_count(),
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "timeout_s": TIMEOUT_S,
    }
    for k, v in results.items():
        print(f"{k:26s} {v:.3f}" if isinstance(v, float) else f"{k:26s} {v}")
    path = write_results(
        Path(args.out), results, profile=None, wall_seconds=sum(serial_s) + sum(pool_s)
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
