"""Fault injection: full disks, corrupt caches, killed and concurrent writers, every Pillow mode, files that are not
files, decompression bombs, and labels that do not fit. Each must end in the right pixels or one clear message."""
import errno
import io
import os
import signal
import struct
import subprocess
import sys
import threading
import time
import zlib
from contextlib import contextmanager

import numpy as np
import pytest
import torch
from PIL import Image

import config
from core import checkpoint, data
import models
from conftest import run_script
from core.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from core.files import append_row, atomic_write, read_results
from core.generate import generate

RNG = np.random.default_rng(0)
GREY = RNG.integers(0, 256, (20, 32)).astype(np.uint8)
RGB = RNG.integers(0, 256, (20, 32, 3)).astype(np.uint8)
ALPHA = RNG.integers(0, 256, (20, 32)).astype(np.uint8)


@contextmanager
def deadline(seconds):
    """Fail instead of hanging: SIGALRM interrupts a blocking open() (of a FIFO, say) after `seconds`."""
    def timeout(*_):
        raise TimeoutError(f"still blocked after {seconds} s")
    old = signal.signal(signal.SIGALRM, timeout)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def dead_pid():
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def png(path, array):
    Image.fromarray(array).save(path)


def png_header(width, height):
    """A tiny PNG that claims width x height 1-bit pixels (a decompression bomb's header)."""
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))


def on_white(rgb, alpha):
    a = alpha[..., None].astype(np.float64) / 255
    return np.rint(rgb * a + 255 * (1 - a)).astype(np.uint8)


# --- every Pillow mode reads like its 8-bit equivalent ---------------------------------------------------------

def palette_image(alpha=None):
    """(P image, the RGB it shows): random palette, random indices."""
    pal = RNG.integers(0, 256, (256, 3)).astype(np.uint8)
    p = Image.fromarray(GREY).convert("P")  # indices = GREY (a grey palette), replaced below
    p.putpalette(pal.tobytes())
    return p, pal[GREY]


def saved(image, fmt, **kw):
    """`image` written as a `fmt` file and opened again (its bytes kept as .raw)."""
    b = io.BytesIO()
    image.save(b, format=fmt, **kw)
    opened = Image.open(io.BytesIO(b.getvalue()))
    opened.raw = b.getvalue()
    return opened


grey16 = GREY.astype(np.uint16) * 257
MODES = {  # name -> () -> (image in that mode, its 8-bit equivalent as an array: (H, W) grey or (H, W, 3) RGB)
    "1": lambda: (Image.fromarray(GREY > 127), (GREY > 127).astype(np.uint8) * 255),
    "L": lambda: (Image.fromarray(GREY), GREY),
    "LA opaque": lambda: (Image.merge("LA", [Image.fromarray(GREY), Image.new("L", (32, 20), 255)]), GREY),
    "LA on white": lambda: (Image.merge("LA", [Image.fromarray(GREY), Image.fromarray(ALPHA)]),
                           on_white(np.repeat(GREY[..., None], 3, 2), ALPHA)),
    "P": palette_image,
    "PA": lambda: (lambda p, rgb: (p.convert("PA"), rgb))(*palette_image()),
    "P transparent index": lambda: (lambda p, rgb: (p, np.where((GREY == 7)[..., None], 255, rgb).astype(np.uint8)))(
        *palette_image()),
    "RGB": lambda: (Image.fromarray(RGB), RGB),
    "RGBA on white": lambda: (Image.fromarray(np.dstack([RGB, ALPHA])), on_white(RGB, ALPHA)),
    "CMYK": lambda: (Image.fromarray(RGB).convert("CMYK"), RGB),
    "I;16": lambda: (Image.fromarray(grey16), GREY),
    "I;16B": lambda: (Image.frombytes("I;16B", (32, 20), grey16.astype(">u2").tobytes()), GREY),
    "I;16L": lambda: (Image.frombytes("I;16L", (32, 20), grey16.astype("<u2").tobytes()), GREY),
    "I 0-255": lambda: (Image.fromarray(GREY).convert("I"), GREY),
    "I 16-bit values": lambda: (Image.fromarray(grey16.astype(np.int32)), GREY),
    "I negative: stretched": lambda: (Image.fromarray(GREY.astype(np.int32) - 1000), GREY),
    "F 0-255": lambda: (Image.fromarray(GREY).convert("F"), GREY),
    "F 0-1": lambda: (Image.fromarray((GREY / 255).astype(np.float32)), GREY),
    "PNG 16-bit file": lambda: (saved(Image.fromarray(grey16), "PNG"), GREY),
    "TIFF 16-bit file": lambda: (saved(Image.fromarray(grey16), "TIFF"), GREY),
    "TIFF float file": lambda: (saved(Image.fromarray(GREY).convert("F"), "TIFF"), GREY),
    "TIFF CMYK file": lambda: (saved(Image.fromarray(RGB).convert("CMYK"), "TIFF"), RGB),
    "PNG LA file": lambda: (saved(Image.merge("LA", [Image.fromarray(GREY), Image.fromarray(ALPHA)]), "PNG"),
                            on_white(np.repeat(GREY[..., None], 3, 2), ALPHA)),
    "animated GIF: first frame": lambda: (saved(Image.fromarray(GREY), "GIF", save_all=True,
                                                append_images=[Image.fromarray(255 - GREY)]), GREY),
}


def test_stretch_case_is_exact():  # GREY spans 0-255, so its shifted copy stretches back onto itself
    assert GREY.min() == 0 and GREY.max() == 255


