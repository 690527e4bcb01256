"""ONNX export (export.py) and onnxruntime inference (Predictor on a .onnx): the same texts and
probabilities as torch, any batch size, the metadata, the scripts and the web app on an .onnx; and the
default model (weights/default.pt) loading whatever config.py says."""
import os
import shutil
import sys

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from core.checkpoint import CheckpointError, default_checkpoint, load_checkpoint, save_checkpoint
from core.generate import generate
from core.inference import Predictor
import config
from core import data
import models
import predict
from conftest import DIGITS, run_script, tmp_paths
from serve import create_app

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A cnn trained briefly by train.py on 4-digit captchas, exported by export.py; and its 200 test images."""
    base = tmp_path_factory.mktemp("export")
    generate(str(base / "train"), 600, 41, DIGITS, 4, 160, 60, processes=1, quiet=True)
    generate(str(base / "test"), 200, 42, DIGITS, 4, 160, 60, processes=1, quiet=True)
    run_script("train.py", *tmp_paths(base), f"--charset={DIGITS}", "--epochs=4", "--run=t", "--batch_size=32",
               "--show=0", "--threads=1", "--model=cnn", "--channels=1", "--image_width=160", "--image_height=60",
               "--augment=0", "--label_smoothing=0")
    pt = str(base / "weights" / "t_best.pt")
    out = run_script("export.py", pt, "--threads=1").stdout
    ds = data.load_folder(str(base / "test"), data.Codec(DIGITS, 4), 160, 60, 1)
    return dict(base=base, pt=pt, onnx=str(base / "weights" / "t_best.onnx"), out=out, images=ds.images,
                paths=ds.paths)


@pytest.fixture
def run_main(monkeypatch, capsys):
    """A script's main() in this process, as `python SCRIPT.py ARGS` on one thread would run; returns its stdout.

    Configuration changes go through monkeypatch (not --NAME=value, which would stay set for later tests)."""
    def run(module, *args):
        monkeypatch.setattr(sys, "argv", [f"{module.__name__}.py", *args])
        monkeypatch.setattr(config, "THREADS", 1)
        capsys.readouterr()
        threads = torch.get_num_threads()
        try:
            module.main()
        finally:
            torch.set_num_threads(threads)
        return capsys.readouterr().out

    return run


def both(model):
    return Predictor(model["pt"], threads=1), Predictor(model["onnx"], threads=1)


def assert_same(pt, ox, images, atol=1e-4):
    """Same texts, and probabilities within atol, from the torch and the onnxruntime predictor."""
    torch_scores, onnx_scores = pt.scores(images), ox.scores(images)
    assert onnx_scores.shape == torch_scores.shape
    assert ox.decode(onnx_scores, ox.codec)[0] == pt.decode(torch_scores, pt.codec)[0]
    torch.testing.assert_close(onnx_scores.softmax(-1), torch_scores.softmax(-1), atol=atol, rtol=0)


@pytest.mark.slow
def test_export_writes_one_checked_file(model):
    assert "check: onnxruntime vs torch on 8 images: same texts" in model["out"], model["out"]
    assert [f for f in os.listdir(os.path.dirname(model["onnx"])) if not f.endswith(".pt")] == ["t_best.onnx"]


@pytest.mark.slow
def test_onnxruntime_matches_torch_on_200_images(model):
    pt, ox = both(model)
    assert len(model["images"]) == 200
    assert_same(pt, ox, model["images"])
    texts, confs, chars = ox.predict_arrays(model["images"])
    truths = [os.path.basename(p)[:4] for p in model["paths"]]
    assert sum(t == p for t, p in zip(truths, texts)) > 0  # it was trained: some readings are right
    np.testing.assert_allclose(confs, pt.predict_arrays(model["images"])[1], atol=1e-4)


@pytest.mark.slow
def test_any_batch_size(model):
    pt, ox = both(model)
    for batch in (1, 7):
        assert_same(pt, ox, model["images"][:batch])
    whole = ox.scores(model["images"][:7])
    torch.testing.assert_close(torch.cat([ox.scores(model["images"][i:i + 1]) for i in range(7)]), whole,
                               atol=1e-5, rtol=0)


@pytest.mark.slow
def test_metadata_describes_the_model(model):
    ckpt = load_checkpoint(model["pt"])
    meta = {p.key: p.value for p in onnx.load(model["onnx"]).metadata_props}
    assert meta["charset"] == DIGITS and meta["head"] == "fixed" and meta["model_name"] == "cnn"
    assert (meta["length"], meta["image_width"], meta["image_height"], meta["channels"]) == ("[4, 4]", "160", "60", "1")
    assert float(meta["accuracy"]) == ckpt["accuracy"] and int(meta["epoch"]) == ckpt["epoch"]
    described = Predictor(model["onnx"]).ckpt
    for key in ("model_name", "head", "charset", "length", "case_sensitive", "image_size", "channels", "build_args",
                "accuracy", "temperature"):  # the temperature: .onnx confidences are read as the .pt's
        assert described[key] == ckpt[key], key


@pytest.mark.slow
def test_predict_and_test_scripts_read_onnx_like_pt(model, run_main):
    images = model["paths"][:5]
    with_onnx = run_script("predict.py", model["onnx"], *images, "--threads=1").stdout  # as a user runs it
    assert with_onnx == run_main(predict, model["pt"], *images) and with_onnx.count("\n") == 5
    folders = [f"--test_dir={model['base'] / 'test'}", f"--cache_dir={model['base'] / 'cache'}", "--threads=1"]
    reports = [run_script("test.py", path, *folders).stdout for path in (model["pt"], model["onnx"])]
    assert "sequence accuracy" in reports[1] and "t_best.onnx (cnn, epoch 4 of its run)" in reports[1]
    assert reports[1].replace("t_best.onnx", "t_best.pt") == reports[0]


@pytest.mark.slow
def test_app_serves_onnx_like_pt(model):
    answers, infos = [], []
    raw = open(model["paths"][0], "rb").read()
    for path in (model["pt"], model["onnx"]):
        with TestClient(create_app(Predictor(path, threads=1))) as client:
            answers.append(client.post("/api/predict", files={"file": ("a.png", raw, "image/png")}).json())
            infos.append(client.get("/api/model").json())
    assert answers[1]["text"] == answers[0]["text"]
    assert abs(answers[1]["confidence"] - answers[0]["confidence"]) < 1e-3
    assert [c["candidates"][0]["char"] for c in answers[1]["chars"]] == [c["char"] for c in answers[0]["chars"]]
    assert (infos[0]["runtime"], infos[1]["runtime"]) == ("torch", "onnxruntime")
    assert infos[1]["checkpoint"] == "t_best.onnx"
    for info in infos:
        del info["runtime"], info["checkpoint"]
    assert infos[1] == infos[0]


@pytest.mark.slow
@pytest.mark.parametrize("sequence", ["lstm"])  # "gru" and "none" export as well (docs/onnx.md); each costs seconds
def test_ctc_model_exports_and_matches(model, tmp_path, sequence):
    """An untrained CTC model with spread logits (the parity of the graph is what counts here)."""
    import export  # export_onnx and bench live in the command
    codec = data.Codec(DIGITS, 4)
    build_args = dict(name="cnn_ctc", in_channels=1, num_classes=codec.ctc_classes, positions=4, height=60,
                      width=160, sequence=sequence, hidden=32)
    torch.manual_seed(0)
    net = models.build_model(**build_args).eval()
    with torch.no_grad():  # near-uniform outputs would read nothing but blanks and near ties
        net.head.fc.weight.mul_(30)
    pt, onnx_path = str(tmp_path / "ctc.pt"), str(tmp_path / "ctc.onnx")
    save_checkpoint(pt, net, build_args, codec)
    meta = export.export_onnx(pt, onnx_path)
    assert meta["head"] == "ctc"
    pt_predictor, onnx_predictor = Predictor(pt), Predictor(onnx_path, threads=1)
    images = model["images"][:20]
    assert any(pt_predictor.predict_arrays(images)[0])  # it reads something: the comparison is not of blanks
    assert_same(pt_predictor, onnx_predictor, images)
    assert_same(pt_predictor, onnx_predictor, images[:1])


@pytest.mark.slow
def test_default_model_loads_without_config(model, tmp_path, run_main, monkeypatch):
    images = model["paths"][:5]
    expected = run_main(predict, model["pt"], *images)
    weights = tmp_path / "weights"
    weights.mkdir()
    shutil.copy(model["pt"], weights / "default.pt")  # no *_best.pt: the shipped model is the default
    # config.py now says something else entirely: the checkpoint alone decides
    for name, value in dict(WEIGHTS_DIR=str(weights), MODEL="resnet18_ctc", CHARSET="XYZ", LENGTH=(2, 6),
                            IMAGE_WIDTH=90, IMAGE_HEIGHT=30, CHANNELS=3, RUN="new").items():
        monkeypatch.setattr(config, name, value)
    assert default_checkpoint() == str(weights / "default.pt")
    assert run_main(predict, *images) == expected


def test_no_model_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setattr(config, "WEIGHTS_DIR", str(tmp_path))
    monkeypatch.setattr(sys, "argv", ["predict.py", "image.png"])
    with pytest.raises(CheckpointError, match="python train.py"):
        predict.main()
    (tmp_path / "junk.onnx").write_bytes(b"\x08\x01")  # a valid protobuf, but no graph and no metadata
    with pytest.raises(CheckpointError, match="junk.onnx"):
        Predictor(str(tmp_path / "junk.onnx"))


@pytest.mark.slow
def test_bench_times_both_backends(model):
    import export  # export_onnx and bench live in the command
    results = export.bench(model["pt"], model["onnx"], runs=5, warmup=1)
    assert set(results) == {"torch", "onnxruntime"}
    assert all(0 < median <= p90 for median, p90 in results.values())


@pytest.mark.slow
def test_export_never_writes_over_its_input(model, tmp_path, run_main):
    """--out naming the checkpoint itself (by any path, link or hard link) or any non-.onnx file is refused
    before anything is written."""
    import export  # its command-line main
    pt = tmp_path / "m.pt"
    shutil.copy(model["pt"], pt)
    before = pt.read_bytes()
    (tmp_path / "link.onnx").symlink_to(pt)
    os.link(pt, tmp_path / "hard.onnx")
    for out, words in ((pt, "is the checkpoint being exported"), (tmp_path / "." / "m.pt", "is the checkpoint"),
                       (tmp_path / "link.onnx", "is the checkpoint"), (tmp_path / "hard.onnx", "is the checkpoint"),
                       (tmp_path / "other.pt", "must end in .onnx")):
        with pytest.raises(config.ConfigError, match=words):
            run_main(export, str(pt), f"--out={out}")
    assert pt.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["hard.onnx", "link.onnx", "m.pt"]
    out = run_script("export.py", str(pt), f"--out={pt}", check=False)
    assert out.returncode == 1 and out.stdout.count("\n") == 1 and out.stdout.startswith(f"error: --out={pt} is")
    assert pt.read_bytes() == before


@pytest.mark.slow
def test_onnx_file_is_replaced_atomically(model, tmp_path, monkeypatch):
    """The exported file appears whole or not at all: a failed write leaves the previous file and no temp file."""
    import export  # export_onnx and bench live in the command
    out = tmp_path / "m.onnx"
    out.write_bytes(b"previous model")
    real_replace = os.replace

    def full_disk(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", full_disk)
    with pytest.raises(OSError, match="No space"):
        export.export_onnx(model["pt"], str(out))
    assert out.read_bytes() == b"previous model" and os.listdir(tmp_path) == ["m.onnx"]
    monkeypatch.setattr(os, "replace", real_replace)
    export.export_onnx(model["pt"], str(out))
    assert os.listdir(tmp_path) == ["m.onnx"] and Predictor(str(out)).ckpt["model_name"] == "cnn"


@pytest.mark.slow
def test_int8_export_reads_like_the_float_model_from_a_smaller_file(model, tmp_path):
    out = tmp_path / "t.int8.onnx"
    said = run_script("export.py", model["pt"], "--int8=1", f"--calibrate={model['base']}/train", f"--out={out}",
                      "--threads=1").stdout
    assert f"-> {out}:" in said and "8-bit" in said, said
    assert f"check: 8-bit vs float on the 200 calibration images of {model['base']}/train" in said
    assert os.listdir(tmp_path) == ["t.int8.onnx"]  # the float graph and the quantizer's files are removed
    assert os.path.getsize(out) < 0.5 * os.path.getsize(model["onnx"])
    ox, q = Predictor(model["onnx"], threads=1), Predictor(str(out), threads=1)
    assert (q.codec.charset, q.height, q.width, q.channels) == (ox.codec.charset, 60, 160, 1)
    truths = [os.path.basename(p).split("_")[0] for p in model["paths"]]
    right = [sum(t == r for t, r in zip(truths, p.read(model["images"])[0])) for p in (ox, q)]
    assert abs(right[0] - right[1]) <= 3, right  # of the 200 test images (a model trained for seconds)


@pytest.mark.slow
def test_int8_export_of_the_shipped_model_reads_what_it_reads(tmp_path):
    charset = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    generate(str(tmp_path / "calibrate"), 100, 51, charset, 4, 160, 60, processes=1, quiet=True)
    generate(str(tmp_path / "test"), 200, 52, charset, 4, 160, 60, processes=1, quiet=True)
    shipped = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "weights", "default.pt")
    out = tmp_path / "default.int8.onnx"
    said = run_script("export.py", shipped, "--int8=1", f"--calibrate={tmp_path}/calibrate", f"--out={out}",
                      "--threads=1").stdout
    assert "warning" not in said, said
    ds = data.load_folder(str(tmp_path / "test"), data.Codec(charset, 4), 160, 60, 1)
    float_texts = Predictor(shipped, threads=1).read(ds.images)[0]
    int8_texts = Predictor(str(out), threads=1).read(ds.images)[0]
    assert sum(a == b for a, b in zip(float_texts, int8_texts)) >= 198, said  # of 200 fresh captchas


@pytest.mark.slow
def test_int8_export_needs_images_to_calibrate_on(model, tmp_path):
    p = run_script("export.py", model["pt"], "--int8=1", f"--train_dir={tmp_path}/none", f"--out={tmp_path}/q.onnx",
                   check=False)
    assert p.returncode != 0 and "--calibrate=FOLDER" in p.stdout and "Traceback" not in p.stdout, p.stdout
    assert not os.listdir(tmp_path)
    (tmp_path / "empty").mkdir()
    p = run_script("export.py", model["pt"], "--int8=1", f"--calibrate={tmp_path}/empty", check=False)
    assert p.returncode != 0 and "no images there" in p.stdout and "Traceback" not in p.stdout, p.stdout
    p = run_script("export.py", model["pt"], "--int8=1", "--format=ddddocr", check=False)
    assert p.returncode != 0 and "--int8=1 is for the default format" in p.stdout


def test_calibration_names_the_files_it_leaves_out(tmp_path, capsys):
    """--int8=1 --calibrate=F: a file that does not read as an image is named in a warning, not passed over
    quietly; the images are calibrated on."""
    import export
    from core import data
    from PIL import Image
    Image.new("L", (100, 40), 200).save(tmp_path / "good.png")
    (tmp_path / "broken.png").write_bytes(b"not an image")

    class Reader:
        def load(self, path):
            return data.load_image(path, 100, 40, 1)
    images = export.calibration_images(str(tmp_path), Reader())
    assert images.shape == (1, 40, 100, 1)
    warning = capsys.readouterr().out
    assert "left out 1 file(s)" in warning and "broken.png (not an image file" in warning
