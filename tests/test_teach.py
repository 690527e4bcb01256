"""The teacher in a training run (TEACHER): no labels, a few labels, the labelling page's suggestions, and what a
user sees when the teacher is missing or cannot help."""
import os
import shutil
import sys

import pytest

from conftest import DIGITS, ROOT, run_script

pytestmark = pytest.mark.slow
CIV2 = os.path.join(os.path.dirname(ROOT), "shared", "datasets", "captcha_images_v2")
needs_civ2 = pytest.mark.skipif(not os.path.isdir(CIV2), reason=f"the real set {CIV2} is not here")


def as_readings(read):
    """A stub of teach.read written as (text, confidence, error) rows, returning Readings as teach.read does."""
    from core.teacher import Reading
    return lambda *a, **k: [Reading(t, c, error=e) for t, c, e in read(*a, **k)]


def unlabelled(tmp_path, n):
    """A folder of links to n captcha_images_v2 training images, without labels (their names do not count)."""
    folder = tmp_path / "unlabelled"
    folder.mkdir()
    names = sorted(f for f in os.listdir(os.path.join(CIV2, "train")) if f.endswith(".png"))[:n]
    for i, name in enumerate(names):
        os.symlink(os.path.join(CIV2, "train", name), folder / f"img{i:04d}.png")
    return folder, names


def args(tmp_path, folder, *more):
    return [f"--train_dir={folder}", f"--unlabeled_dir={folder}", "--teacher=ddddocr", f"--cache_dir={tmp_path}/c",
            f"--weights_dir={tmp_path}/w", f"--results={tmp_path}/r.txt", "--threads=1", *more]


@needs_civ2
def test_no_labels_the_teacher_reads_the_folder_and_the_model_trains_on_its_readings(tmp_path):
    pytest.importorskip("ddddocr", reason="the teacher is the optional ddddocr package")
    folder, _ = unlabelled(tmp_path, 160)
    out = run_script("train.py", *args(tmp_path, folder, "--epochs=2", f"--test_dir={CIV2}/test")).stdout
    assert "labels read by ddddocr" in out and "(TEACHER_THRESHOLD) are the training labels" in out, out
    assert "length    5 (inferred)" in out  # the site's length, from the readings alone
    import torch
    ckpt = torch.load(f"{tmp_path}/w/cnn_ctc_best.pt", map_location="cpu", weights_only=True)
    # letters without case (the teacher's case cannot be trusted), within the site's characters
    assert set(ckpt["charset"]) <= set("2345678BCDEFGMNPWXY") and not ckpt["case_sensitive"], ckpt["charset"]
    assert ckpt["config"]["TEACHER"] == "ddddocr"
    # its text keeps clear of the edges: read as it is (a border costs it confidence), and the run keeps the choice
    assert "teacher   ddddocr reads the images as they are (mean confidence by border 0: " in out, out
    assert ckpt["config"]["TEACHER_MARGIN"] == 0.0
    assert "==> best:" in out.splitlines()[-1]


def test_a_missing_teacher_package_is_one_line_with_the_fix(tmp_path):
    folder = tmp_path / "f"
    folder.mkdir()
    from PIL import Image
    for i in range(3):
        Image.new("L", (100, 40), 255).save(folder / f"{i}.png")
    code = ("import sys, runpy; sys.modules['ddddocr'] = None; sys.argv = ['train.py'] + sys.argv[1:]; "
            "runpy.run_path('train.py', run_name='__main__')")
    import subprocess
    p = subprocess.run([sys.executable, "-c", code, *args(tmp_path, folder)], cwd=ROOT, capture_output=True,
                       text=True, timeout=300)
    assert p.returncode == 1 and "Traceback" not in p.stderr, p.stderr
    assert p.stderr.strip().splitlines()[-1] == ("error: --teacher=ddddocr needs the ddddocr package: "
                                                 "pip install -r requirements-ddddocr.txt")


def test_a_folder_of_non_images_is_one_line(tmp_path):
    pytest.importorskip("ddddocr", reason="the teacher is the optional ddddocr package")
    folder = tmp_path / "f"
    folder.mkdir()
    for i in range(5):
        (folder / f"{i}.png").write_bytes(b"not an image at all")
    p = run_script("train.py", *args(tmp_path, folder), check=False)
    assert p.returncode == 1 and "Traceback" not in p.stdout, p.stdout
    last = p.stdout.strip().splitlines()[-1]
    assert last.startswith("error: 100 % of the 5 files given to ddddocr are not images it can open") \
        and "0.png" in last and last.endswith("give it a folder of captcha images"), last


