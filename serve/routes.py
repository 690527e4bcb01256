"""The web app's routes: GET / (the page), POST /api/predict, POST /api/predict/batch, GET /api/model,
GET /api/models, GET /healthz, GET /docs and /openapi.json; and reading the images out of a request (multipart,
JSON base64, or a raw image body). The models read with are a Models (models_dir.py): the one app.py was given,
or a folder's by name. With a labelling folder, the labelling page and its API too (labelling.py). Every error
is JSON {"error": "..."}."""
import asyncio
import base64
import binascii
import functools
import io
import json
import os
from concurrent.futures import ThreadPoolExecutor

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from PIL import Image
from pydantic import BaseModel, Field
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

import config
import serve.labelling as labelling
from core.coverage import check_min_confidence
from serve.batcher import Batcher
from serve.models_dir import Models, ModelsDir
from serve.plumbing import ApiError, CatchErrors, Origin, RequestLimits, SameOrigin, error_response, megabytes

WEB_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "web")
DECODE_THREADS = 2         # threads that decode uploads (and parse JSON bodies) off the event loop
INLINE_PIXELS = 256 * 256  # a single image up to this size decodes on the event loop: well under a millisecond,
                           # less than the hand-over to a thread costs (a captcha is ~10 000 pixels)
FORMATS = ("PNG", "JPEG", "GIF", "BMP", "WEBP", "TIFF")  # what PIL may open; never EPS & co. (they run tools)
NO_MODEL = ("no model is loaded: this server labels images only (--label_dir without a model); to read captchas "
            "too, name a model: python app.py --label_dir=FOLDER weights/x_best.pt (or weights/x.onnx)")


# --- images in ----------------------------------------------------------------------------------------------

def open_image(raw, max_bytes, max_pixels):
    """Image file bytes -> a PIL image of which only the header is read (cheap), after the byte and pixel limits;
    ApiError saying what is wrong otherwise."""
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
    return image


def decode_image(image, predictor):
    """The pixels of an opened image -> uint8 (H, W, C) at the model's size, read by data.load_image (through the
    predictor), the loading function of training, test.py and predict.py; ApiError 422 for broken pixels."""
    try:
        return predictor.load(image)
    except Exception as e:  # the header was fine but the pixels are not: broken bytes, not a server fault
        why = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
        raise ApiError(422, f"the image could not be decoded; it may be truncated or corrupt ({why})") from None


def read_image(raw, predictor, max_bytes, max_pixels):
    """Image file bytes -> uint8 (H, W, C) at the model's size; ApiError saying what is wrong otherwise."""
    return decode_image(open_image(raw, max_bytes, max_pixels), predictor)


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


# --- reading requests ------------------------------------------------------------------------------------

def usage(field):
    return (f"send the image as multipart/form-data in the field '{field}' (curl -F {field}=@captcha.png URL), "
            + ("as JSON {\"images\": [base64, ...]}" if field == "files" else "as JSON {\"image\": base64}")
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


async def read_files(request, field, max_files, off_loop):
    """[(name, bytes)] of the images in a request: multipart field `field`, JSON, or a raw image body.
    `off_loop(fn, *args)`: runs the JSON parser away from the event loop."""
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
            payload = await off_loop(json.loads, body)
        except ValueError:
            raise ApiError(400, f"the body is not valid JSON; {usage(field)}") from None
        except RecursionError:  # [[[[...]]]]: the parser's depth limit
            raise ApiError(400, f"the JSON is nested too deeply; {usage(field)}") from None
        key = "images" if field == "files" else "image"
        if not isinstance(payload, dict) or key not in payload:
            got = (f"keys {', '.join(map(repr, payload))}" if payload else "an empty object") if isinstance(
                payload, dict) else type(payload).__name__
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
    answer: str | None = Field(None, description="the computed answer, for a model that reads sums (ANSWER arith); "
                                                 "null when the reading is not a sum")
    answer_error: str | None = Field(None, description="why the reading is not a sum (ANSWER arith)")
    unsure: bool | None = Field(None, description="confidence below MIN_CONFIDENCE (given when it is above 0)")
    chars: list[CharPrediction]


class BatchItem(BaseModel):
    name: str
    text: str | None = None
    confidence: float | None = None
    answer: str | None = None
    answer_error: str | None = None
    unsure: bool | None = None
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
    (400, "empty body, bad or too deeply nested JSON, bad base64; several models and none named"),
    (404, "no model of that name (the answer lists those served)"), (413, "over the byte, pixel or batch limit"),
    (415, "not an image, or an unsupported Content-Type"),
    (422, "wrong field name, a truncated image, min_confidence outside 0-1"),
    (431, "request headers over the limit"), (500, "unexpected error (logged; no internals in the answer)"),
    (503, "too many uploads or connections at once (Retry-After); no model loaded")]}
