"""Where CLIP weights come from: an open_clip name + tag, a local OpenAI or open_clip file, or random weights.

Every path ends in the same :class:`ClipBundle`: a float32 ``open_clip`` model, its tokenizer and the
preprocessing constants that belong to the weights.

Local files are read without executing code: ``torch.load(weights_only=True)`` or safetensors. OpenAI's
released ``.pt`` files are TorchScript archives, which can carry code; they are only opened when the caller
passes ``allow_torchscript=True``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import open_clip
import torch
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

from ordinalclip.errors import ClipLoadError
from ordinalclip.modeling.config import ClipConfig

log = logging.getLogger(__name__)


@dataclass
class Preprocess:
    """Image preprocessing that belongs to a set of weights (what the tower was trained on)."""

    size: int = 224
    mean: tuple[float, float, float] = tuple(OPENAI_DATASET_MEAN)
    std: tuple[float, float, float] = tuple(OPENAI_DATASET_STD)

    def to_dict(self) -> dict[str, Any]:
        return {"size": self.size, "mean": list(self.mean), "std": list(self.std)}


@dataclass
class ClipBundle:
    """A loaded CLIP: the open_clip model (float32), its open_clip tokenizer and its preprocessing."""

    model: Any  # open_clip's CLIP / CustomTextCLIP (untyped)
    tokenizer: Any
    preprocess: Preprocess
    source: str
    info: dict[str, Any] = field(default_factory=dict)


def _is_torchscript_archive(path: Path) -> bool:
    """TorchScript archives are zip files with a ``code/`` folder (plain ``torch.save`` zips have none)."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as zf:
        return any("/code/" in n or n.startswith("code/") for n in zf.namelist())


