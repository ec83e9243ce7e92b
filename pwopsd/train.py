"""The OPSD / PW-OPSD training loop (PROTOCOL section 3). *Not implemented yet.*

Planned here: LoRA on q, k, v, o, gate, up and down (`pwopsd.config.TrainConfig`), one rollout
per prompt (`pwopsd.rollout`), and the method's loss from `pwopsd.losses` (OPSD, PW-OPSD,
EOPD, REOPOLD, the reduction factorial). AdamW with gradient-norm clipping. A checkpoint every
`save_every` steps; `eval_step` is the one evaluated. Runs are resumable from the last
checkpoint, and every checkpoint carries provenance.

This lands with the training issue; until then the notebooks evaluate only the base model.
"""
