# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (pwopsd)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Branch-viability diagnostic: when are teacher tokens reliable?
#
# Paper Sec. 3.2 and Appendix A. Along a student-template greedy spine, the privileged teacher's
# high-entropy positions are split into *benign diversity* (several forced children stay viable)
# and *real uncertainty* (no child is viable), and each uncertainty score is judged by how well it
# separates the two (AUROC with a cluster bootstrap over problems).

# %% tags=["parameters"]
seed = 1
profile = "toy"
out_dir = ""
max_problems = 24
candidates_per_problem = 4
children_per_candidate = 3
rollouts_per_child = 6
bootstrap = 1000

# %%
# Validate every parameter before any compute (papermill only warns on unknown names).
from pwopsd.config import DiagnosticConfig

cfg = DiagnosticConfig.from_namespace(globals())
cfg

# %%
from pwopsd import sections

result = sections.run_section(cfg)
