"""The web app (app.py, serve/): every endpoint and every kind of bad input through FastAPI's test client, then
real uvicorn processes: concurrent requests, benchmarks/loadtest.py against one (its memory stays put), a clean
stop; and hostile clients: oversized or slowly sent headers, silent connections, too many connections."""
import base64
import contextlib
import io
import json
import logging
import os
import socket
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from core.checkpoint import CheckpointError, default_checkpoint, save_checkpoint
from core.generate import generate
from core.inference import Predictor
import config
from benchmarks import loadtest
from core import data
import models
from conftest import DIGITS, ROOT, run_script
from serve import batcher as serve_batcher, create_app, plumbing as serve_plumbing, routes as serve_routes


# --- helpers shared with test_browser.py ----------------------------------------------------------------

def untrained_checkpoint(path, name="cnn"):
    """Save an untrained model as train.py would (accuracy does not matter to the web app's plumbing)."""
    torch.manual_seed(0)
    codec = data.Codec(DIGITS, 4)
    classes = models.head(name).num_classes(codec)
    build_args = dict(name=name, in_channels=1, num_classes=classes, positions=4, height=60, width=160)
    model = models.build_model(**build_args).eval()
    with torch.no_grad():  # spread the logits: near-uniform outputs would make every argmax a near tie
        [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1].weight.mul_(30)
    save_checkpoint(str(path), model, build_args, codec, epoch=3, accuracy=0.5, char_accuracy=0.75)
    return str(path)


