import os

import numpy as np
import pytest
from PIL import Image

from core import data
from conftest import ROOT, run_script

SHARED = os.path.join(ROOT, "..", "shared", "datasets")


def write_png(path, size=(100, 40), color=128):
    Image.new("RGB", size, (color, color, color)).save(path)


def test_codec_round_trip_fixed_and_variable():
    c = data.Codec("0123456789ABC", 4)
    assert c.fixed_classes == 13 and c.ctc_classes == 14
    for text in ["0000", "A9B1", "CCCC"]:
        assert c.decode(c.encode(text)) == text
    v = data.Codec("AB", (2, 4))
    assert v.fixed_classes == 3 and v.encode("AB") == [0, 1, 2, 2] and v.decode(v.encode("AB")) == "AB"
    assert v.check("ABAB") is None and "length 5" in v.check("ABABA") and "'Z'" in v.check("AZ")
    with pytest.raises(data.DataError, match="repeated"):
        data.Codec("AAB", 2)


def test_file_name_and_tsv_labels_resize_and_cache(tmp_path):
    write_png(tmp_path / "AB12.png", (200, 50))
    write_png(tmp_path / "BA21_copy.jpg", (70, 30))
    codec = data.Codec("AB12", 4)
    cache = tmp_path / "cache"
    ds = data.load_folder(str(tmp_path), codec, 160, 60, 1, str(cache))
    assert ds.texts == ["AB12", "BA21"] and ds.images.shape == (2, 60, 160, 1) and ds.images.dtype == np.uint8
    assert len(os.listdir(cache)) == 1
    again = data.load_folder(str(tmp_path), codec, 160, 60, 1, str(cache))
    assert np.array_equal(again.images, ds.images)
    assert data.load_folder(str(tmp_path), codec, 80, 30, 3, str(cache)).images.shape == (2, 30, 80, 3)
    assert len(os.listdir(cache)) == 2  # keyed by image settings

    tsv = tmp_path / "tsv"
    tsv.mkdir()
    write_png(tsv / "x.png")
    write_png(tsv / "y.png")
    (tsv / "labels.tsv").write_text("x.png\t1122\ny.png\tAAAA\n")
    assert data.load_folder(str(tsv), codec, 160, 60, 1).texts == ["1122", "AAAA"]


def test_memory_is_checked_before_decoding(tmp_path, monkeypatch):
    """A folder whose images would not fit in memory is refused before decoding, naming the folder, the size,
    what is available and the fix, instead of the system killing the run part way."""
    for name in ("AB12.png", "BA21.png", "1122.png"):
        write_png(tmp_path / name, (200, 50))
    codec = data.Codec("AB12", 4)
    assert data.available_memory() > 0  # Linux says
    monkeypatch.setattr(data, "available_memory", lambda: 2**30)  # 1 GiB: less than the margin a run needs
    with pytest.raises(data.DataError) as e:
        data.load_folder(str(tmp_path), codec, 160, 60, 1)
    message = str(e.value)
    assert message.startswith(f"{tmp_path}: 3 images of 160x60 grey need about 1.0 GiB of memory"), message
    assert "(each held 2 times while a run trains on them), but this machine has 1.0 GiB available" in message
    assert "--image_height=32" in message
    with pytest.raises(data.DataError) as e:  # read once (test.py): held once
        data.load_folder(str(tmp_path), codec, 160, 60, 1, copies=1)
    assert "need about 1.0 GiB of memory (read at once)" in str(e.value)
    monkeypatch.setattr(data, "available_memory", lambda: 8 * 2**30)
    assert len(data.load_folder(str(tmp_path), codec, 160, 60, 1)) == 3
    monkeypatch.setattr(data, "available_memory", lambda: None)  # a system that does not say: no check
    assert len(data.load_folder(str(tmp_path), codec, 160, 60, 1)) == 3


