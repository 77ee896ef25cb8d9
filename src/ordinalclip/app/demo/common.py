"""What the image demo and its text task (:mod:`ordinalclip.app.demo_text`) share: the demo's options, the
bundled text model, the CPU training schedule and a slug for file names. Imports neither side, so both import
it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ordinalclip.app.launchers import Launch

TEXT_MODEL = "all-MiniLM-L6-v2"


@dataclass
class DemoOptions:
    """Sizes of the demo; the defaults finish in a few minutes on 2 CPU cores."""

    out: Path = Path("runs/demo")
    data_root: Path | None = None  # default: the user cache
    levels: int = 6
    crops_per_photo: int = 16
    seeds: Sequence[int] = (0, 1, 2)
    shots: Sequence[int] = (1, 4, 16)
    full_epochs: int = 8
    min_steps: int = 60  # few-shot runs train for at least this many optimizer steps
    batch_size: int = 64
    methods: Sequence[str] | None = None  # method ids (demo.methods.METHOD_NAMES); None = DEFAULT_METHODS
    jobs: int = 2  # runs trained side by side (local worker processes, each with its share of the cores)
    launch: Launch | None = None  # where the runs go (default: local with `jobs` workers); see app.launchers
    progress: bool = True
    quick: bool = False
    text_task: bool = True  # also run the text task (app.demo_text): where language priors help
    text_options: Any = None  # a demo_text.TextTaskOptions instead of demo.text.demo_text_options


def cpu_schedule(max_epochs: int) -> dict[str, Any]:
    """The optimizer and trainer part of every demo and text-task run: AdamW with a cosine schedule, one CPU,
    checkpoints chosen on the validation MAE of the expectation, and no copy of the frozen towers in them."""
    return {
        "optim": {"name": "adamw", "lr": 2e-3, "weight_decay": 1e-4, "scheduler": "cosine"},
        "trainer": {
            "max_epochs": max_epochs,
            "accelerator": "cpu",
            "devices": 1,
            "progress_bar": False,
            "loggers": ["csv"],
            "log_every_n_steps": 10,
            "monitor": "val_mae_exp",
            "save_frozen_towers": False,
        },
    }


def slug(text: str) -> str:
    """``"OrdinalCLIP (named base ranks)"`` -> ``"ordinalclip-named-base-ranks"``: a file-name part."""
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-").replace("--", "-")