def captchas(folder, count, seed=5):
    """`count` generated 4-digit captcha files, sorted."""
    generate(str(folder), count, seed, DIGITS, 4, 160, 60, processes=1, quiet=True)
    return sorted(str(folder / f) for f in os.listdir(folder) if f.endswith(".png"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve(checkpoint, log_path, *options):
    """app.py (with `options`; checkpoint None: none named, e.g. with --models_dir) in a real uvicorn process on a
    free 127.0.0.1 port; yields (its base URL, the process), stops it after."""
    port = free_port()
    named = [checkpoint] if checkpoint else []
    with open(log_path, "wb") as log:
        process = subprocess.Popen([sys.executable, os.path.join(ROOT, "app.py"), *named, "--host=127.0.0.1",
                                    f"--port={port}", *options], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 90
        while True:
            assert process.poll() is None, f"app.py exited:\n{open(log_path).read()[-3000:]}"
            assert time.time() < deadline, f"app.py did not answer /healthz:\n{open(log_path).read()[-3000:]}"
            try:
                with urllib.request.urlopen(url + "/healthz", timeout=2):
                    break
            except OSError:
                time.sleep(0.2)
        yield url, process
    finally:
        if process.poll() is None:
            loadtest.stop_server(process)


def post_file(url, raw, name="captcha.png"):
    """(status, JSON answer) of a multipart POST of one file, with the standard library only."""
    boundary = "testboundary1234"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
            f"Content-Type: image/png\r\n\r\n").encode() + raw + f"\r\n--{boundary}--\r\n".encode()
    request = urllib.request.Request(url, body, {"Content-Type": f"multipart/form-data; boundary={boundary}"})
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


# --- fixtures --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return untrained_checkpoint(tmp_path_factory.mktemp("webckpt") / "web_best.pt")


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Paths of 4 generated captchas and their bytes."""
    paths = captchas(tmp_path_factory.mktemp("webimages"), 4)
    return paths, [open(p, "rb").read() for p in paths]


@pytest.fixture(scope="module")
def client(checkpoint):
    with TestClient(create_app(Predictor(checkpoint))) as c:
        yield c


@pytest.fixture(scope="module")
def small_client(checkpoint):
    """Tight limits, to reach them with small test images."""
    app = create_app(Predictor(checkpoint), max_image_bytes=3000, max_image_pixels=200 * 100,
                            max_batch=3)
    with TestClient(app) as c:
        yield c


def png(width, height, mode="L"):
    buf = io.BytesIO()
    Image.new(mode, (width, height)).save(buf, "PNG")
    return buf.getvalue()


def png_claiming(width, height):
    """A tiny PNG whose header claims width x height: how a decompression bomb announces itself."""
    raw = bytearray(png(1, 1))
    raw[16:24] = struct.pack(">II", width, height)  # IHDR data starts after signature (8) + length + type
    raw[29:33] = struct.pack(">I", zlib.crc32(bytes(raw[12:29])))  # CRC over chunk type + data
    return bytes(raw)


def multipart(raw, field="file", name="captcha.png"):
    return {"files": {field: (name, raw, "image/png")}}


def check_error(response, status, *words):
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    message = response.json()["error"]
    assert isinstance(message, str) and len(message) > 10
    for word in words:
        assert word.lower() in message.lower(), message
    assert "Traceback" not in message
    return message


# --- endpoints ---------------------------------------------------------------------------------------------

def test_page_is_served_and_needs_nothing_from_outside(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "/static/app.js" in page.text and "/static/style.css" in page.text
    for asset in ("/static/app.js", "/static/style.css"):
        assert client.get(asset).status_code == 200
    for name in ("index.html", "app.js", "style.css"):
        text = open(os.path.join(ROOT, "web", name)).read()
        assert "http://" not in text and "https://" not in text and "//cdn" not in text, name
    for feature in ("drop", "paste", "multiple"):  # drag and drop, clipboard, several files
        assert feature in page.text + client.get("/static/app.js").text


def test_healthz(client):
    response = client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok", "model": "cnn"}


def test_model_describes_the_checkpoint(client):
    info = client.get("/api/model").json()
    assert info["name"] == "cnn" and info["head"] == "fixed" and info["charset"] == DIGITS
    assert info["length"] == [4, 4] and info["image_size"] == {"width": 160, "height": 60} and info["channels"] == 1
    assert (info["epoch"], info["accuracy"], info["char_accuracy"]) == (3, 0.5, 0.75)
    assert info["checkpoint"] == "web_best.pt" and info["parameters"] > 100_000
    assert info["limits"] == {"max_image_bytes": config.MAX_IMAGE_BYTES, "max_image_pixels": config.MAX_IMAGE_PIXELS,
                              "max_batch": config.MAX_BATCH}


def test_predict_agrees_with_the_predictor(client, checkpoint, images):
    """The API's answer is predict.py's: same preprocessing and model (BatchNorm folded in for speed)."""
    paths, raws = images
    predictor = Predictor(checkpoint)
    texts, confidences, chars = predictor.predict_arrays(np.stack([predictor.load(p) for p in paths]))
    for raw, text, confidence, probs in zip(raws, texts, confidences, chars):
        answer = client.post("/api/predict", **multipart(raw)).json()
        assert answer["text"] == text and len(text) == 4 and set(text) <= set(DIGITS)
        assert answer["confidence"] == pytest.approx(confidence, abs=1e-3)
        assert [c["char"] for c in answer["chars"]] == list(text)
        for c, p in zip(answer["chars"], probs):
            assert c["confidence"] == pytest.approx(p, abs=1e-3)
            candidates = c["candidates"]
            assert len(candidates) == serve_batcher.CANDIDATES and candidates[0]["char"] == c["char"]
            assert [k["p"] for k in candidates[1:]] == sorted((k["p"] for k in candidates[1:]), reverse=True)
            assert len({k["char"] for k in candidates}) == len(candidates)


def test_json_base64_and_raw_body_read_the_same(client, images):
    raw = images[1][0]
    expected = client.post("/api/predict", **multipart(raw)).json()
    b64 = base64.b64encode(raw).decode()
    assert client.post("/api/predict", json={"image": b64}).json() == expected
    assert client.post("/api/predict", json={"image": "data:image/png;base64," + b64}).json() == expected
    assert client.post("/api/predict", content=raw, headers={"content-type": "image/png"}).json() == expected


def test_batch_reads_each_image_and_fails_bad_ones_alone(client, images):
    paths, raws = images
    singles = [client.post("/api/predict", **multipart(r)).json() for r in raws]
    files = [("files", (os.path.basename(p), r, "image/png")) for p, r in zip(paths, raws)]
    files.insert(2, ("files", ("notes.txt", b"not an image", "text/plain")))
    answer = client.post("/api/predict/batch", files=files)
    assert answer.status_code == 200
    results = answer.json()["results"]
    assert [r["name"] for r in results] == [f[1][0] for f in files]
    assert results[2]["status"] == 415 and "not an image" in results[2]["error"] and "text" not in results[2]
    good = results[:2] + results[3:]
    assert [{k: r[k] for k in ("text", "confidence", "chars")} for r in good] == singles
    as_json = client.post("/api/predict/batch", json={"images": [base64.b64encode(r).decode() for r in raws]})
    assert [r["text"] for r in as_json.json()["results"]] == [s["text"] for s in singles]


def test_openapi_docs_list_the_api(client):
    spec = client.get("/openapi.json").json()
    assert {"/api/predict", "/api/predict/batch", "/api/model", "/healthz"} <= set(spec["paths"])
    body = spec["paths"]["/api/predict"]["post"]["requestBody"]["content"]
    assert {"multipart/form-data", "application/json", "image/png"} <= set(body)
    assert "413" in spec["paths"]["/api/predict"]["post"]["responses"]
    assert client.get("/docs").status_code == 200


def test_ctc_model_is_served_with_candidates(tmp_path, images):
    if "cnn_ctc" not in models.MODELS:
        pytest.skip("no CTC model registered")
    predictor = Predictor(untrained_checkpoint(tmp_path / "ctc.pt", "cnn_ctc"))
    texts, _, _ = Predictor(str(tmp_path / "ctc.pt")).predict_arrays(
        np.stack([predictor.load(p) for p in images[0]]))
    with TestClient(create_app(predictor)) as c:
        assert c.get("/api/model").json()["head"] == "ctc"
        for raw, text in zip(images[1], texts):
            answer = c.post("/api/predict", **multipart(raw)).json()
            assert answer["text"] == text and len(answer["chars"]) == len(text)
            for ch in answer["chars"]:
                assert ch["candidates"][0]["char"] == ch["char"]


# --- bad input: a 4xx with a message a person understands ----------------------------------------------------

def bad_requests(raw):
    truncated = raw[: len(raw) // 2]
    jpeg = io.BytesIO()
    Image.open(io.BytesIO(raw)).convert("RGB").save(jpeg, "JPEG")
    return {
        "empty body": (dict(content=b""), 400, ["empty"]),
        "empty file": (multipart(b""), 400, ["empty"]),
        "empty JSON image": (dict(json={"image": ""}), 400, ["empty"]),
        "not an image": (multipart(b"hello, I am text"), 415, ["not an image"]),
        "a PDF": (multipart(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n"), 415, ["not an image"]),
        "truncated PNG": (multipart(truncated), 422, ["truncated"]),
        "truncated JPEG": (multipart(jpeg.getvalue()[: len(jpeg.getvalue()) * 2 // 3]), 422, ["truncated"]),
        "wrong field name": (multipart(raw, field="image"), 422, ["'file'", "'image'"]),
        "text in the file field": (dict(data={"file": "captcha.png"}, files={"other": ("o.txt", b"o")}), 422,
                                   ["'file'", "text"]),
        "form without fields": (dict(content=b"--x--\r\n", headers={"content-type": "multipart/form-data; boundary=x"}),
                                422, ["empty"]),
        "multipart without boundary": (dict(content=b"abc", headers={"content-type": "multipart/form-data"}),
                                       400, ["boundary"]),
        "JSON wrong key": (dict(json={"file": "aGVsbG8="}), 422, ["'image'", "'file'"]),
        "JSON not an object": (dict(json=["aGVsbG8="]), 422, ["'image'"]),
        "JSON image not a string": (dict(json={"image": 12}), 422, ["base64"]),
        "invalid JSON": (dict(content=b"{image:", headers={"content-type": "application/json"}), 400, ["JSON"]),
        "invalid base64": (dict(json={"image": "not base64!"}), 400, ["base64"]),
        "base64 of text": (dict(json={"image": base64.b64encode(b"plain words").decode()}), 415, ["not an image"]),
        "unsupported Content-Type": (dict(content=b"x", headers={"content-type": "text/plain"}), 415, ["text/plain"]),
        "bomb header (900 M pixels)": (multipart(png_claiming(30000, 30000)), 413, ["pixels"]),
        "bomb header (25 M pixels)": (multipart(png_claiming(5000, 5000)), 413, ["5000x5000", "MAX_IMAGE_PIXELS"]),
        "real image over the pixel limit": (multipart(png(2500, 2000)), 413, ["2500x2000"]),
    }


@pytest.mark.parametrize("case", list(bad_requests(png(4, 4))))
def test_bad_input_is_a_readable_4xx(client, images, case):
    kwargs, status, words = bad_requests(images[1][0])[case]
    check_error(client.post("/api/predict", **kwargs), status, *words)


def test_byte_limits(small_client, images):
    raw = images[1][0]
    assert len(raw) > 3000
    check_error(small_client.post("/api/predict", **multipart(raw)), 413, "MAX_IMAGE_BYTES")
    big = b"x" * 20_000  # over the body limit: refused from its Content-Length, before it is read
    check_error(small_client.post("/api/predict", content=big, headers={"content-type": "image/png"}), 413)
    chunks = (b"x" * 1000 for _ in range(200))  # no Content-Length: counted as it arrives
    check_error(small_client.post("/api/predict", content=chunks, headers={"content-type": "image/png"}), 413)
    small = png(60, 20)
    assert small_client.post("/api/predict", **multipart(small)).status_code == 200


def test_batch_limits(small_client):
    small = png(60, 20)
    files = [("files", (f"{i}.png", small, "image/png")) for i in range(4)]
    check_error(small_client.post("/api/predict/batch", files=files), 413, "limit is 3")
    check_error(small_client.post("/api/predict/batch", json={"images": [base64.b64encode(small).decode()] * 4}),
                413, "limit is 3")
    check_error(small_client.post("/api/predict/batch", json={"images": []}), 422, "non-empty")
    check_error(small_client.post("/api/predict/batch", files={"upload": ("a.png", small, "image/png")}), 422,
                "'files'")
    check_error(small_client.post("/api/predict/batch", content=b""), 400, "empty")
    answer = small_client.post("/api/predict/batch", files=[("file", ("one.png", small, "image/png"))])
    assert answer.status_code == 200 and len(answer.json()["results"]) == 1  # 'file' is fine for one


def test_unknown_paths_and_methods_are_json(client):
    check_error(client.get("/api/nothing"), 404, "/api/nothing", "/docs")
    check_error(client.get("/api/predict"), 405, "GET", "/api/predict")
    check_error(client.get("/static/missing.js"), 404)


def test_unexpected_error_is_logged_and_answered_500_without_internals(client, images, monkeypatch, caplog):
    def broken(self, arrays):
        raise RuntimeError("secret detail at /srv/models/x.pt")

    monkeypatch.setattr(serve_batcher.Model, "predict", broken)
    with caplog.at_level(logging.ERROR, logger="app"):
        response = client.post("/api/predict", **multipart(images[1][0]))
    assert response.status_code == 500 and response.json() == {"error": serve_plumbing.INTERNAL_ERROR}
    assert "secret" not in response.text
    assert "secret detail" in caplog.text and "Traceback" in caplog.text
    monkeypatch.undo()
    assert client.post("/api/predict", **multipart(images[1][0])).status_code == 200  # still serving


def test_oversized_headers_are_a_431(client):
    check_error(client.get("/healthz", headers={"x-filler": "a" * 40_000}), 431, "headers")
    assert client.get("/healthz", headers={"x-filler": "a" * 20_000}).status_code == 200


def test_deeply_nested_json_is_a_400(client):
    deep = b"[" * 100_000 + b"]" * 100_000
    for path, body in (("/api/predict", deep), ("/api/predict", b'{"image": ' + deep + b"}"),
                       ("/api/predict/batch", b'{"images": ' + deep + b"}")):
        check_error(client.post(path, content=body, headers={"content-type": "application/json"}), 400,
                    "nested too deeply")


def test_large_images_are_decoded_off_the_event_loop(client, images, monkeypatch):
    """A large single upload decodes on a worker thread, as every image of the batch endpoint does, so it does
    not hold /healthz and the other requests up; a captcha-sized one (well under a millisecond) stays on the loop."""
    import asyncio

    on_loop = []
    decode_image = serve_routes.decode_image

    def recording(*args):
        try:
            asyncio.get_running_loop()
            on_loop.append(True)
        except RuntimeError:  # no event loop in this thread
            on_loop.append(False)
        return decode_image(*args)

    monkeypatch.setattr(serve_routes, "decode_image", recording)
    large = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (400, 600), dtype=np.uint8)).save(large, "PNG")
    assert 400 * 600 > serve_routes.INLINE_PIXELS
    assert client.post("/api/predict", **multipart(large.getvalue())).status_code == 200
    assert client.post("/api/predict/batch", files=[("files", ("a.png", images[1][0], "image/png"))]).status_code == 200
    assert client.post("/api/predict", **multipart(images[1][0])).status_code == 200
    assert on_loop == [False, False, True]


def test_sixteen_bit_images_read_like_eight_bit_ones(client, images):
    """A 16-bit grey PNG goes through data.load_image like every other image: it reads as its 8-bit equivalent."""
    grey = np.asarray(Image.open(images[0][0]).convert("L"), dtype=np.uint16) * 257  # 0..255 -> 0..65535
    deep = io.BytesIO()
    Image.fromarray(grey).save(deep, "PNG")
    assert Image.open(io.BytesIO(deep.getvalue())).mode.startswith("I")
    eight = io.BytesIO()
    Image.open(images[0][0]).convert("L").save(eight, "PNG")
    expected = client.post("/api/predict", **multipart(eight.getvalue())).json()
    answer = client.post("/api/predict", **multipart(deep.getvalue())).json()
    assert answer["text"] == expected["text"]
    assert answer["confidence"] == pytest.approx(expected["confidence"], abs=0.02)


def test_request_bodies_held_at_once_are_bounded(checkpoint, images):
    """Bodies of requests in progress count against upload_memory: beyond it a 503 to retry, not more memory;
    a finished request gives its share back."""
    raw = images[1][0]
    app = create_app(Predictor(checkpoint), upload_memory=len(raw) + 1000)
    with TestClient(app) as c:
        for _ in range(5):  # each returns its share: the next fits again
            assert c.post("/api/predict", content=raw, headers={"content-type": "image/png"}).status_code == 200
        busy = c.post("/api/predict", content=raw + b"x" * 2000, headers={"content-type": "image/png"})
        check_error(busy, 503, "busy")
        assert busy.headers["retry-after"] == "1"
        chunks = (raw[i:i + 500] for i in range(0, len(raw), 500))  # no Content-Length: counted as it arrives
        assert c.post("/api/predict", content=chunks, headers={"content-type": "image/png"}).status_code == 200
        chunks = (b"x" * 500 for _ in range(10 + len(raw) // 500))
        check_error(c.post("/api/predict", content=chunks, headers={"content-type": "image/png"}), 503, "busy")
        assert c.post("/api/predict", content=raw, headers={"content-type": "image/png"}).status_code == 200


# --- starting it ---------------------------------------------------------------------------------------------

def test_default_checkpoint_order(tmp_path, monkeypatch):
    """The newest *_best.pt (what was trained last), else the shipped default.pt."""
    monkeypatch.setattr(config, "WEIGHTS_DIR", str(tmp_path))
    with pytest.raises(CheckpointError, match="train one with `python train.py`, or name one"):
        default_checkpoint()
    untrained_checkpoint(tmp_path / "default.pt")
    assert default_checkpoint() == str(tmp_path / "default.pt")
    untrained_checkpoint(tmp_path / "other_best.pt")
    assert default_checkpoint() == str(tmp_path / "other_best.pt")
    untrained_checkpoint(tmp_path / "t_best.pt")
    os.utime(tmp_path / "other_best.pt", (time.time() - 60, time.time() - 60))
    assert default_checkpoint() == str(tmp_path / "t_best.pt")


@pytest.mark.slow
def test_port_outside_the_tcp_range_is_refused_in_one_line(monkeypatch):
    import app as webapp  # its command-line main
    monkeypatch.setattr(config, "PORT", config.PORT)  # --port= sets it: restored after the test
    for port in ("0", "-1", "65536"):
        monkeypatch.setattr(sys, "argv", ["app.py", "weights/none.pt", f"--port={port}"])
        with pytest.raises(config.ConfigError, match=rf"PORT={port} is out of range: a TCP port from 1 to 65535"):
            webapp.main()
    out = run_script("app.py", "--port=70000", check=False)
    assert out.returncode == 1 and out.stdout == "error: PORT=70000 is out of range: a TCP port from 1 to 65535 (--port=...)\n"


def test_missing_models_give_clear_errors(tmp_path, monkeypatch):
    import app as webapp  # its command-line main
    monkeypatch.setattr(sys, "argv", ["app.py", str(tmp_path / "none.pt")])
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        webapp.main()
    monkeypatch.setattr(sys, "argv", ["app.py", str(tmp_path / "none.onnx")])
    with pytest.raises(CheckpointError, match="no model at .*python export.py"):
        webapp.main()
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    monkeypatch.setattr(sys, "argv", ["app.py", str(tmp_path / "junk.onnx")])
    with pytest.raises(CheckpointError, match="not a readable ONNX model"):
        webapp.main()


@pytest.mark.slow
def test_real_server_concurrent_requests_and_loadtest(checkpoint, images, tmp_path):
    paths, raws = images
    with serve(checkpoint, tmp_path / "server.log") as (url, process):
        expected = [post_file(url + "/api/predict", raw)[1]["text"] for raw in raws]
        with ThreadPoolExecutor(16) as pool:  # requests from 16 threads at once get batched together
            answers = list(pool.map(lambda i: post_file(url + "/api/predict", raws[i % 4]), range(64)))
        assert all(status == 200 for status, _ in answers)
        assert [a["text"] for _, a in answers] == [expected[i % 4] for i in range(64)]
        assert post_file(url + "/api/predict", b"junk")[0] == 415
        with urllib.request.urlopen(url + "/") as page:
            assert b"Captcha reader" in page.read()

        memory = rss_kib(process.pid)
        load = run_script("benchmarks/loadtest.py", f"--url={url}", f"--images={os.path.dirname(paths[0])}",
                          "--requests=300", "--concurrency=4", timeout=120)
        assert rss_kib(process.pid) - memory < 30 * 1024  # 300 more requests: no growth beyond allocator noise
        assert "300 requests (multipart, 4 images) at concurrency 4" in load.stdout, load.stdout
        assert "errors 0" in load.stdout and "req/s" in load.stdout and "p99" in load.stdout
        (tmp_path / "bad").mkdir()
        (tmp_path / "bad" / "1234.png").write_bytes(b"not a png")
        failing = run_script("benchmarks/loadtest.py", f"--url={url}", f"--images={tmp_path / 'bad'}", "--requests=20",
                             "--concurrency=2", check=False)
        assert failing.returncode == 1 and "errors 20" in failing.stdout and "HTTP 415" in failing.stdout
        process.terminate()
        process.wait(timeout=15)  # uvicorn stops gracefully, then re-raises SIGTERM (exit status -15)
    log = open(tmp_path / "server.log").read()
    assert "Traceback" not in log and "serving" in log and "Application shutdown complete" in log


@pytest.mark.slow
def test_loadtest_only_targets_this_machine():
    out = run_script("benchmarks/loadtest.py", "--url=http://192.0.2.1:8000", "--requests=1", check=False)
    assert out.returncode != 0 and "only targets this machine" in out.stdout


# --- a real server under hostile clients: bounded header size and time, bounded connections -------------------

def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(next(line for line in f if line.startswith("VmRSS:")).split()[1])


@pytest.fixture(scope="module")
def strict_server(checkpoint, tmp_path_factory):
    """app.py with a 2 s header deadline and at most 6 connections."""
    log_path = tmp_path_factory.mktemp("strict") / "server.log"
    with serve(checkpoint, log_path, "--header_timeout=2", "--max_connections=6") as (url, process):
        yield url, int(url.rsplit(":", 1)[1]), log_path


def raw_connection(port):
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.settimeout(10)
    return sock


def read_all(sock):
    """Everything the server sends until it closes (or resets) the connection; b"" if it closes without a word."""
    chunks = []
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


@pytest.mark.slow
def test_oversized_headers_are_refused(strict_server):
    """Headers over 32 KiB: a 431 whether they come whole in one read (measured by the app) or trickle in (the
    server stops reading them past the limit), and the server goes on."""
    _, port, _ = strict_server
    request = b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Filler: " + b"a" * 100_000 + b"\r\n\r\n"
    with raw_connection(port) as sock:
        sock.sendall(request)
        reply = read_all(sock)
        assert reply.startswith(b"HTTP/1.1 431") and b"headers are over the limit" in reply, reply[:300]
    with raw_connection(port) as sock:
        try:
            for i in range(0, len(request), 4096):
                sock.sendall(request[i:i + 4096])
                time.sleep(0.01)
        except OSError:  # the server closed the connection while we were still sending
            pass
        reply = read_all(sock)  # a reset (the server closed with our bytes unread) may discard the answer
        assert reply.startswith(b"HTTP/1.1 431") or reply == b"", reply[:100]
    with urllib.request.urlopen(strict_server[0] + "/healthz", timeout=10) as r:
        assert r.status == 200


@pytest.mark.slow
def test_slow_headers_and_silent_clients_are_dropped(strict_server):
    """A client that trickles its headers (each byte well within the keep-alive time) or sends nothing at all is
    disconnected once the 2 s header deadline passes; meanwhile the server answers others at once."""
    url, port, log_path = strict_server
    start = time.monotonic()
    with raw_connection(port) as slow, raw_connection(port) as silent:
        slow.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        slow.settimeout(0.3)
        closed = None
        for i in range(60):  # up to 18 s of trickling
            try:
                if slow.recv(1) == b"":
                    closed = time.monotonic() - start
                    break
            except socket.timeout:
                pass
            try:
                slow.sendall(b"X-Slow-%d: 1\r\n" % i)
            except OSError:  # reset: closed
                closed = time.monotonic() - start
                break
            if i == 1:
                t0 = time.monotonic()
                with urllib.request.urlopen(url + "/healthz", timeout=10) as r:
                    assert r.status == 200
                assert time.monotonic() - t0 < 1.5
        assert closed is not None and 1.5 < closed < 8, closed
        assert read_all(silent) == b"" and time.monotonic() - start < 10
    assert "no complete request headers within 2 s" in open(log_path).read()


@pytest.mark.slow
def test_a_keep_alive_client_sends_several_requests(strict_server):
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", strict_server[1], timeout=10)
    try:
        for _ in range(3):
            conn.request("GET", "/healthz")
            response = conn.getresponse()
            assert response.status == 200 and json.loads(response.read())["status"] == "ok"
            time.sleep(0.8)  # 2.4 s on one connection: each request's headers meet their own deadline
    finally:
        conn.close()


@pytest.mark.slow
def test_connections_beyond_the_limit_get_503(strict_server):
    url, port, _ = strict_server
    idle = [raw_connection(port) for _ in range(6)]
    try:
        time.sleep(0.3)
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(url + "/healthz", timeout=10)
        assert refused.value.code == 503
    finally:
        for sock in idle:
            sock.close()
    time.sleep(0.3)
    with urllib.request.urlopen(url + "/healthz", timeout=10) as r:
        assert r.status == 200
