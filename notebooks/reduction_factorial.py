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
# # Reduction factorial: is it the weights or the per-sequence mean?
#
# Paper Appendix L (Table 6): {uniform, position} token weight x {global token mean,
# per-sequence mean}. Uniform/global is OPSD and position/per-sequence is PW-OPSD, so those two
# cells reuse the main table's runs; the other two train here. The main effects and the
# interaction are computed from the four cells. Writes
# `results/<profile>/reduction_factorial/reduction_factorial.seed<k>.json`.

# %% tags=["parameters"]
seed = 1
profile = "toy"
out_dir = ""
eval_seeds = 3
max_problems = None
train_steps = None
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

result = sections.run_table_section(cfg)
sections.show_table(result)

# %%
from pwopsd import plots, tables

table = tables.aggregate([result])
print(tables.factorial_effects(table))
fig = plots.plot_factorial(table)
