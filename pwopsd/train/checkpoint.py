"""Checkpoints of a training run: written atomically, checksummed, verified before use.

``checkpoints/step-<n>/`` holds the adapter, ``trainer_state.pt`` (optimizer, scheduler, RNG
states, data position) and ``checksums.json`` (SHA-256 of every other file). A checkpoint
whose files do not match their checksums (a truncated adapter, a half-copied directory) is
named in a warning, moved aside to ``step-<n>.corrupt``, and the run resumes from the previous
good one; a finished run is verified the same way before it is reused.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from peft import set_peft_model_state_dict
from safetensors.torch import load_file

from pwopsd import jsonl

CHECKSUMS = "checksums.json"


def rng_state() -> dict[str, Any]:
    state = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": np.random.get_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if p.is_file() and p.name != CHECKSUMS)


def save_checkpoint(
    run_dir: Path,
    step: int,
    peft_model: Any,
    optimizer: Any,
    scheduler: Any,
    per_step: int,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``checkpoints/step-<step>/`` atomically (a temp dir renamed when complete).
    ``extra`` adds entries to ``trainer_state.pt`` (the EMA teacher's weights)."""
    final = run_dir / "checkpoints" / f"step-{step}"
    tmp = final.with_name(final.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    peft_model.save_pretrained(tmp / "adapter")
    torch.save(
        {
            "step": step,
            "data_position": step * per_step,
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "rng": rng_state(),
            **(extra or {}),
        },
        tmp / "trainer_state.pt",
    )
    sums = {str(p.relative_to(tmp)): _sha256(p) for p in _files(tmp)}
    (tmp / CHECKSUMS).write_text(json.dumps(sums, indent=1, sort_keys=True) + "\n")
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    return final


def checkpoint_problem(directory: Path) -> str | None:
    """Why ``directory`` is not a usable checkpoint, or None when every file checks out."""
    sums_path = directory / CHECKSUMS
    if not sums_path.is_file():
        return f"{CHECKSUMS} is missing (an unfinished or foreign checkpoint)"
    sums = json.loads(sums_path.read_text())
    for name, want in sums.items():
        path = directory / name
        if not path.is_file():
            return f"{name} is missing"
        if _sha256(path) != want:
            return f"{name} does not match its checksum (truncated or changed)"
    return None


def set_aside(directory: Path, problem: str) -> Path:
    """Move a corrupt checkpoint out of the way (kept for inspection), with a warning. Every
    process of a run checks its checkpoints; one that finds the move already done goes on."""
    target = directory.with_name(directory.name + ".corrupt")
    try:
        os.replace(directory, target)
    except FileNotFoundError:
        return target  # another process of this run set it aside first
    except OSError:  # an older .corrupt copy is in the way
        shutil.rmtree(target, ignore_errors=True)
        os.replace(directory, target)
    warnings.warn(f"checkpoint {directory} is corrupt ({problem}); moved to {target}", stacklevel=2)
    return target


def last_checkpoint(run_dir: Path) -> tuple[int, Path] | None:
    """(step, directory) of the newest verified checkpoint, or None. Newer corrupt ones are
    set aside on the way (:func:`set_aside`)."""
    found = []
    for d in (run_dir / "checkpoints").glob("step-*"):
        step = d.name.split("-", 1)[1]
        if d.is_dir() and step.isdigit():
            found.append((int(step), d))
    for step, d in sorted(found, reverse=True):
        problem = checkpoint_problem(d)
        if problem is None:
            return step, d
        set_aside(d, problem)
    return None


def load_checkpoint(
    directory: Path, peft_model: Any, optimizer: Any, scheduler: Any
) -> dict[str, Any]:
    """Restore adapter weights, optimizer, scheduler and RNG states from a checkpoint; returns
    the whole trainer state (its other entries, e.g. the EMA teacher, are the caller's)."""
    weights = load_file(str(directory / "adapter" / "adapter_model.safetensors"))
    set_peft_model_state_dict(peft_model, weights)
    state = torch.load(directory / "trainer_state.pt", weights_only=False)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    set_rng_state(state["rng"])
    return state


def keep_metrics_through(path: Path, step: int) -> None:
    """Keep the metric rows of steps up to the checkpoint we resume from (later ones are redone).

    :mod:`pwopsd.jsonl`'s rule: a torn last line is dropped, a bad row before it is an error
    naming the line; the file is rewritten atomically only when something goes.
    """
    jsonl.keep_rows(path, lambda row: row["step"] <= step)
