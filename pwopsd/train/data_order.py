"""Which training prompts a step reads: a seeded permutation per epoch, read in order."""

from __future__ import annotations

import random
from functools import lru_cache


def step_rows(corpus: list[dict[str, str]], step: int, per_step: int, seed: int) -> list[int]:
    """Corpus indices of a step's prompts: a seeded permutation per epoch, read in order, so a
    step's prompts depend only on (seed, step) and a resumed run reads what it would have."""
    out = []
    for position in range(step * per_step, (step + 1) * per_step):
        epoch, i = divmod(position, len(corpus))
        out.append(_epoch_permutation(len(corpus), seed, epoch)[i])
    return out


@lru_cache(maxsize=64)
def _epoch_permutation(n: int, seed: int, epoch: int) -> tuple[int, ...]:
    order = list(range(n))
    random.Random(f"data-{seed}-{epoch}").shuffle(order)
    return tuple(order)
