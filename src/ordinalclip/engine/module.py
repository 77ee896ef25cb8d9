"""The LightningModule: OrdinalCLIP losses in training, whole-epoch ordinal metrics in evaluation."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any, cast

import lightning as L
import torch
from torch import Tensor, nn

from ordinalclip import __version__
from ordinalclip.checkpoint import CHECKPOINT_FORMAT, CHECKPOINT_KEY, complete_state
from ordinalclip.config import RunConfig
from ordinalclip.config.typed import ConfigError, to_dict
from ordinalclip.data import RankSpace
from ordinalclip.engine.errors import NonFiniteLossError
from ordinalclip.engine.optim import build_optimizer, build_scheduler, has_trainable
from ordinalclip.losses import make_softmax_loss, model_loss
from ordinalclip.metrics import (
    NonFiniteOutputError,
    ordinal_metrics,
    point_predictions,
)
from ordinalclip.penalties import (
    augmented_lagrangian_step,
    clap_multipliers,
    projection_prior_penalty,
    prototype_distances,
    prototype_prior_penalty,
)

# LossConfig's penalties toward the model as built
PRIOR_KEYS = ("prior_weight", "prior_constraint", "projection_weight")
CONSTRAINT_KEY = "prior_constraint"  # the checkpoint's entry of the class-wise penalty weights (CLAP)


def rank_info(ranks: RankSpace | None) -> dict[str, Any] | None:
    """Plain-dict description of a rank space (stored in checkpoints)."""
    if ranks is None:
        return None
    return {
        "num_ranks": ranks.num_ranks,
        "names": list(ranks.names) if ranks.names else None,
        "offset": ranks.offset,
    }


class OrdinalModule(L.LightningModule):
    """Trains ``model`` (an :class:`~ordinalclip.modeling.OrdinalCLIP`, a baseline or a head) with the loss of
    ``cfg.loss`` (:func:`~ordinalclip.losses.make_softmax_loss`; CORAL / CORN heads with their own) and
    evaluates it over whole epochs.

    Evaluation computes the C prototypes once per epoch, collects the (N, C) logits of every batch (gathered
    across devices) and logs ``<stage>_<metric>`` for every key of
    :func:`~ordinalclip.metrics.ordinal_metrics` (``stage`` is ``val`` or ``test``). ``eval_results[stage]``
    keeps the last epoch's metrics and per-group metrics (when samples carry a group, e.g. the aesthetics
    category).

    Args:
        model: maps (B, ...) inputs to (B, C) logits; ``forward(x, prototypes=None)``.
        cfg: the run config (optimizer, loss weights; stored in every checkpoint).
        ranks: the label -> rank mapping (stored in every checkpoint for predict/export).
        features_input: inputs are the frozen image tower's features (feature cache), not images.
    """

    model: Any  # OrdinalCLIP or a head (duck-typed: num_ranks, prototypes(), forward_features())

    def __init__(
        self, model: nn.Module, cfg: RunConfig, ranks: RankSpace | None = None, features_input: bool = False
    ) -> None:
        super().__init__()
        self.model = model
        self.cfg = cfg
        self.ranks = ranks
        self.features_input = features_input
        self.eval_results: dict[str, dict[str, Any]] = {}
        self._prototypes: Tensor | None = None
        self._outputs: list[tuple[Tensor, Tensor, Tensor]] = []
        self._loss: Callable[[Tensor, Tensor], dict[str, Tensor]] | None = None
        if getattr(model, "output_kind", "softmax") == "softmax":
            params = dataclasses.asdict(cfg.loss)  # LossConfig's fields are make_softmax_loss's parameters
            for key in PRIOR_KEYS:  # ... but for the prior penalties, added here
                params.pop(key)
            # Soft-label matrices are built once here, not per step.
            self._loss = make_softmax_loss(
                params.pop("name"), int(getattr(model, "num_ranks", cfg.model.num_ranks)), **params
            )
        self._has_prior = False
        self._projection: nn.Parameter | None = None
        # CLAP's class-wise weights of the prototype penalty and the augmented Lagrangian's penalty parameters
        # (C,): set from the training samples when training starts, kept in checkpoints (CONSTRAINT_KEY).
        # Buffers, so that they follow the module to its device: Lightning restores a checkpoint before the
        # strategy moves the module. Not persistent: the state_dict stays that of the model.
        self._multipliers: Tensor | None
        self._penalty: Tensor | None
        self.register_buffer("_multipliers", None, persistent=False)
        self.register_buffer("_penalty", None, persistent=False)
        self._init_priors(model, cfg)

    def _init_priors(self, model: nn.Module, cfg: RunConfig) -> None:
        """The step-0 values the prior penalties pull toward: the prototypes of the model as built (computed
        again, identically, when a run resumes: the model is rebuilt from its config and seed before the
        checkpoint is loaded, so the prior never travels in checkpoints)."""
        if cfg.loss.prior_weight > 0:
            if not hasattr(model, "prototypes"):
                raise ConfigError(
                    f"loss.prior_weight: model.arch {cfg.model.arch!r} has no prototypes to keep near "
                    "their prior (use ordinalclip, prior_head or cosine, or set it to 0)"
                )
            with torch.no_grad():
                prior = self.model.prototypes().detach().clone()
            # a buffer so it follows the module to its device; not persistent: rebuilt, never loaded
            self.register_buffer("prior_prototypes", prior, persistent=False)
            self._has_prior = True
        if cfg.loss.projection_weight > 0:
            proj = getattr(getattr(getattr(model, "image_tower", None), "proj", None), "weight", None)
            square = isinstance(proj, nn.Parameter) and proj.dim() == 2 and proj.shape[0] == proj.shape[1]
            if not square or getattr(model.image_tower, "projection", None) != "identity_init":
                raise ConfigError(
                    "loss.projection_weight: needs a features tower with a learnable projection that starts "
                    "as the identity (model.image.kind: features, model.image.project: identity_init)"
                )
            self._projection = proj

    def prior_penalties(self, prototypes: Tensor | None = None) -> dict[str, Tensor]:
        """The weighted prior penalties of the current model (``loss.prior_weight``,
        ``loss.projection_weight``): ``{"prior": ..., "projection": ...}``, the ones that are on."""
        out: dict[str, Tensor] = {}
        lc = self.cfg.loss
        if self._has_prior:
            protos = self.model.prototypes() if prototypes is None else prototypes
            prior = cast(Tensor, self.prior_prototypes)
            weights = None
            if lc.prior_constraint != "fixed":
                if self._multipliers is None:
                    raise RuntimeError(
                        "loss.prior_constraint: the class-wise weights are set when training starts"
                    )
                weights = self._multipliers
            out["prior"] = lc.prior_weight * prototype_prior_penalty(protos, prior, weights)
        if self._projection is not None:
            out["projection"] = lc.projection_weight * projection_prior_penalty(self._projection)
        return out

    # -- forward ---------------------------------------------------------------------------------------------
    def forward(self, x: Tensor, prototypes: Tensor | None = None) -> Tensor:
        """(B, ...) inputs -> (B, C) logits; with ``features_input`` x is (B, E) image-tower features."""
        extra = {} if prototypes is None else {"prototypes": prototypes}
        if not self.features_input:
            return self.model(x, **extra)
        # cached trunk features (engine.cache) still go through the tower's projection, which may train
        project = getattr(getattr(self.model, "image_tower", None), "project", None)
        feats = project(x) if callable(project) else x
        return self.model.forward_features(feats, **extra)  # the model's own head after the image tower

    def train(self, mode: bool = True) -> OrdinalModule:
        super().train(mode)
        if mode:
            # Frozen towers stay in eval mode (no batch-norm statistics updates, no dropout): a frozen tower
            # then computes the same function in training and evaluation, which the feature cache relies on.
            for name in ("image_tower", "text_tower"):
                tower = getattr(self.model, name, None)
                if isinstance(tower, nn.Module) and not any(p.requires_grad for p in tower.parameters()):
                    tower.eval()
        return self

    # -- training --------------------------------------------------------------------------------------------
    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch[0], batch[1]
        # the prototypes once per step, shared by the logits and the prior penalty
        protos = self.model.prototypes() if self._has_prior else None
        logits = self(x, protos)
        if self._loss is not None:
            out = self._loss(logits, y)
        else:
            out = model_loss(logits, y, self.model.output_kind)
        penalties = self.prior_penalties(protos)
        if penalties:
            out = {**out, **penalties, "loss": out["loss"] + sum(penalties.values())}
        loss = out["loss"]
        if not torch.isfinite(loss):
            raise NonFiniteLossError(float(loss.detach()), self.global_step, self.current_epoch, batch_idx)
        n = int(y.shape[0])
        self.log("train_loss", loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=n)
        self.log_dict(
            {f"train_{k}": v for k, v in out.items() if k != "loss"},
            on_step=False,
            on_epoch=True,
            batch_size=n,
        )
        return loss

    def configure_optimizers(self) -> Any:  # Lightning's optimizer-and-scheduler dict, or None
        if not has_trainable(self.model):
            return None  # evaluated as built (EvaluateOnly stops fit before any step)
        optimizer = build_optimizer(self.model, self.cfg.optim)
        scheduler = build_scheduler(optimizer, self.cfg.optim, self.cfg.trainer.max_epochs)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}

    def on_train_start(self) -> None:
        if self._has_prior and self.cfg.loss.prior_constraint != "fixed" and self._multipliers is None:
            self._multipliers = self._zero_shot_multipliers()
            self._penalty = torch.zeros_like(self._multipliers)
        # The learning rate is a function of the epoch: recompute it from the (possibly resumed) scheduler
        # state, so that resuming with a longer trainer.max_epochs follows the new schedule from where it is.
        for sched_cfg in self.trainer.lr_scheduler_configs:
            sched = sched_cfg.scheduler
            if isinstance(sched, torch.optim.lr_scheduler.LambdaLR):
                for group, base, fn in zip(sched.optimizer.param_groups, sched.base_lrs, sched.lr_lambdas):
                    group["lr"] = base * fn(sched.last_epoch)

    def _zero_shot_multipliers(self) -> Tensor:
        """CLAP's initial weights (:func:`~ordinalclip.penalties.clap_multipliers`): the model as it starts
        (the prior) scores every training sample once, in order, with the global random state left as it was
        (a training view's augmentation draws from it)."""
        from torch.utils.data import DataLoader

        dm = getattr(self.trainer, "datamodule", None)
        if dm is None or not hasattr(dm, "dataset"):
            raise ConfigError(
                "loss.prior_constraint: clap needs the run's data module (its training samples)"
            )
        loader = DataLoader(dm.dataset("train"), batch_size=self.cfg.data.batch_size, shuffle=False)
        logits, labels = [], []
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad(), torch.random.fork_rng(devices=[]):
                protos = self.model.prototypes()
                for batch in loader:
                    logits.append(self(batch[0].to(self.device), protos).float())
                    labels.append(torch.as_tensor(batch[1]).to(self.device))
        finally:
            self.train(was_training)
        return clap_multipliers(torch.cat(logits), torch.cat(labels))

    def on_train_epoch_end(self) -> None:
        # the augmented Lagrangian's outer step: the weights follow how far each rank's prototype has moved
        if self.cfg.loss.prior_constraint == "clap_alm" and self._multipliers is not None:
            assert self._penalty is not None
            with torch.no_grad():
                moved = prototype_distances(self.model.prototypes(), cast(Tensor, self.prior_prototypes))
            self._multipliers, self._penalty = augmented_lagrangian_step(
                moved, self._multipliers, self._penalty
            )

    # -- evaluation ------------------------------------------------------------------------------------------
    def _eval_step(self, batch: tuple[Tensor, Tensor, Tensor]) -> None:
        x, y, idx = batch
        if self._prototypes is None and hasattr(self.model, "prototypes"):
            self._prototypes = self.model.prototypes()  # once per evaluation epoch
        logits = self(x, self._prototypes)
        self._outputs.append((logits.float(), y.long(), idx.long()))

    def validation_step(self, batch: tuple[Tensor, Tensor, Tensor], batch_idx: int) -> None:
        self._eval_step(batch)

    def test_step(self, batch: tuple[Tensor, Tensor, Tensor], batch_idx: int) -> None:
        self._eval_step(batch)

    def on_validation_epoch_start(self) -> None:
        self._reset_eval()

    def on_test_epoch_start(self) -> None:
        self._reset_eval()

    def on_validation_epoch_end(self) -> None:
        self._finish_eval("val")

    def on_test_epoch_end(self) -> None:
        self._finish_eval("test")

    def _reset_eval(self) -> None:
        self._prototypes = None
        self._outputs = []

    def _gather(self, t: Tensor) -> Tensor:
        """Concatenate a (n_r, ...) tensor over all ranks (shards may differ in size)."""
        if self.trainer.world_size == 1:
            return t
        sizes = torch.as_tensor(self.all_gather(torch.tensor([t.shape[0]], device=self.device))).view(-1)
        longest = int(sizes.max())
        padded = torch.cat([t, t.new_zeros((longest - t.shape[0], *t.shape[1:]))])
        gathered = torch.as_tensor(self.all_gather(padded))  # (world, longest, ...)
        return torch.cat([gathered[r, : int(n)] for r, n in enumerate(sizes.tolist())])

    def _finish_eval(self, stage: str) -> None:
        num_ranks = int(self.model.num_ranks)
        kind = getattr(self.model, "output_kind", "softmax")
        if self._outputs:
            logits, labels, idx = (torch.cat(parts) for parts in zip(*self._outputs))
        else:
            logits = torch.zeros(0, num_ranks - (kind != "softmax"), device=self.device)
            labels = idx = torch.zeros(0, dtype=torch.long, device=self.device)
        logits, labels, idx = self._gather(logits), self._gather(labels), self._gather(idx)
        self._reset_eval()
        if logits.shape[0] == 0:
            return
        self._check_finite(stage, logits, idx)
        metrics = ordinal_metrics(logits.cpu(), labels.cpu(), kind)
        # every rank holds the same values; syncing only silences a warning
        sync = self.trainer.world_size > 1
        for k, v in metrics.items():
            self.log(f"{stage}_{k}", float(v), prog_bar=k == "mae_max", sync_dist=sync)
        if self.trainer.sanity_checking:
            return
        probs, pred_exp, pred_max = point_predictions(logits.cpu(), kind)
        result: dict[str, Any] = {
            "num_samples": int(logits.shape[0]),
            "metrics": _finite(metrics),
            "predictions": {
                "index": idx.cpu(),
                "label": labels.cpu(),
                "pred_exp": pred_exp,
                "pred_max": pred_max,
                "probs": probs,
            },
        }
        groups = self._groups(stage)
        if groups is not None and any(g is not None for g in groups):
            order = idx.cpu().tolist()
            per_group: dict[str, list[int]] = {}
            for row, i in enumerate(order):
                if groups[i] is not None:
                    per_group.setdefault(str(groups[i]), []).append(row)
            result["groups"] = {
                g: _finite(ordinal_metrics(logits.cpu()[rows], labels.cpu()[rows], kind))
                for g, rows in sorted(per_group.items())
            }
        self.eval_results[stage] = result

    def _check_finite(self, stage: str, logits: Tensor, idx: Tensor) -> None:
        """NaN logits would end as null metrics in a run that exits 0: stop, naming the first bad sample."""
        bad = ~torch.isfinite(logits).all(dim=1)
        if not bool(bad.any()):
            return
        first = int(idx[bad][0])
        dm = getattr(self._trainer, "datamodule", None) if self._trainer is not None else None
        samples = dm.eval_samples(stage) if dm is not None and hasattr(dm, "eval_samples") else []
        where = samples[first].source if first < len(samples) else f"sample {first}"
        raise NonFiniteOutputError(f"{stage} samples", int(bad.sum()), int(logits.shape[0]), where)

    def _groups(self, stage: str) -> list[str | None] | None:
        dm = getattr(self.trainer, "datamodule", None)
        return dm.groups(stage) if dm is not None and hasattr(dm, "groups") else None

    # -- checkpoints -----------------------------------------------------------------------------------------
    def frozen_tower_prefixes(self) -> list[str]:
        """State-dict prefixes of the towers a checkpoint leaves out (``trainer.save_frozen_towers:
        false``)."""
        if self.cfg.trainer.save_frozen_towers:
            return []
        out = []
        for name in ("image_tower", "text_tower"):
            tower = getattr(self.model, name, None)
            params = list(tower.parameters()) if isinstance(tower, nn.Module) else []
            if params and not any(p.requires_grad for p in params) and _rebuildable(self.cfg, name):
                out.append(f"model.{name}.")
        if "model.image_tower." not in out:  # a frozen pretrained trunk under a projection that trains
            from ordinalclip.engine.towers import rebuildable_trunk_prefixes

            out += rebuildable_trunk_prefixes(self.model, self.cfg)
        return out

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        omitted = self.frozen_tower_prefixes()
        if omitted:
            checkpoint["state_dict"] = {
                k: v for k, v in checkpoint["state_dict"].items() if not k.startswith(tuple(omitted))
            }
        checkpoint[CHECKPOINT_KEY] = {
            "format": CHECKPOINT_FORMAT,
            "version": __version__,
            "config": to_dict(self.cfg),
            "ranks": rank_info(self.ranks),
            "omitted": omitted,
        }
        if self._multipliers is not None and self._penalty is not None:
            checkpoint[CONSTRAINT_KEY] = {
                "multipliers": self._multipliers.detach().cpu(),
                "penalty": self._penalty.detach().cpu(),
            }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["state_dict"] = complete_state(checkpoint, self.state_dict())
        saved = checkpoint.get(CONSTRAINT_KEY)
        if saved is not None:  # a resumed run goes on with its weights, not the trained model's confidence
            self._multipliers = saved["multipliers"]
            self._penalty = saved["penalty"]


def _rebuildable(cfg: RunConfig, tower: str) -> bool:
    """Whether ``tower`` is rebuilt with the same weights from its config alone (a pretrained source, not a
    random initialisation)."""
    m = cfg.model
    pretrained_clip = m.clip.pretrained is not None or bool(m.clip.hf_model)
    if tower == "text_tower":
        return m.text.kind == "huggingface" or (m.text.kind == "clip" and pretrained_clip)
    # torchvision / EfficientNet / timm towers end in a randomly initialised projection: always saved
    return m.image.kind == "clip" and pretrained_clip


def _finite(metrics: dict[str, float]) -> dict[str, float | None]:
    """JSON has no NaN: undefined metrics become null."""
    return {k: (float(v) if math.isfinite(float(v)) else None) for k, v in metrics.items()}
