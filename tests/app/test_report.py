"""Report pages: the numbers shown are computed from the inputs, the tables are HTML tables with the best values
marked, the data and the worst errors are shown, and the pages read in a real browser at 1000 px."""

from __future__ import annotations

import json
import re
import shutil
import sys
import warnings
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import yaml
from PIL import Image

from ordinalclip.app import cli, plots
from ordinalclip.app.demo import RunResult, write_report
from ordinalclip.app.pagekit import Column, html_table, md_table
from ordinalclip.app.plots import plot_few_shot
from ordinalclip.app.report import make_report

NAMES = ["none", "low", "mid", "high", "max"]
C = len(NAMES)
COLORS = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (200, 200, 30), (30, 200, 200)]


class _Tables(HTMLParser):
    """Every <table> of a page as rows of (text, classes) cells."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[list[list[tuple[str, set[str]]]]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []
            self._classes = set((dict(attrs).get("class") or "").split())

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append(("".join(self._cell).strip(), self._classes))
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def tables_of(page: Path) -> list[list[list[tuple[str, set[str]]]]]:
    parser = _Tables()
    parser.feed(page.read_text(encoding="utf-8"))
    return parser.tables


def _predictions(n: int, num_ranks: int = C, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Labels (every rank in turn) and (n, C) probabilities peaked near the label, some far off."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % num_ranks
    logits = -np.abs(np.arange(num_ranks)[None, :] - labels[:, None]) * 1.5 + rng.normal(
        0, 1.2, (n, num_ranks)
    )
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return labels, probs


def make_run(
    root: Path, feature_only: bool = False, n: int = 10, num_ranks: int = C, trainer: dict | None = None
) -> tuple[Path, dict]:
    """A run folder as api.fit writes it, with real PNG images (200 x 150) for image runs; rank names when
    ``num_ranks`` is that of NAMES; ``trainer``: the config's trainer section (none: the default config's,
    whose headline prediction is the expectation)."""
    run = root / ("features-run" if feature_only else "image-run")
    (run / "predictions").mkdir(parents=True)
    (run / "logs" / "csv" / "version_0").mkdir(parents=True)
    labels, probs = _predictions(n, num_ranks)
    pred_max = probs.argmax(1)
    pred_exp = probs @ np.arange(num_ranks)
    paths = []
    for i in range(n):
        if feature_only:
            paths.append(f"{root}/feats.npz#test/{i}")
        else:
            path = root / "images" / f"img {i}.png"  # a space: links must be escaped
            path.parent.mkdir(exist_ok=True)
            Image.new("RGB", (200, 150), COLORS[labels[i] % C]).save(path)
            paths.append(str(path))
    header = "path,label,pred_exp,pred_max," + ",".join(f"p_{k}" for k in range(num_ranks))
    lines = [header] + [
        f"{p},{y},{e:.6f},{m}," + ",".join(f"{q:.6g}" for q in pr)
        for p, y, e, m, pr in zip(paths, labels, pred_exp, pred_max, probs)
    ]
    (run / "predictions" / "test_best.csv").write_text("\n".join(lines) + "\n")
    angles = np.linspace(0, 1.2, num_ranks)
    np.save(run / "prototypes.npy", np.stack([np.cos(angles), np.sin(angles), 0 * angles], 1))
    (run / "logs" / "csv" / "version_0" / "metrics.csv").write_text(
        "epoch,step,train_loss,val_mae_max\n0,3,2.0,\n0,3,,1.5\n1,7,1.5,\n1,7,,1.0\n"
    )
    metrics = {
        "best": {
            "test": {
                "mae_exp": 0.61,
                "mae_max": 0.5,
                "acc_exp": 0.4,
                "acc_max": 0.6,
                "off1_max": 0.9,
                "qwk_max": 0.7,
            },
            "val": {
                "mae_exp": 0.55,
                "mae_max": 0.45,
                "acc_exp": 0.5,
                "acc_max": 0.55,
                "off1_max": 0.95,
                "qwk_max": 0.8,
            },
        },
        "last": {
            "test": {
                "mae_exp": 0.72,
                "mae_max": 0.4,
                "acc_exp": 0.3,
                "acc_max": 0.5,
                "off1_max": 0.9,
                "qwk_max": 0.75,
            },
            "val": {
                "mae_exp": 0.6,
                "mae_max": 0.5,
                "acc_exp": 0.45,
                "acc_max": 0.5,
                "off1_max": 0.9,
                "qwk_max": 0.7,
            },
        },
        "data": {"train": 40, "val": 10, "test": n, "skipped_images": 0},
    }
    (run / "metrics.json").write_text(json.dumps(metrics))
    fmt = "features" if feature_only else "list"
    (run / "config.yaml").write_text(
        yaml.safe_dump(
            {
                "name": "t",
                "model": {"arch": "ordinalclip", "num_ranks": num_ranks},
                "data": {"format": fmt, "rank_names": NAMES if num_ranks == C else None},
                **({"trainer": trainer} if trainer is not None else {}),
            }
        )
    )
    (run / "env.json").write_text(json.dumps({"python": "3.x", "packages": {"torch": "2"}}))
    return run, {
        "labels": labels,
        "probs": probs,
        "pred_max": pred_max,
        "pred_exp": pred_exp,
        "paths": paths,
        "metrics": metrics,
    }


def _errors_html(page: Path) -> str:
    text = page.read_text(encoding="utf-8")
    start = text.index('<div class="errors">')
    return text[start : text.index("\n", start)]


def test_html_table_marks_the_best_value_per_column_and_group():
    cols = [Column("name"), Column("MAE", True, "min"), Column("acc", True, "max"), Column("n", True)]
    rows = [
        ["a", 0.5, 0.7, 3],
        ["b", 0.4, 0.7, 9],
        ["e", 0.6, 0.5, 4],
        ["c", 0.9, 0.1, 1],
        ["d", 0.8, 0.2, 2],
        ["f", 0.3, 0.3, 5],
        ["g", 0.3, 0.3, 6],
    ]
    groups = ["x", "x", "x", "y", "y", "z", "z"]
    parser = _Tables()
    parser.feed(html_table(cols, rows, groups=groups))
    (table,) = parser.tables
    body = table[1:]
    best = {(i, j) for i, row in enumerate(body) for j, (_, cls) in enumerate(row) if "best" in cls}
    # per group: MAE min (b in x, d in y); acc max (a and b tie in x, d in y); n has no direction; group z is all
    # alike, so nothing stands out there
    assert best == {(1, 1), (4, 1), (0, 2), (1, 2), (4, 2)}
    assert all("num" in cls for row in table for _, cls in row[1:])  # numbers right-aligned, headers too
    assert [text for text, _ in body[1]] == ["b", "0.400", "0.700", "9"]
    md = md_table(cols, rows, groups=groups)
    assert "| b | **0.400** | **0.700** | 9 |" in md and md.splitlines()[1] == "| --- | ---: | ---: | ---: |"


def test_run_report_shows_the_metrics_the_data_and_the_worst_errors(tmp_path):
    run, truth = make_run(tmp_path)
    page = make_report(run)
    out = page.parent
    assert page == run / "report" / "index.html"
    tables = tables_of(page)
    # the metrics table: split, checkpoint, MAE exp, MAE max, acc exp, acc max, off-1, QWK; best within a split
    metrics = next(t for t in tables if t[0][0][0] == "split")
    rows = {(r[0][0], r[1][0]): r for r in metrics[1:]}
    assert rows[("test", "best")][2] == ("0.610", {"num", "best"})  # MAE exp 0.61 < 0.72
    assert rows[("test", "last")][3] == ("0.400", {"num", "best"})  # MAE max 0.4 < 0.5
    assert "best" in rows[("test", "last")][7][1] and "best" not in rows[("test", "best")][7][1]  # QWK 0.75
    assert rows[("test", "best")][6][1] == rows[("test", "last")][6][1] == {"num"}  # off-1 0.9 = 0.9: no best
    assert "best" in rows[("val", "best")][7][1]  # val compared with val only
    # samples per rank: a row per rank with its count of test images and at most four thumbnails
    samples = next(t for t in tables if t[0][0][0] == "rank" and t[0][3][0] == "samples")
    counts = {int(r[0][0]): int(r[2][0]) for r in samples[1:]}
    assert counts == {r: int((truth["labels"] == r).sum()) for r in range(C)}
    html_text = page.read_text(encoding="utf-8")
    thumbs = re.findall(r'<img class=thumb src="([^"]+)"', html_text)
    assert len(thumbs) == len(truth["labels"])  # two per rank here, all shown
    for src in thumbs:
        with Image.open(out / src) as im:
            assert im.size == (96, 72)  # 200 x 150 scaled to fit 96 px
    # a thumbnail of rank r has the colour of rank r
    first_row_img = re.search(r'<td class="num">0</td>.*?<img class=thumb src="([^"]+)"', html_text).group(1)
    with Image.open(out / first_row_img) as im:
        assert np.abs(np.asarray(im.convert("RGB"))[36, 48].astype(int) - COLORS[0]).max() <= 8

    # worst errors: largest error of the headline prediction (the expectation) first, then the argmax's;
    # wrong ones only
    y, pmax, pexp = truth["labels"], truth["pred_max"], truth["pred_exp"]
    expected = sorted(range(len(y)), key=lambda i: (-abs(pexp[i] - y[i]), -abs(pmax[i] - y[i])))
    expected = [i for i in expected if pmax[i] != y[i] or abs(pexp[i] - y[i]) >= 0.5]
    assert expected, "the fixture must have errors"
    errors = _errors_html(page)
    shown = re.findall(r'<img src="[^"]+" alt="test image (\d+)"', errors)
    assert [int(i) for i in shown] == expected[:12]
    # the first card's bars are the predicted distribution: heights proportional to the probabilities
    svg = errors[errors.index("<svg") : errors.index("</svg>")]
    heights = np.array([float(h) for h in re.findall(r'<rect [^>]*height="([\d.]+)"', svg)])
    worst = truth["probs"][expected[0]]
    assert len(heights) == C
    np.testing.assert_allclose(heights / heights.max(), worst / worst.max(), atol=0.01)
    assert f"true <b>{y[expected[0]]} · {NAMES[y[expected[0]]]}</b>" in errors

    # error per rank: computed by hand from the predictions
    per_rank = next(t for t in tables if [c[0] for c in t[0]][:3] == ["rank", "name", "n"])
    for r, row in enumerate(per_rank[1:]):
        mask = y == r
        assert row[3][0] == f"{np.abs(pexp[mask] - r).mean():.3f}"
        assert row[4][0] == f"{np.abs(pmax[mask] - r).mean():.3f}"
    for name in ("error_per_rank.png", "confusion.png", "prototypes.png", "curves_0.png"):
        with Image.open(out / name) as im:
            assert im.size[0] > 200 and im.size[1] > 150
        assert f'src="{name}"' in html_text
    # prototypes on an arc are perfectly ordinal: every span is 100%
    spans = re.findall(r"span \d+: ([\d.]+)%", html_text)
    assert spans and all(v == "100.0" for v in spans)
    # config and environment folded away
    assert re.search(r"<details><summary>config\.yaml</summary><pre>[^<]*arch: ordinalclip", html_text)
    assert "<details><summary>env.json" in html_text
    # no network: every src/href is relative
    assert not re.search(r'(src|href)="(https?:)?//', html_text)
    summary = (out / "summary.md").read_text()
    assert "| test | best | **0.610** | 0.500 |" in summary


@pytest.mark.parametrize("prediction", ["expectation", "argmax"])
def test_the_run_page_shows_the_runs_headline_prediction(tmp_path, monkeypatch, prediction):
    from ordinalclip.app import runpage

    confusion = {}
    real = runpage.plot_confusion
    monkeypatch.setattr(
        runpage,
        "plot_confusion",
        lambda y, pred, *a, **kw: confusion.update(pred=pred) or real(y, pred, *a, **kw),
    )
    # an argmax run as a config written before trainer.prediction says it: by its monitor
    trainer = {"monitor": "val_mae_max"} if prediction == "argmax" else {"prediction": "expectation"}
    run, truth = make_run(tmp_path, n=40, trainer=trainer)
    page = make_report(run)
    y, pmax, pexp = truth["labels"], truth["pred_max"], truth["pred_exp"]
    errors = {"expectation": np.abs(pexp - y), "argmax": np.abs(pmax - y)}
    other = "argmax" if prediction == "expectation" else "expectation"
    order = sorted(range(len(y)), key=lambda i: (-errors[prediction][i], -errors[other][i]))
    wrong = [i for i in order if pmax[i] != y[i] or abs(pexp[i] - y[i]) >= 0.5][:12]
    by_other = sorted(range(len(y)), key=lambda i: (-errors[other][i], -errors[prediction][i]))
    assert wrong != [i for i in by_other if pmax[i] != y[i] or abs(pexp[i] - y[i]) >= 0.5][:12]
    shown = re.findall(r'<img src="[^"]+" alt="test image (\d+)"', _errors_html(page))
    assert [int(i) for i in shown] == wrong
    # the confusion matrix of the headline rank: the expectation rounded to the nearest rank (half to even)
    want = np.rint(pexp).astype(int) if prediction == "expectation" else pmax
    assert np.array_equal(confusion["pred"], want)
    text = page.read_text(encoding="utf-8")
    assert f"Headline prediction: the {prediction}" in text
    assert f"Largest {prediction} error first" in text
    first = wrong[0]
    if prediction == "expectation":
        assert "confusion matrix, rows normalised (expectation, rounded to the nearest rank)" in text
        assert (
            f"expectation <b>{pexp[first]:.2f}</b> (nearest rank {want[first]} · {NAMES[want[first]]})"
            in text
        )
    else:
        assert "confusion matrix, rows normalised (argmax)" in text
        assert f"argmax <b>{pmax[first]} · {NAMES[pmax[first]]}</b> (expectation {pexp[first]:.2f})" in text
    # the metrics table leads with the headline's MAE and accuracy
    metrics = next(t for t in tables_of(page) if t[0][0][0] == "split")
    heads = [c[0] for c in metrics[0]][2:6]
    assert heads == (
        ["MAE exp", "MAE max", "acc exp", "acc max"]
        if prediction == "expectation"
        else ["MAE max", "MAE exp", "acc max", "acc exp"]
    )


def test_many_ranks_show_an_evenly_spaced_subset(tmp_path):
    """Ages (dozens of ranks): samples of 12 evenly spaced ranks, the per-rank table folded, one bar per rank."""
    run, truth = make_run(tmp_path, n=80, num_ranks=40)
    page = make_report(run)
    text = page.read_text(encoding="utf-8")
    samples = next(t for t in tables_of(page) if t[0][0][0] == "rank" and t[0][3][0] == "samples")
    shown = [int(r[0][0]) for r in samples[1:]]
    assert shown == np.linspace(0, 39, 12).round().astype(int).tolist() and "12 of 40 ranks shown" in text
    assert re.search(r"<details><summary>Error per rank, table \(40 ranks\)</summary><table>", text)
    svg = text[text.index("<svg") : text.index("</svg>")]
    assert svg.count("<rect") == 40


def test_feature_only_run_says_so_and_shows_what_it_can(tmp_path):
    run, truth = make_run(tmp_path, feature_only=True)
    page = make_report(run)
    text = page.read_text(encoding="utf-8")
    assert "Feature-only run" in text
    assert "<img class=thumb" not in text and not (page.parent / "images").exists()
    # the worst errors are still listed (by their feature-row reference) with their distributions
    errors = _errors_html(page)
    assert errors.count("<svg") == errors.count("class=card") > 0
    assert re.findall(r"<div class=ref[^>]*>([^<]*)</div>", errors)[0].startswith("test/")  # SPLIT/ROW
    for name in ("error_per_rank.png", "confusion.png", "prototypes.png"):
        assert (page.parent / name).is_file()


def test_predictions_without_probabilities_still_report(tmp_path):
    run, _ = make_run(tmp_path)
    csv_path = run / "predictions" / "test_best.csv"
    lines = [",".join(line.split(",")[:4]) for line in csv_path.read_text().splitlines()]  # an older run
    csv_path.write_text("\n".join(lines) + "\n")
    text = make_report(run).read_text(encoding="utf-8")
    assert "no probabilities recorded" in text and "<svg" not in text


def test_report_without_matplotlib_names_the_extra(tmp_path, monkeypatch, capsys):
    import lightning.pytorch  # noqa: F401  (imports torchmetrics, which imports an installed matplotlib)

    run, _ = make_run(tmp_path)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    assert cli.main(["report", str(run)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "pip install 'ordinalclip[report]'" in err[0]
    assert not (run / "report").exists()


def _sweep_dir(tmp_path: Path) -> Path:
    """Two finished cells (a setting of data.few_shot.shots each) and one unfinished, as a sweep leaves them."""
    sweep = tmp_path / "sweep"
    src, _ = make_run(tmp_path)
    for shots, mae in ((1, 0.9), (4, 0.6)):
        cell = sweep / f"cfg__shots={shots}__seed0"
        shutil.copytree(src, cell)
        metrics = json.loads((cell / "metrics.json").read_text())
        metrics["best"]["test"]["mae_max"] = mae
        (cell / "metrics.json").write_text(json.dumps(metrics))
        (cell / "cell.json").write_text(
            json.dumps(
                {
                    "config": "cfg.yaml",
                    "label": "cfg",
                    "settings": {"data.few_shot.shots": shots},
                    "seed": 0,
                    "fold": None,
                    "overrides": [],
                    "untrained": False,
                }
            )
        )
    (sweep / "cfg__shots=16__seed0").mkdir()
    (sweep / "cfg__shots=16__seed0" / "cell.json").write_text(
        json.dumps(
            {
                "config": "cfg.yaml",
                "label": "cfg",
                "settings": {"data.few_shot.shots": 16},
                "seed": 0,
                "fold": None,
                "overrides": [],
                "untrained": False,
            }
        )
    )
    return sweep


def test_sweep_page_from_a_sweep_folder(tmp_path):
    sweep = _sweep_dir(tmp_path)
    page = make_report(sweep)
    assert page == sweep / "index.html"
    tables = tables_of(page)
    best_test = tables[0]
    assert [c[0] for c in best_test[0]] == [
        "config",
        "shots",
        "n",
        "MAE exp",
        "MAE max",
        "acc exp",
        "acc max",
        "off-1 acc",
        "QWK",
    ]
    by_shots = {r[1][0]: r for r in best_test[1:]}
    assert by_shots["1"][4] == ("0.900", {"num"}) and by_shots["4"][4] == ("0.600", {"num", "best"})
    assert (sweep / "few_shot.png").is_file() and 'src="few_shot.png"' in page.read_text()
    links = re.findall(r'<a href="([^"]+)">', page.read_text())
    assert sorted(links) == sorted(
        [
            "cfg__shots%3D1__seed0/report/index.html",
            "cfg__shots%3D16__seed0/",
            "cfg__shots%3D4__seed0/report/index.html",
        ]
    )
    for link in links:
        assert (sweep / link.replace("%3D", "=")).exists()
    assert "failed: no metrics.json" in page.read_text()


def test_sweep_metric_auto_is_the_mae_of_the_runs_headline(tmp_path):
    from ordinalclip.app.runpage import runs_prediction, sweep_metric
    from ordinalclip.app.tables import table_columns

    runs = {}
    for name, trainer in (
        ("argmax", {"prediction": "argmax", "monitor": "val_mae_max"}),
        ("old", {"monitor": "val_mae_max"}),  # written before trainer.prediction: its monitor says argmax
        ("exp", {"prediction": "expectation", "monitor": "val_mae_exp"}),
    ):
        runs[name], _ = make_run(tmp_path / name, trainer=trainer)
    assert runs_prediction([runs["old"]]) == "argmax" and runs_prediction([runs["exp"]]) == "expectation"
    assert (
        sweep_metric("auto", runs_prediction(list(runs.values()))) == "mae_max"
    )  # two of three runs lead with the argmax
    assert (
        sweep_metric("auto", runs_prediction([runs["exp"], runs["argmax"]])) == "mae_exp"
    )  # a tie: the default config's
    assert sweep_metric("auto", runs_prediction([])) == "mae_exp"
    assert sweep_metric("qwk_max", runs_prediction([runs["old"]])) == "qwk_max"
    assert [k for k, _ in table_columns("argmax")] == [
        "mae_max",
        "mae_exp",
        "acc_max",
        "acc_exp",
        "off1_max",
        "qwk_max",
    ]
    args = cli.build_parser().parse_args(["sweep", "-c", "a.yaml", "--out", str(tmp_path / "s")])
    assert args.metric == "auto"


def test_sweep_page_without_matplotlib_keeps_its_tables(tmp_path, monkeypatch):
    import lightning.pytorch  # noqa: F401  (imports torchmetrics, which imports an installed matplotlib)

    from ordinalclip.app.sweeppage import make_sweep_page

    sweep = _sweep_dir(tmp_path)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    text = make_sweep_page(sweep).read_text(encoding="utf-8")
    assert "<table" in text and "<img" not in text and not (sweep / "few_shot.png").exists()
    assert text.count("pip install &#x27;ordinalclip[report]&#x27;") == 2  # curves and cell reports
    assert 'href="cfg__shots%3D1__seed0/"' in text  # the cell folder, as it has no report


def _fake_demo(tmp_path: Path) -> Path:
    """The demo's page from two finished runs (image runs standing in for the demo's feature runs)."""
    run, truth = make_run(tmp_path, feature_only=True)
    lines = []
    for i, label in enumerate(truth["labels"]):  # the photo each feature row was extracted from
        Image.new("RGB", (96, 96), COLORS[label]).save(tmp_path / f"crop{i}.png")
        lines.append(f"crop{i}.png {label}")
    (tmp_path / "test.txt").write_text("\n".join(lines) + "\n")
    methods = [
        "OrdinalCLIP (random base ranks)",
        "OrdinalCLIP (named base ranks)",
        "CoOp (rank names)",
        "CNN cosine baseline",
        "Linear (CE)",
    ]
    rng = np.random.default_rng(1)
    results = []
    for setting in ("full", "1-shot", "16-shot"):
        for seed in (0, 1, 2):
            for m in methods:
                metrics = {k: float(rng.uniform(0.2, 1.5)) for k in truth["metrics"]["best"]["test"]}
                results.append(
                    RunResult(m, setting, seed, metrics, run, ordinality=0.9 if "Linear" not in m else None)
                )
    dataset = SimpleNamespace(
        rank_names=NAMES, root=tmp_path, list_file=lambda split: tmp_path / f"{split}.txt"
    )
    page = write_report(
        tmp_path / "demo" / "report",
        results,
        ["full", "1-shot", "16-shot"],
        methods,
        "intro text",
        dataset,
        0,
    )
    assert page.read_text().count("<img class=thumb") == len(truth["labels"])  # the crops behind the features
    return page


def test_demo_page_marks_the_best_method_per_setting(tmp_path):
    page = _fake_demo(tmp_path)
    table = tables_of(page)[0]
    assert [c[0] for c in table[0]][-1] == "ordinality"
    for setting in ("full", "1-shot"):
        rows = [r for r in table[1:] if r[0][0] == setting]
        means = [float(r[2][0].split("±")[0]) for r in rows]  # MAE exp
        best = [i for i, r in enumerate(rows) if "best" in r[2][1]]
        assert best == [int(np.argmin(means))]


@pytest.mark.parametrize("which", ["run", "sweep", "demo"])
def test_pages_read_in_a_browser_at_1000px(tmp_path, page, which):
    """What a person sees: HTML tables wholly inside a 1000 px window (no horizontal scroll) and every image
    loads, with no console error or failed request."""
    if which == "run":
        html_page = make_report(make_run(tmp_path)[0])
    elif which == "sweep":
        html_page = make_report(_sweep_dir(tmp_path))
    else:
        html_page = _fake_demo(tmp_path)
    page.goto(html_page.resolve().as_uri())
    page.wait_for_load_state("load")
    boxes = page.eval_on_selector_all(
        "table",
        "ts => ts.map(t => { const r = t.getBoundingClientRect(); "
        "return [r.left, r.right, t.rows.length]; })",
    )
    assert boxes, "no HTML table on the page"
    for left, right, n_rows in boxes:
        assert left >= 0 and right <= 1000 and n_rows >= 2, (left, right)
    assert page.evaluate("document.scrollingElement.scrollWidth") <= 1000
    images = page.eval_on_selector_all(
        "img", "is => is.map(i => [i.getAttribute('src'), i.complete, i.naturalWidth])"
    )
    assert len(images) >= (1 if which == "sweep" else 3)  # a sweep page: the few-shot curves
    broken = [src for src, complete, width in images if not complete or width == 0]
    assert not broken
    assert page.problems == []


def test_few_shot_plot(tmp_path, monkeypatch):
    figures = []
    save = plots._save
    monkeypatch.setattr(plots, "_save", lambda fig, out: (figures.append(fig), save(fig, out)))
    # per method and shot count, the seeds' values: mean and population std by hand below
    plot_few_shot(
        {"OrdinalCLIP": {4: [1.5, 1.4], 1: [2.0, 2.2]}, "CoOp": {1: [2.5, 2.4], 4: [1.8, 1.9]}},
        tmp_path / "fs.png",
        metric="MAE",
    )
    with Image.open(tmp_path / "fs.png") as im:
        assert im.size[0] > 200 and im.size[1] > 200
    (ax,) = figures[0].axes
    assert ax.get_xscale() == "log" and ax.get_xlabel() == "shots per rank" and ax.get_ylabel() == "MAE"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["OrdinalCLIP", "CoOp"]
    expected = {"OrdinalCLIP": ([2.1, 1.45], [0.1, 0.05]), "CoOp": ([2.45, 1.85], [0.05, 0.05])}
    for container in ax.containers:  # one errorbar per method: the line, its caps, its bars
        mean, std = expected[container.get_label()]
        line, _, (bars,) = container
        np.testing.assert_allclose(np.asarray(line.get_xdata(), float), [1, 4])  # shots sorted
        np.testing.assert_allclose(np.asarray(line.get_ydata(), float), mean)
        ends = np.array([seg[:, 1] for seg in bars.get_segments()])  # (shots, [low, high])
        np.testing.assert_allclose(ends, np.stack([np.subtract(mean, std), np.add(mean, std)], 1))
    assert len(ax.containers) == 2


def test_few_shot_plot_without_curves_draws_empty_axes_without_a_legend_warning(tmp_path):
    # a full-data-only benchmark run has no few-shot curve: matplotlib warned "No artists with labels"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plot_few_shot({}, tmp_path / "fs.png", metric="MAE")
    with Image.open(tmp_path / "fs.png") as im:
        assert im.size[0] > 200


def test_markdown_and_fixed_width_tables_by_hand():
    from ordinalclip.app.pagekit import fixed_width_table, markdown_table

    assert markdown_table(["a", "n"], [["x", 1], ["y", 22]], [False, True]) == (
        "| a | n |\n| --- | ---: |\n| x | 1 |\n| y | 22 |"
    )
    assert markdown_table(["a"], []) == "| a |\n| --- |"
    assert fixed_width_table(["", "mae"], [["best val", "0.5000"]], first=9, width=7) == (
        " " * 9 + "    mae\n" + "best val " + " 0.5000"  # 9 wide, then 7 wide right-aligned
    )
