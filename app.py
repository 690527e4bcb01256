"""Serve a trained model: a page where a person tries it, and a JSON API for programs.

    python app.py                              # this run's weights/<RUN>_best.pt, else weights/default.pt, else the newest *_best.pt
    python app.py weights/cnn_best.pt --port=8080
    python app.py weights/cnn_best.onnx        # a model written by export.py, run by onnxruntime
    curl -F file=@captcha.png http://127.0.0.1:8000/api/predict

Endpoints: GET / (the page), POST /api/predict, POST /api/predict/batch, GET /api/model, GET /healthz,
GET /docs and /openapi.json. Every error is JSON {"error": "..."}: a 4xx that says what was wrong with
the request, or a 500 that gives no internals (the traceback goes to the server's log).
"""
import asyncio
import base64
import binascii
import io
import json
import logging
import os
import queue
import sys
import threading

import numpy as np
import torch
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from PIL import Image
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

import config
import torch_util

WEB_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "web")
FORMATS = ("PNG", "JPEG", "GIF", "BMP", "WEBP", "TIFF")  # what PIL may open; never EPS & co. (they run tools)
CANDIDATES = 3            # alternatives listed per character in answers
INTERNAL_ERROR = "internal server error; the details are in the server's log"

log = logging.getLogger("app")


# --- errors ----------------------------------------------------------------------------------------------

class ApiError(Exception):
    """Something wrong with the request: answered `status` with {"error": message}."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status, self.message = status, message


def megabytes(n):
    return f"{n / 1024 / 1024:.1f} MB" if n >= 100 * 1024 else f"{n} bytes"


class BodyLimit:
    """ASGI middleware: refuse a request body over `max_bytes` (batch: `max_batch_bytes`) with a 413.

    A declared Content-Length is checked before anything is read; a chunked body is counted as it arrives,
    so an endless upload is cut off at the limit instead of filling memory or disk.
    """

    def __init__(self, app, max_bytes, max_batch_bytes):
        self.app, self.max_bytes, self.max_batch_bytes = app, max_bytes, max_batch_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = self.max_batch_bytes if scope["path"].rstrip("/").endswith("/batch") else self.max_bytes
        too_large = f"the request body is over the limit of {megabytes(limit)} (set by MAX_IMAGE_BYTES)"
        declared = dict(scope["headers"]).get(b"content-length", b"0")
        if not declared.isdigit():
            return await error_response(400, "bad Content-Length header")(scope, receive, send)
        if int(declared) > limit:
            return await error_response(413, too_large)(scope, receive, send)
        received = 0

        async def limited_receive():
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > limit:
                raise ApiError(413, too_large)  # inside the route: answered by the ApiError handler
            return message

        await self.app(scope, limited_receive, send)


class CatchErrors:
    """ASGI middleware: an unexpected exception is logged with its traceback and answered 500, no internals."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        started = False

        async def tracked_send(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracked_send)
        except Exception:
            log.exception("unexpected error on %s %s", scope.get("method"), scope.get("path"))
            if started or scope["type"] != "http":
                raise  # half an answer is out: only the server can close the connection
            await error_response(500, INTERNAL_ERROR)(scope, receive, send)


def error_response(status, message):
    return JSONResponse({"error": message}, status_code=status)


# --- images in, predictions out ------------------------------------------------------------------------------

def read_image(raw, predictor, max_bytes, max_pixels):
    """Image file bytes -> uint8 (H, W, C) at the model's size; ApiError saying what is wrong otherwise."""
    if not raw:
        raise ApiError(400, "the image is empty (0 bytes)")
    if len(raw) > max_bytes:
        raise ApiError(413, f"the image is {megabytes(len(raw))}; the limit is {megabytes(max_bytes)} "
                            f"(MAX_IMAGE_BYTES)")
    try:
        image = Image.open(io.BytesIO(raw), formats=FORMATS)  # reads the header only, not the pixels
    except Image.DecompressionBombError:
        image = None
    except Exception:
        raise ApiError(415, f"not an image this server reads (expected {', '.join(FORMATS)})") from None
    if image is None or image.width * image.height > max_pixels:
        size = f"{image.width}x{image.height} pixels" if image else "far too many pixels"
        raise ApiError(413, f"the image has {size}; the limit is {max_pixels:,} pixels (MAX_IMAGE_PIXELS)")
    try:
        return predictor.load(image)
    except Exception as e:  # the header was fine but the pixels are not: broken bytes, not a server fault
        why = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
        raise ApiError(422, f"the image could not be decoded; it may be truncated or corrupt ({why})") from None