def test_a_style_the_teacher_cannot_read_is_refused_with_the_reason(tmp_path):
    pytest.importorskip("ddddocr", reason="the teacher is the optional ddddocr package")
    from core.generate import generate
    folder = tmp_path / "sums"
    generate(str(folder), 40, 3, DIGITS, 4, 160, 60, processes=1, quiet=True, answer="arith")
    os.remove(folder / "labels.tsv")  # no labels: the teacher alone
    p = run_script("train.py", *args(tmp_path, folder), check=False)
    assert p.returncode == 1 and "Traceback" not in p.stdout, p.stdout
    assert p.stdout.strip().splitlines()[-1].startswith("error: ddddocr read"), p.stdout[-2000:]


def test_few_labels_the_teachers_readings_outside_the_labels_charset_are_never_pseudo_labels(tmp_path, monkeypatch):
    from core import data, teach
    from core.plan import Settings

    readings = [("1234", 0.99, ""), ("12a4", 0.99, ""), ("123", 0.99, ""), ("5678", 0.2, ""), ("0000", 0.7, ""),
                ("", 0.0, "OSError: unreadable")]
    monkeypatch.setattr(teach, "read", as_readings(lambda s, paths, charset=None, say=print: readings))
    said = []
    s = Settings().replace(TEACHER="ddddocr", TEACHER_THRESHOLD=0.5)
    chosen = teach.first_pseudo_labels(s, [f"{i}.png" for i in range(6)], data.Codec(DIGITS, 4), said.append)
    assert chosen == {0: "1234", 4: "0000"}  # 'a' is outside the charset, '123' too short, 0.2 below the threshold
    assert "2 of 6 unlabelled images" in said[0]


def test_few_labels_a_letter_the_labels_hold_in_both_cases_is_read_without_case_and_either_case_is_right(
        monkeypatch):
    """The teacher cannot tell case: with labels of 0-9a-zA-Z it reads a letter the labels hold in both cases with
    its two cases' probabilities summed (the charset it is given holds the lower case only), its pseudo-label holds
    it in lower case, and the upper case is its candidate at full weight, so that the loss accepts either and the
    labels teach case; a letter the labels hold in one case is read in that case, digits as they are. A candidate
    read without case stands for both cases."""
    import torch

    from core import data, pseudo, teach
    from core.plan import Settings
    from models.losses import candidate, spelled

    readings = [("12ab", 0.99, ""), ("1234", 0.99, ""), ("AB12", 0.99, ""), ("12xz", 0.99, ""), ("1a23", 0.7, ""),
                ("5678", 0.7, ""), ("1023", 0.99, ""), ("1023", 0.99, "")]  # read without case, a letter needs
    # CASELESS_THRESHOLD (0.9), digits do not; the last two: an 'a' and an 'A' read '0'
    asked = []
    monkeypatch.setattr(teach, "read", as_readings(
        lambda s, paths, charset=None, say=print: asked.append(charset) or readings))
    said = []
    s = Settings().replace(TEACHER="ddddocr", TEACHER_THRESHOLD=0.5)
    codec = data.Codec(DIGITS + "abAB" + "XZ", 4)  # a, b in both cases; x, z only as capitals
    chosen = teach.first_pseudo_labels(s, [f"{i}.png" for i in range(8)], codec, said.append)
    assert chosen == {0: "12ab", 1: "1234", 2: "ab12", 3: "12XZ", 5: "5678", 6: "1023", 7: "1023"}
    assert asked == [DIGITS + "abXZ"]
    assert said[0].endswith("; the 2 letters the labels hold in both cases read without case (ddddocr cannot tell "
                            "case; a reading holding one needs confidence >= 0.9): either case is right for them, "
                            "and the labels teach it")
    more = [("1023", 0.99, "")] * 3  # three more readings of '0' that are a '0' (CONFUSED_READS: 5 readings)
    monkeypatch.setattr(teach, "read", as_readings(lambda s, paths, charset=None, say=print: readings + more))
    found = teach.teacher_candidates(s, [f"{i}.png" for i in range(11)],
                                     ["12Ab", "1234", "aB12", "12XZ", "1A23", "5678", "1a23", "1A23"] + ["1023"] * 3,
                                     codec, said.append)
    # its '0' may be an 'a' read without case: both cases are its candidates (2 of the 4 'a's of the readings it
    # keeps read '0', against every '0' read '0': weight 0.5)
    assert found == {"a": (("A", 1.0),), "b": (("B", 1.0),), "0": (("a", 0.5), ("A", 0.5))}, found
    assert "its '0' may be 'a' or 'A' (2 of 5, weight 0.50)" in said[1]

    labels = pseudo.PseudoLabels(s.replace(PSEUDO_MODE="refresh"), ["u.png"], [None], codec, 1)
    tensors = (None, torch.zeros(2, 4, dtype=torch.int64), torch.zeros(2, dtype=torch.int64))
    labels.seed({0: "ab12"}, tensors, said.append, found)
    row = tensors[1][1]
    assert candidate(row, 0)[0].tolist() == [codec.index["A"], codec.index["B"], -1, -1]
    _, texts, _, weights = spelled(row[None], torch.tensor([4]))
    assert sorted(codec.decode(t.tolist()) for t in texts) == ["AB12", "Ab12", "aB12", "ab12"]
    assert weights.tolist() == [0.0] * 4
    monkeypatch.setattr(teach, "read", as_readings(lambda s, paths, charset=None, say=print: readings))
    folded = data.Codec(DIGITS + "AB", 4, case_sensitive=False)  # labels read without case: as they are
    assert teach.first_pseudo_labels(s, [f"{i}.png" for i in range(8)], folded, said.append) == {
        0: "12AB", 1: "1234", 2: "AB12", 4: "1A23", 5: "5678", 6: "1023", 7: "1023"}


