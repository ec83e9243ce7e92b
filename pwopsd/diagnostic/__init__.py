"""The branch-viability diagnostic (paper Sec. 3.2, Appendix A; PROTOCOL section 5).

* :mod:`pwopsd.diagnostic.stats`: residualised AUROC / AUPRC and the cluster bootstrap
  (phase G), pure numpy;
* :mod:`pwopsd.diagnostic.phases`: the driver of phases A-G (``run``, ``plan_summary``, the
  results files' names), each phase resumable on disk;
* :mod:`pwopsd.diagnostic.problems`: the pools, the seeded draw, problem keys, token budgets;
* :mod:`pwopsd.diagnostic.context`: the run context (lazy engine and model), token-id prompts;
* :mod:`pwopsd.diagnostic.sample_phases`: phases A (spines) and E (forced continuations);
* :mod:`pwopsd.diagnostic.teacher_phases`: phases B (teacher pass), C (candidates), D (MC dropout);
* :mod:`pwopsd.diagnostic.teacher`: token filters, teacher statistics, candidates, MC dropout;
* :mod:`pwopsd.diagnostic.report`: viability labels (F), Table 1 and Figure 1 data (G);
* :mod:`pwopsd.diagnostic.store`: the phase files (through :mod:`pwopsd.jsonl`), the scratch
  directory's name and the plan;
* :mod:`pwopsd.diagnostic.figures`: Table 1 and Figure 1 drawn from the results files.

``python -m pwopsd.diagnostic --profile toy`` runs it; ``--dry-run`` prints the plan.
"""

from pwopsd.diagnostic.stats import (
    BootstrapCI,
    auprc,
    auroc,
    cluster_bootstrap_ci,
    residual_auprc,
    residual_auroc,
)

__all__ = [
    "BootstrapCI",
    "auprc",
    "auroc",
    "cluster_bootstrap_ci",
    "residual_auprc",
    "residual_auroc",
]
