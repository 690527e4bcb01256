"""benchmarks/real_sets.py on a tiny fake source: the layout and labels.tsv it writes, the drops it counts, a
split that depends only on the sources (a plain folder and a git copy at the pinned commit give the same
bytes), and the message for a source that is not there."""
import io
import json
import os
import subprocess

import pytest
from PIL import Image, ImageDraw

from benchmarks import real_sets

LABELS = ["AB12", "CD34", "EF56", "GH78", "JK90", "LM12", "NP34", "QR56", "ST78", "UV90", "WX12", "YZ34"]


def png(text, shade=0):
    im = Image.new("L", (40, 16), 255 - shade)
    ImageDraw.Draw(im).text((2, 2), text, fill=0)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def fill(repo):
    """The fake repository's files: 12 labelled images in two folders and five that must be dropped."""
    for i, label in enumerate(LABELS):
        folder = os.path.join(repo, "caps", "a" if i % 2 else "b")
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, f"{label}-{i}.png"), "wb") as f:
            f.write(png(label, i))
    drops = {"noname.png": png("x", 1),                     # no label in the name
             "AB!2-20.png": png("AB!2", 2),                  # a character nobody types
             "ZZ99-21.png": png("AB12", 0),                  # the same bytes as AB12-0.png
             "ZZ88-22.png": b"version https://git-lfs.github.com/spec/v1\noid sha256:0\nsize 1\n",
             "ZZ77-23.png": b"not an image"}
    for name, data in drops.items():
        with open(os.path.join(repo, "caps", "b", name), "wb") as f:
            f.write(data)
    with open(os.path.join(repo, "caps", "b", "notes.txt"), "w") as f:
        f.write("not an image\n")


def spec(commit="0" * 40):
    return dict(name="fake", repo="someone/fake-captchas", commit=commit, license="MIT", paths=["caps"],
                name_pattern=r"^([0-9A-Za-z!]+)-\d+\.png$", case=None, about="test set")


def git(repo, *args):
    return subprocess.run(["git", "-C", repo, "-c", "user.name=t", "-c", "user.email=t@t", *args], check=True,
                          capture_output=True, text=True).stdout.strip()


def read_part(folder):
    with open(os.path.join(folder, "labels.tsv"), encoding="utf-8") as f:
        rows = [line.rstrip("\n").split("\t") for line in f]
    files = sorted(n for n in os.listdir(folder) if n != "labels.tsv")
    return rows, files


def test_plain_folder_layout_labels_and_drops(tmp_path):
    mirrors, out = tmp_path / "mirrors", tmp_path / "out"
    fill(str(mirrors / "fake-captchas"))  # a plain copy named like the repository
    record = real_sets.build_set(spec(), str(mirrors), str(out), quiet=True)

    assert (record["train"], record["test"]) == (10, 2)  # 12 kept, round(20 %) of them in test
    assert record["dropped"] == {"no label in the name": 1, "untypable label": 1, "duplicate bytes": 1,
                                 "Git LFS pointer": 1, "unreadable image": 1, "not an image": 1}
    assert record["lengths"] == {"4": 12} and record["sizes"] == {"40x16": 12}
    seen = {}
    for part in ("train", "test"):
        rows, files = read_part(out / "fake" / part)
        assert sorted(r[0] for r in rows) == files  # labels.tsv lists exactly the images beside it
        for name, label in rows:
            data = (out / "fake" / part / name).read_bytes()
            seen[label] = data
    assert sorted(seen) == sorted(LABELS)
    assert seen["CD34"] == png("CD34", 1)  # the original bytes
    sources = (out / "fake" / "sources.tsv").read_text().splitlines()
    assert len(sources) == 12 and all(line.split("\t")[1].startswith("caps/") for line in sources)
    assert json.loads((out / "fake" / "set.json").read_text())["charset"] == "".join(sorted(set("".join(LABELS))))
    assert not (out / "fake.tmp").exists()


def test_split_is_deterministic_and_git_copy_reads_the_pinned_commit(tmp_path):
    plain, out_a, out_b = tmp_path / "plain", tmp_path / "a", tmp_path / "b"
    fill(str(plain / "fake-captchas"))
    real_sets.build_set(spec(), str(plain), str(out_a), quiet=True)
    real_sets.build_set(spec(), str(plain), str(out_a / "again"), quiet=True)

    repo = str(tmp_path / "git" / "someone+fake-captchas")  # the bare-or-clone name form owner+name
    fill(repo)
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "captchas")
    pinned = git(repo, "rev-parse", "HEAD")
    os.remove(os.path.join(repo, "caps", "a", "CD34-1.png"))  # later history: must not matter
    git(repo, "commit", "-q", "-am", "remove one")
    real_sets.build_set(spec(pinned), str(tmp_path / "git"), str(out_b), quiet=True)

    for part in ("train", "test"):
        first = (out_a / "fake" / part / "labels.tsv").read_text()
        assert (out_a / "again" / "fake" / part / "labels.tsv").read_text() == first
        assert (out_b / "fake" / part / "labels.tsv").read_text() == first
        for name in os.listdir(out_a / "fake" / part):
            assert (out_b / "fake" / part / name).read_bytes() == (out_a / "fake" / part / name).read_bytes()


