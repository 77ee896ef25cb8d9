"""The offline blur-level demo dataset: counts, photo-disjoint splits, ordered levels, determinism, caching."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("skimage", reason="the demo photos come from scikit-image (pip install scikit-image)")

from ordinalclip.data import blur  # noqa: E402
from ordinalclip.data.blur import DemoDataset, blur_sigmas, build_blur_dataset, rank_names  # noqa: E402

CROPS, SIZE, LEVELS = 2, 32, 6
N_PHOTOS = 20  # 17 scikit-image + 2 scikit-learn + 1 matplotlib photos


def _build(root: Path, **kw) -> DemoDataset:
    return build_blur_dataset(root, levels=LEVELS, crops_per_photo=CROPS, size=SIZE, progress=False, **kw)


def _read_list(path: Path) -> list[tuple[str, int]]:
    rows = []
    for line in path.read_text().splitlines():
        rel, label = line.split(" ")
        rows.append((rel, int(label)))
    return rows


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> DemoDataset:
    return _build(tmp_path_factory.mktemp("demo") / "blur")


def _laplacian_variance(path: Path) -> float:
    g = np.asarray(Image.open(path).convert("L"), dtype=np.float64)
    lap = g[1:-1, :-2] + g[1:-1, 2:] + g[:-2, 1:-1] + g[2:, 1:-1] - 4 * g[1:-1, 1:-1]
    return float(lap.var())


def test_sigmas_and_names() -> None:
    # geometric from 0.5 to 4 over 5 steps: ratio 8 ** (1/4)
    np.testing.assert_allclose(blur_sigmas(6), [0, 0.5, 0.5 * 8**0.25, 0.5 * 8**0.5, 0.5 * 8**0.75, 4.0])
    assert rank_names(6)[0] == "sharp" and rank_names(6)[-1] == "extremely blurred"
    assert len(set(rank_names(6))) == 6
    assert rank_names(2) == ("sharp", "extremely blurred")
    with pytest.raises(ValueError, match="levels"):
        blur_sigmas(1)


def test_counts_files_and_meta(built: DemoDataset) -> None:
    meta = json.loads((built.root / "meta.json").read_text())
    assert meta["num_images"] == N_PHOTOS * CROPS * LEVELS
    assert built.ranks_file.read_text().splitlines() == list(rank_names(LEVELS)) == list(built.rank_names)
    for split in ("train", "val", "test"):
        rows = _read_list(built.list_file(split))
        n_photos = len(built.photo_split[split])
        assert meta["photos_per_split"][split] == n_photos
        assert meta["counts_per_level"][split] == [n_photos * CROPS] * LEVELS
        assert np.bincount([lab for _, lab in rows], minlength=LEVELS).tolist() == [n_photos * CROPS] * LEVELS
        for rel, label in rows[:: LEVELS + 1]:
            assert rel.endswith(f"_l{label}.png")
            with Image.open(built.root / rel) as im:
                assert im.size == (SIZE, SIZE) and im.mode == "RGB"


def test_splits_disjoint_by_photo(built: DemoDataset) -> None:
    sets = {s: set(v) for s, v in built.photo_split.items()}
    assert not (sets["train"] & sets["val"] or sets["train"] & sets["test"] or sets["val"] & sets["test"])
    assert len(sets["train"] | sets["val"] | sets["test"]) == N_PHOTOS
    assert len(sets["val"]) == len(sets["test"]) == 4
    for split in ("train", "val", "test"):
        photos_in_list = {rel.split("/")[1] for rel, _ in _read_list(built.list_file(split))}
        assert photos_in_list == sets[split]


def test_levels_remove_high_frequencies_in_order(built: DemoDataset) -> None:
    rows = [r for s in ("train", "val", "test") for r in _read_list(built.list_file(s))]
    per_level = [
        np.mean([_laplacian_variance(built.root / rel) for rel, lab in rows if lab == k]) for k in range(6)
    ]
    assert all(a > b for a, b in zip(per_level, per_level[1:])), per_level
    # sigma 4 leaves very little of a sharp crop's Laplacian energy
    assert per_level[-1] < 0.05 * per_level[0]


def test_deterministic(built: DemoDataset, tmp_path: Path) -> None:
    again = _build(tmp_path / "again")
    assert again.photo_split == built.photo_split
    for name in ("train.txt", "val.txt", "test.txt", "ranks.txt", "meta.json"):
        assert (again.root / name).read_bytes() == (built.root / name).read_bytes()
    pngs = sorted(p.relative_to(built.root) for p in built.root.rglob("*.png"))
    assert len(pngs) == N_PHOTOS * CROPS * LEVELS
    assert all((again.root / p).read_bytes() == (built.root / p).read_bytes() for p in pngs)
    other_seed = _build(tmp_path / "seed1", seed=1)
    assert other_seed.photo_split != built.photo_split


def test_cache_reused_half_built_rebuilt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORDINALCLIP_CACHE", str(tmp_path))
    first = build_blur_dataset(levels=LEVELS, crops_per_photo=CROPS, size=SIZE, progress=False)
    assert first.root == tmp_path / "demo-blur-v1"
    train_bytes = first.train_list.read_bytes()

    def no_build(*args: object, **kwargs: object) -> None:
        raise AssertionError("a complete cache must not be rebuilt")

    with monkeypatch.context() as m:
        m.setattr(blur, "_random_crops", no_build)
        assert build_blur_dataset(levels=LEVELS, crops_per_photo=CROPS, size=SIZE, progress=False) == first
        # different settings do not reuse the cache
        with pytest.raises(AssertionError, match="must not be rebuilt"):
            build_blur_dataset(levels=LEVELS, crops_per_photo=CROPS + 1, size=SIZE, progress=False)

    # the failed attempt above left a half-built folder (no marker): the next call rebuilds it
    assert not (first.root / "COMPLETE").exists()
    (first.root / "images" / "astronaut" / "c000_l0.png").unlink(missing_ok=True)
    (first.root / "stale.txt").write_text("user file")
    rebuilt = build_blur_dataset(levels=LEVELS, crops_per_photo=CROPS, size=SIZE, progress=False)
    assert rebuilt == first and (first.root / "COMPLETE").is_file()
    assert first.train_list.read_bytes() == train_bytes
    assert (first.root / "images" / "astronaut" / "c000_l0.png").is_file()
    assert (first.root / "stale.txt").read_text() == "user file"  # only the build's own files are removed
