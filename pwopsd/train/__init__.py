"""The on-policy self-distillation loop (PROTOCOL sections 1-3): OPSD, PW-OPSD and baselines.

Per optimizer step (``prompts_per_step`` prompts, one rollout each):

1. the current student (base + LoRA) samples one completion per prompt (:mod:`pwopsd.rollout`);
2. teacher pass: teacher template (reference solution, thinking on) + completion, adapter
   disabled, no grad; student pass: student template + completion, with grad; logits gathered
   on completion positions;
3. the method's loss (:func:`pwopsd.losses.method_loss`, whose clipped-FKL path is the
   chunked memory-efficient kernel), gradient accumulation over micro-batches, grad-norm clip,
   AdamW, learning-rate schedule.

**Weight sync.** After every optimizer step the rollout engine samples from the new weights.
The adapter is saved after each step to a new directory and the engine serves it as
``EngineConfig.adapter_mode`` says (:class:`pwopsd.engine.VLLMEngine`). The default,
"merge", is the paper's sync: base + adapter merged (peft) and loaded into the running engine
with vLLM's in-place ``reload_weights``, which resolves the names of LoRA-wrapped layers (a
plain ``load_weights`` into a LoRA-enabled CPU engine failed in an earlier try, which is why
this loop first served a ``LoRARequest`` per update). The base is never unmerged: serving the
base again reloads its checkpoint, so no round-off accumulates. Merged weights decode 4.1x
faster than a LoRA request on the toy CPU model (8,466 vs 2,055 tokens/s at batch 64:
``python -m pwopsd.bench rollout``, ``results/bench/rollout.json``) and draw the same
samples; "lora" (a new ``LoRARequest`` per update) remains for engines that must keep their
base weights. The ``sync`` tests check, in both modes, that the engine's
log-probabilities after an update match the HF student's. The HF backend samples from the
live peft model, so it is in sync by construction.

**Modules.** :mod:`~pwopsd.train.spec` (what to train: :class:`RunSpec`, the plan, pre-load
checks), :mod:`~pwopsd.train.data_order`, :mod:`~pwopsd.train.step` (one micro-batch and the
step's statistics), :mod:`~pwopsd.train.teacher` (the teacher pass: base, live student or EMA
teacher, ``TrainConfig.teacher``), :mod:`~pwopsd.train.checkpoint` (atomic, checksummed checkpoints; the
metrics repair), :mod:`~pwopsd.train.loop` (the loop, one function per part of a step) and
``__main__`` (the CLI).

**Runs** live in ``results/<profile>/runs/<model>/<method>/seed<k>/``: ``config.json``,
``metrics.jsonl`` (one row per step), ``checkpoints/step-<n>/`` (adapter, optimizer,
scheduler, RNG states, data position, checksums; written atomically) and ``DONE.json`` once finished. A
finished run is reused; a killed run restarts from its last checkpoint and, on CPU, ends with
the same adapter bit for bit (rollout seeds depend only on seed, step and prompt index).

**Processes.** ``python -m pwopsd.train`` runs one process; the same module runs under
``torchrun --nproc_per_node N`` or ``accelerate launch`` (``configs/accelerate/`` holds the
paper's 4x H100 DeepSpeed ZeRO-2 config). Micro-batch ``k`` of a step belongs to process
``k mod N``: one process and N processes see the same micro-batches.

CLI: ``python -m pwopsd.train --method pw_opsd --schedule moderate --seed 1 [--profile toy]
[--family qwen3] [--dry-run]``.
"""

from pwopsd.train.checkpoint import last_checkpoint, save_checkpoint
from pwopsd.train.data_order import step_rows
from pwopsd.train.loop import RunResult, train
from pwopsd.train.spec import RunSpec, check_target_modules, plan, world
from pwopsd.train.step import TrainingError, clip_statistics

__all__ = [
    "RunResult",
    "RunSpec",
    "TrainingError",
    "check_target_modules",
    "clip_statistics",
    "last_checkpoint",
    "plan",
    "save_checkpoint",
    "step_rows",
    "train",
    "world",
]