@pytest.mark.parametrize("mode", list(MODES))
def test_every_pillow_mode_reads_like_its_8bit_equivalent(mode, tmp_path):
    image, expected = MODES[mode]()
    if mode == "P transparent index":
        image.info["transparency"] = 7
    expected_image = Image.fromarray(expected)
    for channels in (1, 3):
        want = data.load_image(expected_image, 0, 0, channels)
        got = data.load_image(image, 0, 0, channels)
        assert got.shape == want.shape == (20, 32, channels) and got.dtype == np.uint8
        tolerance = 1 if "white" in mode else 0  # alpha compositing rounds
        assert np.abs(got.astype(int) - want).max() <= tolerance, (mode, channels)
    if hasattr(image, "raw"):  # a file: the same through a path, resized
        path = tmp_path / f"x.{image.format.lower()}"
        path.write_bytes(image.raw)
        assert np.array_equal(data.load_image(str(path), 16, 10, 3), data.load_image(expected_image, 16, 10, 3))


# --- files that are not files; decompression bombs --------------------------------------------------------

def test_non_regular_files_are_refused_without_opening(tmp_path):
    os.mkfifo(tmp_path / "fifo.png")
    (tmp_path / "folder.png").mkdir()
    with deadline(10):
        for path, kind in [(tmp_path / "fifo.png", "FIFO"), (tmp_path / "folder.png", "directory"),
                           ("/dev/zero", "character device")]:
            with pytest.raises(data.ImageError, match=kind) as e:
                data.load_image(str(path), 16, 10, 1)
            assert str(path) in str(e.value)
        png(tmp_path / "ABCD.png", GREY)
        with pytest.raises(data.DataError) as e:  # train / test: the folder scan names them, does not hang
            data.load_folder(str(tmp_path), data.Codec("ABCD", 4), 32, 20, 1)
        assert "fifo.png (not a regular file (a FIFO)" in str(e.value) and "folder.png" in str(e.value)


@pytest.mark.parametrize("warnings", ["error", "ignore"])  # "error": as data.py sets it; "ignore": someone reset it
@pytest.mark.parametrize("size", [(50_000, 50_000), (10_000, 10_000), (9_000, 8_000)])
def test_decompression_bombs_are_refused_before_decoding(tmp_path, size, warnings):
    # above 2x Pillow's limit (its error), above its limit (its warning), above our MAX_PIXELS only
    import warnings as w
    (tmp_path / "bomb.png").write_bytes(png_header(*size))
    with w.catch_warnings():
        w.simplefilter(warnings, Image.DecompressionBombWarning)
        with pytest.raises(data.ImageError, match="decompression bomb") as e:
            data.load_image(str(tmp_path / "bomb.png"), 16, 10, 1)
    assert "bomb.png" in str(e.value)


