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
# # Beyond the paper: four variants, trained and compared like the paper's rows
#
# Four questions no released OPSD code answers, each a method or a setting beside OPSD and
# PW-OPSD Moderate, trained from the same base on the main family and evaluated on the four
# toy sets:
#
# 1. **PW-Mix** (the paper's future work): per token, the clipped forward KL weighted by
#    m(u) plus the full-distribution reverse KL weighted by 1 - m(u), m with the PW-OPSD
#    schedule's shape, so the forward KL rules late and the reverse KL early. One row per
#    mixing shape (`mix_schedules`).
# 2. **A schedule fitted to the diagnostic**: (w_min, c, s) fitted to the reliability
#    1 - P(real uncertainty | u) the branch-viability diagnostic measured, saved beside its
#    results, and PW-OPSD trained with it.
# 3. **The teacher-free control** (arXiv 2608.31046 as we read it): the same loop with no
#    teacher, a fixed negative advantage on the student's low-probability sampled tokens. Its
#    gap to OPSD says how much of OPSD's gain the privileged teacher carries.
# 4. **Teacher variants**: PW-OPSD Moderate with the live student (adapter on) or an EMA of
#    the student's adapter as the teacher, beside the paper's frozen base. Each run logs the
#    teacher pass's seconds per step.
#
# Run with papermill, e.g. `papermill notebooks/beyond.ipynb out.ipynb -p seed 1`; each seed
# adds itself to the book's tables.

# %% tags=["parameters"]
seed = 1
profile = "toy"
out_dir = ""
eval_seeds = 3
max_problems = None
train_steps = None
mix_schedules = ["moderate", "aggressive"]
fitted_schedule = True
teacher_free = True
teachers = ["student", "ema"]
teacher_ema_decay = 0.99

# %%
# Validate every parameter before any compute (papermill only warns on unknown names).
from pwopsd.config import BeyondConfig

cfg = BeyondConfig.from_namespace(globals())
cfg

# %% [markdown]
# The schedule fitted to the diagnostic's committed results, against the four named ones:

# %%
from IPython.display import Markdown, display

from pwopsd import beyond
from pwopsd.diagnostic import schedule_fit

fit = beyond.fit_schedule(cfg) if cfg.fitted_schedule else None
if fit is not None:
    display(Markdown(beyond.fitted_sentence(fit)))
    schedule_fit.plot_fitted_schedule(fit)

# %%
result = beyond.run_beyond(cfg)

# %% [markdown]
# Avg@12 (%), mean ± sd over this run's evaluation seeds:

# %%
from pwopsd import sections

sections.show_table(result)

# %% [markdown]
# Each variant against its reference (this seed only: no interval yet; the book pools the
# seeds), and the teacher pass's cost per step:

# %%
from pwopsd import tables

table = tables.aggregate([result])
display(beyond.gap_frame(table))
beyond.teacher_cost_frame([result])
