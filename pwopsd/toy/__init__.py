"""The toy world (issue 3): a synthetic reasoning task, its tokenizer and chat templates,
three tiny model families, their pretraining, and the calibration of the shipped checkpoints.

Command line: ``python -m pwopsd.toy {data,pretrain,calibrate,teacher-signal,recipe}``
(:mod:`pwopsd.toy.__main__`). Call :func:`check_checkpoint` before loading a toy model.
"""

from pwopsd.toy.checkpoint import CheckpointError, check_checkpoint, regenerate_command

__all__ = ["CheckpointError", "check_checkpoint", "regenerate_command"]
