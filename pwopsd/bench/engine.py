"""The vLLM engine plan, and (``--compare-startup``) eager against compiled start-up.

``python -m pwopsd.bench engine [--profile toy] [--model PATH]`` prints what
:func:`pwopsd.vllm_build.build_vllm` would pass to ``vllm.LLM`` (no engine starts).
``... engine --compare-startup`` also starts the engine twice, eager and compiled, each in a
fresh process, and writes the start-up seconds (``vllm.LLM`` alone and the whole process) to
``results/bench/engine_startup.json``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

from pwopsd.config import RESULTS_DIR, get_profile
from pwopsd.provenance import write_results
from pwopsd.vllm_build import plan_vllm


def compare_startup(model: str, profile: str = "toy") -> dict[str, float]:
    """Start-up seconds of eager and compiled engines for ``model`` under ``profile``'s engine
    settings, each in a fresh process: ``eager``, ``compiled`` (``vllm.LLM`` alone) and
    ``<mode>_process`` (the whole process)."""
    out = {}
    for eager in (True, False):
        code = (
            "import dataclasses;from pwopsd.config import get_profile;"
            "from pwopsd.vllm_build import build_vllm;"
            f"s=dataclasses.replace(get_profile({profile!r}).engine, enforce_eager={eager});"
            f"llm,plan,t=build_vllm({model!r}, s);print('STARTUP', t)"
        )
        t0 = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        )
        line = next(x for x in proc.stdout.splitlines() if x.startswith("STARTUP"))
        out["eager" if eager else "compiled"] = float(line.split()[1])
        out[("eager" if eager else "compiled") + "_process"] = time.perf_counter() - t0
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m pwopsd.bench engine", description="Show (or time) the vLLM engine plan."
    )
    ap.add_argument("--profile", default="toy")
    ap.add_argument("--model", default=None, help="default: the profile's main model")
    ap.add_argument(
        "--compare-startup", action="store_true", help="time eager vs compiled start-up"
    )
    ap.add_argument("--out", default=str(RESULTS_DIR / "bench" / "engine_startup.json"))
    args = ap.parse_args(argv)
    prof = get_profile(args.profile)
    model = args.model or prof.main_model
    plan = plan_vllm(model, prof.engine)
    print(json.dumps({"platform": plan.platform, "kwargs": plan.kwargs}, indent=2))
    if not args.compare_startup:
        return 0
    t0 = time.perf_counter()
    timings = compare_startup(model, prof.name)
    path = write_results(
        args.out,
        {"model": model, "platform": plan.platform, "seconds": timings},
        profile=prof.name,
        seed=0,
        wall_seconds=time.perf_counter() - t0,
    )
    print(json.dumps(timings, indent=2))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
