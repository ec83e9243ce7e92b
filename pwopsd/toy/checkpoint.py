"""Check a shipped toy checkpoint before loading it, with a message that says how to fix it.

``from_pretrained`` on a missing or truncated directory fails deep inside transformers or
vLLM with an error that names neither the path nor the cure; :func:`check_checkpoint`
fails first, naming both (issue 3, "Numbers and checks": bad input).
"""

from __future__ import annotations

import json
from pathlib import Path

from safetensors import safe_open

from pwopsd.config import CHECKPOINTS_DIR

REQUIRED_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")


class CheckpointError(FileNotFoundError):
    """A toy checkpoint is missing or corrupt; the message names the path and the fix."""


def regenerate_command(path: str | Path) -> str:
    """The shell command that rebuilds the checkpoint at ``path``."""
    path = Path(path)
    name = path.name
    if name.startswith("toy-"):
        family = name[len("toy-") :]
        if path.resolve().parent == CHECKPOINTS_DIR.resolve():
            return f"python -m pwopsd.toy pretrain --family {family}"
        return f"python -m pwopsd.toy pretrain --family {family} --out {path.parent}"
    return "python -m pwopsd.toy pretrain --family all"


def check_checkpoint(path: str | Path) -> Path:
    """Raise :class:`CheckpointError` unless ``path`` holds a loadable toy checkpoint.

    Checks the files exist, the JSON files parse, and the safetensors header parses and
    lists tensors. Returns the path. Cheap: reads headers only.
    """
    path = Path(path)
    fix = regenerate_command(path)

    def fail(why: str) -> CheckpointError:
        return CheckpointError(f"toy checkpoint {path} {why}; regenerate it with: {fix}")

    if not path.is_dir():
        raise fail("does not exist (or is not a directory)")
    for name in REQUIRED_FILES:
        if not (path / name).is_file():
            raise fail(f"lacks {name}")
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        try:
            json.loads((path / name).read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise fail(f"has a corrupt {name} ({err})") from err
    try:
        with safe_open(str(path / "model.safetensors"), framework="numpy") as f:
            if not list(f.keys()):
                raise fail("has a model.safetensors with no tensors")
    except CheckpointError:
        raise
    except Exception as err:  # safetensors raises its own error types for bad headers
        raise fail(f"has a corrupt model.safetensors ({type(err).__name__}: {err})") from err
    return path
