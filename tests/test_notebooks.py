"""Notebooks: jupytext pairs in sync, parameters == config fields, bad parameters fail first."""

from __future__ import annotations

import ast
import dataclasses
import json

import jupytext
import papermill as pm
import pytest

from pwopsd.config import NOTEBOOK_CONFIGS
from tests.conftest import REPO_ROOT

NOTEBOOKS = REPO_ROOT / "notebooks"
SECTIONS = sorted(NOTEBOOK_CONFIGS)


def test_one_notebook_per_section():
    assert sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb")) == SECTIONS
    assert sorted(p.stem for p in NOTEBOOKS.glob("*.py")) == SECTIONS


@pytest.mark.parametrize("section", SECTIONS)
def test_pair_in_sync_and_without_outputs(section):
    ipynb = json.loads((NOTEBOOKS / f"{section}.ipynb").read_text())
    from_py = jupytext.read(NOTEBOOKS / f"{section}.py")
    got = [
        (c["cell_type"], "".join(c["source"]), c["metadata"].get("tags", []))
        for c in ipynb["cells"]
    ]
    want = [(c.cell_type, c.source, c.metadata.get("tags", [])) for c in from_py.cells]
    assert got == want, f"notebooks/{section}.ipynb and .py differ: run `make sync-notebooks`"
    for cell in ipynb["cells"]:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None, (
                f"notebooks/{section}.ipynb is committed with outputs"
            )


def _parameters_cell(section: str) -> tuple[int, dict[str, object]]:
    nb = jupytext.read(NOTEBOOKS / f"{section}.py")
    code_cells = [c for c in nb.cells if c.cell_type == "code"]
    cell = code_cells[0]
    assert "parameters" in cell.metadata.get("tags", []), (
        "the first code cell must be tagged parameters"
    )
    values = {}
    for node in ast.parse(cell.source).body:
        assert isinstance(node, ast.Assign) and len(node.targets) == 1
        values[node.targets[0].id] = ast.literal_eval(node.value)
    return nb.cells.index(cell), values


@pytest.mark.parametrize("section", SECTIONS)
def test_parameters_map_onto_config(section):
    _, values = _parameters_cell(section)
    cls = NOTEBOOK_CONFIGS[section]
    fields = {f.name: f for f in dataclasses.fields(cls)}
    assert list(values) == list(fields), (
        f"{section}: parameters cell names != {cls.__name__} fields"
    )
    defaults = cls()
    for name, value in values.items():
        assert value == getattr(defaults, name), (
            f"{section}.{name}: notebook default != config default"
        )


BAD_PARAMETERS = [
    ("main_table", {"sed": 1}, "ConfigError", "sed"),
    ("main_table", {"seed": -3}, "ConfigError", "seed=-3"),
    ("main_table", {"profile": "laptop"}, "ConfigError", "profile='laptop'"),
    ("main_table", {"methods": ["opsd", "dpo"]}, "ConfigError", "methods contains 'dpo'"),
    ("main_table", {"eval_seeds": "three"}, "ConfigError", "eval_seeds='three'"),
    ("schedule_sweep", {"schedules": ["gentle"]}, "ConfigError", "schedules contains 'gentle'"),
    ("schedule_sweep", {"w_min": 1.2, "c": 0.3, "s": 0.1}, "ConfigError", "w_min=1.2"),
    ("schedule_sweep", {"w_min": 0.25, "c": -0.2, "s": 0.1}, "ConfigError", "c=-0.2"),
    ("reduction_factorial", {"schedule": "extreme"}, "ConfigError", "schedule='extreme'"),
    ("cross_model", {"families": ["mistral"]}, "ConfigError", "families contains 'mistral'"),
    ("diagnostic", {"bootstrap": 0}, "ConfigError", "bootstrap=0"),
    ("position_premise", {"dial": [0.0, 0.3]}, "ConfigError", "dial contains 0.3"),
    ("beyond", {"teachers": ["oracle"]}, "ConfigError", "teachers contains 'oracle'"),
    ("beyond", {"teacher_ema_decay": 1.0}, "ConfigError", "teacher_ema_decay=1.0"),
]


@pytest.mark.parametrize("section, params, ename, needle", BAD_PARAMETERS)
def test_bad_parameter_fails_in_first_cell(tmp_path, section, params, ename, needle):
    param_index, _ = _parameters_cell(section)
    with pytest.raises(pm.PapermillExecutionError) as err:
        pm.execute_notebook(
            str(NOTEBOOKS / f"{section}.ipynb"),
            str(tmp_path / "out.ipynb"),
            parameters={**params, "out_dir": str(tmp_path / "results")},
            progress_bar=False,
            kernel_name="python3",
        )
    assert err.value.ename == ename
    assert needle in err.value.evalue
    # papermill inserts the injected-parameters cell right after the parameters cell; the
    # validation cell right after that is the first one to run anything.
    assert err.value.cell_index == param_index + 2
    assert not (tmp_path / "results").exists(), "no results may be written on bad input"


@pytest.mark.parametrize("out_dir", ["/proc/forbidden", "/etc/hostname/results"])
def test_unwritable_out_dir_fails_in_first_cell(tmp_path, out_dir):
    param_index, _ = _parameters_cell("main_table")
    with pytest.raises(pm.PapermillExecutionError) as err:
        pm.execute_notebook(
            str(NOTEBOOKS / "main_table.ipynb"),
            str(tmp_path / "out.ipynb"),
            parameters={"out_dir": out_dir},
            progress_bar=False,
            kernel_name="python3",
        )
    assert err.value.ename == "ConfigError"
    assert f"out_dir={out_dir!r}" in err.value.evalue
    assert err.value.cell_index == param_index + 2


