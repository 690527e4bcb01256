"""Own data: both label formats, inferred charset, length and image geometry, case folding, variable lengths,
the validation split, the data-sized budget, augmentation and fine-tuning with --init."""
import os
import random
import re

import captcha.image
import numpy as np
import pytest
import torch
from captcha.image import ImageCaptcha

from core.augment import Augment
from core import engine, plan
from core.checkpoint import load_checkpoint, state_digest
from core.files import read_results
from core.generate import SeededSecrets
from core import data
from core.plan import Settings
from core.sets import split_validation
from conftest import DIGITS, run_script, tmp_paths


def own_set(folder, n, seed, labels_tsv, lengths=(4, 4), size=(120, 40), charset="abcXY123"):
    """A user's folder: JPEGs of another size, lower/upper-case labels, in either label format."""
    os.makedirs(folder, exist_ok=True)
    rng = random.Random(seed)
    drawer = ImageCaptcha(160, 60)
    rows = []
    for i in range(n):
        text = "".join(rng.choice(charset) for _ in range(rng.randint(*lengths)))
        captcha.image.secrets = SeededSecrets(random.Random(f"{seed}-{i}"))
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
    assert not Augment() and repr(Augment()) == "off"
    for part in ("affine", "perspective", "blur", "noise", "contrast", "lines"):
        aug = Augment(**{part: 1.0})
        y = aug(x.clone())
        assert y.shape == x.shape and torch.isfinite(y).all()
        assert y.min() >= -1 and y.max() <= 1
        assert (y - x).abs().mean() > 1e-3, f"{part} changed nothing"
    # near-zero strength leaves the images (almost) as they are
    y = Augment(affine=1e-6, perspective=1e-6)(x)
    assert (y - x).abs().max() < 1e-3
    # an empty batch (an online step whose rows were all read confidently) passes through every part
    empty = x[:0]
    assert Augment(affine=1.0, perspective=0.5, blur=1.0, noise=0.1, contrast=1.0, lines=1.0)(empty).shape == empty.shape


@pytest.mark.parametrize("channels", [1, 3])
def test_augment_lines_draw_curves_in_the_ink(channels):
    """lines: every image (probability 1) gets a curve of pixels set to its own darkest colour (lightest on a
    dark background), a third of the width or more; probability ~0 leaves the batch as it is."""
    torch.manual_seed(0)
    light = torch.full((16, channels, 30, 90), 0.8)
    light[:, :, 14:16, 40:50] = -0.6  # "text": the darkest value, which the curve must take
    y = Augment(lines=1.0)(light.clone())
    changed = (y != light).any(1)  # (B, H, W)
    for b in range(16):
        assert changed[b].any(0).sum() >= 30, "the curve crosses a third of the width or more"
        assert torch.all(y[b][:, changed[b]] == -0.6)
    dark = -light
    y = Augment(lines=1.0)(dark.clone())
    assert torch.all(y[(y != dark)] == 0.6)
    assert torch.equal(Augment(lines=1e-9)(light.clone()), light)


@pytest.mark.slow
def test_own_data_end_to_end_with_validation(tmp_path):
    """labels.tsv, JPEG colour 120x40, mixed case, no test folder: infer, fold, validate, train, predict."""
    folder = own_set(tmp_path / "mine", 300, 3, labels_tsv=True, lengths=(3, 4))
    base = tmp_path / "run"
    out = run_script("train.py", *tmp_paths(base), f"--train_dir={folder}", "--test_dir=", "--charset=infer",
                     "--length=0", "--case_sensitive=0", "--image_width=120", "--image_height=40", "--channels=3",
                     "--model=cnn_ctc", "--sequence=none", "--epochs=1", "--batch_size=32", "--threads=1",
                     "--run=mine", "--show=2", "--augment=1", "--blur=0.3", "--noise=0.02").stdout
    assert "charset   '123ABCXY' (8 characters) (inferred), case folded" in out
    assert "270 training images, 30 validation (VALIDATION=0.1, SEED=1), no test folder" in out
    ckpt = load_checkpoint(str(base / "weights" / "mine_best.pt"))
    assert ckpt["charset"] == "123ABCXY" and ckpt["length"] == [3, 4] and ckpt["case_sensitive"] is False
    pred = run_script("predict.py", str(folder / "00000.jpg"), f"--checkpoint={base}/weights/mine_best.pt").stdout
    assert "00000.jpg" in pred
    out = run_script("test.py", f"{base}/weights/mine_best.pt", f"--test_dir={folder}", f"--cache_dir={base}/cache",
                     f"--sheet={base}/wrong.png", f"--wrong={base}/wrong.tsv").stdout
    assert "sequence accuracy" in out
    rows = open(base / "wrong.tsv").read().splitlines()
    assert rows[0] == "file\ttruth\tpredicted\tconfidence" and len(rows) > 1  # one epoch: mostly wrong
    assert (base / "wrong.png").stat().st_size > 1000