def read_state_dict(path: str | os.PathLike, allow_torchscript: bool = False) -> dict[str, torch.Tensor]:
    """Read a checkpoint file into a flat ``{name: tensor}`` dict without executing code from it.

    Accepts safetensors, plain ``torch.save`` state dicts (optionally nested under ``state_dict`` / ``model``
    and prefixed with ``module.``) and, only with ``allow_torchscript=True``, OpenAI's TorchScript archives.
    """
    path = Path(path)
    if not path.is_file():
        raise ClipLoadError(f"CLIP weights file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    if _is_torchscript_archive(path):
        if not allow_torchscript:
            raise ClipLoadError(
                f"{path} is a TorchScript archive (the format of "
                "OpenAI's released CLIP .pt files). Archives can "
                "contain code, so they are only opened on request: pass allow_torchscript=True (CLI: "
                "--set model.clip.allow_torchscript=true for training; ORDINALCLIP_ALLOW_TORCHSCRIPT=1 when "
                "loading a checkpoint) if you trust this file."
            )
        return {k: v for k, v in torch.jit.load(str(path), map_location="cpu").state_dict().items()}
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as err:  # pickle errors come in many types
        raise ClipLoadError(
            f"could not read {path} as a weights-only checkpoint ({type(err).__name__}: {err})"
        ) from err
    for key in ("state_dict", "model", "module"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ClipLoadError(f"{path} does not hold a state dict of tensors")
    if obj and all(k.startswith("module.") for k in obj):
        obj = {k[len("module.") :]: v for k, v in obj.items()}
    return obj


def _openai_state_dict_to_model(state: dict[str, torch.Tensor], quick_gelu: bool) -> torch.nn.Module:
    """Build a float32 open_clip CLIP whose architecture is inferred from an OpenAI-format state dict.

    open_clip's builder infers the shapes exactly as OpenAI's ``build_model`` (both head counts = width // 64)
    but loads into float16 parameters; we reload in float32 afterwards so full-precision files keep their
    precision.
    """
    from open_clip.model import build_model_from_openai_state_dict

    state = dict(state)
    try:
        model = build_model_from_openai_state_dict(dict(state), quick_gelu=quick_gelu, cast_dtype=None)
    except KeyError as err:
        raise ClipLoadError(f"not an OpenAI CLIP state dict: missing key {err}") from err
    model = model.float()
    for key in ("input_resolution", "context_length", "vocab_size"):
        state.pop(key, None)
    model.load_state_dict({k: v.float() for k, v in state.items()})
    return model.eval()


def _preprocess_of(model: torch.nn.Module) -> Preprocess:
    cfg = open_clip.get_model_preprocess_cfg(model)
    size = cfg.get("size", 224)
    size = size[0] if isinstance(size, (tuple, list)) else size
    return Preprocess(
        size=int(size),
        mean=tuple(cfg.get("mean", OPENAI_DATASET_MEAN)),
        std=tuple(cfg.get("std", OPENAI_DATASET_STD)),
    )


def load_clip(
    name: str | None = None,
    pretrained: str | None = None,
    *,
    quick_gelu: bool | None = None,
    allow_torchscript: bool = False,
    custom: dict[str, Any] | None = None,
    cache_dir: str | None = None,
    tokenizer: str | None = None,
) -> ClipBundle:
    """Load a CLIP model.

    Args:
        name: open_clip architecture name (``"ViT-B-16"``, ``"RN50"``, ...). ``None`` with a file in
            ``pretrained`` infers the architecture from an OpenAI-format state dict, as OpenAI's
            ``build_model`` does.
        pretrained: ``None`` (random weights), an open_clip tag (``"openai"``, ``"laion2b_s34b_b88k"``;
            downloads where the network allows) or a local file (OpenAI ``.pt`` archive or state dict,
            open_clip checkpoint, safetensors).
        quick_gelu: force QuickGELU on/off. Default: on for OpenAI weights and ``*-quickgelu`` names.
        allow_torchscript: permit opening TorchScript archives (they can contain code).
        custom: keyword arguments of ``open_clip.CLIP`` (``embed_dim``, ``vision_cfg``, ``text_cfg``) for an
            architecture of your own, e.g. the tiny models of the tests; ``"custom_text": true`` builds a
            ``CustomTextCLIP`` (SigLIP-style towers). ``text_cfg`` may name its tokenizer as open_clip
            configs do
            (``hf_tokenizer_name``, ``tokenizer_kwargs``).
        tokenizer: a local Hugging Face tokenizer folder for models whose tokenizer is a Hugging Face one
            (SigLIP,
            CLIPA, MetaCLIP 2, ...), used instead of a download.

    Returns:
        A :class:`ClipBundle` with a float32 model in eval mode.
    """
    folder = tokenizer
    tokenizer = open_clip.tokenizer.SimpleTokenizer()
    if custom is not None:
        kwargs = {k: v for k, v in custom.items() if k != "custom_text"}
        cls = open_clip.CustomTextCLIP if custom.get("custom_text") else open_clip.CLIP
        model = cls(**kwargs, quick_gelu=bool(quick_gelu)).float().eval()
        if pretrained is not None:
            model.load_state_dict(read_state_dict(pretrained, allow_torchscript))
        return ClipBundle(
            model,
            make_tokenizer("custom", custom.get("text_cfg") or {}, folder),
            _preprocess_of(model),
            source=f"custom:{pretrained}",
        )

    if pretrained is not None and (
        os.path.sep in pretrained or Path(pretrained).suffix or Path(pretrained).exists()
    ):
        path = Path(pretrained).expanduser()
        state = read_state_dict(path, allow_torchscript)
        if name is None:
            model = _openai_state_dict_to_model(state, quick_gelu=True if quick_gelu is None else quick_gelu)
            visual: Any = model.visual
            size = visual.image_size
            return ClipBundle(
                model,
                tokenizer,
                Preprocess(size=size[0] if isinstance(size, tuple) else int(size)),
                source=str(path),
                info={"format": "openai"},
            )
        model = _create(name, None, quick_gelu, cache_dir)
        own = model.state_dict()
        missing = [k for k in own if k not in state]
        unexpected = [k for k in state if k not in own]
        reshaped = [k for k in state if k in own and own[k].shape != state[k].shape]
        if missing or unexpected or reshaped:
            raise ClipLoadError(
                f"{path} does not match architecture {name!r}: "
                f"{len(missing)} missing keys (e.g. {missing[:3]}), "
                f"{len(unexpected)} unexpected keys (e.g. "
                f"{unexpected[:3]}), {len(reshaped)} of another shape "
                f"(e.g. {reshaped[:3]}). For an OpenAI checkpoint, "
                "leave the name empty (model.clip.name: null) "
                "to infer the architecture from the file."
            )
        model.load_state_dict({k: v.float() for k, v in state.items()})
        tok = _tokenizer_for(name, folder)
        return ClipBundle(model.float().eval(), tok, _preprocess_of(model), source=str(path))

    if name is None:
        raise ClipLoadError("load_clip needs an architecture name, a local weights file, or both")
    tok = _tokenizer_for(name, folder)  # before the weights: a missing tokenizer is the quicker error
    model = _create(name, pretrained, quick_gelu, cache_dir)
    return ClipBundle(model.float().eval(), tok, _preprocess_of(model), source=f"{name}:{pretrained}")


def _tokenizer_for(name: str, folder: str | None) -> Any:
    cfg = open_clip.get_model_config(name) or {}
    return make_tokenizer(name, cfg.get("text_cfg") or {}, folder)


def make_tokenizer(name: str, text_cfg: dict[str, Any], folder: str | None = None) -> Any:
    """The open_clip tokenizer of a model whose open_clip ``text_cfg`` is given, never downloading when
    ``folder``
    (a local Hugging Face tokenizer folder) is passed.

    Models with a Hugging Face tokenizer (``hf_tokenizer_name``, SigLIP names) load it from ``folder``, else
    from
    the Hugging Face cache or hub; when that fails the error says which tokenizer and which config key to set.
    """
    from open_clip.tokenizer import HFTokenizer, SimpleTokenizer

    context_length = int(text_cfg.get("context_length", 77))
    kwargs = dict(text_cfg.get("tokenizer_kwargs") or {})
    hf_name = text_cfg.get("hf_tokenizer_name") or ""
    mode = text_cfg.get("tokenizer_mode")
    uses_hf = folder is not None or hf_name or "siglip" in name.lower()
    if uses_hf and importlib.util.find_spec("transformers") is None:
        raise ClipLoadError(
            f"the text tower of {name} tokenizes with a Hugging Face tokenizer, which needs "
            "`transformers`: pip install 'ordinalclip[hf]'"
        )
    if folder is not None:
        path = Path(folder).expanduser()
        if not path.is_dir():
            raise ClipLoadError(
                f"model.clip.tokenizer: {path} is not a folder (expected a Hugging Face tokenizer "
                "folder: tokenizer.json or tokenizer_config.json and the vocabulary files)"
            )
        try:
            return HFTokenizer(
                str(path), context_length=context_length, tokenizer_mode=mode, local_files_only=True, **kwargs
            )
        except (OSError, ValueError, TypeError) as err:
            raise ClipLoadError(
                f"model.clip.tokenizer: could not read a Hugging Face tokenizer from {path} "
                f"({type(err).__name__}: {_first_line(err)})"
            ) from err
    if not hf_name and "siglip" not in name.lower():
        return SimpleTokenizer(context_length=context_length, **kwargs)
    try:
        return (
            open_clip.get_tokenizer(name)
            if name != "custom"
            else HFTokenizer(hf_name, context_length=context_length, tokenizer_mode=mode, **kwargs)
        )
    except Exception as err:  # hub and tokenizer errors come in many types; all mean "not available here"
        which = hf_name or f"the SigLIP tokenizer of {name}"
        raise ClipLoadError(
            f"the text tower of {name} tokenizes with the Hugging Face tokenizer {which!r}, which is neither "
            f"in the local Hugging Face cache nor downloadable here "
            f"({type(err).__name__}: {_first_line(err)}). Download its tokenizer files elsewhere "
            f"(e.g. `hf download {hf_name or 'REPO'} --include 'tokenizer*' "
            "'special_tokens_map.json' 'spiece.model' --local-dir DIR`) and pass the folder: "
            "--set model.clip.tokenizer=DIR (Python: load_clip(..., tokenizer='DIR'))"
        ) from err


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else ""


def _create(
    name: str, pretrained: str | None, quick_gelu: bool | None, cache_dir: str | None
) -> torch.nn.Module:
    if name not in open_clip.list_models():
        import difflib

        close = difflib.get_close_matches(name, open_clip.list_models(), n=3)
        raise ClipLoadError(
            f"unknown open_clip architecture {name!r}" + (f" (did you mean {close}?)" if close else "")
        )
    kwargs: dict[str, Any] = {"force_quick_gelu": bool(quick_gelu)}
    if cache_dir:
        kwargs["cache_dir"] = cache_dir
    try:
        with _quiet_root_logger():
            return open_clip.create_model(name, pretrained=pretrained, **kwargs)
    except RuntimeError as err:
        if pretrained and ("not found" in str(err) or "Pretrained" in str(err)):
            tags = [t for n, t in open_clip.list_pretrained() if n == name]
            raise ClipLoadError(
                f"unknown pretrained tag {pretrained!r} for {name}; known tags: {tags}"
            ) from err
        raise _offline_error(name, pretrained, err) from err
    except OSError as err:
        raise _offline_error(name, pretrained, err) from err


@contextlib.contextmanager
def _quiet_root_logger():
    """open_clip reports a failed download with ``logging.error`` before raising; on an unconfigured root
    logger
    that call installs a stderr handler (``basicConfig``) and prints a second line next to our error, which
    already holds the message. A NullHandler on the root for the call keeps ``basicConfig`` from doing so."""
    root = logging.getLogger()
    if root.handlers:
        yield
        return
    null = logging.NullHandler()
    root.addHandler(null)
    try:
        yield
    finally:
        root.removeHandler(null)


def _offline_error(name: str, pretrained: str | None, err: Exception) -> ClipLoadError:
    return ClipLoadError(
        f"could not fetch CLIP weights {name}:{pretrained} "
        f"({type(err).__name__}: {err}). Without network access, "
        "download the file elsewhere and point at it: load_clip(name, pretrained='/path/to/weights.pt') "
        "(CLI: --set model.clip.pretrained=/path/to/weights.pt; for OpenAI's .pt archives also "
        "--set model.clip.allow_torchscript=true)."
    )


def clip_vision_spec(clip: ClipConfig, state: Mapping[str, torch.Tensor]) -> tuple[int, Any, bool]:
    """``(embed_dim, vision_cfg, quick_gelu)`` of the CLIP visual tower that ``clip`` describes.

    ``state`` holds the image tower's tensors (``visual.*``); an architecture inferred from an OpenAI file
    (``name: null``) is inferred again from them, with the same rules as open_clip's OpenAI builder.
    """
    if clip.custom is not None:
        return int(clip.custom["embed_dim"]), clip.custom["vision_cfg"], bool(clip.quick_gelu)
    if clip.name is not None:
        cfg = open_clip.get_model_config(clip.name)
        if cfg is None:
            raise ValueError(f"the CLIP architecture {clip.name!r} is unknown to this open_clip")
        return int(cfg["embed_dim"]), cfg["vision_cfg"], bool(cfg.get("quick_gelu", False) or clip.quick_gelu)
    quick = True if clip.quick_gelu is None else clip.quick_gelu
    if "visual.proj" in state:  # ViT
        conv = state["visual.conv1.weight"]
        grid = round((state["visual.positional_embedding"].shape[0] - 1) ** 0.5)
        layers = sum(1 for k in state if k.endswith(".attn.in_proj_weight"))
        spec = {
            "layers": layers,
            "width": conv.shape[0],
            "patch_size": conv.shape[-1],
            "image_size": conv.shape[-1] * grid,
        }
        return int(state["visual.proj"].shape[1]), spec, quick
    if "visual.attnpool.positional_embedding" not in state:
        raise ValueError(
            "cannot infer the CLIP visual architecture: the state has neither ViT nor ResNet keys"
        )
    counts = tuple(
        len({k.split(".")[2] for k in state if k.startswith(f"visual.layer{b}.")}) for b in (1, 2, 3, 4)
    )
    grid = round((state["visual.attnpool.positional_embedding"].shape[0] - 1) ** 0.5)
    spec = {
        "layers": counts,
        "width": state["visual.layer1.0.conv1.weight"].shape[0],
        "patch_size": None,
        "image_size": grid * 32,
    }
    return int(state["visual.attnpool.c_proj.weight"].shape[0]), spec, quick


def build_clip_vision_tower(clip: ClipConfig, state: Mapping[str, torch.Tensor]) -> torch.nn.Module:
    """An untrained open_clip visual tower with the architecture :func:`clip_vision_spec` finds (no text
    tower, no weights loaded)."""
    from open_clip.model import _build_vision_tower  # open_clip's one builder of a visual tower from its spec

    width, vision_cfg, quick_gelu = clip_vision_spec(clip, state)
    return _build_vision_tower(width, vision_cfg, quick_gelu, None)
