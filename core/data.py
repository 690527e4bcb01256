"""The one data path: folder -> (paths, labels) -> uint8 array (cached on disk) -> batches on the device.

Labels come from the file name (`LABEL.png`, `LABEL_ID.png`, copy markers like ` (2)` removed) or from a
`labels.tsv` beside the images (`file<TAB>label` per line): the exact rules are in read_labels. Every image is
read by load_image, whatever its mode. Every problem is collected and reported once, naming the files.
"""
import codecs
import collections
import contextlib
import hashlib
import json
import multiprocessing as mp
import os
import re
import stat
import unicodedata
import warnings

import numpy as np
import torch
from PIL import Image, ImageOps

from core.files import atomic_write, file_kind

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
SHOW_FILES = 5  # offending files named per problem
SMALLER_IMAGES = "smaller ones: --image_height=32 (the width follows the images' shape), --channels=1 (grey)"
SMALLER = "read fewer of them (a folder holding a sample), or " + SMALLER_IMAGES  # the fix when images overflow memory


class DataError(Exception):
    """A problem with the user's data, reported as one readable message (no traceback). `unknown`: the characters
    of its labels that CHARSET lacks (load_folder), for a caller to explain them in its own terms."""

    def __init__(self, message, unknown=""):
        super().__init__(message)
        self.unknown = unknown


def file_list(files):
    """The first SHOW_FILES of `files`, comma-separated, with ", ..." when there are more."""
    return ", ".join(files[:SHOW_FILES]) + (", ..." if len(files) > SHOW_FILES else "")


def _problem(what, files):
    return f"  {len(files)} {what}: {file_list(files)}"


class Codec:
    """Text <-> class ids.

    Fixed-length heads predict `max_len` positions over the charset, plus a padding class (the last id)
    when labels vary in length. CTC heads use id 0 as the blank and 1..len(charset) for characters.
    """

    def __init__(self, charset, length, case_sensitive=True):
        charset = charset if case_sensitive else "".join(dict.fromkeys(charset.upper()))
        if len(set(charset)) != len(charset):
            raise DataError(f"CHARSET has repeated characters: {charset!r}")
        if not charset:
            raise DataError("CHARSET is empty")
        self.charset, self.case_sensitive = charset, case_sensitive
        self.length = tuple(length) if isinstance(length, (tuple, list)) else (length, length)
        self.max_len = self.length[1]
        self.variable = self.length[0] != self.length[1]
        self.index = {c: i for i, c in enumerate(charset)}
        self.pad = len(charset)

    @property
    def fixed_classes(self):
        return len(self.charset) + self.variable

    @property
    def ctc_classes(self):
        return len(self.charset) + 1

    def normalize(self, text):
        """The label as the model learns it: upper-cased when the codec folds case."""
        return text if self.case_sensitive else text.upper()

    def check(self, text):
        """Why `text` (normalised) is not a valid label, or None."""
        bad = sorted({c for c in text if c not in self.index})
        if bad:
            return f"characters not in CHARSET {''.join(bad)!r}"
        if not self.length[0] <= len(text) <= self.length[1]:
            want = self.length[0] if not self.variable else f"{self.length[0]}-{self.length[1]}"
            return f"length {len(text)}, expected {want}"
        return None

    def encode(self, text):
        """(max_len,) ids padded with `pad`; serves both heads (CTC adds 1 and uses the lengths)."""
        return [self.index[c] for c in text] + [self.pad] * (self.max_len - len(text))

    def decode(self, ids):
        return "".join(self.charset[i] for i in ids if i < len(self.charset))


# --- labels: file names or labels.tsv ----------------------------------------------------------------------

LABELS_FILE = "labels.tsv"
UNREADABLE_FILE = "unreadable.txt"  # beside labels.tsv: images a person marked unreadable, one file name per line
                                    # (the labelling page writes it); they are neither trained on nor pseudo-labelled
# a copy's marker at the end of a file name: "(2)" / " (2)" (browsers, Windows), " copy" / " copy 2" (macOS),
# " - Copy" / " - Copy (2)" (Windows Explorer), " (copy)" (GNOME)
_COPY_MARKER = re.compile(r"(\s*\(\d+\)|\s+copy(\s+\d+)?|\s+-\s+copy(\s+\(\d+\))?|\s*\(copy\))$", re.IGNORECASE)
DEBRIS = "()[]{}"  # with whitespace and unprintable characters: what file names add, rarely what captchas show
RARE_LENGTH = 0.01  # a label length held by fewer labels than this share (and 2) is rare


def _strip_copy(stem):
    while True:
        cut = _COPY_MARKER.sub("", stem)
        if cut == stem:
            return stem
        stem = cut


def label_from_name(name):
    """(label, unclear) read from an image's file name (see read_labels): copy markers at the end are removed,
    then the label is the part before the first `_`; unclear when the part after that `_` holds no letter or
    digit, so that it cannot be an ID (`0+15_-.png`: the label holds the `_`)."""
    label, sep, rest = _strip_copy(os.path.splitext(os.path.basename(name))[0]).partition("_")
    return label, bool(sep) and not any(c.isalnum() for c in rest)


def read_labels(folder):
    """[(path, label)] for the images in `folder`: from `labels.tsv` when the folder holds one, else from the
    file names. Image files are those with an extension in IMAGE_EXTENSIONS; hidden files (".name") are not
    read. DataError with one message naming the files and the fix when the labels cannot be read.

    File names, `LABEL.png` or `LABEL_ID.png`:
      - copy markers at the end of the name are removed first: `AB12 (1).png`, `AB12(2).png`, `AB12 copy.png`,
        `AB12 copy 2.png`, `AB12 - Copy.png`, `AB12 - Copy (2).png`, `AB12 (copy).png` all read `AB12`;
      - the label is the part before the first `_`; the rest is an ID (a generator's seed and index, a hash,
        a counter: it must hold at least one letter or digit);
      - when any name's part after its first `_` holds no letter or digit (`0+15_-.png`, `12-3_.png`), the
        labels evidently hold `_` themselves and no name in the folder can be trusted: stop, suggesting
        labels.tsv. (A label with `_` followed by a letter or digit cannot be told from LABEL_ID at all: such
        sets need labels.tsv.)
      - when 90 % of the names (and 20 or more) start with the same word and `_` (`captcha_AB12.png`), the label
        is what follows it, said once (_worded_names); where what follows does not vary like labels
        (`img_0001.png`): stop, every image would have the same label;
      - when 90 % of the names (and 20 or more) start with a number and `_`, and the numbers count the images
        (all different, close together: `00017_AB12.png`), the number is an ID and the label follows it, said
        once (_numbered_names);
      - when 90 % of the names (and 20 or more) end in `-N` or `.N` (N a number: `0024miih-0.png`), that is an
        ID too, cut off and said once (_suffixed_names); not when the stems are all numbers and N varies
        (`12-3.png`: a sum's text). Labels that really end so need labels.tsv.

    labels.tsv, UTF-8 (a BOM and CRLF line ends are fine), one `file<TAB>label` line per image:
      - a first line whose first field is not a file in the folder and has no image extension is a header
        (`file<TAB>label`) and is skipped; empty lines are skipped; columns after the second are ignored (the
        confidence of predict.py's lines); spaces around the file name and the label are removed;
      - a file listed twice with the same label counts once; with different labels: stop, naming them;
      - non-UTF-8 bytes, or a line without a TAB: stop, naming the line;
      - listed files that do not exist, and images in the folder that the file does not list, are reported by
        load_folder (stop, or left out with SKIP_BAD).
    """
    return _scan(folder)[0]


