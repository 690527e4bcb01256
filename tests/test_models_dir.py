"""Several models by name (app.py --models_dir, serve/models_dir.py) and the reading fields of the API: each
model served by its file name, unknown names answered 404, files added, replaced and removed while serving
picked up, broken files refused without harm, a model file replaced 10 times under load without a failed
request; and "answer" / "unsure" in every reading (core.inference.reading)."""
import contextlib
import json
import logging
import os
import shutil
import sys
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from conftest import DIGITS, ROOT
from core.inference import Predictor, reading
from serve import create_app
from serve.models_dir import ModelsDir
from test_app import captchas, multipart, post_file, serve, untrained_checkpoint

SHIPPED = os.path.join(ROOT, "weights", "default.pt")
READING = ("text", "confidence", "answer", "answer_error", "unsure")


def load(path):
    return Predictor(path, "cpu", 1)  # as app.py loads its one model


def copy_in(source, folder, name):
    """Copy `source` into `folder` as `name` the way a careful writer does: a hidden file, then os.replace."""
    temporary = os.path.join(folder, f".{name}.part")
    shutil.copyfile(source, temporary)
    os.replace(temporary, os.path.join(folder, name))


def wait_for(check, what, seconds=30):
    end = time.time() + seconds
    while True:
        value = check()
        if value:
            return value
        assert time.time() < end, f"not within {seconds} s: {what}"
        time.sleep(0.05)


def listed(client):
    return {m["name"]: m for m in client.get("/api/models").json()["models"]}


def same(answer, expected_reading):
    """Whether an API answer says what core.inference.reading() does (the confidence within rounding)."""
    got = {k: answer[k] for k in READING if k in answer}
    return got.keys() == expected_reading.keys() and got.pop("confidence") == pytest.approx(
        expected_reading["confidence"], abs=1e-3) and all(got[k] == expected_reading[k] for k in got)


# --- fixtures --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """An untrained fixed-length model: 4 digits, as tests/test_app.py makes it."""
    return untrained_checkpoint(tmp_path_factory.mktemp("tiny") / "tiny.pt")


@pytest.fixture(scope="module")
def arith(tiny, tmp_path_factory):
    """The same model, recorded as trained for sums (ANSWER arith)."""
    ckpt = torch.load(tiny, weights_only=True)
    ckpt["answer"] = "arith"
    path = str(tmp_path_factory.mktemp("arith") / "sums.pt")
    torch.save(ckpt, path)
    return path


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    paths = captchas(tmp_path_factory.mktemp("mdimages"), 3)
    return paths, [open(p, "rb").read() for p in paths]


@pytest.fixture
def folder(tmp_path, tiny):
    """A models folder: the shipped model as shipped.pt, the tiny one as tiny.pt."""
    shutil.copyfile(SHIPPED, tmp_path / "shipped.pt")
    shutil.copyfile(tiny, tmp_path / "tiny.pt")
    return tmp_path


@contextlib.contextmanager
def folder_client(folder, default=None, poll=0.2):
    models = ModelsDir(str(folder), default=default, poll=poll)  # loads as app.py --models_dir does
    models.sync()
    with TestClient(create_app(None, models=models)) as client:
        yield client


def expected(path, paths):
    """What Predictor reads in the images at `paths` with the model at `path`: [(text, confidence)]."""
    predictor = load(path)
    texts, confidences, _ = predictor.predict_arrays(np.stack([predictor.load(p) for p in paths]))
    return list(zip(texts, confidences))


# --- several models by name --------------------------------------------------------------------------------

def test_models_are_listed_and_read_by_name(folder, tiny, images):
    paths, raws = images
    with folder_client(folder) as c:
        answer = c.get("/api/models").json()
        assert [m["name"] for m in answer["models"]] == ["shipped", "tiny"]
        assert answer["default"] is None and answer["refused"] == [] and answer["swaps"] == 0
        shipped, small = answer["models"]
        assert small["file"] == "tiny.pt" and small["model"] == "cnn" and small["head"] == "fixed"
        assert small["charset"] == DIGITS and small["answer"] == "none" and small["runtime"] == "torch"
        assert shipped["file"] == "shipped.pt" and shipped["model"] == "cnn_ctc" and shipped["head"] == "ctc"
        assert {"loaded", "version"} <= set(small) and small["version"] == 1
        assert c.get("/healthz").json() == {"status": "ok", "model": None, "models": ["shipped", "tiny"]}
        for name, path in (("tiny", tiny), ("shipped", SHIPPED)):
            for raw, (text, confidence) in zip(raws, expected(path, paths)):
                got = c.post(f"/api/predict?model={name}", **multipart(raw)).json()
                assert got["text"] == text and got["confidence"] == pytest.approx(confidence, abs=1e-3)
            info = c.get(f"/api/model?model={name}").json()
            assert info["checkpoint"] == f"{name}.pt" and info["answer"] == "none"
        batch = c.post("/api/predict/batch?model=tiny", files=[("files", ("a.png", r, "image/png")) for r in raws])
        assert [r["text"] for r in batch.json()["results"]] == [t for t, _ in expected(tiny, paths)]
        # several models and no default: a request must name one
        refused = c.post("/api/predict", **multipart(raws[0]))
        assert refused.status_code == 400 and "shipped, tiny" in refused.json()["error"]


