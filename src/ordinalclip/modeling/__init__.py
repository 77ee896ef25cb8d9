"""The model side of ordinalclip: plain ``nn.Module``s built from typed configs.

Nothing here imports the data, engine or CLI layers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ordinalclip.lazy import lazy_attributes

# attribute -> defining module, imported on first use (see ordinalclip.lazy)
_WHERE = {
    "ClipBundle": "ordinalclip.modeling.backbones.clip",
    "ClipLoadError": "ordinalclip.modeling.backbones.clip",
    "Preprocess": "ordinalclip.modeling.backbones.clip",
    "load_clip": "ordinalclip.modeling.backbones.clip",
    "read_state_dict": "ordinalclip.modeling.backbones.clip",
    "ClipImageTower": "ordinalclip.modeling.backbones.image",
    "FeatureTower": "ordinalclip.modeling.backbones.image",
    "TorchvisionTower": "ordinalclip.modeling.backbones.image",
    "load_matching": "ordinalclip.modeling.backbones.image",
    "ClipTextTower": "ordinalclip.modeling.backbones.text",
    "PromptEmbeddings": "ordinalclip.modeling.backbones.text",
    "build_image_tower": "ordinalclip.modeling.build",
    "build_model": "ordinalclip.modeling.build",
    "build_prompt_learner": "ordinalclip.modeling.build",
    "build_text_tower": "ordinalclip.modeling.build",
    "ClipConfig": "ordinalclip.modeling.config",
    "ImageTowerConfig": "ordinalclip.modeling.config",
    "ModelConfig": "ordinalclip.modeling.config",
    "PromptConfig": "ordinalclip.modeling.config",
    "TextTowerConfig": "ordinalclip.modeling.config",
    "LinearClassifier": "ordinalclip.modeling.heads",
    "OrdinalBinaryHead": "ordinalclip.modeling.heads",
    "encode_texts": "ordinalclip.modeling.heads",
    "zero_shot_prototypes": "ordinalclip.modeling.heads",
    "CosineClassifier": "ordinalclip.modeling.ordinalclip",
    "OrdinalCLIP": "ordinalclip.modeling.ordinalclip",
    "PlainPromptLearner": "ordinalclip.modeling.prompts",
    "RankPromptLearner": "ordinalclip.modeling.prompts",
    "interpolation_matrix": "ordinalclip.modeling.prompts",
}
__getattr__, __dir__ = lazy_attributes(__name__, _WHERE, globals())

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
