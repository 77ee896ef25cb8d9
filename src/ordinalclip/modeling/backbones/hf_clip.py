"""Hugging Face ``transformers`` CLIP-family models (``CLIPModel``, ``SiglipModel``) as text + image towers.

The weights come from a local folder (``save_pretrained`` / a hub snapshot), never from a download. Prompts
go in
as token embeddings (``inputs_embeds``: the model adds its own position embeddings), and the features are
those of
the model's ``get_text_features`` / ``get_image_features``:

* CLIP's text model is causal and pools the end token: it is re-laid out as open_clip's text transformer (same
  weights, same function) and takes the exact shared-prefix fast path (:func:`hf_text_tower`);
* SigLIP's is bidirectional and pools the *last* position, padding included (it was trained on text padded to
  ``max_position_embeddings`` with no attention mask): prompts are padded exactly so.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ordinalclip.modeling.backbones.clip import ClipBundle, ClipLoadError, Preprocess
from ordinalclip.modeling.backbones.text import PromptEmbeddings, PromptTextTower, TextPath, TokenLayout

SUPPORTED = ("clip", "siglip")
# image statistics when the folder has no preprocessor_config.json (the families' published ones)
DEFAULT_STATS = {
    "clip": ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)),
    "siglip": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
}


class HFTokenizerAdapter:
    """A Hugging Face tokenizer with open_clip's tokenizer interface (what :class:`TokenLayout` reads).

    ``__call__`` pads to ``context_length`` as the model's processor does for training (SigLIP:
    ``max_length``).
    """

    def __init__(self, tokenizer, context_length: int):
        self.tokenizer = tokenizer
        self.context_length = int(context_length)
        self.clean_fn = lambda text: text  # the HF tokenizer normalises itself
        self.uses_attention_mask = "attention_mask" in getattr(tokenizer, "model_input_names", ())

    def __call__(self, texts: str | list[str], context_length: int | None = None) -> torch.Tensor:
        return self.batch(texts, context_length)["input_ids"]

    def batch(self, texts: str | list[str], context_length: int | None = None) -> dict[str, torch.Tensor]:
        """The model's inputs for ``texts``: ``input_ids`` and, where the tokenizer gives one,
        ``attention_mask``."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        return dict(
            self.tokenizer(
                texts,
                padding="max_length",
                max_length=context_length or self.context_length,
                truncation=True,
                return_tensors="pt",
            )
        )


def _family(model: Any) -> str:
    kind = getattr(getattr(model, "config", None), "model_type", None)
    if kind not in SUPPORTED:
        raise ClipLoadError(
            f"Hugging Face model type {kind!r} is not a supported CLIP-family model; supported: "
            "CLIPModel (model_type 'clip') and SiglipModel ('siglip')"
        )
    return kind


def _preprocess(folder: Path, family: str, image_size: int) -> Preprocess:
    """Crop size and statistics from ``preprocessor_config.json`` (else the family's defaults)."""
    mean, std = DEFAULT_STATS[family]
    cfg_file = folder / "preprocessor_config.json"
    if not cfg_file.is_file():
        return Preprocess(size=image_size, mean=mean, std=std)
    cfg = json.loads(cfg_file.read_text(encoding="utf-8"))
    crop = cfg.get("crop_size") if cfg.get("do_center_crop", False) else cfg.get("size")
    size = image_size
    if isinstance(crop, dict):
        size = int(crop.get("height") or crop.get("shortest_edge") or image_size)
    elif isinstance(crop, int):
        size = crop
    return Preprocess(
        size=size, mean=tuple(cfg.get("image_mean", mean)), std=tuple(cfg.get("image_std", std))
    )


def load_hf_clip(folder: str) -> ClipBundle:
    """A ``CLIPModel`` / ``SiglipModel`` with its tokenizer from a local folder (float32, eval mode)."""
    path = Path(folder).expanduser()
    if not (path / "config.json").is_file():
        raise ClipLoadError(
            f"model.clip.hf_model: {path} is not a local Hugging Face model folder (no config.json). "
            "Nothing is downloaded: fetch the model elsewhere (e.g. `hf download "
            "google/siglip-base-patch16-224 --local-dir "
            "DIR`) and pass the folder"
        )
    try:
        from transformers import AutoModel, AutoTokenizer
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ClipLoadError(
            "Hugging Face CLIP models need `transformers`: pip install 'ordinalclip[hf]'"
        ) from err
    try:
        model: Any = AutoModel.from_pretrained(str(path), local_files_only=True).float().eval()
        family = _family(model)
        text_cfg = model.config.text_config
        tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    except (OSError, ValueError) as err:
        raise ClipLoadError(
            f"model.clip.hf_model: could not load a CLIP model and its tokenizer from {path} "
            f"({type(err).__name__}: {str(err).strip().splitlines()[0] if str(err) else ''})"
        ) from err
    adapter = HFTokenizerAdapter(tokenizer, text_cfg.max_position_embeddings)
    prep = _preprocess(path, family, int(model.config.vision_config.image_size))
    return ClipBundle(model, adapter, prep, source=f"huggingface:{path}", info={"family": family})