def test_an_unknown_model_is_a_404_naming_those_served(folder, images):
    raw = images[1][0]
    with folder_client(folder) as c:
        for response in (c.post("/api/predict?model=nope", **multipart(raw)),
                         c.post("/api/predict/batch?model=nope", files=[("files", ("a.png", raw, "image/png"))]),
                         c.get("/api/model?model=nope")):
            assert response.status_code == 404
            assert response.json() == {"error": "no model named 'nope'; the models served are: shipped, tiny"}


def test_the_default_model_reads_requests_that_name_none(folder, tiny, images):
    paths, raws = images
    [(text, _)] = expected(tiny, paths[:1])
    with folder_client(folder, default="tiny") as c:
        assert c.get("/api/models").json()["default"] == "tiny"
        assert c.post("/api/predict", **multipart(raws[0])).json()["text"] == text
        assert c.get("/api/model").json()["head"] == "fixed"
    os.remove(folder / "shipped.pt")
    with folder_client(folder) as c:  # the only one is the default
        assert c.get("/api/models").json()["default"] == "tiny"
        assert c.post("/api/predict", **multipart(raws[0])).json()["text"] == text


def test_files_added_replaced_and_removed_while_serving_are_picked_up(folder, tiny, images, caplog):
    raw = images[1][0]
    with caplog.at_level(logging.INFO, logger="serve.models"), folder_client(folder) as c:
        copy_in(tiny, folder, "extra.pt")  # added
        wait_for(lambda: "extra" in listed(c), "extra.pt listed")
        assert c.post("/api/predict?model=extra", **multipart(raw)).status_code == 200
        assert "loaded extra: extra.pt" in caplog.text

        models = c.app.state.models
        lease = models.lease("extra")  # a request in flight on version 1
        old = lease.served
        copy_in(SHIPPED, folder, "extra.pt")  # replaced
        new = wait_for(lambda: listed(c)["extra"]["version"] == 2 and listed(c)["extra"], "extra.pt replaced")
        assert new["model"] == "cnn_ctc" and c.get("/api/models").json()["swaps"] == 2
        assert old.model is not None and old.model.predict([old.model.predictor.load(images[0][1])])  # still usable
        answer = c.post("/api/predict?model=extra", **multipart(raw)).json()
        assert answer["text"] == expected(SHIPPED, images[0][:1])[0][0]
        with lease:
            pass
        assert old.model is None and "unloaded extra (extra.pt, version 1)" in caplog.text  # after its request

        os.remove(folder / "extra.pt")  # removed
        wait_for(lambda: "extra" not in listed(c), "extra.pt unlisted")
        assert c.post("/api/predict?model=extra", **multipart(raw)).status_code == 404
        assert "removed extra: extra.pt is gone" in caplog.text
        assert c.post("/api/predict?model=tiny", **multipart(raw)).status_code == 200  # the others serve on