def test_corrupt_images_give_one_message(tmp_path):
    good = io.BytesIO()
    Image.fromarray(RGB).save(good, format="PNG")
    cases = {"garbage.png": b"not an image", "truncated.png": good.getvalue()[:60], "empty.png": b"",
             "eps.png": b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n"}  # EPS would run Ghostscript
    for name, raw in cases.items():
        (tmp_path / name).write_bytes(raw)
        with pytest.raises(data.ImageError) as e:
            data.load_image(str(tmp_path / name), 16, 10, 1)
        assert name in str(e.value)


def tiny_checkpoint(path):
    codec = data.Codec("0123456789", 4)
    build_args = dict(name="cnn", in_channels=1, num_classes=models.head("cnn").num_classes(codec), positions=4,
                      height=32, width=64)
    torch.manual_seed(0)
    save_checkpoint(str(path), models.build_model(**build_args).eval(), build_args, codec, epoch=1)
    return path


@pytest.mark.slow
def test_predict_names_each_bad_file_skips_it_and_fails_at_the_end(tmp_path):
    ckpt = tiny_checkpoint(tmp_path / "m.pt")
    png(tmp_path / "good.png", GREY)
    Image.fromarray(grey16).save(tmp_path / "deep.png")  # 16-bit: read, not white
    (tmp_path / "bomb.png").write_bytes(png_header(50_000, 50_000))
    (tmp_path / "broken.png").write_bytes(b"\x89PNG garbage")
    os.mkfifo(tmp_path / "fifo.png")
    (tmp_path / "dir.png").mkdir()
    p = run_script("predict.py", str(ckpt), str(tmp_path), check=False, timeout=60)
    out = p.stdout
    assert p.returncode == 1 and "Traceback" not in out
    read = [line.split("\t")[0] for line in out.splitlines() if line.count("\t") == 2]
    assert sorted(os.path.basename(f) for f in read) == ["deep.png", "good.png"]
    for name, why in [("bomb.png", "decompression bomb"), ("broken.png", "not an image file"),
                      ("fifo.png", "FIFO"), ("dir.png", "directory")]:
        line = next(line for line in out.splitlines() if name in line and "warning" in line)
        assert why in line, line
    assert "4 of 6 files could not be read" in out


# --- labels that do not fit ---------------------------------------------------------------------------------

def folder_of(tmp_path, names, sub="f"):
    folder = tmp_path / sub
    folder.mkdir()
    for name in names:
        png(folder / name, GREY)
    return folder


def test_copy_markers_are_not_part_of_the_label(tmp_path):
    names = {"AB12 (1).png": "AB12", "AB12(2).png": "AB12", "BA21 copy.png": "BA21", "BA21 copy 2.png": "BA21",
             "1122 - Copy.png": "1122", "1122 - Copy (3).png": "1122", "2211 (copy).png": "2211",
             "2211_7-0000001 (1).png": "2211", "AB12.png": "AB12", "A1B2_copy.jpg": "A1B2"}
    folder = folder_of(tmp_path, names)
    got = {os.path.basename(p): t for p, t in data.read_labels(str(folder))}
    assert got == names
    codec, _ = data.infer_codec(str(folder), "infer", 0)
    assert codec.charset == "12AB" and codec.length == (4, 4)


def test_labels_holding_underscores_stop_with_the_labels_tsv_format(tmp_path):
    folder = folder_of(tmp_path, ["0+15_-.png", "0+12_-(2).png", "0+12_- (3).png", "3+4_-.png", "12-3_.png",
                                  "1+1=2_8.png"])
    with pytest.raises(data.DataError) as e:
        data.read_labels(str(folder))
    msg = str(e.value)
    assert "5 of 6 file names" in msg and "0+15_-.png" in msg and "12-3_.png" in msg and "1+1=2_8" not in msg
    assert "labels.tsv" in msg and "file\tlabel" in msg and "0+12_-(2).png\t0+12_-" in msg
    # the fix the message gives works
    (folder / "labels.tsv").write_text("file\tlabel\n" + "".join(
        f"{n}\t{data._strip_copy(os.path.splitext(n)[0])}\n" for n in sorted(os.listdir(folder)) if n != "labels.tsv"))
    labels = dict((os.path.basename(p), t) for p, t in data.read_labels(str(folder)))
    assert labels["0+12_- (3).png"] == "0+12_-" and labels["12-3_.png"] == "12-3_"


def test_labels_tsv_header_bom_crlf_duplicates(tmp_path):
    folder = folder_of(tmp_path, ["a.png", "b.png", "c.png"])
    tsv = folder / "labels.tsv"
    tsv.write_bytes(b"\xef\xbb\xbffile\tlabel\r\na.png\tAB\r\nb.png\t BA \r\n\r\na.png\tAB\r\nc.png\tAA\textra\r\n")
    assert [(os.path.basename(p), t) for p, t in data.read_labels(str(folder))] == [
        ("a.png", "AB"), ("b.png", "BA"), ("c.png", "AA")]

    tsv.write_bytes(b"a.png\tAB\nb.png\tBA\nc.png\tA\xe9\n")
    with pytest.raises(data.DataError, match=r"labels.tsv:3: byte 0xe9 at column 8 is not UTF-8"):
        data.read_labels(str(folder))
    tsv.write_bytes("a.png\tAB\n".encode("utf-16"))
    with pytest.raises(data.DataError, match="UTF-16"):
        data.read_labels(str(folder))
    tsv.write_text("a.png\tAB\nb.png\tBA\na.png\tBB\nc.png\tAA\nc.png\tAB\n")
    with pytest.raises(data.DataError) as e:
        data.read_labels(str(folder))
    assert "2 files two different labels" in str(e.value)
    assert "a.png (line 1 'AB', line 3 'BB')" in str(e.value) and "c.png (line 4 'AA', line 5 'AB')" in str(e.value)
    tsv.write_text("a.png,AB\nb.png\tBA\n")
    with pytest.raises(data.DataError, match="1 line is not 'file<TAB>label' .separated by a comma.*line 1: 'a.png"):
        data.read_labels(str(folder))


def test_labels_tsv_unlisted_and_missing_files(tmp_path):
    folder = folder_of(tmp_path, [f"{i}.png" for i in range(8)])
    (folder / "labels.tsv").write_text("0.png\tAB\n1.png\tBA\ngone.png\tAA\n")
    with pytest.raises(data.DataError) as e:
        data.load_folder(str(folder), data.Codec("AB", 2), 32, 20, 1)
    msg = str(e.value)
    assert "7 of 9 files are unusable" in msg and "1 listed files are missing: gone.png" in msg
    assert "6 images are not listed in labels.tsv" in msg and "2.png, 3.png, 4.png, 5.png, 6.png, ..." in msg
    ds = data.load_folder(str(folder), data.Codec("AB", 2), 32, 20, 1, skip_bad=True, quiet=True)
    assert ds.texts == ["AB", "BA"]


def test_labels_tsv_names_without_their_extension(tmp_path):
    """A published label list often names `captcha17` for captcha17.jpg: a name without an image extension is the
    one image file of that name plus an extension (the first line too, which is then no header); where two such
    files exist it stays missing. A list none of whose files exists says so, not that no image is readable."""
    folder = folder_of(tmp_path, ["c1.jpg", "c2.jpg", "c3.png", "c3.jpg"])
    (folder / "labels.tsv").write_text("c1\tAB\nc2\tBA\nc3\tAA\n")
    assert [(os.path.basename(p), t) for p, t in data.read_labels(str(folder))] == [
        ("c1.jpg", "AB"), ("c2.jpg", "BA"), ("c3", "AA")]
    with pytest.raises(data.DataError) as e:
        data.load_folder(str(folder), data.Codec("AB", 2), 32, 20, 1)
    assert "1 listed files are missing: c3 (is it c3.jpg or c3.png? write its extension)" in str(e.value)
    with pytest.raises(data.DataError, match=r"none of the 2 labelled files is an existing file \(.*gone1, .*gone2\)"):
        data.infer_geometry([str(folder / "gone1"), str(folder / "gone2")])


def test_published_label_layouts_are_named_in_the_message(tmp_path):
    """Datasets as they are published: `1.png` ... `40.png` with a Kaggle train.csv beside them stop (the numbers
    would be trained on as labels) naming the CSV; `c1.png` ... `c40.png` number the images too; a JSON object
    counts its entries, sidecar text files (captcha1.txt, captcha1.gt.txt) and a labels.tsv in the folder above are
    named; a labels.tsv written on Windows (sub\\a.png) is read; one with its columns swapped says so; a subfolder
    per label gets the labels.tsv line that reads it."""
    import json
    kaggle = tmp_path / "kaggle"
    kaggle.mkdir()
    folder = folder_of(kaggle, [f"{i}.png" for i in range(1, 41)], "train")
    (kaggle / "train.csv").write_text("id,label\n" + "".join(f"{i},AB{i % 7}\n" for i in range(1, 41)))
    with pytest.raises(data.NoLabelsError) as e:
        data.read_labels(str(folder))
    assert "40 of 40 file names count the images, each number once from 1 to 40" in str(e.value)
    assert e.value.hint.startswith(f"; {kaggle / 'train.csv'} (41 lines) may hold them in another form (one line of")
    (kaggle / "train.csv").unlink()  # without it: read as they are, with a note (digit labels may be meant)
    assert len(data.read_labels(str(folder))) == 40
    short = folder_of(tmp_path, [f"c{i}.png" for i in range(1, 41)], "short")
    with pytest.raises(data.NoLabelsError, match="40 of 40 file names are the same 'c' and a number"):
        data.read_labels(str(short))
    (short / "labels.json").write_text(json.dumps({f"c{i}.png": f"AB{i % 7}" for i in range(1, 41)}))
    with pytest.raises(data.NoLabelsError) as e:
        data.read_labels(str(short))
    assert f"{short / 'labels.json'} (40 entries) may hold them in another form" in e.value.hint
    side = folder_of(tmp_path, [f"captcha{i}.png" for i in range(1, 31)], "side")
    for i in range(1, 31):
        (side / f"captcha{i}.gt.txt").write_text(f"AB{i % 7}\n")
    with pytest.raises(data.NoLabelsError) as e:
        data.read_labels(str(side))
    assert "30 images have a text file of their name beside them (captcha1.gt.txt, captcha10.gt.txt" in e.value.hint
    above = tmp_path / "above"
    above.mkdir()
    images = folder_of(above, [f"captcha{i}.png" for i in range(1, 31)], "images")
    (above / "labels.tsv").write_text("".join(f"images/captcha{i}.png\tAB{i % 7}\n" for i in range(1, 31)))
    with pytest.raises(data.NoLabelsError) as e:
        data.read_labels(str(images))
    assert f"{above / 'labels.tsv'} lists images: --train_dir={above} reads it" in e.value.hint
    assert len(data.read_labels(str(above))) == 30
    (above / "labels.tsv").write_text("".join(f"images\\captcha{i}.png\tAB{i % 7}\n" for i in range(1, 31)))
    assert len(data.read_labels(str(above))) == 30  # Windows separators
    per_label = tmp_path / "per_label"  # a subfolder per label: the labels.tsv line that reads it, not "name one"
    per_label.mkdir()
    for i in range(12):
        folder_of(per_label, ["1.png", "2.png"], f"AB{i:02d}")
    with pytest.raises(data.DataError, match=r"12 subfolders hold a few images each \(AB00 \(2\), .*: if their names "
                                             r"are the labels, list every image in .*labels.tsv by its path below the "
                                             r"folder, e.g. 'AB00/1.png<TAB>AB00'"):
        data.read_labels(str(per_label))
    (images / "labels.tsv").write_text("".join(f"AB{i % 7}\tcaptcha{i}.png\n" for i in range(1, 31)))
    with pytest.raises(data.DataError, match=r"in 30 of its first 30 lines the second column names a file of the "
                                             r"folder and the first does not \(line 1: 'AB1' then 'captcha1.png'\)"):
        data.read_labels(str(images))
    # images renamed to their labels since: the first column still names image files, so they are missing, not swapped
    (images / "labels.tsv").write_text("".join(f"img{i}.png\tcaptcha{i}\n" for i in range(1, 31)))
    with pytest.raises(data.DataError, match="30 listed files are missing: img1.png"):
        data.load_folder(str(images), data.Codec("acehiprt0123456789", (7, 9)), 32, 20, 1)


def test_debris_in_an_inferred_charset_or_length_is_reported_not_trained_on(tmp_path):
    names = [f"{i:06d}_x.png" for i in range(40)] + ["123456[1].png", "12 456.png", "7.png", "1234567890.png"]
    folder = folder_of(tmp_path, names)
    with pytest.raises(data.DataError) as e:
        data.infer_codec(str(folder), "infer", 0)
    msg = str(e.value)
    assert "4 of 44 labels look like file-name debris" in msg
    assert "2 labels hold ' []'" in msg and "123456[1].png" in msg and "12 456.png" in msg
    assert "lengths [1, 10], far from the common 6" in msg and "7.png ('7')" in msg
    assert "set CHARSET and LENGTH yourself" in msg and "--skip_bad=1" in msg and "Rename these files" in msg
    typed = tmp_path / "typed"  # the same slips typed into labels.tsv (the labelling page) are called slips
    typed.mkdir()
    for name in names[:4]:
        (typed / name).write_bytes((folder / name).read_bytes())
    (typed / "labels.tsv").write_text("".join(f"{n}\t{t}\n" for n, t in zip(names[:4], ["123456", "123456",
                                                                                        "123456", "1"])))
    with pytest.raises(data.DataError) as e:
        data.infer_codec(str(typed), "infer", 0)
    assert "1 of 4 labels in labels.tsv look like slips" in str(e.value)
    assert "Correct those lines of labels.tsv" in str(e.value) and "Rename" not in str(e.value)
    codec, said = data.infer_codec(str(folder), "infer", 0, skip_bad=True)
    assert codec.charset == "0123456789" and codec.length == (6, 6) and "SKIP_BAD" in said
    ds = data.load_folder(str(folder), codec, 32, 20, 1, skip_bad=True, quiet=True)
    assert len(ds) == 40
    # an explicit charset is taken as it is; a variable-length set is not debris
    assert data.infer_codec(str(folder), "0123456789[] ", (1, 10))[0].length == (1, 10)
    var = folder_of(tmp_path, [f"{'7' * (4 + i % 3)}_{i}.png" for i in range(30)], "var")
    assert data.infer_codec(str(var), "infer", 0)[0].length == (4, 6)


def test_names_that_end_in_a_number_after_a_dash_or_dot_read_it_as_an_id(tmp_path, capsys):
    # 0024miih-0.png (a public set's naming): the "-0" is not trained on as part of every label
    folder = folder_of(tmp_path, [f"ab{i:02d}x-0.png" for i in range(24)] + ["ab99y.png"])
    assert sorted(t for _, t in data.read_labels(str(folder))) == sorted([f"ab{i:02d}x" for i in range(24)] + ["ab99y"])
    said = capsys.readouterr().out
    assert "24 of 25 file names end in '-0': read as an ID" in said and "(ab00x-0.png -> 'ab00x')" in said
    data.read_labels(str(folder))
    assert capsys.readouterr().out == ""  # said once
    # LABEL.N.png with a different N each: the same, with '.'
    dots = folder_of(tmp_path, [f"AB{i:02d}.{i}.png" for i in range(30)], "dots")
    assert {t for _, t in data.read_labels(str(dots))} == {f"AB{i:02d}" for i in range(30)}
    assert "'.<number>' (30 different numbers)" in capsys.readouterr().out
    # sums named by their text (12-3.png), a few copies (AB12.1.png) and labels.tsv are read as they are
    sums = folder_of(tmp_path, [f"{i}-{i % 7}.png" for i in range(30)], "sums")
    assert "12-5" in {t for _, t in data.read_labels(str(sums))}
    few = folder_of(tmp_path, [f"AB{i:02d}.png" for i in range(30)] + ["AB01.1.png"], "few")
    assert "AB01.1" in {t for _, t in data.read_labels(str(few))}
    (folder / "labels.tsv").write_text("".join(f"ab{i:02d}x-0.png\tab{i:02d}x-0\n" for i in range(24)))
    (folder / "ab99y.png").unlink()
    assert data.read_labels(str(folder))[0][1] == "ab00x-0"
    assert capsys.readouterr().out == ""


def test_names_that_number_the_images_before_the_label_read_it_after_the_number(tmp_path, capsys):
    # 00017_AB12.png: a counter, then the captcha text; without the rule every label would be the counter
    labels = [f"{a}{b}{c}{d}" for a, b, c, d in zip("AB3DK9QZ" * 5, "X7Y2" * 10, "M4N8P" * 8, "0123456789" * 4)]
    folder = folder_of(tmp_path, [f"{i + 1:05d}_{t}.png" for i, t in enumerate(labels)])
    assert sorted(t for _, t in data.read_labels(str(folder))) == sorted(labels)
    said = capsys.readouterr().out
    assert "40 of 40 file names start with a number, each a different one from 1 to 40: read as ID_LABEL" in said
    assert f"(00001_{labels[0]}.png -> '{labels[0]}')" in said
    data.read_labels(str(folder))
    assert capsys.readouterr().out == ""  # said once
    # unpadded counters with gaps, and a further _ID: still the label after the number
    gaps = folder_of(tmp_path, [f"{i * 4 // 3}_{t}_{i}.png" for i, t in enumerate(labels[:30])], "gaps")
    assert sorted(t for _, t in data.read_labels(str(gaps))) == sorted(labels[:30])
    assert "30 of 30 file names start with a number" in capsys.readouterr().out
    # LABEL_ID as documented: digit captchas (random, not counting), a word or a counter after the '_'
    digits = folder_of(tmp_path, [f"{(i * 7919) % 10000:04d}_{i}.png" for i in range(30)], "digits")
    assert {t for _, t in data.read_labels(str(digits))} == {f"{(i * 7919) % 10000:04d}" for i in range(30)}
    word = folder_of(tmp_path, [f"{i:06d}_x.png" for i in range(30)], "word")
    assert {t for _, t in data.read_labels(str(word))} == {f"{i:06d}" for i in range(30)}
    both = folder_of(tmp_path, [f"{i:04d}_{i}.png" for i in range(30)], "both")
    assert {t for _, t in data.read_labels(str(both))} == {f"{i:04d}" for i in range(30)}
    few = folder_of(tmp_path, [f"{i:05d}_{t}.png" for i, t in enumerate(labels[:19])], "few")
    assert {t for _, t in data.read_labels(str(few))} == {f"{i:05d}" for i in range(19)}
    assert "ID_LABEL" not in capsys.readouterr().out


def test_names_that_all_start_with_one_word_read_the_label_after_it_or_stop(tmp_path, capsys):
    labels = [f"{a}{b}{c}" for a, b, c in zip("AB3DK9QZ" * 4, "X7Y2" * 8, "M4N8P" * 7)]
    worded = folder_of(tmp_path, [f"captcha_{t}.png" for t in labels] + ["odd_one.png"], "worded")
    assert sorted(t for _, t in data.read_labels(str(worded))) == sorted(labels + ["odd"])
    assert "32 of 33 file names start with the same word 'captcha_': read as WORD_LABEL" in capsys.readouterr().out
    counted = folder_of(tmp_path, [f"cap_{i:05d}_{t}_{i % 3}.png" for i, t in enumerate(labels)], "counted")
    assert sorted(t for _, t in data.read_labels(str(counted))) == sorted(labels)
    # a folder of images not labelled yet: one word (and a counter, or copy markers) is no label
    for sub, names in (("numbered", [f"img_{i:04d}.png" for i in range(25)]),
                       ("copies", ["captcha.png"] + [f"captcha ({i}).png" for i in range(1, 25)])):
        folder = folder_of(tmp_path, names, sub)
        with pytest.raises(data.DataError) as e:
            data.read_labels(str(folder))
        msg = str(e.value)
        assert "25 of 25 file names give the same label" in msg and "hold no labels" in msg, msg
        assert f"python app.py --label_dir={folder}" in msg and "--teacher=ddddocr2" in msg and "labels.tsv" in msg
    # names that number, date or hash the images: a fixed start and then each different, or long IDs
    import hashlib
    for sub, names, what in (
            ("counter", [f"img{i}.png" for i in range(1, 31)], "are the same 'img' and a number"),
            ("padded", [f"image{i:03d}.jpg" for i in range(30)], "are the same 'image' and a number"),
            ("dated", [f"{1701234567890 + 7919 * i}.png" for i in range(30)], "are numbers of 9 or more digits"),
            ("dashed", [f"pic-{i:04d}.png" for i in range(30)], "give the same label 'pic'"),
            ("hashed", [hashlib.md5(bytes([i])).hexdigest() + ".png" for i in range(30)],
             "are 16 characters or longer")):
        folder = folder_of(tmp_path, names, sub)
        with pytest.raises(data.NoLabelsError) as e:
            data.read_labels(str(folder))
        msg = str(e.value)
        assert f"30 of 30 file names {what}" in msg and "hold no labels" in msg, msg
        assert f"python app.py --label_dir={folder}" in msg and "--teacher=ddddocr2" in msg and "labels.tsv" in msg
        assert "another form" not in msg  # no text file beside them
        if sub == "counter":  # labels kept in a text file of one label a line (a common published layout)
            (tmp_path / "labels2.txt").write_text("".join(f"AB{i % 10}{i % 7}\n" for i in range(30)))
            with pytest.raises(data.NoLabelsError) as e:
                data.read_labels(str(folder))
            assert f"{tmp_path / 'labels2.txt'} (30 lines) may hold them in another form" in str(e.value)
            (tmp_path / "labels2.txt").write_text("torch\nnumpy\n")  # too short to hold 30 labels: not named
            with pytest.raises(data.NoLabelsError) as e:
                data.read_labels(str(folder))
            assert "another form" not in str(e.value)
            (tmp_path / "labels2.txt").unlink()
        (folder / data.LABELS_FILE).write_text("".join(f"{n}\tAB{i % 7}{i % 3}\n" for i, n in enumerate(names)))
        assert len(data.read_labels(str(folder))) == 30  # labels.tsv is read as it is
    capsys.readouterr()
    # a few names, or labels that are mostly different, are read as they are
    small = folder_of(tmp_path, [f"img_{i:04d}.png" for i in range(19)], "small")
    assert {t for _, t in data.read_labels(str(small))} == {"img"}
    mixed = folder_of(tmp_path, [f"AB{i % 3}_{i}.png" for i in range(30)], "mixed")
    assert {t for _, t in data.read_labels(str(mixed))} == {"AB0", "AB1", "AB2"}
    capsys.readouterr()
    # names that only number the images: read as they are, with a note
    numbered = folder_of(tmp_path, [f"{i}.png" for i in range(1, 31)], "numbered_only")
    assert {t for _, t in data.read_labels(str(numbered))} == {str(i) for i in range(1, 31)}
    said = capsys.readouterr().out
    assert "count the images, each number once from 1 to 30" in said and "--label_dir=" in said
    digits = folder_of(tmp_path, [f"{(i * 7919) % 10000:04d}.png" for i in range(30)], "digit_labels")
    data.read_labels(str(digits))
    assert capsys.readouterr().out == ""


def test_files_that_are_not_images_do_not_shape_an_inferred_codec_with_skip_bad(tmp_path):
    folder = folder_of(tmp_path, [f"{i:04d}_{i}.png" for i in range(30)])
    (folder / "EMPTY_1.png").write_bytes(b"")
    (folder / "NOTES_2.png").write_text("not a picture")
    Image.new("1", (9000, 9000)).save(folder / "BOMB_3.png")  # more than MAX_PIXELS: refused from its header
    codec, said = data.infer_codec(str(folder), "infer", 0, skip_bad=True)
    assert codec.charset == "0123456789" and codec.length == (4, 4)
    assert "3 files that do not open as images" in said
    ds = data.load_folder(str(folder), codec, 32, 20, 1, skip_bad=True, quiet=True)
    assert len(ds) == 30
    # without SKIP_BAD the run stops when the folder is loaded, naming the files; the codec is not its business
    assert "O" in data.infer_codec(str(folder), "infer", 0)[0].charset


# --- the cache: optional, and rebuilt when it is not what it should be --------------------------------------

def savez(path, **arrays):
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def corrupt_caches(valid, n):
    z, ok = np.zeros((n, 20, 32, 1), np.uint8), np.ones(n, bool)
    return {
        "garbage": lambda p: p.write_bytes(b"garbage" * 100),
        "empty": lambda p: p.write_bytes(b""),
        "truncated": lambda p: p.write_bytes(valid[: len(valid) // 2]),
        "npy, not npz": lambda p: np.save(str(p) + ".npy", z) or os.replace(str(p) + ".npy", p),
        "wrong keys": lambda p: savez(p, pixels=z),
        "wrong shape": lambda p: savez(p, images=z[:, :10], ok=ok),
        "wrong dtype": lambda p: savez(p, images=z.astype(np.float32), ok=ok),
        "pickled objects": lambda p: savez(p, images=np.array([object()] * n), ok=ok),
        "a folder": lambda p: p.mkdir(),
    }


def test_corrupt_cache_files_are_rebuilt(tmp_path, capsys):
    folder = folder_of(tmp_path, ["AB_1.png", "BA_2.png"])
    cache = tmp_path / "cache"
    ds = data.load_folder(str(folder), data.Codec("AB", 2), 32, 20, 1, str(cache))
    (entry,) = cache.iterdir()
    valid = entry.read_bytes()
    for what, spoil in corrupt_caches(valid, 2).items():
        if entry.is_dir():
            entry.rmdir()
        else:
            entry.unlink()
        spoil(entry)
        again = data.load_folder(str(folder), data.Codec("AB", 2), 32, 20, 1, str(cache))
        assert np.array_equal(again.images, ds.images), what
        out = capsys.readouterr().out
        if what != "a folder":
            assert f"cache file {entry} is unusable" in out and "rebuilding it" in out, what
            with np.load(entry) as z:  # rebuilt
                assert np.array_equal(z["images"], ds.images), what
        assert not [f for f in os.listdir(cache) if f.endswith(".tmp")]


def test_a_failed_cache_write_costs_only_speed(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(data, "_cache_warned", [])
    folder = folder_of(tmp_path, ["AB_1.png", "BA_2.png"])
    (tmp_path / "file").write_text("a file where the cache folder should be")
    ds = data.load_folder(str(folder), data.Codec("AB", 2), 32, 20, 1, str(tmp_path / "file"))
    assert len(ds) == 2 and "could not write the cache" in capsys.readouterr().out

    def full_disk(file, **arrays):  # writes part of the file, then the disk is full
        file.write(b"PK" + b"\0" * 1000)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(data.np, "savez", full_disk)
    for _ in range(2):
        ds = data.load_folder(str(folder), data.Codec("AB", 2), 32, 20, 1, str(tmp_path / "cache"))
        assert len(ds) == 2
    out = capsys.readouterr().out
    assert out.count("could not write the cache") == 1 and "No space left on device" in out
    assert os.listdir(tmp_path / "cache") == []  # no temp file left behind


# --- checkpoints and atomic writes ------------------------------------------------------------------------

def test_disk_full_during_a_checkpoint_save_keeps_the_old_one_and_leaves_no_temp(tmp_path, monkeypatch):
    path = tiny_checkpoint(tmp_path / "w" / "run_best.pt")
    before = path.read_bytes()
    real_save = torch.save

    def full_disk(obj, f, *a, **kw):
        real_save(obj, f, *a, **kw)  # most of it written ...
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # ... then the disk is full
    monkeypatch.setattr(checkpoint.torch, "save", full_disk)
    with pytest.raises(CheckpointError, match="could not save .*run_best.pt .No space left on device"):
        tiny_checkpoint(path)
    monkeypatch.undo()
    assert os.listdir(tmp_path / "w") == ["run_best.pt"] and path.read_bytes() == before
    assert load_checkpoint(str(path))["epoch"] == 1


def test_atomic_write_cleans_up_on_any_exception(tmp_path):
    target = tmp_path / "x.bin"
    target.write_bytes(b"old")
    for exc in (OSError(errno.ENOSPC, "full"), KeyboardInterrupt()):
        def writer(f, exc=exc):
            f.write(b"partial")
            raise exc
        with pytest.raises(type(exc)):
            atomic_write(str(target), writer)
        assert os.listdir(tmp_path) == ["x.bin"] and target.read_bytes() == b"old"
    atomic_write(str(target), "text", mode="w")
    assert target.read_text() == "text"


def _hammer(args):
    path, k = args
    for i in range(30):
        atomic_write(path, f"{k}:{i}:".encode() * 2000, fsync=False)
    return k


def test_concurrent_atomic_writers_never_collide(tmp_path):
    import multiprocessing as mp
    path = str(tmp_path / "shared.pt")
    threads = [threading.Thread(target=_hammer, args=((path, f"t{k}"),)) for k in range(3)]
    with mp.get_context("fork").Pool(3) as pool:
        pending = pool.map_async(_hammer, [(path, f"p{k}") for k in range(3)])
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        pending.get(60)
    content = open(path, "rb").read()
    head = content[: content.index(b":", content.index(b":") + 1) + 1]
    assert content == head * 2000  # one writer's whole content, never a mix
    assert os.listdir(tmp_path) == ["shared.pt"]


@pytest.mark.slow
def test_stale_temps_are_removed_but_live_writers_are_left_alone(tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        old, dead, live, me = time.time() - 3600, dead_pid(), sleeper.pid, os.getpid()
        files = {
            f".m_best.pt.{dead}-0123abcd.tmp": (old, True),      # a killed run's: removed
            f"m_best.pt.{dead}.tmp": (old, True),                # the same, named as earlier versions did
            f".m_best.pt.{me}-0123abcd.tmp": (old, True),        # our pid, not ours: a killed run had our pid
            f".m_best.pt.{live}-0123abcd.tmp": (old, False),     # a live run's (another run on this folder)
            f".m_best.pt.{dead}-4567abcd.tmp": (time.time(), False),  # fresh: maybe another machine's, writing
            f"notes.{dead}.tmp": (old, False),                   # not our pattern
            "keep.png": (old, False),
        }
        for name, (mtime, _) in files.items():
            (tmp_path / name).write_bytes(b"x")
            os.utime(tmp_path / name, (mtime, mtime))
        atomic_write(str(tmp_path / "m_best.pt"), b"new")
        left = set(os.listdir(tmp_path))
        assert left == {n for n, (_, gone) in files.items() if not gone} | {"m_best.pt"}
    finally:
        sleeper.kill()
        sleeper.wait()


def test_results_rows_are_never_glued_and_the_header_is_written_once(tmp_path):
    path = str(tmp_path / "results.txt")
    cols = ["run", "epoch", "seq_acc"]
    append_row(path, cols, dict(run="a", epoch=1, seq_acc=0.5))
    append_row(path, cols, dict(run="a", epoch=2, seq_acc=0.6))
    with open(path, "a") as f:
        f.write("a\t3\t0.7")  # a killed writer's row without its newline
    append_row(path, cols, dict(run="a", epoch=4, seq_acc=0.8))
    assert open(path).read() == "run\tepoch\tseq_acc\na\t1\t0.5\na\t2\t0.6\na\t3\t0.7\na\t4\t0.8\n"
    # an older results.txt with other columns: a new header starts a new section, and both read back
    append_row(path, cols + ["test_acc"], dict(run="b", epoch=1, seq_acc=0.9, test_acc=0.85))
    rows = read_results(path)
    assert [r["epoch"] for r in rows] == ["1", "2", "3", "4", "1"]
    assert rows[-1] == dict(run="b", epoch="1", seq_acc="0.9", test_acc="0.85") and "test_acc" not in rows[0]
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    append_row(str(empty), cols, dict(run="c", epoch=1, seq_acc=1))
    assert empty.read_text() == "run\tepoch\tseq_acc\nc\t1\t1\n"
    os.mkfifo(tmp_path / "fifo.txt")
    with deadline(10), pytest.raises(OSError, match="FIFO"):
        append_row(str(tmp_path / "fifo.txt"), cols, dict(run="c", epoch=1, seq_acc=1))


@pytest.mark.parametrize("what", ["garbage", "truncated", "fifo", "folder", "bad model name", "bad charset"])
def test_bad_checkpoints_give_one_message(tmp_path, what):
    path = tmp_path / "m.pt"
    good = tiny_checkpoint(tmp_path / "good.pt")
    if what == "garbage":
        path.write_bytes(b"not a checkpoint at all")
    elif what == "truncated":
        path.write_bytes(good.read_bytes()[:5000])
    elif what == "fifo":
        os.mkfifo(path)
    elif what == "folder":
        path.mkdir()
    else:
        ckpt = torch.load(good, weights_only=True)
        ckpt.update({"model_name": "no_such_model"} if what == "bad model name" else {"charset": "AA"})
        torch.save(ckpt, path)
    with deadline(10), pytest.raises(CheckpointError) as e:
        load_checkpoint(str(path))
    assert str(path) in str(e.value) and "refused" not in str(e.value)


# --- concurrent generators ----------------------------------------------------------------------------------

@pytest.mark.slow
def test_two_generators_on_one_folder_both_succeed(tmp_path):
    """Two runs at once on one folder (forked like two shell commands, without their start-up time): the second
    starts while the first is writing, and its sweep of old temp files must not touch the first's."""
    import multiprocessing as mp
    out = str(tmp_path / "x")
    charset = config.GEN_CHARSET
    runs = [mp.get_context("fork").Process(target=generate, args=(out, 150, 5, charset, 4, 160, 60),
                                           kwargs=dict(processes=1, quiet=True)) for _ in range(2)]
    runs[0].start()
    with deadline(60):
        while len(os.listdir(tmp_path / "x") if os.path.isdir(out) else []) < 10:
            time.sleep(0.01)
    # what the first run's in-flight files look like to the second (fresh, and old: a slow write), and a killed run's
    planted = {f".AAAA_5-0000001.png.{runs[0].pid}-0000000a.tmp": time.time(),
               f".AAAA_5-0000002.png.{runs[0].pid}-0000000b.tmp": time.time() - 3600,
               f".AAAA_5-0000003.png.{dead_pid()}-0000000c.tmp": time.time() - 3600}
    for name, mtime in planted.items():
        open(os.path.join(out, name), "wb").close()
        os.utime(os.path.join(out, name), (mtime, mtime))
    runs[1].start()
    runs[1].join(120)
    left = set(os.listdir(out))
    assert set(list(planted)[:2]) <= left and list(planted)[2] not in left  # only the killed run's is swept
    runs[0].join(120)
    assert [r.exitcode for r in runs] == [0, 0]
    for name in list(planted)[:2]:
        os.remove(os.path.join(out, name))
    names = os.listdir(out)
    assert len(names) == 150 and all(n.endswith(".png") for n in names)
    assert len(data.load_folder(out, data.Codec(charset, 4), 160, 60, 1)) == 150


# --- SIGKILL while saving --------------------------------------------------------------------------------

def _saver(path, results, epoch, model, args, codec, pad, conn):
    """What train.py does at the end of each epoch, forever: the checkpoint, then its results row."""
    while True:
        save_checkpoint(path, model, args, codec, epoch=epoch, pad=pad)
        append_row(results, ["run", "epoch"], dict(run="k", epoch=epoch))
        conn.send(epoch)
        epoch += 1


def test_sigkill_while_saving_never_loses_a_checkpoint_or_glues_rows(tmp_path):
    """SIGKILL a process that saves checkpoints and appends results rows as train.py does, at random moments, and
    continue from its checkpoint (like --resume=1) each time: the checkpoint always loads, rows are whole and
    agree with it, and a killed save's temp file is swept by the next save once it is old. (train.py itself
    killed and resumed: tests/test_train.py.)"""
    import multiprocessing as mp
    import random
    path, results = str(tmp_path / "k_last.pt"), str(tmp_path / "results.txt")
    codec = data.Codec("0123456789", 4)
    args = dict(name="cnn", in_channels=1, num_classes=models.head("cnn").num_classes(codec), positions=4,
                height=32, width=64)
    model, pad = models.build_model(**args), torch.zeros(2_000_000)  # 8 MB more: kills land inside writes too
    rng, epoch, ctx = random.Random(os.getpid()), 1, mp.get_context("fork")
    for _ in range(6):
        ours, theirs = ctx.Pipe()
        p = ctx.Process(target=_saver, args=(path, results, epoch, model, args, codec, pad, theirs))
        p.start()
        assert ours.poll(60) and ours.recv() == epoch  # saving now
        time.sleep(rng.uniform(0, 0.3))
        p.kill()
        p.join()
        ckpt = load_checkpoint(path)  # whole, whatever the moment of the kill
        epochs = [int(r["epoch"]) for r in read_results(results)]
        assert epochs == sorted(set(epochs)) and ckpt["epoch"] in (epochs[-1], epochs[-1] + 1)
        assert all(line.count("\t") == 1 for line in open(results).read().splitlines())  # never glued
        temps = [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]
        assert len(temps) <= 1  # at most the save the kill interrupted
        for f in temps:  # make it old: the next save sweeps it
            os.utime(tmp_path / f, (time.time() - 3600,) * 2)
        epoch = ckpt["epoch"] + 1
    save_checkpoint(path, model, args, codec, epoch=epoch)
    assert sorted(os.listdir(tmp_path)) == ["k_last.pt", "results.txt"]


def test_a_folder_of_a_few_images_says_to_label_more(tmp_path):
    folder = folder_of(tmp_path, ["AB_1.png", "BA_2.png", "AA_3.png"])
    p = run_script("train.py", f"--train_dir={folder}", f"--weights_dir={tmp_path}/w", f"--results={tmp_path}/r.txt",
                   f"--cache_dir={tmp_path}/c", "--threads=1", check=False)
    assert p.returncode == 1 and "Traceback" not in p.stdout
    assert "the validation part holds 1 image, too few" in p.stdout
    assert "2 training images, fewer than one batch (BATCH_SIZE=16); lower --batch_size or label more images" in p.stdout
