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
# # Reduction factorial (Appendix L)
#
# {uniform, position} token weight x {global token mean, per-sequence mean} reduction.
# Uniform/global is OPSD; position/per-sequence is PW-OPSD. The two off-diagonal cells say
# whether the gain comes from the weight, the reduction, or both.

# %% tags=["parameters"]
seed = 1
profile = "toy"
out_dir = ""
weightings = ["uniform", "position"]
reductions = ["global", "per_sequence"]
schedule = "moderate"

# %%
# Validate every parameter before any compute (papermill only warns on unknown names).
from pwopsd.config import ReductionFactorialConfig

cfg = ReductionFactorialConfig.from_namespace(globals())
cfg

# %%
from pwopsd import sections

result = sections.run_section(cfg)
