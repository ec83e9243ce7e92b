#!/usr/bin/env python
"""Check the Triton clipped-FKL kernel against an fp64 oracle, then time it on a GPU.

    python scripts/check_triton.py                 # on a CUDA machine: checks + timing -> results/bench/triton_check.json
    python scripts/check_triton.py --interpret     # no GPU: Triton's CPU interpreter, small checks only

Checks (each vs :func:`pwopsd.kernels.reference_per_token_clipped_fkl` in fp64 on the same
inputs): per-token values and gradients, the weighted (fused coefficients) form, fp32 / bf16 /
fp16 logits, temperature 1 and 1.1, tau_clip 0.05 and None, -inf (masked vocab) entries, rows
with coefficient 0 holding garbage, a vocab that is not a multiple of the tile, and an
all-masked batch; then the edges every implementation shares: a NaN in a row that counts gives
NaN, padding rows of NaN or ``-inf`` never reach the weighted value or gradient, a teacher that
requires grad is detached. Timing (CUDA only): oracle (the fp32 reference loss + backward, what the
release does) vs the Triton kernel at B*T tokens x V, against the memory floor = one pass that
reads both logits tensors and writes a gradient (``torch.add(s, t, out=g)``). Issue targets:
Triton >= 3x faster than the oracle at B*T = 8192 and within 2x of the floor.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from typing import Any

# Triton decides between compiling and interpreting when kernels are defined: set the switch
# before anything imports pwopsd.kernels.triton_fkl.
if "--interpret" in sys.argv:
    os.environ["TRITON_INTERPRET"] = "1"

import torch  # noqa: E402

TOLERANCES = {  # max |g - g64| / max |g64| and max |loss - loss64| / max(|loss64|, 1e-3)
    torch.float32: 2e-5,
    torch.float16: 2e-3,
    torch.bfloat16: 1.6e-2,
}


def make_case(n: int, v: int, dtype: torch.dtype, device: str, seed: int) -> dict[str, Any]:
    """Seeded logits [n, v] in ``dtype`` with -inf entries, garbage padding rows, coefficients."""
    g = torch.Generator().manual_seed(seed)
    s = torch.randn(n, v, generator=g, dtype=torch.float64) * 2.0
    t = s + torch.randn(n, v, generator=g, dtype=torch.float64)
    t[0, : v // 3] = -math.inf  # teacher masks a third of the vocab
    if n > 1:
        s[1, : v // 5] = -math.inf  # student masks entries the teacher supports -> f = inf -> tau
    coeff = torch.rand(n, generator=g, dtype=torch.float64) + 0.1
    if n > 2:
        coeff[-1] = 0.0  # a padding row whose logits are garbage
        s[-1, :] = math.nan
    upstream = torch.randn(n, generator=g, dtype=torch.float64)
    upstream[coeff == 0] = 0.0
    return {
        "s": s.to(dtype).to(device),
        "t": t.to(dtype).to(device),
        "coeff": coeff.to(device),
        "upstream": upstream.to(device),
    }


def oracle64(
    s: torch.Tensor, t: torch.Tensor, temperature: float, tau: float | None, keep: torch.Tensor
):
    """fp64 reference per-token loss and the gradient of ``sum(upstream * loss)`` rows in ``keep``."""
    from pwopsd.kernels.reference import reference_per_token_clipped_fkl

    s64 = s.double().clone()
    s64[~keep] = 0.0  # garbage rows are excluded from the comparison
    s64.requires_grad_(True)
    loss = reference_per_token_clipped_fkl(s64, t.double(), temperature, tau)
    return loss, s64


def rel_err(x: torch.Tensor, ref: torch.Tensor) -> float:
    x, ref = x.double(), ref.double()
    both_inf = torch.isinf(x) & torch.isinf(ref) & (torch.sign(x) == torch.sign(ref))
    diff = torch.where(both_inf, torch.zeros_like(x), (x - ref).abs())
    scale = ref[torch.isfinite(ref)].abs().max().clamp(min=1e-3)
    return float(diff.max() / scale)


def check_correctness(device: str, quick: bool = False) -> list[dict[str, Any]]:
    """Run every check; returns one record per case with errors and pass/fail."""
    from pwopsd.kernels.triton_fkl import triton_clipped_fkl, weighted_triton_clipped_fkl

    shapes = [(5, 300, 128)] if quick else [(5, 300, 128), (37, 32_000, 4096), (16, 151_936, 4096)]
    dtypes = (
        [torch.float32, torch.bfloat16] if quick else [torch.float32, torch.bfloat16, torch.float16]
    )
    records = []
    for n, v, block in shapes:
        for dtype in dtypes:
            for temperature, tau in (
                [(1.1, 0.05), (1.0, None)]
                if not quick
                else [(1.1, 0.05), (1.0, None), (0.7, -0.01)]
            ):
                case = make_case(n, v, dtype, device, seed=n + v)
                keep = case["coeff"] != 0
                loss64, s64 = oracle64(case["s"], case["t"], temperature, tau, keep)
                # per-token API: upstream gradient arbitrary, garbage row gets upstream 0
                s = case["s"].clone().requires_grad_(True)
                loss = triton_clipped_fkl(s, case["t"], temperature, tau, block_v=block)
                (loss * case["upstream"].to(loss.dtype)).sum().backward()
                (g64,) = torch.autograd.grad(
                    (loss64 * case["upstream"]).sum(), s64, retain_graph=True
                )
                # weighted API: coefficients fused in the kernel
                s2 = case["s"].clone().requires_grad_(True)
                total, _ = weighted_triton_clipped_fkl(
                    s2, case["t"], case["coeff"], temperature, tau, block_v=block
                )
                total.backward()
                w64 = torch.where(keep, loss64 * case["coeff"], torch.zeros_like(loss64)).sum()
                (gw64,) = torch.autograd.grad(w64, s64)
                finite = torch.isfinite(loss64)
                rec = {
                    "n": n,
                    "vocab": v,
                    "dtype": str(dtype).removeprefix("torch."),
                    "temperature": temperature,
                    "tau_clip": tau,
                    "loss_err": rel_err(loss[keep], loss64[keep]),
                    "grad_err": rel_err(s.grad[keep], g64[keep]),
                    "weighted_loss_err": abs(float(total) - float(w64)) / max(abs(float(w64)), 1e-3)
                    if bool(finite[keep].all())
                    else 0.0,
                    "weighted_grad_err": rel_err(s2.grad[keep], gw64[keep]),
                    "garbage_row_grad_zero": bool(
                        (s.grad[~keep] == 0).all() and (s2.grad[~keep] == 0).all()
                    ),
                }
                tol = TOLERANCES[dtype]
                rec["pass"] = (
                    max(
                        rec["loss_err"],
                        rec["grad_err"],
                        rec["weighted_loss_err"],
                        rec["weighted_grad_err"],
                    )
                    <= tol
                    and rec["garbage_row_grad_zero"]
                )
                records.append(rec)
    # an all-masked batch: loss 0, zero gradients, no NaN
    case = make_case(4, 300, torch.float32, device, seed=1)
    s = case["s"].clone().nan_to_num(0.0).requires_grad_(True)
    total, _ = weighted_triton_clipped_fkl(
        s, case["t"], torch.zeros(4, device=device), 1.1, 0.05, block_v=128
    )
    total.backward()
    records.append(
        {"case": "all_masked", "pass": float(total) == 0.0 and bool((s.grad == 0).all())}
    )
    return records


def check_edges(device: str) -> list[dict[str, Any]]:
    """NaN and padding edges, same conventions as every other implementation (PROTOCOL sec. 2).

    A NaN in a row that counts gives a NaN loss (per-token and weighted) and a NaN gradient in
    that row; rows with coefficient 0 holding NaN or all ``-inf`` never reach the weighted value
    or gradient; a teacher that requires grad is a constant (detached, no error).
    """
    from pwopsd.kernels.triton_fkl import triton_clipped_fkl, weighted_triton_clipped_fkl

    records = []
    for side in ("student", "teacher"):
        case = make_case(6, 300, torch.float32, device, seed=7)
        s, t, coeff = case["s"].clone(), case["t"].clone(), case["coeff"]
        s[-1] = 0.0  # no other garbage in this case
        (s if side == "student" else t)[2, 17] = math.nan
        x = s.clone().requires_grad_(True)
        loss = triton_clipped_fkl(x, t, 1.1, 0.05, block_v=128)
        loss.sum().backward()
        y = s.clone().requires_grad_(True)
        total, _ = weighted_triton_clipped_fkl(y, t, coeff, 1.1, 0.05, block_v=128)
        total.backward()
        others = torch.ones(6, dtype=torch.bool, device=device)
        others[2] = False
        records.append(
            {
                "case": f"nan_valid_{side}",
                "pass": bool(loss[2].isnan())
                and bool(torch.isfinite(loss[others]).all())
                and bool(total.isnan())
                and bool(x.grad[2].isnan().any() and y.grad[2].isnan().any())
                and bool(torch.isfinite(y.grad[others]).all()),
            }
        )
    case = make_case(6, 300, torch.float32, device, seed=8)  # row 5: NaN student, coefficient 0
    s, t, coeff = case["s"].clone(), case["t"].clone(), case["coeff"].clone()
    coeff[3] = 0.0
    t[3] = -math.inf  # a padding row of -inf
    keep = coeff != 0
    x = s.clone().requires_grad_(True)
    total, _ = weighted_triton_clipped_fkl(x, t, coeff, 1.1, 0.05, block_v=128)
    total.backward()
    clean_s, clean_t = s.clone(), t.clone()
    clean_s[~keep], clean_t[~keep] = 0.0, 0.0
    z = clean_s.clone().requires_grad_(True)
    clean_total, _ = weighted_triton_clipped_fkl(z, clean_t, coeff, 1.1, 0.05, block_v=128)
    clean_total.backward()
    records.append(
        {
            "case": "garbage_padding",
            "pass": bool(torch.isfinite(total))
            and float(total) == float(clean_total)
            and bool((x.grad[~keep] == 0).all())
            and bool(torch.equal(x.grad, z.grad)),
        }
    )
    teacher = case["t"].clone().requires_grad_(True)
    w = case["s"].clone().nan_to_num(0.0).requires_grad_(True)
    total, _ = weighted_triton_clipped_fkl(w, teacher, case["coeff"], 1.1, 0.05, block_v=128)
    total.backward()
    records.append({"case": "teacher_requires_grad", "pass": teacher.grad is None})
    return records


def cuda_time(fn, repeats: int = 5) -> float:
    """Median seconds of ``fn()`` over ``repeats`` runs after one warm-up (CUDA events)."""
    fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) / 1000)
    return sorted(times)[len(times) // 2]


def time_impls(n_tokens: int, vocab: int, dtype: torch.dtype) -> dict[str, Any]:
    """Oracle vs Triton (loss + backward) vs the read-both-write-one floor, on CUDA."""
    from pwopsd.kernels.reference import reference_per_token_clipped_fkl
    from pwopsd.kernels.triton_fkl import weighted_triton_clipped_fkl

    g = torch.Generator(device="cuda").manual_seed(0)
    s = (torch.randn(n_tokens, vocab, device="cuda", generator=g) * 2).to(dtype)
    t = (s.float() + torch.randn(n_tokens, vocab, device="cuda", generator=g)).to(dtype)
    coeff = torch.full((n_tokens,), 1.0 / n_tokens, device="cuda")
    grad = torch.empty_like(s)

    def oracle():
        x = s.detach().requires_grad_(True)
        (reference_per_token_clipped_fkl(x, t, 1.1, 0.05) * coeff).sum().backward()

    def triton_run():
        x = s.detach().requires_grad_(True)
        weighted_triton_clipped_fkl(x, t, coeff, 1.1, 0.05)[0].backward()

    def floor():
        torch.add(s, t, out=grad)

    out: dict[str, Any] = {
        "n_tokens": n_tokens,
        "vocab": vocab,
        "dtype": str(dtype).removeprefix("torch."),
    }
    for name, fn in (("floor", floor), ("triton", triton_run), ("oracle", oracle)):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        try:
            out[f"{name}_seconds"] = cuda_time(fn)
            out[f"{name}_peak_above_inputs_bytes"] = torch.cuda.max_memory_allocated() - base
        except torch.cuda.OutOfMemoryError:
            out[f"{name}_seconds"] = None
    if out.get("oracle_seconds") and out.get("triton_seconds"):
        out["speedup_vs_oracle"] = out["oracle_seconds"] / out["triton_seconds"]
        out["speedup_target_met"] = out["speedup_vs_oracle"] >= 3.0
    if out.get("triton_seconds") and out.get("floor_seconds"):
        out["ratio_to_floor"] = out["triton_seconds"] / out["floor_seconds"]
        out["floor_target_met"] = out["ratio_to_floor"] <= 2.0
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--interpret", action="store_true", help="Triton CPU interpreter, small checks, no timing"
    )
    p.add_argument("--tokens", type=int, default=8192, help="B*T for the timing")
    p.add_argument("--vocab", type=int, default=151_936)
    p.add_argument("--no-timing", action="store_true")
    p.add_argument(
        "--out", default=None, help="results JSON (default results/bench/triton_check.json on CUDA)"
    )
    args = p.parse_args(argv)

    if args.interpret:
        device = "cpu"
    elif torch.cuda.is_available():
        device = "cuda"
    else:
        print(
            "check_triton: no CUDA device; run with --interpret for the CPU interpreter checks",
            file=sys.stderr,
        )
        return 2
    t0 = time.perf_counter()
    records = check_correctness(device, quick=args.interpret) + check_edges(device)
    for r in records:
        print(json.dumps(r))
    ok = all(r["pass"] for r in records)
    print(
        f"correctness: {'PASS' if ok else 'FAIL'} ({sum(r['pass'] for r in records)}/{len(records)} cases)"
    )
    timing = []
    if device == "cuda" and not args.no_timing:
        for dtype in (torch.float32, torch.bfloat16):
            timing.append(time_impls(args.tokens, args.vocab, dtype))
            print(json.dumps(timing[-1]))
    if device == "cuda" or args.out:
        from pwopsd.config import RESULTS_DIR
        from pwopsd.provenance import write_results

        path = args.out or RESULTS_DIR / "bench" / "triton_check.json"
        write_results(
            path,
            {"correctness": records, "timing": timing, "pass": ok},
            wall_seconds=time.perf_counter() - t0,
        )
        print(f"wrote {path}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
