"""Issue 20 in the training loop: teacher variants (base, live student, EMA), the EMA's state
in checkpoints (bit-exact resume), PW-Mix and the teacher-free control end to end, the
teacher-pass cost in the metrics, and the paper-profile plans of every variant.

Real parts, tiny configurations (tests/test_train.py's ``_tiny``: HF rollouts, 4 prompts per
step, 32-token completions, 2 steps)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from peft import set_peft_model_state_dict
from safetensors.torch import load_file

from pwopsd.config import ConfigError, TrainConfig, get_profile
from pwopsd.data import load_training_corpus
from pwopsd.rollout import align, encode, render_prompts
from pwopsd.train import RunSpec, plan, train
from pwopsd.train import step as step_module
from pwopsd.train.__main__ import build_parser, parse_overrides, parse_schedule
from pwopsd.train.loop import build_student
from pwopsd.train.spec import recorded_train_config
from pwopsd.train.teacher import make_ema, teacher_logits
from pwopsd.vocab import BEYOND_METHODS, TEACHERS
from tests.test_train import _tiny

PROFILE = get_profile("toy")
MODEL = PROFILE.main_model
TWO_STEPS = {"max_steps": 2, "save_every": 1, "eval_step": 2}


def _rows(result) -> list[dict]:
    return [json.loads(x) for x in (result.run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def kind_runs(tmp_path_factory):
    """One 2-step PW-OPSD run per teacher kind (checkpoints after steps 1 and 2)."""
    root = tmp_path_factory.mktemp("teachers")
    out = {}
    for kind in TEACHERS:
        spec = RunSpec(method="pw_opsd", overrides=_tiny(**TWO_STEPS, teacher=kind),
                       root=str(root))  # fmt: skip
        out[kind] = (spec, train(spec, progress=False))
    return out


def test_teacher_kinds_share_step_one_and_part_after_it(kind_runs):
    """At step 1 every teacher is the base model (LoRA B = 0 at init, the EMA starts there),
    so the losses agree exactly; at step 2 the live and EMA teachers have moved."""
    rows = {kind: _rows(result) for kind, (_, result) in kind_runs.items()}
    for kind in TEACHERS:
        assert [r["step"] for r in rows[kind]] == [1, 2]
        assert all(r["teacher_seconds"] > 0 for r in rows[kind]), kind
    assert rows["student"][0]["loss"] == rows["base"][0]["loss"] == rows["ema"][0]["loss"]
    assert rows["student"][1]["loss"] != rows["base"][1]["loss"]
    assert rows["ema"][1]["loss"] != rows["base"][1]["loss"]
    config = json.loads((kind_runs["ema"][1].run_dir / "config.json").read_text())
    assert config["train"]["teacher"] == "ema"
    assert (
        "teacher"
        not in json.loads((kind_runs["base"][1].run_dir / "config.json").read_text())["train"]
    )  # a default is left out: runs made before the field existed still resume


def _one_batch(tok, pad_id: int):
    corpus = load_training_corpus(PROFILE.train_data)
    texts = [render_prompts(tok, corpus[i]) for i in range(2)]
    completions = [encode(tok, corpus[i]["solution"])[:12] for i in range(2)]
    return align([encode(tok, t[0]) for t in texts], [encode(tok, t[1]) for t in texts],
                 completions, max_model_len=PROFILE.engine.max_model_len, pad_id=pad_id)  # fmt: skip


def test_ema_is_the_decayed_average_and_teacher_logits_differ_by_kind(kind_runs):
    spec, result = kind_runs["ema"]
    cfg = spec.train_config()
    ckpt = result.run_dir / "checkpoints" / "step-1"
    tok, model = build_student(spec, cfg, MODEL)  # the same LoRA init as the run
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    init = {n: p.detach().clone() for n, p in trainable}
    ema = make_ema(model, cfg)
    set_peft_model_state_dict(model, load_file(str(ckpt / "adapter" / "adapter_model.safetensors")))
    ema.load_state_dict(torch.load(ckpt / "trainer_state.pt", weights_only=False)["teacher_ema"])
    new = {n: p.detach().clone() for n, p in trainable}
    d = cfg.teacher_ema_decay
    assert d == 0.99
    moved = 0
    for name, value in new.items():
        expect = d * init[name].double() + (1 - d) * value.double()
        assert torch.allclose(ema.shadow[name].double(), expect, rtol=0, atol=1e-7), name
        moved += not torch.equal(value, init[name])
    assert moved > 0, "one step must move the adapter"
    model.eval()
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    batch = _one_batch(tok, pad)
    logits = {}
    for kind in TEACHERS:
        kind_cfg = TrainConfig(teacher=kind)
        logits[kind], seconds = teacher_logits(model, batch, kind_cfg, ema)
        assert seconds > 0
    m = batch.mask
    assert not torch.allclose(logits["student"][m], logits["base"][m])
    assert not torch.allclose(logits["ema"][m], logits["base"][m])
    assert not torch.allclose(logits["ema"][m], logits["student"][m])
    for name, p in trainable:  # the EMA pass restored the student's own weights bit for bit
        assert torch.equal(p.detach(), new[name]), name


def test_ema_resume_is_bit_exact(kind_runs, tmp_path):
    """Stop the EMA run after step 1 and resume it: adapter and EMA equal the straight run's."""
    spec, straight = kind_runs["ema"]
    again = RunSpec(method=spec.method, overrides=spec.overrides, root=str(tmp_path))
    stopped = train(again, progress=False, stop_after=1)
    assert stopped.summary == {"stopped_at": 1}
    resumed = train(again, progress=False)
    for step in (1, 2):
        a = straight.run_dir / "checkpoints" / f"step-{step}"
        b = resumed.run_dir / "checkpoints" / f"step-{step}"
        name = "adapter/adapter_model.safetensors"
        assert (a / name).read_bytes() == (b / name).read_bytes(), step
        ea = torch.load(a / "trainer_state.pt", weights_only=False)["teacher_ema"]
        eb = torch.load(b / "trainer_state.pt", weights_only=False)["teacher_ema"]
        assert ea.keys() == eb.keys() and all(torch.equal(ea[k], eb[k]) for k in ea), step
    assert [r["loss"] for r in _rows(straight)] == [r["loss"] for r in _rows(resumed)]