def test_few_labels_a_character_the_teacher_reads_for_another_accepts_both_in_its_pseudo_labels(monkeypatch):
    """On the labelled images the teacher reads 'o' where the labels hold 'q' (3 of its 8 'o'; 3 of the labels'
    4 'q', against 5 of 5 'o' read 'o': weight 0.75): its pseudo-labels' 'o' accepts 'q' too, and the labels
    decide; a character read wrong once (7 for 1) or another length counts not. The model's own readings that
    replace the teacher's hold no candidates."""
    import torch

    from core import data, pseudo, teach
    from core.plan import Settings
    from models.losses import MASK, candidate

    truths = ["qo12", "q0o3", "q345", "o567", "o789", "7o12", "1234", "5678", "1q23"]
    read = ["oo12", "o0o3", "o345", "o567", "o789", "1o12", "1234", "567", "1q23"]
    monkeypatch.setattr(teach, "read", as_readings(
        lambda s, paths, charset=None, say=print: [(t, 0.99, "") for t in read]))
    said = []
    s = Settings().replace(TEACHER="ddddocr", TEACHER_THRESHOLD=0.5)
    codec = data.Codec(DIGITS + "oq", 4)
    found = teach.teacher_candidates(s, [f"{i}.png" for i in range(9)], truths, codec, said.append)
    assert found == {"o": (("q", 0.75),)}
    assert "its 'o' may be 'q' (3 of 8, weight 0.75)" in said[0]

    labels = pseudo.PseudoLabels(s.replace(PSEUDO_MODE="refresh"), ["a.png", "b.png"], [None, None], codec, 1)
    tensors = (None, torch.zeros(3, 4, dtype=torch.int64), torch.zeros(3, dtype=torch.int64))
    labels.seed({0: "1o2o", 1: "1234"}, tensors, said.append, found)
    row = tensors[1][1].tolist()
    assert [v & MASK for v in row] == codec.encode("1o2o")
    ids, weights = candidate(tensors[1][1], 0)
    assert ids.tolist() == [-1, codec.index["q"], -1, codec.index["q"]]
    assert weights[1].item() == pytest.approx(0.75, abs=0.005)
    assert candidate(tensors[1][1], 1)[0].tolist() == [-1] * 4
    assert tensors[1][2].tolist() == codec.encode("1234")
    labels._write(tensors, {0: "1o2o", 1: "1234"}, mine={0: "1o2o"})  # the model read it: its reading, as it is
    assert tensors[1][1].tolist() == codec.encode("1o2o")


