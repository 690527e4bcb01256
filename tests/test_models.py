import importlib
import os

import numpy as np
import pytest
import torch

from core.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from core.generate import generate
from core.inference import Predictor
import config
from core import data
import models


def args(name):
    codec = data.Codec("0123456789", 4)
    classes = models.head(name).num_classes(codec)
    return dict(name=name, in_channels=1, num_classes=classes, positions=4, height=60, width=160), codec


# every registered model x head x trick: tests/test_zoo.py; here the two the foundation ships, at full size
@pytest.mark.parametrize("name", ["cnn", "resnet18"])
def test_model_shape_finite_backward(name):
    torch.manual_seed(0)
    build_args, codec = args(name)
    model = models.build_model(**build_args)
    x = torch.randn(3, 1, 60, 160)
    logits = model(x)
    assert logits.dim() == 3 and logits.shape[0] == 3 and logits.shape[2] == build_args["num_classes"]
    head = models.head(name)
    if head.kind == "fixed":
        assert logits.shape[1] == 4
    assert torch.isfinite(logits).all()
    labels = torch.randint(0, 10, (3, 4))
    loss = head.loss(logits, labels, torch.full((3,), 4))
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    texts, confs, chars = head.decode(logits, codec)
    assert len(texts) == 3 and all(0 <= c <= 1 for c in confs)


def test_unknown_model_names_the_registered_ones():
    with pytest.raises(KeyError, match="registered: .*cnn"):
        models.build_model("nope", 1, 10, 4, 60, 160)


def test_checkpoint_round_trip_without_config(tmp_path):
    build_args, codec = args("cnn")
    model = models.build_model(**build_args).eval()
    path = str(tmp_path / "m.pt")
    save_checkpoint(path, model, build_args, codec, epoch=3, accuracy=0.5, config=config.as_dict())
    config.MODEL, config.CHARSET, config.IMAGE_WIDTH = "resnet18", "XYZ", 99  # config changed since
    try:
        p = Predictor(path, fuse=False)  # the model as saved (fuse=True folds BatchNorm into it)
    finally:
        importlib.reload(config)
    assert p.codec.charset == "0123456789" and (p.height, p.width, p.channels) == (60, 160, 1)
    x = torch.randn(2, 1, 60, 160)
    with torch.no_grad():
        assert torch.equal(model(x), p.model(x))
    raw = torch.load(path, weights_only=True)
    assert not any(k.startswith(("module.", "_orig_mod.")) for k in raw["model"])
    assert not any(f.name.endswith(".tmp") for f in tmp_path.iterdir())


class Evil:
    def __reduce__(self):
        import os
        return (os.system, ("touch EVIL_RAN",))