@pytest.mark.parametrize("method", BEYOND_METHODS)
def test_new_methods_train_and_teacher_free_skips_the_teacher(method, tmp_path, monkeypatch):
    real = step_module.teacher_logits

    def no_teacher(*args, **kwargs):
        if method == "teacher_free":
            raise AssertionError("the teacher-free control must not run a teacher pass")
        return real(*args, **kwargs)

    monkeypatch.setattr(step_module, "teacher_logits", no_teacher)
    spec = RunSpec(method=method, overrides=_tiny(max_steps=1, save_every=1, eval_step=1),
                   root=str(tmp_path))  # fmt: skip
    (row,) = _rows(train(spec, progress=False))
    assert row["loss"] == row["loss"] and "teacher_seconds" in row  # finite, cost logged
    if method == "teacher_free":
        assert row["teacher_seconds"] == 0.0 and row["fkl_token_mean"] is None
        assert "clip_frac_tokens" not in row and 0 <= row["low_prob_fraction"] <= 1
    else:
        assert row["teacher_seconds"] > 0 and row["rkl_token_mean"] >= 0
        assert 0 < row["mix_weight_min"] <= row["mix_weight_max"] <= 1


def test_bad_teacher_settings_fail_naming_the_field():
    for override, culprit in (
        (("teacher", "oracle"), "teacher='oracle'"),
        (("teacher_ema_decay", 1.0), "teacher_ema_decay=1.0"),
        (("teacher_free_tau_low", 0.0), "teacher_free_tau_low=0.0"),
        (("teacher_free_advantage", -1.0), "teacher_free_advantage=-1.0"),
    ):
        with pytest.raises(ConfigError, match=culprit.replace("(", r"\(")):
            plan(RunSpec(method="pw_opsd", overrides=(override,)), world_size=1)
    with pytest.raises(ConfigError, match="reads no teacher"):
        RunSpec(method="teacher_free", overrides=(("teacher", "ema"),))
    with pytest.raises(ConfigError, match="matched_step"):
        RunSpec(method="pw_mix", overrides=(("matched_step", True),))
    cfg = TrainConfig(teacher="ema")
    assert recorded_train_config(cfg)["teacher"] == "ema"
    assert "teacher_free_tau_low" not in recorded_train_config(cfg)


# --- the paper profile plans every variant ------------------------------------------------

PAPER_VARIANTS = [
    (["--method", "pw_mix", "--schedule", "aggressive"], "pw_mix"),
    (["--method", "teacher_free"], "teacher_free"),
    (["--method", "pw_opsd", "--schedule", "0.984,1.0,0.01"], "fitted"),
    (["--method", "pw_opsd", "--set", "teacher=student"], "student"),
    (["--method", "pw_opsd", "--set", "teacher=ema", "--set", "teacher_ema_decay=0.995"], "ema"),
]


@pytest.mark.parametrize("args, variant", PAPER_VARIANTS, ids=[v for _, v in PAPER_VARIANTS])
def test_every_variant_plans_under_the_paper_profile(args, variant, monkeypatch):
    import transformers

    def refuse(*a, **k):
        raise AssertionError("a dry run must not load or download anything")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", refuse)

    ns = build_parser().parse_args([*args, "--profile", "paper", "--dry-run"])
    spec = RunSpec(method=ns.method, schedule=parse_schedule(ns.schedule), profile="paper",
                   overrides=parse_overrides(ns))  # fmt: skip
    p = plan(spec, world_size=4)
    assert p["steps"] == 150 and p["model"] == "Qwen/Qwen3-4B"
    settings = p["method_settings"]
    if variant == "pw_mix":
        assert settings["pw_mix"]["mix_schedule"] == (0.05, 0.45, 0.05)
        assert settings["teacher"] == {"kind": "base"}
    elif variant == "teacher_free":
        assert settings["teacher"] is None
        assert settings["teacher_free"]["tau_low"] == 0.1
    elif variant == "fitted":
        assert p["schedule"] == (0.984, 1.0, 0.01) and p["run_name"] == "pw_opsd_w0.984_c1_s0.01"
    elif variant == "student":
        assert settings["teacher"] == {"kind": "student"}
    else:
        assert settings["teacher"] == {"kind": "ema", "ema_decay": 0.995}
    assert "--profile paper" in p["launch"] and f"--method {ns.method}" in p["launch"]


def test_paper_dry_run_command_line_prints_the_variant_config():
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "pwopsd.train", "--profile", "paper", "--method", "pw_mix",
           "--set", "teacher=ema", "--dry-run"]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    printed = json.loads(out.stdout)
    assert printed["method_settings"]["teacher"] == {"kind": "ema", "ema_decay": 0.99}
    assert printed["method_settings"]["pw_mix"]["mix_schedule"] == [0.25, 0.3, 0.1]
