"""``ordinalclip serve``: predictions over HTTP equal the in-process predictor's, requests are batched, bad input
gets a JSON 4xx and never stops the server, and the page works in a real browser."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("fastapi", reason="the serve extra (pip install 'ordinalclip[serve]') is not installed")
pytest.importorskip("uvicorn", reason="the serve extra (pip install 'ordinalclip[serve]') is not installed")
requests = pytest.importorskip("requests", reason="the test extra (requests) is not installed")

import ordinalclip as oc  # noqa: E402
from ordinalclip.app.serve import ServeOptions, running_server  # noqa: E402
from ordinalclip.exports.write import export_head  # noqa: E402
from ordinalclip.modeling import (  # noqa: E402
    ImageTowerConfig,
    ModelConfig,
    build_model,  # noqa: E402
)
from tests.helpers import PREP, REPO_ROOT, free_port, png_bytes, tiny_vit_config  # noqa: E402

ROOT = REPO_ROOT
NAMES = ["sharp", "soft", "blurred", "very blurred", "unreadable"]
VALUES = [10.0, 20.0, 30.0, 40.0, 50.0]  # label values apart from the rank indices 0..4


@pytest.fixture(scope="module")
def export_path(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    cfg = tiny_vit_config()
    model = build_model(cfg).eval()
    out = tmp_path_factory.mktemp("serve") / "blur.safetensors"
    return export_head(model, cfg, out, rank_values=VALUES, rank_names=NAMES, preprocess=PREP)


@pytest.fixture(scope="module")
def predictor(export_path):
    return oc.load(export_path)


@pytest.fixture(scope="module")
def server(predictor):
    """A running server (thread) that waits up to 150 ms to fill a batch, so concurrent requests share one."""
    opts = ServeOptions(port=free_port(), max_batch=16, max_wait_ms=150, max_image_bytes=50_000, max_images=4)
    with running_server(predictor, opts, "blur.safetensors") as url:
        yield url


def _raw_multipart(server: str, body: bytes) -> requests.Response:
    """POST ``body`` as it is, declared as multipart with boundary ``xyz``."""
    return requests.post(
        f"{server}/predict",
        data=body,
        timeout=10,
        headers={"Content-Type": "multipart/form-data; boundary=xyz"},
    )


def _post(url: str, files: list[tuple[str, bytes]], **kw) -> requests.Response:
    return requests.post(
        f"{url}/predict", files=[("files", (n, d, "image/png")) for n, d in files], timeout=30, **kw
    )


def test_health_and_predictions_match_the_predictor(server, predictor, tmp_path):
    health = requests.get(f"{server}/health", timeout=10).json()
    assert health["status"] == "ok" and health["num_ranks"] == 5 and health["ranks"]["names"] == NAMES
    images = [("a.png", png_bytes(1)), ("b.png", png_bytes(2, (64, 30))), ("c.png", png_bytes(3))]
    r = _post(server, images)
    assert r.status_code == 200, r.text
    got = r.json()["predictions"]
    assert [p["file"] for p in got] == ["a.png", "b.png", "c.png"]  # upload order
    for (name, data), p in zip(images, got):
        (tmp_path / name).write_bytes(data)
        want = predictor.predict(tmp_path / name)[0]
        assert list(p)[:5] == ["file", "prediction", "value", "rank", "name"]  # the headline first
        probs = np.asarray(p["probabilities"])
        expected, top = float(probs @ VALUES), int(probs.argmax())
        assert p["prediction"] == "expectation"  # export_head's default
        assert p["value"] == pytest.approx(expected, abs=1e-4) == p["expectation"]
        assert p["rank"] == round(float(probs @ np.arange(5))) == want["rank"]
        assert p["name"] == NAMES[p["rank"]] == want["name"]
        assert (p["pred_rank"], p["pred_value"], p["pred_name"]) == (top, VALUES[top], NAMES[top])
        assert p["expectation"] == pytest.approx(want["expectation"], abs=1e-5)
        assert np.allclose(p["probabilities"], want["probabilities"], atol=1e-6)
        assert sum(p["probabilities"]) == pytest.approx(1.0, abs=1e-5)


def test_concurrent_requests_share_a_forward(server):
    before = requests.get(f"{server}/health", timeout=10).json()
    n = 8
    barrier = threading.Barrier(n)
    codes: list[int] = []

    def one(i: int) -> None:
        barrier.wait()
        codes.append(_post(server, [(f"{i}.png", png_bytes(10 + i))]).status_code)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    after = requests.get(f"{server}/health", timeout=10).json()
    assert codes == [200] * n
    assert after["images"] - before["images"] == n
    assert after["batches"] - before["batches"] < n and after["largest_batch"] > 1  # batched, not one by one


def test_bad_input_is_a_json_4xx_and_the_server_goes_on(server):
    big = png_bytes(5, (180, 180))  # ~97 kB of noise: over the 50 kB per-image limit of this server
    huge = png_bytes(7, (400, 400))  # ~480 kB: over the whole-request limit (4 images of 50 kB)
    assert 50_000 < len(big) < 200_000 < len(huge)
    truncated = png_bytes(6)[:60]
    cases = [
        (_post(server, [("notes.txt", b"hello, not an image")]), 400, "notes.txt: not an image"),
        (_post(server, [("broken.png", truncated)]), 400, "broken.png"),
        (_post(server, [("big.png", big)]), 413, "big.png: larger than the limit"),
        (_post(server, [("huge.png", huge)]), 413, "is larger than 4 images of 50,000 bytes"),
        (_post(server, [("empty.png", b"")]), 400, "empty.png: empty file"),
        (_post(server, [(f"{i}.png", png_bytes(i)) for i in range(5)]), 400, "Too many files"),
        (
            requests.post(f"{server}/predict", json={"image": "x"}, timeout=10),
            415,
            "expected multipart/form-data",
        ),
        (_raw_multipart(server, b""), 400, "empty request body"),
        (
            requests.post(f"{server}/predict", data={"note": "no file"}, files={"x": ("", b"")}, timeout=10),
            400,
            "",
        ),
        (_raw_multipart(server, b"--xyz\r\ngarbage"), 400, ""),
        (requests.get(f"{server}/predict", timeout=10), 405, "GET is not allowed"),
        (requests.get(f"{server}/nope", timeout=10), 404, "no such page"),
    ]
    for response, status, text in cases:
        assert response.status_code == status, (status, response.text)
        assert response.headers["content-type"].startswith("application/json")
        assert text in response.json()["error"]
    ok = _post(server, [("a.png", png_bytes(1))])  # still serving
    assert ok.status_code == 200 and len(ok.json()["predictions"]) == 1


def test_features_models_are_refused(tmp_path):
    from ordinalclip.app.serve import create_app

    cfg = ModelConfig(
        arch="cosine", num_ranks=3, embed_dim=4, image=ImageTowerConfig(kind="features", input_dim=5)
    )
    path = export_head(build_model(cfg).eval(), cfg, tmp_path / "f.safetensors", preprocess={})
    with pytest.raises(ValueError, match="serve needs an image model"):
        create_app(oc.load(path))


def _sample_photos(folder: Path) -> list[Path]:
    """Three photos for the page: scikit-image's sample photos where installed (the demo extra), else noise."""
    folder.mkdir(parents=True, exist_ok=True)
    try:
        from skimage import data

        arrays = {
            "astronaut.png": data.astronaut(),
            "coffee.png": data.coffee(),
            "chelsea.png": data.chelsea(),
        }
    except ImportError:
        arrays = {
            f"noise{i}.png": np.random.default_rng(i).integers(0, 256, (64, 64, 3), dtype=np.uint8)
            for i in range(3)
        }
    paths = []
    for name, arr in arrays.items():
        Image.fromarray(arr).resize((160, 160)).save(folder / name)
        paths.append(folder / name)
    return paths


