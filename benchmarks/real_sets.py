"""A suite of public, labelled captcha sets of other sites and styles, to choose defaults on.

    python benchmarks/real_sets.py --mirrors=../mirrors --out=real_sets     # build every set of the suite
    python benchmarks/real_sets.py --mirrors=../mirrors --sets=amazon       # only some (comma list)
    python benchmarks/real_sets.py --list                                   # the suite: source, license, counts

Every set is read from a copy of its public GitHub repository in --mirrors, found as `owner+name/repo`,
`owner+name` or `name` (a bare git directory, an ordinary clone, or a plain folder of the files). From a git
copy the files are read at the set's pinned commit (`git --git-dir=X ls-tree`/`cat-file`), so the bytes
are those of that commit whatever is checked out; a plain folder, or a clone that lacks the commit but has
the files checked out, is read as it is. How to get the copies: docs/real_sets.md, or the message a missing
one prints.

Each set is written to `<out>/<name>/{train,test}/` with the images' original bytes under neutral names
(00000.png, ...) and a `labels.tsv` (`file<TAB>label`) beside them: the layout of
../shared/datasets/henan_digits, which the project reads as it is (`python train.py
--train_dir=real_sets/amazon/train --test_dir=real_sets/amazon/test`). `<out>/<name>/sources.tsv` says which
repository file each image is, and `<out>/<name>/set.json` what the set holds (read by --list).

Labels come from the file names (each set's name pattern), or from a text file of one label a line that the name
numbers (line_labels). Dropped, and counted: files whose name (or line) gives no label, labels with a character outside 0-9A-Za-z (and
the set's own alphabet, for a site that draws other letters), unreadable images, Git LFS pointers, and exact duplicates
(the same bytes twice: the first in path order is kept, so no image is in both parts). The split is the
repository's own where it has one, else a seeded shuffle (SEED) of the images in path order with TEST_FRACTION
of them in test/: the same sources give the same split on any machine. A set far larger than the others may
keep a seeded sample of each part (sample), so that every suite point runs in minutes on a CPU.

The two shared sets (../shared/datasets: captcha_images_v2, henan_digits) belong to the suite by reference:
--list prints them, nothing copies them.
"""
import argparse
import collections
import hashlib
import io
import json
import os
import random
import re
import shutil
import string
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SEED = 0  # the shuffle that splits a set without a split of its own
TEST_FRACTION = 0.2  # of a set's images, in test/
TYPABLE = set(string.digits + string.ascii_letters)  # a label with any other character is dropped
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
LFS_POINTER = b"version https://git-lfs"

