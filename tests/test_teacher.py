"""core/teacher.py: a pretrained reader (ddddocr) that labels captchas with no labels given.

The inference helpers (infer_charset_length, usefulness, filter_readings) and the missing-package message
always run; the readings themselves need the optional ddddocr package (requirements-ddddocr.txt) and read a
few captcha_images_v2 test images in place and one seeded ImageCaptcha.
"""
import io
import math
import os
import random
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from core.teacher import (MARGIN_GAIN, MARGINS, Reading, TeacherError, choose_margin,  # noqa: E402
                          filter_readings, infer_charset_length, load_teacher, usefulness, with_margin)

V2_TEST = os.path.join(os.path.dirname(ROOT), "shared", "datasets", "captcha_images_v2", "test")


def readings_of(texts, confidence=0.95):
    return [Reading(t, confidence, tuple([confidence ** (1 / max(1, len(t)))] * len(t))) for t in texts]


def captcha_like(count, charset="2345678bcdefgmnpwxy", length=5, seed=0):
    rng = random.Random(seed)
    return ["".join(rng.choice(charset) for _ in range(length)) for _ in range(count)]


# ---- inference from readings (no ddddocr needed) ----

def test_infer_charset_length_ignores_stray_characters_and_odd_lengths():
    good = readings_of(captcha_like(200))
    # what ddddocr does to a few: a stray character in front (CJK, punctuation, upper case), a dropped one
    stray = readings_of(["飞3eny7", ",d3ycn", "Lc43b4", "wyp4", "7bw5ym"], confidence=0.2)
    charset, lengths, case, description = infer_charset_length(good + stray)
    assert charset == "2345678bcdefgmnpwxy"
    assert lengths == (5,)
    assert case == "lower"
    assert "length 5" in description and "19 characters" in description and "\n" not in description


def test_infer_charset_keeps_a_rare_real_character_and_drops_characters_read_twice():
    # 36 characters, 'w' in a fifth of its fair share (a real set's rare letter); '/' and 'Z' read twice each
    texts = captcha_like(480, "0123456789abcdefghijklmnopqrstuvxyz", 4) + ["w" + t[1:] for t in captcha_like(10, "0123456789", 4, seed=1)]
    found = infer_charset_length(readings_of(texts + ["ab/c", "a/bc", "Zabc", "abZc"]))
    assert found.charset == "0123456789abcdefghijklmnopqrstuvwxyz"


def test_infer_uses_all_readings_when_few_are_confident():
    low = readings_of(captcha_like(50, "0123456789", 4), confidence=0.3)
    found = infer_charset_length(low)
    assert (found.charset, found.lengths, found.case) == ("0123456789", (4,), None)
    assert "50 readings of 50 images" in found.description


def test_infer_several_lengths_and_case():
    texts = [t for n in (4, 5, 6) for t in captcha_like(100, length=n, seed=n)]
    found = infer_charset_length(readings_of(texts))
    assert found.lengths == (4, 5, 6) and "lengths 4, 5, 6" in found.description
    upper = infer_charset_length(readings_of([t.upper() for t in texts]))
    assert upper.case == "upper" and upper.charset == "2345678BCDEFGMNPWXY"
    # half the letters in each case (how ddddocr reads upper-case captchas): counted in lower case
    rng = random.Random(4)
    mixed = ["".join(c.upper() if rng.random() < 0.5 else c for c in t) for t in texts]
    found = infer_charset_length(readings_of(mixed))
    assert found.case == "mixed" and found.charset == "2345678bcdefgmnpwxy"
    assert "counted in lower case" in found.description
    kept = infer_charset_length(readings_of(mixed), case_sensitive=True)
    assert kept.case == "mixed" and set(kept.charset) == set("2345678bcdefgmnpwxyBCDEFGMNPWXY")


def test_infer_nothing_read():
    found = infer_charset_length([Reading("", 0.0, (), "UnidentifiedImageError: x")] * 3)
    assert (found.charset, found.lengths, found.case) == ("", (), None)
    assert tuple(found)[:3] == ("", (), None)


def test_usefulness_accepts_a_readable_style():
    ok, reason = usefulness(readings_of(captcha_like(200)), name="ddddocr")
    assert ok, reason
    assert "5 characters from '2345678bcdefgmnpwxy'" in reason and "\n" not in reason


