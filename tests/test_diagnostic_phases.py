"""Diagnostic phases A-G on the toy model with a fake engine (issue 11, "Checks").

The teacher passes (B, D) use the real toy checkpoint (an HF forward is milliseconds); spines
and continuations come from a scripted engine, so every test runs in seconds and the
forced-continuation prompts can be inspected token by token.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from pwopsd import jsonl
from pwopsd.config import ConfigError, DiagnosticConfig, get_profile
from pwopsd.diagnostic import context, phases, problems, report, teacher
from pwopsd.diagnostic.store import check_plan
from pwopsd.prompts import student_prompt
from pwopsd.provenance import model_fingerprint
from pwopsd.sampling import Completion
from pwopsd.toy.task import format_solution, parse_problem, solution_steps
from tests.conftest import REPO_ROOT

TOY = get_profile("toy").main_model


def tiny(tmp_path: Path, **kw) -> DiagnosticConfig:
    base = dict(
        out_dir=str(tmp_path / "diag"),
        pools=["math500"],
        max_problems=3,
        candidates_per_problem=2,
        children_per_candidate=2,
        rollouts_per_child=2,
        mc_samples=2,
        bootstrap=50,
    )
    return DiagnosticConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def tok():
    return AutoTokenizer.from_pretrained(TOY)


class FakeEngine:
    """Scripted engine: greedy = the reference solution as the spine; sampled = a continuation
    whose answer is right exactly when the forced child (last prompt token) is even."""

    backend = "vllm"

    def __init__(self, tok, golds, solutions, *, bare=(), delay=0.0):
        self.tok = tok
        self.golds = golds  # student prompt ids (tuple) -> gold
        self.solutions = solutions  # student prompt ids (tuple) -> spine text
        self.bare = set(bare)  # prompts whose spine is only the boxed answer
        self.delay = delay
        self.requests: list = []
        self.closed = False

    def _problem(self, ids):
        for prefix, gold in self.golds.items():
            if tuple(ids[: len(prefix)]) == prefix:
                return prefix, gold
        raise AssertionError("prompt does not start with a student prompt")

    def stream(self, reqs, sampling):
        for r in reqs:
            ids = r.prompt["prompt_token_ids"]
            self.requests.append((r.key, list(ids), r.seed, sampling))
            prefix, gold = self._problem(ids)
            if sampling.temperature == 0:
                text = f"\\boxed{{{gold}}}" if prefix in self.bare else self.solutions[prefix]
                new = self.tok(text, add_special_tokens=False)["input_ids"] + [
                    self.tok.eos_token_id
                ]
            else:
                if self.delay:
                    time.sleep(self.delay)
                text = f"\n\\boxed{{{gold if ids[-1] % 2 == 0 else -1}}}"
                new = self.tok(text, add_special_tokens=False)["input_ids"]
            yield r.key, Completion(text, tuple(new), None, "stop")

    def close(self):
        self.closed = True


def fake_for(cfg, tok, **kw):
    golds, sols = {}, {}
    for _, p in problems.select_problems(cfg, cfg.get_profile()):
        ids = tuple(context.prompt_ids(tok, student_prompt(tok, p.problem)))
        golds[ids] = p.answer
        sols[ids] = _solution(p)
    bare = [k for i, k in enumerate(golds) if i in kw.pop("bare_index", ())]
    return FakeEngine(tok, golds, sols, bare=bare, **kw)


def _solution(problem) -> str:
    return format_solution(solution_steps(parse_problem(problem.problem)), int(problem.answer))


def test_forced_continuation_is_exactly_student_prompt_spine_prefix_child(tmp_path, tok):
    cfg = tiny(tmp_path)
    eng = fake_for(cfg, tok)
    res = phases.run(cfg, make_engine=lambda: eng, log=lambda s: None)
    assert eng.closed and res["status"] == "ok"
    spines = {s["problem_key"]: s for s in jsonl.read(phases.scratch_dir(cfg) / "A.jsonl")}
    cont = [r for r in eng.requests if r[3].temperature > 0]
    assert cont, "no continuation was requested"
    answer_marker = tok.convert_tokens_to_ids("=== Reference Answer Begin ===")
    for (problem_key, pos, child, _), ids, _seed, _ in cont:
        s = spines[problem_key]
        assert ids == s["student_prompt_ids"] + s["spine"][:pos] + [child]
        assert answer_marker not in ids  # never the privileged prompt
        assert str(s["gold"]) not in tok.decode(s["student_prompt_ids"]).split("Compute")[0]
    # the student prompt ids are those of the student template, no extra special tokens
    s = next(iter(spines.values()))
    assert (
        s["student_prompt_ids"]
        == tok(student_prompt(tok, s["problem"]), add_special_tokens=False)["input_ids"]
    )
    # per-sample seeds differ
    assert len({r[2] for r in cont}) == len(cont)
    assert context.continuation_prompt_ids([1, 2], [5, 6, 7], 1, 9) == [1, 2, 5, 9]
    with pytest.raises(ValueError):
        context.continuation_prompt_ids([1], [5], 1, 9)


def test_run_writes_table1_and_figure1(tmp_path, tok):
    cfg = tiny(tmp_path)
    res = phases.run(cfg, make_engine=lambda: fake_for(cfg, tok), log=lambda s: None)
    out = cfg.results_dir
    # a smaller run than the full configuration never takes the full run's file names
    assert not (out / f"table1.seed{cfg.seed}.json").exists() and cfg.scale_tag()
    assert res["paths"]["table1"] == str(out / f"table1.seed{cfg.seed}.{cfg.scale_tag()}.json")
    rows = json.loads(cfg.results_file("table1").read_text())["rows"]
    assert any("position" in r["score"] for r in rows)
    keys = {"score", "auroc", "ci_low", "ci_high", "auprc", "n_real_uncertain", "n_diversity"}
    for r in rows:
        assert keys <= set(r)
    fig = json.loads(cfg.results_file("figure1").read_text())
    assert set(fig["series"]) == {"diversity", "real_uncertain", "gray", "all"}
    doc = json.loads(cfg.results_file("diagnostic").read_text())
    assert doc["status"] == "ok" and doc["provenance"]["profile"] == "toy"
    records = json.loads((phases.scratch_dir(cfg) / "candidates.json").read_text())
    assert {r["label"] for r in records} <= {"diversity", "real_uncertain", "gray"}
    assert len(fig["series"]["all"]["u"]) == len(records)
    # the scripted viability: every even child viable, every odd child never
    for r in records:
        assert r["viability"] == [1.0 if c % 2 == 0 else 0.0 for c in r["children"]]


def test_bad_input_is_counted_not_fatal(tmp_path, tok):
    # Problem 0's spine is only "\boxed{N}": no position before the box -> no candidate.
    cfg = tiny(tmp_path)
    eng = fake_for(cfg, tok, bare_index=(0,))
    res = phases.run(cfg, make_engine=lambda: eng, log=lambda s: None)
    c = res["counts"]["C"]
    assert c["problems_without_candidate"] >= 1
    assert c["dropped_positions"]["after_boxed"] > 0
    # A child that is EOS is never forced; the drop is counted.
    eos = tok.eos_token_id
    stats = {
        "boxed_start": None,
        "trunc_entropy": [0.9, 0.9],
        "entropy": [1.0, 1.0],
        "top1": [0.5, 0.5],
        "spine_prob": [0.5, 0.5],
        "child_ids": [[eos, 20, 21], [20, 21, 22]],
        "child_probs": [[0.5, 0.3, 0.2], [0.5, 0.3, 0.2]],
    }
    valid = [True] * 300
    valid[eos] = False
    cfg3 = tiny(tmp_path, children_per_candidate=3, min_spacing=1)
    cands, drops = teacher.select_candidates([20, 21], stats, valid, cfg3, {eos})
    assert drops["eos_or_junk_children"] == 1
    assert all(eos not in c["children"] for c in cands) and len(cands) == 2
    # A group with a single label: counted in Table 1, the AUROC still computed.
    recs = [
        dict(problem_key="a", u=0.1, label="diversity", viability=[1, 1]),
        dict(problem_key="a", u=0.9, label="diversity", viability=[1, 1]),
        dict(problem_key="b", u=0.2, label="diversity", viability=[1, 1]),
        dict(problem_key="b", u=0.8, label="real_uncertain", viability=[0, 0]),
    ]
    row = report.table1(recs, cfg)[0]
    assert row["n_single_label_problems"] == 1 and row["auroc"] is not None
    assert report.table1(recs[:2], cfg)[0]["auroc"] is None  # one class: no AUROC, no crash


def test_labels_follow_the_thresholds(tmp_path):
    cfg = tiny(tmp_path)
    assert report.label_candidate([1.0, 0.5, 0.0], cfg) == "diversity"
    assert report.label_candidate([0.0, 0.0, 0.0], cfg) == "real_uncertain"
    assert report.label_candidate([0.5, 0.0, 0.0], cfg) == "gray"
    assert report.label_candidate([0.15, 0.15, 0.15], cfg) == "gray"  # low each, mean not


def test_truncated_entropy_counts_only_valid_tokens():
    logits = torch.log(torch.tensor([[0.5, 0.25, 0.25]]))
    valid = torch.tensor([False, True, True])
    st = teacher.teacher_position_stats(logits, torch.tensor([1]), valid, top_k=2, n_children=2)
    assert st["trunc_entropy"][0] == pytest.approx(torch.log(torch.tensor(2.0)).item(), abs=1e-5)
    assert st["child_ids"][0] == [1, 2] and st["top1"][0] == pytest.approx(0.5)
    assert st["spine_prob"][0] == pytest.approx(0.25)


def test_dropout_hooks_are_removed_even_on_error():
    net = AutoModelForCausalLM.from_pretrained(TOY).eval()
    layers = teacher.decoder_layers(net)
    ids = list(range(5, 25))
    with torch.no_grad():
        ref = teacher.hidden_states(net, ids)
        with teacher.DropoutHooks(net, 2, 0.0, seed=0):
            same = teacher.hidden_states(net, ids)
        with teacher.DropoutHooks(net, 2, 0.3, seed=0):
            a = teacher.hidden_states(net, ids)
        with teacher.DropoutHooks(net, 2, 0.3, seed=0):
            b = teacher.hidden_states(net, ids)
        with pytest.raises(RuntimeError), teacher.DropoutHooks(net, 2, 0.3, seed=0):
            assert all(len(layer._forward_hooks) == 1 for layer in layers[-2:])
            raise RuntimeError("boom")
        after = teacher.hidden_states(net, ids)
    assert torch.allclose(ref, same) and torch.allclose(ref, after)
    assert torch.equal(a, b) and not torch.allclose(a, ref)
    assert all(len(layer._forward_hooks) == 0 for layer in layers)
    probs = torch.softmax(torch.randn(4, 3, 10), -1)
    sc = teacher.mc_scores(probs, top_k=3, valid=torch.ones(10, dtype=torch.bool))
    assert all(len(v) == 3 for v in sc.values()) and min(sc["mc_mutual_info"]) >= 0


def test_boxed_start(tok):
    ids = tok("3*4=12\n\\boxed{12}", add_special_tokens=False)["input_ids"]
    i = teacher.boxed_start(tok, ids)
    assert tok.decode(ids[:i]) == "3*4=12\n"
    assert teacher.boxed_start(tok, tok("3*4=12", add_special_tokens=False)["input_ids"]) is None


def test_runs_with_other_settings_keep_their_own_files(tmp_path, tok):
    cfg = tiny(tmp_path)
    phases.run(cfg, make_engine=lambda: fake_for(cfg, tok), stop_after="A", log=lambda s: None)
    other = tiny(tmp_path, max_problems=2)
    assert phases.scratch_dir(other) != phases.scratch_dir(cfg)
    phases.run(other, make_engine=lambda: fake_for(other, tok), log=lambda s: None)
    assert len(jsonl.read(phases.scratch_dir(cfg) / "A.jsonl")) == 3
    # finish the first; thresholds only F and G read reuse its samples (no engine started)
    phases.run(cfg, make_engine=lambda: fake_for(cfg, tok), log=lambda s: None)
    strict = tiny(tmp_path, viable_threshold=0.9)
    assert phases.scratch_dir(strict) == phases.scratch_dir(cfg)
    phases.run(strict, make_engine=_no_engine, log=lambda s: None)
    assert strict.results_file("table1").exists()
    assert strict.results_file("table1") != cfg.results_file("table1")


def _no_engine():
    raise AssertionError("a finished run must not start an engine")


def test_resume_after_sigkill_loses_at_most_items_in_flight(tmp_path, tok):
    cfg = tiny(tmp_path, max_problems=2, rollouts_per_child=3)
    script = tmp_path / "child.py"
    script.write_text(
        "import sys\n"
        f"sys.path.insert(0, {str(REPO_ROOT)!r})\n"
        "from pathlib import Path\n"
        "from transformers import AutoTokenizer\n"
        "from tests.test_diagnostic_phases import TOY, fake_for, tiny\n"
        "from pwopsd.diagnostic import phases\n"
        f"cfg = tiny(Path({str(tmp_path)!r}), max_problems=2, rollouts_per_child=3)\n"
        "tok = AutoTokenizer.from_pretrained(TOY)\n"
        "eng = fake_for(cfg, tok, delay=0.2)\n"
        "phases.run(cfg, make_engine=lambda: eng, log=lambda s: print(s, flush=True))\n"
    )
    e_file = phases.scratch_dir(cfg) / "E.jsonl"
    proc = subprocess.Popen(
        [sys.executable, str(script)],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            if e_file.exists() and len(jsonl.read(e_file)) >= 3:
                break
            time.sleep(0.05)
        else:
            pytest.fail("the child never reached phase E")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    before = {tuple(r["key"]) for r in jsonl.read(e_file)}
    done_a = jsonl.read(phases.scratch_dir(cfg) / "A.jsonl")
    assert len(done_a) == 2 and len(before) >= 3
    eng = fake_for(cfg, tok)
    res = phases.run(cfg, make_engine=lambda: eng, log=lambda s: None)
    # A-D were finished: nothing re-decoded; E asked only for what was not on disk
    assert all(r[3].temperature > 0 for r in eng.requests)
    asked = {tuple(r[0]) for r in eng.requests}
    assert not asked & before
    rows = jsonl.read(e_file)
    keys = [tuple(r["key"]) for r in rows]
    assert len(keys) == len(set(keys)) == res["counts"]["E"]["requested"]
    assert res["counts"]["F"]["incomplete"] == 0


def test_torn_last_row_is_resampled_alone_and_a_bad_middle_line_is_an_error(tmp_path, tok):
    cfg = tiny(tmp_path)
    phases.run(cfg, make_engine=lambda: fake_for(cfg, tok), log=lambda s: None)
    e_file = phases.scratch_dir(cfg) / "E.jsonl"
    lines = e_file.read_bytes().splitlines(keepends=True)
    before = [json.loads(line) for line in lines]
    # a kill mid-write: the last row is cut off halfway, without its newline
    e_file.write_bytes(b"".join(lines[:-1]) + lines[-1][: len(lines[-1]) // 2])
    eng = fake_for(cfg, tok)
    res = phases.run(cfg, make_engine=lambda: eng, log=lambda s: None)
    assert [r[0] for r in eng.requests] == [tuple(before[-1]["key"])]  # only that row again
    assert e_file.read_bytes().startswith(b"".join(lines[:-1]))  # the others untouched
    assert jsonl.read(e_file) == before and res["counts"]["E"]["continuations"] == len(before)
    # a bad line before the last is corruption, not a kill: an error naming file and line
    a_file = phases.scratch_dir(cfg) / "A.jsonl"
    rows = a_file.read_text().splitlines(keepends=True)
    rows[1] = rows[1][:20] + "\n"
    a_file.write_text("".join(rows))
    with pytest.raises(jsonl.CorruptFileError, match=r"A\.jsonl, line 2: not valid JSON"):
        phases.run(cfg, make_engine=_no_engine, log=lambda s: None)
    assert a_file.read_text() == "".join(rows)  # nothing rewritten


def test_retrained_checkpoint_is_not_resumed(tmp_path):
    model = tmp_path / "toy-model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    (model / "model.safetensors").write_bytes(b"old weights")
    cfg = tiny(tmp_path)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    check_plan(scratch, cfg, str(model))
    check_plan(scratch, cfg, str(model))  # same weights: resumes
    (model / "model.safetensors").write_bytes(b"new weights")
    with pytest.raises(ConfigError, match="model_fingerprint: files .* vs now .*") as err:
        check_plan(scratch, cfg, str(model))
    assert str(scratch) in str(err.value) and "delete that scratch directory" in str(err.value)
    # a scratch directory of the layout before problem keys were named so is refused too
    old = tmp_path / "old"
    old.mkdir()
    check_plan(old, cfg, str(model))
    plan = json.loads((old / "plan.json").read_text())
    del plan["scratch_format"]
    (old / "plan.json").write_text(json.dumps(plan))
    with pytest.raises(ConfigError, match="scratch_format: files None vs now 2"):
        check_plan(old, cfg, str(model))
    assert model_fingerprint("Qwen/Qwen3-4B") == "hub:Qwen/Qwen3-4B"