# One record per set. repo: GitHub owner/name; commit: pinned; paths: folders inside the repository;
# name_pattern: a file name -> the label (group 1); case: None (as published) or "upper"/"lower" (labels
# folded: the set is read without case); fetch: what gets the pinned commit into a clone when a plain
# `git clone` does not; test_paths: the repository's own test folders, if it has a split; line_labels: a text
# file of the repository holding one label a line, the name pattern's group 1 then being the 1-based line number
# (an image past the file's last label has none); alphabet: characters a label may hold besides 0-9A-Za-z;
# sample: (train, test), a seeded sample of each part (after the split) where the set is far larger than the others.
SETS = [
    dict(name="lzu_digits", repo="HollowMan6/Captcha-Data-Set-Marking-Tool",
         commit="39777fe678c16a69a5f17c47e3fd3f7275912c21", license="GPL-3.0",
         paths=["right"], name_pattern=r"^(\d{5})\.png$", case=None,
         about="Lanzhou University academic-system login captchas (jwk.lzu.edu.cn): 5 digits, black on white, "
               "1-bit; the repository's right/ folder (labels the site accepted, per its README)"),
    dict(name="dotted_digits", repo="cloudchamb3r/captcha-ds",
         commit="5a4691c6f2a687e8ce7795bee2556f99d0187616", license="MIT",
         paths=["02.labeled", "03.verified"], name_pattern=r"^(\d{4})(?:\.\d+)?\.png$", case=None,
         about="a site's 4-digit captcha drawn in coloured dots over a wavy line and speckles, labelled by "
               "hand by contributors (02.labeled: not yet checked by a second person)"),
    dict(name="amazon", repo="a-maliarov/amazoncaptcha",
         commit="9f2001849e1046f08fe50dc71a04b7fad6c24d32", license="MIT",
         fetch="git -C {dest} fetch origin pull/117/head",
         paths=["tests/examples/accuracy"], name_pattern=r"^([A-Z]{6})\.jpg$", case=None,
         about="Amazon's 'type the characters' captcha: 6 capital letters, grey, warped; the accuracy set of "
               "pull request #117 (its commit is not on the default branch)"),
    dict(name="colour_lines", repo="Inefficacy/Captcha-Datasets",
         commit="15faa958d539a9306e1f624c0a9bfed543d9abae", license="no license file",
         paths=["datasets/generic/lower", "datasets/generic/upper"], name_pattern=r"^([0-9A-Za-z]+)-\d+\.png$",
         case="upper",
         about="'generic text captcha': 4-8 letters and digits, each in its own colour and font, crossed by "
               "thin lines, on a white RGBA page of varying width, some in very pale colours; labels folded to "
               "capitals (the lower/ folder draws some of its lower-case labels in capitals)"),
    dict(name="wp_simple", repo="WorqHat/Break-a-Captcha-System",
         commit="8cdc84040898b05de1d2a21787812dc01456fb8d", license="MIT",
         paths=["generated_captcha_images"], name_pattern=r"^([0-9A-Z]{4})\.png$", case=None,
         about="the WordPress 'Really Simple CAPTCHA' plugin's style (the set of A. Geitgey's 'break a CAPTCHA "
               "in 15 minutes' article): 4 of 2-9A-Z without I/O, black serif glyphs, 72x24 grey"),
    dict(name="swust_mixed", repo="Kelab/captcha_dataset",
         commit="3134ce4a078d79806b4ffb449f177bc7c23eb451", license="no license file",
         paths=["20190121", "20191218", "20200226"], name_pattern=r"^([0-9A-Za-z]{4})_[0-9a-f]{32}\.jpg$",
         case="lower",
         about="Southwest University of Science and Technology's login captcha (cas.swust.edu.cn), three "
               "versions of it mixed (folders 20190121, 20191218, 20200226): 4 of 0-9a-z, coloured glyphs "
               "crossed by thin lines, JPEG 90-100x30-35; labels lower case where some images draw capitals; "
               "the 20200226 folder was saved as the authors' earlier recogniser read it (per its README)"),
    dict(name="receita", repo="decryptr/captchaReceitaData",
         commit="c960e6814aede3a3ab2087b6f72c4d8f51c476ed", license="GPL-3.0",
         paths=["inst/img"], name_pattern=r"^.*_([0-9A-Za-z]{6})\.(?:png|jpg)$", case="lower",
         about="the Brazilian tax authority's (Receita Federal) captcha: 6 letters and digits in black serif "
               "glyphs of either case under heavy salt-and-pepper noise and a curved line, 180x50; labels "
               "folded to lower case (the authors read it without case)"),
    dict(name="agah_digits", repo="mnwato/captcha-recognition",
         commit="e894063d13cf187d7d122ca071bff7db156b428d", license="no license file",
         paths=["dataset-cat4"], name_pattern=r"^captcha(\d+)\.jpg$", line_labels="labels2.txt", case=None,
         about="the login captcha the repository's Agah_Captcha_Solver.py reads (its dataset-cat4): 4 digits, "
               "outlined or filled, in a colour on a plain background of another (dark or light), crossed by "
               "thin curves, 152x42 JPEG; labels2.txt gives the first 4099 images' labels, one a line"),
    dict(name="rsce_colour", repo="maniotrix/Sample_Captcha_Data",
         commit="65e4f4e5de693c05b90b0b1134b275144a709bf3", license="no license file",
         paths=["data/samples"], name_pattern=r"^sleep\d+_([0-9a-z]+)\.png$", case=None,
         about="a site's captcha (its code calls it 'rsce'; not named further): 5 of 23 letters and digits, each "
               "in its own bright colour, some overlapping, on a grey-to-white gradient, 255x40; labelled by hand "
               "(typed into sheets, then into the file names)"),
    dict(name="jaccount", repo="fztfztfztfzt/jaccount-captcha",
         commit="7761fbec98d71b51df21a102b128bc6b4fc1a0e5", license="MIT",
         paths=["data"], name_pattern=r"^([0-9A-Za-z]+)\.png$", case="lower",
         about="Shanghai Jiao Tong University's jAccount login captcha (per its README; the repository is a browser "
               "extension that reads it): 4 or 5 small letters, each upright or italic, regular or bold, in one "
               "colour on white, 100x40 JPEG files named .png; labels lower case (91 of the 1018 names type a letter "
               "as a capital that the image draws small)"),
    dict(name="fssp_cyrillic", repo="drandule/captcha_solver",
         commit="579eefd7461022e052640297733e4fcf525668d2", license="no license file",
         paths=["train", "test"], test_paths=["test"], name_pattern=r"^(.+)_num\d+\.jpg$", case=None,
         alphabet="бвгдежклмнпрст", sample=(4000, 1000),
         about="the Russian bailiffs' service's captcha (fssp.gov.ru/iss/ip): 5 of 7 digits and 14 Cyrillic "
               "letters, thick handwriting-like glyphs in one colour over thin coloured curves on a plain "
               "background, 200x60 JPEG; labels read from the site's audio captcha (per its README); a seeded "
               "sample of 4000 of its 24 920 training and 1000 of its 13 418 test images"),
]

