"""The sub-commands on a model: ``train``, ``eval``, ``predict``, ``export`` (thin layers over
:mod:`ordinalclip.api`) and ``configs`` (the built-in configs)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import Any

from ordinalclip.app.commands.common import add_command, add_configs, add_overrides, int_at_least
from ordinalclip.app.pagekit import fixed_width_table
from ordinalclip.app.tables import TABLE_METRICS

TRAIN_EXAMPLE = """\
examples:
  ordinalclip train --data photos/ --rank-names "sharp,soft,blurred"  # a sub-folder per rank
  ordinalclip train --data photos/ --rank-names "sharp,soft,blurred" --few-shot 4
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
FEATURES_EXAMPLE = """\
examples:
  ordinalclip features photos/ -o feats.npz --rank-names "sharp,soft,blurred"   # rank sub-folders
  ordinalclip features runs/images-20240101-120000/data.csv -o feats.npz --rank-names "sharp,soft,blurred"
  ordinalclip train -c images --set data.format=features --set data.train=feats.npz ...
"""
CONFIGS_EXAMPLE = """\
examples:
  ordinalclip configs                      # every built-in config with its one-line description
  ordinalclip configs show morph           # print one (copy it to a file to change it)
  ordinalclip train -c morph               # a built-in by name; -c my_config.yaml is a file
"""


