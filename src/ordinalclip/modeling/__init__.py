"""The model side of ordinalclip: plain ``nn.Module``s built from typed configs.

Nothing here imports the data, engine or CLI layers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ordinalclip.lazy import lazy_attributes

if TYPE_CHECKING:  # for type checkers; never run
    from ordinalclip.modeling.backbones.clip import (
        ClipBundle,
        ClipLoadError,
        Preprocess,
        load_clip,
        read_state_dict,
    )
    from ordinalclip.modeling.backbones.image import (
        ClipImageTower,
        FeatureTower,
        TorchvisionTower,
        load_matching,
    )
    from ordinalclip.modeling.backbones.text import ClipTextTower, PromptEmbeddings
    from ordinalclip.modeling.build import (
        build_image_tower,
        build_model,
        build_prompt_learner,
        build_text_tower,
    )
    from ordinalclip.modeling.config import (
        ClipConfig,
        ImageTowerConfig,
        ModelConfig,
        PromptConfig,
        TextTowerConfig,
    )
    from ordinalclip.modeling.heads import (
        LinearClassifier,
        OrdinalBinaryHead,
        encode_texts,
        zero_shot_prototypes,
    )
    from ordinalclip.modeling.ordinalclip import CosineClassifier, OrdinalCLIP
    from ordinalclip.modeling.prompts import PlainPromptLearner, RankPromptLearner, interpolation_matrix

__all__ = [
    "ClipBundle",
    "ClipConfig",
    "ClipImageTower",
    "ClipLoadError",
    "ClipTextTower",
    "CosineClassifier",
    "FeatureTower",
    "ImageTowerConfig",
    "ModelConfig",
    "OrdinalCLIP",
    "PlainPromptLearner",
    "Preprocess",
    "PromptConfig",
    "PromptEmbeddings",
    "RankPromptLearner",
    "TextTowerConfig",
    "TorchvisionTower",
    "build_image_tower",
    "build_model",
    "build_prompt_learner",
    "build_text_tower",
    "interpolation_matrix",
    "load_clip",
    "load_matching",
    "read_state_dict",
    "LinearClassifier",
    "OrdinalBinaryHead",
    "encode_texts",
    "zero_shot_prototypes",
]

# module -> its attributes (as the TYPE_CHECKING imports above list them), imported on first use
__getattr__, __dir__ = lazy_attributes(
    __name__,
    globals(),
    {
        ".backbones.clip": "ClipBundle ClipLoadError Preprocess load_clip read_state_dict",
        ".backbones.image": "ClipImageTower FeatureTower TorchvisionTower load_matching",
        ".backbones.text": "ClipTextTower PromptEmbeddings",
        ".build": "build_image_tower build_model build_prompt_learner build_text_tower",
        ".config": "ClipConfig ImageTowerConfig ModelConfig PromptConfig TextTowerConfig",
        ".heads": "LinearClassifier OrdinalBinaryHead encode_texts zero_shot_prototypes",
        ".ordinalclip": "CosineClassifier OrdinalCLIP",
        ".prompts": "PlainPromptLearner RankPromptLearner interpolation_matrix",
    },
)