@pytest.mark.slow
def test_init_fine_tunes(trained, tmp_path):
    """--init keeps every tensor on the same charset (and starts accurate); a new charset re-inits the head."""
    base, _ = trained
    init = f"{base}/weights/t_best.pt"
    start_acc = load_checkpoint(init)["accuracy"]
    out = run_script("train.py", *tmp_paths(base), f"--weights_dir={tmp_path}", f"--results={tmp_path}/r.txt",
                     f"--charset={DIGITS}", f"--init={init}", "--epochs=1", "--lr=3e-4", "--run=ft",
                     "--batch_size=64", "--threads=1", "--model=resnet18").stdout
    assert "model cnn_ctc," in out  # the checkpoint's model, not --model
    n = len(load_checkpoint(init)["model"])
    assert f"initialised {n} of {n} tensors" in out
    acc = load_checkpoint(f"{tmp_path}/ft_best.pt")["accuracy"]
    assert acc >= start_acc - 0.1, (acc, start_acc)  # from scratch, one epoch reads next to nothing

    letters = own_set(tmp_path / "letters", 200, 4, labels_tsv=False, charset="ABCDEF")
    out = run_script("train.py", f"--train_dir={letters}", "--test_dir=", f"--cache_dir={tmp_path}/c",
                     f"--weights_dir={tmp_path}", f"--results={tmp_path}/r.txt", "--charset=infer",
                     f"--init={init}", "--epochs=1", "--run=ft2", "--batch_size=32", "--threads=1").stdout
    # another image height and no character in common: the blank's row, resampled to the new feature height, and
    # only if it reads the labelled images better than a fresh classifier
    assert "the blank's row and 0 of 6 characters' rows" in out and "cells resampled to" in out
    assert re.search(r"head.fc: the checkpoint's classifier reads the first \d+ labelled training images with a "
                     r"loss of [\d.]+, a fresh one [\d.]+: (kept|it starts afresh)", out)
    assert np.isfinite(load_checkpoint(f"{tmp_path}/ft2_best.pt")["accuracy"])


@pytest.mark.slow
def test_bench_real_refuses_unknown_sets_and_missing_data(tmp_path):
    out = run_script("benchmarks/bench_real.py", "--sets=nope", check=False)
    assert out.returncode == 1 and "unknown set nope; known: captcha_images_v2, henan_digits" in out.stdout
    out = run_script("benchmarks/bench_real.py", f"--root={tmp_path}", check=False)
    assert out.returncode == 1 and f"not found under {tmp_path}" in out.stdout


# --- one command: budget, validation, run names, inferred geometry ---------------------------------------------