def hf_text_tower(
    model: Any, tokenizer: HFTokenizerAdapter, path: TextPath = "shared_prefix", freeze: bool = True
) -> nn.Module:
    """The text tower of a ``CLIPModel`` / ``SiglipModel``.

    CLIP's causal text model is re-laid out as open_clip's text transformer (same weights, same function), so
    it
    takes the exact shared-prefix fast path of :class:`ClipTextTower`; SigLIP's (and a CLIP with an activation
    open_clip lacks) runs as :class:`HFClipTextTower`.
    """
    if _family(model) == "clip":
        text = clip_text_transformer(model)
        if text is not None:
            from ordinalclip.modeling.backbones.text import ClipTextTower

            return ClipTextTower(text, tokenizer, path=path, freeze=freeze)
    return HFClipTextTower(model, tokenizer, path=path, freeze=freeze)


def clip_text_transformer(model: Any) -> nn.Module | None:
    """open_clip's ``TextTransformer`` holding the weights of a ``CLIPModel``'s text model and projection (the
    same computation: pre-norm causal blocks, end-token pooling), or ``None`` for an activation open_clip
    lacks."""
    from functools import partial

    from open_clip.transformer import LayerNorm, QuickGELU, TextTransformer

    cfg = model.config.text_config
    act = {"quick_gelu": QuickGELU, "gelu": nn.GELU}.get(cfg.hidden_act)
    if act is None:
        return None
    width, layers = int(cfg.hidden_size), int(cfg.num_hidden_layers)
    text = TextTransformer(
        context_length=int(cfg.max_position_embeddings),
        vocab_size=int(cfg.vocab_size),
        width=width,
        heads=int(cfg.num_attention_heads),
        layers=layers,
        mlp_ratio=cfg.intermediate_size / width,
        output_dim=int(model.config.projection_dim),
        act_layer=act,
        norm_layer=partial(LayerNorm, eps=cfg.layer_norm_eps),
    )
    hf = {k: v.detach() for k, v in model.text_model.state_dict().items()}
    state = {
        "token_embedding.weight": hf["embeddings.token_embedding.weight"],
        "positional_embedding": hf["embeddings.position_embedding.weight"],
        "ln_final.weight": hf["final_layer_norm.weight"],
        "ln_final.bias": hf["final_layer_norm.bias"],
        "text_projection": model.text_projection.weight.detach().t(),
    }
    for i in range(layers):
        src, dst = f"encoder.layers.{i}.", f"transformer.resblocks.{i}."
        for part in ("weight", "bias"):
            state[f"{dst}attn.in_proj_{part}"] = torch.cat(
                [hf[f"{src}self_attn.{n}_proj.{part}"] for n in ("q", "k", "v")]
            )
            state[f"{dst}attn.out_proj.{part}"] = hf[f"{src}self_attn.out_proj.{part}"]
            state[f"{dst}ln_1.{part}"] = hf[f"{src}layer_norm1.{part}"]
            state[f"{dst}ln_2.{part}"] = hf[f"{src}layer_norm2.{part}"]
            state[f"{dst}mlp.c_fc.{part}"] = hf[f"{src}mlp.fc1.{part}"]
            state[f"{dst}mlp.c_proj.{part}"] = hf[f"{src}mlp.fc2.{part}"]
    text.load_state_dict({k: v.clone() for k, v in state.items()}, strict=True)
    return text.float().eval()


