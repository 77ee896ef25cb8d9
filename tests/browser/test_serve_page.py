"""The served page (app/serve_page.html) in a real headless browser, its server replaced by fixed answers:
cards come in the order the files were chosen, and rank names (multi-word, many ranks) never overlap under the
bars."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

BASE = "http://ordinalclip.test/"
FIVE = [
    "pristine",
    "lightly compressed",
    "moderately compressed",
    "heavily compressed",
    "extremely compressed",
]


def _answer(p: list[float], names: list[str] | None, prediction: str) -> dict:
    """What the server answers for the probabilities ``p`` over rank values 0..C-1 (Predictor.predict's row)."""
    top, expectation = int(np.argmax(p)), float(np.dot(p, range(len(p))))
    rank = int(np.rint(expectation)) if prediction == "expectation" else top
    return {
        "prediction": prediction,
        "value": expectation if prediction == "expectation" else float(top),
        "rank": rank,
        "name": names[rank] if names else None,
        "expectation": expectation,
        "exp_rank": expectation,
        "pred_value": float(top),
        "pred_rank": top,
        "pred_name": names[top] if names else None,
        "probabilities": p,
    }


def _serve(page, names: list[str], probs: list[list[float]], prediction: str = "argmax") -> None:
    """Route the page, /health and /predict (answering one prediction per uploaded file, in order, with
    ``prediction`` the headline)."""
    html = resources.files("ordinalclip.app").joinpath("serve_page.html").read_text(encoding="utf-8")
    health = {
        "model": "m",
        "num_ranks": len(names),
        "ranks": {"values": list(range(len(names))), "names": names},
        "prediction": prediction,
    }
    page.route(BASE, lambda route: route.fulfill(body=html, content_type="text/html"))
    page.route(
        BASE + "health", lambda route: route.fulfill(body=json.dumps(health), content_type="application/json")
    )

    def predict(route) -> None:
        n = route.request.post_data_buffer.count(b'name="files"')
        preds = [_answer(probs[k % len(probs)], names, prediction) for k in range(n)]
        route.fulfill(body=json.dumps({"predictions": preds}), content_type="application/json")

    page.route(BASE + "predict", predict)
    page.goto(BASE)
    page.wait_for_selector("body[data-ready='1']")


def _files(folder: Path, names: list[str]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i, name in enumerate(names):
        Image.fromarray(np.full((40, 40, 3), 40 * i, dtype=np.uint8)).save(folder / name)
        out.append(folder / name)
    return out


def _overlaps(boxes: list[dict]) -> list[tuple[int, int]]:
    """Pairs of label boxes that share pixels."""
    bad = []
    for i in range(len(boxes)):
        for j in range(i + 1, len(boxes)):
            a, b = boxes[i], boxes[j]
            if (
                a["x"] < b["x"] + b["width"] - 0.5
                and b["x"] < a["x"] + a["width"] - 0.5
                and a["y"] < b["y"] + b["height"] - 0.5
                and b["y"] < a["y"] + a["height"] - 0.5
            ):
                bad.append((i, j))
    return bad


@pytest.mark.slow
def test_cards_in_order_of_choice_and_multi_word_names_do_not_overlap(page, tmp_path):
    probs = [[0.05, 0.1, 0.6, 0.2, 0.05], [0.7, 0.1, 0.1, 0.05, 0.05], [0.0, 0.0, 0.1, 0.2, 0.7]]
    _serve(page, FIVE, probs)
    chosen = _files(tmp_path, ["c.png", "a.png", "b.png"])
    page.set_input_files("#files", [str(p) for p in chosen])
    page.wait_for_function("document.querySelectorAll('.card.done').length === 3")
    order = page.eval_on_selector_all(".card", "cards => cards.map(c => c.dataset.file)")
    assert order == ["c.png", "a.png", "b.png"]
    for k in range(3):
        card = page.locator(".card").nth(k)
        spans = card.locator(".ticks span")
        assert spans.count() == 5 and [spans.nth(i).inner_text() for i in range(5)] == FIVE
        boxes = [spans.nth(i).bounding_box() for i in range(5)]
        assert _overlaps(boxes) == []
        card_box = card.bounding_box()
        for b in boxes:  # inside the card
            assert card_box["x"] <= b["x"] and b["x"] + b["width"] <= card_box["x"] + card_box["width"] + 0.5
        # each name sits under its own bar: its centre falls within the bar's column
        bars = card.locator("svg rect")
        for i in range(5):
            bar, box = bars.nth(i).bounding_box(), boxes[i]
            centre = box["x"] + box["width"] / 2
            step = card.locator("svg").bounding_box()["width"] / 5
            assert bar["x"] - step / 2 <= centre <= bar["x"] + bar["width"] + step / 2
        assert card.locator(".ticks span.top").inner_text() == FIVE[int(np.argmax(probs[k]))]
    # a second choice goes after the first
    more = _files(tmp_path / "more", ["z.png"])
    page.set_input_files("#files", [str(p) for p in more])
    page.wait_for_function("document.querySelectorAll('.card.done').length === 4")
    assert page.eval_on_selector_all(".card", "cs => cs.map(c => c.dataset.file)")[-1] == "z.png"
    assert page.problems == []


@pytest.mark.slow
def test_many_ranks_show_first_predicted_and_last_name_without_overlap(page, tmp_path):
    names = [f"level {i} of the compression scale" for i in range(12)]
    p = [0.01] * 12
    p[5] = 1 - 0.01 * 11
    _serve(page, names, [p])
    page.set_input_files("#files", [str(f) for f in _files(tmp_path, ["x.png"])])
    page.wait_for_function("document.querySelectorAll('.card.done').length === 1")
    spans = page.locator(".card .ticks span")
    assert [spans.nth(i).get_attribute("title") for i in range(spans.count())] == [
        names[0],
        names[5],
        names[11],
    ]
    assert _overlaps([spans.nth(i).bounding_box() for i in range(3)]) == []
    assert page.problems == []


@pytest.mark.slow
def test_the_headline_prediction_comes_first(page, tmp_path):
    # expectation 0.4 * 0 + 0.6 * 4 = 2.4: its nearest rank is 2, while the argmax is 4
    _serve(page, FIVE, [[0.4, 0.0, 0.0, 0.0, 0.6]], prediction="expectation")
    assert "shows the expectation first" in page.inner_text("#model")
    page.set_input_files("#files", [str(f) for f in _files(tmp_path, ["x.png"])])
    page.wait_for_function("document.querySelectorAll('.card.done').length === 1")
    card = page.locator(".card")
    assert card.locator(".pred").inner_text() == "moderately compressed"
    assert card.locator(".exp").inner_text() == "expectation 2.40 · argmax extremely compressed (60 %)"
    assert card.locator(".ticks span.top").inner_text() == "moderately compressed"
    assert page.problems == []
