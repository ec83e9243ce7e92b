"""The branch-viability diagnostic (paper Sec. 3.2, Appendix A; PROTOCOL section 5). *Not implemented yet.*

Planned here: steps A to G of PROTOCOL section 5.
- A: a student-template greedy spine.
- B: a teacher forward along the spine, with the final answer in the prompt, giving top-k
  truncated entropies.
- C: candidate positions, with their forced children.
- D: MC-dropout scores.
- E and F: student continuations from each child, and the children's viability.
- G: within-problem residualised AUROC and AUPRC, with a cluster bootstrap.

This lands with the diagnostic issue; `notebooks/diagnostic.ipynb` writes a pending status file
until then.
"""
