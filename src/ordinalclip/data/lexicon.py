"""A real human-labelled ordinal text task, offline: word valence from the AFINN lexicon.

AFINN (Finn Årup Nielsen, 2011; the ``afinn`` package, which ships the word list) rates 3,382 English words
and phrases by hand with an integer valence from -5 (very negative) to +5 (very positive): 11 ordered ranks.
Each word becomes a sentence embedding from a Hugging Face encoder run through the project's own text tower
(:class:`~ordinalclip.modeling.backbones.hf_text.HFTextTower`, all-MiniLM-L6-v2 by default, passed in as
``embed``: see :mod:`ordinalclip.modeling.text_features`), so the features
live in the same space as that tower's prompt features: the text analogue of CLIP image features next to
CLIP's text tower, where language priors (named ranks, zero-shot prompts) should help most.

The split is by word, stratified by rank (70/15/15 of every rank, at least one word of each rank in train),
fixed by ``seed``. :func:`build_lexicon_dataset` writes, under the user cache like the blur demo data:

* ``features.npz``: ``features`` (N, E) float32 L2-normalised embeddings, ``labels`` (N,) valence -5..5,
  ``split`` (N,) ``train``/``val``/``test``, ``words`` (N,) the words (``data.format: features`` reads it with
  ``columns.split: split`` and ``rank_offset: -5``);
* ``train.txt`` / ``val.txt`` / ``test.txt``: ``word<TAB>valence`` lines (the saved split), ``ranks.txt``;
* ``COMPLETE``, last, holding the build settings: a complete cache with the same settings is reused.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ordinalclip.fileio import atomic_write, atomic_write_text

__all__ = [
    "LEXICON_RANK_NAMES",
    "LexiconDataset",
    "build_lexicon_dataset",
    "default_lexicon_root",
    "read_afinn",
    "split_by_word",
]

VERSION = "lexicon-afinn-v1"
_MARKER = "COMPLETE"
_SPLITS = ("train", "val", "test")
VALENCE_MIN, VALENCE_MAX = -5, 5
# One name per valence -5..+5, in order; the zero-shot prompts and CoOp's rank names.
LEXICON_RANK_NAMES = (
    "extremely negative", "very negative", "negative", "fairly negative", "slightly negative", "neutral",
    "slightly positive", "fairly positive", "positive", "very positive", "extremely positive",
)  # fmt: skip
FEATURE_TEMPLATE = "{}"  # each word is embedded as it is


@dataclass(frozen=True)
class LexiconDataset:
    """Paths and facts of a built lexicon data set."""

    root: Path
    features: Path  # the .npz (features, labels, split, words)
    rank_names: tuple[str, ...]
    counts: dict[str, int]  # words per split
    text_model: str

    @property
    def num_ranks(self) -> int:
        return len(self.rank_names)

    @property
    def rank_offset(self) -> int:
        """Valence of rank 0 (rank = valence - offset)."""
        return VALENCE_MIN

    def list_file(self, split: str) -> Path:
        """``word<TAB>valence`` lines of ``split``."""
        if split not in _SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {_SPLITS}")
        return self.root / f"{split}.txt"


def default_lexicon_root() -> Path:
    """``$ORDINALCLIP_CACHE/lexicon-afinn-v1`` if the variable is set, else
    ``~/.cache/ordinalclip/lexicon-afinn-v1``."""
    base = os.environ.get("ORDINALCLIP_CACHE")
    return (Path(base).expanduser() if base else Path.home() / ".cache" / "ordinalclip") / VERSION


def read_afinn(path: str | os.PathLike | None = None) -> list[tuple[str, int]]:
    """``(word, valence)`` pairs of the AFINN-en-165 list the ``afinn`` package ships (or of ``path``: lines
    ``word<TAB>integer``), in file order. Raises ``ValueError`` naming the file and line of a bad row."""
    if path is None:
        try:
            import afinn
        except ImportError as err:
            raise ImportError(
                "the lexicon task needs the AFINN word list: pip install afinn "
                "(or pip install 'ordinalclip[demo]')"
            ) from err
        path = Path(afinn.__file__).parent / "data" / "AFINN-en-165.txt"
    path = Path(path)
    pairs: list[tuple[str, int]] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        word, sep, value = line.rpartition("\t")
        try:
            valence = int(value)
        except ValueError:
            valence = None
        if not sep or not word.strip() or valence is None or not VALENCE_MIN <= valence <= VALENCE_MAX:
            raise ValueError(f"{path}:{number}: expected 'word<TAB>integer in -5..5', got {line!r}")
        pairs.append((word.strip(), valence))
    return pairs


def split_by_word(
    labels: np.ndarray, seed: int = 0, fractions: tuple[float, float] = (0.15, 0.15)
) -> np.ndarray:
    """(N,) split names for (N,) labels: per label, a seeded shuffle gives ``round(n * val)`` val and
    ``round(n * test)`` test items and the rest (at least one) train."""
    rng = np.random.default_rng(seed)
    out = np.empty(len(labels), dtype=object)
    for value in np.unique(labels):
        idx = np.flatnonzero(labels == value)
        idx = idx[rng.permutation(len(idx))]
        n_val, n_test = (int(round(len(idx) * f)) for f in fractions)
        while n_val + n_test >= len(idx) and (n_val or n_test):  # keep one training item per rank
            if n_val >= n_test:
                n_val -= 1
            else:
                n_test -= 1
        out[idx[:n_val]] = "val"
        out[idx[n_val : n_val + n_test]] = "test"
        out[idx[n_val + n_test :]] = "train"
    return out.astype(str)


def build_lexicon_dataset(
    root: str | os.PathLike | None = None,
    text_model: str = "all-MiniLM-L6-v2",
    seed: int = 0,
    limit: int | None = None,
    lexicon: str | os.PathLike | None = None,
    *,
    embed: Callable[[list[str], str], np.ndarray] | None = None,
) -> LexiconDataset:
    """Build (or reuse) the lexicon data set under ``root`` (default: :func:`default_lexicon_root`).

    Args:
        text_model: the encoder of the features (a name :class:`HFTextTower` resolves, or a local folder).
        embed: ``(sentences, text_model) -> (N, E)`` L2-normalised float32 embeddings, needed when the
            features are not cached yet: :func:`ordinalclip.modeling.text_features.embed_sentences` (the
            project's text tower; the data layer does not import the model layer itself).
        seed: the split's seed.
        limit: keep only this many words (a seeded, rank-stratified subset, for tests); None = all.
        lexicon: another ``word<TAB>valence`` file instead of AFINN-en-165.
    """
    root = Path(root).expanduser() if root is not None else default_lexicon_root()
    pairs = read_afinn(lexicon)
    settings = {
        "version": VERSION,
        "text_model": text_model,
        "seed": seed,
        "limit": limit,
        "template": FEATURE_TEMPLATE,
        "lexicon": str(lexicon) if lexicon else "AFINN-en-165",
        "num_words": len(pairs),
    }
    marker = root / _MARKER
    if marker.is_file():
        try:
            found = json.loads(marker.read_text(encoding="utf-8"))
            if {k: found.get(k) for k in settings} == settings:
                return _dataset(root, found)
        except json.JSONDecodeError:
            pass  # a corrupt marker means an unknown state: rebuild
    marker.unlink(missing_ok=True)
    words = [w for w, _ in pairs]
    labels = np.array([v for _, v in pairs], dtype=np.int64)
    if limit is not None and limit < len(words):
        # every rank keeps a share (at least one word), then the subset is cut to the limit
        rng = np.random.default_rng(seed + 1)
        keep = []
        for value in np.unique(labels):
            idx = np.flatnonzero(labels == value)
            keep.extend(rng.permutation(idx)[: max(1, round(limit * len(idx) / len(labels)))].tolist())
        keep = sorted(keep)
        words, labels = [words[i] for i in keep], labels[keep]
    split = split_by_word(labels, seed)
    if embed is None:
        raise ValueError(
            f"the lexicon features under {root} are not built yet: pass embed= (e.g. "
            "ordinalclip.modeling.text_features.embed_sentences) to compute them"
        )
    features = embed([FEATURE_TEMPLATE.format(w) for w in words], text_model).astype(np.float32)
    root.mkdir(parents=True, exist_ok=True)

    def write(tmp: Path) -> None:
        with tmp.open("wb") as fh:  # a file object: np.savez would add ".npz" to a path
            np.savez(fh, features=features, labels=labels, split=split, words=np.array(words))

    atomic_write(root / "features.npz", write)
    for s in _SPLITS:
        atomic_write_text(
            root / f"{s}.txt", "".join(f"{w}\t{v}\n" for w, v, p in zip(words, labels, split) if p == s)
        )
    atomic_write_text(root / "ranks.txt", "".join(n + "\n" for n in LEXICON_RANK_NAMES))
    counts = {s: int((split == s).sum()) for s in _SPLITS}
    atomic_write_text(marker, json.dumps({**settings, "counts": counts}))
    return _dataset(root, {**settings, "counts": counts})


def _dataset(root: Path, settings: dict) -> LexiconDataset:
    return LexiconDataset(
        root=root,
        features=root / "features.npz",
        rank_names=LEXICON_RANK_NAMES,
        counts=dict(settings["counts"]),
        text_model=settings["text_model"],
    )