def test_limit_samples_before_decoding(tmp_path, monkeypatch):
    """LIMIT's seeded sample is drawn from the file list: only the sample is checked for memory and decoded (a huge
    folder with --limit=100 costs 100 images), and a bad file outside it does not stop the run."""
    import itertools
    names = sorted("".join(p) + ".png" for p in itertools.islice(itertools.product("AB12", repeat=4), 40))
    for name in names:
        write_png(tmp_path / name, (200, 50), color=names.index(name))
    picked = data.sample_indices(40, 10, 7)
    assert len(set(picked)) == 10 and list(picked) == sorted(picked) and (data.sample_indices(40, 10, 7) == picked).all()
    outside = next(i for i in range(40) if i not in picked)
    (tmp_path / names[outside]).write_bytes(b"not an image")
    decoded = []
    decode = data.decode_images
    monkeypatch.setattr(data, "decode_images", lambda paths, *a, **k: decoded.append(len(paths)) or decode(paths, *a, **k))
    codec = data.Codec("AB12", 4)
    ds = data.load_folder(str(tmp_path), codec, 160, 60, 1, sample=10, seed=7)
    assert decoded == [10] and ds.texts == [names[i][:4] for i in picked]
    assert [int(image[0, 0, 0]) for image in ds.images] == list(picked)  # each image is its own file's
    with pytest.raises(data.DataError, match="unreadable images"):  # the whole folder holds the bad file
        data.load_folder(str(tmp_path), codec, 160, 60, 1)
    holding = next(seed for seed in range(100) if outside in data.sample_indices(40, 10, seed))
    with pytest.raises(data.DataError, match=r"1 of 10 files \(a seeded sample of its 40\) are unusable"):
        data.load_folder(str(tmp_path), codec, 160, 60, 1, sample=10, seed=holding)  # a sample holding it


def test_limit_draws_the_same_sample_of_labels_of_a_folder_and_of_a_teachers_readings(tmp_path):
    """LIMIT's sample is one draw: the labelled images a run trains on (load_data), the ones the charset finder
    counts (labelled_items) and, in a run without labels, the teacher's readings it keeps (taught_set) are the
    same seeded choice of the folder's images in their order."""
    from core import sets
    from core.plan import Settings
    names = [f"{i:04d}.png" for i in range(30)]
    for i, name in enumerate(names):
        write_png(tmp_path / name, (200, 50), color=i)
    (tmp_path / "labels.tsv").write_text("".join(f"{n}\t{i % 100:04d}\n" for i, n in enumerate(names)))
    s = Settings().replace(TRAIN_DIR=str(tmp_path), LIMIT=8, SEED=4, IMAGE_WIDTH=160, IMAGE_HEIGHT=60, CHANNELS=1,
                           CACHE_DIR="")
    codec = data.Codec("0123456789", 4)
    picked = [names[i] for i in data.sample_indices(30, 8, 5)]
    assert [os.path.basename(p) for p, _ in sets.labelled_items(s)] == picked
    loaded = data.load_folder(str(tmp_path), codec, 160, 60, 1, sample=8, seed=sets.limit_draw(s)[1])
    assert [os.path.basename(p) for p in loaded.paths] == picked
    read = ([str(tmp_path / n) for n in names], [f"{i:04d}" for i in range(30)])
    taught = sets.taught_set(s, codec, read, quiet=True)
    assert [os.path.basename(p) for p in taught.paths] == picked and taught.texts == [n[:4] for n in picked]
    assert data.take_sample(names, 0, 5) == names and data.take_sample(names, 30, 5) == names


