"""The ``sweep`` sub-command: a grid of runs through a launcher (:mod:`ordinalclip.app.sweep`)."""

from __future__ import annotations

import argparse
from typing import Any

from ordinalclip.app.commands.common import add_command, add_configs, add_overrides
from ordinalclip.app.launchers import LAUNCHERS


def add_commands(sub: Any) -> None:
    """Add the sub-command sweep to ``sub`` (the parser's sub-parsers)."""
    p = add_command(
        sub,
        "sweep",
        help="run a grid of configs x settings x seeds x folds; resumable; one summary table",
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
    add_configs(
        p,
        "a config (built-in name or .yaml file) to compare; repeat for several (each is its "
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
    add_overrides(
        p,
        "override a key in every run, e.g. --set data.root=/data/MORPH",
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


def _launch(args: argparse.Namespace) -> Any:
    """The launch settings: the --launch-config file, then the flags given on top."""
    from ordinalclip.app.launchers import Launch
    from ordinalclip.config.typed import ConfigError, from_dict, load_yaml, parse_override

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
    from ordinalclip.config.typed import ConfigError

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
