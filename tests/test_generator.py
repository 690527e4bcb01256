import os
import random
import subprocess
import sys
import time

import pytest

from conftest import run_script
from core import generate as gen
from core import data

CHARSET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def files(folder):
    return {f: open(os.path.join(folder, f), "rb").read() for f in sorted(os.listdir(folder))}


def test_same_seed_gives_identical_files_whatever_the_process_count(tmp_path):
    gen.generate(str(tmp_path / "a"), 60, 7, CHARSET, 4, 160, 60, processes=2, quiet=True)
    gen.generate(str(tmp_path / "b"), 60, 7, CHARSET, 4, 160, 60, processes=1, quiet=True)
    gen.generate(str(tmp_path / "c"), 60, 8, CHARSET, 4, 160, 60, processes=2, quiet=True)
    a, b, c = files(tmp_path / "a"), files(tmp_path / "b"), files(tmp_path / "c")
    assert len(a) == 60 and a == b
    assert set(a.values()).isdisjoint(c.values())


def test_labels_in_file_names_are_the_drawn_labels(tmp_path):
    gen.generate(str(tmp_path), 40, 3, CHARSET, (4, 6), 120, 40, quiet=True)
    items = data.read_labels(str(tmp_path))
    assert len(items) == 40
    lengths = set()
    for path, label in items:
        index = int(os.path.basename(path).split("-")[-1].split(".")[0])
        assert label == gen.random_label(random.Random(f"3-{index}"), CHARSET, (4, 6))
        lengths.add(len(label))
        assert data.load_image(path, 120, 40, 3).shape == (40, 120, 3)
    assert lengths <= {4, 5, 6} and len(lengths) > 1


@pytest.mark.slow
def test_rerun_never_overwrites_and_completes_an_interrupted_run(tmp_path):
    gen.generate(str(tmp_path), 20, 1, CHARSET, 4, 160, 60, quiet=True)
    victim = sorted(os.listdir(tmp_path))[0]
    os.remove(tmp_path / victim)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a pid that is no longer running
    for name in [f".{victim}.{dead.pid}-0123abcd.tmp", f"half_written.png.{dead.pid}.tmp"]:  # what killed runs leave
        (tmp_path / name).write_bytes(b"\x89PNG")
        os.utime(tmp_path / name, (time.time() - 3600,) * 2)
    stamp = {f: os.stat(tmp_path / f).st_mtime_ns for f in os.listdir(tmp_path) if f.endswith(".png")}
    assert gen.generate(str(tmp_path), 20, 1, CHARSET, 4, 160, 60, quiet=True) == 1
    after = sorted(os.listdir(tmp_path))
    assert len(after) == 20 and victim in after and not any(f.endswith(".tmp") for f in after)
    assert all(os.stat(tmp_path / f).st_mtime_ns == t for f, t in stamp.items())


@pytest.mark.slow
def test_command_line(tmp_path):
    out = run_script("captchaGenerator.py", "--split=x", "--count=10", "--seed=4", f"--dataset_dir={tmp_path}",
                     "--gen_charset=AB", "--gen_length=3")
    names = os.listdir(tmp_path / "x")
    assert len(names) == 10 and all(set(n.split("_")[0]) <= set("AB") for n in names)
    assert "images/s" in out.stdout
    bad = run_script("captchaGenerator.py", "--cuont=10", check=False)
    assert bad.returncode != 0 and "unknown option --cuont" in bad.stdout and "Traceback" not in bad.stdout


def test_varied_style(tmp_path):
    """GEN_STYLE varied: the same seed gives the same files whatever the process count; every image is the asked
    height and as wide as its text (wider for longer labels, on the whole); letters are drawn in either case only
    when the charset holds one, so the label is what the image reads."""
    from core import varied
    assert len(varied.fonts()) >= 1 and all(varied.draws_latin(f) for f in varied.fonts()[:3])
    gen.generate(str(tmp_path / "a"), 48, 5, CHARSET, (3, 8), 160, 64, processes=2, quiet=True, style="varied")
    gen.generate(str(tmp_path / "b"), 48, 5, CHARSET, (3, 8), 160, 64, processes=1, quiet=True, style="varied")
    a, b = files(tmp_path / "a"), files(tmp_path / "b")
    assert len(a) == 48 and a == b
    widths = {3: [], 8: []}
    for path, label in data.read_labels(str(tmp_path / "a")):
        assert set(label) <= set(CHARSET) and 3 <= len(label) <= 8
        image = data.load_image(path, 0, 0, 3)
        assert image.shape[0] == 64 and image.shape[1] >= 64
        widths.get(len(label), []).append(image.shape[1])
    assert widths[3] and widths[8] and max(widths[3]) < max(widths[8])
    rng = random.Random(0)
    assert {varied._flip_case("AB12", "0123456789AB", rng) for _ in range(40)} >= {"AB12", "ab12"}
    assert {varied._flip_case("aB", "aAbB", rng) for _ in range(20)} == {"aB"}  # both cases in the charset: as is