@pytest.mark.parametrize("texts, confidence, words", [
    (["12+3=?", "7x8=?", "15-6=?", "3+4=", "9÷3=?"] * 40, 0.95, "arithmetic"),
    (["验证码", "上以久", "飞机"] * 60 + captcha_like(20), 0.95, "CJK"),
    ([""] * 180 + captcha_like(20), 0.95, "no text in 90 %"),
    ([t[:rng] for t, rng in zip(captcha_like(200, length=9), [1, 2, 3, 4, 5, 6, 7, 8, 9] * 30)], 0.95,
     "text of one length"),
    (captcha_like(200), 0.3, "with confidence >= 0.9"),
])
def test_usefulness_refuses_what_cannot_teach(texts, confidence, words):
    ok, reason = usefulness(readings_of(texts, confidence), name="ddddocr", labels=100)
    assert not ok
    assert words in reason, reason
    assert reason.startswith("ddddocr read") and reason.endswith("label 100 images instead") and "\n" not in reason


def test_usefulness_of_nothing():
    ok, reason = usefulness([])
    assert not ok and "no images" in reason
    ok, reason = usefulness([Reading("", 0.0, (), "UnidentifiedImageError: cannot identify image file 'a.png'")] * 4)
    assert not ok and reason.startswith("100 % of the 4 files given to ddddocr are not images it can open") \
        and "'a.png'" in reason and reason.endswith("give it a folder of captcha images"), reason
    ok, reason = usefulness([Reading("", 0.0, (), "OSError: x")] + [Reading("", 0.2)] * 3)
    assert not ok and "read no text in 100 % of 4 images (1 of them unreadable files)" in reason, reason


def test_the_border_is_the_one_read_most_surely_and_none_unless_it_gains():
    sample = lambda *confidences: [Reading("ab12", c) for c in confidences]
    margin, why = choose_margin({0.0: sample(0.9, 0.7), 0.25: sample(0.95, 0.85), 0.5: sample(0.99, 0.9),
                                 1.0: sample(0.6, 0.6)})
    assert margin == 0.5 and "border of 0.5 of its height" in why and "0.5: 0.945" in why and "TEACHER_MARGIN" in why
    # a border must beat none by MARGIN_GAIN: a tie, or a hair better, reads the images as they are
    margin, why = choose_margin({0.0: sample(0.9), 0.25: sample(0.9 + MARGIN_GAIN / 2), 0.5: sample(0.9)})
    assert margin == 0.0 and why.startswith("reads the images as they are"), why
    assert choose_margin({0.0: sample(0.5), 1.0: sample(0.8)})[0] == 1.0
    assert choose_margin({m: [] for m in MARGINS})[0] == 0.0  # nothing read: no border
    assert MARGINS[0] == 0.0


def test_a_border_widens_the_image_in_its_edge_colour():
    from PIL import Image

    image = Image.new("RGB", (100, 40), (200, 180, 160))
    image.paste((0, 0, 0), (40, 10, 60, 30))  # ink in the middle
    wide = with_margin(image, 0.5)
    assert wide.size == (140, 40) and wide.mode == "RGB"
    assert wide.getpixel((0, 20)) == wide.getpixel((139, 20)) == (200, 180, 160)
    assert wide.getpixel((20 + 50, 20)) == (0, 0, 0)  # the image itself, shifted by the border
    grey = with_margin(image.convert("L"), 0.25)
    assert grey.size == (120, 40) and grey.getpixel((0, 0)) == image.convert("L").getpixel((0, 0))
    assert with_margin(image, 0.0) is image


def test_two_readers_are_trusted_where_they_agree():
    """Each image opened and prepared once and read by both models; a reading is trusted where they agree."""
    from PIL import Image

    from core.teacher import AgreeingTeacher

    class Stub:  # stands for one model: the image's width picks its reading
        def __init__(self, readings):
            self.readings, self.asked = readings, []

        def _columns(self, charset):
            return f"columns of {charset}"

        def _input(self, image, margin):
            self.asked.append((image.size[0], margin))
            if image.size[0] == 4:
                raise OSError("gone")
            return image.size[0] - 1

        def _softmax(self, x):
            return x

        def _reading(self, probs, columns):
            assert columns == "columns of ab123"
            return self.readings[probs]

    teacher = object.__new__(AgreeingTeacher)
    teacher.margin = 0.5
    teacher.first = Stub([Reading("ab12", 0.6, (0.9, 0.9, 0.9, 0.8)), Reading("ab12", 0.99), Reading("AB12", 0.7)])
    teacher.second = Stub([Reading("ab12", 0.8), Reading("ab13", 0.99), Reading("ab12", 0.9)])
    shown = []
    images = [Image.new("L", (w, 10)) for w in (1, 2, 3, 4)]  # the stand-in models read the widths
    agreed, differ, cased, unreadable = teacher.read(images, charset="ab123",
                                                     progress=lambda n, total: shown.append((n, total)))
    assert agreed == Reading("ab12", 0.8, (0.9, 0.9, 0.9, 0.8))  # the first's text and characters, the surer one
    assert differ.text == "ab12" and differ.confidence == 0.0  # they differ: no run trains on it
    assert cased.text == "AB12" and cased.confidence == 0.9  # case aside (ddddocr's case cannot be trusted)
    assert unreadable == Reading("", 0.0, (), "OSError: gone")
    assert teacher.first.asked == [(w, 0.5) for w in (1, 2, 3, 4)] and teacher.second.asked == []  # once
    assert shown == [(1, 4), (2, 4), (3, 4), (4, 4)]  # progress after each image