def test_missing_source_names_the_repository_and_the_clone_command(tmp_path):
    with pytest.raises(real_sets.SourceError) as e:
        real_sets.build_set(spec(), str(tmp_path), str(tmp_path / "out"), quiet=True)
    message = str(e.value)
    assert "https://github.com/someone/fake-captchas" in message
    assert f"git clone https://github.com/someone/fake-captchas {tmp_path / 'fake-captchas'}" in message

    repo = str(tmp_path / "fake-captchas")  # a clone without the pinned commit or the files
    os.makedirs(repo)
    git(repo, "init", "-q")
    with pytest.raises(real_sets.SourceError, match="lacks commit"):
        real_sets.build_set(spec("1" * 40), str(tmp_path), str(tmp_path / "out"), quiet=True)


def test_every_suite_set_is_pinned_and_licensed():
    names = [s["name"] for s in real_sets.SETS] + [s["name"] for s in real_sets.SHARED]
    assert len(names) == len(set(names)) and len(real_sets.SETS) >= 3
    for s in real_sets.SETS:
        assert len(s["commit"]) == 40 and s["license"] and s["paths"]


def test_labels_one_a_line_in_a_text_file(tmp_path):
    """line_labels: the name pattern gives the line number (1-based) of the image's label in a text file of the
    repository; an image past the file's last line has no label and is dropped, counted under the file's name."""
    repo = tmp_path / "mirrors" / "fake-captchas"
    os.makedirs(repo / "caps")
    for i, label in enumerate(LABELS[:6], 1):
        (repo / "caps" / f"captcha{i}.jpg").write_bytes(png(label, i))
    (repo / "caps" / "captcha7.jpg").write_bytes(png("none", 7))  # beyond the 6 labels
    (repo / "labels.txt").write_text("".join(f"{label}  \n" for label in LABELS[:6]))  # trailing spaces too
    one = dict(spec(), name_pattern=r"^captcha(\d+)\.jpg$", line_labels="labels.txt")
    record = real_sets.build_set(one, str(tmp_path / "mirrors"), str(tmp_path / "out"), quiet=True)
    assert (record["train"], record["test"]) == (5, 1) and record["dropped"] == {"no label in labels.txt": 1}
    read = {}
    for part in ("train", "test"):
        for name, label in read_part(tmp_path / "out" / "fake" / part)[0]:
            read[label] = (tmp_path / "out" / "fake" / part / name).read_bytes()
    assert read == {label: png(label, i) for i, label in enumerate(LABELS[:6], 1)}


def test_a_set_of_another_alphabet_and_a_sampled_part(tmp_path):
    """A set whose labels hold letters of another script keeps them where its alphabet names them (dropped
    otherwise); a set far larger than the others keeps a seeded sample of each part, the same on every build."""
    mirrors = tmp_path / "mirrors"
    fill(str(mirrors / "fake-captchas"))
    extra = {"ЖБ12-30.png": png("ZB12", 30), "ДЖ34-31.png": png("DZ34", 31)}
    for name, data in extra.items():
        with open(os.path.join(mirrors, "fake-captchas", "caps", "a", name), "wb") as f:
            f.write(data)
    latin = dict(spec(), name_pattern=r"^([0-9A-Za-zЖБД!]+)-\d+\.png$")
    record = real_sets.build_set(latin, str(mirrors), str(tmp_path / "latin"), quiet=True)
    assert record["dropped"]["untypable label"] == 3 and record["train"] + record["test"] == 12
    cyrillic = dict(latin, alphabet="ЖБД")
    record = real_sets.build_set(cyrillic, str(mirrors), str(tmp_path / "cyr"), quiet=True)
    assert record["dropped"]["untypable label"] == 1 and record["train"] + record["test"] == 14
    assert {"Ж", "Б", "Д"} <= set(record["charset"])
    rows = [r for part in ("train", "test") for r in read_part(tmp_path / "cyr" / "fake" / part)[0]]
    assert sorted(label for _, label in rows if not label.isascii()) == ["ДЖ34", "ЖБ12"]

    sampled = dict(cyrillic, sample=(5, 2))
    for out in ("s1", "s2"):
        record = real_sets.build_set(sampled, str(mirrors), str(tmp_path / out), quiet=True)
        assert (record["train"], record["test"]) == (5, 2) and "a seeded sample of 5 / 2" in record["split"]
    for part in ("train", "test"):
        assert ((tmp_path / "s1" / "fake" / part / "labels.tsv").read_text()
                == (tmp_path / "s2" / "fake" / part / "labels.tsv").read_text())
    full = {label for _, label in read_part(tmp_path / "cyr" / "fake" / "train")[0]}
    assert {label for _, label in read_part(tmp_path / "s1" / "fake" / "train")[0]} <= full