def test_budget_follows_the_data_size():
    s = Settings().replace(EPOCHS=0, IMAGES_SEEN=400_000, PATIENCE=0)
    assert plan.plan_epochs(s, 800) == plan.MAX_EPOCHS  # a small set is seen many times (capped)
    assert plan.plan_epochs(s, 20_000) == 20
    assert plan.plan_epochs(s, 1_000_000) == plan.MIN_EPOCHS  # a big one at least MIN_EPOCHS times
    assert plan.plan_patience(s, 300) == 75 and plan.plan_patience(s, 10) == 3
    s = s.replace(EPOCHS=7, PATIENCE=-1)
    assert plan.plan_epochs(s, 800) == 7 and plan.plan_patience(s, 7) is None  # set explicitly: kept
    for n, small in ((800, True), (19_999, True), (20_000, False), (100_000, False), (None, False)):  # None: ONLINE
        given = s.replace(AUGMENT=-1.0, LABEL_SMOOTHING=-1.0)
        r = plan.resolve_small_set(given, n)
        assert (r.AUGMENT, r.LABEL_SMOOTHING) == ((plan.AUTO_AUGMENT, plan.AUTO_SMOOTHING) if small else (0, 0))
        assert (given.AUGMENT, given.LABEL_SMOOTHING) == (-1.0, -1.0)  # a new value: the given one is left alone
    r = plan.resolve_small_set(s.replace(AUGMENT=0.0, LABEL_SMOOTHING=0.3), 800)  # set explicitly: kept whatever
    assert (r.AUGMENT, r.LABEL_SMOOTHING) == (0.0, 0.3)                           # the size


def test_small_images_plan_proportionally_more_of_them_up_to_twice_images_seen():
    """IMAGES_SEEN counts images of 160x60 (the generator's) or larger; a smaller image costs less to train on, so
    a run plans as many more as it is smaller, at most SMALL_IMAGE_FACTOR times as many; a run with unlabelled
    images keeps IMAGES_SEEN."""
    s = Settings().replace(EPOCHS=0, IMAGES_SEEN=400_000)
    planned = lambda w, h: plan.planned_images(s.replace(IMAGE_WIDTH=w, IMAGE_HEIGHT=h))
    assert plan.REFERENCE_PIXELS == 160 * 60 and plan.SMALL_IMAGE_FACTOR == 2.0
    assert planned(160, 60) == planned(200, 50) == planned(352, 64) == 400_000  # as large or larger: as it is
    assert planned(152, 48) == round(400_000 * 9600 / 7296)                     # 1.32 x
    assert planned(96, 35) == planned(72, 32) == 800_000                        # at most twice
    assert planned(0, 0) == 400_000                                             # not yet resolved: as large
    small = s.replace(IMAGE_WIDTH=96, IMAGE_HEIGHT=35)
    assert plan.plan_epochs(small, 3_200) == 250 and plan.plan_epochs(s, 3_200) == 125
    assert plan.plan_epochs(small, 800) == plan.MAX_EPOCHS            # the range still holds
    assert plan.plan_epochs(small.replace(EPOCHS=7), 3_200) == 7      # EPOCHS set: kept
    semi = small.replace(UNLABELED_DIR="unlabelled")  # with unlabelled images: IMAGES_SEEN whatever the size
    assert plan.planned_images(semi) == 400_000 and plan.plan_epochs(semi, 3_200) == 125
    from core.pseudo import epoch_budget
    assert epoch_budget(semi) == 40_000


def test_keeper_chooses_on_validation_errors_then_loss():
    k = engine.Keeper(100)  # slack: one image
    assert k.offer(1, 0.90, 0.97, 0.50)                          # first: kept
    assert k.offer(2, 0.95, 0.98, 0.60)                          # fewer errors: kept although the loss is higher
    assert k.offer(3, 0.94, 0.98, 0.40)                          # one image more, lower loss: kept
    assert not k.offer(4, 0.93, 0.98, 0.30)                      # two images more than the fewest: not kept,
    assert k.since == 0                                          # but its loss is the lowest yet: progress
    assert not k.offer(5, 0.95, 0.98, 0.45) and k.since == 1     # as few errors, higher loss than the kept epoch
    assert not k.offer(6, 0.00, 0.99, 0.50) and k.since == 0     # the best character accuracy yet: progress
    assert not k.offer(7, 0.90, 0.90, 0.90) and k.since == 1
    assert k.kept["epoch"] == 3
    again = engine.Keeper(100, k.state())                         # resumes where it was
    assert again.kept == k.kept and again.since == 1 and again.fewest == 5
    last = engine.Keeper(0)                                       # no validation part: the last epoch is kept
    assert last.offer(1, float("nan"), float("nan"), float("nan")) and last.offer(2, 0, 0, 9)


