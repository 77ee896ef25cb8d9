"""Helpers the test modules share: tiny CLIP configs, the reference vectors, generated datasets and run configs.

Plain functions and constants (fixtures are in conftest.py); test modules import them from here, never from each
other.
"""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

# --------------------------------------------------------------------------------------- reference vectors


REPO_ROOT = Path(__file__).resolve().parents[1]  # the repository (tests live in folders below tests/)
REFERENCE = Path(__file__).parent / "data" / "reference"


def load_reference(name: str) -> dict:
    """A JSON file of reference vectors (in tests/data/reference, unchanged)."""
    return json.loads((REFERENCE / name).read_text())


def official_logits() -> torch.Tensor:
    """The fixed logits of official_vectors.json: logits[b, k] = 5 sin(0.1 (b+1)(k+1)) + 0.3 k, b < 8, k < 10."""
    b = torch.arange(8, dtype=torch.float32)[:, None]
    k = torch.arange(10, dtype=torch.float32)[None, :]
    return 5 * torch.sin(0.1 * (b + 1) * (k + 1)) + 0.3 * k


def make_tiny_clip_module():
    """tests/data/reference/make_tiny_clip.py, imported as a module."""
    spec = importlib.util.spec_from_file_location("make_tiny_clip", REFERENCE / "make_tiny_clip.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # its dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(mod)
    return mod


def tiny_clip_custom(embed_dim: int = 32, width: int = 64, layers: int = 2, heads: int = 2) -> dict:
    """open_clip.CLIP kwargs of a tiny random ViT-CLIP with the real 49,408-token vocabulary and context 77."""
    return {
        "embed_dim": embed_dim,
        "vision_cfg": {
            "layers": layers,
            "width": width,
            "patch_size": 16,
            "image_size": 32,
            "head_width": 32,
        },
        "text_cfg": {
            "context_length": 77,
            "vocab_size": 49408,
            "width": width,
            "heads": heads,
            "layers": layers,
        },
    }


# --------------------------------------------------------------------------- tiny datasets and run configs


NUM_RANKS = 4
COUNTS = {"train": 4, "val": 2, "test": 2}  # images per rank and split


def tiny_vit_config(num_ranks: int = 5):
    """A tiny random ViT-CLIP OrdinalCLIP at 32 px (rank learner, 2 base ranks, 3 context tokens)."""
    from ordinalclip.modeling import ClipConfig, ImageTowerConfig, ModelConfig, PromptConfig

    return ModelConfig(
        clip=ClipConfig(name=None, custom=tiny_clip_custom()),
        num_ranks=num_ranks,
        image=ImageTowerConfig(kind="clip"),
        prompts=PromptConfig(num_base_ranks=2, context_init=None, num_context_tokens=3),
    )


def tiny_vit_model(num_ranks: int = 5):
    """``(model in eval mode, config)`` of :func:`tiny_vit_config`, random weights from seed 0."""
    from ordinalclip.modeling import build_model

    torch.manual_seed(0)
    cfg = tiny_vit_config(num_ranks)
    return build_model(cfg).eval(), cfg


def tiny_resnet_cosine_config(folder: Path):
    """A small random CLIP ResNet (a CNN with an attention pool) saved as an OpenAI-format ``rn.pt`` in
    ``folder``, and the ``ModelConfig`` of a cosine (CNN baseline) head on it, 4 ranks."""
    import open_clip

    from ordinalclip.modeling import ClipConfig, ModelConfig

    clip = open_clip.CLIP(
        embed_dim=24,
        vision_cfg={"layers": (1, 1, 1, 1), "width": 8, "image_size": 32},
        text_cfg={"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 1, "layers": 1},
    )
    torch.save(clip.state_dict(), folder / "rn.pt")
    return ModelConfig(
        arch="cosine", num_ranks=4, clip=ClipConfig(name=None, pretrained=str(folder / "rn.pt"))
    )


def tiny_features_cosine_config():
    """A cosine head on a 10-d features tower, joint width 6, 4 ranks."""
    from ordinalclip.modeling import ImageTowerConfig, ModelConfig

    return ModelConfig(
        arch="cosine", num_ranks=4, embed_dim=6, image=ImageTowerConfig(kind="features", input_dim=10)
    )


def make_images(
    root: Path, counts: dict[str, int] = COUNTS, size: int = 32, seed: int = 0
) -> dict[str, list[tuple[str, int]]]:
    """PNG images whose brightness grows with the label (a learnable task): ``{split: [(relpath, label)]}``."""
    rng = np.random.default_rng(seed)
    items: dict[str, list[tuple[str, int]]] = {}
    for split, n in counts.items():
        items[split] = []
        for label in range(NUM_RANKS):
            for i in range(n):
                arr = np.clip(rng.normal(40 + 55 * label, 12, (size, size, 3)), 0, 255).astype(np.uint8)
                rel = f"img/{split}/{label}_{i}.png"
                (root / rel).parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(arr).save(root / rel)
                items[split].append((rel, label))
    return items


def write_lists(root: Path, items: dict[str, list[tuple[str, int]]]) -> dict[str, str]:
    """Reference list files ``<split>.txt`` (``relative/path label``)."""
    out = {}
    for split, rows in items.items():
        path = root / f"{split}.txt"
        path.write_text("".join(f"{rel} {label}\n" for rel, label in rows))
        out[split] = str(path)
    return out


def write_csv(root: Path, items: dict[str, list[tuple[str, int]]], offset: int = 0) -> str:
    """One CSV with all splits: columns file, age, part (labels shifted by ``offset``)."""
    path = root / "all.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", "age", "part"])
        for split, rows in items.items():
            for rel, label in rows:
                w.writerow([rel, label + offset, split])
    return str(path)