def test_crafted_pickle_is_refused_without_running(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.save({"model": Evil(), "model_name": "cnn"}, "evil.pt")
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint("evil.pt")
    assert not (tmp_path / "EVIL_RAN").exists()


def test_truncated_checkpoint_gives_clear_error(tmp_path):
    build_args, codec = args("cnn")
    path = tmp_path / "m.pt"
    save_checkpoint(str(path), models.build_model(**build_args), build_args, codec)
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(str(path))


# --- head kinds, run names, neutral options ---------------------------------------------------------------------

@pytest.mark.parametrize("name", ["cnn", "cnn_ctc"])
def test_head_record_reads_what_it_decodes(name):
    """One record per head kind: its classes size the model, its loss trains it, and its candidates agree with
    its decoder (the first candidate of each character is the character read, the others follow best first)."""
    torch.manual_seed(0)
    build_args, codec = args(name)
    head = models.head(name)
    assert models.head(head.kind) is head and head.kind == models.head_of(name)
    assert set(head.options) <= set(models.MODELS[name].options) and head.describe().startswith(head.kind)
    model = models.build_model(**build_args).eval()
    with torch.no_grad():
        model.head.fc.weight.mul_(30)  # spread the logits so that something is read
        logits = model(torch.rand(4, 1, 60, 160) * 2 - 1)
    assert logits.shape[-1] == head.num_classes(codec)
    texts, confs, chars = head.decode(logits, codec)
    candidates = head.candidates(logits, codec, 3)
    assert any(texts)
    for text, probs, cands in zip(texts, chars, candidates):
        assert [c[0][0] for c in cands] == list(text)
        assert [c[0][1] for c in cands] == pytest.approx(probs, abs=1e-6)
        assert all(len(c) == 3 and len({ch for ch, _ in c}) == 3 for c in cands)
        assert all([p for _, p in c[1:]] == sorted((p for _, p in c[1:]), reverse=True) for c in cands)
    assert torch.isfinite(head.loss(logits, torch.randint(0, 10, (4, 4)), torch.full((4,), 4)))


def test_unknown_head_names_the_registered_models():
    with pytest.raises(KeyError, match="registered: .*cnn"):
        models.head("nope")


def test_describe_names_the_options_changed_from_neutral():
    assert models.describe("cnn_ctc", {}) == "cnn_ctc"
    assert models.describe("cnn_ctc", dict(models.OPTIONS)) == "cnn_ctc"
    options = dict(ibn=True, attention="cbam", pool="dual", bnneck=True, sequence="none", hidden=256, dropout=0.1)
    assert models.describe("resnet18_ctc", options) == "resnet18_ctc-ibn-cbam-dual-bnneck-dropout0.1"
    assert models.describe("cnn_ctc", dict(sequence="lstm", hidden=128)) == "cnn_ctc-lstm-hidden128"
    assert models.describe("cnn", dict(neck=128)) == "cnn-neck128"
    # crnn keeps the paper's BiLSTM where SEQUENCE is neutral: that is plain "crnn"
    assert models.describe("crnn", dict(sequence="none")) == models.describe("crnn", dict(sequence="lstm")) == "crnn"
    assert models.describe("crnn", dict(sequence="gru")) == "crnn-gru"


def test_sequence_is_off_by_default_but_crnn_keeps_its_lstm():
    assert models.OPTIONS["sequence"] == "none"
    assert models.model_options("cnn_ctc", {})["sequence"] == "none"
    assert models.model_options("crnn", {"SEQUENCE": "none"})["sequence"] == "lstm"
    assert models.model_options("crnn", {"SEQUENCE": "gru"})["sequence"] == "gru"
    build_args, _ = args("cnn_ctc")
    assert isinstance(models.build_model(**build_args).head.sequence, torch.nn.Identity)
    crnn_args, _ = args("crnn")
    assert isinstance(models.build_model(**crnn_args).head.sequence, models.heads.BiRNNSequence)


def test_checkpoints_that_store_their_sequence_load_as_saved(tmp_path):
    """A checkpoint stores every option, so a CTC model saved with an RNN still has it whatever the neutral value."""
    build_args, codec = args("cnn_ctc")
    build_args.update(sequence="lstm", hidden=32)
    model = models.build_model(**build_args).eval()
    path = str(tmp_path / "lstm.pt")
    save_checkpoint(path, model, build_args, codec)
    p = Predictor(path)
    assert p.ckpt["build_args"]["sequence"] == "lstm"
    x = torch.rand(2, 60, 160, 1).mul(255).to(torch.uint8).numpy()
    with torch.no_grad():
        expected = model(torch.from_numpy(x).permute(0, 3, 1, 2).float() * (2 / 255) - 1)
    torch.testing.assert_close(p.scores(x), expected, atol=1e-4, rtol=1e-4)


def test_default_model_loads_and_reads_generated_captchas(tmp_path):
    """weights/default.pt (cnn_ctc, sequence "none" stored in it) rebuilds, and reads generated captchas."""
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "weights", "default.pt")
    if not os.path.exists(path):
        pytest.skip("no weights/default.pt")
    p = Predictor(path)
    assert p.ckpt["model_name"] == "cnn_ctc" and p.ckpt["build_args"]["sequence"] == "none" and p.fused
    charset = p.ckpt["charset"]
    generate(str(tmp_path), 20, 7, charset, 4, p.width, p.height, processes=1, quiet=True)
    files = sorted(tmp_path.glob("*.png"))
    texts, _, _ = p.predict_arrays(np.stack([p.load(str(f)) for f in files]))
    right = sum(t == f.name[:4] for t, f in zip(texts, files))
    assert right >= 16, list(zip(texts, [f.name for f in files]))


# --- BatchNorm folding in the predictor ---------------------------------------------------------------------------

@pytest.mark.parametrize("name,options", [("cnn", {}), ("cnn_ctc", {}), ("cnn_ctc", {"sequence": "lstm", "hidden": 32}),
                                          ("resnet18_ctc", {"ibn": True, "attention": "cbam", "bnneck": True})])
def test_folded_batchnorm_reads_the_same(name, options, tmp_path):
    """The predictor folds BatchNorm into the convolutions (predict.py, test.py and app.py run that): the same
    texts, and probabilities within float tolerance, as the model as saved."""
    torch.manual_seed(0)
    build_args, codec = args(name)
    build_args.update(options, height=32, width=96)  # small images: the same layers, a fraction of the time
    model = models.build_model(**build_args)
    model.train()
    with torch.no_grad():  # BatchNorm statistics away from the initial 0 / 1, so that folding has work to do
        for _ in range(3):
            model(torch.rand(8, 1, 32, 96) * 2 - 1)
        [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1].weight.mul_(30)
    path = str(tmp_path / "m.pt")
    save_checkpoint(path, model.eval(), build_args, codec)
    folded, plain = Predictor(path), Predictor(path, fuse=False)
    assert folded.fused and not plain.fused
    count = lambda p: sum(isinstance(m, torch.nn.BatchNorm2d) for m in p.model.modules())  # noqa: E731
    assert count(folded) < count(plain)  # IBN's half-channel BatchNorm follows no convolution: it stays
    x = torch.rand(6, 32, 96, 1).mul(255).to(torch.uint8).numpy()
    a, b = folded.scores(x), plain.scores(x)
    torch.testing.assert_close(a.softmax(-1), b.softmax(-1), atol=1e-4, rtol=0)
    assert folded.predict_arrays(x)[0] == plain.predict_arrays(x)[0]


