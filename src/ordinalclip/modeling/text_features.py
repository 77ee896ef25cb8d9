"""Sentence features from the project's Hugging Face text tower (the lexicon task's inputs)."""

from __future__ import annotations

import numpy as np
import torch

from ordinalclip.modeling.backbones.hf_text import HFTextTower
from ordinalclip.modeling.heads import encode_texts

__all__ = ["embed_sentences"]


def embed_sentences(sentences: list[str], text_model: str, batch_size: int = 256) -> np.ndarray:
    """(N, E) float32 L2-normalised embeddings of ``sentences`` through :class:`HFTextTower` ``text_model``
    (a name it resolves, or a local folder)."""
    tower = HFTextTower(text_model).eval()
    parts = []
    with torch.no_grad():
        for i in range(0, len(sentences), batch_size):
            chunk = sentences[i : i + batch_size]
            parts.append(torch.nn.functional.normalize(encode_texts(tower, chunk), dim=-1).numpy())
    return np.concatenate(parts).astype(np.float32)
