"""The demo's text task: word valence on the AFINN lexicon, where language priors are at home.

The features are all-MiniLM-L6-v2 sentence embeddings of the words, the text tower is the same
all-MiniLM-L6-v2: features and prompt features share one space (as CLIP image features share CLIP's text
space), so the features tower keeps them as they are (``model.image.project: auto`` -> identity) and rank
names mean something to the model. The blur task next to it pairs an ImageNet tower with the same sentence
encoder: never aligned, so there named base ranks cannot beat random ones. Together they show where priors
help and where they do not.

Everything here is shared by ``ordinalclip demo`` and ``benchmarks/language_prior.py``: the data set
(:mod:`ordinalclip.data.lexicon`), the run config of every method, and the scikit-learn logistic-regression
anchor trained on exactly the samples (splits, few-shot subsets) the engine's runs use.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ordinalclip.app.demo.common import TEXT_MODEL, slug
from ordinalclip.app.pagekit import markdown_table
from ordinalclip.config.typed import merge
from ordinalclip.data.lexicon import LEXICON_RANK_NAMES, LexiconDataset

log = logging.getLogger(__name__)

TEXT_CONTEXT = "the sentiment of this word is"
TEXT_BASE_NAMES = ["extremely negative", "neutral", "extremely positive"]
ZERO_SHOT_TEMPLATES = [TEXT_CONTEXT + " {}."]
# Each method's id (options, configs, code) and its display name (tables, JSON rows, plot legends and run
# folders: a folder is named after the display name, so the runs of earlier calls are found again)
ZERO_SHOT = "zero_shot"
NAMED = "ordinalclip_named"
RANDOM = "ordinalclip_random"
COOP = "coop"
LINEAR_CE = "linear_ce"
CORAL = "coral"
LOGISTIC_REGRESSION = "logistic_regression"
TEXT_METHOD_NAMES: dict[str, str] = {
    ZERO_SHOT: "Zero-shot (rank names)",
    NAMED: "OrdinalCLIP (named base ranks)",
    RANDOM: "OrdinalCLIP (random base ranks)",
    COOP: "CoOp (rank names)",
    LINEAR_CE: "Linear (CE)",
    CORAL: "CORAL",
    LOGISTIC_REGRESSION: "Logistic regression (sklearn)",
}
TEXT_METHODS = tuple(TEXT_METHOD_NAMES)


def text_display_name(method: str, names: Mapping[str, str] | None = None) -> str:
    """What tables, JSON rows and run folders call ``method`` (an id): ``names`` (a caller's own methods),
    else :data:`TEXT_METHOD_NAMES`, else the id itself."""
    return (names or {}).get(method) or TEXT_METHOD_NAMES.get(method, method)


# The recipe (see the README's language-prior section for the evidence): prompt models keep the prior with a
# small learning rate on few-shot subsets (a large one overwrites the named ranks within a few steps of 11
# words), and on the whole training split learn faster through a same-width projection that starts at the
# identity (the identity alone leaves the prompts too little capacity to match logistic regression). The heads
# have no prior to keep.
PROMPT_LR_FEW_SHOT = 1e-4
PROMPT_LR_FULL = 2e-3
HEAD_LR = 2e-3


def text_method_overrides(full: bool = False) -> dict[str, dict[str, Any]]:
    """Config overrides of every engine method of the text task (``full``: the whole-training-split
    recipe)."""
    prompt = {"context_init": TEXT_CONTEXT}
    trained_prompts = {
        # the paper's OrdinalCLIP / CoOp as configured (recipe: auto would take the prior recipe)
        "recipe": "reference",
        "model": {"image": {"project": "identity_init" if full else "auto"}},
        "optim": {"lr": PROMPT_LR_FULL if full else PROMPT_LR_FEW_SHOT},
    }
    head = {"optim": {"lr": HEAD_LR}}
    return {
        ZERO_SHOT: {
            "model": {
                "arch": "zeroshot",
                "prompts": {"rank_names": list(LEXICON_RANK_NAMES)},
                "zero_shot_templates": list(ZERO_SHOT_TEMPLATES),
            }
        },
        NAMED: merge(
            trained_prompts,
            {
                "model": {
                    "arch": "prompts",
                    "prompts": {**prompt, "learner": "rank", "base_rank_names": TEXT_BASE_NAMES},
                }
            },
        ),
        RANDOM: merge(
            trained_prompts,
            {
                "model": {
                    "arch": "prompts",
                    "prompts": {**prompt, "learner": "rank", "tokens_per_rank": 2},
                }
            },
        ),
        COOP: merge(
            trained_prompts,
            {
                "model": {
                    "arch": "prompts",
                    "prompts": {**prompt, "learner": "plain", "rank_names": list(LEXICON_RANK_NAMES)},
                }
            },
        ),
        LINEAR_CE: merge(head, {"model": {"arch": "linear"}, "loss": {"kl_weight": 0.0}}),
        CORAL: merge(head, {"model": {"arch": "coral"}}),
    }


def text_base_config(ds: LexiconDataset, out: Path, batch_size: int = 32, epochs: int = 10) -> dict[str, Any]:
    """The shared part of every text-task run's config (features from ``ds``, the MiniLM text tower)."""
    from ordinalclip.app.demo.common import cpu_schedule

    return {
        "name": "lexicon",
        "output_dir": str(out),
        "model": {
            "num_ranks": ds.num_ranks,
            "embed_dim": 384,
            "logit_scale": 100.0,
            "image": {"kind": "features", "input_dim": 384, "project": "auto"},
            "text": {"kind": "huggingface", "hf_model": ds.text_model},
            "prompts": {"num_base_ranks": len(TEXT_BASE_NAMES)},
        },
        "data": {
            "format": "features",
            "train": str(ds.features),
            "columns": {"split": "split"},
            "rank_offset": ds.rank_offset,
            "batch_size": batch_size,
            "num_workers": 0,
        },
        **cpu_schedule(epochs),
    }


def text_run_config(
    base: dict[str, Any],
    method: str,
    shots: int | None,
    seed: int,
    min_steps: int | None = None,
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The config of one text-task run: ``method`` at ``shots`` per rank (None = all) and ``seed`` (the
    logistic regression anchor reads the data of this config too); ``overrides``: the method's config when it
    is not one of :func:`text_method_overrides`."""
    over = overrides if overrides is not None else text_method_overrides(full=shots is None).get(method, {})
    return merge(
        merge(base, over),
        {
            # every engine method keeps its model as built among the checkpoint candidates, random starts
            # too (protocol A of benchmarks/language_prior.py): the same selection for all
            "trainer": {"seed": seed, "min_steps": min_steps, "validate_at_start": True},
            "data": {"few_shot": {"shots": shots, "seed": seed}},
        },
    )


def logistic_regression(
    cfg: dict[str, Any],
    max_iter: int = 2000,
    c_grid: Sequence[float] | None = None,
    choose_c: Callable[[np.ndarray, np.ndarray], float] | None = None,
) -> dict[str, float]:
    """Test metrics of scikit-learn's LogisticRegression (L2, default C = 1) trained on the training samples
    of ``cfg`` (its split and few-shot subset, as the engine resolves them); its class probabilities go
    through :func:`~ordinalclip.metrics.ordinal_metrics` like every model's (expectation and argmax).

    ``c_grid``: fit each C and keep the one with the lowest validation MAE (expectation), as the engine's runs
    keep their best-on-val checkpoint; the chosen C is returned under ``"C"``. ``choose_c``: a function of the
    training samples (x (N, F), ranks (N,)) that returns C instead, for a choice that sees no validation split
    (cross-validation on the training samples)."""
    from ordinalclip.api import resolve_config
    from ordinalclip.engine.datamodule import OrdinalDataModule
    from ordinalclip.engine.splits import resolve_data
    from ordinalclip.probe import logistic_probe

    run_cfg = resolve_config(cfg)
    data = resolve_data(run_cfg)
    dm = OrdinalDataModule(run_cfg, data, {})

    def arrays(split: str) -> tuple[np.ndarray, np.ndarray]:
        ds = dm.dataset(split)
        items = [ds[i] for i in range(len(ds))]  # type: ignore[arg-type]  # map-style datasets here are sized
        return (torch.stack([it[0] for it in items]).numpy(), torch.stack([it[1] for it in items]).numpy())

    splits = {split: arrays(split) for split in ("train", "val", "test")}  # read once, used by every C
    if choose_c is not None:
        c_grid = [float(choose_c(*splits["train"]))]
    probe = logistic_probe(splits, run_cfg.model.num_ranks, c_grid, max_iter)
    return {**probe["test"], "C": probe["C"]}


def text_cells(
    methods: Sequence[str], settings: Sequence[int | None], seeds: Sequence[int]
) -> list[tuple[str, int | None, int]]:
    """(method, shots, seed) of every text-task run; the zero-shot row needs one run (it trains nothing and
    sees no training data), reported for every setting."""
    cells = []
    for shots in settings:
        for seed in seeds:
            for m in methods:
                if m == ZERO_SHOT and (shots, seed) != (settings[0], seeds[0]):
                    continue
                cells.append((m, shots, seed))
    return cells


# ------------------------------------------------------------------------------------------------- running


@dataclass
class TextTaskOptions:
    """Sizes of the text task. The defaults are the benchmark's; the demo runs fewer seeds."""

    out: Path = Path("runs/language_prior")
    data_root: Path | None = None  # default: the user cache (data.lexicon.default_lexicon_root)
    seeds: Sequence[int] = (0, 1, 2)
    shots: Sequence[int] = (1, 4, 16)
    full: bool = True  # also train on the whole training split
    methods: Sequence[str] = TEXT_METHODS
    batch_size: int = 32
    epochs: int = 8  # max_epochs of a few-shot run before the step budget raises it to min_steps
    # the whole training split (2,368 words): 16 epochs at batch 64 are 592 optimizer steps; 80 steps (8
    # epochs at batch 256) left OrdinalCLIP 6% above logistic regression, 592 steps put it 23% below (README)
    full_batch_size: int = 64
    full_epochs: int = 16
    min_steps: int | None = None  # None = the engine's few-shot default (config.FEW_SHOT_MIN_STEPS)
    limit: int | None = None  # words kept (tests); None = all
    lexicon: Path | None = None  # another word<TAB>valence file instead of AFINN-en-165
    jobs: int = 2  # runs trained side by side, one single-threaded process each
    progress: bool = True
    # methods defined by the caller (benchmarks/), by id: engine methods as id -> (full data?) -> config
    # overrides, anchors outside the engine as id -> (run config) -> test metrics; their display names
    extra_methods: Mapping[str, Callable[[bool], dict[str, Any]]] = field(default_factory=dict)
    extra_anchors: Mapping[str, Callable[[dict[str, Any]], dict[str, float]]] = field(default_factory=dict)
    names: Mapping[str, str] = field(default_factory=dict)
    # (method, shots or None, seed) -> run this cell? (None: every cell)
    keep: Callable[[str, int | None, int], bool] | None = None


@dataclass
class TextResult:
    method: str  # the id (text_display_name: its display name)
    shots: int | None  # None = full data
    seed: int
    metrics: dict[str, float]
    ordinality: float | None = None
    steps: int | None = None
    run_dir: Path | None = None
    last: dict[str, float] | None = None  # test metrics of the last checkpoint (engine runs)

    @property
    def setting(self) -> str:
        return "full" if self.shots is None else f"{self.shots}-shot"


def run_text_task(opts: TextTaskOptions) -> tuple[list[TextResult], LexiconDataset]:
    """Build (or reuse) the lexicon data set and run every (method, setting, seed) of ``opts``."""
    from tqdm.auto import tqdm

    from ordinalclip.data.lexicon import build_lexicon_dataset
    from ordinalclip.modeling.text_features import embed_sentences

    ds = build_lexicon_dataset(
        opts.data_root, text_model=TEXT_MODEL, limit=opts.limit, lexicon=opts.lexicon, embed=embed_sentences
    )
    out = Path(opts.out)
    known = [*TEXT_METHODS, *opts.extra_methods, *opts.extra_anchors]
    unknown = [m for m in opts.methods if m not in known]
    if unknown:
        raise ValueError(f"unknown text-task methods {unknown}; choose from {known}")
    anchors: dict[str, Callable[[dict[str, Any]], dict[str, float]]] = {
        LOGISTIC_REGRESSION: logistic_regression,
        **opts.extra_anchors,
    }
    settings: list[int | None] = [*opts.shots, *([None] if opts.full else [])]

    def name(method: str) -> str:
        return text_display_name(method, opts.names)

    jobs: list[tuple[str, int | None, int, dict[str, Any], Path]] = []
    for method, shots, seed in text_cells(list(opts.methods), settings, list(opts.seeds)):
        if opts.keep is not None and not opts.keep(method, shots, seed):
            continue
        full = shots is None
        base = text_base_config(
            ds,
            out / "runs",
            opts.full_batch_size if full else opts.batch_size,
            opts.full_epochs if full else opts.epochs,
        )
        extra = opts.extra_methods[method](full) if method in opts.extra_methods else None
        cfg = text_run_config(base, method, shots, seed, opts.min_steps, extra)
        jobs.append(
            (
                method,
                shots,
                seed,
                cfg,
                out / "runs" / f"{'full' if full else f'{shots}shot'}-{slug(name(method))}-s{seed}",
            )
        )
    engine = [j for j in jobs if j[0] not in anchors]
    results: list[TextResult] = []
    bar = tqdm(total=len(jobs), desc="text task", unit="run", disable=not opts.progress)
    # the quick scikit-learn anchors first, then the engine runs (worker processes, started on first use)
    outcomes = fit_runs([(cfg, run_dir) for *_, cfg, run_dir in engine], opts.jobs)
    for method, shots, seed, cfg, run_dir in (j for j in jobs if j[0] in anchors):
        results.append(TextResult(method, shots, seed, _anchor(anchors[method], cfg, run_dir)))
        bar.update()
    for (method, shots, seed, _, run_dir), (metrics, steps, last) in zip(engine, outcomes):
        res = TextResult(method, shots, seed, metrics, steps=steps, run_dir=run_dir, last=last)
        protos = run_dir / "prototypes.npy"
        if protos.is_file():
            from ordinalclip.metrics import ordinality_score

            scores = ordinality_score(torch.from_numpy(np.load(protos)))
            res.ordinality = scores[max(scores)]
        results.append(res)
        bar.set_postfix_str(f"{res.setting} {name(method)} seed {seed}")
        bar.update()
    if hasattr(outcomes, "close"):
        outcomes.close()
    bar.close()
    return results, ds


def fit_runs(
    jobs: Sequence[tuple[dict[str, Any], Path]], workers: int
) -> Iterator[tuple[dict[str, float], int, dict[str, float]]]:
    """Train each ``(config, run folder)`` of ``jobs``; yields (test metrics of the best-on-val checkpoint,
    optimizer steps, test metrics of the last checkpoint) of every job, in order. The runs go through the
    sweep launchers (:func:`ordinalclip.app.launchers.run_tasks`):
    ``workers`` > 1 local worker processes, each with its share of the cores, else one by one in this
    process. Each run's output goes to ``<runs>/logs/<run>.log``; a run folder that holds the finished run of
    the same config is read, not trained again (a benchmark continues where an interrupted call stopped)."""
    from ordinalclip.app.launchers import Launch, Task, run_tasks

    tasks = [
        Task(_fit_one, (cfg, run_dir, 0), run_dir.parent / "logs" / f"{run_dir.name}.log")
        for cfg, run_dir in jobs
    ]
    launch = Launch(jobs=max(1, min(workers, len(jobs))))

    def results() -> Iterator[tuple[dict[str, float], int, dict[str, float]]]:
        finished: dict[int, tuple[dict[str, float], int, dict[str, float]]] = {}
        following = 0
        for i, outcome in run_tasks(tasks, launch):
            if outcome.error is not None:
                raise RuntimeError(
                    f"text task run {jobs[i][1]} failed: {outcome.error} (log: {tasks[i].log})"
                )
            finished[i] = outcome.value
            while following in finished:  # in job order, whatever order they finish in
                yield finished.pop(following)
                following += 1

    return results()


def _fit_one(
    cfg: dict[str, Any], run_dir: Path, threads: int
) -> tuple[dict[str, float], int, dict[str, float]]:
    """Train (or evaluate) one run; its test metrics (best checkpoint on val, else last), steps, and the test
    metrics of the last checkpoint (no selection: what a run without a validation split would give). A run
    folder that already holds the finished run of the same config is read instead (an interrupted benchmark
    continues)."""
    from ordinalclip import api
    from ordinalclip.engine.trainer import quiet_lightning

    if threads:
        torch.set_num_threads(threads)
    quiet_lightning()
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    logging.getLogger("ordinalclip").setLevel(logging.WARNING)
    done = run_dir / "metrics.json"
    if done.is_file() and _same_config(run_dir, cfg):  # finished by an earlier call: reuse (runs are seeded)
        import json

        metrics = json.loads(done.read_text(encoding="utf-8"))
    else:
        if run_dir.exists():  # unfinished or other settings: start afresh
            import shutil

            shutil.rmtree(run_dir)
        metrics = api.fit(cfg, run_dir=run_dir).metrics

    def numbers(test: dict[str, Any]) -> dict[str, float]:
        return {k: v for k, v in test.items() if isinstance(v, (int, float))}

    test = metrics["best"]["test"] if metrics.get("best") else metrics["last"]["test"]
    return numbers(test), int(metrics["training"]["steps"]), numbers(metrics["last"]["test"])


def _anchor(
    fit: Callable[[dict[str, Any]], dict[str, float]], cfg: dict[str, Any], run_dir: Path
) -> dict[str, float]:
    """Test metrics of an anchor outside the engine, kept in ``run_dir/anchor.json`` with its config and the
    anchor's own settings (``fit.settings`` where it has them, e.g. the grid of C it chooses from): a later
    call with the same config and settings reads them (the anchors are deterministic; a cross-validated one
    takes minutes on the whole training split)."""
    import json

    from ordinalclip.api import resolve_config
    from ordinalclip.config.typed import to_dict

    wanted = to_dict(resolve_config(cfg))
    wanted.pop("output_dir", None)
    settings = json.loads(json.dumps(getattr(fit, "settings", None)))
    saved = run_dir / "anchor.json"
    if saved.is_file():
        stored = json.loads(saved.read_text(encoding="utf-8"))
        if stored.get("config") == json.loads(json.dumps(wanted)) and stored.get("settings") == settings:
            return {k: float(v) for k, v in stored["metrics"].items()}
    metrics = fit(cfg)
    run_dir.mkdir(parents=True, exist_ok=True)
    record = {"config": wanted, "settings": settings, "metrics": metrics}
    saved.write_text(json.dumps(record), encoding="utf-8")
    return metrics


def _same_config(run_dir: Path, cfg: dict[str, Any]) -> bool:
    """Whether the run in ``run_dir`` was made from ``cfg`` (its resolved config.yaml, output paths aside)."""
    import warnings

    from ordinalclip.api import resolve_config
    from ordinalclip.config.typed import load_yaml, to_dict

    try:
        with warnings.catch_warnings():  # a renamed key of an older run is read under its new name
            warnings.simplefilter("ignore", FutureWarning)
            saved = to_dict(resolve_config(load_yaml(run_dir / "config.yaml")))
        wanted = to_dict(resolve_config(cfg))
    except Exception:  # an unreadable or outdated config: rerun
        return False
    for d in (saved, wanted):
        d.pop("output_dir", None)
        d["trainer"].pop("max_epochs", None)  # raised by the step budget in the saved one
        d["trainer"].pop("check_val_every_n_epoch", None)
        d["data"].pop("rank_names", None)
    return saved == wanted


# ------------------------------------------------------------------------------------------------- summary


def summarize_text(results: Sequence[TextResult]) -> dict[str, dict[str, dict[str, Any]]]:
    """``{method id: {setting: {"mae_exp": [mean, std], "mae_max": [...], "ordinality": [...] | None, "n"}}}``
    over seeds; the zero-shot row (one run) is reported in every setting."""
    from ordinalclip.metrics import mean_std

    settings = list(dict.fromkeys(r.setting for r in results if r.method != ZERO_SHOT))
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for method in dict.fromkeys(r.method for r in results):
        rows = [r for r in results if r.method == method]
        for setting in settings if method == ZERO_SHOT else dict.fromkeys(r.setting for r in rows):
            rs = rows if method == ZERO_SHOT else [r for r in rows if r.setting == setting]
            ords = [r.ordinality for r in rs if r.ordinality is not None]
            out.setdefault(method, {})[setting] = {
                "mae_exp": list(mean_std([r.metrics["mae_exp"] for r in rs])),
                "mae_max": list(mean_std([r.metrics["mae_max"] for r in rs])),
                "ordinality": list(mean_std(ords)) if ords else None,
                "steps": max((r.steps or 0) for r in rs),
                "n": len(rs),
            }
    return out


def gains_vs(
    summary: dict[str, dict[str, dict[str, Any]]],
    method: str = NAMED,
    anchor: str = LOGISTIC_REGRESSION,
    prefix: str = "gain_vs_lr_",
) -> dict[str, float | None]:
    """Relative test-MAE (expectation) reduction of ``method`` against ``anchor``, per setting:
    ``<prefix>1shot`` = 1 - MAE(method) / MAE(anchor) (0.15 = 15% lower); None where either did not run."""
    out: dict[str, float | None] = {}
    mine, theirs = summary.get(method, {}), summary.get(anchor, {})
    for setting in dict.fromkeys([*mine, *theirs]):
        key = prefix + setting.replace("-", "")
        if setting in mine and setting in theirs:
            out[key] = 1.0 - mine[setting]["mae_exp"][0] / theirs[setting]["mae_exp"][0]
        else:
            out[key] = None
    return out


def text_table(summary: dict[str, dict[str, dict[str, Any]]], names: Mapping[str, str] | None = None) -> str:
    """Markdown table: one row per (setting, method), test MAE (expectation, argmax) and ordinality, mean ±
    std; methods (ids) under their display names (:func:`text_display_name` with ``names``)."""

    def fmt(stat: list[float] | None, n: int, pct: bool = False) -> str:
        if stat is None:
            return "–"
        mean, std = (v * (100.0 if pct else 1.0) for v in stat)
        unit = "%" if pct else ""
        body = f"{mean:.1f}" if pct else f"{mean:.3f}"
        return body + unit if n < 2 else body + (f" ± {std:.1f}{unit}" if pct else f" ± {std:.3f}")

    settings = list(dict.fromkeys(s for by in summary.values() for s in by))
    rows = [
        [
            setting,
            text_display_name(method, names),
            fmt(cell["mae_exp"], cell["n"]),
            fmt(cell["mae_max"], cell["n"]),
            fmt(cell["ordinality"], cell["n"], pct=True),
            cell["steps"] or "–",
        ]
        for setting in settings
        for method, by in summary.items()
        if (cell := by.get(setting)) is not None
    ]
    return markdown_table(["setting", "method", "MAE (exp)", "MAE (argmax)", "ordinality", "steps"], rows)


def few_shot_curves(
    results: Sequence[TextResult], names: Mapping[str, str] | None = None
) -> dict[str, dict[int, list[float]]]:
    """``curves[display name][shots]`` = test MAE (expectation) per seed, for :func:`report.plot_few_shot`
    (display names: :func:`text_display_name` with ``names``)."""
    curves: dict[str, dict[int, list[float]]] = {}
    shots = sorted({r.shots for r in results if r.shots is not None})
    for r in results:
        label = text_display_name(r.method, names)
        if r.method == ZERO_SHOT:
            for k in shots:
                curves.setdefault(label, {}).setdefault(k, []).append(r.metrics["mae_exp"])
        elif r.shots is not None:
            curves.setdefault(label, {}).setdefault(r.shots, []).append(r.metrics["mae_exp"])
    return curves