def test_a_model_that_cannot_be_folded_runs_as_it_is(monkeypatch, tmp_path):
    from torch.fx.experimental import optimization

    def untraceable(model):
        raise RuntimeError("symbolically traced variables cannot be used as inputs to control flow")

    monkeypatch.setattr(optimization, "fuse", untraceable)
    build_args, codec = args("cnn")
    path = str(tmp_path / "m.pt")
    save_checkpoint(path, models.build_model(**build_args).eval(), build_args, codec)
    p = Predictor(path)
    assert not p.fused and isinstance(p.model, models.CaptchaModel)
    assert len(p.predict_arrays(np.zeros((2, 60, 160, 1), np.uint8))[0]) == 2


def test_vote_takes_the_text_of_the_largest_summed_confidence():
    """TTA: copies that agree outweigh one confident copy; a tie goes to the unshifted copy; the vote's confidence is
    the winner's summed confidence over the number of copies, its stand-in the winner's most confident copy."""
    from core.inference import vote
    # two images, three copies each, copy by copy: [image 0, image 1] for the plain copy, then each shifted one
    texts = ["ab", "cd", "aa", "cd", "aa", "cc"]
    confidences = [0.9, 0.5, 0.6, 0.5, 0.7, 0.5]
    picked, voted = vote(texts, confidences, 3)
    assert [texts[j] for j in picked] == ["aa", "cd"] and picked == [4, 1]
    assert voted == pytest.approx([(0.6 + 0.7) / 3, (0.5 + 0.5) / 3])
    picked, voted = vote(["x", "y"], [0.5, 0.5], 2)  # one image, a tie: the unshifted reading
    assert picked == [0] and voted == pytest.approx([0.25])


def test_tta_reads_shifted_copies_of_the_unsure_images_that_vote(tmp_path, monkeypatch):
    """A Predictor with copies=5 keeps the reading of an image read with confidence REREAD_BELOW or more, and reads
    the others again as 5 shifted copies whose vote replaces their reading (one text, confidence and candidate
    list per image, the candidates those of the copy that stands for the vote); copies outside 1-7 are refused."""
    from core import inference
    from core.inference import SHIFTS, shifted_copies, vote
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "weights", "default.pt")
    if not os.path.exists(path):
        pytest.skip("no weights/default.pt")
    once, voted = Predictor(path), Predictor(path, copies=5)
    generate(str(tmp_path), 12, 7, once.ckpt["charset"], 4, once.width, once.height, processes=1, quiet=True)
    files = sorted(tmp_path.glob("*.png"))
    arrays = np.stack([once.load(str(f)) for f in files])
    copies = shifted_copies(arrays, 5)
    assert copies.shape == (60, *arrays.shape[1:]) and (copies[:12] == arrays).all()
    assert (copies[12:24] == np.roll(arrays, SHIFTS[1], axis=(1, 2))).all()
    assert (shifted_copies(arrays, 5, first=1) == copies[12:]).all()  # the shifted copies only
    plain_texts, plain_confidences, _ = once.predict_arrays(arrays)
    texts, confidences, chars, candidates = voted.predict_with_candidates(arrays, 3)
    assert len(texts) == len(confidences) == len(chars) == len(candidates) == 12
    assert all(0 <= c <= 1 and len(p) == len(t) == len(k) for t, c, p, k in zip(texts, confidences, chars, candidates))
    assert all(k[0][0] == ch for t, ks in zip(texts, candidates) for ch, k in zip(t, ks))
    sure = [i for i, c in enumerate(plain_confidences) if c >= inference.REREAD_BELOW]
    assert sure and all(texts[i] == plain_texts[i] and confidences[i] == plain_confidences[i] for i in sure)
    # every image re-read: the vote of all five copies of each
    monkeypatch.setattr(inference, "REREAD_BELOW", 1.01)
    all_texts, all_confidences, _ = once.predict_arrays(copies)
    picked, expected = vote(all_texts, all_confidences, 5)
    texts, confidences, _ = voted.predict_arrays(arrays)
    assert texts == [all_texts[j] for j in picked] and confidences == pytest.approx(expected, abs=1e-5)
    assert voted.read(arrays, batch_size=5)[0] == texts
    for wrong in (0, 8, 2.5):
        with pytest.raises(ValueError, match="copies"):
            Predictor(path, copies=wrong)