ARCHIVES = (".zip", ".tar", ".tgz", ".tar.gz", ".tar.bz2", ".tar.xz", ".7z", ".rar")


def _require_folder(folder):
    if not os.path.isdir(folder):
        unpack = "; unpack it first and name the folder it gives" if folder.lower().endswith(ARCHIVES) else ""
        raise DataError(f"no such folder: {folder}" if not os.path.exists(folder) else
                        f"{folder} is not a folder ({file_kind(folder)}){unpack}")


def _scan(folder):
    """(items, unlisted): read_labels' [(path, label)] and, with a labels.tsv, the paths of the images in the
    folder that it does not list."""
    _require_folder(folder)
    names = image_names(folder)
    tsv = os.path.join(folder, LABELS_FILE)
    if os.path.lexists(tsv):
        items = read_tsv(folder, tsv)
        listed = {os.path.normpath(p) for p, _ in items} | unreadable_marks(folder)
        unlisted = [os.path.join(folder, n) for n in names if os.path.normpath(os.path.join(folder, n)) not in listed]
        if not items:
            raise DataError(f"{tsv} lists no images: write one 'file<TAB>label' line per image (the labelling page "
                            f"does: python app.py --label_dir={folder}); with no labels at all, the teacher reads the "
                            f"folder: python train.py --train_dir={folder} --unlabeled_dir={folder} --teacher=ddddocr2")
        return items, unlisted
    items, unclear = [], []
    marked = unreadable_marks(folder)
    for name in names:
        if os.path.normpath(os.path.join(folder, name)) in marked:
            continue
        label, odd = label_from_name(name)
        (unclear if odd else items).append((name, label))
    if unclear:
        example = "\n".join(f"    {n}\t{_strip_copy(os.path.splitext(n)[0])}" for n, _ in unclear[:2])
        raise DataError(
            f"{folder}: {len(unclear)} of {len(names)} file names have no ID after their first '_', so their "
            f"labels hold '_' themselves and cannot be read from the names: "
            f"{', '.join(n for n, _ in unclear[:SHOW_FILES])}{', ...' if len(unclear) > SHOW_FILES else ''}\n"
            f"A file name is read as LABEL.png or LABEL_ID.png: the label ends at the first '_', and an ID holds a "
            f"letter or digit. Put the labels in {tsv} instead: UTF-8, one line per image, the file name and its "
            f"label separated by a TAB (a first line 'file<TAB>label' is allowed), e.g.\n    file\tlabel\n{example}")
    items = _suffixed_names(folder, _numbered_names(folder, _worded_names(folder, items)))
    _refuse_ids(folder, items)
    _say_if_counted(folder, [label for _, label in items])
    if not items:
        raise DataError(f"{folder}: no images found (expected LABEL.png, LABEL_ID.png or a {LABELS_FILE} beside "
                        f"the images; extensions {', '.join(IMAGE_EXTENSIONS)})" + subfolder_hint(folder))
    return [(os.path.join(folder, n), unicodedata.normalize("NFC", label)) for n, label in items], []


_ID_SUFFIX = re.compile(r"^(.+?)([-.]\d+)$")
_NOTED = set()  # folders whose names were said to be read otherwise (read_labels runs several times a run)
COUNTER_SPAN = 1.5  # numbers before the first '_' read as a counter when they span at most this times their count


def _counter(numbers):
    """Whether `numbers` count something: all different and spanning at most COUNTER_SPAN times their count."""
    return len(set(numbers)) == len(numbers) and max(numbers) - min(numbers) + 1 <= COUNTER_SPAN * len(numbers)


def _counted(texts):
    """The numbers `texts` spell when every one is a number and together they count something (_counter), else
    None."""
    if not texts or not all(t.isascii() and t.isdigit() for t in texts):
        return None
    numbers = [int(t) for t in texts]
    return numbers if _counter(numbers) else None


def _fields(name):
    """A file name's '_'-joined parts, its extension and copy markers removed (`AB12_3-7 (1).png` -> AB12, 3-7)."""
    return _strip_copy(os.path.splitext(name)[0]).split("_")


def _note_once(folder, kind, text):
    """Print `note: FOLDER: text` the first time a folder's names are said to be read otherwise than LABEL_ID for
    `kind`: "first" (their first part is a word, a counter, or all there is) or "end" (an ID at their end)."""
    if (folder, kind) not in _NOTED:
        _NOTED.add((folder, kind))
        print(f"note: {folder}: {text}")


def _varied(texts):
    """Whether `texts` could be captcha labels rather than IDs: they vary, and are not a counter of numbers."""
    return len(set(texts)) >= min(10, len(texts) / 2) and _counted(texts) is None


def _worded_names(folder, items):
    """`items` [(name, label)], or the labels after a word that 90 % of the names (and 20 or more) start with
    (`captcha_AB12.png`, `captcha_0017_AB12.png` -> 'AB12'; said once per folder): the first '_'-joined field
    after it that varies like labels. Where none does (`img_0001.png`, `captcha (3).png`), the names hold no
    labels: they are left as they are, for _refuse_ids to refuse."""
    if len(items) < 20:
        return items
    word, count = collections.Counter(label for _, label in items).most_common(1)[0]
    if count < 0.9 * len(items):
        return items
    fields = {n: _fields(n)[1:] for n, label in items if label == word}
    for k in range(max(map(len, fields.values()))):  # the first field after the word that varies like labels
        after = {n: f[k] for n, f in fields.items() if len(f) > k and any(c.isalnum() for c in f[k])}
        if len(after) >= 0.9 * count and _varied(list(after.values())):
            break
    else:
        after = {}
    if after:
        example = next(iter(after))
        _note_once(folder, "first",
                   f"{count} of {len(items)} file names start with the same word '{word}_': read as WORD_LABEL, the "
                   f"label after it ({example} -> {after[example]!r}); if '{word}' is the captcha text, list the "
                   f"labels in {os.path.join(folder, LABELS_FILE)} (file<TAB>label)")
        return [(n, after.get(n, label)) for n, label in items]
    return items


class NoLabelsError(DataError):
    """The file names of a folder without labels.tsv evidently hold no labels (read_labels: _refuse_ids); `what`
    says how they show it."""

    def __init__(self, message, what, hint=""):
        super().__init__(message)
        self.what, self.hint = what, hint


ID_LENGTH = 16  # names this long or longer are IDs, hashes or dates, not captcha text
ID_DIGITS = 9  # numbers this long are IDs or dates (`1701234567.png`), not captcha text
_WORD_NUMBER = re.compile(r"^(.*\D)(\d+)$")


