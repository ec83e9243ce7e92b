"""Profiles (toy / paper) and the per-notebook configs that papermill parameters map onto.

* :mod:`pwopsd.config.settings`: paths, :class:`ConfigError`, the settings dataclasses
  (:class:`TrainConfig`, :class:`SamplingConfig`, :class:`EngineConfig`, :class:`Profile`) and
  the shared checks (schedules, writable directories);
* :mod:`pwopsd.config.profiles`: the "toy" and "paper" profiles, :func:`get_profile`;
* :mod:`pwopsd.config.notebooks`: one config dataclass per notebook.

Names (families, methods, schedules, backends) live in :mod:`pwopsd.vocab`, not here.
"""

from pwopsd.config.notebooks import (
    DIAGNOSTIC_POOLS,
    NOTEBOOK_CONFIGS,
    POSITION_ORIENTATIONS,
    BeyondConfig,
    CrossModelConfig,
    DiagnosticConfig,
    MainTableConfig,
    NotebookConfig,
    PositionPremiseConfig,
    ReductionFactorialConfig,
    ScheduleSweepConfig,
    TableSectionConfig,
)
from pwopsd.config.profiles import PROFILES, SHORTCUT_SHARES, dial_profile_name, get_profile
from pwopsd.config.settings import (
    ADAPTER_MODES,
    CHECKPOINTS_DIR,
    REPO_ROOT,
    RESULTS_DIR,
    TOY_DATA_DIR,
    BenchmarkSpec,
    ConfigError,
    EngineConfig,
    Profile,
    SamplingConfig,
    TrainConfig,
    check_schedule,
    check_writable_dir,
    resolve_schedule,
)

__all__ = [
    "ADAPTER_MODES",
    "CHECKPOINTS_DIR",
    "DIAGNOSTIC_POOLS",
    "NOTEBOOK_CONFIGS",
    "POSITION_ORIENTATIONS",
    "PROFILES",
    "REPO_ROOT",
    "RESULTS_DIR",
    "SHORTCUT_SHARES",
    "TOY_DATA_DIR",
    "BenchmarkSpec",
    "BeyondConfig",
    "ConfigError",
    "CrossModelConfig",
    "DiagnosticConfig",
    "EngineConfig",
    "MainTableConfig",
    "NotebookConfig",
    "PositionPremiseConfig",
    "Profile",
    "ReductionFactorialConfig",
    "SamplingConfig",
    "ScheduleSweepConfig",
    "TableSectionConfig",
    "TrainConfig",
    "check_schedule",
    "check_writable_dir",
    "dial_profile_name",
    "get_profile",
    "resolve_schedule",
]