MODEL_QUERY = Query(None, description="the model to read with, by name (GET /api/models); default: the only one, "
                                      "or the server's --default_model")
CONFIDENCE_QUERY = Query(None, ge=0, le=1, description="mark readings below this confidence \"unsure\" (0-1; 0: "
                                                       "never); default: the server's MIN_CONFIDENCE")


class Reader:
    """What the reading endpoints share: the models (serve.models_dir.Models), the inference thread and the
    decoding threads (started by the app's lifespan), the limits and the default MIN_CONFIDENCE."""

    def __init__(self, models, max_image_bytes, max_image_pixels, max_batch, threads, min_confidence):
        self.models, self.threads, self.min_confidence = models, threads, min_confidence
        self.max_image_bytes, self.max_image_pixels, self.max_batch = max_image_bytes, max_image_pixels, max_batch
        self.batcher = self.decoder = None

    def start(self):
        self.batcher = Batcher(None, self.max_batch, self.threads)  # one for every model: see docs/serving.md
        self.decoder = ThreadPoolExecutor(DECODE_THREADS, "decode")
        self.models.start()

    def stop(self):
        self.models.stop()
        self.batcher.close()
        self.decoder.shutdown(wait=False, cancel_futures=True)

    async def off_loop(self, fn, *args):
        """fn(*args) on a decoding thread (a pool of its own: Starlette's run_in_threadpool costs more per call)."""
        return await asyncio.get_running_loop().run_in_executor(self.decoder, functools.partial(fn, *args))

    def threshold(self, min_confidence):
        return self.min_confidence if min_confidence is None else min_confidence

    def limits(self):
        return {"max_image_bytes": self.max_image_bytes, "max_image_pixels": self.max_image_pixels,
                "max_batch": self.max_batch}


def create_app(predictor, max_image_bytes=None, max_image_pixels=None, max_batch=None, threads=None,
               upload_memory=None, label_dir=None, say=print, host=None, port=None, models=None,
               min_confidence=None):
    """The FastAPI app serving `predictor` (a core.inference.Predictor). Limits default to config.py's; `upload_memory`
    bounds the bytes of request bodies held at once (default: one full batch request and 16 largest images).

    `models`: instead of `predictor`, the models to serve by name (serve.models_dir.ModelsDir: a folder's, kept
    in step with it while the app runs). `min_confidence`: readings below it are marked "unsure" unless a request
    says otherwise (default config.MIN_CONFIDENCE; 0: never).

    `label_dir`: a folder of images to label; adds the labelling page and its API (labelling.mount; the images are
    scored by `predictor` now, its messages go to `say`). Then `predictor` may be None: the reader's endpoints
    answer 503 saying no model is loaded. The labelling page and API answer only requests naming the server
    (`host`, `port`: default config.HOST and config.PORT; server_config sets those it serves on) from its own
    page (plumbing.SameOrigin), with its security headers."""
    max_image_bytes = max_image_bytes or config.MAX_IMAGE_BYTES
    max_image_pixels = max_image_pixels or config.MAX_IMAGE_PIXELS
    max_batch = max_batch or config.MAX_BATCH
    if models is None:
        models = Models.single(predictor)
        models.empty = NO_MODEL
    reader = Reader(models, max_image_bytes, max_image_pixels, max_batch, threads,
                    check_min_confidence(config.MIN_CONFIDENCE if min_confidence is None else min_confidence))

    async def lifespan(app):
        reader.start()
        yield
        reader.stop()

    app = FastAPI(title="Captcha reader", lifespan=lifespan,
                  description="Reads text captchas with a model trained by train.py. Errors are "
                              "`{\"error\": \"...\"}`.")
    # base64 makes a body 4/3 the file; 64 KiB is room for multipart headers and JSON around it
    per_image = max_image_bytes * 4 // 3 + 64 * 1024
    app.add_middleware(CatchErrors)
    app.add_middleware(RequestLimits, max_bytes=per_image, max_batch_bytes=per_image * max_batch,
                       memory=upload_memory or per_image * (max_batch + 16))
    app.state.origin = Origin(config.HOST if host is None else host, config.PORT if port is None else port)
    app.state.models = models
    if label_dir is not None:  # outermost: a request from elsewhere is refused before its body is read
        app.add_middleware(SameOrigin, origin=app.state.origin, pages=labelling.PAGES, api=labelling.API)
    add_error_handlers(app)
    add_pages(app, reader, label_only=predictor is None and not isinstance(models, ModelsDir))
    if label_dir is not None:
        app.state.labelling = labelling.mount(app, label_dir, predictor, WEB_DIR, say)
    add_model_routes(app, reader)
    add_predict_routes(app, reader)
    return app


