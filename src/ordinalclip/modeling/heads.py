"""Baseline heads on an image tower: linear softmax, CORAL, CORN, and zero-shot CLIP prototypes.

Every model in :mod:`ordinalclip.modeling` has an ``output_kind``: ``"softmax"`` (B, C) rank logits, or
``"coral"`` / ``"corn"`` (B, C-1) logits of the binary tasks "rank > k".
:func:`ordinalclip.metrics.rank_probabilities` turns any of them into (B, C) rank probabilities, so evaluation
is the same for all.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from ordinalclip.modeling.backbones.image import output_dim
from ordinalclip.modeling.backbones.text import ClipTextTower, PromptEmbeddings

ZERO_SHOT_TEMPLATES = ("a photo of {}.",)


class LinearClassifier(nn.Module):
    """Image tower + ``nn.Linear(E, C)``: the plain softmax baseline."""

    output_kind = "softmax"

    def __init__(self, image_tower: nn.Module, num_ranks: int):
        super().__init__()
        self.image_tower = image_tower
        self.num_ranks = num_ranks
        self.fc = nn.Linear(output_dim(image_tower), num_ranks)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, ...) -> (B, C) logits."""
        return self.forward_features(self.image_tower(images))

    def forward_features(self, features: torch.Tensor) -> torch.Tensor:
        """(B, E) image-tower features -> (B, C) logits."""
        return self.fc(features)


class OrdinalBinaryHead(nn.Module):
    """Image tower + C-1 binary "rank > k" outputs.

    * ``coral`` (Cao et al., 2020): one shared weight vector and C-1 biases, so the tasks are rank-consistent;
    * ``corn`` (Shi et al., 2021): C-1 independent outputs trained on conditional subsets.
    """

    def __init__(self, image_tower: nn.Module, num_ranks: int, kind: Literal["coral", "corn"]):
        super().__init__()
        if num_ranks < 2:
            raise ValueError(f"{kind} needs at least 2 ranks, got {num_ranks}")
        if kind not in ("coral", "corn"):
            raise ValueError(f"unknown ordinal head {kind!r}; expected coral or corn")
        self.image_tower = image_tower
        self.num_ranks = num_ranks
        self.output_kind = kind
        dim = output_dim(image_tower)
        if kind == "coral":
            self.fc = nn.Linear(dim, 1, bias=False)
            self.bias = nn.Parameter(torch.zeros(num_ranks - 1))
        else:
            self.fc = nn.Linear(dim, num_ranks - 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, ...) -> (B, C-1) task logits."""
        return self.forward_features(self.image_tower(images))

    def forward_features(self, features: torch.Tensor) -> torch.Tensor:
        """(B, E) image-tower features -> (B, C-1) task logits."""
        out = self.fc(features)
        return out + self.bias if self.output_kind == "coral" else out


@torch.no_grad()
def zero_shot_prototypes(
    text_tower: ClipTextTower,
    rank_names: list[str],
    templates: tuple[str, ...] | list[str] = ZERO_SHOT_TEMPLATES,
) -> torch.Tensor:
    """(C, E) zero-shot CLIP prototypes: each template filled with each rank name, encoded, normalised, and
    averaged over templates (prompt ensembling), then normalised again.

    Templates hold ``{}`` where the rank name goes, e.g. ``"a photo of a {} year old person."``.
    """
    if not templates or any("{}" not in t for t in templates):
        raise ValueError(f"every template needs a '{{}}' for the rank name; got {list(templates)}")
    total = torch.zeros(())
    for i, template in enumerate(templates):
        feats = F.normalize(encode_texts(text_tower, [template.format(n) for n in rank_names]), dim=-1)
        total = feats if i == 0 else total + feats
    return F.normalize(total, dim=-1)


def encode_texts(text_tower: Any, texts: list[str]) -> torch.Tensor:
    """(N, E) text features of plain strings through a text tower (CLIP's or a Hugging Face encoder: anything
    with ``start_ids``, ``end_ids``, ``encode_words`` and the prompt-forward of our towers), the model's own
    encode_text on our path."""
    start, end = list(text_tower.start_ids), list(text_tower.end_ids)
    seqs = [[*start, *text_tower.encode_words(t), *end] for t in texts]
    longest = max(len(s) for s in seqs)
    if longest > text_tower.context_length:
        raise ValueError(f"a prompt has {longest} tokens; the text tower takes {text_tower.context_length}")
    ids = torch.tensor([s + [text_tower.pad_id] * (longest - len(s)) for s in seqs])
    emb = text_tower.embed_ids(ids)  # (N, L, D)
    p = len(start)
    prompts = PromptEmbeddings(
        prefix=emb[0, :p],
        suffix=emb[:, p:],
        eot_index=torch.tensor([len(s) - max(len(end), 1) for s in seqs]),
        pad=text_tower.embed_ids([text_tower.pad_id])[0],
    )
    return text_tower(prompts)
