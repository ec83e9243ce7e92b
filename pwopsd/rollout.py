"""On-policy rollouts for OPSD training (PROTOCOL section 1 and 3). *Not implemented yet.*

Planned here: the current student (base + LoRA) samples one completion per prompt with vLLM
(`pwopsd.sampling`), using rollout sampling (temperature 1.1, top-p 0.95, top-k 20,
1024 tokens at paper scale). Each completion's token ids then go into two forward passes. The
teacher template with the LoRA disabled runs without grad; the student template runs with grad.
Logits are aligned on completion positions only. After each optimizer step the LoRA is merged,
the weights are pushed into vLLM, and the LoRA is unmerged.

This lands with the training issue; `pwopsd.sections` reports the sections that need it as
pending until then.
"""
