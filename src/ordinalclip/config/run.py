"""The typed configuration of a training run: model, data, optimizer, loss and trainer.

A run is described by one :class:`RunConfig`; YAML files map onto it key by key (see ``configs/``)::

    name: morph
    model: {num_ranks: 101, image: {kind: vgg16}}
    data: {format: list, root: data/MORPH, train: data/MORPH/train.txt, val: ..., test: ...}
    optim: {name: radam, lr: 1.0e-4, weight_decay: 5.0e-4, scheduler: cosine}
    trainer: {max_epochs: 100, precision: 16-mixed}

:func:`load_run_config` merges YAML files in order, applies ``key.path=value`` overrides and checks every key
and type (an unknown key is an error that names the closest valid key, see :mod:`ordinalclip.config.typed`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from ordinalclip.config.builtin import config_path
from ordinalclip.config.typed import ConfigError, load_config
from ordinalclip.modeling.config import ModelConfig, count_rank_names

__all__ = [
    "FEW_SHOT_MIN_STEPS",
    "MAX_SEED",
    "MAX_TEXT_RANKS",
    "PRIOR_LR",
    "PRIOR_LR_FULL",
    "PRIOR_WEIGHT",
    "PRIOR_WEIGHT_FULL",
    "CsvColumns",
    "DataConfig",
    "DemoDataConfig",
    "FewShotConfig",
    "LabelShiftConfig",
    "LossConfig",
    "OptimConfig",
    "RunConfig",
    "TrainerConfig",
    "apply_recipe",
    "check_run_config",
    "headline",
    "load_run_config",
    "prior_applies",
    "starts_zero_shot",
    "text_width",
    "validates_at_start",
]


@dataclass
class CsvColumns:
    """Column names of a CSV sample list (or of the label CSV next to a ``.npy`` feature file)."""

    path: str = "path"
    label: str = "label"
    split: str | None = None  # set: each split keeps the rows whose value is "train" / "val" / "test"
    group: str | None = None  # optional sub-set name (per-group metrics)


@dataclass
class FewShotConfig:
    """Few-shot protocol (reference notes §2.2): keep ``shots`` random training images per rank."""

    shots: int | None = None  # null = off
    seed: int | None = None  # null = trainer.seed
    strict: bool = False  # true: a rank with fewer images than ``shots`` is an error (else it keeps all)


@dataclass
class LabelShiftConfig:
    """Label-distribution shift (reference notes §2.2): thin the ``top_k`` most frequent ranks to ``scale`` of
    their images."""

    top_k: int | None = None  # null = off
    scale: float = 0.1
    seed: int | None = None  # null = trainer.seed


@dataclass
class DemoDataConfig:
    """The built-in blur-level data set (``data.format: demo``); its rank count is ``model.num_ranks``."""

    crops_per_photo: int = 16
    size: int = 96
    seed: int = 0


@dataclass
class DataConfig:
    """Where samples come from and how they become tensors.

    ``format``:
      * ``list``: reference list files (``relative/path label`` lines); image paths are relative to ``root``
        (default: the list file's folder);
      * ``csv``: CSV files with a header (``columns``); with ``columns.split`` set, one file may hold all
        splits (``val``/``test`` default to the ``train`` file);
      * ``folder``: ``train``/``val``/``test`` are folders with one sub-folder per rank;
      * ``features``: ``.npz`` / ``.npy`` (+ CSV) / ``.safetensors`` feature files (model.image.kind:
        features); a file with a split column may serve all three splits;
      * ``benchmark``: ``benchmark`` + ``root`` (+ ``fold`` / ``category``), see
        :mod:`ordinalclip.data.benchmarks`;
      * ``demo``: the built-in blur-level data set, built under ``root`` (default: the user cache).

    Labels are integers (rank = label - ``rank_offset``) or names from ``rank_names`` / ``rank_names_file``.
    """

    format: Literal["list", "csv", "folder", "features", "benchmark", "demo"] = "list"
    root: str | None = None
    train: str | None = None
    val: str | None = None
    test: str | None = None
    splits_dir: str | None = None  # reuse splits saved by an earlier run (its splits/ folder)
    benchmark: Literal["morph2", "adience", "aesthetics", "hci"] | None = None
    fold: int = 0
    category: str = "all"
    images_root: str | None = None  # benchmark: images somewhere else than under root
    columns: CsvColumns = field(default_factory=CsvColumns)
    rank_offset: int = 0
    rank_names: list[str] | None = None
    rank_names_file: str | None = None
    few_shot: FewShotConfig = field(default_factory=FewShotConfig)
    label_shift: LabelShiftConfig = field(default_factory=LabelShiftConfig)
    image_size: int | None = None  # crop size; null = the image tower's input size
    resize: int | None = None  # square resize before the crop; null = round(image_size * 256 / 224)
    augment: bool = True  # training: random crop + horizontal flip (else the eval transform)
    normalize: Literal["tower", "imagenet"] = "tower"  # tower = the statistics the tower's weights expect
    mean: list[float] | None = None  # explicit normalisation (both mean and std), overrides ``normalize``
    std: list[float] | None = None
    batch_size: int = 32
    eval_batch_size: int | None = None  # null = batch_size
    num_workers: int = 0
    on_bad_image: Literal["raise", "skip"] = "raise"
    feature_cache: bool = True  # frozen image tower: compute its features once and train from them
    cache_dir: str | None = None  # null = <output_dir>/.cache/features
    demo: DemoDataConfig = field(default_factory=DemoDataConfig)


@dataclass
class OptimConfig:
    """Optimizer, learning rates per parameter group, freezing and the per-epoch schedule.

    ``radam`` is ``torch.optim.RAdam`` with decoupled weight decay. The reference used the LiyuanLucasLiu
    RAdam, which leaves parameters (and their decay) untouched for the first 5 steps (reference notes §3.7);
    torch's RAdam takes SGD-with-momentum-like steps there instead. The difference only shows in runs of a
    handful of steps.

    Every ``lr_*`` left null takes ``lr``; an lr of 0 freezes that group. ``lr_text`` applies only when the
    text tower is trainable (``model.text.freeze: false``), ``lr_logit_scale`` only with
    ``model.learn_logit_scale``.
    """

    name: Literal["radam", "adam", "adamw", "sgd"] = "radam"
    lr: float = 1e-4
    lr_context: float | None = None
    lr_ranks: float | None = None
    lr_image: float | None = None
    lr_text: float | None = None
    lr_logit_scale: float | None = None
    lr_prototypes: float | None = None  # the cosine baseline's prototype vectors
    weight_decay: float = 5e-4
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    momentum: float = 0.9  # sgd
    nesterov: bool = False  # sgd
    freeze_image: bool = False
    freeze_context: bool = False
    freeze_ranks: bool = False
    scheduler: Literal["cosine", "multistep", "none"] = "cosine"
    milestones: list[int] = field(default_factory=lambda: [60])  # multistep: epochs where lr *= gamma
    gamma: float = 0.1
    warmup_epochs: int = 0  # linear warm-up: factor (e + 1) / (warmup + 1) in epoch e < warmup


@dataclass
class LossConfig:
    """The training loss of softmax-output models (OrdinalCLIP, CoOp, cosine, linear); see
    :mod:`ordinalclip.losses`. CORAL / CORN heads always train with their own loss.

    ``name``: ``ordinalclip`` (CE + text->image KL, reference notes §1.6; ``kl_weight: 0`` = plain CE),
    ``sord``, the soft-label families ``beta`` / ``binomial`` / ``poisson`` / ``exponential`` /
    ``triangular``, ``cdw_ce``, ``emd``, ``wk``. Each parameter below applies to the loss named in its comment
    only.
    """

    name: Literal[
        "ordinalclip",
        "sord",
        "beta",
        "binomial",
        "poisson",
        "exponential",
        "triangular",
        "cdw_ce",
        "emd",
        "wk",
    ] = "ordinalclip"
    ce_weight: float = 1.0  # ordinalclip
    kl_weight: float = 1.0  # ordinalclip
    temperature: float = 10.0  # ordinalclip: sharpness of the KL target
    sord_alpha: float = 1.0  # sord: targets softmax(-sord_alpha * |k - y|)
    eta: float = 1.0  # soft-label families: weight of the soft label against the one-hot label
    exp_p: float = 1.0  # exponential: targets softmax(-|k - y|^exp_p / exp_tau)
    exp_tau: float = 1.0  # exponential
    triangular_alpha2: float = 0.05  # triangular: probability mass of each neighbouring rank
    beta_params: str = "standard"  # beta: dlordinal's parameter set (3 to 14 ranks)
    cdw_alpha: float = 1.0  # cdw_ce: distance exponent
    wk_penalty: Literal["linear", "quadratic"] = "quadratic"  # wk
    wk_log: bool = False  # wk: log of the ratio (de la Torre et al.'s original form)
    # Priors to stay near (any loss above; see penalties.prototype_prior_penalty / projection_prior_penalty):
    # prototype models (OrdinalCLIP, CoOp, prior_head, cosine): weight of the mean squared distance of the
    # normalised prototypes from those of the model as built (KgCoOp's penalty; CLAP's for a prior_head)
    prior_weight: float = 0.0
    # class-wise weights of that penalty: "fixed" (1 for every rank), "clap" (CLAP's: each rank's mean
    # zero-shot probability of the true rank on the training samples, penalties.clap_multipliers; no
    # validation split needed), "clap_alm" (the same, then updated after every epoch by the
    # augmented-Lagrangian rule, penalties.augmented_lagrangian_step)
    prior_constraint: Literal["fixed", "clap", "clap_alm"] = "fixed"
    # features tower with a learnable identity-initialised projection: weight of the mean squared entry of
    # P - I (ProLIP's penalty toward the pretrained projection)
    projection_weight: float = 0.0


FEW_SHOT_MIN_STEPS = 100  # default step budget of few-shot runs (see TrainerConfig.min_steps and the README)


@dataclass
class TrainerConfig:
    """Lightning Trainer settings (devices, strategies and multi-node runs are Lightning's)."""

    max_epochs: int = 100
    # Step budget: train at least this many optimizer steps, raising max_epochs when the data are too few to
    # reach it in max_epochs (few-shot subsets: 1 shot x 11 ranks at batch 32 is one step per epoch).
    # check_val_every_n_ epoch grows by the same factor, so the number of validations stays as configured.
    # null = FEW_SHOT_MIN_STEPS for few-shot runs (data.few_shot.shots set), 0 (off) otherwise.
    min_steps: int | None = None
    accelerator: str = "auto"
    devices: int | str | list[int] = "auto"
    strategy: str = "auto"
    num_nodes: int = 1
    precision: Literal[32, "32", "16-mixed", "bf16-mixed"] = "32"
    accumulate_grad_batches: int = 1
    gradient_clip_val: float | None = None
    seed: int = 42
    deterministic: bool = False
    # The headline prediction of the run's models: the rank expectation sum_k k p_k ("expectation") or the
    # point prediction ("argmax"; CORAL/CORN: thresholds passed). The CLI table, predict, serve and the report
    # show it first, and checkpoints are chosen on its validation MAE. auto: argmax when trainer.monitor is
    # set to an argmax metric (*_max: the paper configs select on val_mae_max), else the expectation.
    prediction: Literal["auto", "expectation", "argmax"] = "auto"
    monitor: str = "auto"  # auto = the validation MAE of the headline prediction (val_mae_exp / val_mae_max)
    monitor_mode: Literal["min", "max"] = "min"
    loggers: list[Literal["csv", "tensorboard"]] = field(default_factory=lambda: ["csv", "tensorboard"])
    progress_bar: bool = True
    log_every_n_steps: int = 50
    check_val_every_n_epoch: int = 1
    # validate the model as built before the first step, as a candidate for best.ckpt: a run never ends worse
    # on validation than it started (the zero-shot start of a language prior). auto: true where the model as
    # built is a zero-shot model (starts_zero_shot), false where step 0 is a random start (a learned
    # projection, random rank embeddings), which a small validation split can prefer by chance
    validate_at_start: bool | Literal["auto"] = "auto"
    # false (default): checkpoints leave out frozen towers and trunks that their pretrained source rebuilds
    # (e.g. a 90 MB text tower, an installed EfficientNet-Lite0 trunk); they are rebuilt from it
    # (model.clip / model.text / model.image) when the checkpoint is loaded. true: store them too.
    save_frozen_towers: bool = False


@dataclass
class RunConfig:
    """Everything a training run needs; written resolved into every run folder and checkpoint."""

    name: str = "run"
    output_dir: str = "runs"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    # How a new run trains (see apply_recipe): "reference" = as configured (the paper's OrdinalCLIP),
    # "prior" = a head initialised from the prompt model's prototypes and held near them, "auto" = prior
    # where a language prior is there to keep (few-shot, rank names, features already in the text tower's
    # space), else reference
    recipe: Literal["auto", "reference", "prior"] = "auto"

    def __post_init__(self) -> None:
        check_run_config(self)


# The prior recipe (README "Language priors"; chosen on the validation split of the AFINN benchmark,
# benchmarks/language_prior.py): a prior_head whose prototypes train at PRIOR_LR, held near the prompt
# model's prototypes with loss.prior_weight = PRIOR_WEIGHT / shots in few-shot runs (the fewer the labels, the
# more the prior counts: with a weight of 1, 100 steps on 2 words per rank drifted from val MAE 1.32 to 1.71)
# and PRIOR_WEIGHT_FULL on the whole training split, where the head trains at PRIOR_LR_FULL (val MAE 0.639 vs
# 0.645 at PRIOR_LR, mean of 3 seeds).
PRIOR_LR = 2e-3
PRIOR_LR_FULL = 5e-3
PRIOR_WEIGHT = 1000.0
PRIOR_WEIGHT_FULL = 1.0


def _rank_name_count(cfg: RunConfig) -> int | None:
    """How many names the prompts of ``cfg`` are given: ``base_rank_names`` (the rank learner's), else
    ``rank_names``, as a list or a file; None when neither is given."""
    p = cfg.model.prompts
    for names, file in ((p.base_rank_names, p.base_rank_names_file), (p.rank_names, p.rank_names_file)):
        count = count_rank_names(names, file)
        if count is not None:
            return count
    return None


def text_width(model: ModelConfig) -> int | None:
    """The joint width the text tower of ``model`` gives, read from configs without building anything:
    ``model.embed_dim``, a Hugging Face text model's ``hidden_size`` (None when a sentence-transformers Dense
    layer changes it), an open_clip architecture's ``embed_dim``; None when unknown."""
    import json

    if model.embed_dim is not None:
        return model.embed_dim
    try:
        if model.text.kind == "huggingface" and model.text.hf_model:
            from ordinalclip.modeling.backbones.hf_text import resolve_model_path

            folder = resolve_model_path(model.text.hf_model)
            modules = folder / "modules.json"
            if modules.is_file() and "Dense" in modules.read_text(encoding="utf-8"):
                return None
            return int(json.loads((folder / "config.json").read_text(encoding="utf-8"))["hidden_size"])
        if model.text.kind == "clip" and not model.clip.hf_model:
            if model.clip.custom is not None:
                return int(model.clip.custom["embed_dim"])
            if model.clip.name:
                import open_clip

                arch = open_clip.get_model_config(model.clip.name)
                return int(arch["embed_dim"]) if arch else None
    except (OSError, KeyError, ValueError, TypeError):  # not installed, not readable: unknown
        return None
    return None


def _features_in_text_space(m: ModelConfig) -> bool:
    """Whether ``m`` takes precomputed features as they are, in the text tower's space (``model.image.kind:
    features`` with ``project: identity``, or ``auto`` with features as wide as the text tower,
    :func:`text_width`)."""
    if m.image.kind != "features":
        return False
    if m.image.project in ("identity", False):
        return True
    return m.image.project == "auto" and m.image.input_dim is not None and m.image.input_dim == text_width(m)


def prior_applies(cfg: RunConfig) -> bool:
    """Whether ``recipe: auto`` chooses the prior recipe for ``cfg``: a run (few-shot or on the whole
    training split) of the prompt model (``model.arch: prompts``) with rank names, on features already in
    the text tower's space (:func:`_features_in_text_space`). CLIP image towers (the paper's settings) and
    features that need a learned projection (another tower's: the demo's image task) keep the reference
    recipe."""
    m = cfg.model
    return m.arch == "prompts" and bool(_rank_name_count(cfg)) and _features_in_text_space(m)


def starts_zero_shot(cfg: RunConfig) -> bool:
    """Whether the model of ``cfg`` as built is a zero-shot model, the start ``trainer.validate_at_start:
    auto`` keeps among the checkpoint candidates: a ``prior_head`` (the prior recipe), or a prompt model with
    rank names whose images are in the text tower's space (features kept as they are, or a CLIP image tower
    next to a CLIP text tower). A learned projection of another tower's features (the demo's image task),
    random base ranks and the baselines' heads start at random: a small validation split can prefer that start
    by chance, so it is no candidate."""
    m = cfg.model
    if m.arch == "prior_head":
        return True
    if m.arch != "prompts" or not _rank_name_count(cfg):
        return False
    return _features_in_text_space(m) or (m.image.kind == "clip" and m.text.kind == "clip")


def validates_at_start(cfg: RunConfig) -> bool:
    """``trainer.validate_at_start`` of ``cfg`` with ``auto`` resolved (:func:`starts_zero_shot`)."""
    flag = cfg.trainer.validate_at_start
    return starts_zero_shot(cfg) if flag == "auto" else bool(flag)


def apply_recipe(cfg: RunConfig) -> RunConfig:
    """Resolve ``cfg.recipe`` of a new run, in place (idempotent: a resolved config stays as it is); returns
    ``cfg``.

    ``prior``: ``model.arch: prior_head`` (the prompt model of ``model.prompts`` built, its prototypes turned
    into a learnable cosine head; C rank names given to the rank learner become its C base ranks, one prompt
    per name), ``loss.prior_weight`` = PRIOR_WEIGHT / ``data.few_shot.shots`` (PRIOR_WEIGHT_FULL on the whole
    training split; 1 with a class-wise ``loss.prior_constraint``, whose multipliers are the weights) and
    ``optim.lr_prototypes`` = PRIOR_LR (PRIOR_LR_FULL on the whole training split) unless set. On the
    whole training split (no ``data.few_shot.shots``) features kept as they are also get a learnable
    projection that starts as the identity (``model.image.project: identity_init``, ``optim.lr_image`` =
    PRIOR_LR unless set): the prior at step 0, the capacity that plenty of labels can use.
    ``reference``: nothing changes. ``auto``: prior where :func:`prior_applies`, else reference. Either
    way ``trainer.validate_at_start: auto`` is resolved for the model the recipe builds
    (:func:`validates_at_start`).
    """
    recipe = cfg.recipe
    if recipe == "auto":
        recipe = "prior" if prior_applies(cfg) else "reference"
    cfg.recipe = recipe
    if recipe == "prior":
        _apply_prior(cfg)
    cfg.trainer.validate_at_start = validates_at_start(cfg)  # of the model the recipe builds
    return cfg


def _apply_prior(cfg: RunConfig) -> None:
    """The prior recipe's settings (:func:`apply_recipe`)."""
    m = cfg.model
    if m.arch not in ("prompts", "prior_head"):
        raise ConfigError(
            f"recipe: prior starts from the prompt model's prototypes; model.arch is {m.arch!r} "
            "(use prompts, or recipe: reference)"
        )
    m.arch = "prior_head"
    if m.prompts.learner == "rank" and _rank_name_count(cfg) == m.num_ranks:
        m.prompts.num_base_ranks = m.num_ranks
    shots = cfg.data.few_shot.shots
    if cfg.loss.prior_weight == 0:
        if cfg.loss.prior_constraint != "fixed":
            cfg.loss.prior_weight = 1.0  # CLAP's multipliers are the weights
        else:
            cfg.loss.prior_weight = PRIOR_WEIGHT / shots if shots else PRIOR_WEIGHT_FULL
    if cfg.optim.lr_prototypes is None:
        cfg.optim.lr_prototypes = PRIOR_LR if shots else PRIOR_LR_FULL
    if shots is None and m.image.kind == "features" and m.image.project in ("auto", "identity", False):
        m.image.project = "identity_init"
        if cfg.optim.lr_image is None:
            cfg.optim.lr_image = PRIOR_LR


def _check_lower_bounds(*rows: tuple[str, float | None, float, bool]) -> None:
    """Each ``(key, value, low, closed)``: ``value >= low`` (closed) or ``value > low``; None passes."""
    for key, number, low, closed in rows:
        if number is not None and (number < low if closed else number <= low):
            raise ConfigError(f"{key}: expected a value {'>=' if closed else '>'} {low:g}, got {number}")


def _positive(value: int | None, key: str, minimum: int = 1) -> None:
    if value is not None and value < minimum:
        raise ConfigError(f"{key}: expected an integer >= {minimum}, got {value}")


MAX_SEED = 2**32 - 1  # numpy's seed range (Lightning's seed_everything seeds numpy, torch and random)
# Text models encode one prompt per rank (77 tokens) at every step: the activations grow with the rank count.
MAX_TEXT_RANKS = 4096
# tokens x width x float32 bytes x layers x about 4 tensors kept per layer for the backward pass
TEXT_GB_PER_RANK = 77 * 512 * 4 * 12 * 4 / 1e9


def _check_ranks_and_seeds(cfg: RunConfig) -> None:
    """Seeds in numpy's range, a rank count a text tower can encode, base ranks in [2, num_ranks]."""
    for key, seed in (
        ("trainer.seed", cfg.trainer.seed),
        ("data.few_shot.seed", cfg.data.few_shot.seed),
        ("data.label_shift.seed", cfg.data.label_shift.seed),
        ("data.demo.seed", cfg.data.demo.seed),
    ):
        if seed is not None and not 0 <= seed <= MAX_SEED:
            raise ConfigError(f"{key}: expected an integer in [0, 2**32 - 1 = {MAX_SEED}], got {seed}")
    m = cfg.model
    if m.uses_text() and m.num_ranks > MAX_TEXT_RANKS:
        raise ConfigError(
            f"model.num_ranks: {m.num_ranks} ranks means {m.num_ranks:,} prompts through the text tower at "
            f"every step, about {m.num_ranks * TEXT_GB_PER_RANK:,.0f} GB of activations for a ViT-B text "
            f"tower; model.arch {m.arch!r} takes at most {MAX_TEXT_RANKS} ranks (group the labels into "
            "fewer ranks, or use model.arch: cosine or linear)"
        )
    if m.arch == "prompts" and m.prompts.learner == "rank" and m.num_ranks >= 2:
        base = m.prompts.num_base_ranks
        # one base rank gives every rank the same prompt, unless each rank has its own context
        low = 1 if m.prompts.rank_specific_context else 2
        if base > m.num_ranks:
            raise ConfigError(
                f"model.prompts.num_base_ranks: expected at most model.num_ranks = {m.num_ranks}, got {base}"
            )
        if base < low:
            raise ConfigError(
                f"model.prompts.num_base_ranks: expected an integer in [{low}, {m.num_ranks}], got {base}"
                + (": one base rank gives every rank the same prompt" if base == 1 else "")
            )


def headline(trainer: TrainerConfig) -> tuple[str, str]:
    """``(prediction, monitor)`` of ``trainer`` with ``auto`` / null resolved so that they agree:
    ``("expectation", "val_mae_exp")`` by default, ``("argmax", "val_mae_max")`` for a config that monitors an
    argmax metric. ``prediction`` is the one place that says which prediction a run's models lead with.

    >>> headline(TrainerConfig())
    ('expectation', 'val_mae_exp')
    >>> headline(TrainerConfig(monitor="val_mae_max"))
    ('argmax', 'val_mae_max')
    >>> headline(TrainerConfig(prediction="argmax"))
    ('argmax', 'val_mae_max')
    """
    prediction = trainer.prediction
    if prediction == "auto":
        prediction = "argmax" if trainer.monitor.endswith("_max") else "expectation"
    monitor = trainer.monitor
    if monitor == "auto":
        monitor = "val_mae_exp" if prediction == "expectation" else "val_mae_max"
    return prediction, monitor


def check_run_config(cfg: RunConfig) -> None:
    """Value checks the type system cannot express (ranges, pairs that go together); resolves the headline
    prediction and the monitor (:func:`headline`)."""
    d, o, t = cfg.data, cfg.optim, cfg.trainer
    prediction, t.monitor = headline(t)
    t.prediction = prediction  # type: ignore[assignment]  # a resolved value of the Literal
    for key, value in (
        ("data.batch_size", d.batch_size),
        ("data.eval_batch_size", d.eval_batch_size),
        ("data.image_size", d.image_size),
        ("data.resize", d.resize),
        ("data.few_shot.shots", d.few_shot.shots),
        ("trainer.max_epochs", t.max_epochs),
        ("trainer.accumulate_grad_batches", t.accumulate_grad_batches),
        ("trainer.num_nodes", t.num_nodes),
        ("model.num_ranks", cfg.model.num_ranks),
    ):
        _positive(value, key)
    _positive(d.num_workers, "data.num_workers", 0)
    _positive(t.min_steps, "trainer.min_steps", 0)
    _positive(d.label_shift.top_k, "data.label_shift.top_k", 0)
    _positive(o.warmup_epochs, "optim.warmup_epochs", 0)
    if not 0.0 < d.label_shift.scale <= 1.0:
        raise ConfigError(f"data.label_shift.scale: expected a value in (0, 1], got {d.label_shift.scale}")
    if (d.mean is None) != (d.std is None):
        raise ConfigError("data.mean and data.std go together: set both or neither")
    for key, values in (("data.mean", d.mean), ("data.std", d.std)):
        if values is not None and len(values) != 3:
            raise ConfigError(f"{key}: expected 3 values (R, G, B), got {len(values)}")
    if d.std is not None and any(s <= 0 for s in d.std):
        raise ConfigError(f"data.std: expected positive values, got {d.std}")
    if d.image_size is not None and d.resize is not None and d.image_size > d.resize:
        raise ConfigError(f"data.image_size ({d.image_size}) is larger than data.resize ({d.resize})")
    if d.format == "benchmark" and d.benchmark is None:
        raise ConfigError(
            "data.format is 'benchmark' but data.benchmark is not set "
            "(one of 'morph2', 'adience', 'aesthetics', 'hci')"
        )
    for key, lr in (
        ("optim.lr", o.lr),
        ("optim.lr_context", o.lr_context),
        ("optim.lr_ranks", o.lr_ranks),
        ("optim.lr_image", o.lr_image),
        ("optim.lr_text", o.lr_text),
        ("optim.lr_logit_scale", o.lr_logit_scale),
        ("optim.lr_prototypes", o.lr_prototypes),
    ):
        if lr is not None and lr < 0:
            raise ConfigError(f"{key}: a learning rate must be >= 0, got {lr}")
    # Every float option has a range (non-finite values are refused when the config is read, config.typed).
    _check_lower_bounds(
        ("optim.weight_decay", o.weight_decay, 0.0, True),
        ("optim.eps", o.eps, 0.0, False),
        ("optim.momentum", o.momentum, 0.0, True),
        ("optim.gamma", o.gamma, 0.0, False),
        ("loss.ce_weight", cfg.loss.ce_weight, 0.0, True),
        ("loss.kl_weight", cfg.loss.kl_weight, 0.0, True),
        ("loss.temperature", cfg.loss.temperature, 0.0, False),
        ("loss.prior_weight", cfg.loss.prior_weight, 0.0, True),
        ("loss.projection_weight", cfg.loss.projection_weight, 0.0, True),
        ("trainer.gradient_clip_val", t.gradient_clip_val, 0.0, True),
        ("model.prompts.init_std", cfg.model.prompts.init_std, 0.0, True),
        ("model.logit_scale", cfg.model.logit_scale, 0.0, False),
    )
    for i, beta in enumerate(o.betas):
        if not 0.0 <= beta < 1.0:
            raise ConfigError(f"optim.betas[{i}]: expected a value in [0, 1), got {beta}")
    _check_ranks_and_seeds(cfg)
    _check_loss(cfg)


def _check_loss(cfg: RunConfig) -> None:
    lc = cfg.loss
    if cfg.model.arch in ("coral", "corn") and lc.name != "ordinalclip":
        raise ConfigError(
            f"loss.name: {lc.name!r} is a loss of softmax outputs; model.arch {cfg.model.arch!r} "
            "trains with its own loss (leave loss.name at 'ordinalclip')"
        )
    _check_lower_bounds(
        ("loss.sord_alpha", lc.sord_alpha, 0.0, False),
        ("loss.exp_tau", lc.exp_tau, 0.0, False),
        ("loss.exp_p", lc.exp_p, 0.0, False),
        ("loss.cdw_alpha", lc.cdw_alpha, 0.0, False),
    )
    if not 0.0 <= lc.eta <= 1.0:
        raise ConfigError(f"loss.eta: expected a value in [0, 1], got {lc.eta}")
    if lc.name == "beta" and lc.beta_params == "standard" and not 3 <= cfg.model.num_ranks <= 14:
        # dlordinal's standard beta parameters are tabulated for 3 to 14 ranks only
        raise ConfigError(
            f"loss.name: 'beta' soft labels exist for 3 to 14 ranks (dlordinal's standard set); "
            f"model.num_ranks is {cfg.model.num_ranks}: choose another loss"
        )
    if not 0.0 < lc.triangular_alpha2 < 0.5:
        raise ConfigError(f"loss.triangular_alpha2: expected a value in (0, 0.5), got {lc.triangular_alpha2}")


def load_run_config(paths: Sequence[str | os.PathLike[str]], overrides: Iterable[str] = ()) -> RunConfig:
    """Merge the YAML files in order, apply ``key.path=value`` overrides, and check the result.

    Each entry is a YAML file or the name of a built-in config (``"tiny"``, ``"morph"``; see
    :func:`ordinalclip.config.builtin.config_path`).
    """
    if not paths:
        raise ConfigError("no config file given (e.g. -c tiny, or -c my_config.yaml)")
    return load_config(RunConfig, [config_path(p) for p in paths], overrides)
