"""``ordinalclip serve``: a model behind HTTP, with a page a person can use.

* ``POST /predict``: one or more images as ``multipart/form-data`` (any field name; ``files`` by convention)
  -> ``{"predictions": [{"file", "prediction", "value", "rank", "name", "expectation", ...}, ...]}`` in upload
  order: the model's headline prediction first (``prediction`` says which, ``expectation`` or ``argmax``;
  ``value`` / ``rank`` / ``name`` are its), then both predictions (see :meth:`Predictor.predict`);
* ``GET /health``: ``{"status": "ok", ...}`` with the model's ranks, its headline ``prediction`` and the
  batcher's counters;
* ``GET /``: one self-contained page (no external scripts, styles or fonts) to drop images on and see, per
  image, the headline prediction, the other one below it, and a bar chart of the rank probabilities.

Built on FastAPI + uvicorn: plain ASGI in one process, multipart parsing from Starlette, and nothing to learn
beyond an ``async`` function; the batching a model server needs is a few lines of asyncio here
(:class:`Batcher`), so a framework with its own worker and batching model (LitServe) would add more than it
saves.

Requests are batched: images that arrive within ``max_wait_ms`` of the first waiting one (up to ``max_batch``)
go through one forward pass, run in a worker thread so the event loop keeps accepting requests. Decoding (the
one decoder of :mod:`ordinalclip.runtime.decode`: orientation, ICC, bit depth, transparency) and the eval
transform (numpy) also run in worker threads. With an ``.onnx`` model the server imports no torch. Every bad
request gets a JSON ``{"error": ...}`` with a 4xx status; a failure inside one request never stops the server.

Limits against abuse (each a :class:`ServeOptions` field and a ``serve`` option with a safe default):
the bytes of one file and the number of files in one request, the decoded pixels of one image
(:data:`MAX_PIXELS`) and of one request together (``max_request_pixels``: small files can decode to
gigabytes); a request whose headers take longer than ``header_timeout`` or whose body takes longer than
``body_timeout`` is dropped (slow clients cannot hold connections open), idle connections close after
``keep_alive``, connections beyond ``max_connections`` get 503; the ``Host`` header must name this server
(``allowed_hosts``: a web page on another site that points its own name at 127.0.0.1, DNS rebinding, cannot
read the answers). There is no authentication or TLS: bind another address than loopback only behind a
proxy that adds them (``serve`` warns).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import ctypes
import ctypes.util
import io
import ipaddress
import logging
import os
import sys
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
    max_request_pixels: int = 200_000_000  # decoded pixels of one request, all its images together
    header_timeout: float = 10.0  # seconds to send a request's headers
    body_timeout: float = 60.0  # seconds to send a request's body
    keep_alive: float = 5.0  # seconds an idle connection stays open
    max_connections: int = 200  # open connections beyond which requests get 503
    allowed_hosts: tuple[str, ...] | None = None  # Host header names; None: localhost, IPs and `host`
    device: str = "cpu"

    def __post_init__(self) -> None:
        positive = {
            "max_batch": self.max_batch,
            "max_image_bytes": self.max_image_bytes,
            "max_images": self.max_images,
            "max_request_pixels": self.max_request_pixels,
            "header_timeout": self.header_timeout,
            "body_timeout": self.body_timeout,
            "keep_alive": self.keep_alive,
            "max_connections": self.max_connections,
        }
        for name, value in positive.items():
            if not value > 0:
                raise ValueError(f"ServeOptions.{name} must be > 0, got {value}")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"ServeOptions.port must be in [0, 65535], got {self.port}")
        if not self.max_wait_ms >= 0:
            raise ValueError(f"ServeOptions.max_wait_ms must be >= 0, got {self.max_wait_ms}")


LOCAL_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback")


def is_loopback(host: str) -> bool:
    """True when binding ``host`` serves this machine only (``localhost``, 127.0.0.0/8, ``::1``)."""
    if host.lower() in LOCAL_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def host_allowed(header: str, bound: str, allowed: tuple[str, ...] | None) -> bool:
    """Whether a request's ``Host`` header (``name``, ``name:port``, ``[v6]:port``) names this server.

    ``allowed`` None: localhost names, any IP address (a DNS-rebinding page reaches the server under its own
    domain name, never under an address) and the bound ``host``; ``"*"`` in ``allowed`` accepts anything.
    """
    if allowed is not None and "*" in allowed:
        return True
    name = header.strip().lower()
    if name.startswith("["):  # [v6] or [v6]:port
        name = name[1 : name.find("]")] if "]" in name else ""
    elif name.count(":") == 1:
        name = name.split(":", 1)[0]
    name = name.rstrip(".")
    if not name:
        return False
    names = set(LOCAL_NAMES) | {bound.lower().strip("[]")}
    if allowed is not None:
        names |= {a.lower().strip("[]").rstrip(".") for a in allowed}
    if name in names or name.endswith(".localhost"):
        return True
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        return False


def _image_pixels(data: bytes) -> int:
    """The pixel count an upload's header declares (0 when it is not a readable image: decoding reports)."""
    try:
        with Image.open(io.BytesIO(data)) as img:  # lazy: reads the header only
            return int(img.width) * int(img.height)
    except Exception:  # noqa: BLE001 - _decode gives the reason for a file it cannot read
        return 0


