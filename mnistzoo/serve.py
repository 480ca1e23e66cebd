"""A local web app to draw or upload a digit and see what every model reads (FastAPI on uvicorn).

One page (``mnistzoo/web/index.html``, served by the package: it works offline) and a JSON API:

    GET  /api/models                  the loaded models: name, dataset, class names
    GET  /api/models/{name}/card      one model's card
    POST /api/predict[?models=a,b]    a PNG/JPEG body, or JSON {"image": 28x28 array of 0-255 pixels};
                                      per model: probabilities, prediction and milliseconds, and the
                                      28x28 input the models saw

Models load once at start; requests run concurrently (prediction in a thread pool). Hardening: binds
127.0.0.1 unless told otherwise; bodies over ``MAX_BODY`` get 413; a body that is not an image, a
picture over ``MAX_PIXELS``, a wrong array shape or a non-finite value gets 400 with a JSON error; an
unknown model 404. Nothing a client sends names a file: the server reads only its own page and the
models it loaded at start.
"""

import io
import json
import socket
import time
from importlib import resources
from typing import Any

import numpy as np

from ._extras import require_extra
from .errors import InvalidInput
from .preparation import SIDE, as_images

MAX_BODY = 4 * 1024 * 1024  # bytes
MAX_PIXELS = 16_000_000  # a picture's pixels; a larger one is refused before it is decoded
DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 8000


def _picture(body: bytes) -> Any:
    """The picture in a PNG/JPEG body (checked, not yet prepared); ``ValueError`` for anything else."""
    from PIL import Image, UnidentifiedImageError

    try:
        picture = Image.open(io.BytesIO(body), formats=["PNG", "JPEG"])
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError, SyntaxError) as exc:
        raise InvalidInput(f"the body is not a PNG or JPEG image ({type(exc).__name__})") from None
    if picture.width * picture.height > MAX_PIXELS:
        raise InvalidInput(f"a {picture.width}x{picture.height} picture is over the {MAX_PIXELS:,} pixels accepted")
    return picture


def _array_pixels(body: bytes) -> np.ndarray:
    """The 28x28 input of a JSON body ``{"image": [[...], ...]}``; ``ValueError`` for anything else."""
    try:
        doc = json.loads(body)
        image = np.asarray(doc["image"], dtype=np.float64)
    except (ValueError, TypeError, KeyError) as exc:
        raise InvalidInput(f"expected JSON {{\"image\": a {SIDE}x{SIDE} array of numbers}} ({type(exc).__name__})") \
            from None
    if image.shape != (SIDE, SIDE):
        raise InvalidInput(f"image: expected shape ({SIDE}, {SIDE}), got {image.shape}")
    return as_images(image)  # checked: finite, 0-255


def create_app(names: list[str] | None = None) -> Any:
    """The FastAPI app serving ``names`` (default: every local model), each loaded and verified once."""
    require_extra("serve", "mnistzoo serve")
    from fastapi import FastAPI, Request
    from fastapi.responses import HTMLResponse, JSONResponse
    from starlette.concurrency import run_in_threadpool

    from .pretrained import available_models, load_pretrained

    chosen = names or available_models()
    if not chosen:
        raise InvalidInput("no models to serve; train and export one, or name a starter-pack model")
    classifiers = {c.card["name"]: c for c in (load_pretrained(n) for n in dict.fromkeys(chosen))}
    page = resources.files("mnistzoo.web").joinpath("index.html").read_text(encoding="utf-8")
    app = FastAPI(title="mnistzoo", docs_url=None, redoc_url=None, openapi_url=None)

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        return page

    @app.get("/api/models")
    def models() -> list[dict]:
        return [{"name": n, "id": c.card["id"], "study": c.card["study"], "dataset": c.card["dataset"],
                 "class_names": c.class_names, "source": c.source} for n, c in classifiers.items()]

    @app.get("/api/models/{name}/card")
    def card(name: str) -> Any:
        if name not in classifiers:
            return error(404, f"unknown model {name!r}; GET /api/models lists them")
        return classifiers[name].card

    @app.post("/api/predict")
    async def predict(request: Request, models: str | None = None) -> Any:
        wanted = [m for m in (models or "").split(",") if m] or list(classifiers)
        unknown = [m for m in wanted if m not in classifiers]
        if unknown:
            return error(404, f"unknown model {unknown[0]!r}; GET /api/models lists them")
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > MAX_BODY:
            return error(413, f"the body is over {MAX_BODY:,} bytes")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BODY:
                return error(413, f"the body is over {MAX_BODY:,} bytes")
        read = _array_pixels if request.headers.get("content-type", "").startswith("application/json") \
            else _picture
        try:  # decoding, preparation and prediction in one trip to the thread pool
            return JSONResponse(await run_in_threadpool(_answer, read, bytes(body), [classifiers[m] for m in wanted]))
        except ValueError as exc:
            return error(400, str(exc))

    return app


def _answer(read: Any, body: bytes, classifiers: list) -> dict:
    """Each model's reading of ``body`` (a picture is prepared as each model's dataset was made), and the
    28x28 input the first model saw."""
    image = read(body)
    inputs = {name: as_images(image, dataset=name) for name in dict.fromkeys(c.card["dataset"] for c in classifiers)}
    out = []
    for c in classifiers:
        t0 = time.perf_counter()
        p = c.predict_proba(inputs[c.card["dataset"]])[0]
        ms = (time.perf_counter() - t0) * 1e3
        out.append({"model": c.card["name"], "probabilities": [float(v) for v in p], "prediction": int(p.argmax()),
                    "class_name": c.class_names[int(p.argmax())], "ms": ms})
    return {"input": inputs[classifiers[0].card["dataset"]][0].round(1).tolist(), "results": out}


def serve(names: list[str] | None = None, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
          ready: Any = None) -> None:
    """Load the models and run the app with uvicorn until interrupted; ``ready(url)`` is called once loaded."""
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise InvalidInput(f"--port must be from 1 to 65535, got {port!r}")
    try:
        with socket.create_server((host, port)):
            pass
    except OSError as exc:
        raise InvalidInput(f"cannot listen on {host}:{port} ({exc.strerror or exc}); choose another --port, or "
                           "--host 127.0.0.1") from None
    app = create_app(names)
    import uvicorn

    if ready is not None:
        ready(f"http://{host}:{port}/")
    uvicorn.run(app, host=host, port=port, log_level="warning")