def make_folders(root: Path, items: dict[str, list[tuple[str, int]]]) -> dict[str, str]:
    """Folder-per-rank copies: ``root/folders/<split>/<label>/<name>.png``."""
    out = {}
    for split, rows in items.items():
        for rel, label in rows:
            target = root / "folders" / split / str(label) / Path(rel).name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes((root / rel).read_bytes())
        out[split] = str(root / "folders" / split)
    return out


def make_features(path: Path, dim: int = 8, seed: int = 0) -> str:
    """An .npz with label-dependent features (rank direction + noise), labels and a split array."""
    rng = np.random.default_rng(seed)
    feats, labels, splits = [], [], []
    for split, n in COUNTS.items():
        for label in range(NUM_RANKS):
            for _ in range(n):
                v = rng.normal(0, 0.3, dim)
                v[label] += 2.0
                feats.append(v)
                labels.append(label)
                splits.append(split)
    np.savez(path, features=np.array(feats, np.float32), labels=np.array(labels), split=np.array(splits))
    return str(path)


def tiny_model_dict(**extra: Any) -> dict[str, Any]:
    return {
        "num_ranks": NUM_RANKS,
        "clip": {"name": None, "custom": tiny_clip_custom()},
        "prompts": {"num_base_ranks": 2},
        **extra,
    }


def features_data(path: str | Path, **extra: Any) -> dict[str, Any]:
    """The ``data`` section of a run on a :func:`make_features` file (its split array gives the splits)."""
    return {"format": "features", "train": str(path), "columns": {"split": "split"}, **extra}


def tiny_config(
    tmp_path: Path, data: dict[str, Any], model: dict[str, Any] | None = None, **sections: Any
) -> dict[str, Any]:
    """A run config dict for tiny CPU runs (tiny ViT-CLIP, 32x32 images, batch 4, 2 epochs)."""
    cfg: dict[str, Any] = {
        "name": "t",
        "output_dir": str(tmp_path / "runs"),
        "model": model or tiny_model_dict(),
        "data": {"batch_size": 4, "image_size": 32, "resize": 36, **data},
        "optim": {"lr": 1e-3},
        "trainer": {
            "max_epochs": 2,
            "loggers": ["csv"],
            "progress_bar": False,
            "seed": 3,
            "deterministic": True,
        },
    }
    for key, value in sections.items():
        cfg[key] = {**cfg.get(key, {}), **value}
    return cfg


def list_data(root: Path) -> dict[str, Any]:
    items = make_images(root)
    lists = write_lists(root, items)
    return {"format": "list", "root": str(root), **lists}


# --------------------------------------------------------------------------------- checkpoints and exports


PREP = {"size": 32, "resize": 36, "mean": [0.5, 0.4, 0.3], "std": [0.2, 0.25, 0.3]}


