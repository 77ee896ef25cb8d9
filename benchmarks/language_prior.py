"""Language priors on real human labels: word valence (AFINN, 11 ranks), few-shot and full data.

The task of :mod:`ordinalclip.app.demo_text`: all-MiniLM-L6-v2 sentence embeddings of the AFINN words (cached once
in the user cache) as features, the same all-MiniLM-L6-v2 as text tower, a saved 70/15/15 split by word. Every
method runs through the engine (``api.fit``) at 1/4/16 shots per rank (100 optimizer steps) and on the whole
training split (16 epochs at batch 64), 3 seeds; scikit-learn's LogisticRegression (expectation prediction) is the
peer anchor on the identical samples, with its default C = 1 and with C chosen on the validation MAE. Test MAE of
the best-on-val checkpoint, expectation and argmax; ordinality of the learned prototypes.

    python benchmarks/language_prior.py [--json PATH] [--plot PATH] [--seeds 0 1 2] [--shots 1 4 16] [--jobs 2]

``--json`` holds every cell (method, setting, seed: MAE exp/argmax, ordinality, steps), the summary (mean, std) and
``gain_vs_lr_1shot`` / ``gain_vs_lr_4shot`` / ``gain_vs_lr_16shot`` / ``gain_vs_lr_full``: 1 - MAE(OrdinalCLIP with
named base ranks) / MAE(logistic regression), 0.15 = 15% lower; ``gain_vs_lr_tuned_*`` the same against the C-tuned
regression. ``--tiny``: 120 words, 1 seed, a few steps.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import load_note, parse_common, write_json  # noqa: E402
from ordinalclip.app.demo_text import (  # noqa: E402
    METHOD_ALIASES,
    TextTaskOptions,
    few_shot_curves,
    gains_vs_lr,
    run_text_task,
    summarize_text,
    text_table,
)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/language_prior", help="run folders go here")
    ap.add_argument("--data-root", default=None, help="lexicon data set folder (default: the user cache)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--shots", type=int, nargs="*", default=[1, 4, 16], help="none: full data only")
    ap.add_argument(
        "--jobs", type=int, default=2, help="runs trained side by side (single-threaded processes)"
    )
    ap.add_argument("--no-full", action="store_true", help="few-shot settings only")
    ap.add_argument("--methods", nargs="+", choices=list(METHOD_ALIASES), default=None, help="default: all")
    ap.add_argument(
        "--epochs", type=int, default=8, help="max_epochs of a few-shot run before the step budget"
    )
    ap.add_argument("--full-epochs", type=int, default=16, help="epochs on the whole training split")
    ap.add_argument("--full-batch-size", type=int, default=64, help="batch size on the whole training split")
    ap.add_argument(
        "--min-steps", type=int, default=None, help="few-shot step budget (default: the engine's)"
    )
    ap.add_argument("--lexicon", default=None, help="a word<TAB>valence file instead of AFINN-en-165")
    ap.add_argument("--plot", default=None, help="few-shot curves PNG (default: OUT/few_shot.png)")
    args = parse_common(ap, argv, "120 words, one seed, 1 shot and full data, a few steps")
    opts = TextTaskOptions(
        out=Path(args.out),
        data_root=Path(args.data_root) if args.data_root else None,
        seeds=args.seeds,
        shots=args.shots,
        jobs=args.jobs,
        full=not args.no_full,
        min_steps=args.min_steps,
        epochs=args.epochs,
        full_epochs=args.full_epochs,
        full_batch_size=args.full_batch_size,
        lexicon=Path(args.lexicon) if args.lexicon else None,
    )
    if args.methods:
        opts.methods = [METHOD_ALIASES[m] for m in args.methods]
    if args.tiny:
        opts.seeds, opts.shots, opts.limit, opts.min_steps, opts.epochs = [0], [1], 120, 4, 1
        opts.full_epochs, opts.full_batch_size = 1, 32
        if opts.data_root is None:  # the user cache keeps the full lexicon set
            opts.data_root = Path(args.out) / "data"
    t0 = time.time()
    results, ds = run_text_task(opts)
    summary = summarize_text(results)
    table = text_table(summary)
    gains = gains_vs_lr(summary)
    seconds = time.time() - t0
    print(
        f"AFINN valence, {ds.counts} words (train/val/test), {ds.num_ranks} ranks; test MAE, mean ± std over "
        f"seeds {list(opts.seeds)}; {seconds:.0f} s"
    )
    print(table)
    print(", ".join(f"{k} = {v:.3f}" if v is not None else f"{k} = –" for k, v in gains.items()))
    plot = Path(args.plot) if args.plot else Path(args.out) / "few_shot.png"
    from ordinalclip.app.report import plot_few_shot

    plot_few_shot(few_shot_curves(results), plot, metric="test MAE (expectation)")
    figures = {
        "cells": [
            {
                "method": r.method,
                "setting": r.setting,
                "seed": r.seed,
                "mae_exp": r.metrics["mae_exp"],
                "mae_max": r.metrics["mae_max"],
                "ordinality": r.ordinality,
                "steps": r.steps,
                "C": r.metrics.get("C"),  # the logistic regression's inverse L2 strength
            }
            for r in results
        ],
        "summary": summary,
        **gains,
        "words": ds.counts,
        "seconds": seconds,
        "plot": str(plot),
        "machine_load": load_note(),
    }
    if args.json:
        write_json(args.json, figures)
    return figures


if __name__ == "__main__":
    main()
