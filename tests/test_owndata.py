"""Own data (issue 4): both label formats, inferred charset and length, case folding, variable lengths,
hold-out split, augmentation and fine-tuning with --init."""
import os
import random

import captcha.image
import numpy as np
import pytest
import torch
from captcha.image import ImageCaptcha

import captchaGenerator
import data
import torch_util
from conftest import DIGITS, run_script, tmp_paths


def own_set(folder, n, seed, labels_tsv, lengths=(4, 4), size=(120, 40), charset="abcXY123"):
    """A user's folder: JPEGs of another size, lower/upper-case labels, in either label format."""
    os.makedirs(folder, exist_ok=True)
    rng = random.Random(seed)
    drawer = ImageCaptcha(160, 60)
    rows = []
    for i in range(n):
        text = "".join(rng.choice(charset) for _ in range(rng.randint(*lengths)))
        captcha.image.secrets = captchaGenerator.SeededSecrets(random.Random(f"{seed}-{i}"))
        image = drawer.generate_image(text)
        name = f"{i:05d}.jpg" if labels_tsv else f"{text}_{i:05d}.jpg"
        image.convert("RGB").resize(size).save(os.path.join(folder, name), quality=90)
        rows.append(f"{name}\t{text}")
    if labels_tsv:
        with open(os.path.join(folder, "labels.tsv"), "w") as f:
            f.write("\n".join(rows) + "\n")
    return folder


def test_infer_charset_and_length_from_file_names(tmp_path):
    folder = own_set(tmp_path / "names", 40, 1, labels_tsv=False, lengths=(3, 5))
    codec, said = data.infer_codec(str(folder), "infer", 0, case_sensitive=True)
    texts = [t for _, t in data.read_labels(str(folder))]
    assert codec.charset == "".join(sorted(set("".join(texts))))
    assert codec.length == (min(map(len, texts)), max(map(len, texts))) and codec.variable
    assert "CHARSET inferred from 40 labels" in said and "LENGTH inferred" in said


def test_case_folding_with_labels_tsv(tmp_path):
    folder = own_set(tmp_path / "tsv", 30, 2, labels_tsv=True)
    codec, _ = data.infer_codec(str(folder), "infer", 4, case_sensitive=False)
    assert codec.charset == codec.charset.upper() and "A" in codec.charset and "a" not in codec.charset
    ds = data.load_folder(str(folder), codec, 96, 32, 3)
    assert ds.images.shape == (30, 32, 96, 3)
    assert all(t == t.upper() for t in ds.texts)
    # case-sensitive: the same lower-case labels are refused by an upper-case charset, naming the files
    with pytest.raises(data.DataError, match="characters not in CHARSET"):
        data.load_folder(str(folder), data.Codec("ABCXY123", 4), 96, 32, 3)
    # an explicit charset given in lower case folds too
    assert data.Codec("abc", 4, case_sensitive=False).charset == "ABC"


def test_variable_length_fixed_head_pads():
    codec = data.Codec("AB", (2, 4))
    assert codec.fixed_classes == 3 and codec.encode("AB") == [0, 1, 2, 2]
    assert codec.decode([0, 1, 2, 2]) == "AB"


@pytest.mark.parametrize("channels", [1, 3])
def test_augment_parts(channels):
    torch.manual_seed(0)
    x = torch.rand(6, channels, 40, 100) * 2 - 1
    assert not data.Augment() and repr(data.Augment()) == "off"
    for part in ("affine", "perspective", "blur", "noise", "contrast"):
        aug = data.Augment(**{part: 1.0})
        y = aug(x.clone())
        assert y.shape == x.shape and torch.isfinite(y).all()
        assert y.min() >= -1 and y.max() <= 1
        assert (y - x).abs().mean() > 1e-3, f"{part} changed nothing"
    # near-zero strength leaves the images (almost) as they are
    y = data.Augment(affine=1e-6, perspective=1e-6)(x)
    assert (y - x).abs().max() < 1e-3


