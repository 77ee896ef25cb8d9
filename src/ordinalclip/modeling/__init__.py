"""The model side of ordinalclip: plain ``nn.Module``s built from typed configs.

Nothing here imports the data, engine or CLI layers.
"""

from ordinalclip.modeling.backbones.clip import (
    ClipBundle,
    ClipLoadError,
    Preprocess,
    load_clip,
    read_state_dict,
)
from ordinalclip.modeling.backbones.image import ClipImageTower, FeatureTower, TorchvisionTower, load_matching
from ordinalclip.modeling.backbones.text import ClipTextTower, PromptEmbeddings
from ordinalclip.modeling.build import build_image_tower, build_model, build_prompt_learner, build_text_tower
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