def _ids(items):
    """(how many, what, why) when the labels read from the names are evidently not captcha texts, else None; each
    rule holds for 90 % of them (and 20 or more): the same word (`img_0001.png`); one word of 3 or more characters
    and then a different number each (`img1.png`, `image001.png`, `Screenshot 2023-12-01 at 10.01.33.png`), or a
    shorter one and unpadded numbers that count the images (`c1.png` ... `c40.png`: _counter, of several lengths;
    `AB00` ... `AB29` may be labels); a
    different number of ID_DIGITS or more digits each (`1701234567890.png`); ID_LENGTH characters or more
    (`3f2a...e9.png`: a hash or UUID)."""
    labels = [label for _, label in items]
    if len(labels) < 20:
        return None
    enough = 0.9 * len(labels)
    word, count = collections.Counter(labels).most_common(1)[0]
    if count >= enough:
        return count, f"give the same label {word!r}", " a model trained on them would learn one word"
    split = [m.groups() for m in map(_WORD_NUMBER.match, labels) if m]
    word, count = (collections.Counter(w for w, _ in split).most_common(1) or [("", 0)])[0]
    spelt = [n for w, n in split if w == word]
    numbers = [int(n) for n in spelt]
    if count >= enough and (len(set(numbers)) >= enough if len(word) >= 3 else
                            _counter(numbers) and len({len(n) for n in spelt}) > 1):
        return count, f"are the same {word!r} and a number", " they number or date the images"
    numbers = {t for t in labels if t.isascii() and t.isdigit() and len(t) >= ID_DIGITS}
    if len(numbers) >= enough:
        return len(numbers), f"are numbers of {ID_DIGITS} or more digits", " they number or date the images"
    count = sum(len(t) >= ID_LENGTH for t in labels)
    if count >= enough:
        return count, f"are {ID_LENGTH} characters or longer", " they are IDs, hashes or dates, not captcha text"
    return None


def _refuse_ids(folder, items):
    """NoLabelsError, with the ways to label the folder, where the labels read from the names are IDs (_ids), or
    count the images (`1.png` ... `40.png`) while a file beside them may hold their labels (label_lists)."""
    found = _ids(items)
    numbers = _counted([label for _, label in items]) if len(items) >= 20 and not found else None
    hint = label_lists(folder, len(items)) if found or numbers else ""  # only for a folder refused or in doubt
    if numbers and hint:
        found = (len(items), f"count the images, each number once from {min(numbers)} to {max(numbers)}",
                 " a file beside them may hold their labels")
    if found:
        count, what, why = found
        what = f"{count} of {len(items)} file names {what}"
        raise NoLabelsError(
            f"{folder}: {what} ({', '.join(n for n, _ in items[:3])}, ...): they "
            f"hold no labels (a name is read as LABEL.png or LABEL_ID.png), and{why}. If the images are not "
            f"labelled yet, label some on the page: python app.py --label_dir={folder} (it writes "
            f"{os.path.join(folder, LABELS_FILE)}), or train without labels: python train.py --train_dir={folder} "
            f"--unlabeled_dir={folder} --teacher=ddddocr2. If they are labelled elsewhere, list the labels in "
            f"{os.path.join(folder, LABELS_FILE)} (file<TAB>label){hint}.", what, hint)


LIST_EXTENSIONS = (".txt", ".csv", ".tsv", ".json")  # files that may hold a folder's labels in another form


def _entries(path):
    """How many labels a text file could hold: a JSON file's entries (a single line, as json.dump writes), else its
    lines."""
    if path.lower().endswith(".json"):
        with contextlib.suppress(ValueError, OSError, UnicodeDecodeError):
            with open(path, encoding="utf-8") as f:
                found = json.load(f)
            if isinstance(found, (dict, list)):
                return len(found)
    with open(path, "rb") as f:
        return sum(1 for _ in f)


def label_lists(folder, images):
    """'; ... may hold them in another form', naming what near `folder` may hold the labels of its `images`: text
    files in it, else in the folder above it (labels.txt, one label a line; a CSV of names and labels; a JSON
    object) of 20 entries or more, and at least half as many as the images, with their counts; a labels.tsv in
    the folder above (read by naming that folder); a text file beside each image named like it (captcha1.txt,
    captcha1.gt.txt). '' if none."""
    found, said = [], []
    parent = os.path.dirname(os.path.abspath(folder))
    for where in (folder, parent):
        if found and where == parent:  # the folder's own lists first; a cluttered folder above adds only noise
            break
        with contextlib.suppress(OSError):
            for name in sorted(os.listdir(where)):
                path = os.path.join(where, name)
                if (not name.lower().endswith(LIST_EXTENSIONS) or name.startswith(".") or name == UNREADABLE_FILE
                        or not os.path.isfile(path) or os.path.getsize(path) >= 50 << 20):
                    continue
                if name == LABELS_FILE:
                    if where == parent and os.path.abspath(folder) != parent:
                        said.append(f"{path} lists images: --train_dir={parent} reads it (its lines name files "
                                    f"below it, such as {os.path.basename(os.path.normpath(folder))}/NAME)")
                    continue
                count = _entries(path)
                if count >= max(20, images / 2):
                    found.append(f"{path} ({count} {'entries' if path.lower().endswith('.json') else 'lines'})")
    with contextlib.suppress(OSError):
        names = set(os.listdir(folder))
        stems = [os.path.splitext(n)[0] for n in names if os.path.splitext(n)[1].lower() in IMAGE_EXTENSIONS]
        beside = [f for f in (next((t + e for e in (".txt", ".gt.txt") if t + e in names), None) for t in stems) if f]
        if beside and len(beside) >= max(20, images / 2):
            said.append(f"{len(beside)} images have a text file of their name beside them "
                        f"({file_list(sorted(beside))}), which may hold their labels")
    parts = ([f"{', '.join(found[:3])}{', ...' if len(found) > 3 else ''} may hold them in another form (one "
              f"line of Python turns it into {LABELS_FILE}: docs/own_data.md, 'Labels published in another form')"]
             if found else []) + said
    return "".join(f"; {p}" for p in parts)


def empty_labels_file(folder):
    """Whether `folder` holds a labels.tsv that lists no image (a header at most): a folder said to have no labels."""
    tsv = os.path.join(folder, LABELS_FILE)
    return os.path.isfile(tsv) and not read_tsv(folder, tsv)


def names_hold_no_labels(folder):
    """How the file names of `folder` (no labels.tsv) show that they hold no labels (read_labels refuses them as
    IDs, or they count the images: `1.png` ... `300.png`), or '' where they may be labels or cannot be read."""
    try:
        labels = [label for _, label in read_labels(folder)]
    except NoLabelsError as e:
        return e.what
    except DataError:
        return ""
    numbers = _counted(labels) if len(labels) >= 20 else None
    return f"the {len(labels)} file names count the images ({min(numbers)} to {max(numbers)})" if numbers else ""


def _numbered_names(folder, items):
    """`items` [(name, label)] read as ID_LABEL where the names number the images (`00017_AB12.png` -> 'AB12'): when
    90 % of the names (and 20 or more) are a number, '_' and more, and those numbers are all different and close
    together (a counter: they span at most COUNTER_SPAN times their count), and what follows varies and is not
    a counter itself, the number is the ID and the label is what follows it (up to a next '_'); said once per
    folder. Captcha texts made of digits are not a counter (a folder of random 4-digit labels repeats some long
    before it holds most of the 10 000), so LABEL_ID names of digit captchas read as before, and so do names
    whose part after the '_' is one word or a counter (`000017_x.png`, `0017_17.png`)."""
    parts = {}
    for name, _ in items:
        number, label = (_fields(name) + [""])[:2]
        if number.isascii() and number.isdigit() and any(c.isalnum() for c in label):
            parts[name] = (int(number), label)
    numbers, after = [n for n, _ in parts.values()], [t for _, t in parts.values()]
    if len(items) < 20 or len(parts) < 0.9 * len(items) or not _counter(numbers):
        return items
    if not _varied(after):
        return items  # what follows is an ID itself (`000017_x.png`, `0017_17.png`): LABEL_ID, as documented
    example = next(iter(parts))
    _note_once(folder, "first",
               f"{len(parts)} of {len(items)} file names start with a number, each a different one from {min(numbers)} "
               f"to {max(numbers)}: read as ID_LABEL, the number an ID and the label after its '_' ({example} -> "
               f"{parts[example][1]!r}); if the numbers are the captcha text, list the labels in "
               f"{os.path.join(folder, LABELS_FILE)} (file<TAB>label)")
    return [(n, parts[n][1] if n in parts else label) for n, label in items]


