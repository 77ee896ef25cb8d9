"""``ordinalclip demo``: compare ordinal regressors on real photos with real pretrained towers, offline.

:mod:`~ordinalclip.app.demo.common` (options, text model, CPU schedule), :mod:`~ordinalclip.app.demo.methods`
(the methods and run configs), :mod:`~ordinalclip.app.demo.features` (image features),
:mod:`~ordinalclip.app.demo.run` (data, runs, results) and :mod:`~ordinalclip.app.demo.page` (table, CSV,
page). The text task is :mod:`ordinalclip.app.demo_text`.
"""

from __future__ import annotations

from ordinalclip.app.demo.common import TEXT_MODEL, DemoOptions, cpu_schedule
from ordinalclip.app.demo.features import extract_features
from ordinalclip.app.demo.methods import base_config, method_overrides, run_config, run_settings
from ordinalclip.app.demo.page import RunResult, summary_table, write_report
from ordinalclip.app.demo.run import TASKS, DemoTask, TaskPlan, run_demo

__all__ = [
    "TASKS",
    "TEXT_MODEL",
    "DemoOptions",
    "DemoTask",
    "RunResult",
    "TaskPlan",
    "base_config",
    "cpu_schedule",
    "extract_features",
    "method_overrides",
    "run_config",
    "run_demo",
    "run_settings",
    "summary_table",
    "write_report",
]