def test_varied_ink_stands_out_from_the_page_where_it_lands():
    """On a dark or mid-grey page the varied style draws mostly bright characters (0.3 of luminance or more off
    the page) and some dim ones, never the page's own shade; shaded pages run from one colour to the other;
    some pages of a thousand are dark, some shaded."""
    from core import varied
    rng = random.Random(3)
    for under in (0.1, 0.45, 0.6):
        offs = [abs(varied._luma(varied._ink(rng, under)) - under) for _ in range(400)]
        assert min(offs) >= 0.08 and 0.7 < sum(o >= 0.3 for o in offs) / len(offs) < 0.9
    for seed in range(6):
        page = varied._shade(random.Random(seed), 200, 40, (0, 0, 0), (255, 255, 255))
        across = sorted([page.getpixel((0, 20))[0], page.getpixel((199, 20))[0]])
        down = sorted([page.getpixel((100, 0))[0], page.getpixel((100, 39))[0]])
        assert (across[0] < 10 and across[1] > 245) or (down[0] < 10 and down[1] > 240)
    pages = [varied._page(rng, 60, 20) for _ in range(1000)]
    dark = sum(varied._luma(p.getpixel((30, 10))) < 0.6 for p in pages)
    shaded = sum(min(ends) + 0.05 < varied._luma(p.getpixel((30, 10))) < max(ends) - 0.05
                 for p in pages for ends in [(varied._luma(p.getpixel((0, 10))), varied._luma(p.getpixel((59, 10))))])
    assert 50 < dark < 250 and 30 < shaded < 200


def test_varied_style_online_renders_the_files_captchaGenerator_writes_and_fonts_may_be_a_folder(tmp_path):
    """ONLINE with GEN_STYLE varied renders in memory the captchas captchaGenerator.py writes (resized to the
    model's width), labels of every length in LENGTH's range; FONTS may name a folder of fonts."""
    import shutil
    from core import fresh, varied
    import config
    folder = tmp_path / "fonts"
    folder.mkdir()
    for path in varied.fonts()[:2]:
        shutil.copy(path, folder)
    (folder / "notes.txt").write_text("not a font")
    fonts = (str(folder),)
    assert len(varied.font_files(fonts)) == 2 and all(os.path.dirname(f) == str(folder) for f in varied.font_files(fonts))
    gen.generate(str(tmp_path / "v"), 12, 5, CHARSET, (3, 5), 160, 40, fonts, processes=1, quiet=True, style="varied")
    images, labels = fresh.render_set(5, 12, CHARSET, (3, 5), 120, 40, 3, fonts, processes=2, style="varied")
    assert images.shape == (12, 3, 40, 120) and {len(t) for t in labels} == {3, 4, 5}
    for i, label in enumerate(labels):
        decoded = data.load_image(str(tmp_path / "v" / gen.file_name(label, 5, i)), 120, 40, 3)
        assert (images[i] == decoded.transpose(2, 0, 1)).all()
    (tmp_path / "empty").mkdir()
    with pytest.raises(config.ConfigError, match="holds no Latin TrueType"):
        varied.font_files((str(tmp_path / "empty"),))
    with pytest.raises(config.ConfigError, match="notes.txt: not a font Pillow opens"):
        varied.font_files((str(folder / "notes.txt"),))
    with pytest.raises(config.ConfigError, match="gone.ttf: no such file"):
        varied.font_files((str(tmp_path / "gone.ttf"),))
    bad = run_script("captchaGenerator.py", f"--fonts=('{tmp_path}/gone.ttf',)", "--count=2", "--split=b",
                     f"--dataset_dir={tmp_path}", check=False)
    assert bad.returncode != 0 and "gone.ttf: no such file" in bad.stdout and "Traceback" not in bad.stdout
    out = run_script("train.py", "--online=1", "--gen_style=varied", f"--fonts=('{folder}',)", "--length=(3,5)",
                     "--image_width=120", "--image_height=40", "--channels=3", "--online_count=64", "--online_test=32",
                     "--batch_size=16", "--epochs=1", "--online_workers=1", "--init=", f"--weights_dir={tmp_path}/w",
                     f"--train_dir={tmp_path}/none", f"--results={tmp_path}/results.txt")
    assert "epoch 1" in out.stdout and os.path.exists(tmp_path / "w" / "cnn_ctc_best.pt"), out.stdout[-2000:]


def test_generator_styles_and_lengths_parse(tmp_path):
    bad = run_script("captchaGenerator.py", "--gen_style=fancy", check=False)
    assert bad.returncode != 0 and "imagecaptcha" in bad.stdout and "Traceback" not in bad.stdout
    out = run_script("captchaGenerator.py", "--split=v", "--count=6", "--seed=3", f"--dataset_dir={tmp_path}",
                     "--gen_style=varied", "--gen_length=(3,5)", "--gen_height=40")
    assert "40 px tall, as wide as the text" in out.stdout and len(os.listdir(tmp_path / "v")) == 6