_libc: Any = None


def give_memory_back() -> None:
    """Return freed heap memory to the system (glibc ``malloc_trim``): decoding large images leaves freed
    arenas that glibc otherwise keeps, so the server's RSS would stay at its peak."""
    global _libc
    if not sys.platform.startswith("linux"):
        return
    if _libc is None:
        try:
            _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            _libc.malloc_trim.argtypes = [ctypes.c_size_t]
        except (OSError, AttributeError):
            _libc = False
    if _libc:
        _libc.malloc_trim(0)


class _HostCheck:
    """ASGI middleware answering 421 to a request whose ``Host`` header is not a name of this server
    (:func:`host_allowed`)."""

    def __init__(self, app: Any, bound: str, allowed: tuple[str, ...] | None) -> None:
        self.app, self.bound, self.allowed = app, bound, allowed

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            host = dict(scope["headers"]).get(b"host", b"").decode("latin-1")
            if not host_allowed(host, self.bound, self.allowed):
                response = JSONResponse(
                    {
                        "error": f"Host {host!r} is not a name of this server (ordinalclip serve "
                        "--allowed-hosts NAME accepts it)"
                    },
                    status_code=421,
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


TRIM_PIXELS = 20_000_000  # a request decoding more gives its memory back when it ends


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

    app.add_middleware(_HostCheck, bound=opts.host, allowed=opts.allowed_hosts)

    @app.api_route("/", methods=["GET", "HEAD"], response_class=HTMLResponse)
    async def index() -> HTMLResponse:
        return HTMLResponse(page)

    @app.api_route("/health", methods=["GET", "HEAD"])
    async def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "model": model_name,
            "num_ranks": predictor.num_ranks,
            "ranks": ranks,
            "prediction": predictor.prediction,
            "batches": batcher.batches,
            "images": batcher.images,
            "largest_batch": batcher.largest_batch,
            "max_batch": opts.max_batch,
            "max_image_bytes": opts.max_image_bytes,
            "max_images": opts.max_images,
            "max_request_pixels": opts.max_request_pixels,
        }

    @app.post("/predict")
    async def predict(request: Request) -> dict[str, Any]:
        ctype = request.headers.get("content-type", "")
        length = request.headers.get("content-length")
        if length == "0" or (length is None and not ctype and "transfer-encoding" not in request.headers):
            raise RequestError(400, "empty request body: send one or more image files")
        if not ctype.lower().startswith("multipart/form-data"):
            raise RequestError(
                415,
                f"expected multipart/form-data with one or more image files, got content type "
                f"{ctype or 'none'!r} (e.g. curl -F files=@photo.jpg URL/predict)",
            )
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
            form = await asyncio.wait_for(
                request.form(max_files=opts.max_images, max_fields=opts.max_images), opts.body_timeout
            )
        except asyncio.TimeoutError:
            raise RequestError(
                408,
                f"the request body took longer than {opts.body_timeout:g} s "
                "(ordinalclip serve --body-timeout)",
            ) from None
        except Exception as err:  # noqa: BLE001 - Starlette raises its own errors for malformed multipart
            raise RequestError(400, f"cannot read the multipart body: {err}") from None
        pixels = 0
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
                # the budget is checked before decoding: the header says how large the image will be
                pixels += _image_pixels(data)
                if pixels > opts.max_request_pixels:
                    raise RequestError(
                        413,
                        f"{name}: the images up to this one decode to {pixels:,} pixels, more than the "
                        f"{opts.max_request_pixels:,} one request may "
                        "(ordinalclip serve --max-request-mpixels)",
                    )
                tensors.append(await asyncio.to_thread(_decode, data, name, predictor))
                names.append(name)
        finally:
            await form.close()
            if pixels > TRIM_PIXELS:
                await asyncio.to_thread(give_memory_back)
        rows = await batcher.submit(tensors)
        return {"predictions": [{"file": n, **row} for n, row in zip(names, rows)]}

    return app


