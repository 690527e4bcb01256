"""The web app (app.py): every endpoint and every kind of bad input through FastAPI's test client, then one
real uvicorn process (concurrent requests, loadtest.py against it, a clean stop)."""
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

import app as webapp
import captchaGenerator
import config
import loadtest
import data
import models
import torch_util
from conftest import DIGITS, ROOT, run_script


# --- helpers shared with test_browser.py ----------------------------------------------------------------

def untrained_checkpoint(path, name="cnn"):
    """Save an untrained model as train.py would (accuracy does not matter to the web app's plumbing)."""
    torch.manual_seed(0)
    codec = data.Codec(DIGITS, 4)
    classes = codec.fixed_classes if models.head_of(name) == "fixed" else codec.ctc_classes
    build_args = dict(name=name, in_channels=1, num_classes=classes, positions=4, height=60, width=160)
    model = models.build_model(**build_args).eval()
    with torch.no_grad():  # spread the logits: near-uniform outputs would make every argmax a near tie
        [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1].weight.mul_(30)
    torch_util.save_checkpoint(str(path), model, build_args, codec, epoch=3, accuracy=0.5, char_accuracy=0.75)
    return str(path)


def captchas(folder, count, seed=5):
    """`count` generated 4-digit captcha files, sorted."""
    captchaGenerator.generate(str(folder), count, seed, DIGITS, 4, 160, 60, processes=1, quiet=True)
    return sorted(str(folder / f) for f in os.listdir(folder) if f.endswith(".png"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve(checkpoint, log_path):
    """app.py in a real uvicorn process on a free 127.0.0.1 port; yields its base URL, stops it after."""
    port = free_port()
    with open(log_path, "wb") as log:
        process = subprocess.Popen([sys.executable, os.path.join(ROOT, "app.py"), checkpoint, "--host=127.0.0.1",
                                    f"--port={port}"], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
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
    with TestClient(webapp.create_app(torch_util.Predictor(checkpoint))) as c:
        yield c


@pytest.fixture(scope="module")
def small_client(checkpoint):
    """Tight limits, to reach them with small test images."""
    app = webapp.create_app(torch_util.Predictor(checkpoint), max_image_bytes=3000, max_image_pixels=200 * 100,
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
    predictor = torch_util.Predictor(checkpoint)
    texts, confidences, chars = predictor.predict_arrays(np.stack([predictor.load(p) for p in paths]))
    for raw, text, confidence, probs in zip(raws, texts, confidences, chars):
        answer = client.post("/api/predict", **multipart(raw)).json()
        assert answer["text"] == text and len(text) == 4 and set(text) <= set(DIGITS)
        assert answer["confidence"] == pytest.approx(confidence, abs=1e-3)
        assert [c["char"] for c in answer["chars"]] == list(text)
        for c, p in zip(answer["chars"], probs):
            assert c["confidence"] == pytest.approx(p, abs=1e-3)
            candidates = c["candidates"]
            assert len(candidates) == webapp.CANDIDATES and candidates[0]["char"] == c["char"]
            assert [k["p"] for k in candidates] == sorted((k["p"] for k in candidates), reverse=True)
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
    predictor = torch_util.Predictor(untrained_checkpoint(tmp_path / "ctc.pt", "cnn_ctc"))
    texts, _, _ = torch_util.Predictor(str(tmp_path / "ctc.pt")).predict_arrays(
        np.stack([predictor.load(p) for p in images[0]]))
    with TestClient(webapp.create_app(predictor)) as c:
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

    monkeypatch.setattr(webapp.Model, "predict", broken)
    with caplog.at_level(logging.ERROR, logger="app"):
        response = client.post("/api/predict", **multipart(images[1][0]))
    assert response.status_code == 500 and response.json() == {"error": webapp.INTERNAL_ERROR}
    assert "secret" not in response.text
    assert "secret detail" in caplog.text and "Traceback" in caplog.text
    monkeypatch.undo()
    assert client.post("/api/predict", **multipart(images[1][0])).status_code == 200  # still serving


# --- starting it ---------------------------------------------------------------------------------------------

def test_default_checkpoint_order(tmp_path, monkeypatch):
    """This run's best (just trained), else the shipped default.pt, else the newest *_best.pt."""
    monkeypatch.setattr(config, "WEIGHTS_DIR", str(tmp_path))
    monkeypatch.setattr(config, "RUN", "t")
    with pytest.raises(torch_util.CheckpointError, match="train one with `python train.py`, or name one"):
        torch_util.default_checkpoint()
    untrained_checkpoint(tmp_path / "other_best.pt")
    assert torch_util.default_checkpoint() == str(tmp_path / "other_best.pt")
    untrained_checkpoint(tmp_path / "default.pt")
    assert torch_util.default_checkpoint() == str(tmp_path / "default.pt")
    untrained_checkpoint(tmp_path / "t_best.pt")
    assert torch_util.default_checkpoint() == str(tmp_path / "t_best.pt")


def test_missing_models_give_clear_errors(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["app.py", str(tmp_path / "none.pt")])
    with pytest.raises(torch_util.CheckpointError, match="no checkpoint at"):
        webapp.main()
    monkeypatch.setattr(sys, "argv", ["app.py", str(tmp_path / "none.onnx")])
    with pytest.raises(torch_util.CheckpointError, match="no model at .*python export.py"):
        webapp.main()
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    monkeypatch.setattr(sys, "argv", ["app.py", str(tmp_path / "junk.onnx")])
    with pytest.raises(torch_util.CheckpointError, match="not a readable ONNX model"):
        webapp.main()


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

        load = run_script("loadtest.py", f"--url={url}", f"--images={os.path.dirname(paths[0])}",
                          "--requests=300", "--concurrency=4", timeout=120)
        assert "300 requests (multipart, 4 images) at concurrency 4" in load.stdout, load.stdout
        assert "errors 0" in load.stdout and "req/s" in load.stdout and "p99" in load.stdout
        (tmp_path / "bad").mkdir()
        (tmp_path / "bad" / "1234.png").write_bytes(b"not a png")
        failing = run_script("loadtest.py", f"--url={url}", f"--images={tmp_path / 'bad'}", "--requests=20",
                             "--concurrency=2", check=False)
        assert failing.returncode == 1 and "errors 20" in failing.stdout and "HTTP 415" in failing.stdout
        process.terminate()
        process.wait(timeout=15)  # uvicorn stops gracefully, then re-raises SIGTERM (exit status -15)
    log = open(tmp_path / "server.log").read()
    assert "Traceback" not in log and "serving" in log and "Application shutdown complete" in log


def test_loadtest_only_targets_this_machine():
    out = run_script("loadtest.py", "--url=http://192.0.2.1:8000", "--requests=1", check=False)
    assert out.returncode != 0 and "only targets this machine" in out.stdout