def add_commands(sub: Any) -> None:
    """Add the sub-commands train, eval, predict, export and configs to ``sub`` (the parser's sub-parsers)."""
    p = add_command(
        sub,
        "train",
        help="train a model; writes a run folder",
        description="Train a model. Writes runs/<name>-<timestamp>/ with the resolved config, "
        "environment, splits, logs, checkpoints (best, last) and metrics.json.",
        epilog=TRAIN_EXAMPLE,
    )
    add_configs(
        p,
        "a built-in config's name (see 'ordinalclip configs') or a .yaml file; repeat to "
        "merge several in order (later ones win)",
    )
    add_overrides(
        p,
        "override one config key, e.g. --set optim.lr=1e-4 (repeatable; VALUE is YAML)",
    )
    p.add_argument(
        "--resume",
        metavar="RUN_DIR",
        help="continue a run folder from its newest intact checkpoint (last.ckpt, else best.ckpt)",
    )
    p.add_argument("--run-dir", metavar="DIR", help="write the run here instead of a new timestamped folder")
    p.add_argument(
        "--data",
        metavar="DIR",
        help="a folder of images with one sub-folder per rank: trains the built-in 'images' config (or -c) "
        "on a 60/20/20 split per rank, saved as data.csv in the run folder",
    )
    p.add_argument(
        "--rank-names",
        metavar="NAMES",
        help='with --data: the ranks, lowest first, comma-separated ("sharp,soft,blurred"); the '
        "sub-folders' names (default: the sub-folders, when they are integers)",
    )
    p.add_argument("--few-shot", type=int, metavar="K", help="with --data: keep K training images per rank")
    p.add_argument(
        "--context",
        metavar="TEXT",
        help='with --data: the prompt context before a rank name (default "a photo of")',
    )
    p.add_argument(
        "--folds",
        action="store_true",
        help="run every fold of a fold benchmark (adience, hci) and report mean ± std",
    )
    p.set_defaults(func=_train)

    p = add_command(
        sub,
        "eval",
        help="evaluate a checkpoint on val or test",
        description="Evaluate a checkpoint on one split of the data in its stored config "
        "(the splits saved in its run folder when there is one). Prints JSON.",
        epilog=EVAL_EXAMPLE,
    )
    p.add_argument("checkpoint", help="a .ckpt file or a run folder")
    p.add_argument("--split", choices=("val", "test"), default="test")
    add_overrides(
        p,
        "override a key of the stored config, e.g. --set data.test=other.txt",
    )
    p.set_defaults(func=_eval)

    p = add_command(
        sub,
        "predict",
        help="predict ranks of images with a checkpoint or an export",
        epilog=PREDICT_EXAMPLE,
        description="Write a CSV with the expected rank, the argmax rank and optionally the "
        "per-rank probabilities of every image.",
    )
    p.add_argument(
        "model",
        help="a training checkpoint (.ckpt), a run folder or an export (.safetensors or "
        ".onnx, with its .json)",
    )
    p.add_argument("inputs", help="an image folder, one image, a list file or a CSV")
    p.add_argument("-o", "--out", required=True, help="output CSV")
    p.add_argument("--probabilities", action="store_true", help="add one probability column per rank")
    p.add_argument("--batch-size", type=int_at_least(1), default=64)
    p.add_argument(
        "--on-error",
        choices=("raise", "skip"),
        default="raise",
        help="an unreadable image: stop naming every bad file (raise), or predict the rest and name the "
        "skipped (skip)",
    )
    p.set_defaults(func=_predict)

    p = add_command(
        sub,
        "export",
        help="export a checkpoint for inference (safetensors or ONNX, + JSON)",
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
    p.add_argument(
        "--quantize",
        choices=("int8",),
        default=None,
        help="store the ONNX graph's weights as int8 (onnxruntime's dynamic quantisation)",
    )
    p.add_argument(
        "--image-tower",
        metavar="KIND",
        help="a run trained on precomputed features: the tower that made them (efficientnet_lite0), so the "
        "export takes images; default: the tower recorded in its features file ('ordinalclip features' "
        "writes it); 'none' keeps the export on feature vectors",
    )
    p.set_defaults(func=_export)

    p = add_command(
        sub,
        "features",
        help="extract pretrained image features (.npz) for a features run",
        epilog=FEATURES_EXAMPLE,
        description="Run a pretrained image tower's trunk over images with its own preprocessing and write "
        "an .npz (features, path, labels where known, split from a CSV's split column, and the tower) that "
        "'train' reads with data.format: features; its export goes back onto the tower.",
    )
    p.add_argument("inputs", help="an image folder (rank sub-folders give labels), a list file or a CSV")
    p.add_argument("-o", "--out", required=True, help="output .npz")
    p.add_argument("--tower", default="efficientnet_lite0", help="the pretrained tower (default %(default)s)")
    p.add_argument("--rank-names", metavar="NAMES", help="label names, lowest rank first (comma-separated)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument(
        "--cache-dir", metavar="DIR", help="share the content-keyed feature cache of training runs"
    )
    p.set_defaults(func=_features)

    p = add_command(
        sub,
        "probe",
        help="fit the logistic-regression probe on a run's frozen features (probe.json)",
        description="Logistic regression (scikit-learn, C tuned on val) on the frozen features a run "
        "trained on, on its saved splits; writes probe.json in the run folder, which the run and sweep "
        "pages show beside the model.",
    )
    p.add_argument("run", help="a run folder")
    p.set_defaults(func=_probe)

    p = add_command(
        sub,
        "configs",
        help="list the built-in configs, or show one",
        epilog=CONFIGS_EXAMPLE,
        description="The configs that ship with ordinalclip. 'train -c NAME' and "
        "'sweep -c NAME' take them by name; 'configs show NAME' prints one.",
    )
    p.add_argument("action", nargs="?", choices=("list", "show"), default="list")
    p.add_argument("name", nargs="?", help="the config to show (with 'show')")
    p.set_defaults(func=_configs, light=True)


def _table(rows: Sequence[tuple[str, dict[str, Any] | None]], fmt: Any) -> str:
    """The run summary: one line per (checkpoint, split) that has metrics, the app's table metrics."""
    return fixed_width_table(
        ["", *TABLE_METRICS],
        [[name, *(fmt(values.get(k)) for k in TABLE_METRICS)] for name, values in rows if values],
    )


def _num(v: Any) -> str:
    return "-" if v is None else f"{v:.4f}"


def _print_run(metrics: dict[str, Any], run_dir: Any = None) -> None:
    from ordinalclip.probe import read_probe

    rows = []
    for tag in ("best", "last"):
        entry = metrics.get(tag)
        if entry:
            for split in ("val", "test"):
                rows.append((f"{tag} {split}", entry.get(split)))
    probe = read_probe(run_dir) if run_dir is not None else None
    for split in ("val", "test"):
        if probe and probe.get(split):
            rows.append((f"probe {split}", probe[split]))  # logistic regression on the same frozen features
    print(_table(rows, _num))


def _train(args: argparse.Namespace) -> int:
    from ordinalclip import api
    from ordinalclip.config.typed import ConfigError

    if args.data is None and (args.rank_names or args.few_shot is not None or args.context):
        raise ConfigError("--rank-names, --few-shot and --context go with --data DIR")
    if args.data is not None:
        if args.resume or args.folds:
            raise ConfigError("--data trains a new run: no --resume or --folds with it")
        from ordinalclip.image_folders import fit_image_folder

        names = [n.strip() for n in args.rank_names.split(",")] if args.rank_names else None
        run = fit_image_folder(
            args.data,
            names,
            few_shot=args.few_shot,
            overrides=args.overrides,
            run_dir=args.run_dir,
            config=args.config or "images",
            context=args.context,
        )
    elif args.resume:
        if args.config or args.folds or args.run_dir:
            raise ConfigError(
                "--resume takes the run folder's own config: no -c, --run-dir or --folds with it"
            )
        _check_resume(args.resume, args.overrides)
        run = api.fit(resume=args.resume, overrides=args.overrides)
    elif not args.config:
        raise ConfigError(
            "train needs --data DIR (images in one sub-folder per rank), -c CONFIG (a built-in name such as "
            "tiny, or a .yaml file) or --resume RUN_DIR"
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
    _print_run(run.metrics, run.run_dir)
    return 0


def _check_resume(run_dir: str, overrides: Sequence[str]) -> None:
    """Refuse a resume whose trainer.max_epochs is below the epochs already trained, before anything is
    written."""
    from pathlib import Path

    from ordinalclip.config.typed import apply_overrides, load_yaml
    from ordinalclip.engine.run import check_resume_epochs

    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        return  # fit names the problem
    trainer = apply_overrides(load_yaml(path), list(overrides)).get("trainer") or {}
    if isinstance(trainer.get("max_epochs"), int):
        check_resume_epochs(run_dir, trainer["max_epochs"])


def _eval(args: argparse.Namespace) -> int:
    from ordinalclip import api

    result = api.evaluate(args.checkpoint, split=args.split, overrides=args.overrides)
    print(json.dumps(result, indent=2))
    return 0


def _predict(args: argparse.Namespace) -> int:
    from ordinalclip.predict import predict

    out = predict(
        args.model,
        args.inputs,
        args.out,
        probabilities=args.probabilities,
        batch_size=args.batch_size,
        on_error=args.on_error,
    )
    print(f"predictions written to {out}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from ordinalclip.exports.write import export_model
    from ordinalclip.tower_features import export_onto_tower

    out = export_onto_tower(
        args.checkpoint, args.out, args.image_tower, format=args.format, quantize=args.quantize
    )
    if out is None:
        out = export_model(args.checkpoint, args.out, format=args.format, quantize=args.quantize)
    print(f"exported to {out}")  # its JSON sidecar is beside it (model.json, model.onnx.json)
    return 0


def _features(args: argparse.Namespace) -> int:
    from ordinalclip.tower_features import features

    names = [n.strip() for n in args.rank_names.split(",")] if args.rank_names else None
    feats = features(
        args.inputs,
        args.out,
        tower=args.tower,
        rank_names=names,
        batch_size=args.batch_size,
        cache_dir=args.cache_dir,
    )
    print(f"{feats.shape[0]} x {feats.shape[1]} features written to {args.out}")
    return 0


def _probe(args: argparse.Namespace) -> int:
    from ordinalclip.config.typed import ConfigError
    from ordinalclip.probe import write_probe

    result = write_probe(args.run)
    if result is None:
        raise ConfigError(f"{args.run}: no probe (the log says why: no fixed features, or no scikit-learn)")
    rows = [(f"probe {s}", result[s]) for s in ("val", "test") if result.get(s)]
    print(f"probe.json written in {args.run} (C={result['C']:g}, {result['features']})")
    print(_table(rows, _num))
    return 0


def _configs(args: argparse.Namespace) -> int:
    from ordinalclip.config.builtin import builtin_configs, config_path
    from ordinalclip.config.typed import ConfigError

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
