"""Image towers: images (or precomputed features) in, one feature vector per image out.

Every tower has ``output_dim`` (the joint width E after its projection) and ``preprocess`` (the normalisation
its weights expect). Torchvision towers end in a bias-free projection to E, as the reference does (reference
notes §1.4).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

log = logging.getLogger(__name__)

IMAGENET_PREPROCESS = {"size": 224, "mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)}


def _projection(in_dim: int, out_dim: int) -> nn.Linear:
    """Bias-free projection into the joint space, kaiming-normal (fan_out, linear) like the reference."""
    layer = nn.Linear(in_dim, out_dim, bias=False)
    nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="linear")
    return layer


def output_dim(tower: nn.Module) -> int:
    """The feature width E of an image or text tower (every tower sets an int ``output_dim``)."""
    dim = getattr(tower, "output_dim", None)
    if not isinstance(dim, int):
        raise TypeError(f"{type(tower).__name__} has no int output_dim (got {dim!r})")
    return dim


class ClipImageTower(nn.Module):
    """CLIP's own visual tower (its output is already in the joint space)."""

    def __init__(self, visual: nn.Module, preprocess: dict | None = None):
        super().__init__()
        self.visual = visual
        self.output_dim = output_dim(visual)
        self.preprocess = dict(preprocess or IMAGENET_PREPROCESS)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, E)."""
        out = self.visual(images)
        return out[0] if isinstance(out, tuple) else out  # CoCa's tower also returns its tokens


@dataclass
class LoadReport:
    """What a partial (name- and shape-matched) weight load did."""

    loaded: list[str] = field(default_factory=list)
    shape_mismatch: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"loaded {len(self.loaded)} tensors; kept {len(self.missing)} initialised ({self.missing[:4]}"
            f"{'...' if len(self.missing) > 4 else ''}); skipped "
            f"{len(self.shape_mismatch)} with another shape "
            f"and {len(self.unexpected)} unknown names"
        )


def load_matching(module: nn.Module, state: dict[str, torch.Tensor]) -> LoadReport:
    """Copy every tensor of ``state`` whose name and shape match a tensor of ``module``; report the rest."""
    own = module.state_dict()
    report = LoadReport()
    matched = {}
    for name, value in state.items():
        if name not in own:
            report.unexpected.append(name)
        elif own[name].shape != value.shape:
            report.shape_mismatch.append(name)
        else:
            matched[name] = value
            report.loaded.append(name)
    report.missing = [n for n in own if n not in matched]
    module.load_state_dict(matched, strict=False)
    return report


class TorchvisionTower(nn.Module):
    """Torchvision VGG-16 or ResNet-50 whose last layer is replaced by a bias-free projection to
    ``output_dim``.

    Args:
        arch: ``"vgg16"`` or ``"resnet50"``.
        output_dim: joint width E.
        weights: optional local file (state dict or safetensors) loaded by name and shape, e.g. ImageNet or
            IMDB-WIKI weights; the new projection stays initialised unless the file has one of the same shape.
    """

    def __init__(
        self, arch: Literal["vgg16", "resnet50"], output_dim: int, weights: str | os.PathLike | None = None
    ):
        super().__init__()
        import torchvision

        if arch == "vgg16":
            net = torchvision.models.vgg16(weights=None)
            net.classifier[6] = _projection(4096, output_dim)
        elif arch == "resnet50":
            net = torchvision.models.resnet50(weights=None)
            net.fc = _projection(2048, output_dim)
        else:
            raise ValueError(f"unknown torchvision tower {arch!r}; expected vgg16 or resnet50")
        self.net = net
        self.arch = arch
        self.output_dim = output_dim
        self.preprocess = dict(IMAGENET_PREPROCESS)
        self.load_report: LoadReport | None = None
        if weights is not None:
            from ordinalclip.modeling.backbones.clip import read_state_dict

            self.load_report = load_matching(self.net, read_state_dict(weights))
            log.info("%s weights from %s: %s", arch, weights, self.load_report.summary())

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, E)."""
        return self.net(images)

    def head_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters of the projection that replaced the last layer (trains while the trunk is frozen)."""
        last = self.net.fc if self.arch == "resnet50" else self.net.classifier[6]
        return last.parameters()


class TimmTower(nn.Module):
    """A timm image model (any of ``timm.list_models()``), its classifier removed, then a bias-free
    projection to
    ``output_dim``.

    Args:
        model_name: the timm architecture, e.g. ``"convnext_tiny"``, ``"vit_base_patch16_224"``.
        output_dim: joint width E.
        weights: optional local file (state dict or safetensors, e.g. timm's ``model.safetensors``) loaded by
            name
            and shape; without it the weights are random. Nothing is downloaded.
        model_kwargs: extra ``timm.create_model`` arguments (``img_size``, ``drop_path_rate``, ...).

    ``preprocess`` is the model's own (timm's data config): input size, the resize its ``crop_pct`` implies,
    mean
    and std (the resize is square and bilinear, as for every tower here).
    """

    def __init__(
        self,
        model_name: str,
        output_dim: int,
        weights: str | os.PathLike | None = None,
        model_kwargs: dict | None = None,
    ):
        super().__init__()
        timm = _import_timm()
        if not timm.is_model(model_name):
            import difflib

            close = difflib.get_close_matches(model_name, timm.list_models(), n=3)
            raise ValueError(
                f"model.image.timm_model: unknown timm model {model_name!r}"
                + (f" (did you mean {close}?)" if close else "")
            )
        self.net = timm.create_model(model_name, pretrained=False, num_classes=0, **(model_kwargs or {}))
        self.model_name = model_name
        self.proj = _projection(int(self.net.num_features), output_dim)
        self.output_dim = output_dim
        self.load_report: LoadReport | None = None
        if weights is not None:
            from ordinalclip.modeling.backbones.clip import read_state_dict

            self.load_report = load_matching(self.net, read_state_dict(weights))
            if not self.load_report.loaded:
                raise ValueError(
                    f"model.image.weights: {weights} has no tensor that fits timm model {model_name!r} "
                    f"({self.load_report.summary()})"
                )
            log.info("%s weights from %s: %s", model_name, weights, self.load_report.summary())
        cfg = timm.data.resolve_data_config({}, model=self.net)
        size = int(cfg["input_size"][-1])
        self.preprocess = {
            "size": size,
            "resize": max(size, round(size / float(cfg.get("crop_pct") or 1.0))),
            "mean": tuple(float(v) for v in cfg["mean"]),
            "std": tuple(float(v) for v in cfg["std"]),
        }

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, E)."""
        return self.project(self.encode_trunk(images))

    def encode_trunk(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> the timm model's pooled features (B, F), before the projection."""
        return self.net(images)

    def project(self, features: torch.Tensor) -> torch.Tensor:
        """Trunk features (B, F) -> (B, E)."""
        return self.proj(features)

    def head_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters of the projection (trains while the trunk is frozen)."""
        return self.proj.parameters()


def _import_timm():
    try:
        import timm
        import timm.data
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "timm image towers need the `timm` package (an ordinalclip dependency): pip install timm"
        ) from err
    return timm


class FeatureTower(nn.Module):
    """The input already is a feature vector (e.g. precomputed CLIP features), mapped into the joint space.

    Args:
        input_dim: width F of the feature vectors.
        output_dim: joint width E (None: F).
        projection: ``"identity"`` (no parameters; F must equal E), ``"linear"`` (learnable bias-free F -> E,
            kaiming-normal like the other towers' projections) or ``"identity_init"`` (learnable F -> F
            starting as the identity: training begins from the features as they are). The default keeps the
            old meaning of ``output_dim``: a projection when it is given, none otherwise.
    """

    def __init__(
        self,
        input_dim: int,
        output_dim: int | None = None,
        projection: Literal["identity", "linear", "identity_init"] | None = None,
    ):
        super().__init__()
        if projection is None:
            projection = "linear" if output_dim else "identity"
        output_dim = output_dim or input_dim
        if projection in ("identity", "identity_init") and output_dim != input_dim:
            raise ValueError(
                f"a {projection} projection keeps the width: features are {input_dim}-d, the "
                "joint "
                f"width is {output_dim}"
            )
        self.input_dim = input_dim
        self.output_dim = output_dim
        self.projection = projection
        if projection == "identity":
            self.proj: nn.Module = nn.Identity()
        elif projection == "linear":
            self.proj = _projection(input_dim, output_dim)
        elif projection == "identity_init":
            self.proj = nn.Linear(input_dim, input_dim, bias=False)
            with torch.no_grad():
                self.proj.weight.copy_(torch.eye(input_dim))
        else:
            raise ValueError(f"unknown projection {projection!r}; expected identity, linear or identity_init")
        self.preprocess: dict = {}

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(B, F) -> (B, E)."""
        if features.dim() != 2 or features.shape[1] != self.input_dim:
            raise ValueError(f"expected features of shape (B, {self.input_dim}), got {tuple(features.shape)}")
        return self.proj(features)