def test_filter_readings():
    readings = [Reading("ab12", 0.95), Reading("ab1", 0.99), Reading("AB12", 0.97), Reading("ab12", 0.5),
                Reading("", 1.0), Reading("", 0.0, (), "OSError: gone"), Reading("a-12", 0.99), Reading("xy99", 0.9)]
    assert filter_readings(readings, 0.9) == [0, 1, 2, 6, 7]
    assert filter_readings(readings, 0.9, lengths=(4,)) == [0, 2, 6, 7]
    # a letter in either case passes a charset holding one case of it (as Teacher.read reads them)
    assert filter_readings(readings, 0.9, (4,), "ab12") == [0, 2]
    assert filter_readings(readings, 0.0, (3, 4), "abxy129") == [0, 1, 2, 3, 7]
    assert filter_readings([], 0.9) == []


def test_missing_package_names_the_fix(monkeypatch):
    monkeypatch.setitem(sys.modules, "ddddocr", None)  # import ddddocr now raises ImportError
    with pytest.raises(TeacherError) as e:
        load_teacher("ddddocr")
    assert str(e.value) == ("--teacher=ddddocr needs the ddddocr package: pip install -r requirements-ddddocr.txt")
    with pytest.raises(TeacherError) as e:
        load_teacher("ddddocr2")  # the pair: the name asked for, not its models'
    assert str(e.value) == ("--teacher=ddddocr2 needs the ddddocr package: pip install -r requirements-ddddocr.txt")


def test_unknown_teacher_lists_the_known_ones():
    with pytest.raises(TeacherError, match=r"unknown teacher 'paddle': known teachers are ddddocr"):
        load_teacher("paddle")


# ---- readings (need ddddocr) ----

@pytest.fixture(scope="module")
def teacher():
    pytest.importorskip("ddddocr", reason="ddddocr is optional: pip install -r requirements-ddddocr.txt")
    return load_teacher("ddddocr", threads=1)


@pytest.fixture(scope="module")
def v2_files():
    if not os.path.isdir(V2_TEST):
        pytest.skip(f"{V2_TEST} not found (the shared real sets)")
    names = ["22d5n.png", "23mdg.png", "2cegf.png", "3eny7.png", "7wyp4.png", "nbwnn.png"]
    return [os.path.join(V2_TEST, n) for n in names if os.path.exists(os.path.join(V2_TEST, n))]


def test_reads_real_captchas_as_ddddocr_does(teacher, v2_files):
    import ddddocr

    readings = teacher.read(v2_files)
    ocr = ddddocr.DdddOcr(show_ad=False)
    assert [r.text for r in readings] == [ocr.classification(p) for p in v2_files]
    labels = [os.path.basename(p)[:-4] for p in v2_files]
    right = [r.text == label for r, label in zip(readings, labels)]
    assert sum(right) >= len(labels) - 2, [r.text for r in readings]
    for r in readings:
        assert 0.0 <= r.confidence <= 1.0 and not r.error
        assert len(r.chars) == len(r.text)
        assert r.confidence == pytest.approx(math.prod(r.chars))
    # right readings are the confident ones here: '3eny7' reads with a stray CJK character in front
    worst_right = min(r.confidence for r, ok in zip(readings, right) if ok)
    assert all(r.confidence < worst_right for r, ok in zip(readings, right) if not ok)


def test_charset_restricts_the_reading(teacher, v2_files):
    path = v2_files[0]  # 22d5n.png
    free, = teacher.read([path])
    assert free.text == "22d5n"
    digits, = teacher.read([path], charset="0123456789")
    assert set(digits.text) <= set("0123456789")
    assert digits.confidence < free.confidence  # letters forced into digits are not believed
    upper, = teacher.read([path], charset="23456789ABCDEFGHJKLMNPQRSTUVWXYZ")
    assert upper.text == "22D5N" and upper.confidence >= free.confidence - 1e-6
    # the inferred charset mends a stray character: '3eny7' reads with a CJK character in front without it
    stray, = teacher.read([os.path.join(V2_TEST, "3eny7.png")])
    mended, = teacher.read([os.path.join(V2_TEST, "3eny7.png")], charset="2345678bcdefgmnpwxy")
    assert stray.text != "3eny7" and mended.text == "3eny7"


