import importlib

import pytest
import torch

import config
import data
import models
import torch_util
from models.heads import DECODERS, LOSSES


def args(name):
    codec = data.Codec("0123456789", 4)
    head = models.head_of(name)
    classes = codec.fixed_classes if head == "fixed" else codec.ctc_classes
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
    if models.head_of(name) == "fixed":
        assert logits.shape[1] == 4
    assert torch.isfinite(logits).all()
    labels = torch.randint(0, 10, (3, 4))
    loss = LOSSES[models.head_of(name)](logits, labels, torch.full((3,), 4))
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    texts, confs, chars = DECODERS[models.head_of(name)](logits, codec)
    assert len(texts) == 3 and all(0 <= c <= 1 for c in confs)


def test_unknown_model_names_the_registered_ones():
    with pytest.raises(KeyError, match="registered: .*cnn"):
        models.build_model("nope", 1, 10, 4, 60, 160)


def test_checkpoint_round_trip_without_config(tmp_path):
    build_args, codec = args("cnn")
    model = models.build_model(**build_args).eval()
    path = str(tmp_path / "m.pt")
    torch_util.save_checkpoint(path, model, build_args, codec, epoch=3, accuracy=0.5, config=config.as_dict())
    config.MODEL, config.CHARSET, config.IMAGE_WIDTH = "resnet18", "XYZ", 99  # config changed since
    try:
        p = torch_util.Predictor(path)
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
    with pytest.raises(torch_util.CheckpointError, match="refused"):
        torch_util.load_checkpoint("evil.pt")
    assert not (tmp_path / "EVIL_RAN").exists()


def test_truncated_checkpoint_gives_clear_error(tmp_path):
    build_args, codec = args("cnn")
    path = tmp_path / "m.pt"
    torch_util.save_checkpoint(str(path), models.build_model(**build_args), build_args, codec)
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(torch_util.CheckpointError, match="not a readable checkpoint"):
        torch_util.load_checkpoint(str(path))