@pytest.mark.slow
def test_page_in_a_browser_shows_the_predicted_ranks(page, export_path, predictor, tmp_path):
    """As a person uses it: start `ordinalclip serve`, open the page, choose images, read the ranks it shows."""
    port = free_port()
    exe = Path(sys.executable).with_name("ordinalclip")
    cmd = [
        str(exe) if exe.is_file() else sys.executable,
        *([] if exe.is_file() else ["-m", "ordinalclip.app.cli"]),
        "serve",
        str(export_path),
        "--port",
        str(port),
        "--max-wait-ms",
        "20",
    ]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, f"ordinalclip serve exited: {proc.stdout.read()}"
            try:
                if requests.get(f"{url}/health", timeout=2).ok:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, "ordinalclip serve did not answer within 90 s"
            time.sleep(0.2)
        photos = _sample_photos(tmp_path / "photos")
        page.goto(url + "/")
        page.wait_for_selector("body[data-ready='1']")
        assert "5 ranks" in page.inner_text("#model")
        page.set_input_files("#files", [str(p) for p in photos])
        page.wait_for_function(
            f"document.querySelectorAll('.card.done').length === {len(photos)}", timeout=30_000
        )
        for photo, want in zip(photos, predictor.predict(photos)):
            card = page.locator(f".card[data-file='{photo.name}']")
            assert int(card.get_attribute("data-rank")) == want["rank"]
            assert card.locator(".pred").inner_text() == want["name"]
            assert f"expectation {want['expectation']:.2f}" in card.locator(".exp").inner_text()
            bars = card.locator("svg rect")
            assert bars.count() == 5 and card.locator("svg rect.top").count() == 1
            heights = [float(bars.nth(i).get_attribute("height")) for i in range(5)]
            assert int(np.argmax(heights)) == want["pred_rank"]  # the tallest bar is the argmax
            tops = [bars.nth(i).get_attribute("class") for i in range(5)]
            assert tops.index("bar top") == want["rank"]  # the headline's rank stands out
            assert f"argmax {want['pred_name']}" in card.locator(".exp").inner_text()
        assert "3 images predicted" in page.inner_text("#status")
        assert page.problems == []
        shot = tmp_path / "serve.png"
        page.screenshot(path=str(shot), clip={"x": 0, "y": 0, "width": 1000, "height": 470})
        assert shot.stat().st_size > 10_000
        if os.environ.get("ORDINALCLIP_UPDATE_SCREENSHOTS") == "1":  # refresh the README's picture
            shutil.copy(shot, ROOT / "docs" / "images" / "serve.png")
        # a file that is not an image: an error line on the page, and the server goes on
        (tmp_path / "notes.txt").write_text("not an image")
        page.set_input_files("#files", str(tmp_path / "notes.txt"))
        page.wait_for_selector("#status.error")
        assert "notes.txt: not an image" in page.inner_text("#status")
        assert "not an image" in page.locator(".card[data-file='notes.txt'] .exp").inner_text()
        assert requests.get(f"{url}/health", timeout=5).ok
        page.set_input_files("#files", [str(p) for p in photos])
        page.wait_for_function(f"document.querySelectorAll('.card.done').length === {2 * len(photos)}")
        assert page.problems and all("status of 400" in p for p in page.problems)  # the browser logs the 400
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
