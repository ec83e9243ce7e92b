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
# # Main table: OPSD, EOPD, REOPOLD and PW-OPSD on four benchmarks
#
# Paper Table 1. Each method trains the main model (Qwen3 family) from the same base and is
# evaluated with the protocol's sampling (n = 12, temperature 1.0, top-p 0.95) on four
# benchmarks over several evaluation seeds. One vLLM engine serves the training rollouts and
# every evaluation; finished training runs and evaluations (results/<profile>/runs/) are reused.
# Each run writes `results/<profile>/main_table/main_table.seed<k>.json`; the book aggregates
# the seeds present. Run with papermill, e.g.
# `papermill notebooks/main_table.ipynb out.ipynb -p seed 1`.

# %% tags=["parameters"]
seed = 1
profile = "toy"
out_dir = ""
eval_seeds = 3
max_problems = None
train_steps = None
methods = ["base", "opsd", "eopd", "reopold", "pw_opsd"]
schedules = ["moderate", "aggressive"]

# %%
# Validate every parameter before any compute (papermill only warns on unknown names).
from pwopsd.config import MainTableConfig

cfg = MainTableConfig.from_namespace(globals())
cfg

# %%
from pwopsd import sections

result = sections.run_table_section(cfg)

# %% [markdown]
# Avg@12 (%), mean ± sd over this run's evaluation seeds:

# %%
sections.show_table(result)

# %%
from pwopsd import plots, tables

fig = plots.plot_rows(tables.aggregate([result]))