def test_few_labels_a_character_the_teacher_reads_that_no_label_holds_joins_the_charset(monkeypatch):
    """Labels of digits and lower-case letters without a 'w': the teacher reads 'w' (or 'W') confidently in 6 of
    the unlabelled images: it is found (in lower case, as the labels' letters are); a character read in fewer than
    MISSING_TIMES images, one of a kind the labels do not hold (digits only), or one read so often that the labels
    would hold it (MISSING_EXPECTED) is not. Where the labels hold letters in both cases it is counted in either
    and joins the charset in both."""
    from core import data, teach
    from core.plan import Settings

    read = ["w123", "1w23", "12W3", "ww12", "3w21", "9w87", "k123", "k321", "1234", "5678", "abcd", "xw12"]
    confidence = [0.99] * 11 + [0.2]  # the last too unsure to count
    monkeypatch.setattr(teach, "read", as_readings(lambda s, paths, charset=None, say=print: [
        (t, c, "") for t, c in zip(read, confidence)]))
    s = Settings().replace(TEACHER="ddddocr", TEACHER_THRESHOLD=0.5, UNLABELED_DIR="mine")
    paths = [f"{i}.png" for i in range(len(read))]
    codec = data.Codec(DIGITS + "abcd", 4)
    assert teach.missing_from_labels(s, paths, ["12ab", "34cd"], codec) == [("w", 6)]  # 'k': 2 only
    said = []
    assert teach.missing_from_labels(s, paths, ["1234"] * 2, data.Codec(DIGITS, 4), said.append) == []  # digits only
    # ... yet the teacher reads letters in 9 of its 11 confident readings: said, with the fix
    assert len(said) == 1 and "reads letters in 9 of the 11 unlabelled images" in said[0] and "label images" in said[0]
    said.clear()
    teach.missing_from_labels(s, paths, ["12ab", "34cd"], codec, said.append)
    assert said == []  # the labels hold both kinds
    # 6 of 11 confident readings hold a 'w': 30 labels would hold about 16, so lacking it, the teacher misreads
    assert teach.missing_from_labels(s, paths, ["12ab"] * 30, codec) == []
    assert teach.missing_from_labels(s, paths, ["12ab"] * 9, codec) == [("w", 6)]  # 4.9 of 9 expected: still lacking
    # labels with letters in both cases: counted in either case (5 'w' and a 'W'), and the run adds both cases
    both = data.Codec(DIGITS + "abAB", 4)
    assert teach.missing_from_labels(s, paths, ["12aB", "34Ab"], both) == [("w", 6)]
    from core import run
    monkeypatch.setattr(run, "missing_from_labels", lambda s, paths, labels, codec, say: [("w", 6)])
    monkeypatch.setattr(run, "labelled_items", lambda s: [("l.png", "12aB")])
    monkeypatch.setattr(run.data, "unlabeled_images", lambda folder, exclude: [("u.png", None)])
    said = []
    s2, wider = run.add_missing(s.replace(TRAIN_DIR="mine", TEST_DIR=""), both, said.append)
    assert wider.charset == DIGITS + "ABWabw" == s2.CHARSET and wider.case_sensitive
    assert said[0].startswith("  charset   + 'Ww': the teacher reads 'w' in 6 (either case) of 1 unlabelled images")


def test_few_labels_of_another_script_gain_no_latin_letter(monkeypatch):
    """Labels of digits and Cyrillic letters (a site that draws 'ж', 'х'): the teacher reads Latin letters only, so
    its 'x' for a Cyrillic letter is of no kind the labels hold: not added, and no warning that the labels hold no
    letter; a digit the labels lack is still found."""
    from core import data, teach
    from core.plan import Settings

    read = ["x245", "2x45", "4x52", "xx24", "5x42", "9x87", "1245", "2154", "4125", "5142", "2451"]
    monkeypatch.setattr(teach, "read", as_readings(
        lambda s, paths, charset=None, say=print: [(t, 0.99, "") for t in read]))
    s = Settings().replace(TEACHER="ddddocr", TEACHER_THRESHOLD=0.5, UNLABELED_DIR="mine")
    paths = [f"{i}.png" for i in range(len(read))]
    said = []
    codec = data.Codec("2456789жхб", 4)
    assert teach.missing_from_labels(s, paths, ["24жх", "56бж"], codec, said.append) == [("1", 5)]
    assert said == []


