"""export.py --format=ddddocr: the files ddddocr 1.6.1 loads as a custom model read the same texts in ddddocr (its
own preprocessing and decoding) as the project's Predictor: the shipped CTC model and an untrained fixed-length
colour model on generated captchas, and the CTC decoding graph (the search for an allowed length included)
against models.decoding on random scores. Nothing is trained."""
import glob
import json
import os
import sys

import numpy as np
import pytest
import torch

import config
import export
import models
from conftest import ROOT, run_script
from core import data
from core import ddddocr_format as fmt
from core.checkpoint import save_checkpoint
from core.generate import generate
from core.inference import Predictor
from models import decoding

pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
ddddocr = pytest.importorskip("ddddocr", reason="ddddocr is an optional extra: pip install -r requirements-ddddocr.txt")

CHARSET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
DEFAULT = os.path.join(ROOT, "weights", "default.pt")

pytestmark = pytest.mark.slow  # exports and reads through ddddocr: tens of seconds


@pytest.fixture(scope="module")
def captchas(tmp_path_factory):
    """20 seeded captchas of 4 characters, 160x60: the files' paths."""
    folder = tmp_path_factory.mktemp("ddddocr_captchas")
    generate(str(folder), 20, 91, CHARSET, 4, 160, 60, processes=1, quiet=True)
    return sorted(glob.glob(str(folder / "*.png")))


def ddddocr_reads(onnx_path, charsets_path, paths):
    ocr = ddddocr.DdddOcr(det=False, ocr=False, show_ad=False, import_onnx_path=str(onnx_path),
                          charsets_path=str(charsets_path))
    return [ocr.classification(open(p, "rb").read()) for p in paths]


def predictor_reads(checkpoint, paths):
    predictor = Predictor(checkpoint, "cpu", threads=1)
    return predictor.read(np.stack([predictor.load(p) for p in paths]))[0]


def test_default_model_reads_the_same_in_ddddocr(tmp_path, captchas):
    out = run_script("export.py", DEFAULT, "--format=ddddocr", f"--out={tmp_path}/m.onnx", "--threads=1").stdout
    onnx_path, charsets_path = tmp_path / "m.onnx", tmp_path / "m.charsets.json"
    assert "same texts" in out and f"import_onnx_path={str(onnx_path)!r}" in out, out
    info = json.loads(charsets_path.read_text(encoding="utf-8"))
    assert info == {"charset": [""] + list(CHARSET), "word": False, "image": [160, 60], "channel": 1}
    ours = predictor_reads(DEFAULT, captchas)
    assert ddddocr_reads(onnx_path, charsets_path, captchas) == ours
    truth = [os.path.basename(p).split("_")[0] for p in captchas]
    assert sum(a == b for a, b in zip(ours, truth)) >= 18  # the shipped model reads these captchas


def test_fixed_length_colour_model_reads_the_same_in_ddddocr(tmp_path, captchas):
    """An untrained cnn (fixed head, labels of 3-5 digits: a padding class; 3 channels): doubled characters and
    padding must survive ddddocr's CTC collapse."""
    torch.manual_seed(0)
    codec = data.Codec("0123456789", (3, 5))
    build = dict(name="cnn", in_channels=3, num_classes=codec.fixed_classes, positions=5, height=60, width=160)
    model = models.build_model(**build).eval()
    last = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():
        last.weight.mul_(20)  # readings far from ties
        assert last.out_features == 5 * codec.fixed_classes  # (positions, classes), position-major
        bias = last.bias.view(5, codec.fixed_classes)
        bias[:2, 7] += 30.0  # positions 0 and 1 read 7: a doubled character
        bias[4, codec.pad] += 30.0  # the last position reads padding: 4 characters
    save_checkpoint(str(tmp_path / "fixed.pt"), model, build, codec)
    ckpt = torch.load(tmp_path / "fixed.pt", weights_only=True)
    onnx_path, charsets_path = fmt.output_paths(str(tmp_path / "fixed.onnx"))
    info = fmt.export(ckpt, model, onnx_path, charsets_path)
    assert info["channel"] == 3 and info["charset"] == [""] + list("0123456789")
    ours = predictor_reads(str(tmp_path / "fixed.pt"), captchas)
    theirs = ddddocr_reads(onnx_path, charsets_path, captchas)
    assert theirs == ours
    assert all(len(t) == 4 and t.startswith("77") for t in ours), ours


def decoder_session(steps, classes, lo, hi):
    """ctc_nodes alone as an ONNX model: logits (B, T, K) -> scores."""
    import onnx
    from onnx import TensorProto, helper

    g = fmt._Nodes()
    scores = fmt.ctc_nodes(g, "logits", steps, classes, lo, hi)
    graph = helper.make_graph(g.nodes, "decoder",
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["B", steps, classes])],
                              [helper.make_tensor_value_info(scores, TensorProto.FLOAT, ["B", steps, classes])],
                              g.initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    onnx.checker.check_model(model)
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("length", [(4, 4), (4, 6), (2, 3)])
def test_ctc_graph_reads_what_the_project_decoder_reads(length):
    """Random scores, many of them with greedy readings of a length the labels never have: the graph's argmax
    per frame, CTC-collapsed as ddddocr does, gives models.decoding.ctc_decode's texts."""
    codec = data.Codec("0123456789", length)
    session = decoder_session(20, 11, *length)
    rng = np.random.default_rng(1)
    logits = (rng.normal(size=(400, 20, 11)) * 2).astype(np.float32)
    logits[:, :, 0] += rng.uniform(-1, 4, size=(400, 1)).astype(np.float32)  # from few to many blanks
    want = decoding.ctc_decode(torch.from_numpy(logits), codec)[0]
    scores = session.run(None, {"logits": logits})[0]
    charset = [""] + list(codec.charset)
    got = [fmt.ddddocr_text(s, charset) for s in scores]
    greedy = [len(decoding.greedy_path(ids)) for ids in logits.argmax(-1).tolist()]
    assert sum(not length[0] <= n <= length[1] for n in greedy) > 50  # the search was needed, often
    assert got == want
    # each frame keeps the model's set of probabilities (the path's class and the likeliest swap places)
    log_probs = torch.from_numpy(logits).log_softmax(-1).numpy()
    np.testing.assert_allclose(np.sort(scores, -1), np.sort(log_probs, -1), atol=1e-4)


def test_unsupported_cases_say_so_in_one_line(tmp_path, monkeypatch):
    with pytest.raises(fmt.UnsupportedModel, match="head 'seq2seq'"):
        fmt.check_supported({"head": "seq2seq", "channels": 1, "charset": "0", "length": [1, 1]})
    for args, message in (([str(tmp_path / "m.onnx"), "--format=ddddocr"], "exports a checkpoint"),
                          ([DEFAULT, "--format=tflite"], "onnx .* or ddddocr"),
                          ([DEFAULT, "--format=ddddocr", "--bench=1"], "leave it out")):
        monkeypatch.setattr(sys, "argv", ["export.py", *args])
        with pytest.raises(config.ConfigError, match=message) as e:
            export.main()
        assert "\n" not in str(e.value)