def add_error_handlers(app):
    """Every error as JSON {"error": "..."}: the request's (ApiError), an unknown path or method, bad parameters."""

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


def add_pages(app, reader, label_only):
    """GET / (the page; the labelling page when there is no model to read with), /static/*, GET /healthz."""

    @app.get("/", include_in_schema=False)
    async def page():
        if label_only:  # nothing to read captchas with: the labelling page is what this server is for
            return RedirectResponse("/label")
        return FileResponse(os.path.join(WEB_DIR, "index.html"))

    app.mount("/static", StaticFiles(directory=WEB_DIR), name="static")

    @app.get("/healthz", summary="Liveness: 200 once the model is loaded (model null: labelling only)")
    async def healthz():
        models = reader.models
        entries = models.entries
        if not isinstance(models, ModelsDir):
            served = next(iter(entries.values()), None)
            return {"status": "ok", "model": served.describe()["model"] if served else None}
        default = models.listing()["default"]
        served = entries.get(default) if default else None
        return {"status": "ok", "model": served.describe()["model"] if served else None, "models": sorted(entries)}


def add_model_routes(app, reader):
    """GET /api/model (one model described) and GET /api/models (the models served)."""

    @app.get("/api/model", summary="A served model (?model=NAME; default: the default one): name, charset, image "
                                   "size, answer kind, accuracy recorded in training, limits")
    async def model_info(model: str | None = MODEL_QUERY):
        with reader.models.lease(model) as served:
            info = served.model.info()
        return {**info, "limits": reader.limits(), "min_confidence": reader.min_confidence}

    @app.get("/api/models", summary="The models served: name, file, model, head, charset, answer kind, runtime, "
                                    "when loaded; the default; files refused")
    async def models_list():
        return reader.models.listing()


def add_predict_routes(app, reader):
    """POST /api/predict and POST /api/predict/batch, each with ?model=NAME and ?min_confidence=P."""

    @app.post("/api/predict", summary="Read one captcha", response_model=None,
              responses={200: {"model": Prediction}, **ERRORS}, openapi_extra=_file_body("file", False))
    async def predict(request: Request, model: str | None = MODEL_QUERY,
                      min_confidence: float | None = CONFIDENCE_QUERY):
        with reader.models.lease(model) as served:  # the model it started with, whatever the folder does meanwhile
            predictor = served.model.predictor
            [(_, raw)] = (await read_files(request, "file", 1, reader.off_loop))[:1]
            image = open_image(raw, reader.max_image_bytes, reader.max_image_pixels)
            if image.width * image.height <= INLINE_PIXELS:
                array = decode_image(image, predictor)
            else:  # a large image would hold every other request up (/healthz too) while it decodes
                array = await reader.off_loop(decode_image, image, predictor)
            [result] = await reader.batcher.predict([array], served.model, reader.threshold(min_confidence))
        return JSONResponse(result)

    @app.post("/api/predict/batch", summary="Read several captchas; a bad image fails alone", response_model=None,
              responses={200: {"model": BatchAnswer}, **ERRORS}, openapi_extra=_file_body("files", True))
    async def predict_batch(request: Request, model: str | None = MODEL_QUERY,
                            min_confidence: float | None = CONFIDENCE_QUERY):
        with reader.models.lease(model) as served:
            files = await read_files(request, "files", reader.max_batch, reader.off_loop)
            items, arrays = await reader.off_loop(read_batch, files, served.model.predictor, reader.max_image_bytes,
                                                  reader.max_image_pixels)
            results = iter(await reader.batcher.predict(arrays, served.model, reader.threshold(min_confidence))
                           if arrays else [])
        return JSONResponse({"results": [item if "error" in item else {**item, **next(results)} for item in items]})