# The shared sets, by reference (folder under --shared; read, never copied).
SHARED = [
    dict(name="captcha_images_v2", url="https://github.com/woosal1337/captcha-recognition-pytorch-CRNN",
         license="MIT", commit="shared copy"),
    dict(name="henan_digits", url="https://github.com/GT-ZhangAcer/CaptchaDataset", license="MIT",
         commit="shared copy"),
]


class SourceError(Exception):
    """A set's source cannot be read: the message names the repository and how to get it."""


def url_of(spec):
    return f"https://github.com/{spec['repo']}"


def clone_command(spec, mirrors):
    dest = os.path.join(mirrors, spec["repo"].split("/")[1])
    command = f"git clone {url_of(spec)} {dest}"
    if spec.get("fetch"):
        command += " && " + spec["fetch"].format(dest=dest)
    return command


# --- reading a source: a git directory at the pinned commit, or a plain folder ---------------------------------

def _git(git_dir, *args, data=None):
    done = subprocess.run(["git", f"--git-dir={git_dir}", *args], input=data, capture_output=True)
    if done.returncode:
        raise SourceError(f"git --git-dir={git_dir} {' '.join(args)}: {done.stderr.decode(errors='replace').strip()}")
    return done.stdout


def _has_commit(git_dir, commit):
    return subprocess.run(["git", f"--git-dir={git_dir}", "cat-file", "-e", f"{commit}^{{commit}}"],
                          capture_output=True).returncode == 0


def locate(spec, mirrors):
    """('git', git_dir) or ('dir', folder): where the set's files are read from; SourceError when absent."""
    owner, name = spec["repo"].split("/")
    looked = [os.path.join(mirrors, f"{owner}+{name}", "repo"), os.path.join(mirrors, f"{owner}+{name}"),
              os.path.join(mirrors, name)]
    for folder in looked:
        if not os.path.isdir(folder):
            continue
        if os.path.isfile(os.path.join(folder, "HEAD")) and os.path.isdir(os.path.join(folder, "objects")):
            if not _has_commit(folder, spec["commit"]):
                raise SourceError(f"{spec['name']}: {folder} (a copy of {url_of(spec)}) lacks commit "
                                  f"{spec['commit']}: git --git-dir={folder} fetch {url_of(spec)} "
                                  f"{_ref_hint(spec)}")
            return "git", folder
        dot_git = os.path.join(folder, ".git")
        if os.path.isdir(dot_git) and _has_commit(dot_git, spec["commit"]):
            return "git", dot_git
        if any(os.path.isdir(os.path.join(folder, p)) for p in spec["paths"]):
            return "dir", folder  # a plain copy, or a clone whose work tree holds the files (read as it is)
        if os.path.isdir(dot_git):
            raise SourceError(f"{spec['name']}: the clone {folder} lacks commit {spec['commit']} and the files "
                              f"{', '.join(spec['paths'])}: git -C {folder} fetch origin {_ref_hint(spec)}")
    raise SourceError(f"{spec['name']}: no copy of {url_of(spec)} in {mirrors} (looked for {owner}+{name}/repo, "
                      f"{owner}+{name}, {name}); get it with: {clone_command(spec, mirrors)}")


def _ref_hint(spec):
    fetch = spec.get("fetch")
    return fetch.split("fetch origin ", 1)[1] if fetch else spec["commit"]