def test_a_broken_file_never_replaces_a_working_model(folder, tiny, images, caplog):
    raw = images[1][0]
    data = open(tiny, "rb").read()
    with caplog.at_level(logging.INFO, logger="serve.models"), folder_client(folder) as c:
        good = c.post("/api/predict?model=tiny", **multipart(raw)).json()
        for broken in (data[: len(data) // 2], os.urandom(50_000)):  # a torn copy; random bytes
            caplog.clear()
            (folder / ".tiny.pt.part").write_bytes(broken)
            os.replace(folder / ".tiny.pt.part", folder / "tiny.pt")
            wait_for(lambda: "refused tiny.pt: " in caplog.text, "tiny.pt refused")
            assert "tiny keeps serving tiny.pt (version 1)" in caplog.text
            assert "tiny.pt" in c.get("/api/models").json()["refused"]
            assert listed(c)["tiny"]["version"] == 1
            assert c.post("/api/predict?model=tiny", **multipart(raw)).json() == good  # the old one serves on
        (folder / "junk.onnx").write_bytes(os.urandom(2000))  # a broken file of a new name: not served
        (folder / "half.pt").write_bytes(data[:4096])
        wait_for(lambda: {"junk.onnx", "half.pt"} <= set(c.get("/api/models").json()["refused"]), "both refused")
        assert "refused junk.onnx: " in caplog.text and "junk is not served" in caplog.text
        assert "refused half.pt: " in caplog.text and set(listed(c)) == {"shipped", "tiny"}
        assert c.post("/api/predict?model=junk", **multipart(raw)).status_code == 404
        copy_in(tiny, folder, "tiny.pt")  # fixed: tried again, served
        wait_for(lambda: listed(c)["tiny"]["version"] == 2, "tiny.pt loaded again")
        assert "tiny.pt" not in c.get("/api/models").json()["refused"]


def test_an_empty_folder_serves_once_a_model_arrives(tmp_path, tiny, images):
    with folder_client(tmp_path) as c:
        answer = c.post("/api/predict", **multipart(images[1][0]))
        assert answer.status_code == 503 and "no model is loaded" in answer.json()["error"]
        copy_in(tiny, tmp_path, "first.pt")
        wait_for(lambda: "first" in listed(c), "first.pt listed")
        assert c.post("/api/predict", **multipart(images[1][0])).status_code == 200


def test_models_dir_command_line_is_checked(tmp_path, monkeypatch):
    import app as webapp
    import config

    monkeypatch.setattr(sys, "argv", ["app.py", f"--models_dir={tmp_path / 'none'}"])
    with pytest.raises(config.ConfigError, match="no such folder"):
        webapp.main()
    monkeypatch.setattr(sys, "argv", ["app.py", "x.pt", f"--models_dir={tmp_path}"])
    with pytest.raises(config.ConfigError, match="name no model file"):
        webapp.main()
    monkeypatch.setattr(sys, "argv", ["app.py", f"--models_dir={tmp_path}", "--default_model=nope"])
    with pytest.raises(config.ConfigError, match="--default_model=nope: .* has no nope.pt"):
        webapp.main()


# --- answers and unsure readings ---------------------------------------------------------------------------

def test_readings_give_what_reading_gives(tiny, images):
    paths, raws = images
    readings = expected(tiny, paths)
    with TestClient(create_app(load(tiny))) as c:
        plain = c.post("/api/predict", **multipart(raws[0])).json()
        assert set(plain) == {"text", "confidence", "chars"}  # ANSWER none, MIN_CONFIDENCE 0: as before
        assert c.get("/api/model").json()["answer"] == "none"
        for threshold in (0.0, 0.3, 1.0):
            for raw, (text, confidence) in zip(raws, readings):
                got = c.post(f"/api/predict?min_confidence={threshold}", **multipart(raw)).json()
                assert same(got, reading(text, confidence, "none", threshold)) and "chars" in got
            batch = c.post(f"/api/predict/batch?min_confidence={threshold}",
                           files=[("files", (f"{i}.png", r, "image/png")) for i, r in enumerate(raws)]).json()
            assert all(same(r, reading(t, p, "none", threshold)) for r, (t, p) in zip(batch["results"], readings))
        assert c.post("/api/predict?min_confidence=1", **multipart(raws[0])).json()["unsure"] is True
        for bad in ("1.5", "-0.1", "nan", "high"):
            answer = c.post(f"/api/predict?min_confidence={bad}", **multipart(raws[0]))
            assert answer.status_code == 422 and "min_confidence" in answer.json()["error"]
            answer = c.post(f"/api/predict/batch?min_confidence={bad}", files=[("files", ("a.png", raws[0]))])
            assert answer.status_code == 422 and "min_confidence" in answer.json()["error"]


def test_server_min_confidence_marks_readings_unless_a_request_says_otherwise(tiny, images):
    paths, raws = images
    readings = expected(tiny, paths)
    with TestClient(create_app(load(tiny), min_confidence=0.999)) as c:
        assert c.get("/api/model").json()["min_confidence"] == 0.999
        for raw, (text, confidence) in zip(raws, readings):
            got = c.post("/api/predict", **multipart(raw)).json()
            assert got["unsure"] == (confidence < 0.999) and same(got, reading(text, confidence, "none", 0.999))
            assert "unsure" not in c.post("/api/predict?min_confidence=0", **multipart(raw)).json()


def test_a_model_for_sums_gives_the_answer(arith, images, monkeypatch):
    paths, raws = images
    predictor = load(arith)
    assert predictor.answer == "arith"
    with TestClient(create_app(predictor)) as c:
        assert c.get("/api/model").json()["answer"] == "arith"
        got = c.post("/api/predict", **multipart(raws[0])).json()  # four digits: not a sum
        assert got["answer"] is None and got["answer_error"] == "no operator" and "chars" in got
        real = predictor.predict_with_candidates

        def sums(arrays, k):  # the model "reads" sums: what the API makes of them
            texts, confidences, chars, candidates = real(arrays, k)
            return ["12+3", "7x6", "9/0", "1+2+"][:len(texts)], confidences, chars, candidates

        monkeypatch.setattr(predictor, "predict_with_candidates", sums)
        got = c.post("/api/predict", **multipart(raws[0])).json()
        assert (got["text"], got["answer"]) == ("12+3", "15") and "answer_error" not in got
        batch = c.post("/api/predict/batch?min_confidence=0.5",
                       files=[("files", (f"{i}.png", r, "image/png")) for i, r in enumerate(raws)]).json()["results"]
        assert [(r["text"], r["answer"]) for r in batch] == [("12+3", "15"), ("7x6", "42"), ("9/0", None)]
        assert "division by zero" in batch[2]["answer_error"] and all("unsure" in r for r in batch)


def test_models_dir_lists_the_answer_kind(tmp_path, arith, images):
    shutil.copyfile(arith, tmp_path / "sums.pt")
    with folder_client(tmp_path) as c:
        assert listed(c)["sums"]["answer"] == "arith"
        got = c.post("/api/predict?model=sums", **multipart(images[1][0])).json()
        assert "answer" in got and got["answer_error"] == "no operator"


# --- a real server: a model file replaced 10 times under load ------------------------------------------------

@contextlib.contextmanager
def serve_folder(folder, log_path, *options):
    """app.py --models_dir=folder on a free 127.0.0.1 port; yields its base URL."""
    with serve(None, log_path, f"--models_dir={folder}", *options) as (url, _):
        yield url


def get_json(url):
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())


@pytest.mark.slow
def test_a_model_replaced_ten_times_under_load_fails_no_request(folder, tiny, images, tmp_path):
    log_path = tmp_path / "server.log"
    raws = images[1]
    with serve_folder(folder, log_path, "--default_model=tiny") as url:
        statuses, texts, stop = [], [], threading.Event()

        def client(model):
            i = 0
            while not stop.is_set():
                status, answer = post_file(f"{url}/api/predict?model={model}", raws[i % len(raws)])
                statuses.append(status)
                texts.append(answer.get("text") if status == 200 else answer)
                i += 1

        workers = [threading.Thread(target=client, args=(m,)) for m in ("tiny", "tiny", "shipped")]
        for w in workers:
            w.start()
        try:
            for n in range(10):  # tiny.pt becomes the shipped model, then the tiny one again, ...
                copy_in(SHIPPED if n % 2 == 0 else tiny, folder, "tiny.pt")
                wait_for(lambda: {m["name"]: m for m in get_json(url + "/api/models")["models"]}["tiny"]["version"]
                         == n + 2, f"replacement {n + 1} picked up")
            during = len(statuses)
        finally:
            stop.set()
            for w in workers:
                w.join(timeout=30)
        assert during > 20 and statuses.count(200) == len(statuses), [t for t in texts if not isinstance(t, str)][:3]
        listing = get_json(url + "/api/models")
        assert listing["swaps"] == 10 and listing["refused"] == [] and listing["default"] == "tiny"
        assert {m["name"]: m["model"] for m in listing["models"]} == {"shipped": "cnn_ctc", "tiny": "cnn"}

        copy_in(tiny, folder, "added.pt")  # added and removed on a real server
        wait_for(lambda: "added" in [m["name"] for m in get_json(url + "/api/models")["models"]], "added.pt listed")
        assert post_file(f"{url}/api/predict?model=added", raws[0])[0] == 200
        os.remove(folder / "added.pt")
        wait_for(lambda: "added" not in [m["name"] for m in get_json(url + "/api/models")["models"]], "removed")
        assert post_file(f"{url}/api/predict?model=added", raws[0])[0] == 404
    log = open(log_path).read()
    assert log.count("replaced tiny: tiny.pt") == 10 and "unloaded tiny (tiny.pt, version 10)" in log
    assert "Traceback" not in log and "refused" not in log
