"""``ordinalclip serve``: a model behind HTTP, with a page a person can use.

* ``POST /predict``: one or more images as ``multipart/form-data`` (any field name; ``files`` by convention)
  -> ``{"predictions": [{"file", "expectation", "rank", "value", "name", "probabilities"}, ...]}`` in upload
  order;
* ``GET /health``: ``{"status": "ok", ...}`` with the model's ranks and the batcher's counters;
* ``GET /``: one self-contained page (no external scripts, styles or fonts) to drop images on and see, per
  image, the predicted rank and a bar chart of the rank probabilities.

Built on FastAPI + uvicorn: plain ASGI in one process, multipart parsing from Starlette, and nothing to learn
beyond an ``async`` function; the batching a model server needs is a few lines of asyncio here
(:class:`Batcher`), so a framework with its own worker and batching model (LitServe) would add more than it
saves.

Requests are batched: images that arrive within ``max_wait_ms`` of the first waiting one (up to ``max_batch``)
go through one forward pass, run in a worker thread so the event loop keeps accepting requests. Decoding (the
one decoder of :mod:`ordinalclip.runtime.decode`: orientation, ICC, bit depth, transparency) and the eval
transform (numpy) also run in worker threads. With an ``.onnx`` model the server imports no torch. Every bad
request gets a JSON ``{"error": ...}`` with a 4xx status; a failure inside one request never stops the server.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import io
import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse
from PIL import Image

from ordinalclip.runtime.decode import to_display_rgb
from ordinalclip.runtime.predictor import Predictor

__all__ = ["Batcher", "ServeOptions", "create_app", "running_server", "serve"]

log = logging.getLogger(__name__)

MAX_PIXELS = (
    50_000_000  # decoded size limit: a small file can still decode to gigabytes (a decompression bomb)
)


@dataclass
class ServeOptions:
    """How ``ordinalclip serve`` runs (the command's options)."""

    host: str = "127.0.0.1"  # this machine only, unless asked
    port: int = 8000
    max_batch: int = 32  # most images in one forward
    max_wait_ms: float = 5.0  # how long the first image of a batch waits for company
    max_image_bytes: int = 10 * 1024 * 1024  # largest accepted file
    max_images: int = 64  # most images in one request
    device: str = "cpu"


class RequestError(Exception):
    """A bad request: answered with ``status`` and ``{"error": message}``."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


class Batcher:
    """Collects preprocessed inputs from concurrent requests and runs them through the model in batches.

    :meth:`submit` returns each input's prediction row (see :meth:`Predictor.predict`); a forward that fails
    fails only the requests in that batch.
    """

    def __init__(self, predictor: Predictor, max_batch: int = 32, max_wait_ms: float = 5.0):
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        self.predictor = predictor
        self.max_batch = max_batch
        self.max_wait = max(0.0, max_wait_ms) / 1000.0
        self.batches = 0
        self.images = 0
        self.largest_batch = 0
        self._queue: asyncio.Queue[tuple[np.ndarray, asyncio.Future[dict[str, Any]]]] | None = None
        self._task: asyncio.Task[None] | None = None
        # Every forward runs on this one thread, apart from the decoding threads: its batch-sized tensors
        # stay in one glibc malloc arena instead of one per pool thread. The server's RSS levels off either
        # way; on one thread it levelled off lower (1.73 vs 1.85 GB after 15 repeats of the 32-client level
        # of benchmarks/serve.py).
        self._forward: concurrent.futures.ThreadPoolExecutor | None = None

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._forward = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="ordinalclip-forward")
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._forward is not None:
            self._forward.shutdown(wait=False)

    async def submit(self, inputs: list[np.ndarray]) -> list[dict[str, Any]]:
        """Predictions for preprocessed inputs ((3, H, W) images or (F,) features), in order."""
        if self._queue is None:
            raise RuntimeError("the batcher is not running (call start() first)")
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in inputs]
        for x, fut in zip(inputs, futures):
            self._queue.put_nowait((x, fut))
        return list(await asyncio.gather(*futures))

    async def _run(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        while True:
            items = [await self._queue.get()]
            deadline = time.monotonic() + self.max_wait
            while len(items) < self.max_batch:
                timeout = deadline - time.monotonic()
                if timeout <= 0:
                    break
                try:
                    items.append(await asyncio.wait_for(self._queue.get(), timeout))
                except asyncio.TimeoutError:
                    break
            live = [(x, f) for x, f in items if not f.done()]  # a client that went away cancels its futures
            if not live:
                continue
            try:
                batch = np.stack([x for x, _ in live])
                out = await loop.run_in_executor(self._forward, self.predictor.predict_arrays, batch)
                rows = self.predictor.rows(out)
            except Exception as err:  # noqa: BLE001 - the requests in this batch fail; the server goes on
                log.exception("forward pass failed")
                for _, fut in live:
                    if not fut.done():
                        fut.set_exception(err)
                continue
            self.batches += 1
            self.images += len(live)
            self.largest_batch = max(self.largest_batch, len(live))
            for (_, fut), row in zip(live, rows):
                if not fut.done():
                    fut.set_result(row)


def _page() -> str:
    return resources.files("ordinalclip.app").joinpath("serve_page.html").read_text(encoding="utf-8")


def _decode(data: bytes, name: str, predictor: Predictor) -> np.ndarray:
    """One uploaded file -> the model's input array, or a 4xx :class:`RequestError` that names the file."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.width * img.height > MAX_PIXELS:
                raise RequestError(
                    413,
                    f"{name}: {img.width}x{img.height} pixels is more than the "
                    f"{MAX_PIXELS:,} this server decodes",
                )
            rgb = to_display_rgb(img)
    except RequestError:
        raise
    except (Image.UnidentifiedImageError, Image.DecompressionBombError) as err:
        raise RequestError(400, f"{name}: not an image this server can read ({type(err).__name__})") from None
    except (OSError, ValueError, SyntaxError) as err:  # truncated or corrupt data
        raise RequestError(400, f"{name}: the image data is broken ({err})") from None
    return predictor.preprocess_image(rgb)


def create_app(predictor: Predictor, options: ServeOptions | None = None, model_name: str = "model") -> Any:
    """The FastAPI application serving ``predictor`` (an image model)."""
    opts = options or ServeOptions()
    if not predictor.takes_images:
        raise ValueError(
            f"{model_name} takes precomputed feature vectors, not images: serve needs an image model"
        )
    batcher = Batcher(predictor, opts.max_batch, opts.max_wait_ms)
    ranks = {"values": predictor.rank_values, "names": predictor.rank_names}
    page = _page()

    @contextlib.asynccontextmanager
    async def lifespan(_app: Any) -> AsyncIterator[None]:
        await batcher.start()
        try:
            yield
        finally:
            await batcher.stop()

    app = FastAPI(title="ordinalclip", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.batcher = batcher

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    @app.exception_handler(RequestError)
    async def _request_error(_request: Request, err: RequestError) -> JSONResponse:
        return error(err.status, err.message)

    @app.exception_handler(404)
    async def _not_found(request: Request, _err: Exception) -> JSONResponse:
        return error(404, f"no such page: {request.url.path} (try GET /, GET /health, POST /predict)")

    @app.exception_handler(405)
    async def _wrong_method(request: Request, _err: Exception) -> JSONResponse:
        return error(405, f"{request.method} is not allowed on {request.url.path}")

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, err: Exception) -> JSONResponse:
        log.exception("request failed")
        return error(500, f"internal error: {type(err).__name__}: {err}")

    @app.get("/", response_class=HTMLResponse)
    async def index() -> HTMLResponse:
        return HTMLResponse(page)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "model": model_name,
            "num_ranks": predictor.num_ranks,
            "ranks": ranks,
            "batches": batcher.batches,
            "images": batcher.images,
            "largest_batch": batcher.largest_batch,
            "max_batch": opts.max_batch,
            "max_image_bytes": opts.max_image_bytes,
            "max_images": opts.max_images,
        }

    @app.post("/predict")
    async def predict(request: Request) -> dict[str, Any]:
        ctype = request.headers.get("content-type", "")
        if not ctype.lower().startswith("multipart/form-data"):
            raise RequestError(
                415,
                f"expected multipart/form-data with one or more image files, got content type "
                f"{ctype or 'none'!r} (e.g. curl -F files=@photo.jpg URL/predict)",
            )
        length = request.headers.get("content-length")
        if length is None:
            raise RequestError(411, "the request needs a Content-Length header")
        limit = opts.max_images * (opts.max_image_bytes + 4096)
        if not length.isdigit() or int(length) > limit:
            raise RequestError(
                413,
                f"request body of {length} bytes is larger than {opts.max_images} images of "
                f"{opts.max_image_bytes:,} bytes",
            )
        if int(length) == 0:
            raise RequestError(400, "empty request body: send one or more image files")
        try:
            form = await request.form(max_files=opts.max_images, max_fields=opts.max_images)
        except Exception as err:  # noqa: BLE001 - Starlette raises its own errors for malformed multipart
            raise RequestError(400, f"cannot read the multipart body: {err}") from None
        try:
            uploads = [(key, v) for key, v in form.multi_items() if not isinstance(v, str)]
            if not uploads:
                raise RequestError(400, "no image files in the request (send them as multipart file fields)")
            tensors = []
            names = []
            for i, (_key, upload) in enumerate(uploads):
                name = upload.filename or f"file {i}"
                data = await upload.read(opts.max_image_bytes + 1)
                if len(data) > opts.max_image_bytes:
                    raise RequestError(
                        413,
                        f"{name}: larger than the limit of {opts.max_image_bytes:,} bytes "
                        "(ordinalclip serve --max-image-mb)",
                    )
                if not data:
                    raise RequestError(400, f"{name}: empty file")
                tensors.append(await asyncio.to_thread(_decode, data, name, predictor))
                names.append(name)
        finally:
            await form.close()
        rows = await batcher.submit(tensors)
        return {"predictions": [{"file": n, **row} for n, row in zip(names, rows)]}

    return app


def _model_name(model: str | os.PathLike[str]) -> str:
    path = Path(model)
    return path.name or str(path)


def serve(model: str | os.PathLike[str], options: ServeOptions | None = None) -> None:
    """Load ``model`` (an export, a checkpoint or a run folder) and serve it until interrupted."""
    import uvicorn

    opts = options or ServeOptions()
    predictor = Predictor(model, device=opts.device)
    app = create_app(predictor, opts, _model_name(model))
    print(f"serving {model} on http://{opts.host}:{opts.port}/ (Ctrl-C stops)", flush=True)
    uvicorn.run(app, host=opts.host, port=opts.port, log_level="warning")


@contextlib.contextmanager
def running_server(predictor: Predictor, options: ServeOptions, model_name: str = "model") -> Iterator[str]:
    """Serve in a background thread (tests, benchmarks, notebooks); yields the base URL, stops on exit."""
    import uvicorn

    app = create_app(predictor, options, model_name)
    server = uvicorn.Server(uvicorn.Config(app, host=options.host, port=options.port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="ordinalclip-serve", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start on {options.host}:{options.port}")
            time.sleep(0.02)
        yield f"http://{options.host}:{options.port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
