"""Tables and figures for the book's Performance and Reproduce pages.

Benchmarks (``results/bench/*.json``) become ratios against their reference, readable
settings tables and one-line provenance; notebook results files become a table of commands,
machines and wall times; the planned cost at paper scale is computed with every step of the
arithmetic shown. One module per job:

* :mod:`~pwopsd.perf.fmt`: numbers and settings as text;
* :mod:`~pwopsd.perf.runinfo`: machine, commit, date and wall time of a results file;
* :mod:`~pwopsd.perf.loss_report`, :mod:`~pwopsd.perf.rollout_report`,
  :mod:`~pwopsd.perf.grading_report`, :mod:`~pwopsd.perf.startup_report`: one benchmark each;
* :mod:`~pwopsd.perf.walltimes`: the notebooks' wall times;
* :mod:`~pwopsd.perf.paper_cost`: GPU-hours at paper scale.

The book uses the names re-exported here (``from pwopsd import perf; perf.loss_table(...)``).
"""

from pwopsd.perf.fmt import (
    flatten_settings,
    fmt_percent,
    fmt_ratio,
    fmt_setting,
    fmt_sig,
    setting_label,
    settings_frame,
)
from pwopsd.perf.grading_report import grading_details, grading_settings, grading_table
from pwopsd.perf.loss_report import (
    IMPL_LABELS,
    LOSS_SETTING_LABELS,
    TARGET_LABELS,
    loss_ratios,
    loss_table,
    loss_targets_table,
    memory_above_inputs,
    plot_loss_ratios,
)
from pwopsd.perf.paper_cost import (
    COST_LABELS,
    OUR_ESTIMATES,
    PAPER_SECTION_ROWS,
    PAPER_SECTIONS,
    PROTOCOL_PAPER,
    PROTOCOL_SOURCES,
    eval_tokens_at_budget,
    eval_tokens_per_checkpoint,
    format_cost,
    new_rows,
    paper_cost_summary,
    paper_diagnostic_cost,
    paper_eval_cost,
    paper_training_cost,
    section_rows,
)
from pwopsd.perf.rollout_report import (
    ROLLOUT_TARGET_RATIO,
    adapter_sentence,
    adapter_table,
    plot_rollout,
    rollout_frame,
    rollout_settings,
    rollout_table,
    rollout_verdict,
)
from pwopsd.perf.runinfo import (
    commit_text,
    date_text,
    load_average_text,
    machine_text,
    provenance_line,
)
from pwopsd.perf.startup_report import startup_table
from pwopsd.perf.walltimes import (
    SECTIONS,
    TABLE_SECTIONS,
    machines_sentence,
    notebook_result_files,
    notebook_runs,
    notebook_runs_table,
    wall_time_per_seed,
)

__all__ = [
    "COST_LABELS",
    "IMPL_LABELS",
    "LOSS_SETTING_LABELS",
    "OUR_ESTIMATES",
    "PAPER_SECTIONS",
    "PAPER_SECTION_ROWS",
    "PROTOCOL_PAPER",
    "PROTOCOL_SOURCES",
    "ROLLOUT_TARGET_RATIO",
    "SECTIONS",
    "TABLE_SECTIONS",
    "TARGET_LABELS",
    "adapter_sentence",
    "adapter_table",
    "commit_text",
    "date_text",
    "eval_tokens_at_budget",
    "eval_tokens_per_checkpoint",
    "flatten_settings",
    "fmt_percent",
    "fmt_ratio",
    "fmt_setting",
    "fmt_sig",
    "format_cost",
    "grading_details",
    "grading_settings",
    "grading_table",
    "load_average_text",
    "loss_ratios",
    "loss_table",
    "loss_targets_table",
    "machine_text",
    "machines_sentence",
    "memory_above_inputs",
    "new_rows",
    "notebook_result_files",
    "notebook_runs",
    "notebook_runs_table",
    "paper_cost_summary",
    "paper_diagnostic_cost",
    "paper_eval_cost",
    "paper_training_cost",
    "plot_loss_ratios",
    "plot_rollout",
    "provenance_line",
    "rollout_frame",
    "rollout_settings",
    "rollout_table",
    "rollout_verdict",
    "section_rows",
    "setting_label",
    "settings_frame",
    "startup_table",
    "wall_time_per_seed",
]