def test_own_data_end_to_end_with_holdout(tmp_path):
    """labels.tsv, JPEG colour 120x40, mixed case, no test folder: infer, fold, hold out, train, predict."""
    folder = own_set(tmp_path / "mine", 300, 3, labels_tsv=True, lengths=(3, 4))
    base = tmp_path / "run"
    out = run_script("train.py", *tmp_paths(base), f"--train_dir={folder}", "--test_dir=", "--charset=infer",
                     "--length=0", "--case_sensitive=0", "--image_width=120", "--image_height=40", "--channels=3",
                     "--model=cnn_ctc", "--sequence=none", "--epochs=1", "--batch_size=32", "--threads=1",
                     "--run=mine", "--show=2", "--augment=1", "--blur=0.3", "--noise=0.02").stdout
    assert "CHARSET inferred from 300 labels" in out and "'123ABCXY'" in out
    assert "holding out 30 of 300 images" in out and "270 train / 30 test" in out
    ckpt = torch_util.load_checkpoint(str(base / "weights" / "mine_best.pt"))
    assert ckpt["charset"] == "123ABCXY" and ckpt["length"] == [3, 4] and ckpt["case_sensitive"] is False
    pred = run_script("predict.py", str(folder / "00000.jpg"), f"--checkpoint={base}/weights/mine_best.pt").stdout
    assert "00000.jpg" in pred
    out = run_script("test.py", f"{base}/weights/mine_best.pt", f"--test_dir={folder}", f"--cache_dir={base}/cache",
                     f"--sheet={base}/wrong.png", f"--wrong={base}/wrong.tsv").stdout
    assert "sequence accuracy" in out
    rows = open(base / "wrong.tsv").read().splitlines()
    assert rows[0] == "file\ttruth\tpredicted\tconfidence" and len(rows) > 1  # one epoch: mostly wrong
    assert (base / "wrong.png").stat().st_size > 1000


def test_init_fine_tunes(trained, tmp_path):
    """--init keeps every tensor on the same charset (and starts accurate); a new charset re-inits the head."""
    base, _ = trained
    init = f"{base}/weights/t_best.pt"
    start_acc = torch_util.load_checkpoint(init)["accuracy"]
    out = run_script("train.py", *tmp_paths(base), f"--weights_dir={tmp_path}", f"--results={tmp_path}/r.txt",
                     f"--charset={DIGITS}", f"--init={init}", "--epochs=1", "--lr=3e-4", "--run=ft",
                     "--batch_size=64", "--threads=1", "--model=resnet18").stdout
    assert "model cnn," in out  # the checkpoint's model, not --model
    n = len(torch_util.load_checkpoint(init)["model"])
    assert f"initialised {n} of {n} tensors" in out
    acc = torch_util.load_checkpoint(f"{tmp_path}/ft_best.pt")["accuracy"]
    assert acc >= start_acc - 0.1, (acc, start_acc)  # from scratch, one epoch reads next to nothing

    letters = own_set(tmp_path / "letters", 200, 4, labels_tsv=False, charset="ABCDEF")
    out = run_script("train.py", f"--train_dir={letters}", "--test_dir=", f"--cache_dir={tmp_path}/c",
                     f"--weights_dir={tmp_path}", f"--results={tmp_path}/r.txt", "--charset=infer",
                     f"--init={init}", "--epochs=1", "--run=ft2", "--batch_size=32", "--threads=1").stdout
    assert "start afresh (charset '0123456789' -> 'ABCDEF'): head.fc.weight, head.fc.bias" in out
    assert np.isfinite(torch_util.load_checkpoint(f"{tmp_path}/ft2_best.pt")["accuracy"])


def test_bench_real_refuses_unknown_sets_and_missing_data(tmp_path):
    out = run_script("bench_real.py", "--sets=nope", check=False)
    assert out.returncode == 1 and "unknown set nope; known: captcha_images_v2, henan_digits" in out.stdout
    out = run_script("bench_real.py", f"--root={tmp_path}", check=False)
    assert out.returncode == 1 and f"not found under {tmp_path}" in out.stdout
