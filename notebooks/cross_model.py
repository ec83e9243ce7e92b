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
# # Cross-model: OPSD vs PW-OPSD Moderate on three model families
#
# Paper Table 4: the Moderate schedule, held fixed, on Qwen3, a DeepSeek-R1-Distill Llama and an
# Olmo-3 Think model (toy stand-ins of the same architectures in the toy profile), each beside
# its untrained base. Each family gets its own engine; the Qwen3 runs are shared with the main
# table. Writes `results/<profile>/cross_model/cross_model.seed<k>.json`.

# %% tags=["parameters"]
seed = 1
profile = "toy"
out_dir = ""
eval_seeds = 3
max_problems = None
train_steps = None
families = ["qwen3", "llama", "olmo3"]
methods = ["base", "opsd", "pw_opsd"]
schedule = "moderate"

# %%
# Validate every parameter before any compute (papermill only warns on unknown names).
from pwopsd.config import CrossModelConfig

cfg = CrossModelConfig.from_namespace(globals())
cfg

# %%
from pwopsd import sections

result = sections.run_table_section(cfg)
sections.show_table(result)

# %%
from pwopsd import plots, tables

fig = plots.plot_rows(tables.aggregate([result]), group_by_family=True)