def _model_name(model: str | os.PathLike[str]) -> str:
    path = Path(model)
    return path.name or str(path)


def _protocol(header_timeout: float) -> type:
    """uvicorn's h11 protocol with a deadline on each request's headers (uvicorn has none: a client that
    sends half a request line and stalls would hold its connection, and a slot, for ever)."""
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class HeaderDeadline(H11Protocol):
        _deadline: asyncio.TimerHandle | None = None

        def _arm(self) -> None:
            self._disarm()
            self._deadline = self.loop.call_later(header_timeout, self._too_slow)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _too_slow(self) -> None:
            self._deadline = None
            if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
                self.transport.close()  # headers still incomplete: drop the connection

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def handle_events(self) -> None:
            super().handle_events()
            if self.conn.their_state is not h11.IDLE:
                self._disarm()  # the headers are in: the app's body timeout takes over

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._arm()  # the next request on this connection gets its own deadline

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

    return HeaderDeadline


def uvicorn_config(app: Any, opts: ServeOptions) -> Any:
    """The ``uvicorn.Config`` serving ``app`` with the limits of ``opts`` (timeouts, connections)."""
    import uvicorn

    return uvicorn.Config(
        app,
        host=opts.host,
        port=opts.port,
        log_level="warning",
        http=_protocol(opts.header_timeout),
        timeout_keep_alive=max(1, round(opts.keep_alive)),
        limit_concurrency=opts.max_connections,
    )


def serve(model: str | os.PathLike[str], options: ServeOptions | None = None) -> None:
    """Load ``model`` (an export, a checkpoint or a run folder) and serve it until interrupted."""
    import uvicorn

    opts = options or ServeOptions()
    predictor = Predictor(model, device=opts.device)
    app = create_app(predictor, opts, _model_name(model))
    if not is_loopback(opts.host):
        print(
            f"warning: serving on {opts.host}, reachable from other machines, with no authentication, TLS or "
            "rate limit: put it behind a proxy that adds them, or bind 127.0.0.1",
            file=sys.stderr,
            flush=True,
        )
    print(f"serving {model} on http://{opts.host}:{opts.port}/ (Ctrl-C stops)", flush=True)
    uvicorn.Server(uvicorn_config(app, opts)).run()


@contextlib.contextmanager
def running_server(predictor: Predictor, options: ServeOptions, model_name: str = "model") -> Iterator[str]:
    """Serve in a background thread (tests, benchmarks, notebooks); yields the base URL, stops on exit."""
    import uvicorn

    app = create_app(predictor, options, model_name)
    server = uvicorn.Server(uvicorn_config(app, options))
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
