"""The text task's section of ``ordinalclip demo``: which runs it makes, and its table, intro and curves on
the demo's page. The task itself (data, run configs, runs, summaries) is :mod:`ordinalclip.app.demo_text`,
shared with ``benchmarks/language_prior.py``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ordinalclip.app.demo.common import DemoOptions
from ordinalclip.app.demo_text import (
    LOGISTIC_REGRESSION,
    NAMED,
    RANDOM,
    ZERO_SHOT,
    TextTaskOptions,
    few_shot_curves,
    gains_vs,
    run_text_task,
    summarize_text,
    text_table,
)


def demo_text_options(demo: DemoOptions) -> TextTaskOptions:
    """The text task's share of ``ordinalclip demo`` (a :class:`~ordinalclip.app.demo.DemoOptions`): the
    prior's story in about two minutes: zero-shot, named vs random base ranks and the logistic-regression
    anchor at 1 and 4 shots (``--quick``: one seed, 1 shot). The whole-training-split rows (592 steps a run)
    are left to ``benchmarks/language_prior.py``: they would double the demo's time."""
    quick = demo.quick
    return TextTaskOptions(
        out=Path(demo.out) / "text",
        seeds=(demo.seeds[0],) if quick else tuple(demo.seeds),
        shots=(1,) if quick else (1, 4),
        full=False,
        methods=(ZERO_SHOT, NAMED, RANDOM, LOGISTIC_REGRESSION),
        jobs=demo.jobs,
        progress=demo.progress,
    )


@dataclass
class TextSection:
    """The text task's part of the demo: its Markdown table (printed) and its report sections."""

    table_md: str
    intro: str
    plot: str | None  # few-shot curves, relative to the report folder

    def add_to(self, page: Any) -> None:
        """Append the text task to a :class:`~ordinalclip.app.report.Page`."""
        import html

        page.heading("Text task: word valence (where language priors help)")
        page.text(self.intro)
        page.raw(f"<pre>{html.escape(self.table_md)}</pre>", self.table_md)
        if self.plot:
            page.images([(self.plot, "text task: test MAE (expectation) against words per rank")])


def demo_section(opts: TextTaskOptions, report_dir: Path) -> TextSection:
    """Run the text task for ``ordinalclip demo``; its table, intro and few-shot curves (written into
    ``report_dir``)."""
    import time

    from ordinalclip.app.plots import plot_few_shot

    t0 = time.time()
    results, ds = run_text_task(opts)
    summary = summarize_text(results)
    gains = gains_vs(summary)
    table = text_table(summary)
    curves = few_shot_curves(results)
    plot = None
    if curves:
        plot = "few_shot_text.png"
        plot_few_shot(curves, Path(report_dir) / plot, metric="test MAE (expectation)")
    gain_text = ", ".join(
        f"{k.removeprefix('gain_vs_lr_')}: {v:+.0%}" for k, v in gains.items() if v is not None
    )
    intro = (
        f"Word valence on the AFINN lexicon (human ratings -5..+5, {ds.num_ranks} ranks): "
        f"{ds.counts['train']} train / {ds.counts['val']} val / {ds.counts['test']} test words, "
        "split by word. Features: all-MiniLM-L6-v2 sentence embeddings of the words, kept as they are (the "
        "features tower is the identity: they already live in the text tower's space); text tower: the same "
        "all-MiniLM-L6-v2 (frozen). MAE reduction of OrdinalCLIP with named base ranks against logistic "
        f"regression (scikit-learn, same samples): {gain_text}. Test MAE of the best-on-val checkpoint, "
        "mean ± "
        f"std over seeds {list(opts.seeds)}. Took {time.time() - t0:.0f} s."
    )
    return TextSection("Text task (AFINN word valence, 11 ranks):\n\n" + table, intro, plot)
