"""A vLLM general plugin: the processes of an engine we built die with the process that built it.

Registered as the entry point ``vllm.general_plugins`` / ``pwopsd_die_with_parent``
(pyproject.toml), so vLLM imports this module in every process it starts. It is kept free
of heavy imports (no torch, transformers or peft) because each of those processes pays for
them at start-up.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

_PR_SET_PDEATHSIG = 1

OWNER_ENV = "PWOPSD_ENGINE_OWNER"
"""Set by :func:`pwopsd.vllm_build.build_vllm` to its process id; vLLM's child processes
inherit it."""


def _die_with_parent() -> None:
    """Ask the kernel to SIGKILL this process when its parent dies (Linux prctl)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: nothing to do
        return
    if os.getppid() == 1:  # the parent died before we got here
        os._exit(1)


def vllm_plugin() -> None:
    """A vLLM general plugin (entry point ``vllm.general_plugins``), run in every vLLM process.

    The CPU build starts its engine core (and that its workers) with ``spawn``. When the
    process that built the engine is killed with SIGKILL it cannot stop them, and an orphaned
    engine core kept spinning at ~85% of a core. In the processes our factory's engine starts
    (not the owner itself, nor engines built elsewhere), this asks the kernel to kill each one
    with its parent.
    """
    owner = os.environ.get(OWNER_ENV)
    if owner and owner != str(os.getpid()) and sys.platform.startswith("linux"):
        _die_with_parent()
