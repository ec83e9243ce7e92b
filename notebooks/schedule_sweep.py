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
# # Schedule sweep: how much should late tokens count?
#
# Paper Table 3 and Figure 2: PW-OPSD under the Mild, Moderate, Sharp and Aggressive schedules
# (plus an optional custom schedule `w_min`, `c`, `s`), with OPSD as the reference row. Only
# Moderate's values are published; the other three are this project's choice (see
# `pwopsd.vocab.SCHEDULES`). Runs shared with the main table (OPSD, Moderate, Aggressive) are
# reused, not retrained. Writes `results/<profile>/schedule_sweep/schedule_sweep.seed<k>.json`.

# %% tags=["parameters"]
seed = 1
profile = "toy"
out_dir = ""
eval_seeds = 3
max_problems = None
train_steps = None
schedules = ["mild", "moderate", "sharp", "aggressive"]
w_min = None
c = None
s = None

# %%
# Validate every parameter before any compute (papermill only warns on unknown names).
from pwopsd.config import ScheduleSweepConfig

cfg = ScheduleSweepConfig.from_namespace(globals())
cfg

# %%
from pwopsd import sections

fig = sections.show_schedules(cfg)

# %%
result = sections.run_table_section(cfg)
sections.show_table(result)

# %%
from pwopsd import plots, tables

fig = plots.plot_rows(tables.aggregate([result]))
