"""Evaluation runs: resumability, exact-count rows, seeds, settings checks, vLLM and HF engines.

The model is the toy main model (``get_profile("toy").main_model``; override with the
PWOPSD_TEST_MODEL environment variable). The toy checkpoint and sets are committed: a missing
one fails here, it does not skip.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file, save_file

from pwopsd.bench.rollout import random_adapter
from pwopsd.config import REPO_ROOT, get_profile
from pwopsd.engine import make_engine
from pwopsd.evaluate import evaluate_model, read_samples
from pwopsd.jsonl import CorruptFileError
from pwopsd.prompts import eval_prompt
from pwopsd.vllm_build import check_model_paths
from pwopsd.vocab import METRICS

os.environ.setdefault("HF_HUB_OFFLINE", "1")

PROFILE = get_profile("toy")
MODEL = os.environ.get("PWOPSD_TEST_MODEL", PROFILE.main_model)
BENCHES = ["toy_math500", "toy_aime24"]
SAMPLING = dataclasses.replace(PROFILE.eval_sampling, n=3, max_new_tokens=40)
N_PROBLEMS = 3

assert (Path(MODEL) / "config.json").is_file(), f"the toy model is committed at {MODEL}"
assert all(Path(b.source).is_file() for b in PROFILE.benchmarks if b.name in BENCHES), (
    "the toy benchmarks are committed under data/toy/"
)


@pytest.fixture(scope="module", autouse=True)
def frozen_model(tmp_path_factory):
    """Use a private copy of the toy model: its builder may rewrite it while tests run."""
    global MODEL
    source = MODEL
    if (Path(source) / "config.json").is_file():
        size = sum(f.stat().st_size for f in Path(source).rglob("*") if f.is_file())
        if size < 200 * 2**20:
            MODEL = str(shutil.copytree(source, tmp_path_factory.mktemp("model") / "toy-qwen3"))
    yield MODEL
    MODEL = source


def _rows(out: Path) -> dict[str, list[dict]]:
    return {
        str(p.relative_to(out)): read_samples(p) for p in sorted(out.glob("*/seed*.samples.jsonl"))
    }


def _keys(rows: list[dict]) -> list[tuple[str, int]]:
    return [(r["problem_id"], r["sample"]) for r in rows]


def _check_complete(out: Path, seeds: list[int]) -> None:
    files = _rows(out)
    assert len(files) == len(BENCHES) * len(seeds)
    for name, rows in files.items():
        keys = _keys(rows)
        assert len(keys) == len(set(keys)), f"duplicate samples in {name}"
        assert len(rows) == N_PROBLEMS * SAMPLING.n, name


class Interrupt(RuntimeError):
    pass


class FailingEngine:
    """The real engine, with a crash injected after ``after`` samples (simulated kill)."""

    def __init__(self, engine, after: int) -> None:
        self.engine, self.after = engine, after
        self.tokenizer = engine.tokenizer
        self.model, self.backend, self.adapter = engine.model, engine.backend, engine.adapter

    def stream(self, requests, sampling, **kw):
        for i, item in enumerate(self.engine.stream(requests, sampling, **kw)):
            if i == self.after:
                raise Interrupt(f"injected crash after {i} samples")
            yield item


def _run(engine, out, seeds, **kw):
    return evaluate_model(
        MODEL,
        BENCHES,
        seeds=seeds,
        sampling=SAMPLING,
        out_dir=out,
        max_problems=N_PROBLEMS,
        engine=engine,
        progress=False,
        **kw,
    )


def _resume_matches_uninterrupted(engine, tmp_path, backend):
    seeds = [0, 1]
    full = _run(engine, tmp_path / "full", seeds, backend=backend)
    _check_complete(tmp_path / "full", seeds)
    total = len(BENCHES) * len(seeds) * N_PROBLEMS * SAMPLING.n
    assert full["samples_drawn_this_call"] == total

    out = tmp_path / "resumed"
    with pytest.raises(Interrupt):
        _run(FailingEngine(engine, after=7), out, seeds, backend=backend)
    before = {k: list(v) for k, v in _rows(out).items()}
    written = sum(len(v) for v in before.values())
    assert written == 7  # finished samples are kept when the run dies
    # A kill in the middle of a write leaves a torn last line: it must be cut off.
    torn = next(p for p in sorted(out.glob("*/seed*.samples.jsonl")) if p.stat().st_size)
    with open(torn, "a") as f:
        f.write('{"benchmark": "toy_math500", "problem_id": "tor')
    resumed = _run(engine, out, seeds, backend=backend)
    assert resumed["samples_drawn_this_call"] == total - written  # nothing recomputed
    _check_complete(out, seeds)
    after = _rows(out)
    for name, rows in before.items():
        assert after[name][: len(rows)] == rows  # rows written before the crash untouched
    # Same per-sample seeds, so the same samples as the uninterrupted run.
    full_rows = _rows(tmp_path / "full")
    matches = {
        name: sorted((r["problem_id"], r["sample"], r["text"]) for r in rows)
        == sorted((r["problem_id"], r["sample"], r["text"]) for r in full_rows[name])
        for name, rows in after.items()
    }
    assert resumed["benchmarks"].keys() == full["benchmarks"].keys()
    return matches, full, resumed


@pytest.fixture(scope="module")
def hf_engine(frozen_model):
    return make_engine("hf", MODEL, profile=PROFILE)


def test_hf_resume_is_exact(hf_engine, tmp_path):
    matches, full, resumed = _resume_matches_uninterrupted(hf_engine, tmp_path, "hf")
    assert all(matches.values()), matches
    assert resumed["benchmarks"] == full["benchmarks"]


def _small_run(engine, out):
    """One benchmark, two problems, one seed: a cheap complete run."""
    return evaluate_model(
        MODEL, BENCHES[:1], seeds=[0], sampling=SAMPLING, out_dir=out, max_problems=2,
        engine=engine, backend="hf", progress=False,
    )  # fmt: skip


def test_truncated_last_row_redoes_only_that_sample(hf_engine, tmp_path):
    """A kill mid-write leaves the last row cut off: the rerun cuts it off the file and
    draws only that sample again (the same one: per-sample seeds)."""
    first = _small_run(hf_engine, tmp_path)
    path = tmp_path / BENCHES[0] / "seed0.samples.jsonl"
    rows = read_samples(path)
    raw = path.read_bytes()
    last_line = raw[raw.rstrip(b"\n").rfind(b"\n") + 1 :]
    path.write_bytes(raw[: len(raw) - len(last_line) // 2])  # half the last row survives
    assert read_samples(path) == rows[:-1]  # a torn last line is dropped, not an error
    resumed = _small_run(hf_engine, tmp_path)
    assert resumed["samples_drawn_this_call"] == 1
    assert read_samples(path) == rows  # the lost row redone, identical; the rest untouched
    assert resumed["benchmarks"] == first["benchmarks"]


def test_corrupt_middle_line_is_refused_and_nothing_rewritten(hf_engine, tmp_path):
    """A bad line before the last is not a kill: the error names file and line, and no file
    is rewritten (nor any sample drawn)."""
    _small_run(hf_engine, tmp_path)
    path = tmp_path / BENCHES[0] / "seed0.samples.jsonl"
    lines = path.read_bytes().splitlines(keepends=True)
    lines[1] = b'{"problem_id": "garbled\n'
    path.write_bytes(b"".join(lines))
    before = {p: p.read_bytes() for p in tmp_path.rglob("*.json*")}
    with pytest.raises(CorruptFileError, match=re.escape(f"{path}, line 2: not valid JSON")):
        _small_run(hf_engine, tmp_path)
    assert {p: p.read_bytes() for p in tmp_path.rglob("*.json*")} == before


def test_summary_and_settings_guard(hf_engine, tmp_path):
    s = _run(hf_engine, tmp_path, [3], backend="hf")
    assert set(s["benchmarks"]) == set(BENCHES)
    cell = s["benchmarks"]["toy_math500"]
    assert set(cell["seeds"]) == {"3"}
    assert cell["mean_sd"]["avg"]["sd"] is None  # one seed: no sd
    for m in METRICS:
        assert 0.0 <= cell["seeds"]["3"][m] <= 1.0
    assert cell["seeds"]["3"]["pass"] >= cell["seeds"]["3"]["avg"]
    prov = json.loads((tmp_path / "summary.json").read_text())["provenance"]
    assert {"git_commit", "packages", "hardware", "wall_seconds"} <= set(prov)
    assert s["datasets"]["toy_math500"]["checksum"]
    # A second call with everything on disk draws nothing; nor does a smaller subset, and
    # a larger one draws only the new problems.
    assert _run(hf_engine, tmp_path, [3], backend="hf")["samples_drawn_this_call"] == 0
    smaller = evaluate_model(
        MODEL,
        BENCHES,
        seeds=[3],
        sampling=SAMPLING,
        out_dir=tmp_path,
        max_problems=1,
        engine=hf_engine,
        backend="hf",
        progress=False,
    )
    assert smaller["samples_drawn_this_call"] == 0
    assert smaller["benchmarks"]["toy_math500"]["seeds"]["3"]["problems"] == 1
    larger = evaluate_model(
        MODEL,
        BENCHES,
        seeds=[3],
        sampling=SAMPLING,
        out_dir=tmp_path,
        max_problems=N_PROBLEMS + 1,
        engine=hf_engine,
        backend="hf",
        progress=False,
    )
    assert larger["samples_drawn_this_call"] == len(BENCHES) * SAMPLING.n
    # Other sampling settings in the same out_dir are refused, not mixed in.
    with pytest.raises(ValueError, match="other settings.*temperature"):
        evaluate_model(
            MODEL,
            BENCHES,
            seeds=[3],
            out_dir=tmp_path,
            max_problems=N_PROBLEMS,
            sampling=dataclasses.replace(SAMPLING, temperature=0.5),
            engine=hf_engine,
            backend="hf",
            progress=False,
        )


def test_bad_arguments_fail_before_any_engine(tmp_path):
    kw = dict(out_dir=tmp_path, engine=None, progress=False)
    with pytest.raises(ValueError, match="benchmark 'nope'"):
        evaluate_model(MODEL, ["nope"], **kw)
    with pytest.raises(ValueError, match="sampling.n=0"):
        evaluate_model(MODEL, BENCHES, n=0, **kw)
    with pytest.raises(ValueError, match="backend='tgi'"):
        evaluate_model(MODEL, BENCHES, backend="tgi", **kw)
    with pytest.raises(ValueError, match="seeds"):
        evaluate_model(MODEL, BENCHES, seeds=[1, 1], **kw)
    with pytest.raises(FileNotFoundError, match="no config.json"):
        check_model_paths(str(tmp_path), None)


def test_cli_killed_mid_run_resumes(tmp_path):
    """SIGKILL a real CLI run once it has written rows; the restart completes it exactly."""
    out = tmp_path / "cli"
    cmd = [
        sys.executable,
        "-m",
        "pwopsd.evaluate",
        "--model",
        MODEL,
        "--benchmarks",
        *BENCHES,
        "--n",
        "6",
        "--seed",
        "5",
        "--max-problems",
        "4",
        "--max-new-tokens",
        "60",
        "--backend",
        "hf",
        "--grader-workers",
        "1",
        "--out",
        str(out),
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(
        cmd,
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 240
    files = [out / b / "seed5.samples.jsonl" for b in BENCHES]
    while time.monotonic() < deadline and proc.poll() is None:
        if sum(len(read_samples(f)) for f in files if f.exists()) >= 4:
            os.killpg(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.2)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    kept = sum(len(read_samples(f)) for f in files if f.exists())
    assert 4 <= kept < 2 * 4 * 6
    subprocess.run(cmd, cwd=REPO_ROOT, env=env, check=True, capture_output=True, timeout=300)
    for f in files:
        rows = read_samples(f)
        keys = _keys(rows)
        assert len(rows) == 4 * 6 and len(set(keys)) == len(keys)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["samples_drawn_this_call"] == 2 * 4 * 6 - kept  # nothing recomputed


# --- vLLM: one engine for the module --------------------------------------------------


@pytest.fixture(scope="module")
def vllm_engine(frozen_model):
    pytest.importorskip("vllm")
    # Adapters are served merged (the default adapter_mode), so the adapter tests share this
    # engine (one engine per module).
    # A simulated small memory node: vLLM's CPU worker would ask for this fraction of the node
    # (minus the process's RSS) for its KV cache and get a negative size. The factory sizes the
    # cache in bytes instead, so the fraction must not matter.
    settings = dataclasses.replace(PROFILE.engine, gpu_memory_utilization=0.001)
    engine = make_engine("vllm", MODEL, settings=settings, enable_lora=True, max_lora_rank=8)
    assert engine.plan.platform == "cpu" and engine.plan.kv_cache_bytes > 0
    yield engine
    engine.close()


def _save_random_lora(path: Path, seed: int) -> str:
    """A rank-8 LoRA on the toy model with non-zero B, so it changes the outputs."""
    return random_adapter(
        path, MODEL, rank=8, alpha=16, targets=PROFILE.train.lora_targets, seed=seed, b_std=0.5
    )


@pytest.fixture(scope="module")
def lora_adapter(tmp_path_factory, frozen_model):
    return _save_random_lora(tmp_path_factory.mktemp("lora") / "adapter", seed=0)


@pytest.mark.vllm
def test_vllm_resume(vllm_engine, tmp_path):
    matches, full, resumed = _resume_matches_uninterrupted(vllm_engine, tmp_path, "vllm")
    # Per-sample seeds and fp32 CPU kernels: the resumed run draws exactly the same samples.
    assert matches and all(matches.values()), matches
    assert resumed["benchmarks"] == full["benchmarks"]


@pytest.mark.vllm
def test_vllm_generate_tokens_and_logprobs(vllm_engine):
    prompt = eval_prompt(vllm_engine.tokenizer, "Compute 2*3+4*5.")
    sampling = dataclasses.replace(SAMPLING, n=2, max_new_tokens=16)
    a = vllm_engine.generate([prompt, prompt], sampling, seeds=[11, 12], logprobs=True)
    b = vllm_engine.generate([prompt], sampling, seeds=[11], logprobs=True)
    assert [len(x) for x in a] == [2, 2]
    for c in a[0] + a[1]:
        assert 0 < len(c.token_ids) <= 16
        assert len(c.logprobs) == len(c.token_ids)
        assert all(lp <= 0.0 for lp in c.logprobs)
        assert c.finish_reason in ("stop", "length")
    assert [c.token_ids for c in b[0]] == [c.token_ids for c in a[0]]  # seeded per request


@pytest.mark.vllm
def test_vllm_matches_hf_greedy_for_base_and_adapter(vllm_engine, hf_engine, lora_adapter):
    """Greedy decoding: vLLM (base, and base + merged LoRA) equals HF (base, LoRA)."""
    greedy = dataclasses.replace(SAMPLING, n=1, temperature=0.0, max_new_tokens=24)
    prompts = [eval_prompt(hf_engine.tokenizer, q) for q in ("Compute 2*8+6*3.", "Compute 9*9.")]
    hf_lora = make_engine("hf", MODEL, profile=PROFILE, adapter=lora_adapter)
    base_hf = [c[0].token_ids for c in hf_engine.generate(prompts, greedy, seeds=[1, 2])]
    lora_hf = [c[0].token_ids for c in hf_lora.generate(prompts, greedy, seeds=[1, 2])]
    base_vllm = [
        c[0].token_ids for c in vllm_engine.generate(prompts, greedy, seeds=[1, 2], adapter=None)
    ]
    lora_vllm = [
        c[0].token_ids
        for c in vllm_engine.generate(prompts, greedy, seeds=[1, 2], adapter=lora_adapter)
    ]
    assert base_vllm == base_hf
    assert lora_vllm == lora_hf
    assert lora_hf != base_hf  # the adapter matters, so the comparison means something

    # A checkpoint rewritten in place must be served with its new weights, not the old merge.
    time.sleep(0.01)
    _save_random_lora(Path(lora_adapter), seed=1)
    hf_new = make_engine("hf", MODEL, profile=PROFILE, adapter=lora_adapter)
    new_hf = [c[0].token_ids for c in hf_new.generate(prompts, greedy, seeds=[1, 2])]
    new_vllm = [
        c[0].token_ids
        for c in vllm_engine.generate(prompts, greedy, seeds=[1, 2], adapter=lora_adapter)
    ]
    assert new_hf != lora_hf
    assert new_vllm == new_hf


@pytest.mark.vllm
def test_vllm_merge_and_lora_modes_draw_the_same_samples(vllm_engine, lora_adapter):
    """The two ways to serve an adapter (merged weights reloaded in place, the default; a
    LoRARequest) draw the same seeded samples with the same log-probabilities, and serving
    the base model again after a merge restores it exactly."""
    assert vllm_engine.adapter_mode == "merge"
    sampling = dataclasses.replace(SAMPLING, n=1, temperature=1.0, max_new_tokens=32)
    questions = [f"Compute {a}*{b}+{b}*{a + 1}." for a, b in zip(range(2, 10), range(3, 11))]
    prompts = [eval_prompt(vllm_engine.tokenizer, q) for q in questions]
    seeds = list(range(100, 100 + len(prompts)))

    def draw(engine, adapter):
        return [
            c[0]
            for c in engine.generate(prompts, sampling, seeds=seeds, adapter=adapter, logprobs=True)
        ]

    base_before = draw(vllm_engine, None)
    merged = draw(vllm_engine, lora_adapter)
    reloads = vllm_engine.weight_reloads
    assert draw(vllm_engine, lora_adapter) == merged  # served again without a new merge
    assert vllm_engine.weight_reloads == reloads
    base_after = draw(vllm_engine, None)
    lora_engine = make_engine(
        "vllm", MODEL, profile=PROFILE, enable_lora=True, max_lora_rank=8, adapter_mode="lora"
    )
    try:
        assert lora_engine.adapter_mode == "lora"
        via_lora = draw(lora_engine, lora_adapter)
    finally:
        lora_engine.close()
    assert [c.token_ids for c in merged] != [c.token_ids for c in base_before]  # adapter matters
    assert [c.token_ids for c in via_lora] == [c.token_ids for c in merged]
    gap = max(abs(a - b) for m, v in zip(merged, via_lora) for a, b in zip(m.logprobs, v.logprobs))
    assert gap < 1e-4, gap
    assert base_after == base_before  # the base checkpoint reloaded, bit for bit


def test_one_writer_per_out_dir(tmp_path):
    with open(tmp_path / ".lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        with pytest.raises(RuntimeError, match="another evaluation is writing"):
            evaluate_model(MODEL, BENCHES, out_dir=tmp_path, progress=False)


def test_changed_prompt_template_refuses_to_mix(hf_engine, tmp_path):
    """The resume guard hashes the rendered template: a changed chat template is refused."""
    _run(hf_engine, tmp_path, [0], backend="hf")
    other = Path(shutil.copytree(MODEL, tmp_path / "model-v2"))
    template = other / "chat_template.jinja"
    text = template.read_text()
    changed = text.replace("'<|im_start|>assistant\\n'", "'<|im_start|>assistant\\n\\n'")
    assert changed != text
    template.write_text(changed)
    v2 = make_engine("hf", str(other), profile=PROFILE)
    before = {k: len(v) for k, v in _rows(tmp_path).items()}
    with pytest.raises(ValueError, match="prompt_template_sha256"):
        evaluate_model(
            str(other),
            BENCHES,
            seeds=[0],
            sampling=SAMPLING,
            out_dir=tmp_path,
            max_problems=N_PROBLEMS,
            engine=v2,
            progress=False,
        )
    assert {k: len(v) for k, v in _rows(tmp_path).items()} == before  # nothing mixed in


def test_engine_must_serve_the_named_model(hf_engine, tmp_path):
    other = REPO_ROOT / "checkpoints" / "toy-llama"
    with pytest.raises(ValueError, match="engine serves model"):
        evaluate_model(str(other), BENCHES, out_dir=tmp_path, engine=hf_engine, progress=False)
    with pytest.raises(ValueError, match="adapter"):
        evaluate_model(
            MODEL, BENCHES, out_dir=tmp_path, engine=hf_engine, adapter="x", progress=False
        )
    assert not list(tmp_path.rglob("*.jsonl"))


def test_weights_retrained_in_place_refuse_old_samples(tmp_path):
    """Same path, new weights (``make toy-models``): the resume guard's model fingerprint
    refuses to mix the old checkpoint's samples with the new one's."""
    model = Path(shutil.copytree(MODEL, tmp_path / "model"))
    out = tmp_path / "eval"
    kw = dict(seeds=[0], sampling=SAMPLING, out_dir=out, max_problems=1, progress=False)
    evaluate_model(
        str(model), BENCHES[:1], engine=make_engine("hf", str(model), profile=PROFILE), **kw
    )
    weights = load_file(model / "model.safetensors")
    save_file({k: v * 1.01 for k, v in weights.items()}, model / "model.safetensors",
              metadata={"format": "pt"})  # fmt: skip
    with pytest.raises(ValueError, match="model_fingerprint"):
        evaluate_model(
            str(model), BENCHES[:1], engine=make_engine("hf", str(model), profile=PROFILE), **kw
        )