def read_batch(files, predictor, max_bytes, max_pixels):
    """[(name, bytes)] -> (an item per file, with its error if any; the arrays of the good ones).

    Run off the event loop: decoding a few dozen images would hold every other request up."""
    items, arrays = [], []
    for name, raw in files:
        try:
            arrays.append(read_image(raw, predictor, max_bytes, max_pixels))
            items.append({"name": name})
        except ApiError as e:
            items.append({"name": name, "error": e.message, "status": e.status})
    return items, arrays


def fixed_candidates(logits, codec, k):
    """The k likeliest characters of each predicted position of a fixed-length head, as fixed_decode keeps them.

    logits (B, T, K) -> per image, per kept position, [(char, probability), ...] best first.
    """
    top_p, top_i = logits.float().softmax(-1).topk(min(k, logits.shape[-1]), -1)  # (B, T, k)
    rows = []
    for ids, probs in zip(top_i.tolist(), top_p.tolist()):
        rows.append([[(codec.charset[i], p) for i, p in zip(pos_ids, pos_probs) if i < len(codec.charset)]
                     for pos_ids, pos_probs in zip(ids, probs) if pos_ids[0] < len(codec.charset)])
    return rows


def ctc_candidates(logits, codec, k):
    """The k likeliest characters (blank left out) at the frame where each character of the greedy CTC path peaks.

    logits (B, T, K) with blank = 0 -> per image, per read character, [(char, probability), ...] best first.
    """
    from models.heads import greedy_path

    probs = logits.float().softmax(-1)  # (B, T, K)
    best, ids = probs.max(-1)  # (B, T)
    rows = []
    for row_probs, row_ids, row_best in zip(probs, ids.tolist(), best.tolist()):
        chars = []
        for _, first, last in greedy_path(row_ids):
            t = max(range(first, last + 1), key=row_best.__getitem__)  # ctc_decode's probability is this frame's
            top_p, top_i = row_probs[t, 1:].topk(min(k, probs.shape[-1] - 1))
            chars.append([(codec.charset[i], p) for i, p in zip(top_i.tolist(), top_p.tolist())])
        rows.append(chars)
    return rows


HEAD_CANDIDATES = {"fixed": fixed_candidates, "ctc": ctc_candidates}  # other heads: the chosen character only


def fuse_for_inference(model, height, width, channels):
    """Fold BatchNorm into the convolutions (torch.fx), a third less CPU per image; the model itself if that fails."""
    from torch.fx.experimental import optimization

    try:
        fused = optimization.fuse(model)
        x = torch.randn(2, channels, height, width)
        with torch.inference_mode():
            if torch.allclose(model(x), fused(x), atol=1e-3, rtol=1e-3):
                return fused
    except Exception as e:  # a model torch.fx cannot trace still serves, only unfused
        log.info("serving the model unfused (%s: %s)", type(e).__name__, e)
    return model