def _say_if_counted(folder, labels):
    """A note, once per folder, when the labels read from the names count the images (`1.png` ... `300.png`, each
    number once and close together): numbered images, most likely not labelled yet. Captcha texts of digits
    repeat and spread instead; the run goes on, as such labels may be meant."""
    numbers = _counted(labels) if len(labels) >= 20 else None
    if numbers:
        _note_once(folder, "first",
                   f"the labels read from the file names count the images, each number once from {min(numbers)} to "
                   f"{max(numbers)}: if the names only number them, they hold no labels; label some on the page "
                   f"(python app.py --label_dir={folder}) or train without labels (--unlabeled_dir={folder} "
                   f"--teacher=ddddocr2)")


def _suffixed_names(folder, items):
    """`items` [(name, label)] with the '-<number>' or '.<number>' that nearly every label ends in cut off
    (`0024miih-0.png` -> '0024miih', `AB12.17.png` -> 'AB12'): an ID or copy number joined by a '-' or '.', which
    would be trained on as the labels' last characters; said once per folder. Not when the parts before it are
    numbers themselves and the numbers vary (`12-3.png` may be a sum's text), nor where fewer than 90 % (or 20)
    of the names end so: then the labels are read as they are."""
    found = {n: m for n, m in ((n, _ID_SUFFIX.match(label)) for n, label in items) if m}
    if len(items) < 20 or len(found) < 0.9 * len(items):
        return items
    suffixes = collections.Counter(m[2] for m in found.values())
    if len(suffixes) > 1 and all(m[1].isdigit() for m in found.values()):
        return items
    common = suffixes.most_common(1)[0][0]
    said = f"'{common}'" if len(suffixes) == 1 else f"'{common[0]}<number>' ({len(suffixes)} different numbers)"
    example = next(iter(found))
    _note_once(folder, "end",
               f"{len(found)} of {len(items)} file names end in {said}: read as an ID, not as captcha text ({example} "
               f"-> {found[example][1]!r}); if it is captcha text, list the labels in "
               f"{os.path.join(folder, LABELS_FILE)} (file<TAB>label)")
    return [(n, found[n][1] if n in found else label) for n, label in items]


def subfolder_hint(folder):
    """For a folder without images: '; images are read from the folder itself, not its subfolders: ...' naming
    the subfolders that hold images (and how many), or '' when none does. Many subfolders of a few images each
    (a folder per label) get the labels.tsv line that reads them instead of the advice to name one."""
    try:
        subs = sorted(e.name for e in os.scandir(folder) if e.is_dir() and not e.name.startswith("."))
    except OSError:
        return ""
    held = {}
    for name in subs[:100]:  # a home folder's thousands of subfolders are not all listed
        with contextlib.suppress(OSError):
            n = len(image_names(os.path.join(folder, name)))
            if n:
                held[name] = n
    if not held:
        return ""
    most = max(held, key=held.get)  # a set's train/ rather than its test/
    listed = file_list([f"{name} ({n})" for name, n in held.items()])
    if len(held) >= 10 and sum(held.values()) < 5 * len(held):  # many small folders: one per label, as some sets
        return (f"; images are read from the folder itself, not its subfolders, and {len(held)} subfolders hold a "
                f"few images each ({listed}): if their names are the labels, list every image in "
                f"{os.path.join(folder, LABELS_FILE)} by its path below the folder, e.g. '{most}/"
                f"{image_names(os.path.join(folder, most))[0]}<TAB>{most}'")
    return (f"; images are read from the folder itself, not its subfolders, and these hold images: "
            f"{listed}; name one of them, e.g. {os.path.join(folder, most)}")


def image_names(folder):
    """The image files of a folder (an extension in IMAGE_EXTENSIONS, not hidden), sorted."""
    return sorted(n for n in os.listdir(folder)
                  if os.path.splitext(n)[1].lower() in IMAGE_EXTENSIONS and not n.startswith("."))


def unreadable_marks(folder):
    """Normalised paths of the images listed in the folder's UNREADABLE_FILE (none when it has none)."""
    path = os.path.join(folder, UNREADABLE_FILE)
    if not os.path.isfile(path):
        return set()
    with open(path, encoding="utf-8", errors="replace") as f:
        return {os.path.normpath(os.path.join(folder, line.strip().lstrip("\ufeff"))) for line in f if line.strip()}


class Stems:
    """Image files by their name without its extension, one folder listing each (read once, when first asked)."""

    def __init__(self):
        self.folders = {}

    def matches(self, path):
        """The image files that are `path` plus an image extension (`captcha17` -> [captcha17.jpg])."""
        folder, stem = os.path.split(path)
        if folder not in self.folders:
            index = collections.defaultdict(list)
            with contextlib.suppress(OSError):
                for name in image_names(folder or "."):
                    index[os.path.splitext(name)[0]].append(os.path.join(folder, name))
            self.folders[folder] = index
        return sorted(self.folders[folder].get(stem, []))


def with_extension(path, stems=None):
    """`path`, or where it does not exist and names no image file type, the one image file that is `path` plus an
    image extension (a list of names without theirs: `captcha17` for captcha17.jpg); `path` when none or several.
    `stems`: a Stems shared by many calls (a folder listed once)."""
    if os.path.splitext(path)[1].lower() in IMAGE_EXTENSIONS or os.path.lexists(path):
        return path
    found = (stems or Stems()).matches(path)
    return found[0] if len(found) == 1 else path


SWAP_ROWS = 100  # lines of a labels.tsv enough to tell its columns swapped (checked when its first file is missing)


