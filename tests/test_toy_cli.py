"""The toy world's command line, ``python -m pwopsd.toy <command>`` (issue 3)."""

from __future__ import annotations

import dataclasses
import shlex

import pytest

from pwopsd.config import CHECKPOINTS_DIR
from pwopsd.toy import pretrain, recipe, regenerate_command
from pwopsd.toy.__main__ import COMMANDS, build_parser, main
from pwopsd.toy.calibrate import worker_command
from pwopsd.toy.examples import Mixture


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_command_has_help(command, capsys) -> None:
    with pytest.raises(SystemExit) as stop:
        main([command, "--help"])
    assert stop.value.code == 0
    assert f"python -m pwopsd.toy {command}" in capsys.readouterr().out


def test_a_command_is_required(capsys) -> None:
    with pytest.raises(SystemExit) as stop:
        main([])
    assert stop.value.code == 2
    assert "COMMAND" in capsys.readouterr().err


def test_every_mixture_field_is_a_pretrain_flag() -> None:
    args = build_parser().parse_args(
        ["pretrain", "--family", "llama", "--answer-redo-share", "0.2"]
    )
    assert args.answer_redo_share == 0.2 and args.family == "llama"
    assert all(hasattr(args, name) for name in Mixture.__dataclass_fields__)
    assert pretrain.Mixture is Mixture  # re-exported beside PretrainConfig, defined once


@pytest.mark.parametrize("path", [CHECKPOINTS_DIR / "toy-olmo3", "/tmp/elsewhere/toy-llama"])
def test_the_regenerate_command_parses(path) -> None:
    """The fix a CheckpointError prints is a command the CLI accepts."""
    words = shlex.split(regenerate_command(path))
    assert words[:4] == ["python", "-m", "pwopsd.toy", "pretrain"]
    args = build_parser().parse_args(words[3:])
    assert f"toy-{args.family}" == str(path).rsplit("/", 1)[-1]


def test_the_calibration_worker_command_parses(tmp_path) -> None:
    """calibrate.calibrate starts each family's child with flags the CLI accepts."""
    cmd = worker_command("olmo3", tmp_path / "e.json", "toy_math500", 4, 2, True, tmp_path)
    assert cmd[1:4] == ["-m", "pwopsd.toy", "calibrate"]
    args = build_parser().parse_args(cmd[3:])
    assert (args.worker, args.worker_out, args.set) == ("olmo3", tmp_path / "e.json", "toy_math500")
    assert (args.n, args.max_problems, args.logprobs_only, args.checkpoints) == (
        4,
        2,
        True,
        tmp_path,
    )


def test_recipe_refuses_a_missing_validation_set(tmp_path, monkeypatch, capsys) -> None:
    missing = dataclasses.replace(recipe.VAL_SET, source=str(tmp_path / "toy_val.jsonl"))
    monkeypatch.setattr(recipe, "VAL_SET", missing)
    assert main(["recipe", "--out", str(tmp_path / "tuning.json")]) == 2
    assert "toy_val.jsonl is missing" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())
