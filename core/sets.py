"""A run's three sets: the training images, the seeded validation part held out from them, and the test folder
(reported only); or, with ONLINE, fresh captchas and a rendered validation set."""
import collections
import contextlib
import hashlib
import os

import numpy as np
import torch

import config
from core import data, fresh
from core.device import cpu_count, local_world


def split_validation(s, train_set, fraction, seed):
    """(training part, validation part): a seeded `fraction` of the set held out; the same split on every rank."""
    if not 0 <= fraction < 1:
        raise config.ConfigError(f"VALIDATION={fraction}: a fraction of TRAIN_DIR, 0 <= VALIDATION < 1")
    order = torch.randperm(len(train_set), generator=torch.Generator().manual_seed(seed)).numpy()
    cut = max(1, round(len(train_set) * fraction)) if fraction else 0
    if cut and len(train_set) - cut < 1:
        raise data.DataError(f"{s.TRAIN_DIR}: {len(train_set)} labelled image{'s are' if len(train_set) != 1 else ' is'} "
                             f"too few to hold out a validation part: label more (a few dozen at least; the labelling "
                             f"page: python app.py --label_dir={s.TRAIN_DIR})")
    pick = lambda ix: data.CaptchaSet([train_set.paths[i] for i in ix], [train_set.texts[i] for i in ix],
                                      train_set.images[ix], train_set.codec)
    return pick(np.sort(order[cut:])), (pick(np.sort(order[:cut])) if cut else None)


def test_folder(s):
    """The folder reported as the test set ("" = none); ONLINE reads no TRAIN_DIR, so it has no sibling test folder.
    TRAIN_DIR itself is refused (ConfigError): its figure would be the model reading its own training images."""
    if s.ONLINE:
        return s.TEST_DIR
    folder = s.test_dir()
    if same_folder(folder, s.TRAIN_DIR):
        raise config.ConfigError(f"TEST_DIR={folder} is TRAIN_DIR: a test folder holds images the run never trains "
                                 f"on (else its figure says how well the model learnt its own training images); name a "
                                 f"folder of other labelled images, or leave --test_dir out")
    return folder


def limit_draw(s):
    """(count, seed) of LIMIT's seeded sample of TRAIN_DIR (0: every image), drawn apart from the validation split's
    seed; `s` may be Settings or the config module (a benchmark drawing the same sample)."""
    return s.LIMIT, s.SEED + 1


def labelled_items(s):
    """[(path, label)]: the labelled images of TRAIN_DIR a run trains and validates on, read as load_data reads
    them (every one, or LIMIT's seeded sample), before they are checked against a charset or decoded."""
    return data.take_sample(data.read_labels(s.TRAIN_DIR), *limit_draw(s))


def taught_set(s, codec, taught, quiet=False):
    """The CaptchaSet of a teacher's readings (paths, texts): the training images of a run without labels (LIMIT:
    a seeded sample of them, as of a labelled folder)."""
    read = data.take_sample(list(zip(*taught)), *limit_draw(s))
    paths, texts = [p for p, _ in read], [t for _, t in read]
    data.check_memory(len(paths), s.IMAGE_WIDTH, s.IMAGE_HEIGHT, s.CHANNELS, f"TRAIN_DIR={s.TRAIN_DIR}", data.SMALLER)
    images, ok, _ = data.decode_images(paths, s.IMAGE_WIDTH, s.IMAGE_HEIGHT, s.CHANNELS, s.CACHE_DIR, quiet)
    keep = np.flatnonzero(ok)
    return data.CaptchaSet([paths[i] for i in keep], [texts[i] for i in keep], images[keep], codec)


def load_data(s, codec, quiet=False, taught=None):
    """(train, validation, test) CaptchaSets. Validation: a seeded VALIDATION part of TRAIN_DIR (ONLINE:
    ONLINE_TEST captchas rendered with their own seed); test: s.test_dir(), or None. ONLINE: train is None.
    taught: (paths, texts) a teacher read, the training images of a run without labels (core.teach)."""
    size = (s.IMAGE_WIDTH, s.IMAGE_HEIGHT, s.CHANNELS)
    test_dir = test_folder(s)
    test = load_test(s, test_dir, codec, size, quiet) if test_dir else None
    if s.ONLINE:
        seed = f"online-test{s.SEED}"
        images, texts = fresh.render_set(seed, s.ONLINE_TEST, codec.charset, codec.length, *size, s.FONTS,
                                         processes=max(1, cpu_count() // local_world()), style=s.GEN_STYLE)
        texts = [codec.normalize(t) for t in texts]
        return None, data.CaptchaSet([f"{seed}-{i}" for i in range(len(texts))], texts,
                                     images.transpose(0, 2, 3, 1), codec), test
    count, seed = limit_draw(s)  # LIMIT's sample is drawn from the file list, before decoding
    train_set = taught_set(s, codec, taught, quiet) if taught else data.load_folder(
        s.TRAIN_DIR, codec, *size, s.CACHE_DIR, s.SKIP_BAD, quiet, unlabeled_ok=same_folder(s.UNLABELED_DIR, s.TRAIN_DIR),
        sample=count, seed=seed)
    return (*split_validation(s, train_set, s.VALIDATION, s.SEED), test)


def load_test(s, folder, codec, size, quiet):
    """The test folder's CaptchaSet; its problems say it is the test folder (and that it was found by itself when
    TEST_DIR was not given) and, for a character the training labels lack, what the model can and cannot do."""
    try:
        return data.load_folder(folder, codec, *size, s.CACHE_DIR, s.SKIP_BAD, quiet)
    except data.DataError as e:
        found = "" if s.TEST_DIR else " (the folder 'test' beside TRAIN_DIR, taken by itself; --test_dir=F names another)"
        lacking = (f"\nA character no training label holds ({e.unknown!r}) is one the model cannot learn to read: fix "
                   "the test label if it is wrong, else label training images that show it (or name it in --charset=)"
                   if e.unknown else "")
        raise data.DataError(f"test folder{found}: {e}{lacking}") from None


def copies_of(paths, others):
    """The files of `paths` whose bytes equal a file's of `others` (sizes first: only files of a size both lists
    hold are read and hashed, so folders of different images cost a stat each)."""
    sizes = collections.defaultdict(list)
    for p in others:
        with contextlib.suppress(OSError):
            sizes[os.path.getsize(p)].append(p)

    def digest(p):
        with open(p, "rb") as f:
            return hashlib.sha1(f.read()).digest()

    known, found = {}, []  # size -> the digests of `others` of that size, each file read once at most
    for p in paths:
        with contextlib.suppress(OSError):
            size = os.path.getsize(p)
            if size in sizes:
                if size not in known:
                    known[size] = {digest(o) for o in sizes[size]}
                if digest(p) in known[size]:
                    found.append(p)
    return found


def say_test_copies(test_set, trained, say):
    """A warning where test images are byte-identical copies of images the run trains on (labelled, validation or
    unlabelled): the test figure would count them as read."""
    if not test_set:
        return
    same = copies_of(test_set.paths, trained)
    if same:
        say(f"warning: {len(same)} of the {len(test_set)} test images are byte-identical copies of images this run "
            f"trains on (labelled or unlabelled), so the test figure counts images it learnt: "
            f"{', '.join(os.path.basename(p) for p in same[:data.SHOW_FILES])}{', ...' if len(same) > data.SHOW_FILES else ''}"
            f"; keep each image in one folder")


def same_folder(a, b):
    """Whether two settings name the same folder, however spelt (relative, absolute, through a link)."""
    return bool(a and b) and os.path.realpath(a) == os.path.realpath(b)