class HFClipTextTower(PromptTextTower):
    """The (frozen by default) text model of a ``CLIPModel`` / ``SiglipModel`` over prompt embeddings -> (C,
    E).

    Implements the prompt learners' vocabulary and the text-tower interface of
    :class:`~ordinalclip.modeling.backbones.text.ClipTextTower`.
    """

    _encoder = "text_model"

    def __init__(
        self,
        model: Any,
        tokenizer: HFTokenizerAdapter,
        path: TextPath = "shared_prefix",
        freeze: bool = True,
    ):
        super().__init__()
        self.family = _family(model)
        self.text_model: Any = model.text_model
        # CLIP projects after pooling; SigLIP's head sits inside its text model
        self.projection: Any = model.text_projection if self.family == "clip" else self.text_model.head
        self.causal = self.family == "clip"
        self.path = path
        self._take_layout(TokenLayout(tokenizer))
        self.width = int(self.text_model.embeddings.token_embedding.weight.shape[1])
        self.output_dim = int(self.projection.out_features)
        self._freeze(freeze)

    @property
    def exact_shortcuts(self) -> bool:
        """Whether positions after the end token cannot change the feature (CLIP: causal, pooled at it)."""
        return self.causal

    def encode_words(self, text: str) -> list[int]:
        """Token ids of ``text`` without special tokens (underscores read as spaces)."""
        return self.layout.encode_words(text.replace("_", " "))

    def embed_ids(self, ids: torch.Tensor | list[int]) -> torch.Tensor:
        """Token embeddings (no positions), (..., D), detached from the embedding table."""
        table = self.text_model.embeddings.token_embedding
        return table(torch.as_tensor(ids, dtype=torch.long, device=table.weight.device)).detach()

    def forward(self, prompts: PromptEmbeddings) -> torch.Tensor:
        """(C, E) text features of the prompts, as ``get_text_features`` gives for their token ids."""
        if prompts.length > self.context_length:
            raise ValueError(
                f"prompts have {prompts.length} tokens; this text tower takes at most {self.context_length}"
            )
        if self.exact_shortcuts and self.path != "naive":
            return self.forward_full(prompts, None)
        return self.forward_full(prompts, self.context_length)

    def forward_full(self, prompts: PromptEmbeddings, context_length: int | None) -> torch.Tensor:
        """The model's computation over the prompts padded to ``context_length`` (``None``: real length only,
        exact for CLIP)."""
        from transformers.masking_utils import create_bidirectional_mask, create_causal_mask

        x = prompts.full(context_length)
        c, n = x.shape[:2]
        tm = self.text_model
        hidden = tm.embeddings(inputs_embeds=x)
        mask = None
        if self.tokenizer.uses_attention_mask:  # the processor would pass one: pads hidden from attention
            last = prompts.eot_index.to(x.device) + max(len(self.end_ids), 1) - 1
            mask = (torch.arange(n, device=x.device)[None, :] <= last[:, None]).long()
        if self.causal:
            # the no-cache argument was renamed (past_key_values -> cache) within transformers 5
            no_cache = (
                "cache" if "cache" in inspect.signature(create_causal_mask).parameters else "past_key_values"
            )
            mask = create_causal_mask(
                config=tm.config, inputs_embeds=hidden, attention_mask=mask, **{no_cache: None}
            )
            out = tm.encoder(inputs_embeds=hidden, attention_mask=mask, is_causal=True)
        else:
            mask = create_bidirectional_mask(config=tm.config, inputs_embeds=hidden, attention_mask=mask)
            out = tm.encoder(inputs_embeds=hidden, attention_mask=mask)
        states = tm.final_layer_norm(out.last_hidden_state)
        if self.causal:
            pooled = states[torch.arange(c, device=x.device), prompts.eot_index.to(x.device)]
        else:
            pooled = states[:, -1]
        return self.projection(pooled)


class HFClipImageTower(nn.Module):
    """The vision model of a ``CLIPModel`` (+ its projection) or ``SiglipModel``: ``get_image_features``."""

    def __init__(
        self,
        vision_model: Any,
        projection: Any,
        preprocess: dict | None = None,
        hf_config: dict[str, Any] | None = None,
    ):
        super().__init__()
        self.vision_model: Any = vision_model
        self.projection: Any = projection
        self.output_dim = int(
            projection.out_features if projection is not None else vision_model.config.hidden_size
        )
        self.preprocess = dict(preprocess or {})
        # the whole model's config: rebuilds this tower without the folder (export)
        self.hf_config = hf_config

    @classmethod
    def from_model(cls, model: Any, preprocess: dict | None = None) -> HFClipImageTower:
        family = _family(model)
        return cls(
            model.vision_model,
            model.visual_projection if family == "clip" else None,
            preprocess,
            hf_config=model.config.to_dict(),
        )

    @classmethod
    def from_config(cls, hf_config: dict[str, Any], preprocess: dict | None = None) -> HFClipImageTower:
        """An untrained tower with the architecture of a model config (``config.to_dict()``)."""
        from transformers import AutoConfig, CLIPModel, SiglipModel

        cfg_dict = dict(hf_config)
        config: Any = AutoConfig.for_model(cfg_dict.pop("model_type"), **cfg_dict)
        if config.model_type not in SUPPORTED:
            raise ClipLoadError(f"cannot rebuild a vision tower of model type {config.model_type!r}")
        # which class the model keeps as its vision_model differs between transformers versions: read it off a
        # model built on the meta device (no memory, no weights), then build only that part
        with torch.device("meta"):
            probe = (CLIPModel if config.model_type == "clip" else SiglipModel)(config)
        vision = type(probe.vision_model)(config.vision_config)
        projection = None
        if config.model_type == "clip":
            projection = nn.Linear(config.vision_config.hidden_size, config.projection_dim, bias=False)
        return cls(vision, projection, preprocess, hf_config=hf_config)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, E)."""
        pooled = self.vision_model(pixel_values=images).pooler_output
        return self.projection(pooled) if self.projection is not None else pooled