def save_checkpoint(model, run_cfg, path):
    """A training checkpoint as the engine writes it (its own on_save_checkpoint adds the config and ranks)."""
    from ordinalclip.engine.module import OrdinalModule
    from ordinalclip.engine.splits import rank_space

    module = OrdinalModule(model, run_cfg, rank_space(run_cfg))
    ckpt = {"state_dict": module.state_dict(), "epoch": 0, "global_step": 0}
    module.on_save_checkpoint(ckpt)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(ckpt, path)
    return path


def run_config(model_cfg):
    from ordinalclip.config import DataConfig, RunConfig

    return RunConfig(
        model=model_cfg,
        data=DataConfig(rank_offset=16, image_size=32, resize=36, mean=PREP["mean"], std=PREP["std"]),
    )


def reseal(meta: dict) -> dict:
    """An export sidecar with ``sidecar_sha256`` recomputed as the export format defines it (sha256 of the other
    entries as canonical JSON), as a tool that rewrites the sidecar consistently would."""
    body = {k: v for k, v in meta.items() if k != "sidecar_sha256"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return {**meta, "sidecar_sha256": hashlib.sha256(text.encode()).hexdigest()}


class StateHolder(torch.nn.Module):
    """A scripted module whose state dict is a CLIP state dict (what OpenAI's archives are)."""

    def __init__(self, state: dict[str, torch.Tensor]):
        super().__init__()
        for key, value in state.items():
            *path, leaf = key.split(".")
            owner: torch.nn.Module = self
            for part in path:
                if not hasattr(owner, part):
                    owner.add_module(part, torch.nn.Module())
                owner = getattr(owner, part)
            owner.register_buffer(leaf, value.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


# ------------------------------------------------------------------- a tiny BERT (Hugging Face text tower)


WORDS = ["a", "photo", "of", "the", "image", "is", "sharp", "slightly", "very", "blurred", "noisy", "."]
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
VOCAB = {tok: i for i, tok in enumerate(SPECIALS + WORDS)}


def save_tiny_bert(folder: Path) -> Path:
    """(Needs transformers.) A random 2-layer, 32-wide BERT with a 17-token word-piece vocabulary, saved as a model folder."""
    import transformers

    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=len(VOCAB),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=24,
    )
    model = transformers.BertModel(config)
    # unit-scale tables (BERT's init is std 0.02): tokens, positions and token types all move the output, so a
    # missed or doubled position/type embedding on the inputs_embeds path shows
    with torch.no_grad():
        for table in (
            model.embeddings.word_embeddings,
            model.embeddings.position_embeddings,
            model.embeddings.token_type_embeddings,
        ):
            table.weight.normal_(0, 1.0)
    model.save_pretrained(folder)
    # the classic BERT tokenizer files (one token per line), readable by every transformers version
    (folder / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    (folder / "tokenizer_config.json").write_text(
        json.dumps({"tokenizer_class": "BertTokenizer", "do_lower_case": True})
    )
    return folder


# ------------------------------------------------------- tiny offline Hugging Face CLIP-family assets
# A word-level tokenizer folder (built with the `tokenizers` library) and tiny random CLIP / SigLIP / RoBERTa folders
# saved with save_pretrained: nothing is downloaded.
CLIP_WORDS = [
    "a",
    "photo",
    "of",
    "the",
    "face",
    "person",
    "man",
    "woman",
    "cat",
    "dog",
    "who",
    "is",
    "old",
    "young",
    "years",
    "child",
    "adult",
    "an",
    "image",
    "showing",
    "aged",
    "elderly",
    "teenager",
    "baby",
]


def save_word_tokenizer(
    folder: Path,
    *,
    bos: bool = False,
    pad_is_eos: bool = False,
    lowercase: bool = True,
    pad: str = "<pad>",
    attention_mask: bool = True,
) -> Path:
    """A T5-style tokenizer folder: one id per word, ``</s>`` appended (``<s>`` prepended with ``bos``), pads
    with ``<pad>`` (with the end token itself when ``pad_is_eos``, as SigLIP's c4 tokenizer does)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "</s>", "<unk>", "<s>", "."]
    vocab = {w: i for i, w in enumerate(specials + list(CLIP_WORDS))}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase() if lowercase else None
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()]
    )
    single = ("<s> " if bos else "") + "$A </s>"
    tok.post_processor = processors.TemplateProcessing(
        single=single, special_tokens=[("</s>", vocab["</s>"]), ("<s>", vocab["<s>"])]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="<unk>",
        eos_token="</s>",
        bos_token="<s>",
        pad_token="</s>" if pad_is_eos else pad,
        model_input_names=["input_ids", "attention_mask"] if attention_mask else ["input_ids"],
    )
    folder.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(str(folder))
    return folder


CLIP_VOCAB_SIZE = len(CLIP_WORDS) + 5


def save_tiny_hf_clip(folder: Path, family: str, seed: int = 0) -> Path:
    """A tiny random ``CLIPModel`` (causal text, bos/eos, pads with eos and an attention mask) or ``SiglipModel``
    (bidirectional text, eos only, pads with eos, no attention mask, as SigLIP's tokenizer) with its tokenizer."""
    import torch
    from transformers import CLIPConfig, CLIPModel, SiglipConfig, SiglipModel

    text = {
        "vocab_size": CLIP_VOCAB_SIZE,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "max_position_embeddings": 16,
        "pad_token_id": 1,
        "eos_token_id": 1,
    }
    vision = {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "image_size": 32,
        "patch_size": 8,
    }
    torch.manual_seed(seed)
    if family == "clip":
        model = CLIPModel(
            CLIPConfig(text_config={**text, "bos_token_id": 3}, vision_config=vision, projection_dim=24)
        )
        save_word_tokenizer(folder, bos=True, pad_is_eos=True)
    else:
        model = SiglipModel(SiglipConfig(text_config={**text, "projection_size": 32}, vision_config=vision))
        save_word_tokenizer(folder, pad_is_eos=True, attention_mask=False)
    model.save_pretrained(str(folder))
    return folder


def save_tiny_roberta(folder: Path, seed: int = 0) -> Path:
    """A tiny random RoBERTa folder with the word tokenizer (``<s>`` ... ``</s>``, ``<pad>`` = 0): the kind of
    Hugging Face text encoder open_clip's RoBERTa / XLM-R CLIP models use."""
    import torch
    from transformers import RobertaConfig, RobertaModel

    torch.manual_seed(seed)
    config = RobertaConfig(
        vocab_size=CLIP_VOCAB_SIZE,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=20,
        pad_token_id=0,
        bos_token_id=3,
        eos_token_id=1,
    )
    RobertaModel(config).save_pretrained(str(folder))
    save_word_tokenizer(folder, bos=True)
    return folder


def run_cli(argv: list[str], capsys: Any) -> tuple[int, str, str]:
    """``ordinalclip ARGV`` through ``cli.main``, as a user runs it: ``(exit code, stdout, stderr)``."""
    from ordinalclip.app import cli

    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def user_error(err: str) -> str:
    """The ``error: ...`` text of a user error on stderr (and what follows it); fails on a traceback or on
    anything but exactly one ``error:`` line."""
    assert "Traceback" not in err, err
    lines = [line for line in err.strip().splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, err
    return err[err.index("error: ") :].strip()


def list_config(
    tmp_path: Path, data: dict[str, Any], model: dict[str, Any] | None = None, **sections: Any
) -> str:
    """A tiny run config file for list-format data (``data`` on top of :func:`tiny_config`); returns its path."""
    import yaml

    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(tiny_config(tmp_path, {"format": "list", **data}, model, **sections)))
    return str(path)


def list_files(root: Path, *splits: str) -> dict[str, str]:
    """``data`` keys of the list files :func:`write_lists` wrote under ``root`` for ``splits``."""
    return {"root": str(root), **{s: str(root / f"{s}.txt") for s in splits}}


def write_raw_checkpoint(model: torch.nn.Module, config: dict, path: Path, **meta) -> Path:
    """A checkpoint laid out as the engine writes it (``model.*`` weights + the ``ordinalclip`` entry)."""
    torch.save(
        {
            "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
            "epoch": 0,
            "global_step": 1,
            "ordinalclip": {
                "format": 1,
                "version": __import__("ordinalclip").__version__,
                "config": config,
                "ranks": None,
                **meta,
            },
        },
        path,
    )
    return path


# ------------------------------------------------------------------------------------------ serve, loopback


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def png_bytes(seed: int, size: tuple[int, int] = (48, 40)) -> bytes:
    """A random RGB PNG of ``size`` (width, height), as bytes."""
    import io

    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()