def test_cooldown_takes_the_rate_to_zero_and_resumes():
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=0.8)
    cool = engine.cooldown_schedule(opt, 4)
    rates = []
    for _ in range(2):
        opt.step()
        cool.step()
        rates.append(cool.get_last_lr()[0])
    again = engine.cooldown_schedule(opt, 1)                      # resumed: the saved state carries steps and step
    again.load_state_dict(cool.state_dict())
    for _ in range(3):
        opt.step()
        again.step()
        rates.append(again.get_last_lr()[0])
    assert [round(r, 6) for r in rates] == [0.6, 0.4, 0.2, 0.0, 0.0]
    s = Settings().replace(COOLDOWN=0.1)
    assert plan.plan_cooldown(s, 300, 100) == 30 and plan.plan_cooldown(s, 300, 290) == 10
    assert plan.plan_cooldown(s, 10, 5) == 1                     # at least one epoch
    s = s.replace(COOLDOWN=0.0)
    assert plan.plan_cooldown(s, 300, 100) == 0                  # off: PATIENCE stops at once
    k = engine.Keeper(100)
    assert k.offer(1, 0.95, 0.98, 0.40) and not k.offer(2, 0.94, 0.98, 0.50)
    k.cool_until = 9                                             # cooling down: within SLACK, the later epoch
    assert k.offer(3, 0.94, 0.98, 0.50) and not k.offer(4, 0.92, 0.98, 0.10)
    assert engine.Keeper(100, k.state()).cool_until == 9          # resumes cooling, with its end


@pytest.mark.slow
def test_patience_stop_cools_down_first(digits_data, tmp_path):
    # the largest rate allowed, from random weights: the first epochs blow the validation loss up (3 262 after epoch 1,
    # 17 068 after epoch 2), PATIENCE 1 then starts the cool-down (a validation part of 50 images: the fewest that
    # choose an epoch). A tiny rate no longer stalls: the BatchNorm statistics alone lower the validation loss a
    # little every epoch; and from the shipped model the digits' rows of its classifier read these captchas at once
    # (a run whose validation reads every image right stops after its own shorter cool-down).
    args = [f"--train_dir={digits_data}/test", f"--cache_dir={digits_data}/cache", f"--weights_dir={tmp_path}/w",
            "--init=", f"--results={tmp_path}/r.txt", "--epochs=8", "--patience=1", "--cooldown=0.25", "--lr=1",
            "--batch_size=16", "--limit=100", "--validation=0.5", "--run=c", "--show=0", "--test_dir="]
    out = run_script("train.py", *args).stdout
    assert "then the run stops" in out, out[-3000:]
    lines = out.splitlines()
    at = next(i for i, line in enumerate(lines) if "then the run stops" in line)
    start = int(lines[at - 1].split("/")[0].split()[-1])         # the epoch after which it began
    rows = read_results(tmp_path / "r.txt")
    end = min(8, start + 2)                                      # 0.25 of 8 epochs
    assert [int(r["epoch"]) for r in rows] == list(range(1, end + 1))
    assert float(rows[-1]["lr"]) == 0 and 0 < float(rows[start]["lr"]) < float(rows[start - 1]["lr"])
    if end < 8:
        assert f"cool-down finished: stopping after epoch {end}" in out