def read_tsv(folder, tsv):
    """[(path, label)] from a labels.tsv (rules in read_labels; the labelling page reads it the same way)."""
    if not os.path.isfile(tsv):
        raise DataError(f"{tsv} is not a regular file ({file_kind(tsv)})")
    with open(tsv, "rb") as f:
        raw = f.read()
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise DataError(f"{tsv} is UTF-16 text: save it as UTF-8 (one 'file<TAB>label' line per image)")
    raw = raw[len(codecs.BOM_UTF8):] if raw.startswith(codecs.BOM_UTF8) else raw
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        column = e.start - raw.rfind(b"\n", 0, e.start)
        raise DataError(f"{tsv}:{line}: byte 0x{raw[e.start]:02x} at column {column} is not UTF-8; save the file "
                        f"as UTF-8 text (an editor's 'Save as ... UTF-8', or: iconv -f LATIN1 -t UTF-8)") from None
    labels, where, bad, clashes, first = {}, {}, [], {}, True
    rows = []  # the first SWAP_ROWS lines: (path, label, line number, whether the name has an image extension)
    stems = Stems()
    for n, line in enumerate(text.split("\n"), 1):
        line = line.rstrip("\r")
        if not line.strip():
            continue
        fields = line.split("\t")
        name = fields[0].strip()
        if "\\" in name and not os.path.lexists(os.path.join(folder, name)):
            name = name.replace("\\", "/")  # a list written on Windows: sub\a.png
        key = with_extension(os.path.normpath(os.path.join(folder, name)), stems)
        typed = os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS
        if first:
            first = False
            if len(fields) > 1 and not typed and not os.path.exists(key) and not any(c.isdigit() for c in name):
                continue  # a header (file, filename, image, ...); a name without its extension holds digits or exists
        if len(fields) < 2 or not name:
            bad.append(f"line {n}: {line[:60]!r}")
            continue
        label = unicodedata.normalize("NFC", fields[1].strip())  # é typed as e + accent (macOS names) is one character
        if len(rows) < SWAP_ROWS:
            rows.append((key, label, n, typed))
        if key not in labels:
            labels[key], where[key] = label, n
        elif labels[key] != label:
            clashes.setdefault(key, [f"line {where[key]} {labels[key]!r}"]).append(f"line {n} {label!r}")
    if bad:
        hint = " (separated by a comma or spaces? use one TAB)" if any("," in b or " " in b for b in bad) else ""
        raise DataError(f"{tsv}: {len(bad)} {'lines are' if len(bad) > 1 else 'line is'} not 'file<TAB>label'{hint}: "
                        f"{'; '.join(bad[:SHOW_FILES])}{'; ...' if len(bad) > SHOW_FILES else ''}")
    swapped = [(k, t, n) for k, t, n, typed in rows if not typed and not os.path.lexists(k) and t and os.path.isfile(
        with_extension(os.path.join(folder, t), stems))] if rows and not os.path.lexists(rows[0][0]) else []
    if swapped and len(swapped) >= len(rows) / 2:
        key, label, n = swapped[0]
        raise DataError(f"{tsv}: in {len(swapped)} of its first {len(rows)} lines the second column names a file of "
                        f"the folder and the first does not (line {n}: {os.path.relpath(key, folder)!r} then "
                        f"{label!r}): a line is 'file<TAB>label', the file first")
    if clashes:
        shown = "; ".join(f"{os.path.relpath(k, folder)} ({', '.join(v)})"
                          for k, v in list(clashes.items())[:SHOW_FILES])
        raise DataError(f"{tsv} gives {len(clashes)} file{'s' if len(clashes) > 1 else ''} two different labels: {shown}"
                        f"{'; ...' if len(clashes) > SHOW_FILES else ''}\nKeep one line per file.")
    return list(labels.items())


def common_lengths(lengths):
    """The label lengths held by at least 2 labels and RARE_LENGTH of them, sorted (a mistyped label's is not)."""
    counts = collections.Counter(lengths)
    return sorted(n for n, k in counts.items() if k >= max(2, RARE_LENGTH * sum(counts.values())))


def infer_codec(folder, charset, length, case_sensitive=True, skip_bad=False):
    """A Codec for `folder`'s labels: charset "infer" reads the characters from the labels (sorted), length 0
    reads (shortest, longest). Returns (codec, what was inferred, as text for the user; "" if nothing).

    What looks like file-name debris is not inferred from: with charset "infer", labels holding whitespace,
    unprintable characters or brackets `()[]{}`; with length 0, labels whose length lies 2 or more outside the
    range of the common lengths (a length is common when at least 2 labels and RARE_LENGTH of all have it): the
    lengths 1 and 10 where most labels have 6, but not 7 beside 4-6. DataError naming them and the fix; with
    skip_bad, the other labels decide CHARSET and LENGTH, and load_folder leaves the odd ones out (they no longer
    fit the codec). A CHARSET or LENGTH that is set is taken as it is."""
    if charset != "infer" and length:
        return Codec(charset, length, case_sensitive), ""
    items = [(p, t if case_sensitive else t.upper()) for p, t in read_labels(folder)]
    items = [(p, t) for p, t in items if t]
    if not items:
        raise DataError(f"{folder}: every label is empty; cannot infer CHARSET / LENGTH")
    said = []
    if skip_bad:  # the files load_folder will leave out do not shape the codec (a "BOMB_1.png" adds no "O")
        unusable = [p for p, _ in items if _unopenable(p)]
        if unusable:
            left_out = set(unusable)
            items = [(p, t) for p, t in items if p not in left_out]
            said.append(f"CHARSET / LENGTH are not inferred from the labels of {len(unusable)} files that do not open "
                        f"as images (SKIP_BAD), e.g. {os.path.basename(unusable[0])}")
            if not items:
                raise DataError(f"{folder}: none of the labelled files opens as an image, e.g. {unusable[0]}")
    problems, odd = [], set()
    if charset == "infer":
        chars = {}
        for p, t in items:
            for c in set(t):
                if c in DEBRIS or c.isspace() or not c.isprintable():
                    chars.setdefault(c, []).append(p)
        if chars:
            files = sorted({p for ps in chars.values() for p in ps})
            odd.update(files)
            problems.append(_problem(f"labels hold {''.join(sorted(chars))!r}",
                                     [f"{os.path.basename(p)} ({t!r})" for p, t in items if p in odd]))
    if not length:
        common = common_lengths(len(t) for p, t in items if p not in odd)
        if common:
            far = [(p, t) for p, t in items if p not in odd and
                   (len(t) < min(common) - 1 or len(t) > max(common) + 1)]
            if far:
                odd.update(p for p, _ in far)
                lo, hi = min(common), max(common)
                problems.append(_problem(f"labels have lengths {sorted({len(t) for _, t in far})}, far from the "
                                         f"common {lo if lo == hi else f'{lo}-{hi}'}",
                                         [f"{os.path.basename(p)} ({t!r})" for p, t in far]))
    if problems:
        listed = os.path.isfile(os.path.join(folder, LABELS_FILE))  # typed labels, not file names
        report = (f"{folder}: {len(odd)} of {len(items)} labels " + (
            f"in {LABELS_FILE} look like slips (brackets, stray spaces, a length far from the rest's)" if listed else
            "look like file-name debris (copy markers, brackets, stray spaces)") + ", not captcha text:\n"
            + "\n".join(problems))
        if not skip_bad:
            raise DataError(report + ("\nCorrect those lines of labels.tsv." if listed else
                                      "\nRename these files (or list the labels in labels.tsv).")
                            + " If the labels are right, set CHARSET and LENGTH yourself (config.py or --charset=... "
                              "--length=...); --skip_bad=1 infers them from the other labels and leaves these out.")
        said.append(report + "\nCHARSET / LENGTH are inferred from the other labels (SKIP_BAD)")
        items = [(p, t) for p, t in items if p not in odd]
        if not items:
            raise DataError(report + "\nNo other labels are left to infer CHARSET / LENGTH from.")
    texts = [t for _, t in items]
    if charset == "infer":
        charset = "".join(sorted(set("".join(texts))))
        said.append(f"CHARSET inferred from {len(texts)} labels in {folder}: {charset!r} ({len(charset)} characters)")
    if not length:
        lo, hi = min(map(len, texts)), max(map(len, texts))
        length = lo if lo == hi else (lo, hi)
        said.append(f"LENGTH inferred: {length}")
    return Codec(charset, length, case_sensitive), "\n".join(said)


RARE_CASE = 0.25  # letters held in both cases whose rarer case is at most this share of the other look like slips


def rare_case(texts):
    """[(letter in its rarer case, its count, the other case's count)], commonest first, when the labels `texts`
    hold letters in both cases, one case rarely: the rarer cases of all such letters together at most RARE_CASE as
    many characters as their other cases, and none of them over half as many as its other case (a labeller's stray
    capitals, or a captcha drawn in one case labelled now and then in the other). [] when no letter is held in both
    cases, or the labels hold both cases alike (a captcha that draws both)."""
    counts = collections.Counter(c for t in texts for c in t if c != c.swapcase())
    found = []
    for low in sorted({c.lower() for c in counts if c.swapcase() in counts}):
        rare, common = sorted((low, low.upper()), key=lambda c: counts[c])
        found.append((rare, counts[rare], counts[common]))
    if any(n > k / 2 for _, n, k in found) or sum(n for _, n, _ in found) > RARE_CASE * sum(k for _, _, k in found):
        return []
    return sorted(found, key=lambda f: -f[1])


