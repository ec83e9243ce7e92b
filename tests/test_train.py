"""The training loop (issue 10): alignment, weight sync, resume, processes, bad input, plans.

Real parts throughout: the toy qwen3 checkpoint, peft LoRA, HF ``generate`` rollouts (and the
vLLM CPU engine for the ``sync`` test), the real losses. Tiny configurations keep each run to
seconds: 4 prompts per step, 32-token rollouts.
"""

from __future__ import annotations

import json
import math
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from pwopsd.config import REPO_ROOT, ConfigError, get_profile
from pwopsd.rollout import align, gather_positions
from pwopsd.train import RunSpec, TrainingError, plan, train
from pwopsd.train.loop import build_student

PROFILE = get_profile("toy")
MODEL = PROFILE.main_model
TINY = (
    ("prompts_per_step", 4),
    ("micro_batch", 2),
    ("max_steps", 4),
    ("save_every", 2),
    ("eval_step", 4),
    ("rollout_backend", "hf"),
    ("rollout", {"n": 1, "temperature": 1.1, "top_p": 0.95, "top_k": 20, "max_new_tokens": 32}),
)


def _tiny(method: str = "pw_opsd", **kw) -> tuple[tuple[str, object], ...]:
    from pwopsd.config import SamplingConfig

    out = []
    for k, v in TINY:
        if k in kw:
            v = kw.pop(k)
        if k == "rollout":
            v = SamplingConfig(**v)
        out.append((k, v))
    out.extend(kw.items())
    return tuple(out)


# --- alignment --------------------------------------------------------------------------


def test_align_positions_predict_each_completion_token():
    sp, tp = [[5, 6, 7], [5, 6]], [[9, 9, 9, 9, 9], [9, 9, 9, 9]]
    comps = [[1, 2, 3], [4]]
    b = align(sp, tp, comps, max_model_len=64, pad_id=0)
    assert b.mask.tolist() == [[True, True, True], [True, False, False]]
    for row in range(2):
        for j, tok in enumerate(comps[row]):
            # The logit at position p predicts the token at p + 1 of the same sequence.
            assert b.student_ids[row, b.student_positions[row, j] + 1] == tok
            assert b.teacher_ids[row, b.teacher_positions[row, j] + 1] == tok
            assert b.tokens[row, j] == tok
    # Gathering takes exactly those positions: [B, L, V] -> [B, T, V].
    logits = torch.arange(2 * b.student_ids.shape[1], dtype=torch.float).view(2, -1, 1)
    got = gather_positions(logits, b.student_positions)[..., 0]
    assert got[0].tolist() == [2.0, 3.0, 4.0]


def test_align_masks_and_counts_bad_rows():
    sp = [[1] * 3, [1] * 3, [1] * 70, [1] * 3]
    tp = [[2] * 10, [2] * 10, [2] * 10, [2] * 60]
    comps = [[], [3] * 5, [3] * 5, [3] * 10]
    b = align(sp, tp, comps, max_model_len=64, pad_id=0)
    assert b.stats == {"empty": 1, "cut_to_fit": 1, "prompt_too_long": 1}
    assert b.mask.sum(dim=1).tolist() == [0, 5, 0, 4]  # row 3 cut to the 4 tokens that fit
    assert b.teacher_attention.sum(dim=1).max() <= 64 and b.student_ids.shape[1] <= 64


# --- plans and bad configurations (before any model loads) -----------------------------


def test_paper_dry_run_plan_needs_no_download(monkeypatch):
    import transformers

    def refuse(*a, **k):
        raise AssertionError("a dry run must not load or download anything")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", refuse)
    p = plan(RunSpec(method="pw_opsd", profile="paper"), world_size=4)
    assert (p["processes"], p["micro_batch_per_process"], p["grad_accumulation"]) == (4, 4, 2)
    assert p["prompts_per_step"] == 32 and p["steps"] == 150 and p["evaluated_step"] == 100
    assert "step-100" in p["checkpoints"] and tuple(p["schedule"]) == (0.25, 0.3, 0.1)
    assert p["loss"] == {"distill_temperature": 1.1, "tau_clip": 0.05}
    assert "paper_4xh100_zero2.yaml" in p["launch"]
    assert (REPO_ROOT / "configs" / "accelerate" / "paper_4xh100_zero2.yaml").is_file()


