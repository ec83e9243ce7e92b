"""pwopsd: Position-Weighted On-Policy Self-Distillation, reproducible at toy and paper scale.

Modules, one job each: ``config`` (profiles, notebook parameters), ``prompts`` (templates),
``data`` (corpora and benchmarks), ``losses`` (OPSD, PW-OPSD, baselines), ``engine``
(vLLM / HF generation; ``vllm_build`` starts vLLM), ``sampling`` (requests, seeds),
``rollout``, ``train``, ``evaluate`` (grading, metrics, runs), ``diagnostic`` (branch
viability), ``plots``, ``provenance`` (results metadata), ``toy`` (the laptop-scale world),
``bench`` (speed and memory benchmarks).
"""

__version__ = "0.1.0"