def _unopenable(path):
    """True if `path` is missing or does not open as an image within MAX_PIXELS (its header only: cheap)."""
    try:
        load_image(path, 0, 0, 0, header_only=True)
        return False
    except ImageError:  # a missing file too (load_image names it)
        return True


# --- images: one loading function for every script ----------------------------------------------------------

IMAGE_FORMATS = ("PNG", "JPEG", "GIF", "BMP", "WEBP", "TIFF")  # what Pillow may open: never EPS & co. (they run tools)
MAX_PIXELS = 1 << 26  # 67 M pixels (8192 x 8192); more is a decompression bomb, not a captcha
# Pillow warns above Image.MAX_IMAGE_PIXELS (89 M) and raises above twice that: the warning becomes an error too
warnings.filterwarnings("error", category=Image.DecompressionBombWarning)


class ImageError(ValueError):
    """An image that cannot be read; str() names the file and says why, .reason says only why."""

    def __init__(self, name, reason):
        super().__init__(f"{name}: {reason}")
        self.name, self.reason = name, reason


def load_image(source, width, height, channels, header_only=False):
    """uint8 array (H, W, C), C = `channels` (1 grey, 3 RGB), resized to width x height (0 x 0: its own size).
    header_only: only open it and check its size (None; the pixels are not decoded).

    `source`: a path, a binary file object or a PIL image. Every mode Pillow opens reads like its 8-bit
    equivalent: 1, L, P, RGB, CMYK, YCbCr, ... as Pillow converts them; alpha (LA, PA, RGBA, a palette's or a
    tRNS transparent colour) composited on white; 16-bit (I;16*) scaled by 255/65535; 32-bit I and F by their
    values: 0-1 (F only) and 0-255 as they are, 0-65535 as 16-bit, anything else stretched from min-max to
    0-255; animated images give their first frame. A path must be a regular file (a FIFO or device is refused
    without being opened); an image of more than MAX_PIXELS is refused before its pixels are decoded.
    Raises ImageError (a ValueError) naming the file for anything unreadable."""
    if isinstance(source, (str, os.PathLike)):
        name = os.fspath(source)
    else:
        name = getattr(source, "filename", "") or getattr(source, "name", "") or "image"
        name = name if isinstance(name, str) else "image"
    try:
        if isinstance(source, Image.Image):
            return _pixels(source, name, width, height, channels, header_only)
        if not isinstance(source, (str, os.PathLike)):
            with Image.open(source, formats=IMAGE_FORMATS) as image:
                return _pixels(image, name, width, height, channels, header_only)
        st = os.stat(name)
        if not stat.S_ISREG(st.st_mode):
            raise ImageError(name, f"not a regular file ({file_kind(name)}); not opened")
        # O_NONBLOCK: should a FIFO be swapped in after the stat, opening it does not wait for a writer
        fd = os.open(name, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise ImageError(name, f"not a regular file ({file_kind(name)})")
            with Image.open(f, formats=IMAGE_FORMATS) as image:
                return _pixels(image, name, width, height, channels, header_only)
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageError(name, f"a decompression bomb ({e})") from None
    except Image.UnidentifiedImageError:
        raise ImageError(name, f"not an image file ({', '.join(IMAGE_FORMATS)} are read)") from None
    except OSError as e:
        raise ImageError(name, e.strerror if e.filename and e.strerror else f"{type(e).__name__}: {e}") from None
    except Exception as e:  # whatever a corrupt or hostile file makes a decoder raise: one message, no traceback
        raise ImageError(name, f"{type(e).__name__}: {e}") from None


def _pixels(image, name, width, height, channels, header_only=False):
    if image.width * image.height > MAX_PIXELS:
        raise ImageError(name, f"{image.width}x{image.height} pixels, more than MAX_PIXELS ({MAX_PIXELS}): a "
                               f"decompression bomb, not a captcha; not decoded")
    if header_only:
        return None
    if getattr(image, "n_frames", 1) > 1 and image.tell():
        image.seek(0)
    image.load()
    image = upright(image)
    image = _eight_bit(image)
    image = image.convert("L" if channels == 1 else "RGB") if image.mode != ("L" if channels == 1 else "RGB") else image
    if width and height and image.size != (width, height):  # 0 x 0: the image's own size
        image = image.resize((width, height), Image.BILINEAR)
    array = np.asarray(image, dtype=np.uint8)
    return array[:, :, None] if channels == 1 else array


def upright(image):
    """`image` turned as its EXIF orientation tag says (a photo or a phone's screenshot saved sideways), as a browser
    shows it, so that the labelling page, training and reading see the same upright text; itself without a tag."""
    try:
        turned = image.getexif().get(ORIENTATION, 1) not in (1, None)
    except Exception:  # a broken EXIF block: the pixels as they are
        return image
    return ImageOps.exif_transpose(image) if turned else image


ORIENTATION = 0x0112  # the EXIF orientation tag


def _eight_bit(image):
    """`image` as L or RGB with what an 8-bit viewer shows on a white page (rules in load_image)."""
    mode = image.mode
    if mode in ("I", "F") or mode.startswith("I;16"):
        return Image.fromarray(_scale(np.asarray(image), mode))
    if mode in ("L", "RGB") and "transparency" not in image.info:
        return image
    if mode == "1":
        return image.convert("L")
    if "A" in mode or "a" in mode or "transparency" in image.info:
        rgba = image.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba).convert("RGB")
    return image.convert("RGB")