def test_cli_dry_run_and_bad_batch(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "pwopsd.train", "--method", "opsd", "--root", str(tmp_path)]
    ok = subprocess.run([*cmd, "--dry-run"], capture_output=True, text=True, env=env)
    assert ok.returncode == 0 and json.loads(ok.stdout)["run_name"] == "opsd"
    bad = subprocess.run(
        [*cmd, "--set", "prompts_per_step=5", "--set", "micro_batch=2"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert bad.returncode == 2 and "prompts_per_step=5" in bad.stderr
    assert not any(tmp_path.iterdir())


def test_unfit_configurations_fail_before_the_model_loads(tmp_path, monkeypatch):
    import transformers

    def refuse(*a, **k):
        raise AssertionError("loaded a model for a configuration that cannot run")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", refuse)
    spec = RunSpec(method="opsd", overrides=_tiny(prompts_per_step=5), root=str(tmp_path))
    with pytest.raises(ConfigError, match="prompts_per_step=5.*micro_batch \\(2\\)"):
        train(spec)
    spec = RunSpec(
        method="opsd", overrides=_tiny(lora_targets=("q_proj", "w_qkv")), root=str(tmp_path)
    )
    with pytest.raises(ConfigError, match="w_qkv"):
        train(spec)
    with pytest.raises(ConfigError, match="method='ppo'"):
        RunSpec(method="ppo")
    with pytest.raises(ConfigError, match="c=1.4"):
        RunSpec(method="pw_opsd", schedule=(0.2, 1.4, 0.1))
    with pytest.raises(ConfigError, match="no position weights"):
        RunSpec(method="opsd", schedule="moderate")


# --- a run: metrics, reuse, NaN -----------------------------------------------------------


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    spec = RunSpec(method="pw_opsd", schedule="aggressive", overrides=_tiny(), root=str(root))
    t0 = time.perf_counter()
    result = train(spec, progress=False)
    return spec, result, time.perf_counter() - t0


def test_run_directory_metrics_and_reuse(finished_run):
    spec, result, seconds = finished_run
    rd = result.run_dir
    assert rd == Path(spec.root) / "qwen3" / spec.dir_name / "seed1"
    assert spec.dir_name.startswith("pw_opsd_aggressive-")
    assert (rd / "DONE.json").is_file() and (rd / "config.json").is_file()
    assert sorted(p.name for p in (rd / "checkpoints").iterdir()) == ["step-2", "step-4"]
    for step in (2, 4):
        ck = rd / "checkpoints" / f"step-{step}"
        assert (ck / "adapter" / "adapter_model.safetensors").is_file()
        state = torch.load(ck / "trainer_state.pt", weights_only=False)
        assert state["step"] == step and state["data_position"] == 4 * step
        assert {"optimizer", "scheduler", "rng"} <= set(state)
    rows = [json.loads(x) for x in (rd / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    for r in rows:
        assert r["valid_tokens"] > 0 and 0 < r["completion_len_mean"] <= 32
        assert 0.0 <= r["frac_truncated"] <= 1.0
        assert r["rollout_tokens_per_s"] > 0 and r["update_tokens_per_s"] > 0
        assert 0.05 <= r["position_weight_min"] <= r["position_weight_mean"] <= 1.0
        assert 0.0 <= r["clip_frac_entries"] <= r["clip_frac_tokens"] <= 1.0
    assert rows[1]["lr"] < rows[0]["lr"]  # linear decay
    assert result.eval_adapter == rd / "checkpoints" / "step-4" / "adapter"
    # A finished run is reused, never retrained.
    t0 = time.perf_counter()
    again = train(spec, progress=False)
    assert again.reused and time.perf_counter() - t0 < 5
    # Another configuration in the same directory is refused, not mixed.
    (rd / "DONE.json").rename(rd / "DONE.bak")
    config_text = (rd / "config.json").read_text()
    try:
        other = RunSpec(
            method=spec.method, schedule=spec.schedule, overrides=spec.overrides, root=spec.root
        )
        payload = json.loads((rd / "config.json").read_text())
        payload["train"]["learning_rate"] = 1.0
        (rd / "config.json").write_text(json.dumps(payload))
        with pytest.raises(ConfigError, match=r"other settings \(train.learning_rate: files 1.0"):
            train(other, progress=False)
    finally:
        (rd / "DONE.bak").rename(rd / "DONE.json")
        (rd / "config.json").write_text(config_text)


def test_training_changes_the_adapter_and_the_loss_is_finite(finished_run):
    """Every LoRA matrix moved away from the seeded initial adapter, the last checkpoint
    differs from the earlier one, and every logged loss and grad norm is a finite number."""
    from peft import get_peft_model_state_dict
    from safetensors.torch import load_file

    spec, result, _ = finished_run
    _, initial = build_student(spec, spec.train_config(), MODEL)
    init = {k: v.detach() for k, v in get_peft_model_state_dict(initial).items()}
    last = load_file(str(result.eval_adapter / "adapter_model.safetensors"))
    earlier = load_file(
        str(result.run_dir / "checkpoints/step-2/adapter/adapter_model.safetensors")
    )
    assert set(last) == set(init) and len(last) > 0
    for name, value in last.items():
        assert not torch.equal(value, init[name]), f"{name} did not change in training"
        assert torch.isfinite(value).all()
    assert any(not torch.equal(last[k], earlier[k]) for k in last)
    rows = [json.loads(x) for x in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert all(math.isfinite(r["loss"]) and math.isfinite(r["grad_norm"]) for r in rows)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    from pwopsd import losses
    from pwopsd.losses import LossOutput

    real = losses.method_loss

    def poisoned(method, *a, step=0, **kw):
        out = real(method, *a, step=step, **kw)
        return LossOutput(out.loss * float("nan"), out.metrics) if step == 2 else out

    monkeypatch.setattr(losses, "method_loss", poisoned)
    spec = RunSpec(method="opsd", overrides=_tiny(), root=str(tmp_path))
    with pytest.raises(TrainingError, match=r"non-finite loss.*step 3.*step-2 is kept \(step 2\)"):
        train(spec, progress=False)
    rd = spec.run_dir()
    assert sorted(p.name for p in (rd / "checkpoints").iterdir()) == ["step-2"]
    assert not (rd / "DONE.json").exists()
    rows = (rd / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(r)["step"] for r in rows] == [1, 2]


def test_nan_loss_before_any_checkpoint_says_none_exists(tmp_path, monkeypatch):
    from pwopsd import losses
    from pwopsd.losses import LossOutput

    def poisoned(method, *a, **kw):
        out = real(method, *a, **kw)
        return LossOutput(out.loss * float("nan"), out.metrics)

    real = losses.method_loss
    monkeypatch.setattr(losses, "method_loss", poisoned)
    spec = RunSpec(method="opsd", overrides=_tiny(), root=str(tmp_path))
    with pytest.raises(TrainingError, match="step 1.*no checkpoint was written yet"):
        train(spec, progress=False)


# --- resume after SIGKILL, bit for bit ----------------------------------------------------

_RUN_SCRIPT = """
import sys
from pwopsd.config import SamplingConfig
from pwopsd.train import RunSpec, train
rollout = SamplingConfig(n=1, temperature=1.1, top_p=0.95, top_k=20, max_new_tokens=32)
spec = RunSpec(method="eopd", root=sys.argv[1], overrides=(
    ("prompts_per_step", 4), ("micro_batch", 2), ("max_steps", 5), ("save_every", 2),
    ("eval_step", 4), ("rollout_backend", "hf"), ("rollout", rollout)))
train(spec, progress=False)
"""


def _launch(root: Path) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-c", _RUN_SCRIPT, str(root)],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


def test_resume_after_sigkill_is_bit_exact(tmp_path):
    """Kill a run mid-step 3 (after checkpoint step-2); the restart ends with identical bytes."""
    full = _launch(tmp_path / "full")
    killed = _launch(tmp_path / "killed")
    metrics = None
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and killed.poll() is None:
        found = list((tmp_path / "killed").rglob("metrics.jsonl"))
        if found and len(found[0].read_text().splitlines()) >= 3:
            metrics = found[0]
            os.killpg(killed.pid, signal.SIGKILL)
            break
        time.sleep(0.05)
    killed.wait(timeout=30)
    assert killed.returncode == -signal.SIGKILL and metrics is not None, "run ended before the kill"
    assert full.wait(timeout=300) == 0, full.stderr.read().decode()[-2000:]
    restart = _launch(tmp_path / "killed")
    assert restart.wait(timeout=300) == 0, restart.stderr.read().decode()[-2000:]

    def run_dir(root: Path) -> Path:
        return next(root.rglob("DONE.json")).parent

    a, b = run_dir(tmp_path / "full"), run_dir(tmp_path / "killed")
    for step in (4, 5):
        fa = a / "checkpoints" / f"step-{step}" / "adapter" / "adapter_model.safetensors"
        fb = b / "checkpoints" / f"step-{step}" / "adapter" / "adapter_model.safetensors"
        assert fa.read_bytes() == fb.read_bytes(), f"step-{step} adapters differ"
    ra = [json.loads(x) for x in (a / "metrics.jsonl").read_text().splitlines()]
    rb = [json.loads(x) for x in (b / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rb] == [1, 2, 3, 4, 5]  # no duplicated or missing rows
    assert [r["loss"] for r in ra] == [r["loss"] for r in rb]


# --- one process vs two (torchrun, gloo) ---------------------------------------------------

_DIST_SCRIPT = """
import sys
from pwopsd.config import SamplingConfig
from pwopsd.train import RunSpec, train
rollout = SamplingConfig(n=1, temperature=1.1, top_p=0.95, top_k=20, max_new_tokens=24)
spec = RunSpec(method="opsd", root=sys.argv[1], overrides=(
    ("prompts_per_step", 4), ("micro_batch", 1), ("max_steps", 3), ("save_every", 3),
    ("eval_step", 3), ("rollout_backend", "hf"), ("rollout", rollout), ("clip_stats", False)))
train(spec, progress=False)
"""


def test_two_processes_match_one_process(tmp_path):
    """torchrun --nproc_per_node 2 (gloo) vs one process, same effective batch of 4 prompts.

    Micro-batch k belongs to process k mod 2 and its rollout is seeded by (seed, step, k), so
    both runs see the same samples; only the order of floating-point sums differs. Tolerance:
    relative 1e-4 on every step's loss.
    """
    script = tmp_path / "run.py"
    script.write_text(_DIST_SCRIPT)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    one = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "one")],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert one.returncode == 0, one.stderr[-2000:]
    two = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            "2",
            "--master_port",
            "29533",
            str(script),
            str(tmp_path / "two"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert two.returncode == 0, two.stderr[-3000:]

    def losses_of(root: Path) -> list[float]:
        path = next(root.rglob("metrics.jsonl"))
        return [json.loads(x)["loss"] for x in path.read_text().splitlines()]

    a, b = losses_of(tmp_path / "one"), losses_of(tmp_path / "two")
    assert len(a) == len(b) == 3
    assert a == pytest.approx(b, rel=1e-4), (a, b)
    done = json.loads(next((tmp_path / "two").rglob("DONE.json")).read_text())
    assert done["processes"] == 2


# --- weight sync with the vLLM engine ------------------------------------------------------


@pytest.mark.vllm
@pytest.mark.parametrize("adapter_mode", ["merge", "lora"])
def test_sync_engine_samples_from_updated_weights_and_teacher_is_base(tmp_path, adapter_mode):
    """After training steps with vLLM rollouts, the engine (merged weights reloaded in place,
    or a new LoRARequest) gives the same log-probabilities as the HF student with the trained
    adapter, to 1e-3; the teacher pass (adapter disabled) equals the base model's logits."""
    pytest.importorskip("vllm")
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from pwopsd.config import SamplingConfig
    from pwopsd.engine import make_engine
    from pwopsd.prompts import student_prompt

    engine = make_engine(
        "vllm",
        MODEL,
        profile=PROFILE,
        enable_lora=True,
        max_lora_rank=16,
        adapter_mode=adapter_mode,
    )
    try:
        spec = RunSpec(
            method="opsd",
            overrides=_tiny(rollout_backend="vllm", max_steps=2, save_every=2, eval_step=2),
            root=str(tmp_path),
        )
        result = train(spec, engine=engine, progress=False)
        adapter = str(result.final_adapter)
        prompt = student_prompt(engine.tokenizer, "Compute 3*4+2*5.")
        raw = SamplingConfig(n=1, temperature=1.0, top_p=1.0, top_k=-1, max_new_tokens=24)
        comp = engine.generate([prompt], raw, seeds=[7], adapter=adapter, logprobs=True)[0][0]
        if adapter_mode == "merge":  # one reload per update (3 adapters: steps 0, 1, 2)
            assert engine.weight_reloads >= 2
    finally:
        engine.close()
    base = AutoModelForCausalLM.from_pretrained(MODEL, dtype=torch.float32).eval()
    student = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(MODEL, dtype=torch.float32), adapter
    ).eval()
    ids = engine.tokenizer(prompt, add_special_tokens=False)["input_ids"]
    seq = torch.tensor([ids + list(comp.token_ids)])  # [1, P + C]
    with torch.no_grad():
        lp = torch.log_softmax(student(input_ids=seq).logits[0].float(), dim=-1)  # [P + C, V]
        hf = [lp[len(ids) + j - 1, t].item() for j, t in enumerate(comp.token_ids)]
        base_logits = base(input_ids=seq).logits
        with student.disable_adapter():
            teacher_logits = student(input_ids=seq).logits
        lp_base = torch.log_softmax(base_logits[0].float(), dim=-1)
        base_lp = [lp_base[len(ids) + j - 1, t].item() for j, t in enumerate(comp.token_ids)]
    assert max(abs(a - b) for a, b in zip(hf, comp.logprobs)) < 1e-3
    # The comparison means something: the trained adapter moved the log-probabilities.
    assert max(abs(a - b) for a, b in zip(hf, base_lp)) > 1e-3
    assert torch.equal(teacher_logits, base_logits)


# --- grids ------------------------------------------------------------------------------


def test_grid_local_executor_trains_and_skips_finished(tmp_path):
    """submitit's local executor: one job per cell in its own process; finished cells skipped."""
    from pwopsd.grid import grid_specs, run_grid

    grid = grid_specs(
        ["opsd", "pw_opsd"],
        [3],
        schedules=["moderate"],
        overrides=_tiny(max_steps=1, save_every=1, eval_step=1),
        root=str(tmp_path / "runs"),
    )
    assert [s.name for s in grid] == ["opsd", "pw_opsd_moderate"]
    first = run_grid(grid[:1], executor="inline", progress=False)
    assert first.trained == [f"qwen3/{grid[0].dir_name}/seed3"]
    report = run_grid(grid, executor="local", folder=tmp_path / "logs")
    assert report.skipped == first.trained  # finished: not resubmitted
    assert report.submitted == report.trained == [f"qwen3/{grid[1].dir_name}/seed3"]
    assert all(s.is_done() for s in grid)
    assert list((tmp_path / "logs").glob("*_log.out"))  # it really ran as a submitit job
    again = run_grid(grid, executor="local", folder=tmp_path / "logs")
    assert again.submitted == [] and len(again.skipped) == 2


def test_think_closure_family_trains(tmp_path):
    """The toy olmo3 template always opens a think block: the student prompt is think-closed,
    the teacher prompt is not, and a step trains on the student's completion tokens."""
    from transformers import AutoTokenizer

    from pwopsd.rollout import render_prompts

    tok = AutoTokenizer.from_pretrained(PROFILE.models["olmo3"])
    student, teacher = render_prompts(tok, {"problem": "Compute 2*3.", "solution": "2*3=6"})
    assert student.rstrip().endswith("</think>") and teacher.rstrip().endswith("<think>")
    spec = RunSpec(
        method="opsd",
        family="olmo3",
        overrides=_tiny(max_steps=1, save_every=1, eval_step=1),
        root=str(tmp_path),
    )
    result = train(spec, progress=False)
    row = json.loads((result.run_dir / "metrics.jsonl").read_text().splitlines()[0])
    assert row["valid_tokens"] > 0 and math.isfinite(row["loss"])


# --- the CLI refuses bad input before anything is written ----------------------------------


def _cli(capsys, *args: str) -> tuple[int, str, str]:
    from pwopsd.train.__main__ import main

    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    "setting, culprit",
    [
        ("learning_rate=nan", "learning_rate='nan' must be a finite number"),
        ("learning_rate=.inf", "learning_rate"),
        ("tau_clip=abc", "tau_clip='abc' is not float | None"),
        ("rollout=5", "rollout=5 must be a mapping"),
        ("max_steps=2.5", "max_steps=2.5 is not int"),
        ("dtype=float8", "dtype='float8'; allowed: ['float32', 'bfloat16', 'float16']"),
        ("weight_decay=-1e-2", "weight_decay=-0.01 must be a finite number >= 0"),
        ("no_such_field=1", "'no_such_field' is not a TrainConfig field"),
    ],
)
def test_cli_refuses_bad_settings_before_writing(tmp_path, capsys, setting, culprit):
    for extra in (["--dry-run"], []):
        code, _, err = _cli(
            capsys, "--method", "opsd", "--root", str(tmp_path), "--set", setting, *extra
        )
        assert code == 2 and err.startswith("error: ") and culprit in err, err
        assert err.count("\n") == 1  # one line, no traceback
    assert not any(tmp_path.iterdir())


def test_cli_parses_every_yaml_spelling_to_the_field_type(tmp_path, capsys):
    code, out, _ = _cli(
        capsys, "--method", "opsd", "--root", str(tmp_path), "--dry-run",
        "--set", "learning_rate=1e-3", "--set", "weight_decay=1e-2", "--set", "tau_clip=null",
        "--set", "rollout={temperature: 0.7}",
    )  # fmt: skip
    assert code == 0
    planned = json.loads(out)
    assert planned["learning_rate"] == 1e-3 and planned["loss"]["tau_clip"] is None
    assert planned["rollout"]["temperature"] == 0.7
    assert planned["rollout"]["max_new_tokens"] == PROFILE.train.rollout.max_new_tokens
    spec = RunSpec(method="opsd", overrides=(("weight_decay", "1e-2"),))
    assert spec.train_config().weight_decay == 0.01


@pytest.mark.parametrize(
    "args, culprit",
    [
        (
            ["--family", "nosuch"],
            "family='nosuch' is not known; allowed: ['qwen3', 'llama', 'olmo3']",
        ),
        (["--profile", "nosuch", "--max-steps", "2"], "profile='nosuch' is not known"),
        (["--schedule", "0.2,x,1"], "--schedule '0.2,x,1'"),
        (["--backend", "jax"], "rollout_backend='jax'; allowed: ['vllm', 'hf']"),
    ],
)
def test_cli_names_unknown_family_profile_and_schedule(tmp_path, capsys, args, culprit):
    code, _, err = _cli(capsys, "--method", "pw_opsd", "--root", str(tmp_path), *args)
    assert code == 2 and culprit in err and err.count("\n") == 1, err
    assert not any(tmp_path.iterdir())


def test_cli_names_an_unknown_method(tmp_path, capsys):
    code, _, err = _cli(capsys, "--method", "ppo", "--root", str(tmp_path))
    assert code == 2 and "method='ppo' is not known; allowed: ['opsd'" in err
    assert err.count("\n") == 1 and not any(tmp_path.iterdir())


def test_cli_refuses_an_unwritable_root(tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    code, _, err = _cli(capsys, "--method", "opsd", "--root", str(blocker / "runs"))
    assert code == 2 and "--root" in err and "is a file" in err and err.count("\n") == 1


def test_max_steps_has_one_meaning_and_the_launch_line_reproduces_the_plan(tmp_path, capsys):
    base = ["--method", "pw_opsd", "--root", str(tmp_path), "--dry-run"]
    _, by_flag, _ = _cli(capsys, *base, "--max-steps", "12")
    _, by_set, _ = _cli(capsys, *base, "--set", "max_steps=12")
    assert json.loads(by_flag)["evaluated_step"] == json.loads(by_set)["evaluated_step"] == 12
    _, planned, _ = _cli(
        capsys, *base, "--schedule", "0.2,0.4,0.1", "--family", "llama", "--seed", "2",
        "--max-steps", "12", "--set", "tau_clip=0.25", "--set", "learning_rate=3e-4",
        "--set", "rollout={temperature: 0.9, top_k: 5}", "--root", str(tmp_path / "a dir"),
    )  # fmt: skip
    plan_a = json.loads(planned)
    launch = shlex.split(plan_a["launch"])  # as a shell would split the copied line
    assert launch[:3] == ["python", "-m", "pwopsd.train"]
    _, again, _ = _cli(capsys, *launch[3:], "--dry-run")
    assert json.loads(again) == plan_a


# --- corrupt checkpoints and metrics, moved run directories --------------------------------


def _copy_run(finished_run, root: Path) -> RunSpec:
    """The finished tiny run copied under another root (a moved run directory)."""
    spec, result, _ = finished_run
    moved = RunSpec(spec.method, spec.seed, spec.family, spec.schedule, spec.profile,
                    spec.overrides, str(root))  # fmt: skip
    shutil.copytree(result.run_dir, moved.run_dir())
    return moved


def test_a_truncated_final_adapter_is_set_aside_and_retrained_identically(finished_run, tmp_path):
    spec, result, _ = finished_run
    moved = _copy_run(finished_run, tmp_path)
    rd = moved.run_dir()
    adapter = rd / "checkpoints/step-4/adapter/adapter_model.safetensors"
    adapter.write_bytes(adapter.read_bytes()[:100])
    with pytest.warns(UserWarning, match="step-4 is corrupt .*adapter_model.safetensors"):
        again = train(moved, progress=False)
    assert not again.reused  # verified before reuse, resumed from step-2, not reused broken
    assert (rd / "checkpoints/step-4.corrupt").is_dir()
    original = result.run_dir / "checkpoints/step-4/adapter/adapter_model.safetensors"
    assert adapter.read_bytes() == original.read_bytes()
    rows = [json.loads(x) for x in (rd / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4]


def test_an_unfinished_run_falls_back_past_a_truncated_checkpoint(finished_run, tmp_path):
    from pwopsd.train import last_checkpoint

    moved = _copy_run(finished_run, tmp_path)
    rd = moved.run_dir()
    (rd / "DONE.json").unlink()
    state = rd / "checkpoints/step-4/trainer_state.pt"
    state.write_bytes(state.read_bytes()[:-10])
    with pytest.warns(UserWarning, match="step-4 is corrupt .*trainer_state.pt"):
        assert last_checkpoint(rd) == (2, rd / "checkpoints/step-2")
    assert (rd / "checkpoints/step-4.corrupt").is_dir() and not (rd / "checkpoints/step-4").exists()


def _unfinish(finished_run, root: Path) -> RunSpec:
    """A copy of the run as if killed after step 4's metrics row, before its checkpoint."""
    moved = _copy_run(finished_run, root)
    rd = moved.run_dir()
    (rd / "DONE.json").unlink()
    shutil.rmtree(rd / "checkpoints/step-4")
    return moved


def test_resume_drops_only_a_torn_last_metrics_line(finished_run, tmp_path):
    moved = _unfinish(finished_run, tmp_path)
    path = moved.run_dir() / "metrics.jsonl"
    text = path.read_text()
    path.write_text(text[: len(text) - len(text.splitlines()[-1]) // 2 - 1])  # row 4 torn
    train(moved, progress=False)
    rows = [json.loads(x) for x in path.read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    ref = [json.loads(x) for x in text.splitlines()]
    assert [r["loss"] for r in rows] == [r["loss"] for r in ref]


def test_a_corrupt_middle_metrics_row_is_an_error_naming_the_line(finished_run, tmp_path):
    from pwopsd.jsonl import CorruptFileError

    moved = _unfinish(finished_run, tmp_path)
    path = moved.run_dir() / "metrics.jsonl"
    lines = path.read_text().splitlines()
    lines[1] = lines[1][:-5]
    broken = "\n".join(lines) + "\n"
    path.write_text(broken)
    with pytest.raises(CorruptFileError, match=r"metrics.jsonl, line 2"):
        train(moved, progress=False)
    assert path.read_text() == broken  # nothing rewritten, no valid row lost