class Model:
    """The served model (.pt or .onnx): a torch_util.Predictor whose answers also carry each character's candidates."""

    def __init__(self, predictor, candidates=CANDIDATES, fuse=True):
        self.predictor = predictor
        self.parameters = predictor.parameters
        if fuse and predictor.runtime == "torch" and predictor.device.type == "cpu":
            predictor.model = fuse_for_inference(predictor.model, predictor.height, predictor.width,
                                                 predictor.channels)
        decode, head_candidates = predictor.decode, HEAD_CANDIDATES.get(predictor.ckpt["head"])

        def decode_with_candidates(logits, codec):
            texts, confidences, chars = decode(logits, codec)
            if head_candidates:
                cands = head_candidates(logits, codec, candidates)
            else:
                cands = [[[(c, p)] for c, p in zip(text, probs)] for text, probs in zip(texts, chars)]
            return texts, confidences, chars, cands

        # The candidates come from the very logits the text is decoded from: hooked into the predictor's
        # decoder, the page and the API go through predict.py's preprocessing and forward pass unchanged.
        predictor.decode = decode_with_candidates

    def predict(self, arrays):
        """List of uint8 (H, W, C) arrays -> list of JSON-ready predictions."""
        texts, confidences, chars, cands = self.predictor.predict_arrays(np.stack(arrays))
        return [{"text": text, "confidence": round(conf, 4),
                 "chars": [{"char": c, "confidence": round(p, 4),
                            "candidates": [{"char": a, "p": round(q, 4)} for a, q in alternatives]}
                           for c, p, alternatives in zip(text, probs, char_cands)]}
                for text, conf, probs, char_cands in zip(texts, confidences, chars, cands)]

    def info(self):
        ckpt, p = self.predictor.ckpt, self.predictor
        return {"name": ckpt["model_name"], "head": ckpt["head"], "charset": ckpt["charset"],
                "length": list(ckpt["length"]), "image_size": {"width": p.width, "height": p.height},
                "channels": p.channels, "epoch": ckpt.get("epoch"), "accuracy": ckpt.get("accuracy"),
                "char_accuracy": ckpt.get("char_accuracy"), "checkpoint": os.path.basename(p.path),
                "runtime": p.runtime, "parameters": self.parameters}


def _settle(future, result, error):
    if future.done():
        return  # the client went away and its request was cancelled
    if error is None:
        future.set_result(result)
    else:
        future.set_exception(error)


