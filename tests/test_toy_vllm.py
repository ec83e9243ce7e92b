"""vLLM loads every shipped toy checkpoint and agrees with HF on logprobs (issue 3).

One subprocess runs the check for all three families (one vLLM engine per family, each in
its own child process): vLLM samples a few completions and reports the sampled tokens'
logprobs; the HF model's log-softmax on the same sequence must match to 1e-3.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from pwopsd.vocab import FAMILIES


@pytest.mark.vllm
@pytest.mark.slow
def test_vllm_logprobs_match_hf_for_every_family() -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}  # the engine factory sizes the KV cache
    proc = subprocess.run(
        [sys.executable, "-m", "pwopsd.toy", "calibrate", "--logprobs-only"],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    gaps = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(gaps) == set(FAMILIES)
    for family, gap in gaps.items():
        assert 0.0 <= gap < 1e-3, f"{family}: vLLM vs HF logprob gap {gap}"
