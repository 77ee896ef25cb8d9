"""``ordinalclip report FOLDER``: the page of a run folder (:mod:`ordinalclip.app.runpage`) or of a sweep
folder (:mod:`ordinalclip.app.sweeppage`), whichever the folder is.

The plots need matplotlib, an optional dependency (``pip install 'ordinalclip[report]'``); without it
:func:`make_report` raises :class:`~ordinalclip.errors.ReportDependencyError` naming the extra (a sweep page
written by ``ordinalclip sweep`` is written without plots instead).
"""

from __future__ import annotations

import os
from pathlib import Path

from ordinalclip.app.plots import plot_few_shot, pyplot
from ordinalclip.app.runpage import ImageResolver, make_run_page
from ordinalclip.app.sweeppage import is_sweep_dir, make_sweep_page
from ordinalclip.errors import ConfigError

RUN_MARKS = ("config.yaml", "metrics.json", "env.json")  # a run folder holds at least one of these

__all__ = ["make_report", "plot_few_shot"]  # plot_few_shot: where the benchmarks found it


def make_report(
    run_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str] | None = None,
    images: ImageResolver | None = None,
) -> Path:
    """Write the page of a run folder (``RUN_DIR/report/index.html`` + ``summary.md``) or of a sweep folder
    (``SWEEP_DIR/index.html``; see :func:`~ordinalclip.app.sweeppage.make_sweep_page`). Returns the page's
    path.

    ``images`` maps a prediction's ``path`` to an image file (default: the path itself, when it is one).
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run folder not found: {run_dir}")
    sweep = is_sweep_dir(run_dir)
    if not sweep and not any((run_dir / name).is_file() for name in RUN_MARKS):
        # a page of nothing, written into whatever folder was named (/tmp, a home folder), helps no one
        raise ConfigError(
            f"{run_dir} is neither a run folder (no {', '.join(RUN_MARKS)}) nor a sweep folder (no "
            "*/cell.json): give a folder written by 'ordinalclip train' or 'ordinalclip sweep'"
        )
    pyplot()  # fail before writing anything when matplotlib is missing
    if sweep:
        return make_sweep_page(run_dir)
    return make_run_page(run_dir, out_dir, images)