class Batcher:
    """One inference thread that runs the model over every image waiting at once (dynamic batching).

    Under load, requests queue while a forward pass runs and the next pass takes them all (up to max_batch
    images): far less CPU per image than a pass each. At low load a request runs at once, alone; nothing
    waits for a batch to fill. One thread owns the model, so concurrent requests need no lock.
    """

    def __init__(self, model, max_batch, threads=None):
        self.model, self.max_batch, self.threads = model, max_batch, threads
        self.jobs = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._loop, name="inference", daemon=True)
        self.thread.start()

    async def predict(self, arrays):
        """Predictions for a list of uint8 (H, W, C) arrays, computed on the inference thread."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self.jobs.put((arrays, loop, future))
        return await future

    def close(self):
        self.jobs.put(None)
        self.thread.join(timeout=10)

    def _loop(self):
        if self.threads:
            torch.set_num_threads(self.threads)
        while True:
            job = self.jobs.get()
            if job is None:
                return
            batch, count = [job], len(job[0])
            while count < self.max_batch:
                try:
                    job = self.jobs.get_nowait()
                except queue.Empty:
                    break
                if job is None:
                    self.jobs.put(None)  # answer this batch first, then stop
                    break
                batch.append(job)
                count += len(job[0])
            self._run(batch)

    def _run(self, batch):
        try:
            results, error = self.model.predict([a for arrays, _, _ in batch for a in arrays]), None
        except Exception as e:  # re-raised in each waiting request, where CatchErrors logs it
            results, error = None, e
        start = 0
        for arrays, loop, future in batch:
            part = None if error else results[start:start + len(arrays)]
            start += len(arrays)
            try:
                loop.call_soon_threadsafe(_settle, future, part, error)
            except RuntimeError:
                pass  # that request's event loop is closed (server shutting down)


# --- reading requests ------------------------------------------------------------------------------------

def usage(field):
    return (f"send the image as multipart/form-data in the field '{field}' (curl -F {field}=@captcha.png URL), "
            f"as JSON {{\"{'images' if field == 'files' else 'image'}\": base64}}"
            + (", or as the raw bytes with Content-Type: image/png" if field == "file" else ""))


def decode_base64(text, where):
    if not isinstance(text, str):
        raise ApiError(422, f"{where} must be a base64 string, not {type(text).__name__}")
    if text.startswith("data:"):  # a data: URL, as a browser's FileReader makes
        text = text.partition(",")[2]
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, f"{where} is not valid base64") from None


async def read_files(request, field, max_files):
    """[(name, bytes)] of the images in a request: multipart field `field`, JSON, or a raw image body."""
    kind = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if kind == "multipart/form-data":
        try:
            form = await request.form(max_files=max_files)
        except StarletteHTTPException as e:  # the form parser's refusals: too many files, broken framing
            if "many files" in str(e.detail):
                raise ApiError(413, f"too many files; the limit is {max_files} per request"
                                    + (" (MAX_BATCH)" if max_files > 1 else "")) from None
            raise ApiError(400, f"{str(e.detail).rstrip('.')}; {usage(field)}") from None
        try:
            files = [(value.filename or key, await value.read()) for key, value in form.multi_items()
                     if isinstance(value, UploadFile) and key in (field, field.rstrip("s"))]
            names = sorted(set(form.keys()))
        finally:
            await form.close()
        if not files:
            if field in names or field.rstrip("s") in names:
                raise ApiError(422, f"the field '{field}' holds text, not a file; {usage(field)}")
            got = f"the form has {', '.join(repr(n) for n in names)}" if names else "the form is empty"
            raise ApiError(422, f"no file in the form field '{field}' ({got}); {usage(field)}")
        return files
    body = await request.body()
    if not body:
        raise ApiError(400, f"the request body is empty; {usage(field)}")
    if kind == "application/json":
        try:
            payload = json.loads(body)
        except ValueError:
            raise ApiError(400, f"the body is not valid JSON; {usage(field)}") from None
        key = "images" if field == "files" else "image"
        if not isinstance(payload, dict) or key not in payload:
            got = f"keys {', '.join(map(repr, payload))}" if isinstance(payload, dict) else type(payload).__name__
            raise ApiError(422, f"expected a JSON object with the key '{key}', got {got}; {usage(field)}")
        if key == "image":
            return [("image", decode_base64(payload["image"], "'image'"))]
        if not isinstance(payload["images"], list) or not payload["images"]:
            raise ApiError(422, "'images' must be a non-empty list of base64 strings")
        if len(payload["images"]) > max_files:
            raise ApiError(413, f"{len(payload['images'])} images; the limit is {max_files} per request (MAX_BATCH)")
        return [(f"image {i}", decode_base64(t, f"images[{i}]")) for i, t in enumerate(payload["images"])]
    if field == "file" and (kind.startswith("image/") or kind == "application/octet-stream"):
        return [("body", body)]
    raise ApiError(415, f"unsupported Content-Type {kind or '(none)'!r}; {usage(field)}")


# --- the app -----------------------------------------------------------------------------------------------

class Candidate(BaseModel):
    char: str
    p: float


class CharPrediction(BaseModel):
    char: str
    confidence: float
    candidates: list[Candidate]


class Prediction(BaseModel):
    text: str
    confidence: float
    chars: list[CharPrediction]


class BatchItem(BaseModel):
    name: str
    text: str | None = None
    confidence: float | None = None
    chars: list[CharPrediction] | None = None
    error: str | None = None
    status: int | None = None


class BatchAnswer(BaseModel):
    results: list[BatchItem]


class ErrorAnswer(BaseModel):
    error: str


def _file_body(field, many):
    """OpenAPI text of the request bodies the predict endpoints read by hand (so /docs can send files)."""
    binary = {"type": "string", "format": "binary"}
    form = {"type": "array", "items": binary} if many else binary
    key = "images" if many else "image"
    b64 = {"type": "array", "items": {"type": "string"}} if many else {"type": "string"}
    content = {"multipart/form-data": {"schema": {"type": "object", "required": [field], "properties": {field: form}}},
               "application/json": {"schema": {"type": "object", "required": [key], "properties": {
                   key: {**b64, "description": "base64 of the image file (a data: URL works too)"}}}}}
    if not many:
        content["image/png"] = {"schema": binary}
    return {"requestBody": {"required": True, "content": content}}


ERRORS = {code: {"model": ErrorAnswer, "description": text} for code, text in [
    (400, "empty body, bad JSON or base64"), (413, "over the byte, pixel or batch limit"),
    (415, "not an image, or an unsupported Content-Type"), (422, "wrong field name, or a truncated image"),
    (500, "unexpected error (logged; no internals in the answer)")]}


def create_app(predictor, max_image_bytes=None, max_image_pixels=None, max_batch=None, threads=None):
    """The FastAPI app serving `predictor` (a torch_util.Predictor). Limits default to config.py's."""
    max_image_bytes = max_image_bytes or config.MAX_IMAGE_BYTES
    max_image_pixels = max_image_pixels or config.MAX_IMAGE_PIXELS
    max_batch = max_batch or config.MAX_BATCH
    model = Model(predictor)
    batcher = None

    async def lifespan(app):
        nonlocal batcher
        batcher = Batcher(model, max_batch, threads)
        yield
        batcher.close()

    app = FastAPI(title="Captcha reader", lifespan=lifespan,
                  description="Reads text captchas with a model trained by train.py. Errors are "
                              "`{\"error\": \"...\"}`.")
    # base64 makes a body 4/3 the file; 64 KiB is room for multipart headers and JSON around it
    per_image = max_image_bytes * 4 // 3 + 64 * 1024
    app.add_middleware(CatchErrors)
    app.add_middleware(BodyLimit, max_bytes=per_image, max_batch_bytes=per_image * max_batch)

    @app.exception_handler(ApiError)
    async def api_error(request, e):
        return error_response(e.status, e.message)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request, e):
        message = {404: f"nothing at {request.url.path}; the page is at /, the API is listed at /docs",
                   405: f"{request.method} is not allowed on {request.url.path}; the API is listed at /docs"}
        return error_response(e.status_code, message.get(e.status_code, str(e.detail)))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request, e):
        what = "; ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors())
        return error_response(422, what)

    @app.get("/", include_in_schema=False)
    async def page():
        return FileResponse(os.path.join(WEB_DIR, "index.html"))

    app.mount("/static", StaticFiles(directory=WEB_DIR), name="static")

    @app.get("/healthz", summary="Liveness: 200 once the model is loaded")
    async def healthz():
        return {"status": "ok", "model": predictor.ckpt["model_name"]}

    @app.get("/api/model", summary="The served model: name, charset, image size, test accuracy, limits")
    async def model_info():
        return {**model.info(), "limits": {"max_image_bytes": max_image_bytes,
                                           "max_image_pixels": max_image_pixels, "max_batch": max_batch}}

    @app.post("/api/predict", summary="Read one captcha", response_model=None,
              responses={200: {"model": Prediction}, **ERRORS}, openapi_extra=_file_body("file", False))
    async def predict(request: Request):
        [(_, raw)] = (await read_files(request, "file", 1))[:1]
        [result] = await batcher.predict([read_image(raw, predictor, max_image_bytes, max_image_pixels)])
        return JSONResponse(result)

    @app.post("/api/predict/batch", summary="Read several captchas; a bad image fails alone", response_model=None,
              responses={200: {"model": BatchAnswer}, **ERRORS}, openapi_extra=_file_body("files", True))
    async def predict_batch(request: Request):
        files = await read_files(request, "files", max_batch)
        items, arrays = await run_in_threadpool(read_batch, files, predictor, max_image_bytes, max_image_pixels)
        results = iter(await batcher.predict(arrays) if arrays else [])
        return JSONResponse({"results": [item if "error" in item else {**item, **next(results)} for item in items]})

    return app


def main():
    import uvicorn

    positional, _ = config.parse()
    if len(positional) > 1:
        sys.exit("usage: python app.py [MODEL.pt|MODEL.onnx] [--host=127.0.0.1] [--port=8000]")
    path = positional[0] if positional else torch_util.default_checkpoint()
    # One inference thread with one torch (or onnxruntime) thread by default: the event loop needs the other
    # core, and batching (not intra-op threads) is what makes small images fast. --threads=N overrides.
    threads = config.THREADS or 1
    torch.set_num_threads(threads)
    predictor = torch_util.Predictor(path, torch_util.pick_device(config.DEVICE), threads)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_app(predictor, threads=threads)
    info = predictor.ckpt
    accuracy = f", test accuracy {info['accuracy']:.4f}" if info.get("accuracy") is not None else ""
    print(f"serving {path} ({info['model_name']} on {predictor.runtime}, charset {info['charset']!r}{accuracy}) "
          f"at http://{config.HOST}:{config.PORT}", flush=True)
    uvicorn.run(app, host=config.HOST, port=config.PORT, access_log=False, log_level="info")


if __name__ == "__main__":
    try:
        main()
    except (config.ConfigError, torch_util.CheckpointError) as e:
        sys.exit(f"error: {e}")
