"""Rollout throughput: the vLLM engine against HF ``generate`` at equal batch (toy model).

``python -m pwopsd.bench rollout [--batches 8 64] [--repeats 2]`` samples one training
rollout per prompt (the profile's rollout sampling: temperature 1.1, top-p 0.95, top-k 20)
for a batch of student prompts, with each backend, in one run; it reports generated tokens per
second (best of ``repeats`` after a warm-up) and the ratio, and writes
``results/bench/rollout.json``. HF runs one batched ``generate`` with left padding (the
training loop's HF backend); vLLM gets the same prompts as separate seeded requests.

The ``adapter`` block measures what training and evaluation actually sample from: the base
model plus a LoRA adapter (rank and targets of the profile, random non-zero B) at batch
``--adapter-batch``, served three ways: merged into the engine's weights (the default
``adapter_mode``), as a ``LoRARequest`` (a second engine in "lora" mode), and by HF
``generate`` on the peft model. It also times one switch of the merged engine to a new
adapter (merge + in-place reload).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import AutoModelForCausalLM

from pwopsd.config import RESULTS_DIR, get_profile
from pwopsd.data import load_training_corpus
from pwopsd.engine import make_engine
from pwopsd.prompts import student_prompt
from pwopsd.provenance import write_results
from pwopsd.rollout import HFSampler
from pwopsd.sampling import derive_seed


def _prompts(tok: Any, n: int) -> tuple[list[str], list[list[int]]]:
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


def random_adapter(
    path: Path,
    model: str,
    *,
    rank: int,
    alpha: int,
    targets: tuple[str, ...] | list[str],
    seed: int = 0,
    b_std: float = 0.02,
) -> str:
    """Save a LoRA on ``model`` whose B matrices are N(0, ``b_std``) instead of zero, so it
    changes the outputs (benchmarks and tests of adapter serving); returns its directory."""
    torch.manual_seed(seed)
    net = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32)
    cfg = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=0.0, target_modules=list(targets))
    peft = get_peft_model(net, cfg)
    with torch.no_grad():
        for name, p in peft.named_parameters():
            if "lora_B" in name:
                p.normal_(0.0, b_std)
    peft.save_pretrained(path)
    return str(path)


def _adapter_block(
    engine: Any, hf: Any, hf_model: Any, tok: Any, sampling: Any, batch: int, repeats: int
) -> dict[str, Any]:
    """Tokens/s with a LoRA adapter: merged engine, LoRARequest engine, HF peft generate."""
    prof = get_profile("toy")
    texts, ids = _prompts(tok, batch)
    seeds = [derive_seed("bench-adapter", i) for i in range(batch)]
    with tempfile.TemporaryDirectory() as tmp:
        shape = dict(
            rank=prof.train.lora_r, alpha=prof.train.lora_alpha, targets=prof.train.lora_targets
        )
        adapter = random_adapter(Path(tmp) / "a0", prof.main_model, seed=0, **shape)
        other = random_adapter(Path(tmp) / "a1", prof.main_model, seed=1, **shape)

        def tokens(eng: Any, which: str) -> int:
            outs = eng.generate(texts, sampling, seeds=seeds, adapter=which)
            return sum(len(o[0].token_ids) for o in outs)

        merged_s, merged_tok = _best(lambda: tokens(engine, adapter), repeats)
        t0 = time.perf_counter()
        engine.generate(texts[:1], dataclasses.replace(sampling, max_new_tokens=1),
                        seeds=seeds[:1], adapter=other)  # fmt: skip
        switch_s = time.perf_counter() - t0
        lora_engine = make_engine(
            "vllm", prof.main_model, profile=prof, enable_lora=True,
            max_lora_rank=prof.train.lora_r, adapter_mode="lora",
        )  # fmt: skip
        try:
            lora_s, lora_tok = _best(lambda: tokens(lora_engine, adapter), repeats)
        finally:
            lora_engine.close()
        peft_model = PeftModel.from_pretrained(hf_model, adapter).eval()

        def run_hf() -> int:
            r = hf.sample(texts, ids, sampling, seeds, None, model=peft_model, tokenizer=tok)
            return r.num_tokens

        hf_s, hf_tok = _best(run_hf, repeats)
    out = {
        "batch": batch,
        "lora_r": prof.train.lora_r,
        "merged_tokens_per_s": merged_tok / merged_s,
        "lora_request_tokens_per_s": lora_tok / lora_s,
        "hf_peft_tokens_per_s": hf_tok / hf_s,
        "merged_over_lora_request": (merged_tok / merged_s) / (lora_tok / lora_s),
        "merged_over_hf_peft": (merged_tok / merged_s) / (hf_tok / hf_s),
        "switch_seconds": switch_s,
        "tokens": {"merged": merged_tok, "lora_request": lora_tok, "hf_peft": hf_tok},
    }
    print(
        f"adapter, batch {batch}: merged {out['merged_tokens_per_s']:9.0f} tok/s   LoRARequest "
        f"{out['lora_request_tokens_per_s']:9.0f} tok/s   HF peft {out['hf_peft_tokens_per_s']:9.0f}"
        f" tok/s   switch {switch_s:.2f} s"
    )
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pwopsd.bench rollout", description=__doc__)
    ap.add_argument("--batches", nargs="+", type=int, default=[8, 64])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--max-new-tokens", type=int, default=None)
    ap.add_argument("--adapter-batch", type=int, default=64, help="0: skip the adapter block")
    ap.add_argument("--out", default=str(RESULTS_DIR / "bench" / "rollout.json"))
    args = ap.parse_args(argv)
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
        adapter = (
            _adapter_block(engine, hf, hf_model, tok, sampling, args.adapter_batch, args.repeats)
            if args.adapter_batch
            else None
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
            "adapter": adapter,
        },
        profile="toy",
        seed=0,
        wall_seconds=time.perf_counter() - t_start,
    )
    print(f"wrote {args.out}")
    return 0