def _scale(values, mode):
    """(H, W) 16- or 32-bit values -> uint8 0-255 (rules in load_image)."""
    a = np.nan_to_num(values.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
    if mode.startswith("I;16") or lo >= 0 and 255 < hi <= 65535:
        a = a * (255 / 65535)
    elif mode == "F" and lo >= 0 and hi <= 1:
        a = a * 255
    elif lo < 0 or hi > 255:
        a = (a - lo) * (255 / max(hi - lo, 1e-12))
    return np.clip(np.rint(a), 0, 255).astype(np.uint8)


def _decode(task):
    path, width, height, channels = task
    try:
        return load_image(path, width, height, channels)
    except ImageError as e:
        return e.reason


# --- the decoded-folder cache -------------------------------------------------------------------------------

CACHE_VERSION = 3  # part of every cache key; 2: 16-bit, alpha and CMYK images read like their 8-bit equivalents;
# 3: images with an EXIF orientation read upright
_cache_warned = []  # folders whose failed cache write was reported (once each)


def _cache_key(items, width, height, channels):
    h = hashlib.sha1(f"v{CACHE_VERSION} {width}x{height}x{channels}".encode())
    for path, label in items:
        try:
            st = os.stat(path)
            size, mtime = st.st_size, st.st_mtime_ns
        except OSError:
            size = mtime = None
        # surrogateescape: a file name that is not UTF-8 (bytes Linux allows) still has a key
        h.update(f"{path}\0{label}\0{size}\0{mtime}\n".encode("utf-8", "surrogateescape"))
    return h.hexdigest()[:16]


def read_cache(path, n, width, height, channels, quiet=False):
    """(images (N, H, W, C) uint8, ok (N,) bool) from a cache file, or None when there is none. A file that is
    corrupt, truncated, foreign or of other shapes is removed (it is rebuilt) with a one-line warning."""
    if not os.path.isfile(path):
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            images, ok = z["images"], z["ok"]
        if images.dtype != np.uint8 or images.shape != (n, height, width, channels) or ok.shape != (n,):
            raise ValueError(f"holds {images.dtype} {images.shape}, expected uint8 {(n, height, width, channels)}")
        return images, ok.astype(bool)
    except Exception as e:  # BadZipFile, EOFError, KeyError, ValueError, zlib.error, AttributeError (a .npy)...
        if not quiet:
            print(f"warning: cache file {path} is unusable ({type(e).__name__}: {str(e)[:120]}); rebuilding it")
        with contextlib.suppress(OSError):
            os.remove(path)
        return None


def write_cache(path, images, ok, quiet=False):
    """Write a cache file (atomically); the cache is optional, so a failure (disk full, read-only folder, a file
    where the folder should be) is one warning per folder and no error. Returns whether it was written."""
    folder = os.path.dirname(path)
    try:
        os.makedirs(folder, exist_ok=True)
        atomic_write(path, lambda f: np.savez(f, images=images, ok=ok))
        return True
    except OSError as e:
        if not quiet and folder not in _cache_warned:
            print(f"warning: could not write the cache {path} ({e.strerror or e}); going on without it "
                  f"(the next run decodes the images again)")
        _cache_warned.append(folder)
        return False


class CaptchaSet:
    """A decoded folder: images (N, H, W, C) uint8, labels (N, max_len) int64, texts, paths."""

    def __init__(self, paths, texts, images, codec):
        self.paths, self.texts, self.images, self.codec = paths, texts, images, codec
        self.labels = np.array([codec.encode(t) for t in texts], dtype=np.int64).reshape(len(texts), -1)

    def __len__(self):
        return len(self.paths)

    def tensors(self, device):
        """(images (N, C, H, W) uint8, labels (N, max_len) int64, lengths (N,)) on `device`."""
        images = torch.from_numpy(self.images).permute(0, 3, 1, 2).contiguous()
        lengths = torch.tensor([len(t) for t in self.texts], dtype=torch.int64)
        return images.to(device), torch.from_numpy(self.labels).to(device), lengths.to(device)


MEMORY_MARGIN = 2**30  # bytes a run needs beside its images: the model, its batches, evaluation's activations


def available_memory():
    """Bytes of memory this machine can still give a process (Linux: MemAvailable in /proc/meminfo), or None
    where it does not say."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def check_memory(count, width, height, channels, where, fix, copies=2):
    """DataError naming `where` and the fix when `count` images of this size, held `copies` times (decoded, then
    as the run's tensors) plus MEMORY_MARGIN, need more memory than the machine has available: said before
    decoding, instead of the system killing the run part way with no message."""
    need = count * width * height * channels * copies + MEMORY_MARGIN
    free = available_memory()
    if free is not None and need > free:
        kind = "grey" if channels == 1 else "colour"
        held = f"each held {copies} times while a run trains on them" if copies > 1 else "read at once"
        raise DataError(f"{where}: {count} images of {width}x{height} {kind} need about {need / 2**30:.1f} GiB of "
                        f"memory ({held}), but this machine has {free / 2**30:.1f} GiB available; {fix}")


def decode_images(paths, width, height, channels, cache_dir=None, quiet=False, labels=None):
    """(images (N, H, W, C) uint8, ok (N,) bool, {path: why} for the unreadable ones): the files decoded by
    load_image (on several processes for large sets), cached in `cache_dir` (keyed by paths, `labels`, sizes and
    modification times) when every file decoded."""
    items = list(zip(paths, labels if labels is not None else [""] * len(paths)))
    cache = cache_dir and os.path.join(cache_dir, f"{_cache_key(items, width, height, channels)}.npz")
    cached = read_cache(cache, len(items), width, height, channels, quiet) if cache else None
    if cached:
        return (*cached, {})
    tasks = [(p, width, height, channels) for p in paths]
    processes = min(os.cpu_count() or 1, max(1, len(tasks) // 2000))
    images = np.zeros((len(items), height, width, channels), dtype=np.uint8)
    ok = np.ones(len(items), dtype=bool)
    failed = {}
    with contextlib.ExitStack() as stack:
        if processes > 1:  # each decoded image goes into `images` as it arrives: the set is held once, not twice
            decoded = stack.enter_context(mp.get_context("fork").Pool(processes)).imap(_decode, tasks, chunksize=256)
        else:
            decoded = map(_decode, tasks)
        for i, d in enumerate(decoded):
            if isinstance(d, str):
                ok[i], failed[paths[i]] = False, d
            else:
                images[i] = d
    if cache and ok.all():
        write_cache(cache, images, ok, quiet)
    return images, ok, failed


def sample_indices(total, count, seed):
    """The sorted indices of a seeded sample of `count` of `total` items (LIMIT's sample)."""
    return np.sort(torch.randperm(total, generator=torch.Generator().manual_seed(seed)).numpy()[:count])


def take_sample(items, count, seed):
    """LIMIT's seeded sample of a list: `count` of its items, in their order; every item where count is 0 or not
    below their number."""
    return [items[i] for i in sample_indices(len(items), count, seed)] if 0 < count < len(items) else items


def load_folder(folder, codec, width, height, channels, cache_dir=None, skip_bad=False, quiet=False,
                unlabeled_ok=False, copies=2, sample=0, seed=0):
    """Scan, check and decode a folder into a CaptchaSet (labels: read_labels). Problems (listed files missing,
    images labels.tsv does not list, labels that do not fit the codec, unreadable images) are collected and
    raised as one DataError naming the files; with skip_bad those files are left out with a warning instead.
    unlabeled_ok: images labels.tsv does not list are no problem (they are the run's unlabelled images).
    copies: how many times the caller holds the images (check_memory): 2 for a run, 1 for reading them once.
    sample: 0 < sample < the folder's labelled images: only a seeded sample of that many (`seed`) is checked and
    decoded (LIMIT), so a large folder costs only its sample. The decoded array is cached in `cache_dir` (optional: read_cache / write_cache)."""
    items, unlisted = _scan(folder)
    if unlabeled_ok:
        unlisted = []
    items = [(p, codec.normalize(t)) for p, t in items]
    of = f" (a seeded sample of its {len(items)})" if 0 < sample < len(items) else ""
    items = take_sample(items, sample, seed)
    missing = [p for p, _ in items if not os.path.exists(p)]
    bad_labels = {}

    def shown(path):  # a file of the folder by its name; one labels.tsv lists elsewhere by its whole path
        return os.path.basename(path) if os.path.dirname(os.path.normpath(path)) == os.path.normpath(folder) else path
    for path, text in items:
        why = codec.check(text)
        if why:
            bad_labels.setdefault(why, []).append(shown(path) + (f" ({text!r})" if text else ""))

    check_memory(len(items), width, height, channels, folder, SMALLER, copies)
    images, ok, failed = decode_images([p for p, _ in items], width, height, channels, cache_dir, quiet,
                                       labels=[t for _, t in items])
    unreadable = [f"{shown(p)} ({why})" for p, why in failed.items() if os.path.exists(p)]

    stems = Stems()

    def which(path):  # a name without its extension that two image files could be (captcha5.jpg, captcha5.png)
        both = stems.matches(path) if os.path.splitext(path)[1].lower() not in IMAGE_EXTENSIONS else []
        return f" (is it {' or '.join(map(shown, both))}? write its extension)" if len(both) > 1 else ""
    problems = [_problem("listed files are missing", [shown(p) + which(p) for p in missing])] if missing else []
    if unlisted:
        problems.append(_problem(f"images are not listed in {LABELS_FILE} (add a 'file<TAB>label' line for each, "
                                 f"or train with --unlabeled_dir={folder} to use them without labels)",
                                 [os.path.basename(p) for p in unlisted]))
    problems += [_problem(f"labels with {why}", files) for why, files in bad_labels.items()]
    if unreadable:
        problems.append(_problem("unreadable images", unreadable))
    keep = ok & np.array([codec.check(t) is None for _, t in items], dtype=bool)
    if problems:
        total = len(items) + len(unlisted)
        report = (f"{folder}: {total - int(keep.sum())} of {total} files{of} are unusable\n" + "\n".join(problems))
        if not skip_bad or not keep.any():
            unknown = "".join(sorted({c for _, t in items for c in t if c not in codec.index}))
            raise DataError(report + "\nFix or remove them, or run with --skip_bad=1 to leave them out.", unknown)
        if not quiet:
            print(f"warning: {report}\nleaving them out (SKIP_BAD)")
    paths = [p for (p, _), k in zip(items, keep) if k]
    texts = [t for (_, t), k in zip(items, keep) if k]
    return CaptchaSet(paths, texts, images if keep.all() else images[keep], codec)


def unlabeled_images(folder, exclude=(), truth_from_names=False):
    """[(path, truth or None)]: the images of `folder` a run uses without their labels, those not in `exclude`
    (normalised paths: the run's labelled images) and not marked in UNREADABLE_FILE. `truth` is the label the
    folder gives the image (its labels.tsv; with truth_from_names, its file name: a folder of labelled images
    whose labels are hidden from training), used only to report how many pseudo-labels were right."""
    _require_folder(folder)
    # resolved paths: the training folder named by another spelling (relative, absolute, through a link) must still
    # keep its labelled (and validation) images out
    skip = {os.path.realpath(p) for p in exclude} | {os.path.realpath(p) for p in unreadable_marks(folder)}
    truth = {}
    if os.path.isfile(os.path.join(folder, LABELS_FILE)):
        truth = {os.path.realpath(p): t for p, t in read_tsv(folder, os.path.join(folder, LABELS_FILE))}
    elif truth_from_names:
        truth = {os.path.realpath(p): t for p, t in read_labels(folder)}  # the names read as a run reads them
    paths = [os.path.join(folder, n) for n in image_names(folder)]
    return [(p, truth.get(os.path.realpath(p))) for p in paths if os.path.realpath(p) not in skip]


# --- training batches: device-resident, or streamed from pinned host memory ------------------------------


# --- image geometry from the data ------------------------------------------------------------------------

MIN_HEIGHT, MAX_HEIGHT = 32, 64  # heights the models read well: >= 2 rows after their /16, and cheap on a CPU
# pixels of input width a character of the longest label gets at least: long text in a small image is stretched to
# it. A fixed length: 18 (2.25 of the CTC heads' 8-pixel columns), the tightest of the real-set suite (henan_digits'
# 4 digits at 72x32, 99.95 %; stretched to 96, 99.80 %; lzu_digits' 5 at 104x32, 100 labels 96.30 %, at 120 95.20 %);
# there decoding is kept to that length. Generated 8-character captchas of 100x30 read 3.4 % at the 104x32 their
# aspect ratio gives, 16.6 % at 144. Labels of several lengths: 32 (4 columns), since a reading a letter short is then
# a reading like any other and a doubled letter needs a blank column between its two: jaccount (4-5 letters in about
# the left two thirds of 100x40), all labels, 94.12 % at 96x40 (11 of its 12 misses a letter short, 4 of them a
# doubled one), 97.55 % at 120, 99.02 % at 160 (BENCHMARKS.md)
CHAR_WIDTH, CHAR_WIDTH_VARIABLE = 18, 32


ODD_SIZE = 4.0  # an image whose height or aspect ratio is this many times off the others' median is far from them


def odd_sizes(paths, sample=1000, seed=0):
    """([(path, (width, height))], how many were looked at): of a seeded sample of `paths` (their headers only: a
    few ms for 1000), the images whose height or aspect ratio lies ODD_SIZE times or more from the sample's median
    (a 1-pixel-high strip, a screenshot among captchas): resized to the run's size, they are trained on stretched."""
    from PIL import Image

    chosen = take_sample(paths, sample, seed)
    sizes = []
    for path in chosen:
        with contextlib.suppress(Exception):  # unreadable files are named when the folder is loaded
            with Image.open(path) as im:
                sizes.append((path, im.size))
    if len(sizes) < 10:
        return [], len(sizes)
    tall = float(np.median([h for _, (w, h) in sizes]))
    wide = float(np.median([w / h for _, (w, h) in sizes if h]))
    off = lambda v, m: v <= 0 or max(v / m, m / v) >= ODD_SIZE
    return [(p, (w, h)) for p, (w, h) in sizes if off(h, tall) or (h and off(w / h, wide))], len(sizes)


def infer_geometry(paths, sample=200, seed=0, height=0, length=(0, 0)):
    """(width, height, channels) for images like those at `paths` (a seeded sample of them is opened): the height
    of the larger images (the 90th percentile of the sample) brought into MIN_HEIGHT..MAX_HEIGHT (or `height`, when
    set), the width that keeps the median aspect ratio at that height, rounded to a multiple of 8 (CTC heads read
    columns of 8 pixels), and at least CHAR_WIDTH pixels (CHAR_WIDTH_VARIABLE where `length`, the labels' (shortest,
    longest) common lengths, holds several) for each character of the longest; colour (3) when the sampled images
    carry colour, else grey (1). A folder of one size gets that size; one that mixes sizes is read at its larger
    images' height, whose detail a smaller input would lose (the median read a mix of 30-, 24- and 80-pixel-high
    styles at 32 pixels)."""
    import random

    listed, paths = paths, [p for p in paths if os.path.isfile(p)]
    if not paths:
        raise DataError(f"none of the {len(listed)} labelled files is an existing file ({file_list(listed)}): check "
                        f"the names {LABELS_FILE} lists against the folder's files" if listed else
                        "no readable images to infer IMAGE_WIDTH / IMAGE_HEIGHT / CHANNELS from")
    chosen = random.Random(seed).sample(paths, min(sample, len(paths)))
    sizes, coloured = [], 0
    for path in chosen:
        try:
            rgb = load_image(path, 0, 0, 3)
        except Exception:  # unreadable files are named when the folder is loaded
            continue
        sizes.append(rgb.shape[:2])
        spread = rgb.max(axis=2).astype(np.int16) - rgb.min(axis=2)
        coloured += float((spread > 24).mean()) > 0.01  # more than 1 % of the pixels visibly coloured
    if not sizes:
        raise DataError(f"none of {len(chosen)} sampled images could be read, e.g. {chosen[0]}")
    tall = float(np.percentile([s[0] for s in sizes], 90))
    aspect = float(np.median([s[1] / s[0] for s in sizes]))
    height = height or int(round(min(MAX_HEIGHT, max(MIN_HEIGHT, tall))))
    shortest, longest = length
    least = (CHAR_WIDTH if shortest == longest else CHAR_WIDTH_VARIABLE) * longest
    width = max(16, int(round(aspect * height / 8)) * 8, -(-least // 8) * 8)
    return width, height, 3 if coloured > len(sizes) // 2 else 1