def list_files(kind, where, spec):
    """[(repository path, blob id or None)] of the files under the set's paths, sorted by path."""
    found = []
    if kind == "git":
        out = _git(where, "ls-tree", "-r", "-z", "--full-tree", spec["commit"], "--", *spec["paths"])
        for entry in out.split(b"\0"):
            if not entry:
                continue
            meta, path = entry.split(b"\t", 1)
            mode, kind_, blob = meta.split()
            if kind_ == b"blob":
                found.append((path.decode("utf-8", errors="surrogateescape"), blob.decode()))
    else:
        for top in spec["paths"]:
            base = os.path.join(where, top)
            for folder, dirs, files in os.walk(base):
                dirs[:] = [d for d in dirs if not d.startswith(".")]
                for f in files:
                    full = os.path.join(folder, f)
                    found.append((os.path.relpath(full, where).replace(os.sep, "/"), None))
    return sorted(found)


def read_blobs(kind, where, entries):
    """Yield (path, bytes) for entries [(path, blob)], in order: one `git cat-file --batch` for a git source."""
    if kind != "git":
        for path, _ in entries:
            with open(os.path.join(where, path), "rb") as f:
                yield path, f.read()
        return
    proc = subprocess.Popen(["git", f"--git-dir={where}", "cat-file", "--batch"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE)
    try:
        for path, blob in entries:
            proc.stdin.write(blob.encode() + b"\n")
            proc.stdin.flush()
            header = proc.stdout.readline().split()
            if len(header) < 3 or header[1] != b"blob":
                raise SourceError(f"{where}: cannot read {path} ({b' '.join(header).decode()})")
            data = proc.stdout.read(int(header[2]))
            proc.stdout.read(1)  # the newline after each object
            yield path, data
    finally:
        proc.stdin.close()
        proc.wait()


# --- building a set ------------------------------------------------------------------------------------------

def image_info(data):
    """((width, height), mode) of an image's bytes, or None when it is not a readable image."""
    from PIL import Image
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            return im.size, im.mode
    except Exception:  # any decoding failure: the image is dropped and counted
        return None


def split_items(items, spec):
    """(train, test) of items [(path, ...)] in path order: the repository's test_paths, else seeded."""
    if spec.get("test_paths"):
        prefixes = tuple(p.rstrip("/") + "/" for p in spec["test_paths"])
        test = [it for it in items if it[0].startswith(prefixes)]
        return [it for it in items if not it[0].startswith(prefixes)], test
    order = list(range(len(items)))
    random.Random(SEED).shuffle(order)
    n_test = round(len(items) * TEST_FRACTION)
    test_ids = set(order[:n_test])
    return ([it for i, it in enumerate(items) if i not in test_ids],
            [it for i, it in enumerate(items) if i in test_ids])


def sample_part(items, n):
    """A seeded sample (SEED) of n of items, in their order; all of them when there are no more."""
    if len(items) <= n:
        return items
    keep = set(random.Random(SEED).sample(range(len(items)), n))
    return [it for i, it in enumerate(items) if i in keep]


def describe(labels, infos):
    """charset, lengths and image sizes/modes of a list of labels and image infos."""
    lengths = collections.Counter(len(x) for x in labels)
    sizes = collections.Counter(f"{w}x{h}" for (w, h), _ in infos)
    modes = collections.Counter(m for _, m in infos)
    return dict(charset="".join(sorted(set("".join(labels)))),
                lengths={str(k): v for k, v in sorted(lengths.items())},
                sizes=dict(sizes.most_common()), modes=dict(modes.most_common()))


def length_text(lengths):
    keys = sorted(int(k) for k in lengths)
    return str(keys[0]) if len(keys) == 1 else f"{keys[0]}-{keys[-1]}" if keys else "-"


def size_text(sizes):
    if not sizes:
        return "-"
    if len(sizes) == 1:
        return next(iter(sizes))
    ws = [int(s.split("x")[0]) for s in sizes]
    hs = [int(s.split("x")[1]) for s in sizes]
    top = max(sizes, key=sizes.get)
    w = f"{min(ws)}-{max(ws)}" if min(ws) != max(ws) else str(ws[0])
    h = f"{min(hs)}-{max(hs)}" if min(hs) != max(hs) else str(hs[0])
    return f"{w}x{h} (most {top})"


def line_labels(kind, where, spec):
    """The labels of spec's line_labels file, one a line (stripped), or None when the names hold the labels."""
    if not spec.get("line_labels"):
        return None
    path = spec["line_labels"]
    if kind == "git":
        data = _git(where, "show", f"{spec['commit']}:{path}")
    else:
        with open(os.path.join(where, path), "rb") as f:
            data = f.read()
    return [line.strip() for line in data.decode("utf-8").splitlines()]


def build_set(spec, mirrors, out, quiet=False):
    """Write <out>/<name>/{train,test}/ (images + labels.tsv), sources.tsv and set.json; return the record."""
    kind, where = locate(spec, mirrors)
    entries = list_files(kind, where, spec)
    if not entries:
        raise SourceError(f"{spec['name']}: no files under {', '.join(spec['paths'])} in {where}")
    pattern = re.compile(spec["name_pattern"])
    lines = line_labels(kind, where, spec)
    dropped = collections.Counter()
    keep = []  # (path, blob, label)
    for path, blob in entries:
        base = path.rsplit("/", 1)[-1]
        if os.path.splitext(base)[1].lower() not in IMAGE_EXTENSIONS:
            if not base.startswith("."):
                dropped["not an image"] += 1
            continue
        m = pattern.match(base)
        label = m.group(1) if m else ""
        if lines is not None:
            label = lines[int(label) - 1] if label and 0 < int(label) <= len(lines) else ""
        if spec.get("case") == "upper":
            label = label.upper()
        elif spec.get("case") == "lower":
            label = label.lower()
        if not label:
            dropped["no label in the name" if lines is None else f"no label in {spec['line_labels']}"] += 1
        elif not set(label) <= TYPABLE | set(spec.get("alphabet", "")):
            dropped["untypable label"] += 1
        else:
            keep.append((path, blob, label))
    items, seen = [], set()
    for (path, blob, label), (_, data) in zip(keep, read_blobs(kind, where, [(p, b) for p, b, _ in keep])):
        if data.startswith(LFS_POINTER):
            dropped["Git LFS pointer"] += 1
            continue
        digest = hashlib.sha256(data).hexdigest()
        if digest in seen:
            dropped["duplicate bytes"] += 1
            continue
        info = image_info(data)
        if info is None:
            dropped["unreadable image"] += 1
            continue
        seen.add(digest)
        items.append((path, label, data, info))
    if not items:
        raise SourceError(f"{spec['name']}: no labelled images left in {where} ({dict(dropped)})")
    train, test = split_items(items, spec)
    if spec.get("sample"):
        train, test = (sample_part(part, n) for part, n in zip((train, test), spec["sample"]))

    final = os.path.join(out, spec["name"])
    tmp = final + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    sources = []
    for part, chosen in (("train", train), ("test", test)):
        folder = os.path.join(tmp, part)
        os.makedirs(folder)
        lines = []
        for i, (path, label, data, _) in enumerate(chosen):
            name = f"{i:05d}{os.path.splitext(path)[1].lower()}"
            with open(os.path.join(folder, name), "wb") as f:
                f.write(data)
            lines.append(f"{name}\t{label}\n")
            sources.append(f"{part}/{name}\t{path}\n")
        with open(os.path.join(folder, "labels.tsv"), "w", encoding="utf-8", newline="\n") as f:
            f.writelines(lines)
    with open(os.path.join(tmp, "sources.tsv"), "w", encoding="utf-8", newline="\n") as f:
        f.writelines(sources)
    record = dict(name=spec["name"], url=url_of(spec), commit=spec["commit"], license=spec["license"],
                  paths=spec["paths"], about=spec["about"], case_folded=spec.get("case") is not None,
                  train=len(train), test=len(test), dropped=dict(dropped),
                  split=("repository's own" if spec.get("test_paths")
                         else f"seeded shuffle, seed {SEED}, {TEST_FRACTION:.0%} test")
                  + (f"; a seeded sample of {spec['sample'][0]} / {spec['sample'][1]}" if spec.get("sample") else ""),
                  **describe([it[1] for it in items], [it[3] for it in items]))
    with open(os.path.join(tmp, "set.json"), "w", encoding="utf-8") as f:
        json.dump(record, f, indent=1)
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    if not quiet:
        print(f"{spec['name']}: {len(train)} train / {len(test)} test -> {final}")
        print(f"  source   {url_of(spec)} @ {spec['commit'][:12]} ({kind} {where}), {', '.join(spec['paths'])}")
        print(f"  charset  '{record['charset']}' ({len(record['charset'])}), "
              f"{'labels as published' if not record['case_folded'] else 'labels folded to one case'}")
        print(f"  length   {record['lengths']}")
        print(f"  image    {size_text(record['sizes'])}, modes {record['modes']}")
        print(f"  dropped  {dict(dropped) or 'none'}")
    return record


# --- the shared sets and the listing ---------------------------------------------------------------------------

def read_folder_labels(folder):
    """[(path, label)]: labels.tsv beside the images when there is one, else LABEL.ext / LABEL_ID.ext names."""
    tsv = os.path.join(folder, "labels.tsv")
    if os.path.isfile(tsv):
        pairs = []
        with open(tsv, encoding="utf-8-sig") as f:
            for line in f:
                name, _, label = line.rstrip("\r\n").partition("\t")
                if name and label:
                    pairs.append((os.path.join(folder, name), label))
        return pairs
    names = sorted(n for n in os.listdir(folder) if os.path.splitext(n)[1].lower() in IMAGE_EXTENSIONS)
    return [(os.path.join(folder, n), os.path.splitext(n)[0].split("_")[0]) for n in names]


def folder_record(root, name, sample=None):
    """A set.json-like record of a folder holding train/ and test/ (the shared sets)."""
    from PIL import Image
    counts, labels, infos = {}, [], []
    for part in ("train", "test"):
        pairs = read_folder_labels(os.path.join(root, part))
        counts[part] = len(pairs)
        labels += [label for _, label in pairs]
        for path, _ in pairs[:sample] if sample else pairs:
            with Image.open(path) as im:
                infos.append((im.size, im.mode))
    return dict(name=name, **counts, **describe(labels, infos))


def suite(out, shared):
    """[(record or None, url, commit, license, where)] for every set of the suite: built, shared or missing."""
    rows = []
    for s in SHARED:
        folder = os.path.join(shared, s["name"])
        record = folder_record(folder, s["name"]) if os.path.isdir(folder) else None
        rows.append((s["name"], record, s["url"], s["commit"], s["license"], folder))
    for spec in SETS:
        folder = os.path.join(out, spec["name"])
        path = os.path.join(folder, "set.json")
        record = json.load(open(path, encoding="utf-8")) if os.path.isfile(path) else None
        rows.append((spec["name"], record, url_of(spec), spec["commit"], spec["license"], folder))
    return rows


def print_list(out, shared):
    head = ["set", "source", "commit", "license", "train/test", "charset", "length", "image"]
    table = []
    for name, record, url, commit, license_, folder in suite(out, shared):
        if record is None:
            table.append([name, url, commit[:12], license_, "(not built)", "", "", ""])
            continue
        charset = record["charset"]
        table.append([name, url, commit[:12], license_, f"{record['train']}/{record['test']}",
                      f"{charset} ({len(charset)})", length_text(record["lengths"]), size_text(record["sizes"])])
    widths = [max(len(str(r[i])) for r in table + [head]) for i in range(len(head))]
    for r in [head, ["-" * w for w in widths]] + table:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mirrors", default="/work/.mirror",
                        help="folder holding the repositories (bare git dirs, clones or plain copies)")
    parser.add_argument("--out", default="real_sets", help="where the sets are written (git-ignored)")
    parser.add_argument("--sets", default="", help="comma list of set names (default: all)")
    parser.add_argument("--shared", default=os.path.join(os.path.dirname(ROOT), "shared", "datasets"),
                        help="folder of the shared sets, listed by reference")
    parser.add_argument("--list", action="store_true", help="print the suite and stop")
    args = parser.parse_args(argv)
    if args.list:
        print_list(args.out, args.shared)
        return 0
    names = [n for n in args.sets.split(",") if n]
    known = {s["name"]: s for s in SETS}
    unknown = [n for n in names if n not in known]
    if unknown:
        print(f"unknown set(s) {', '.join(unknown)}; the suite: {', '.join(known)}", file=sys.stderr)
        return 2
    failed = 0
    for spec in [known[n] for n in names] if names else SETS:
        try:
            build_set(spec, args.mirrors, args.out)
        except SourceError as e:
            print(f"error: {e}", file=sys.stderr)
            failed += 1
    print()
    print_list(args.out, args.shared)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
