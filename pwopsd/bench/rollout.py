"""Rollout throughput: the vLLM engine against HF ``generate`` at equal batch (toy model).

``python -m pwopsd.bench rollout [--batches 8 64] [--repeats 2]`` samples one training
rollout per prompt (the profile's rollout sampling: temperature 1.1, top-p 0.95, top-k 20)
for a batch of student prompts, with each backend, in one run; it reports generated tokens per
second (best of ``repeats`` after a warm-up) and the ratio, and writes
``results/bench/rollout.json``. HF runs one batched ``generate`` with left padding (the
training loop's HF backend); vLLM gets the same prompts as separate seeded requests.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time
from typing import Any

import torch

from pwopsd.config import RESULTS_DIR, get_profile
from pwopsd.provenance import write_results


def _prompts(tok: Any, n: int) -> tuple[list[str], list[list[int]]]:
    from pwopsd.data import load_training_corpus
    from pwopsd.prompts import student_prompt

    rows = load_training_corpus(get_profile("toy").train_data, max_rows=n)
    texts = [student_prompt(tok, r["problem"]) for r in rows]
    return texts, [tok(t, add_special_tokens=False)["input_ids"] for t in texts]


def _best(fn: Any, repeats: int) -> tuple[float, int]:
    fn()  # warm-up
    best = (float("inf"), 0)
    for _ in range(repeats):
        t0 = time.perf_counter()
        tokens = fn()
        best = min(best, (time.perf_counter() - t0, tokens))
    return best


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pwopsd.bench rollout", description=__doc__)
    ap.add_argument("--batches", nargs="+", type=int, default=[8, 64])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--max-new-tokens", type=int, default=None)
    ap.add_argument("--out", default=str(RESULTS_DIR / "bench" / "rollout.json"))
    args = ap.parse_args(argv)

    from transformers import AutoModelForCausalLM

    from pwopsd.rollout import HFSampler
    from pwopsd.sampling import derive_seed, make_engine

    t_start = time.perf_counter()
    prof = get_profile("toy")
    sampling = prof.train.rollout
    if args.max_new_tokens:
        sampling = dataclasses.replace(sampling, max_new_tokens=args.max_new_tokens)
    engine = make_engine("vllm", prof.main_model, profile=prof)
    tok = engine.tokenizer
    hf_model = AutoModelForCausalLM.from_pretrained(prof.main_model, dtype=torch.float32).eval()
    hf = HFSampler(prof.engine.max_model_len)
    batches: dict[str, Any] = {}
    try:
        for b in args.batches:
            texts, ids = _prompts(tok, b)
            seeds = [derive_seed("bench", i) for i in range(b)]

            def run_engine(texts=texts, seeds=seeds) -> int:
                outs = engine.generate(texts, sampling, seeds=seeds, adapter=None)
                return sum(len(o[0].token_ids) for o in outs)

            def run_hf(texts=texts, ids=ids, seeds=seeds) -> int:
                r = hf.sample(texts, ids, sampling, seeds, None, model=hf_model, tokenizer=tok)
                return r.num_tokens

            e_s, e_tok = _best(run_engine, args.repeats)
            h_s, h_tok = _best(run_hf, args.repeats)
            batches[str(b)] = {
                "engine_tokens_per_s": e_tok / e_s,
                "hf_tokens_per_s": h_tok / h_s,
                "ratio": (e_tok / e_s) / (h_tok / h_s),
                "engine_seconds": e_s,
                "hf_seconds": h_s,
                "engine_tokens": e_tok,
                "hf_tokens": h_tok,
            }
            print(
                f"batch {b:4d}: engine {e_tok / e_s:9.0f} tok/s   HF generate "
                f"{h_tok / h_s:9.0f} tok/s   ratio {batches[str(b)]['ratio']:.1f}x"
            )
    finally:
        engine.close()
    write_results(
        args.out,
        {
            "benchmark": "rollout",
            "model": prof.main_model,
            "sampling": dataclasses.asdict(sampling),
            "engine": {"backend": "vllm", **engine.plan.kwargs},
            "hf": {"backend": "transformers generate", "dtype": "float32", "padding": "left"},
            "repeats": args.repeats,
            "torch_threads": torch.get_num_threads(),
            # Other work on the machine skews both backends: say how busy it was.
            "load_average_1min_at_end": os.getloadavg()[0],
            "batches": batches,
        },
        profile="toy",
        seed=0,
        wall_seconds=time.perf_counter() - t_start,
    )
    print(f"wrote {args.out}")
    return 0