def test_a_folder_of_folders_names_its_subfolders(tmp_path, monkeypatch):
    """A folder whose images sit in subfolders (an unpacked archive, a set's train/ and test/): training,
    test.py, predict.py and UNLABELED_DIR say that only the folder itself is read and name the subfolders that
    hold images, and one to name instead."""
    import predict
    from core.plan import Settings
    from core.pseudo import load_unlabeled

    for sub, n in (("train", 3), ("test", 2)):
        (tmp_path / sub).mkdir()
        for i in range(n):
            write_png(tmp_path / sub / f"AB1{i}.png")
    (tmp_path / "notes").mkdir()  # no images: not named
    hint = (f"; images are read from the folder itself, not its subfolders, and these hold images: test (2), "
            f"train (3); name one of them, e.g. {tmp_path / 'train'}")  # the one holding the most
    assert data.subfolder_hint(str(tmp_path)) == hint
    assert data.subfolder_hint(str(tmp_path / "notes")) == "" and data.subfolder_hint(str(tmp_path / "none")) == ""
    with pytest.raises(data.DataError) as e:
        data.load_folder(str(tmp_path), data.Codec("AB012", 4), 160, 60, 1)
    assert str(e.value).endswith(hint)
    paths, warnings = predict.expand([str(tmp_path), str(tmp_path / "train")])
    assert len(paths) == 3 and warnings == [f"{tmp_path}: a folder without images (.png, .jpg, .jpeg, .bmp, .gif, "
                                            f".webp, .tif, .tiff){hint}"]
    codec = data.Codec("AB012", 4)
    labelled = data.CaptchaSet(["x.png"], ["AB10"], np.zeros((1, 60, 160, 1), np.uint8), codec)
    s = Settings().replace(TRAIN_DIR=str(tmp_path / "train"), UNLABELED_DIR=str(tmp_path), IMAGE_WIDTH=160,
                           IMAGE_HEIGHT=60, CHANNELS=1, CACHE_DIR="")
    with pytest.raises(Exception) as e:
        load_unlabeled(s, labelled, None, None, codec, quiet=True)
    assert str(e.value) == f"UNLABELED_DIR={tmp_path}: it holds no image files (.png, .jpg, .jpeg, .bmp, .gif, " \
                           f".webp, .tif, .tiff){hint}"
    from core.teach import teach_unlabelled  # no labels at all: the teacher's folder
    with pytest.raises(data.DataError) as e:
        teach_unlabelled(s.replace(TRAIN_DIR=str(tmp_path), TEACHER="ddddocr"), say=lambda line: None)
    assert str(e.value).endswith(hint)


def test_bad_labels_are_named(tmp_path):
    for name in ["AB12.png", "AZ12.png", "AB1.png", "ABBBB_2.png"]:
        write_png(tmp_path / name)
    with pytest.raises(data.DataError) as e:
        data.load_folder(str(tmp_path), data.Codec("AB12", 4), 160, 60, 1)
    msg = str(e.value)
    assert "3 of 4 files are unusable" in msg
    assert "AZ12.png" in msg and "not in CHARSET 'Z'" in msg
    assert "AB1.png" in msg and "length 3, expected 4" in msg and "ABBBB_2.png" in msg
    ds = data.load_folder(str(tmp_path), data.Codec("AB12", 4), 160, 60, 1, skip_bad=True, quiet=True)
    assert ds.texts == ["AB12"]