def test_weight_average_follows_the_weights_with_a_warm_up():
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    start = {k: v.clone() for k, v in model.state_dict().items()}
    average = engine.WeightAverage(model, cap=0.2)
    with torch.no_grad():
        model[0].weight.add_(1.0)
        model[1].running_mean.fill_(4.0)
        model[1].num_batches_tracked.fill_(7)
    average.update()                                             # decay min(0.2, 2/11): mostly the new weights
    mine = average.module.state_dict()
    d = 2 / 11
    assert torch.allclose(mine["0.weight"], d * start["0.weight"] + (1 - d) * model[0].weight)
    assert torch.allclose(mine["1.running_mean"], torch.full((2,), (1 - d) * 4.0))  # BatchNorm statistics too
    assert mine["1.num_batches_tracked"].item() == 7 and not average.module[0].weight.requires_grad
    before = mine["0.weight"].clone()
    with torch.no_grad():
        model[0].weight.add_(1.0)
    average.update()                                             # 2nd update: min(0.2, 3/12), the cap
    assert average.updates == 2
    assert torch.allclose(average.module[0].weight, 0.2 * before + 0.8 * model[0].weight)
    assert torch.allclose(model[0].weight, start["0.weight"] + 2)  # the trained weights are left alone


@pytest.mark.slow
def test_ema_run_saves_the_average_and_resumes_it(digits_data, tmp_path):
    small = dict(train_dir=f"{digits_data}/test")                # 300 images: 270 train, 8 steps of 32 an epoch
    first = short_run(tmp_path, "--epochs=3", "--run=e", "--ema=0.9", "--patience=-1", "--time_limit=0.001",
                      **small).stdout                            # stops after epoch 1
    assert "TIME_LIMIT" in first
    last = load_checkpoint(str(tmp_path / "weights" / "e_last.pt"))
    assert last["average_updates"] == 8 and last["epoch"] == 1
    assert any(not torch.equal(last["model"][k], last["trained"][k]) for k in last["model"])
    best = load_checkpoint(str(tmp_path / "weights" / "e_best.pt"))
    assert all(torch.equal(best["model"][k], last["model"][k]) for k in best["model"])  # the average is kept
    again = short_run(tmp_path, "--epochs=3", "--run=e", "--ema=0.9", "--patience=-1", "--resume=1",
                      **small).stdout
    assert "resumed" in again and "after epoch 1" in again
    assert load_checkpoint(str(tmp_path / "weights" / "e_last.pt"))["average_updates"] == 24


def test_validation_split_is_seeded_and_disjoint():
    s = Settings()
    codec = data.Codec(DIGITS, 4)
    texts = [f"{i:04d}" for i in range(200)]
    full = data.CaptchaSet([f"{t}.png" for t in texts], texts, np.zeros((200, 4, 8, 1), np.uint8), codec)
    a_train, a_val = split_validation(s, full, 0.1, seed=1)
    b_train, b_val = split_validation(s, full, 0.1, seed=1)
    _, c_val = split_validation(s, full, 0.1, seed=2)
    assert a_val.paths == b_val.paths and a_train.paths == b_train.paths and len(a_val) == 20
    assert not set(a_val.paths) & set(a_train.paths) and len(a_val) + len(a_train) == 200
    assert set(c_val.paths) != set(a_val.paths)
    assert split_validation(s, full, 0.0, seed=1)[1] is None


@pytest.mark.parametrize("size, mode, expect", [
    ((120, 40), "RGB", (120, 40, 3)),   # colour JPEGs of another size: kept
    ((200, 50), "L", (200, 50, 1)),     # grey: kept
    ((70, 30), "RGB", (72, 32, 3)),     # too low: brought up to 32 rows, aspect kept, width a multiple of 8
    ((400, 150), "L", (168, 64, 1)),    # too high: brought down to 64 rows
])
def test_inferred_geometry(tmp_path, size, mode, expect):
    from PIL import Image
    rng = np.random.default_rng(0)
    paths = []
    for i in range(5):
        pixels = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
        image = Image.fromarray(pixels).convert(mode)
        paths.append(str(tmp_path / f"A{i}.png"))
        image.save(paths[-1])
    assert data.infer_geometry(paths) == expect
    # IMAGE_HEIGHT set, IMAGE_WIDTH inferred: the width keeps the aspect ratio at the height asked for
    assert data.infer_geometry(paths, height=64)[:2] == (max(16, round(size[0] * 64 / size[1] / 8) * 8), 64)