def test_few_labels_a_character_only_the_test_folder_and_the_teacher_show_joins_the_charset_before_the_sets_load(
        tmp_path):
    """A user's 12 labels (digits, lower-case letters) lack the 'w' that 6 of the 24 unlabelled images and a test image show: the
    stand-in teacher reads it, the run adds it to the charset before it loads the sets, so the test folder's 'w123'
    is no bad label, and the model it keeps reads 'w' (its charset). With --charset given, the user's word holds."""
    import subprocess

    from PIL import Image
    folder, test = tmp_path / "mine", tmp_path / "test"
    for f in (folder, test):
        f.mkdir()
    rng = __import__("random").Random(0)
    draw = lambda path: Image.frombytes("L", (64, 24), bytes(rng.randrange(256) for _ in range(64 * 24))).save(path)
    labels = [f"{'abcd'[i % 4]}{i % 10}{'xyz'[i % 3]}{i * 7 % 10}" for i in range(12)]
    for i, text in enumerate(labels):
        draw(folder / f"l{i:02d}.png")
    (folder / "labels.tsv").write_text("".join(f"l{i:02d}.png\t{t}\n" for i, t in enumerate(labels)))
    readings = {f"u{i:02d}.png": ("w" if i < 6 else "") + "a1x2"[:4 - (i < 6)] for i in range(24)}
    for name in readings:
        draw(folder / name)
    for name, text in (("t0.png", "w123"), ("t1.png", "b3z4")):
        draw(test / name)
    (test / "labels.tsv").write_text("t0.png\tw123\nt1.png\tb3z4\n")
    code = ("import os, sys, runpy; import core.teach as t; R = " + repr(readings) + "\n"
            "def read(s, paths, charset=None, say=print, margin=None):\n"
            "    texts = [R.get(os.path.basename(p), '0000') for p in paths]\n"
            "    return [t.Reading(''.join(c for c in x if charset is None or c in charset), 0.99) for x in texts]\n"
            "t.read = read; sys.argv = ['train.py'] + sys.argv[1:]; runpy.run_path('train.py', run_name='__main__')")
    common = [*args(tmp_path, folder, f"--test_dir={test}", "--epochs=1", "--batch_size=4")]
    p = subprocess.run([sys.executable, "-c", code, *common], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    assert "charset   + 'w': the teacher reads 'w' in 6 of 24 unlabelled images" in p.stdout, p.stdout
    import torch
    ckpt = torch.load(f"{tmp_path}/w/cnn_ctc_best.pt", map_location="cpu", weights_only=True)
    assert ckpt["charset"] == DIGITS + "abcdwxyz", ckpt["charset"]
    p = subprocess.run([sys.executable, "-c", code, *common, "--charset=0123456789abcdxyz", "--run=given"], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 1 and "charset   +" not in p.stdout and "t0.png ('w123')" in p.stderr, p.stderr[-2000:]


def test_a_run_reads_with_the_border_the_teacher_reads_a_sample_most_surely_with(tmp_path, monkeypatch):
    """TEACHER_MARGIN -1: the teacher reads a sample of the unlabelled images with each border of MARGINS and the
    run reads them all with the one it is surest with; a border given is kept, and nothing is tried without a
    teacher or where the files are not images."""
    from core import teach
    from core.plan import Settings
    from core.teacher import MARGINS

    folder = tmp_path / "u"
    folder.mkdir()
    for i in range(30):
        (folder / f"{i:02d}.png").write_bytes(b"")  # read by the stand-in teacher below, never opened
    asked, sure = [], {0.0: 0.8, 0.25: 0.85, 0.5: 0.9, 1.0: 0.7}

    def read(s, paths, charset=None, say=print, margin=None):
        asked.append((len(paths), charset, margin))
        return [("ab12", sure[margin], "")] * len(paths)

    monkeypatch.setattr(teach, "read", as_readings(read))
    s = Settings().replace(TEACHER="ddddocr", UNLABELED_DIR=str(folder))
    assert s.TEACHER_MARGIN == -1  # the default: chosen
    said = []
    assert teach.resolve_margin(s, said.append).TEACHER_MARGIN == 0.5
    assert asked == [(30, None, m) for m in MARGINS]
    assert said == ["  teacher   ddddocr reads each image with a border of 0.5 of its height left and right: it reads "
                    "them more surely so (mean confidence by border 0: 0.800, 0.25: 0.850, 0.5: 0.900, 1: 0.700; "
                    "TEACHER_MARGIN)"]
    asked.clear()
    assert teach.resolve_margin(s.replace(TEACHER_MARGIN=0.0), said.append).TEACHER_MARGIN == 0.0  # given: kept
    assert teach.resolve_margin(s.replace(TEACHER=""), said.append).TEACHER_MARGIN == -1  # no teacher
    assert asked == []
    sure = {m: 0.0 for m in MARGINS}
    monkeypatch.setattr(teach, "read", as_readings(
        lambda s, paths, charset=None, say=print, margin=None: asked.append(margin)
                        or [("", 0.0, "UnidentifiedImageError: cannot identify image file")] * len(paths)))
    said.clear()
    assert teach.resolve_margin(s, said.append).TEACHER_MARGIN == 0.0 and asked == [0.0]  # not images: none tried
    assert said == ["  teacher   ddddocr reads the images as they are"]


def test_the_teacher_judges_a_folder_on_a_sample_drawn_across_it(tmp_path, monkeypatch):
    """A folder in name order may group its styles: the first 600 files digits only, the last 600 with letters.
    The sample the charset is inferred from is drawn across the folder, so the letters are in it."""
    from core import teach
    from core.plan import Settings

    folder = tmp_path / "u"
    folder.mkdir()
    for style in "ab":
        for i in range(600):
            (folder / f"{style}{i:04d}.png").write_bytes(b"")  # read by the stand-in teacher below, never opened
    seen = []

    def read(s, paths, charset=None, say=print):
        seen.append((len(paths), charset, {os.path.basename(p)[0] for p in paths}))
        if charset is not None:
            raise KeyboardInterrupt  # the whole folder's read: what was inferred is in `seen`
        return [("1234" if os.path.basename(p)[0] == "a" else "ab5c", 0.95, "") for p in paths]

    monkeypatch.setattr(teach, "read", as_readings(read))
    with pytest.raises(KeyboardInterrupt):
        teach.teach_unlabelled(Settings().replace(TEACHER="ddddocr", UNLABELED_DIR=str(folder)), lambda line: None)
    (sampled, _, styles), (_, charset, _) = seen
    assert sampled == teach.SAMPLE and styles == {"a", "b"}
    assert charset == "12345abc", charset
    assert teach.sample_of(list(range(10))) == list(range(10))


def test_a_few_more_labels_leave_the_teachers_sample_as_it_was(tmp_path, monkeypatch):
    """The sample the teacher reads first (margin, missing characters, the page's charset) is drawn across the
    folder, and keeps the images still unlabelled: the next run of the loop reads the same images but those just
    labelled (their readings kept); where most of the folder is labelled, it is drawn across what is left."""
    from core import teach
    monkeypatch.setattr(teach, "SAMPLE", 20)
    for i in range(100):
        (tmp_path / f"{i:03d}.png").write_bytes(b"x")
    every = [str(tmp_path / f"{i:03d}.png") for i in range(100)]
    whole = teach.sample_of(every, str(tmp_path))
    assert whole == teach.sample_of(every) and len(whole) == 20  # the whole folder: as drawn across the list
    labelled = set(whole[:2]) | set(every[:10])
    left = [p for p in every if p not in labelled]
    assert teach.sample_of(left, str(tmp_path)) == [p for p in whole if p not in labelled]
    assert teach.sample_of(left) != teach.sample_of(left, str(tmp_path))  # across the list: another draw
    most = every[::4]  # three quarters labelled: too few of the folder's sample left
    assert teach.sample_of(most, str(tmp_path)) == teach.sample_of(most) and len(teach.sample_of(most)) == 20


@needs_civ2
def test_the_labelling_page_suggests_the_teachers_readings_before_any_model(tmp_path):
    pytest.importorskip("ddddocr", reason="the teacher is the optional ddddocr package")
    from core import teach
    folder, names = unlabelled(tmp_path, 40)
    found = teach.PageReader("ddddocr", str(folder)).read(sorted(os.listdir(folder)))
    assert len(found) == 40
    right = sum(found[f"img{i:04d}.png"]["text"] == os.path.splitext(n)[0] for i, n in enumerate(names))
    assert right >= 28, right  # ddddocr reads 86 % of this set's test part; lower case kept where it reads it
    for s in found.values():
        assert 0 <= s["confidence"] <= 1 and len(s["chars"]) == len(s["text"])


def test_the_labelling_pages_teacher_readings_are_kept_and_a_later_start_reads_only_new_or_changed_images(
        tmp_path, monkeypatch):
    """The page's suggestions before any model are kept in CACHE_DIR: a second start reads nothing, one after an
    image changed or was added reads that image alone, with the charset the first start inferred; a cache that
    does not read is read again from the images."""
    from core import teach
    from core.teacher import MARGINS, Reading

    folder = tmp_path / "f"
    folder.mkdir()
    for i in range(4):
        (folder / f"{i}.png").write_bytes(b"x" * (i + 1))  # never opened: the stand-in teacher reads the names
    reads, margins = [], []

    class Stub:
        def read(self, items, charset=None, progress=None, margin=None):
            items = list(items)
            reads.append(([os.path.basename(p) for p in items], charset))
            margins.append(margin)
            return [Reading("ab12", 0.9, (0.99, 0.99, 0.95, 0.97)) for _ in items]

    monkeypatch.setattr(teach, "load_teacher", lambda name, threads=1: Stub())
    told = []

    def ask(names):  # as a start of the page: what was kept, then the others read
        reader = teach.PageReader("ddddocr", str(folder), cache_dir=str(tmp_path / "c"))
        kept = reader.kept(names)
        told.append((len(names) - len(kept), len(kept)))
        return reader.read(names, kept)

    first = ask(["0.png", "1.png", "2.png", "3.png"])
    # the sample with each border (TEACHER_MARGIN), then all with the one it reads most surely (here none)
    assert [names for names, _ in reads] == [["0.png", "1.png", "2.png", "3.png"]] * (len(MARGINS) + 1)
    assert margins == [*MARGINS, 0.0]
    charset = reads[-1][1]
    assert first["2.png"]["text"] == "ab12" and first["2.png"]["chars"][2] == {"char": "1", "confidence": 0.95}
    reads.clear()
    assert ask(["1.png", "2.png", "3.png"]) == {n: first[n] for n in ("1.png", "2.png", "3.png")} and reads == []
    (folder / "2.png").write_bytes(b"changed")
    (folder / "4.png").write_bytes(b"new")
    assert set(ask(["1.png", "2.png", "3.png", "4.png"])) == {"1.png", "2.png", "3.png", "4.png"}
    assert reads == [(["2.png", "4.png"], charset)]  # the first start's charset, no new sample
    assert told == [(4, 0), (0, 3), (2, 2)]
    for cache in (tmp_path / "c").iterdir():
        cache.write_text("{not json")
    reads.clear()
    assert len(ask(["0.png", "1.png", "2.png", "3.png"])) == 4 and len(reads) == len(MARGINS) + 1


def test_a_run_after_the_labelling_page_reads_none_of_the_pages_images_again(tmp_path, monkeypatch):
    """The page reads the folder (its charset inferred, letters in capitals); a run whose labels hold the same
    characters in lower case, with the same border, finds every reading kept, written in its case; a charset that
    differs (a character fewer) reads them again."""
    from core import teach
    from core.plan import Settings
    from core.teacher import Reading

    folder = tmp_path / "f"
    folder.mkdir()
    names = [f"{i}.png" for i in range(6)]
    for i, n in enumerate(names):
        (folder / n).write_bytes(b"x" * (i + 1))  # never opened: the stand-in teacher reads the names
    reads = []

    class Stub:
        def read(self, items, charset=None, progress=None, margin=None):
            items = list(items)
            reads.append((len(items), charset, margin))
            return [Reading("AB12" if charset is None or "A" in charset else "ab12", 0.9, (0.9,) * 4) for _ in items]

    monkeypatch.setattr(teach, "load_teacher", lambda name, threads=1: Stub())
    page = teach.PageReader("ddddocr", str(folder), threads=1, cache_dir=str(tmp_path / "c")).read(names)
    page_charset = reads[-1][1]
    assert page["0.png"]["text"] == "AB12" and page_charset == "12AB"
    reads.clear()
    s = Settings().replace(TEACHER="ddddocr", CACHE_DIR=str(tmp_path / "c"), TEACHER_MARGIN=0.0, THREADS=1)
    paths = [str(folder / n) for n in names[2:]]  # two of them labelled since
    assert [(r.text, r.confidence, r.error) for r in teach.read(s, paths, "12ab")] == [("ab12", 0.9, "")] * 4
    assert reads == []
    teach.read(s, paths, "12a")
    assert reads == [(4, "12a", 0.0)]


@needs_civ2
@pytest.mark.parametrize("setting", ["ddddocr", "auto"])
def test_the_labelling_page_names_the_teacher_as_its_model(tmp_path, monkeypatch, setting):
    pytest.importorskip("ddddocr", reason="the teacher is the optional ddddocr package")
    import config
    from test_label import client_for
    links, _ = unlabelled(tmp_path, 5)
    folder = tmp_path / "copies"  # the page lists a folder's own files, never links
    shutil.copytree(links, folder)
    monkeypatch.setattr(config, "TEACHER", setting)  # "auto" (the default): ddddocr2, ddddocr being installed
    monkeypatch.setattr(config, "CACHE_DIR", str(tmp_path / "cache"))
    name = "ddddocr2" if setting == "auto" else setting
    said = []
    with client_for(folder, messages=said) as c:
        assert c.get("/api/label/stats").json()["model"] == {"name": name, "checkpoint": None, "teacher": True}
        assert c.get("/api/label/next?count=1").json()["items"][0]["text"]  # its reading, typed in
    assert said[0].startswith(f"labelling: {name} reads the 5 images to type its readings in") and "--teacher=" in said[0]
    with client_for(folder, messages=said) as c:  # a second start: its readings are kept
        assert c.get("/api/label/next?count=1").json()["items"][0]["text"]
    assert said[2].startswith(f"labelling: {name} types its readings in before any model is trained") and (
        f"its readings of 5 from an earlier start are kept in {tmp_path / 'cache'}" in said[2]), said[2]


def test_a_confusion_seen_on_a_handful_of_readings_is_no_candidate(monkeypatch):
    """The teacher reads '0' three times on the labelled images, twice where the label holds 'o' (labels the page
    offered least confident first: few read confidently): 2 of 3 may be chance, and at its full weight it would
    teach the mistake, so it is no candidate (CONFUSED_READS); the same share of 6 readings is one."""
    from core import data, teach
    from core.plan import Settings

    s = Settings().replace(TEACHER="ddddocr", TEACHER_THRESHOLD=0.5)
    codec = data.Codec(DIGITS + "o", 4)
    truths, read = ["1o23", "4o56", "7089"], ["1023", "4056", "7089"]
    monkeypatch.setattr(teach, "read", as_readings(
        lambda s, paths, charset=None, say=print: [(t, 0.99, "") for t in read]))
    said = []
    assert teach.teacher_candidates(s, ["a", "b", "c"], truths, codec, said.append) == {} and said == []
    truths, read = truths * 2, read * 2
    assert teach.teacher_candidates(s, list("abcdef"), truths, codec, said.append) == {"0": (("o", 1.0),)}
    assert "its '0' may be 'o' (4 of 6, weight 1.00)" in said[0]


def test_a_folder_too_small_to_learn_from_is_refused_before_an_empty_charset(monkeypatch, tmp_path):
    """Six images with the teacher and no labels: one line saying the folder is too small (MIN_TAUGHT), not an
    empty charset."""
    from PIL import Image

    from core import teach
    from core.plan import Settings
    from core.teacher import TeacherError
    for i in range(6):
        Image.new("L", (100, 40), 200).save(tmp_path / f"{i:05d}.png")
    monkeypatch.setattr(teach, "read", as_readings(
        lambda s, paths, charset=None, say=print: [("1234", 0.99, "")] * len(paths)))
    s = Settings().replace(TRAIN_DIR=str(tmp_path), UNLABELED_DIR=str(tmp_path), TEACHER="ddddocr", CACHE_DIR="")
    with pytest.raises(TeacherError, match="holds 6 images: too few to learn a captcha style from"):
        teach.teach_unlabelled(s, lambda *a: None)


def test_auto_says_when_file_names_read_as_labels_leave_nothing_unlabelled(tmp_path):
    """TEACHER "auto", no labels.tsv, --unlabeled_dir naming the training folder, names that may be labels (numbers
    with gaps, not a counter): the names are the labels, and the run says that no image is left unlabelled and how
    to read the folder without them."""
    from PIL import Image

    from core import teach
    from core.plan import Settings
    for i in (3, 9, 14, 40, 41, 77):
        Image.new("L", (100, 40), 200).save(tmp_path / f"{i:05d}.png")
    said = []
    s = teach.resolve_teacher(Settings().replace(TRAIN_DIR=str(tmp_path), UNLABELED_DIR=str(tmp_path),
                                                 TEACHER="auto"), said.append)
    assert s.TEACHER == "" and len(said) == 1
    assert "read as labels (00003.png -> '00003'" in said[0] and "UNLABELED_DIR adds none" in said[0]
    assert "--teacher=ddddocr2 reads the images without them" in said[0]


def test_a_labels_file_that_lists_no_image_is_a_folder_without_labels(tmp_path):
    """A labels.tsv with its header alone (labelling not begun) makes a run with the teacher one without labels, as
    no labels.tsv does; where labels are needed, its message gives both ways on."""
    from PIL import Image

    from core import data, teach
    from core.plan import Settings
    Image.new("L", (100, 40), 200).save(tmp_path / "a.png")
    (tmp_path / "labels.tsv").write_text("file\tlabel\n")
    s = Settings().replace(TRAIN_DIR=str(tmp_path), UNLABELED_DIR=str(tmp_path), TEACHER="ddddocr")
    assert data.empty_labels_file(str(tmp_path)) and teach.zero_labels(s)
    with pytest.raises(data.DataError) as e:
        data.read_labels(str(tmp_path))
    assert "python app.py --label_dir=" in str(e.value) and "--teacher=ddddocr2" in str(e.value)
    (tmp_path / "labels.tsv").write_text("file\tlabel\na.png\t1234\n")
    assert not data.empty_labels_file(str(tmp_path)) and not teach.zero_labels(s)