@pytest.mark.vllm
def test_main_table_notebook_end_to_end_and_a_second_seed_adds_itself(tmp_path):
    """The main-table notebook: real vLLM sampling and training of the toy model, real
    grading; a second seed's run lands beside the first and the table aggregates both."""
    from pwopsd import tables

    out = tmp_path / "mt"
    params = {
        "out_dir": str(out),
        "max_problems": 2,
        "eval_seeds": 2,
        "methods": ["base", "pw_opsd"],
        "schedules": ["moderate"],
        "train_steps": 2,
    }
    for seed in (1, 2):
        nb = pm.execute_notebook(
            str(NOTEBOOKS / "main_table.ipynb"),
            str(tmp_path / f"out{seed}.ipynb"),
            parameters={"seed": seed, **params},
            progress_bar=False,
            kernel_name="python3",
        )
    # A smaller run never takes a full run's file name.
    assert not list(out.glob("main_table.seed1.json"))
    written = sorted(out.glob("main_table.seed*.json"))
    assert [p.name.split(".")[1] for p in written] == ["seed1", "seed2"]
    tag = written[0].name.split(".", 2)[2].removesuffix(".json")
    assert "max_problems2" in tag and "train_steps2" in tag
    doc = json.loads(written[0].read_text())
    assert doc["status"] == "ok" and doc["eval_seeds"] == [1000, 1001] and doc["seed"] == 1
    assert [r["key"] for r in doc["rows"]] == ["qwen3/base", "qwen3/pw_opsd_moderate"]
    run = doc["runs"]["qwen3/pw_opsd_moderate"]
    assert run["run_dir"].startswith(str(out / "runs"))  # never the shared results/<profile>/runs
    assert [m["step"] for m in run["metrics"]] == [1, 2]
    assert doc["rows"][1]["adapter"].endswith("step-2/adapter")
    base = doc["rows"][0]["scores"]
    assert list(base) == ["toy_math500", "toy_aime24", "toy_aime25", "toy_hmmt25"]
    for scores in base.values():
        avg = scores["avg"]
        assert 0.0 <= avg["mean"] <= 1.0 and avg["sd"] is not None and len(avg["values"]) == 2
        assert scores["pass"]["mean"] >= avg["mean"]
    assert doc["provenance"]["profile"] == "toy" and doc["provenance"]["git_commit"]
    shown = json.dumps([c.get("outputs") for c in nb["cells"]])
    assert "Toy MATH-500" in shown and "PW-OPSD Moderate" in shown
    # The full-scale reader ignores these quick files; asked for their tag, it sees both seeds.
    assert tables.load_section("toy", "main_table", out) is None
    table = tables.load_section("toy", "main_table", out, tag=tag)
    assert table["seeds"] == [1, 2] and table["spread"] == "training seeds"
    second = json.loads(written[1].read_text())["rows"][0]["scores"]["toy_aime24"]["avg"]["mean"]
    first = base["toy_aime24"]["avg"]["mean"]
    got = tables.row(table, "qwen3/base")["scores"]["toy_aime24"]["avg"]
    assert got["mean"] == pytest.approx((first + second) / 2) and got["n"] == 2


@pytest.mark.vllm
def test_reduction_factorial_notebook_reuses_the_corner_runs(tmp_path):
    """The factorial's corners are the OPSD and PW-OPSD runs (same run directories); its
    effects are computed from the four cells."""
    from pwopsd import tables

    out = tmp_path / "rf"
    pm.execute_notebook(
        str(NOTEBOOKS / "reduction_factorial.ipynb"),
        str(tmp_path / "out.ipynb"),
        parameters={
            "seed": 2,
            "out_dir": str(out),
            "max_problems": 2,
            "eval_seeds": 1,
            "train_steps": 1,
        },  # fmt: skip
        progress_bar=False,
        kernel_name="python3",
    )
    (written,) = out.glob("reduction_factorial.seed2.*.json")
    doc = json.loads(written.read_text())
    assert doc["provenance"]["seed"] == 2 and doc["provenance"]["profile"] == "toy"
    assert [r["run"] for r in doc["rows"]] == [
        "opsd", "uniform_per_sequence", "position_global_moderate", "pw_opsd_moderate"
    ]  # fmt: skip
    # one directory per distinct run (named with the train_steps override's hash): 4, not 6
    runs = sorted(p.parent.parent.name.rsplit("-", 1)[0] for p in (out / "runs").rglob("DONE.json"))
    assert runs == ["opsd", "position_global_moderate", "pw_opsd_moderate", "uniform_per_sequence"]
    table = tables.aggregate([doc])
    eff = tables.factorial_effects(table)
    cells = {tuple(r["factors"].values()): r["overall"]["avg"]["mean"] for r in table["rows"]}
    want = (cells[("position", "global")] + cells[("position", "per_sequence")]
            - cells[("uniform", "global")] - cells[("uniform", "per_sequence")]) / 2  # fmt: skip
    assert eff["position"]["mean"] == pytest.approx(want)