def test_unreadable_images_read_empty(teacher, v2_files, tmp_path):
    with open(v2_files[0], "rb") as f:
        good = f.read()
    truncated = good[: len(good) // 3]
    items = [b"not an image", good, str(tmp_path / "missing.png"), truncated, b"", v2_files[0]]
    readings = teacher.read(items)
    assert len(readings) == len(items)
    for i in (0, 2, 3, 4):
        assert readings[i].text == "" and readings[i].confidence == 0.0 and readings[i].error
    assert readings[1] == readings[5] and readings[1].text == "22d5n"  # bytes and path read the same
    with pytest.raises(TypeError, match="list"):
        teacher.read(v2_files[0])


def test_ddddocrs_beta_model_reads_too_and_the_pair_agrees_on_what_both_read(v2_files):
    pytest.importorskip("ddddocr", reason="ddddocr is optional: pip install -r requirements-ddddocr.txt")
    pair = load_teacher("ddddocr2", threads=1)
    assert pair.name == "ddddocr2" and pair.second.session is not pair.first.session
    beta, = pair.second.read(v2_files[:1])
    assert beta.text == "22d5n" and beta.confidence > 0.5
    readings = pair.read(v2_files)
    assert sum(r.confidence > 0.5 for r in readings) >= len(v2_files) - 2, [(r.text, r.confidence) for r in readings]
    # one pass reading each image with both models reads as each model alone, combined
    for charset, margin in ((None, 0.0), ("0123456789abcdefghijklmnopqrstuvwxyz", 0.5)):
        both = pair.read(v2_files, charset, margin=margin)
        alone = zip(*(m.read(v2_files, charset, margin=margin) for m in (pair.first, pair.second)))
        assert both == [Reading(a.text, max(a.confidence, b.confidence) if a.text.lower() == b.text.lower() else 0.0,
                                a.chars) for a, b in alone]


def test_the_teacher_reads_in_processes_as_it_reads_in_one(teacher, tmp_path, monkeypatch):
    """THREADS 0 or N > 1: the teacher reads in processes of one thread each (ddddocr reads about twice as fast so
    on two cores as on two threads of one process); the readings are the same, in the same order; a teacher that
    cannot load in them says why; where no process can be started, the command reads them itself."""
    import numpy as np
    from PIL import Image

    from core import teach
    from core.teacher import ReaderPool
    rng = np.random.default_rng(0)
    paths = []
    for i in range(2 * ReaderPool.TASK + 7):  # three tasks, the last short
        paths.append(str(tmp_path / f"{i:03d}.png"))
        Image.fromarray(rng.integers(0, 255, (30, 90), dtype=np.uint8)).save(paths[-1])
    one = teach.read_images("ddddocr", paths, "0123456789", 0.25, threads=1, say=None)
    assert teach.read_images("ddddocr", paths, "0123456789", 0.25, threads=2, say=None) == one
    assert one == teacher.read(paths, "0123456789", margin=0.25)
    assert teach.readers(0) >= 1 and teach.readers(3) == 3
    with pytest.raises(TeacherError, match="unknown teacher 'nope'"):
        teach.read_images("nope", paths, threads=2, say=None)

    def no_processes(*args):
        raise PermissionError("no processes here")
    monkeypatch.setattr(teach, "ReaderPool", type("Refused", (), {"TASK": ReaderPool.TASK, "__init__": no_processes}))
    assert teach.read_images("ddddocr", paths, "0123456789", 0.25, threads=2, say=None) == one  # read here instead


@pytest.mark.slow
def test_the_teachers_processes_end_with_a_killed_command(teacher, tmp_path):
    """kill -9 of a run while its teacher reads in processes: they stop within seconds instead of reading the rest
    of the folder, or waiting for work, for no one."""
    import signal
    import subprocess
    import time
    from PIL import Image
    for i in range(2000):  # 40 tasks: a minute's reading for two processes
        Image.new("L", (90, 30), i % 250).save(tmp_path / f"{i:04d}.png")
    script = ("import os, sys; sys.path.insert(0, os.getcwd()); from core import teach; "
              f"teach.read_images('ddddocr2', sorted(os.path.join({str(tmp_path)!r}, n) for n in "
              f"os.listdir({str(tmp_path)!r})), threads=2, say=None)")
    command = subprocess.Popen([sys.executable, "-c", script], cwd=os.path.dirname(os.path.dirname(__file__)))

    def readers():
        found = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open(f"/proc/{pid}/stat") as f:
                    parent = int(f.read().rsplit(")", 1)[1].split()[1])
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    spawned = b"multiprocessing.spawn" in f.read()
            except (OSError, IndexError, ValueError):
                continue
            if parent == command.pid and spawned:
                found.append(int(pid))
        return found

    deadline = time.time() + 30
    while len(started := readers()) < 2 and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)  # reading
    command.send_signal(signal.SIGKILL)
    command.wait()
    assert len(started) == 2

    def alive(pid):  # a process not yet ended (a zombie has ended)
        try:
            with open(f"/proc/{pid}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()[0] != "Z"
        except OSError:
            return False

    deadline = time.time() + 12  # the task each was reading (50 images), then they see the command gone
    while any(map(alive, started)) and time.time() < deadline:
        time.sleep(0.2)
    assert not any(map(alive, started)), "the teacher's processes outlived the killed command"


def test_an_image_far_wider_than_a_captcha_is_not_read(teacher):
    """A banner or a panorama among the captchas: an empty reading saying why, not gigabytes of scores."""
    from PIL import Image
    wide, ok = teacher.read([Image.new("RGB", (3000, 20), "white"), Image.new("RGB", (600, 20), "white")])
    assert wide.error == ("ValueError: image of 3000x20 pixels is too wide to be a captcha (more than 32 times as "
                          "wide as high)") and wide.confidence == 0.0
    assert ok.error == ""


def test_a_bilevel_image_reads_as_its_grey_copy(teacher, v2_files):
    """PIL resizes a bilevel ("1") or palette image by its nearest pixel whatever filter is asked: the teacher turns
    it to colour first, so a black-and-white captcha reads as the same captcha in grey (lzu_digits' bilevel PNGs:
    ddddocr as it comes reads 64 % of its test images, the teacher 93 % of its training images)."""
    from PIL import Image

    grey = Image.open(v2_files[0]).convert("L")
    bilevel = grey.point(lambda v: 255 if v > 140 else 0).convert("1")
    as_bilevel, as_grey = teacher.read([bilevel, bilevel.convert("L")])
    assert as_bilevel.text == as_grey.text == "22d5n"
    assert as_bilevel.confidence == pytest.approx(as_grey.confidence, abs=1e-4)


def test_a_border_gives_back_the_letter_at_the_edge(teacher):
    """Text that touches the image's right edge loses its last letter, read with confidence; with a border (the
    default chooses one on a sample, core.teach.margin_of) the teacher reads it."""
    import numpy as np
    from PIL import Image

    path = os.path.join(V2_TEST, "2cegf.png")
    if not os.path.exists(path):
        pytest.skip(f"{path} not found (the shared real sets)")
    image = Image.open(path).convert("L")
    ink = np.where((np.asarray(image) < 100).sum(0) > 2)[0]
    tight = image.crop((int(ink.min()), 0, int(ink.max()) + 1, image.size[1]))  # the text's first to last column
    plain, bordered = teacher.read([tight], margin=0.0)[0], teacher.read([tight], margin=0.5)[0]
    assert plain.text == "2ceg" and plain.confidence > 0.9  # the edge letter dropped, surely
    assert bordered.text == "2cegf"
    assert teacher.read([image], margin=0.0)[0].text == "2cegf"  # with the room the site gave it


def test_generated_captcha_and_pil_input(teacher):
    pytest.importorskip("captcha")
    import captcha.image
    from PIL import Image

    class Seeded:  # captcha 0.7.1 draws from `secrets`: the same stand-in captchaGenerator.py uses
        def __init__(self, rng):
            self.randbelow, self.randbits, self.choice = (lambda n: rng.randrange(n)), rng.getrandbits, rng.choice

    saved = captcha.image.secrets
    captcha.image.secrets = Seeded(random.Random(7))
    try:
        image = captcha.image.ImageCaptcha(width=160, height=60).generate_image("4827")
    finally:
        captcha.image.secrets = saved
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    rgba = image.convert("RGBA")
    readings = teacher.read([image, buffer.getvalue(), rgba], charset="0123456789")
    assert readings[0] == readings[1] == readings[2]  # PIL image, PNG bytes, opaque RGBA: one reading
    assert set(readings[0].text) <= set("0123456789") and 0.0 <= readings[0].confidence <= 1.0
    # transparent PNGs often hide black under their clear background: it is laid on white before reading
    # (DdddOcr's png_fix), so black ink on a clear background reads as black ink on white
    ink = image.convert("L").point(lambda v: 255 if v < 160 else 0)
    clear = Image.new("RGBA", image.size, (0, 0, 0, 0))
    clear.putalpha(ink)
    on_white = Image.eval(ink, lambda v: 255 - v)
    seen, expected = teacher.read([clear, on_white], charset="0123456789")
    assert seen == expected and seen.text


def test_zero_labels_only_without_labels(tmp_path):
    """No labels: TEACHER, the training folder is the unlabelled one and has no labels.tsv. With LIMIT the run
    asks for a sample of labelled images, so the file names are the labels (a few labels, the rest unlabelled)."""
    from core import plan
    from core.teach import zero_labels
    folder = tmp_path / "f"
    folder.mkdir()
    (folder / "ab12.png").write_bytes(b"")
    s = plan.Settings().replace(TEACHER="ddddocr", TRAIN_DIR=str(folder), UNLABELED_DIR=str(folder), ONLINE=False)
    assert zero_labels(s)
    assert not zero_labels(s.replace(LIMIT=100))
    assert not zero_labels(s.replace(TEACHER=""))
    assert not zero_labels(s.replace(UNLABELED_DIR=str(tmp_path)))
    (folder / "labels.tsv").write_text("ab12.png\tab12\n")
    assert not zero_labels(s)


def test_teacher_auto_is_ddddocrs_pair_where_installed_for_a_run_with_some_labels(tmp_path, monkeypatch):
    """TEACHER "auto" (the default): a run with some labels and unlabelled images gets ddddocr2 (ddddocr's two
    models) where ddddocr is installed, and says so; where it is not, none, and the line says how to add it. A run
    without unlabelled images, ONLINE, PSEUDO_RATIO 0 with labels, or with no labels at all (which names its
    teacher) gets none; "", "ddddocr" and "ddddocr2" stay."""
    from core import plan, teach
    folder = tmp_path / "f"
    folder.mkdir()
    (folder / "ab12.png").write_bytes(b"")
    (folder / "labels.tsv").write_text("ab12.png\tab12\n")
    s = plan.Settings().replace(TEACHER="auto", TRAIN_DIR=str(folder), UNLABELED_DIR=str(folder), ONLINE=False)
    said = []
    monkeypatch.setattr(teach, "unavailable", lambda name: "")
    assert teach.resolve_teacher(s, said.append).TEACHER == "ddddocr2"
    assert said[-1].startswith("TEACHER auto: ddddocr is installed: ddddocr2's readings")
    assert "--teacher= trains without it" in said[-1]
    monkeypatch.setattr(teach, "unavailable", lambda name: "ddddocr does not load: why")
    assert teach.resolve_teacher(s, said.append).TEACHER == ""
    assert said[-1].startswith("TEACHER auto: no teacher (ddddocr does not load: why; with a few labels its "
                               "readings of the unlabelled images read far better: 100 labels read 96 %")
    monkeypatch.setattr(teach, "unavailable", lambda name: "")
    said.clear()
    for other in (s.replace(UNLABELED_DIR=""), s.replace(ONLINE=True), s.replace(PSEUDO_RATIO=0.0)):
        assert teach.resolve_teacher(other, said.append).TEACHER == ""  # PSEUDO_RATIO 0: no unlabelled image is used
    (folder / "labels.tsv").unlink()  # no labels at all: "auto" does not read the file names as no labels
    assert teach.resolve_teacher(s, said.append).TEACHER == ""  # ... and says that no image is left unlabelled
    assert len(said) == 1 and "read as labels" in said[0] and "UNLABELED_DIR adds none" in said[0]
    assert teach.resolve_teacher(s.replace(LIMIT=100), said.append).TEACHER == "ddddocr2"  # a sample of the names
    # no labels.tsv and names that evidently hold no labels (a word and a counter): "auto" reads them
    for i in range(25):
        (folder / f"img{i}.png").write_bytes(b"")
    assert teach.resolve_teacher(s, said.append).TEACHER == "ddddocr2"
    assert said[-1].startswith(f"TEACHER auto: {folder} has no labels (25 of 26 file names are the same 'img' and a "
                               f"number, no labels.tsv): ddddocr2 reads every image") and "--label_dir=" in said[-1]
    monkeypatch.setattr(teach, "unavailable", lambda name: "ddddocr is not installed")
    assert teach.resolve_teacher(s, said.append).TEACHER == ""
    assert said[-1].startswith("TEACHER auto: no teacher (ddddocr is not installed; the images have no labels: 25 of")
    monkeypatch.setattr(teach, "unavailable", lambda name: "")
    (folder / "ab12.png").unlink()
    for i in range(25):
        (folder / f"img{i}.png").rename(folder / f"{i + 1}.png")  # names that count the images: the same
    assert teach.resolve_teacher(s, said.append).TEACHER == "ddddocr2"
    assert "has no labels (the 25 file names count the images (1 to 25), no labels.tsv)" in said[-1]
    # its readings: the labels
    assert teach.resolve_teacher(s.replace(PSEUDO_RATIO=0.0), said.append).TEACHER == "ddddocr2"
    for explicit in ("", "ddddocr", "ddddocr2"):
        assert teach.resolve_teacher(s.replace(TEACHER=explicit), said.append).TEACHER == explicit


def test_auto_teacher_names_the_teacher_the_labelling_page_uses(monkeypatch):
    from core import teacher
    monkeypatch.setattr(teacher, "unavailable", lambda name: "")
    assert teacher.auto_teacher("auto") == "ddddocr2" and teacher.auto_teacher("") == ""
    monkeypatch.setattr(teacher, "unavailable", lambda name: "not installed")
    assert teacher.auto_teacher("auto") == "" and teacher.auto_teacher("ddddocr") == "ddddocr"


def test_unavailable_says_why_a_teacher_cannot_read(monkeypatch):
    """'' where ddddocr loads; a missing package names the install command; a broken one says what failed."""
    from core import teacher
    monkeypatch.setitem(sys.modules, "ddddocr", None)  # as if it were not installed
    assert teacher.unavailable("ddddocr") == ("ddddocr is not installed: pip install -r requirements-ddddocr.txt "
                                              "adds it")
    assert teacher.unavailable("ddddocr2") == teacher.unavailable("ddddocr")  # its two models, one package
    monkeypatch.delitem(sys.modules, "ddddocr")
    if teacher.unavailable("ddddocr").endswith("not installed: pip install -r requirements-ddddocr.txt adds it"):
        pytest.skip("the optional ddddocr package is not installed here")
    assert teacher.unavailable("ddddocr") == ""

    def broken(name, threads=1):
        raise TeacherError("its model was not found")
    monkeypatch.setattr(teacher, "load_teacher", broken)
    assert teacher.unavailable("ddddocr") == "ddddocr does not load: its model was not found"


def test_an_interrupted_read_is_kept_and_the_next_run_goes_on(tmp_path, monkeypatch):
    """Ctrl-C while the teacher reads a large folder: what it has read is kept in CACHE_DIR, the line says so, and
    the same command reads only the rest; a finished read is kept whole."""
    from core import teach
    from core.plan import Settings

    calls = []

    class Teacher:
        def read(self, paths, charset=None, progress=None, margin=None):
            calls.append(list(paths))
            if len(calls) == 3 and interrupt:
                raise KeyboardInterrupt
            return [Reading(os.path.basename(p)[:4], 0.9, (0.9,) * 4) for p in paths]

    monkeypatch.setattr(teach, "load_teacher", lambda name, threads=1: Teacher())
    monkeypatch.setattr(teach, "CHUNK", 2)
    paths = [str(tmp_path / f"{i}abc.png") for i in range(5)]
    s = Settings().replace(TEACHER="ddddocr", CACHE_DIR=str(tmp_path / "cache"))
    interrupt, said = True, []
    with pytest.raises(KeyboardInterrupt) as e:
        teach.read(s, paths, say=said.append)
    assert str(e.value) == (f"the teacher read 4 of 5 images; they are kept in {tmp_path / 'cache'}, and the same "
                            f"command goes on from there")
    interrupt, calls[:] = False, []
    readings = teach.read(s, paths, say=said.append)
    assert calls == [paths[4:]] and [r.text for r in readings] == ["0abc", "1abc", "2abc", "3abc", "4abc"]
    assert said == [f"  teacher   4 of 5 images read before, the same way (kept in {tmp_path / 'cache'}); "
                    f"reading the other 1"]
    calls[:] = []
    assert teach.read(s, paths) == readings and calls == []  # kept whole


def test_a_long_read_says_how_far_how_fast_and_how_long_is_left(tmp_path, monkeypatch, capsys):
    from core import teach

    class Teacher:
        def read(self, paths, charset=None, progress=None, margin=None):
            return [Reading("1234", 0.9) for _ in paths]

    monkeypatch.setattr(teach, "load_teacher", lambda name, threads=1: Teacher())
    monkeypatch.setattr(teach, "CHUNK", 2)
    monkeypatch.setattr(teach, "LOG_EVERY", 2)  # a log (not a terminal): a line every LOG_EVERY images
    teach.read_images("ddddocr", [str(tmp_path / f"{i}.png") for i in range(5)], threads=1, say=None)
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(" (")[0] for line in lines] == ["  teacher   2/5", "  teacher   4/5", "  teacher   5/5"]
    assert "a second, about" in lines[0] and "left)" in lines[0] and lines[2].endswith(" a second)")
    assert teach._so_far(1000, 10972, 43.0) == "  teacher   1000/10972 (23 a second, about 7 min left)"
    assert teach._so_far(10000, 10972, 430.0) == "  teacher   10000/10972 (23 a second, about 42 s left)"