def test_unreadable_and_missing_images_are_named(tmp_path):
    write_png(tmp_path / "AAAA.png")
    (tmp_path / "BBBB.png").write_bytes(b"this is not an image")
    good = (tmp_path / "AAAA.png").read_bytes()
    (tmp_path / "ABAB.png").write_bytes(good[: len(good) // 2])  # truncated
    with pytest.raises(data.DataError) as e:
        data.load_folder(str(tmp_path), data.Codec("AB", 4), 160, 60, 1, str(tmp_path / "cache"))
    msg = str(e.value)
    assert "2 unreadable images" in msg and "BBBB.png" in msg and "ABAB.png" in msg and "AAAA.png" not in msg
    assert not os.path.exists(tmp_path / "cache")  # a failed decode is not cached

    tsv = tmp_path / "t"
    tsv.mkdir()
    write_png(tsv / "a.png")
    (tsv / "labels.tsv").write_text("a.png\tAB\ngone.png\tBA\n")
    with pytest.raises(data.DataError, match="1 listed files are missing: gone.png"):
        data.load_folder(str(tsv), data.Codec("AB", 2), 160, 60, 1)


def test_empty_or_missing_folder(tmp_path):
    with pytest.raises(data.DataError, match="no images found"):
        data.load_folder(str(tmp_path), data.Codec("AB", 2), 160, 60, 1)
    with pytest.raises(data.DataError, match="no such folder"):
        data.load_folder(str(tmp_path / "nope"), data.Codec("AB", 2), 160, 60, 1)
    (tmp_path / "captchas.zip").write_bytes(b"PK\x05\x06" + bytes(18))  # an archive named as the folder
    with pytest.raises(data.DataError) as e:
        data.load_folder(str(tmp_path / "captchas.zip"), data.Codec("AB", 2), 160, 60, 1)
    assert str(e.value).endswith("is not a folder (a regular file); unpack it first and name the folder it gives")


@pytest.mark.slow
def test_train_reports_bad_data_without_traceback(tmp_path):
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "A_B.png").write_bytes(b"garbage")
    p = run_script("train.py", f"--train_dir={tmp_path}/train", "--test_dir=",
                   f"--cache_dir={tmp_path}/c", "--charset=AB", "--length=4", "--image_width=160",
                   "--image_height=60", "--channels=1", check=False)
    assert p.returncode != 0 and "Traceback" not in p.stdout
    assert "A_B.png" in p.stdout and "length 1, expected 4" in p.stdout and "unreadable" in p.stdout


@pytest.mark.skipif(not os.path.isdir(SHARED), reason="../shared/datasets not present")
@pytest.mark.parametrize("name, charset, length, size, n", [
    ("captcha_images_v2", "2345678bcdefgmnpwxy", 5, (200, 50, 1), 208),
    ("henan_digits", "0123456789", 4, (70, 30, 3), 2000),
])
def test_shared_real_datasets_load(tmp_path, name, charset, length, size, n):
    ds = data.load_folder(os.path.join(SHARED, name, "test"), data.Codec(charset, length), *size)
    assert len(ds) == n and ds.images.shape == (n, size[1], size[0], size[2])
    assert ds.images.std() > 10  # real pictures, not blanks


def test_readings_wrong_by_a_letters_case_alone_are_counted():
    """test.py says how many wrong readings differ from their label in case alone (a site may take them)."""
    from core.metrics import case_only
    assert case_only(["Ab3x", "Ab3x", "Ab3x", "Ab3x", "12"], ["aB3x", "Ab3x", "Ab3y", "ab3", "12"]) == 1


def test_one_confusion_making_most_mistakes_is_named_with_the_fix():
    """test.py's advice when one look-alike pair makes most character mistakes (a rare labelled character read
    as its look-alike), and none when the mistakes are spread or few."""
    from core.metrics import confusions, one_confusion

    truths = ["8AB2"] * 30 + ["XYZ9", "WXYZ"]
    preds = ["BAB2"] * 30 + ["XYZ8", "WXY2"]
    advice = one_confusion(confusions(truths, preds))
    assert advice.startswith("one confusion makes most mistakes: '8' read as 'B' 30 times, of 32 wrong characters")
    assert "label more images that show '8'" in advice and "python app.py --label_dir=<your training folder>" in advice
    assert one_confusion(confusions(["8AB2"] * 9, ["BAB2"] * 9)) == ""  # too few to say
    spread = confusions(["8A"] * 12 + ["ZC"] * 12 + ["QD"] * 12, ["BA"] * 12 + ["2C"] * 12 + ["OD"] * 12)
    assert one_confusion(spread) == ""  # a third each: no one pair
    assert one_confusion(confusions(["AB"], ["AB"])) == ""


def test_a_character_the_model_stops_reading_is_named_after_training():
    """train.py's advice at the end of a run with unlabelled images: a character the labels hold that all but
    vanishes from the model's readings of the unlabelled images (a rare 8 read as B), named with its likely
    look-alike and the fix; nothing when every character is read about as often as the labels hold it."""
    import random
    from core.metrics import rare_readings

    rng = random.Random(0)
    charset = "2345678ABCDEFGHJKMNPQRSTUVWXYZ"
    labels = ["".join(rng.choice(charset) for _ in range(4)) for _ in range(100)]
    truths = ["".join(rng.choice(charset) for _ in range(4)) for _ in range(3000)]
    assert rare_readings(labels, truths) == ""  # read as the labels hold them, give or take a draw of 100
    advice = rare_readings(labels, [t.replace("8", "B") for t in truths])
    eights = sum(t.count("8") for t in labels)
    assert advice.startswith(f"the model reads '8' in 0 of the 12000 characters it reads in the unlabelled images, "
                             f"against about {eights / 400 * 12000:.0f} by its share of the labels ({eights} of 400)")
    assert "(it reads 'B' 2.1 times as often as the labels hold it)" in advice
    assert advice.endswith("label more images that show '8' (the labelling page, python app.py "
                           "--label_dir=<your training folder>) and train again")
    assert "--label_dir=my_captchas)" in rare_readings(labels, [t.replace("8", "B") for t in truths],
                                                        folder="my_captchas")
    assert rare_readings(labels, [t.replace("8", "B") for t in truths[:10]]) == ""  # too few readings to say
    few = [t for t in labels if "8" in t][:3]  # 12 labelled characters, an '8' among them: no share to go by
    assert rare_readings(few, [t.replace("8", "B") for t in truths]) == ""
    assert rare_readings(few, [t.replace("8", "B") for t in truths], min_chars=1) != ""
    assert rare_readings([], truths) == "" and rare_readings(labels, []) == ""


def test_an_image_with_an_exif_orientation_is_read_upright(tmp_path):
    """A JPEG stored sideways with an orientation tag (a phone's photo or screenshot) is read as a browser shows
    it, by training, reading and the teacher alike: the labelling page shows it upright, and the label is the
    upright text. A tag that says nothing is to be turned leaves the pixels alone."""
    from core.teacher import _image_input
    upright = np.zeros((30, 90, 3), np.uint8)
    upright[:, :10] = 255  # a white band at the left
    exif = Image.Exif()
    exif[data.ORIENTATION] = 6  # "turn 90 degrees clockwise to view"
    Image.fromarray(upright).transpose(Image.Transpose.ROTATE_90).save(tmp_path / "turned.jpg", exif=exif, quality=95)
    read = data.load_image(str(tmp_path / "turned.jpg"), 0, 0, 3)
    assert read.shape == (30, 90, 3) and read[:, :10].mean() > 200 and read[:, -10:].mean() < 50
    assert _image_input(str(tmp_path / "turned.jpg")).size == (90, 30)
    exif[data.ORIENTATION] = 1
    Image.fromarray(upright).save(tmp_path / "plain.jpg", exif=exif, quality=95)
    assert data.load_image(str(tmp_path / "plain.jpg"), 0, 0, 3).shape == (30, 90, 3)


def test_labels_written_in_decomposed_unicode_read_as_one_character(tmp_path):
    """é written as e + a combining accent (file names from macOS) is the same character as é: one class, one
    position, whether the label comes from a file name or labels.tsv."""
    import unicodedata
    nfd, nfc = unicodedata.normalize("NFD", "é12"), "é12"
    assert nfd != nfc
    names = tmp_path / "names"
    names.mkdir()
    write_png(names / f"{nfd}_1.png")
    write_png(names / f"{nfc}_2.png")
    assert {label for _, label in data.read_labels(str(names))} == {nfc}
    tsv = tmp_path / "tsv"
    tsv.mkdir()
    write_png(tsv / "a.png")
    (tsv / "labels.tsv").write_text(f"a.png\t{nfd}\n", encoding="utf-8")
    assert data.read_labels(str(tsv))[0][1] == nfc


def test_the_test_folder_is_never_the_training_folder_and_its_problems_say_it_is_the_test_folder(tmp_path):
    """TEST_DIR naming TRAIN_DIR (however spelt) is refused; a test label with a character the training labels
    lack says which folder it is, that it was taken by itself when TEST_DIR was not given, and what to do."""
    import config
    from core import sets
    from core.plan import Settings
    train, test = tmp_path / "train", tmp_path / "test"
    train.mkdir()
    test.mkdir()
    for name in ("AB12_1.png", "BA21_2.png"):
        write_png(train / name)
    write_png(test / "AB1C_1.png")
    s = Settings().replace(TRAIN_DIR=str(train), TEST_DIR=f"{tmp_path}/./train", CACHE_DIR="", IMAGE_WIDTH=100,
                           IMAGE_HEIGHT=40, CHANNELS=1)
    with pytest.raises(config.ConfigError, match="is TRAIN_DIR"):
        sets.test_folder(s)
    s = s.replace(TEST_DIR="")
    assert sets.test_folder(s) == str(test)
    with pytest.raises(data.DataError) as e:
        sets.load_data(s, data.Codec("12AB", 4), quiet=True)
    assert str(e.value).startswith("test folder (the folder 'test' beside TRAIN_DIR, taken by itself")
    assert "AB1C_1.png" in str(e.value) and "label training images that show it" in str(e.value)
    assert "A character no training label holds ('C')" in str(e.value)
    os.remove(test / "AB1C_1.png")
    write_png(test / "AB1_1.png")  # a wrong length: the message names it, without the hint about characters
    with pytest.raises(data.DataError) as e:
        sets.load_data(s, data.Codec("12AB", 4), quiet=True)
    assert "AB1_1.png" in str(e.value) and "no training label holds" not in str(e.value)


def test_test_images_that_are_copies_of_training_images_are_named(tmp_path):
    """A test image byte for byte the same as a labelled or unlabelled training image (a folder copied twice) is
    named in a warning: the test figure would count an image the run learnt. Same size, other bytes: no copy."""
    from core import sets
    train, test = tmp_path / "train", tmp_path / "test"
    train.mkdir()
    test.mkdir()
    write_png(train / "AB12_1.png", color=10)
    write_png(train / "BA21_2.png", color=20)
    (test / "AB12_9.png").write_bytes((train / "AB12_1.png").read_bytes())
    write_png(test / "BA21_8.png", color=30)
    assert os.path.getsize(test / "BA21_8.png") == os.path.getsize(train / "BA21_2.png")  # same size, other bytes
    said = []
    codec = data.Codec("12AB", 4)
    test_set = data.load_folder(str(test), codec, 100, 40, 1)
    sets.say_test_copies(test_set, [str(train / "AB12_1.png"), str(train / "BA21_2.png")], said.append)
    assert len(said) == 1 and "1 of the 2 test images are byte-identical copies" in said[0] and "AB12_9.png" in said[0]
    said.clear()
    sets.say_test_copies(test_set, [str(train / "BA21_2.png")], said.append)
    assert said == []


def test_a_file_labels_tsv_lists_outside_its_folder_is_named_by_its_whole_path(tmp_path):
    """labels.tsv may list images elsewhere (`../x.png`, an absolute path); a problem with one names the whole
    path, not a bare file name the folder does not hold."""
    folder = tmp_path / "f"
    folder.mkdir()
    write_png(folder / "AB10.png")
    (folder / "labels.tsv").write_text(f"AB10.png\tAB10\n../gone.png\tAB11\n{tmp_path}/else/x.png\tAB12\n")
    with pytest.raises(data.DataError) as e:
        data.load_folder(str(folder), data.Codec("AB01", 4), 100, 40, 1)
    assert f"listed files are missing: {tmp_path}/gone.png, {tmp_path}/else/x.png" in str(e.value)


def test_a_test_label_a_case_sensitive_model_never_learnt_is_named_not_blamed_on_case(tmp_path):
    """test.py on a model of a case-sensitive site (letters in both cases) and a test label with 'n' where training
    held only 'N': the missing character is named with the fix, not "train with --case_sensitive=0"; a model whose
    charset is of one case still gets the case advice."""
    from core.inference import check_labels
    write_png(tmp_path / "aBn1_x.png")
    with pytest.raises(data.DataError) as e:
        check_labels(data.Codec("1BNab", 4), str(tmp_path), "m.pt")
    assert "holds letters in both cases, but no training label held 'n'" in str(e.value)
    assert "case_sensitive" not in str(e.value)
    with pytest.raises(data.DataError, match="its labels are lower-case.*--case_sensitive=0"):
        check_labels(data.Codec("1ABN", 4), str(tmp_path), "m.pt")


def test_images_far_from_the_others_size_are_named_before_training(tmp_path):
    """A 1-pixel-high strip or a screenshot among captchas is stretched to the run's size: the data block names it.
    Captchas whose width follows their text (2x-5x wider) are not far."""
    from core import plan
    from core.plan import Settings
    for i in range(30):
        Image.new("L", (60 + 10 * (i % 20), 40), 255).save(tmp_path / f"AB{i:02d}_{i}.png")
    Image.new("L", (120, 1), 255).save(tmp_path / "CD12_1.png")
    Image.new("L", (1920, 1080), 255).save(tmp_path / "CD21_2.png")
    odd, looked = data.odd_sizes([str(p) for p in sorted(tmp_path.glob("*.png"))])
    assert looked == 32 and sorted(os.path.basename(p) for p, _ in odd) == ["CD12_1.png", "CD21_2.png"]
    said = []
    plan.resolve_data(Settings().replace(TRAIN_DIR=str(tmp_path), CACHE_DIR=""), said.append)
    assert any(line.startswith("  warning   2 of 32 images looked at are far from the others' size (") and
               "CD12_1.png 120x1" in line and "is stretched to" in line for line in said), said


def test_letters_labelled_now_and_then_in_the_other_case_are_named_with_the_fix(tmp_path, monkeypatch):
    """A captcha drawn in small letters whose labeller typed a capital now and then (a real set: 75 of 815 labels,
    'Y' 29 times beside 'y' 95) trains 14 rare capitals as classes of their own: the data block says so and names
    --case_sensitive=0. Labels holding both cases alike (a captcha that draws both), one case only, or a run that
    sets CASE_SENSITIVE itself get no warning."""
    import config
    from core import plan
    from core.plan import Settings
    stray = ["abcd"] * 40 + ["Abcd"] * 3 + ["abcD"] * 2 + ["xyzw"] * 10
    assert data.rare_case(stray) == [("A", 3, 42), ("D", 2, 43)]
    assert data.rare_case(["abcd", "ABCD", "aBcD", "xYzw"]) == []       # both cases alike
    assert data.rare_case(["abcd", "xyzw"]) == [] and data.rare_case(["1234"]) == []
    assert data.rare_case(["abcd"] * 10 + ["Abcd"] * 6) == []            # 'A' over half as often as 'a'
    for i, text in enumerate(stray):
        Image.new("L", (100, 40), 255).save(tmp_path / f"{text}_{i}.png")
    said = []
    plan.resolve_data(Settings().replace(TRAIN_DIR=str(tmp_path), CACHE_DIR=""), said.append)
    assert any(line.startswith("  warning   the labels hold 2 letters in both cases, each mostly in one ('A' 3 "
                               "times beside 'a' 42, 'D' 2 times beside 'd' 43) in 5 of 55 labels (Abcd_40.png "
                               "'Abcd', Abcd_41.png 'Abcd', Abcd_42.png 'Abcd', abcD_43.png 'abcD', abcD_44.png "
                               "'abcD'): if the captcha draws them in one case, correct those labels, or train "
                               "without case, --case_sensitive=0") for line in said), said
    monkeypatch.setattr(config, "given", lambda: {"CASE_SENSITIVE"})
    said = []
    plan.resolve_data(Settings().replace(TRAIN_DIR=str(tmp_path), CACHE_DIR=""), said.append)
    assert not any("both cases" in line for line in said), said