def test_inferred_width_gives_each_character_of_the_longest_label_its_pixels(tmp_path):
    """Long text in a small image is stretched to data.CHAR_WIDTH pixels a character (CHAR_WIDTH_VARIABLE where
    the labels have several lengths), however the images' aspect ratio falls: 8 characters in 100x30 get 144 pixels
    instead of 104, 6 in a tall 60x120 image 112 instead of 32 (a CTC head of 4 columns cannot emit 6 characters),
    4-5 in 100x40 160 instead of 96; short labels keep the width the aspect ratio gives."""
    from PIL import Image
    for size, length, expect in [((100, 30), (8, 8), (144, 32)), ((100, 30), (4, 4), (104, 32)),
                                 ((60, 120), (6, 6), (112, 64)), ((100, 40), (4, 5), (160, 40)),
                                 ((300, 80), (4, 8), (256, 64)), ((100, 30), (0, 0), (104, 32))]:
        folder = tmp_path / f"{size[0]}x{size[1]}-{length[0]}-{length[1]}"
        folder.mkdir()
        paths = []
        for i in range(3):
            paths.append(str(folder / f"A{i}.png"))
            Image.new("L", size, 128).save(paths[-1])
        assert data.infer_geometry(paths, length=length)[:2] == expect, (size, length)
    assert (data.CHAR_WIDTH, data.CHAR_WIDTH_VARIABLE) == (18, 32)


def test_one_mistyped_label_of_another_length_does_not_widen_the_input(tmp_path):
    """The width floor follows the lengths the labels hold in common: 40 labels of 4 characters and one typed with 5
    keep the 96x35 of their aspect ratio (the codec still allows 4-5); 20 of each length are labels that vary in
    length and get CHAR_WIDTH_VARIABLE pixels for each of 5 characters."""
    from PIL import Image
    from core import plan
    from core.plan import Settings
    words = ["".join("abcdefgh"[(i * 7 + j * 3) % 8] for j in range(5)) for i in range(40)]
    for name, texts, width in [("typo", [w[:4] for w in words] + ["abcde"], 96),
                               ("both", [w[:4 + i % 2] for i, w in enumerate(words)], 160)]:
        folder = tmp_path / name
        folder.mkdir()
        for i, text in enumerate(texts):
            Image.new("L", (96, 35), 255).save(folder / f"{text}_{i}.png")
        s, codec = plan.resolve_data(Settings().replace(TRAIN_DIR=str(folder), CACHE_DIR=""), lambda *a: None)
        assert codec.length == (4, 5) and (s.IMAGE_WIDTH, s.IMAGE_HEIGHT) == (width, 35), name


def test_inferred_geometry_of_a_folder_mixing_sizes_follows_its_larger_images(tmp_path):
    """Three styles, most of them small (70x30, 72x24) and a fifth large (240x80): the input is as high as the large
    ones (capped at 64), not the median's 32 rows that would shrink them threefold; the width keeps the median
    aspect ratio."""
    from PIL import Image
    paths = []
    for i, size in enumerate([(70, 30)] * 8 + [(72, 24)] * 8 + [(240, 80)] * 4):
        paths.append(str(tmp_path / f"A{i:02d}.png"))
        Image.new("L", size, 128).save(paths[-1])
    assert data.infer_geometry(paths) == (192, 64, 1)  # the median aspect ratio 3.0 at 64 rows


def short_run(base, *extra, train_dir=None, check=True):
    """train.py on a small folder with every output under `base`."""
    paths = [f"--train_dir={train_dir or base / 'train'}", f"--cache_dir={base}/cache", f"--weights_dir={base}/weights",
             f"--results={base}/results.txt", "--threads=1", "--batch_size=32", "--show=0"]
    return run_script("train.py", *paths, *extra, check=check)