def test_a_few_images_are_read_here_on_one_thread_whatever_threads(tmp_path, monkeypatch):
    """Fewer images than two of a reader process's tasks are read in the command's own process, on one thread
    (ddddocr reads slower on two threads than on one); more are read in processes (below)."""
    from core import teach
    from core.plan import Settings

    asked = []

    class Teacher:
        def read(self, paths, charset=None, progress=None, margin=None):
            return [Reading("1234", 0.9) for _ in paths]

    monkeypatch.setattr(teach, "load_teacher", lambda name, threads=1: asked.append(threads) or Teacher())
    for threads in (0, 1, 3):
        teach.read(Settings().replace(TEACHER="ddddocr", CACHE_DIR="", THREADS=threads), [str(tmp_path / "a.png")])
    assert asked == [1, 1, 1]
    from core.device import cpu_count
    assert teach.readers(0) == min(teach.MAX_READERS, cpu_count()) and teach.readers(3) == 3
    monkeypatch.setenv("LOCAL_WORLD_SIZE", str(cpu_count()))  # torchrun, a process a core: one reader each
    assert teach.readers(0) == 1


def test_the_teachers_readings_are_kept_per_image_and_shared_by_every_read_of_them(tmp_path, monkeypatch):
    """The loop's next run (a few images labelled since, so its unlabelled images are fewer) reads nothing again;
    images added to the folder or changed are read alone; a read with the charset in the other case (the page's
    capitals, the labels' lower case) reads nothing again and writes the readings in its case, while another
    charset or border reads them again; a link reads as the file it names; a run that dies (not Ctrl-C) keeps what
    it read but its last SAVE_EVERY images at most."""
    from core import teach

    folder = tmp_path / "f"
    folder.mkdir()
    paths = []
    for i in range(6):
        (folder / f"{i}.png").write_bytes(b"x" * (i + 1))  # never opened: the stand-in teacher reads the names
        paths.append(str(folder / f"{i}.png"))
    calls = []

    class Teacher:
        def read(self, items, charset=None, progress=None, margin=None):
            items = list(items)
            calls.append(([os.path.basename(p) for p in items], charset, margin))
            if fail and len(calls) == fail:
                raise RuntimeError("killed")
            text = "AB12" if charset is None or "A" in charset else "ab12"
            return [Reading(text, 0.9, (0.99, 0.99, 0.95, 0.97)) for _ in items]

    monkeypatch.setattr(teach, "load_teacher", lambda name, threads=1: Teacher())
    monkeypatch.setattr(teach, "CHUNK", 2)
    cache = str(tmp_path / "c")
    read = lambda ps, charset="12AB", margin=0.0: teach.read_images(  # noqa: E731
        "ddddocr", ps, charset, margin, cache_dir=cache, say=lambda *_: None)
    fail = 0
    first = read(paths)
    assert [r.text for r in first] == ["AB12"] * 6 and len(calls) == 3
    calls.clear()
    assert read(paths[1:3] + paths[4:]) == first[1:3] + first[4:] and calls == []  # two labelled since
    (folder / "2.png").write_bytes(b"changed")
    (folder / "6.png").write_bytes(b"new")
    read(paths + [str(folder / "6.png")])
    assert calls == [(["2.png", "6.png"], "12AB", 0.0)]
    calls.clear()
    lower = read(paths, "ba21")  # the same characters, the letters in lower case: the same readings
    assert calls == [] and [r.text for r in lower] == ["ab12"] * 6 and lower[0].chars == first[0].chars
    read(paths[:1], "12ABC")
    read(paths[:1], "12AB", 0.5)
    assert calls == [(["0.png"], "12ABC", 0.0), (["0.png"], "12AB", 0.5)]
    links = tmp_path / "links"
    links.mkdir()
    os.symlink(paths[3], links / "x.png")
    calls.clear()
    assert read([str(links / "x.png")]) == first[3:4] and calls == []
    calls.clear()
    monkeypatch.setattr(teach, "SAVE_EVERY", 4)  # images
    many = []
    for i in range(10):
        (folder / f"m{i}.png").write_bytes(b"m")
        many.append(str(folder / f"m{i}.png"))
    fail = 4  # dies reading the fourth chunk: the first two were written after the second, the third not yet
    with pytest.raises(RuntimeError):
        read(many)
    calls.clear()
    fail = 0
    read(many)
    assert [names for names, _, _ in calls] == [["m4.png", "m5.png"], ["m6.png", "m7.png"], ["m8.png", "m9.png"]]
