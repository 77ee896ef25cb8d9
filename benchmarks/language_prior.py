"""Language priors on real human labels: word valence (AFINN, 11 ranks), few-shot and full data, two protocols.

The task of :mod:`ordinalclip.app.demo_text`: all-MiniLM-L6-v2 sentence embeddings of the AFINN words (cached once
in the user cache) as features, the same all-MiniLM-L6-v2 as text tower, a saved 70/15/15 split by word. Every
engine method runs through ``api.fit`` at 1/2/4/8/16 shots per rank (100 optimizer steps) and on the whole
training split (16 epochs at batch 64), 3 seeds; the anchors and protocols are :mod:`prior_methods`:

* methods: zero-shot (the rank names), logistic regression (scikit-learn, expectation of its probabilities),
  ZS-LP (a cosine head initialised from the rank names' prototypes, no penalty), CoOp, OrdinalCLIP (the
  reference recipe of named base ranks), OrdinalCLIP + prior penalty (``--methods kgcoop``), and the default
  recipe (only towers, rank names and shots set: ``recipe: auto``);
* protocol A: selection on the whole validation split (best-on-val checkpoints, the model as built included;
  C of the regression tuned on val);
* protocol B: k labelled words per rank for training *and* selection: last checkpoints (a fixed recipe), C by
  cross-validation on the shots, zero-shot as it is.

    python benchmarks/language_prior.py [--json PATH] [--plot PATH] [--seeds 0 1 2] [--shots 1 2 4 8 16]

``--json`` holds every cell (method, setting, seed: MAE exp/argmax of the best and the last checkpoint,
ordinality, steps, C), both protocols' summaries and tables, ``gain_vs_lr_tuned_{1,2,4,8,16}shot`` /
``gain_vs_lr_tuned_full`` (1 - MAE(default recipe) / MAE(C-tuned regression), protocol A; 0.10 = 10% lower),
``below_zeroshot_all`` and ``protocol_b_ok`` (bools), each setting's protocol-A target and the
ordinality of the default recipe's prototypes. ``--tiny``: 120 words, 1 seed, a few steps.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import load_note, parse_common, write_json  # noqa: E402
from ordinalclip.app.demo_text import (  # noqa: E402
    ZERO_SHOT,
    TextTaskOptions,
    few_shot_curves,
    run_text_task,
    summarize_text,
    text_display_name,
    text_table,
)
from prior_methods import (  # noqa: E402
    ALIASES,
    DEFAULT_METHODS,
    NAMES,
    anchors,
    prior_method_overrides,
    protocol_results,
    targets,
)


def full_cells(
    seeds: list[int] | None, methods: list[str] | None
) -> Callable[[str, int | None, int], bool] | None:
    """The cells to run when the whole training split takes only ``seeds`` and ``methods`` (aliases); zero-shot
    runs once whatever the setting."""
    if seeds is None and methods is None:
        return None
    chosen = None if methods is None else {ALIASES[m] for m in methods}

    def keep(method: str, shots: int | None, seed: int) -> bool:
        if shots is not None or method == ZERO_SHOT:
            return True
        return (seeds is None or seed in seeds) and (chosen is None or method in chosen)

    return keep


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/language_prior", help="run folders go here")
    ap.add_argument("--data-root", default=None, help="lexicon data set folder (default: the user cache)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--shots", type=int, nargs="*", default=[1, 2, 4, 8, 16], help="none: full data only")
    ap.add_argument(
        "--jobs", type=int, default=2, help="runs trained side by side (single-threaded processes)"
    )
    ap.add_argument("--no-full", action="store_true", help="few-shot settings only")
    ap.add_argument(
        "--methods",
        nargs="+",
        choices=list(ALIASES),
        default=None,
        help="default: anchors, references, recipe",
    )
    ap.add_argument(
        "--epochs", type=int, default=8, help="max_epochs of a few-shot run before the step budget"
    )
    ap.add_argument("--full-epochs", type=int, default=16, help="epochs on the whole training split")
    ap.add_argument("--full-batch-size", type=int, default=64, help="batch size on the whole training split")
    ap.add_argument(
        "--full-seeds",
        type=int,
        nargs="+",
        default=None,
        help="seeds of the runs on the whole training split (default: --seeds)",
    )
    ap.add_argument(
        "--full-methods",
        nargs="+",
        choices=list(ALIASES),
        default=None,
        help="methods run on the whole training split (default: all of --methods)",
    )
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
        methods=[ALIASES[m] for m in args.methods] if args.methods else list(DEFAULT_METHODS),
        extra_methods={
            m: (lambda full, m=m: prior_method_overrides(full)[m]) for m in prior_method_overrides(False)
        },
        extra_anchors=anchors(),
        names=NAMES,
        keep=full_cells(args.full_seeds, args.full_methods),
    )
    if args.tiny:
        opts.seeds, opts.shots, opts.limit, opts.min_steps, opts.epochs = [0], [1], 120, 4, 1
        opts.full_epochs, opts.full_batch_size = 1, 32
        if opts.data_root is None:  # the user cache keeps the full lexicon set
            opts.data_root = Path(args.out) / "data"
    t0 = time.time()
    results, ds = run_text_task(opts)
    summaries = {p: summarize_text(protocol_results(results, p)) for p in ("A", "B")}
    tables = {p: text_table(summaries[p], NAMES) for p in ("A", "B")}
    figures_t = targets(summaries["A"], summaries["B"])
    seconds = time.time() - t0
    print(
        f"AFINN valence, {ds.counts} words (train/val/test), {ds.num_ranks} ranks; test MAE, mean ± std over "
        f"seeds {list(opts.seeds)}; {seconds:.0f} s"
    )
    for p, what in (
        ("A", "selection on the whole val split"),
        ("B", "k labels per rank for training and selection"),
    ):
        print(f"\nProtocol {p} ({what}):\n{tables[p]}")
    print(", ".join(f"{k} = {v:.3f}" for k, v in figures_t.items() if isinstance(v, float)))
    print(
        f"below_zeroshot_all = {figures_t['below_zeroshot_all']}, protocol_b_ok = {figures_t['protocol_b_ok']}"
    )
    plot = Path(args.plot) if args.plot else Path(args.out) / "few_shot.png"
    from ordinalclip.app.report import plot_few_shot

    plot_few_shot(
        few_shot_curves(protocol_results(results, "A"), NAMES), plot, metric="test MAE (expectation)"
    )
    figures = {
        "cells": [
            {
                "method": text_display_name(r.method, NAMES),  # rows keep the display names
                "setting": r.setting,
                "seed": r.seed,
                "mae_exp": r.metrics["mae_exp"],
                "mae_max": r.metrics["mae_max"],
                "last_mae_exp": r.last["mae_exp"] if r.last else None,
                "last_mae_max": r.last["mae_max"] if r.last else None,
                "ordinality": r.ordinality,
                "steps": r.steps,
                "C": r.metrics.get("C"),  # the logistic regression's inverse L2 strength
            }
            for r in results
        ],
        **{
            f"summary_protocol_{p.lower()}": {text_display_name(m, NAMES): v for m, v in summaries[p].items()}
            for p in ("A", "B")
        },
        "table_protocol_a": tables["A"],
        "table_protocol_b": tables["B"],
        **figures_t,
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
