"""Benchmark the clipped-FKL implementations: time, memory above the inputs, gradient error.

``python -m pwopsd.bench loss [--vocab 151936 --batch 2 --seq 1024 --hidden 2560 ...]`` runs each
implementation in its own subprocess (so memory peaks don't mix) on the same seeded inputs and
the PW-OPSD reduction (Moderate position weights, per-sequence mean; every token valid unless
``--padded``):

* ``oracle``: :func:`pwopsd.losses.reference_per_token_clipped_fkl` + :func:`reduce_tokens`;
* ``chunked``: :func:`pwopsd.kernels.chunked.weighted_chunked_clipped_fkl` (torch.compile'd
  chunk body unless ``--no-compile``; the first-call compile is timed as ``warmup_seconds``,
  outside ``seconds``);
* ``oracle_linear`` / ``fused_linear``: the same from hidden states [B, T, H] and a shared
  lm_head [V, H] (the oracle includes the lm_head matmuls);
* ``triton`` (CUDA only).

Each worker measures ``baseline_rss_bytes`` (RSS once inputs exist and warm-up ran),
``peak_rss_bytes`` (polled every ~2 ms during loss + backward) and saves its gradient; the
parent compares gradients against the matching oracle as ``max|g - g_ref| / max|g_ref|``
(``max_rel_grad_err``), prints a table and writes ``results/bench/loss.json``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from pwopsd.bench.memory import PeakRSS, current_rss
from pwopsd.config import RESULTS_DIR
from pwopsd.kernels.chunked import weighted_chunked_clipped_fkl
from pwopsd.kernels.fused_linear import fused_linear_clipped_fkl
from pwopsd.kernels.triton_fkl import weighted_triton_clipped_fkl
from pwopsd.losses import position_weights, reference_per_token_clipped_fkl, token_coefficients
from pwopsd.provenance import write_results
from pwopsd.vocab import DEFAULT_SCHEDULE, SCHEDULES

LOGIT_IMPLS = ("oracle", "chunked", "triton")
LINEAR_IMPLS = ("oracle_linear", "fused_linear")
ALL_IMPLS = LOGIT_IMPLS + LINEAR_IMPLS
ORACLE_OF = {
    "oracle": "oracle",
    "chunked": "oracle",
    "triton": "oracle",
    "oracle_linear": "oracle_linear",
    "fused_linear": "oracle_linear",
}

TARGETS = {
    "chunked_speedup_min": 2.0,
    "chunked_memory_ratio_max": 1 / 3,
    "fused_linear_memory_ratio_max": 0.10,
    "max_rel_grad_err_fp32": 1e-5,
    "triton_speedup_min_cuda": 3.0,
}
"""The issue's targets, checked on the ratios of one run."""


# --------------------------------------------------------------------------------------
# Inputs (seeded; every worker builds the same ones)
# --------------------------------------------------------------------------------------


