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
# benchmarks over several evaluation seeds; Avg@12, Pass@12 and Maj@12 are reported as mean and
# Bessel sd over seeds. One vLLM engine serves the training rollouts and every evaluation.
# Finished training runs (results/<profile>/runs/) are reused. Run with papermill, e.g.
# `papermill notebooks/main_table.ipynb out.ipynb -p seed 1`.

# %% tags=["parameters"]
seed = 1
profile = "toy"
out_dir = ""
methods = ["base", "opsd", "eopd", "reopold", "pw_opsd"]
schedules = ["moderate", "aggressive"]
eval_seeds = 3
max_problems = None
train_steps = None

# %%
# Validate every parameter before any compute (papermill only warns on unknown names).
from pwopsd.config import MainTableConfig

cfg = MainTableConfig.from_namespace(globals())
cfg

# %%
from pwopsd import sections

result = sections.run_main_table(cfg)

# %%
sections.show_main_table(result)