@pytest.mark.slow
def test_runs_never_replace_each_other_and_resume_checks_settings(digits_data, tmp_path):
    small = dict(train_dir=f"{digits_data}/test")  # 300 images: fast epochs
    first = short_run(tmp_path, "--epochs=2", "--run=r", **small).stdout
    before = (tmp_path / "weights" / "r_best.pt").read_bytes()
    second = short_run(tmp_path, "--epochs=1", "--run=r", **small).stdout
    assert "run 'r' exists" in second and "this run is 'r-2'" in second and "r-2_best.pt" in second
    assert (tmp_path / "weights" / "r_best.pt").read_bytes() == before  # untouched
    rows = read_results(tmp_path / "results.txt")
    assert [(r["run"], r["epoch"]) for r in rows] == [("r", "1"), ("r", "2"), ("r-2", "1")]
    assert "best: " in first
    refused = short_run(tmp_path, "--epochs=5", "--run=r", "--resume=1", "--ema=0.5", check=False, **small)
    assert refused.returncode == 1 and "EPOCHS 1 -> 5" in refused.stdout and "--init=" in refused.stdout
    assert "EMA 0.999 -> 0.5" in refused.stdout
    assert "Traceback" not in refused.stdout
    (tmp_path / "afile").write_text("x")
    bad = short_run(tmp_path, f"--weights_dir={tmp_path}/afile", check=False, **small)
    assert bad.returncode == 1 and "is a file, not a folder" in bad.stdout
    bad = short_run(tmp_path, f"--results={tmp_path}/weights", check=False, **small)
    assert bad.returncode == 1 and "is a folder" in bad.stdout


@pytest.mark.slow
def test_test_folder_never_changes_the_kept_checkpoint(digits_data, tmp_path):
    """Two runs that differ only in TEST_DIR keep the same checkpoint (same epoch, same weights)."""
    import shutil
    folders = [tmp_path / "test_a", tmp_path / "test_b"]  # two test folders: 40 images each of the fixture's train
    names = sorted(os.listdir(f"{digits_data}/train"))
    for folder, part in zip(folders, (names[:40], names[40:80])):
        folder.mkdir()
        for name in part:
            shutil.copy(f"{digits_data}/train/{name}", folder / name)
    kept = []
    for k, test_dir in enumerate(map(str, folders)):
        base = tmp_path / str(k)
        short_run(base, f"--test_dir={test_dir}", "--epochs=2", "--run=x", "--patience=-1",
                  train_dir=f"{digits_data}/test")
        ckpt = load_checkpoint(str(base / "weights" / "x_best.pt"))
        kept.append((ckpt["epoch"], ckpt["accuracy"], state_digest(ckpt["model"])))
    assert kept[0] == kept[1]


def test_resume_continues_the_run_that_was_cut_short_not_a_later_finished_one(tmp_path):
    """A run killed after epoch 1 ('c'), then the same command again, which becomes 'c-2' and runs to its end:
    --resume=1 --run=c continues 'c', and the second command said that 'c' was left short. With every run
    finished, the newest."""
    from core.runs import choose_run, unfinished
    weights = tmp_path / "weights"
    weights.mkdir()
    s = Settings().replace(WEIGHTS_DIR=str(weights))
    torch.save({"epoch": 1, "planned_epochs": 6}, weights / "c_last.pt")
    torch.save({"epoch": 6, "planned_epochs": 6}, weights / "c-2_last.pt")
    os.utime(weights / "c_last.pt", (1, 1))  # the killed run is the older one
    assert unfinished(s, "c") == (1, 6) and unfinished(s, "c-2") is None
    torch.save({"epoch": 3, "planned_epochs": 6, "finished": True}, weights / "p_last.pt")  # stopped by PATIENCE
    assert unfinished(s, "p") is None
    assert choose_run(s, "c", resume=True) == "c"
    torch.save({"epoch": 6, "planned_epochs": 6}, weights / "c_last.pt")
    os.utime(weights / "c_last.pt", (1, 1))
    assert choose_run(s, "c", resume=True) == "c-2"
    (weights / "c-2_last.pt").write_bytes(b"")  # unreadable: not taken for unfinished
    assert unfinished(s, "c-2") is None and choose_run(s, "c", resume=False) == "c-3"