def row_lengths(batch: int, seq: int, padded: bool) -> list[int]:
    """Valid tokens per row: all ``seq``, or (``padded``) seq, 3/4 seq, 1/2 seq, ... ."""
    return [max(1, seq - (b * seq) // 4) if padded else seq for b in range(batch)]


def make_mask(lengths: list[int], seq: int) -> torch.Tensor:
    """[B, T] bool, valid tokens first then padding."""
    return torch.arange(seq)[None, :] < torch.tensor(lengths)[:, None]


def make_coefficients(mask: torch.Tensor) -> torch.Tensor:
    """PW-OPSD token coefficients of ``mask``: Moderate position weights, per-sequence mean."""
    return token_coefficients(
        mask, position_weights(mask, *SCHEDULES[DEFAULT_SCHEDULE]), per_sequence=True
    )


def make_logits(cfg: dict[str, Any], device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Student and teacher logits [B, T, V] fp32; teacher = student + noise so the clip engages."""
    g = torch.Generator().manual_seed(cfg["seed"])
    shape = (cfg["batch"], cfg["seq"], cfg["vocab"])
    student = torch.randn(shape, generator=g).mul_(2.0)
    teacher = torch.randn(shape, generator=g).mul_(1.0).add_(student)
    return student.to(device), teacher.to(device)


def make_hidden(
    cfg: dict[str, Any], device: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Hidden states [B, T, H] (student, teacher) and a shared lm_head [V, H] (logit std ~2.5)."""
    g = torch.Generator().manual_seed(cfg["seed"] + 1)
    shape = (cfg["batch"], cfg["seq"], cfg["hidden"])
    h_s = torch.randn(shape, generator=g)
    h_t = torch.randn(shape, generator=g).mul_(0.5).add_(h_s)
    weight = torch.randn(cfg["vocab"], cfg["hidden"], generator=g).mul_(2.5 / cfg["hidden"] ** 0.5)
    return h_s.to(device), h_t.to(device), weight.to(device)


# --------------------------------------------------------------------------------------
# Worker: one implementation, one process
# --------------------------------------------------------------------------------------


def run_impl(
    impl: str, cfg: dict[str, Any], x: dict[str, torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Loss + backward of ``impl`` on inputs ``x``; returns (loss, gradient of the student input)."""
    temp, tau, coeff = cfg["temperature"], cfg["tau_clip"], x["coeff"]
    if impl in LOGIT_IMPLS:
        s = x["student"].detach().requires_grad_(True)
        t = x["teacher"]
        if impl == "oracle":
            per_token = reference_per_token_clipped_fkl(s, t, temp, tau)
            loss = torch.where(coeff != 0, per_token * coeff, torch.zeros_like(per_token)).sum()
        elif impl == "chunked":
            loss, _ = weighted_chunked_clipped_fkl(
                s, t, coeff, temp, tau, chunk_size=cfg["chunk_size"], compile=cfg["compile"]
            )
        else:
            loss, _ = weighted_triton_clipped_fkl(s, t, coeff, temp, tau)
        loss.backward()
        return loss.detach(), s.grad
    h_s = x["h_s"].detach().requires_grad_(True)
    weight = x["weight"].detach().requires_grad_(cfg["weight_grad"])
    if impl == "oracle_linear":
        s_logits = h_s @ weight.T  # [B, T, V]
        with torch.no_grad():
            t_logits = x["h_t"] @ weight.T
        per_token = reference_per_token_clipped_fkl(s_logits, t_logits, temp, tau)
        loss = torch.where(coeff != 0, per_token * coeff, torch.zeros_like(per_token)).sum()
    else:
        loss, _ = fused_linear_clipped_fkl(
            h_s,
            x["h_t"],
            weight,
            coeff,
            temp,
            tau,
            chunk_size=cfg["chunk_size"],
            compile=cfg["compile"],
        )
    loss.backward()
    return loss.detach(), h_s.grad


def slice_inputs(x: dict[str, torch.Tensor], rows: int) -> dict[str, torch.Tensor]:
    """The first ``rows`` tokens of row 0 (warm-up at the real chunk shape)."""
    return {k: (v[:1, :rows] if k != "weight" else v) for k, v in x.items()}


def worker(impl: str, cfg: dict[str, Any], grad_path: str, result_path: str) -> None:
    device = cfg["device"]
    cuda = device.startswith("cuda")
    mask = make_mask(cfg["row_lengths"], cfg["seq"])
    x: dict[str, torch.Tensor] = {"coeff": make_coefficients(mask).to(device)}
    if impl in LOGIT_IMPLS:
        x["student"], x["teacher"] = make_logits(cfg, device)
    else:
        x["h_s"], x["h_t"], x["weight"] = make_hidden(cfg, device)

    t0 = time.perf_counter()  # warm-up: kernels, allocator, torch.compile at the chunk shape
    run_impl(impl, cfg, slice_inputs(x, min(cfg["chunk_size"], cfg["seq"])))
    if cuda:
        torch.cuda.synchronize()
    warmup = time.perf_counter() - t0
    gc.collect()

    if cuda:
        torch.cuda.reset_peak_memory_stats()
        base_cuda = torch.cuda.memory_allocated()
    baseline = current_rss()
    with PeakRSS() as peak:
        t0 = time.perf_counter()
        loss, grad = run_impl(impl, cfg, x)
        if cuda:
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
    result: dict[str, Any] = {
        "seconds": seconds,
        "baseline_rss_bytes": baseline,
        "peak_rss_bytes": peak.peak,
        "warmup_seconds": warmup,
        "loss": float(loss),
    }
    if cuda:
        result["baseline_cuda_bytes"] = base_cuda
        result["peak_cuda_bytes"] = torch.cuda.max_memory_allocated()
    torch.save(grad.detach().float().cpu(), grad_path)
    Path(result_path).write_text(json.dumps(result))


# --------------------------------------------------------------------------------------
# Parent: spawn workers, compare gradients, report
# --------------------------------------------------------------------------------------


def max_rel_err(grad: torch.Tensor, ref: torch.Tensor, rows: int = 256) -> float:
    """``max|g - g_ref| / max|g_ref|`` over [..., D] tensors, a few rows at a time (mmap-friendly)."""
    g, r = grad.reshape(-1, grad.shape[-1]), ref.reshape(-1, ref.shape[-1])
    diff, scale = 0.0, 0.0
    for i in range(0, g.shape[0], rows):
        gi, ri = g[i : i + rows].double(), r[i : i + rows].double()
        diff = max(diff, float((gi - ri).abs().max()))
        scale = max(scale, float(ri.abs().max()))
    return diff / scale if scale > 0 else diff


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m pwopsd.bench loss", description=__doc__.split("\n")[0]
    )
    p.add_argument("--vocab", type=int, default=151_936)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--seq", type=int, default=1024)
    p.add_argument(
        "--hidden", type=int, default=2560, help="H for the fused-linear comparison (Qwen3-4B)"
    )
    p.add_argument("--chunk-size", type=int, default=256)
    p.add_argument("--temperature", type=float, default=1.1)
    p.add_argument("--tau-clip", type=float, default=0.05)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument(
        "--impls",
        default=None,
        help=f"comma list from {','.join(ALL_IMPLS)} (default: all that apply)",
    )
    p.add_argument("--no-compile", action="store_true", help="eager chunk body (no torch.compile)")
    p.add_argument(
        "--padded",
        action="store_true",
        help="rows 3/4, 1/2, ... valid (padding chunks are skipped by chunked/fused_linear)",
    )
    p.add_argument(
        "--weight-grad", action="store_true", help="also differentiate the lm_head weight"
    )
    p.add_argument("--out", type=Path, default=RESULTS_DIR / "bench" / "loss.json")
    p.add_argument("--timeout", type=float, default=1800, help="seconds per worker")
    # internal: run one implementation
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--config", default=None, help=argparse.SUPPRESS)
    p.add_argument("--grad-path", default=None, help=argparse.SUPPRESS)
    p.add_argument("--result-path", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    for name in ("vocab", "batch", "seq", "hidden", "chunk_size"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    return args


def resolve_impls(spec: str | None, device: str) -> list[str]:
    cuda = device.startswith("cuda")
    if spec is None:
        return [i for i in ALL_IMPLS if cuda or i != "triton"]
    impls = [s.strip() for s in spec.split(",") if s.strip()]
    bad = [i for i in impls if i not in ALL_IMPLS]
    if bad:
        raise SystemExit(f"--impls: unknown {bad}; choose from {ALL_IMPLS}")
    if "triton" in impls and not cuda:
        raise SystemExit("--impls triton needs --device cuda")
    return impls


def targets_report(impls: dict[str, dict[str, Any]], device: str) -> dict[str, Any]:
    """The issue's targets as ratios of this run, each with met: true/false."""

    def above(name: str) -> float:
        r = impls[name]
        if "peak_cuda_bytes" in r:
            return r["peak_cuda_bytes"] - r["baseline_cuda_bytes"]
        return r["peak_rss_bytes"] - r["baseline_rss_bytes"]

    out: dict[str, Any] = {}
    if {"oracle", "chunked"} <= impls.keys():
        speedup = impls["oracle"]["seconds"] / impls["chunked"]["seconds"]
        mem = above("chunked") / max(above("oracle"), 1)
        out["chunked_speedup"] = {
            "value": speedup,
            "target": ">= 2",
            "met": speedup >= TARGETS["chunked_speedup_min"],
        }
        out["chunked_memory_ratio"] = {
            "value": mem,
            "target": "<= 1/3",
            "met": mem <= TARGETS["chunked_memory_ratio_max"],
        }
    if {"oracle_linear", "fused_linear"} <= impls.keys():
        mem = above("fused_linear") / max(above("oracle_linear"), 1)
        out["fused_linear_memory_ratio"] = {
            "value": mem,
            "target": "<= 0.10",
            "met": mem <= TARGETS["fused_linear_memory_ratio_max"],
        }
        out["fused_linear_speedup"] = {
            "value": impls["oracle_linear"]["seconds"] / impls["fused_linear"]["seconds"]
        }
    if {"oracle", "triton"} <= impls.keys() and device.startswith("cuda"):
        speedup = impls["oracle"]["seconds"] / impls["triton"]["seconds"]
        out["triton_speedup"] = {
            "value": speedup,
            "target": ">= 3",
            "met": speedup >= TARGETS["triton_speedup_min_cuda"],
        }
    for name, r in impls.items():
        if "max_rel_grad_err" in r and name not in ("oracle", "oracle_linear"):
            err = r["max_rel_grad_err"]
            out[f"{name}_grad_err"] = {
                "value": err,
                "target": "<= 1e-5",
                "met": err <= TARGETS["max_rel_grad_err_fp32"],
            }
    return out


def print_table(impls: dict[str, dict[str, Any]]) -> None:
    print(
        f"{'impl':<14}{'seconds':>9}{'warmup s':>10}{'base GiB':>10}{'peak GiB':>10}{'above GiB':>10}{'max rel grad err':>18}"
    )
    for name, r in impls.items():
        base, peak = r["baseline_rss_bytes"] / 2**30, r["peak_rss_bytes"] / 2**30
        if "peak_cuda_bytes" in r:
            base, peak = r["baseline_cuda_bytes"] / 2**30, r["peak_cuda_bytes"] / 2**30
        err = r.get("max_rel_grad_err")
        print(
            f"{name:<14}{r['seconds']:>9.2f}{r['warmup_seconds']:>10.2f}{base:>10.2f}{peak:>10.2f}"
            f"{peak - base:>10.2f}{'' if err is None else f'{err:.2e}':>18}"
        )


def bench_config(args: argparse.Namespace) -> dict[str, Any]:
    """The settings every worker reads (and loss.json records) from the parsed arguments."""
    return {
        "vocab": args.vocab,
        "batch": args.batch,
        "seq": args.seq,
        "hidden": args.hidden,
        "chunk_size": args.chunk_size,
        "temperature": args.temperature,
        "tau_clip": args.tau_clip,
        "seed": args.seed,
        "device": args.device,
        "compile": not args.no_compile,
        "weight_grad": args.weight_grad,
        "row_lengths": row_lengths(args.batch, args.seq, args.padded),
        "reduction": "PW-OPSD: moderate position weights, per-sequence mean",
        "dtype": "float32",
    }


def run_workers(impls: list[str], cfg: dict[str, Any], timeout: float) -> dict[str, dict[str, Any]]:
    """Run each implementation in its own process (oracles first) and compare its gradient and
    loss with its oracle's; a failed worker's entry is ``{"error": ...}``."""
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="pwopsd-bench-loss-") as tmp:
        for impl in impls:
            grad_path, result_path = f"{tmp}/{impl}.pt", f"{tmp}/{impl}.json"
            print(f"[bench loss] {impl} ...", flush=True)
            cmd = [
                sys.executable, "-m", "pwopsd.bench.loss", "--worker", impl, "--config", json.dumps(cfg),
                "--grad-path", grad_path, "--result-path", result_path,
            ]  # fmt: skip
            proc = subprocess.run(cmd, timeout=timeout)
            if proc.returncode != 0 or not Path(result_path).exists():
                print(f"[bench loss] {impl} failed (exit {proc.returncode})", file=sys.stderr)
                results[impl] = {"error": f"worker exit {proc.returncode}"}
                continue
            results[impl] = json.loads(Path(result_path).read_text())
            oracle = ORACLE_OF[impl]
            if oracle in results and "error" not in results[oracle]:
                grad = torch.load(grad_path, mmap=True)
                ref = torch.load(f"{tmp}/{oracle}.pt", mmap=True)
                results[impl]["max_rel_grad_err"] = max_rel_err(grad, ref)
                ref_loss = results[oracle]["loss"]
                results[impl]["loss_rel_err"] = abs(results[impl]["loss"] - ref_loss) / max(
                    abs(ref_loss), 1e-30
                )
                del grad, ref
            if impl != oracle:  # keep the oracles' gradients for later comparisons only
                os.remove(grad_path)
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(list(sys.argv[1:] if argv is None else argv))
    if args.worker:
        worker(args.worker, json.loads(args.config), args.grad_path, args.result_path)
        return 0
    cfg = bench_config(args)
    impls = resolve_impls(args.impls, args.device)
    # oracles first so their gradients exist when the others are compared
    impls.sort(key=lambda i: (i not in ("oracle", "oracle_linear"), ALL_IMPLS.index(i)))
    wall0 = time.perf_counter()
    load_start = os.getloadavg()
    results = run_workers(impls, cfg, args.timeout)
    ok = {k: v for k, v in results.items() if "error" not in v}
    print_table(ok)
    targets = targets_report(ok, args.device)
    for name, t in targets.items():
        met = "" if "met" not in t else ("  MET" if t["met"] else "  NOT MET")
        print(f"  {name}: {t['value']:.4g} {t.get('target', '')}{met}")
    load_end = os.getloadavg()
    path = write_results(
        args.out,
        {
            "config": cfg,
            "impls": results,
            "targets": targets,
            "load_average": {"start": load_start, "end": load_end},
        },
        profile=None,
        seed=args.seed,
        wall_seconds=time.perf_counter() - wall0,
    )
    print(
        f"[bench loss] wrote {path} (load average at start {load_start[0]:.2f}, end {load_end[0]:.2f})"
    )
    return 0 if all("error" not in v for v in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
