"""A teacher in a training run (TEACHER): a pretrained general reader (core.teacher) reads the unlabelled images
before the first epoch. With no labels at all its confident readings are the training set (charset, lengths
and case inferred from them); with a few labels they are the unlabelled images' first pseudo-labels, trained on
from the first epoch and replaced by the model's own readings where it becomes more confident.

Readings are cached in CACHE_DIR (keyed by the files' paths, sizes and times, the teacher and the charset), so a
second run on the same folder starts at once; a run interrupted while the teacher reads keeps what it has read
(`<key>.partial.json`), and the same command goes on from there.
"""
import collections
import contextlib
import hashlib
import json
import os
import sys

import config
from core import data
from core.files import atomic_write
from core.teacher import (AUTO, MARGINS, TEACHERS, TeacherError, choose_margin, filter_readings,
                          infer_charset_length, load_teacher, unavailable, usefulness)

CHUNK = 200  # images read at a time: what an interrupted read loses at most
LOG_EVERY = 1000  # images between progress lines where stdout is not a terminal (a log)
SAMPLE = 500  # images read first to infer the charset and lengths and to judge whether the teacher can help


def zero_labels(s):
    """Whether this run has no labels: TEACHER set, and the training folder is also the unlabelled one and lists
    no labels (no labels.tsv, or an empty one). LIMIT asks for a sample of labelled images, so a folder without
    labels.tsv then has its labels in its file names: a few labels (the sample), the rest unlabelled."""
    if not s.TEACHER or s.ONLINE or not s.UNLABELED_DIR or s.LIMIT:
        return False
    if os.path.realpath(s.UNLABELED_DIR) != os.path.realpath(s.TRAIN_DIR):
        return False
    tsv = os.path.join(s.TRAIN_DIR, data.LABELS_FILE)
    return not os.path.isfile(tsv) or data.empty_labels_file(s.TRAIN_DIR)


def resolve_teacher(s, say=print):
    """The settings with TEACHER "auto" resolved. A run with some labels and unlabelled images (UNLABELED_DIR) gets
    AUTO where it is installed: its readings are the unlabelled images' first pseudo-labels, which read as well or
    better than the labels alone on every set of the suite (BENCHMARKS.md). A run shaped as one without labels
    (zero_labels) gets it only where the file names evidently hold no labels (data.names_hold_no_labels: IDs,
    dates, a counter), so that "auto" never reads a folder whose file names are its labels as a folder without
    labels; a run of labelled names names its teacher (--teacher=ddddocr2). Any other run gets none (PSEUDO_RATIO 0
    with labels trains on no unlabelled image)."""
    if s.TEACHER != "auto":
        return s
    if not s.UNLABELED_DIR or s.ONLINE:
        return s.replace(TEACHER="")
    unlabelled = zero_labels(s.replace(TEACHER=AUTO))
    if not unlabelled and not s.PSEUDO_RATIO:  # an epoch holds no unlabelled image: nothing to read them for
        return s.replace(TEACHER="")
    listed = unlabelled and data.empty_labels_file(s.TRAIN_DIR)  # a labels.tsv holding a header at most
    shown = unlabelled and (f"its {data.LABELS_FILE} lists no image" if listed else
                            data.names_hold_no_labels(s.TRAIN_DIR))
    if unlabelled and not shown:  # the names may be labels: read as labels, and said, since no image is unlabelled
        named = data.read_labels(s.TRAIN_DIR)
        shown_names = ", ".join(f"{os.path.basename(p)} -> {t!r}" for p, t in named[:3])
        say(f"TEACHER auto: the file names of {s.TRAIN_DIR} read as labels ({shown_names}, ...; no "
            f"{data.LABELS_FILE}), so every image is labelled and UNLABELED_DIR adds none. If the names are not the "
            f"captchas' text (IDs, a counter), --teacher={AUTO} reads the images without them")
        return s.replace(TEACHER="")
    why = unavailable(AUTO)
    if why:
        say(f"TEACHER auto: no teacher ({why}; " + (f"the images have no labels: {shown})" if shown else
            "its readings of the unlabelled images read better with few labels)"))
        return s.replace(TEACHER="")
    if shown:
        say(f"TEACHER auto: {s.TRAIN_DIR} has no labels ({shown}{'' if listed else ', no ' + data.LABELS_FILE}): "
            f"{AUTO} reads every "
            f"image and its confident readings are the labels (label some on the page for more: python app.py "
            f"--label_dir={s.TRAIN_DIR})")
    else:
        say(f"TEACHER auto: {TEACHERS[AUTO].package} is installed: {AUTO}'s readings of the unlabelled images "
            f"are their first pseudo-labels (--teacher= trains without it)")
    return s.replace(TEACHER=AUTO)


def sample_of(paths):
    """SAMPLE of `paths` drawn across the whole list (a seeded sample, in list order), or all of them: a folder in
    name order may group its images by source or day, and its first files alone can show one style of several."""
    if len(paths) <= SAMPLE:
        return list(paths)
    return [paths[i] for i in data.sample_indices(len(paths), SAMPLE, 0)]


def _stamp(path):
    """A file's size and modification time ("-" when it cannot be read): a cached reading of it holds while they do."""
    try:
        st = os.stat(path)
    except OSError:
        return "-"
    return f"{st.st_size} {st.st_mtime_ns}"


def _key(paths, name, charset, margin=0.0):
    h = hashlib.sha1((f"teacher {name} {charset!r}" + (f" margin {margin:g}" if margin else "")).encode())
    for p in paths:
        h.update(f"{p}\0{_stamp(p)}\n".encode("utf-8", "surrogateescape"))
    return h.hexdigest()[:16]


def read(s, paths, charset=None, say=print, margin=None):
    """[(text, confidence, error)] of the teacher for `paths` (charset: restrict the readings to it), cached; each
    image read with the border `margin` (None: TEACHER_MARGIN, resolved by resolve_margin; -1 unresolved reads none)."""
    margin = max(0.0, s.TEACHER_MARGIN) if margin is None else margin
    cache = (os.path.join(s.CACHE_DIR, f"teacher-{_key(paths, s.TEACHER, charset, margin)}.json") if s.CACHE_DIR
             else None)
    found = _load(cache)
    if found is not None and len(found) == len(paths):
        return found
    partial = cache and cache[:-len(".json")] + ".partial.json"
    readings = _load(partial) or []
    if len(readings) > len(paths):
        readings = []
    if readings:
        say(f"  teacher   {len(readings)} of {len(paths)} images read before the last run was interrupted "
            f"({partial}); reading on")
    teacher = load_teacher(s.TEACHER, threads=max(1, s.THREADS))
    tty = sys.stdout.isatty()
    try:
        while len(readings) < len(paths):
            done = len(readings)
            progress = (lambda n, _, done=done: print(f"\r  teacher   {done + n}/{len(paths)}", flush=True,
                                                      end="\n" if done + n == len(paths) else "")) if tty else None
            chunk = teacher.read(paths[done:done + CHUNK], charset=charset, progress=progress, margin=margin)
            readings += [(r.text, r.confidence, r.error) for r in chunk]
            if not tty and len(paths) > LOG_EVERY and (len(readings) // LOG_EVERY > done // LOG_EVERY
                                                       or len(readings) == len(paths)):
                print(f"  teacher   {len(readings)}/{len(paths)}", flush=True)  # so a long read does not look stuck
    except KeyboardInterrupt:
        if not partial or not readings:
            raise
        _write(partial, readings)
        raise KeyboardInterrupt(f"the teacher read {len(readings)} of {len(paths)} images; they are kept in "
                                f"{partial}, and the same command goes on from there") from None
    if cache:
        _write(cache, readings)
        with contextlib.suppress(OSError):
            os.remove(partial)
    return readings


def margin_of(s, paths, say=print):
    """(margin, description): the border (core.teacher.MARGINS) the teacher reads a SAMPLE of `paths` most surely
    with (core.teacher.choose_margin); 0 without trying the others where it can open too few of them to tell."""
    sample = sample_of(paths)
    plain = _readings(read(s, sample, None, say, margin=0.0))
    if sum(bool(r.error) for r in plain) >= len(plain) / 2:  # not images: the run says so where it reads them
        return 0.0, "reads the images as they are"
    by_margin = {0.0: plain, **{m: _readings(read(s, sample, None, say, margin=m)) for m in MARGINS if m}}
    return choose_margin(by_margin)


def resolve_margin(s, say=print):
    """The settings with TEACHER_MARGIN -1 resolved on a sample of the unlabelled images (margin_of), said; as they
    are without a teacher or unlabelled images."""
    if not s.TEACHER or s.TEACHER_MARGIN >= 0 or not s.UNLABELED_DIR or not os.path.isdir(s.UNLABELED_DIR):
        return s
    paths = [p for p, _ in data.unlabeled_images(s.UNLABELED_DIR)]
    if not paths:
        return s
    margin, why = margin_of(s, paths, say)
    say(f"  teacher   {s.TEACHER} {why}")
    return s.replace(TEACHER_MARGIN=margin)


def _load(path):
    """The readings kept in `path` (a cache, or what an interrupted read kept), or None when there are none or
    they do not read."""
    if not path or not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            found = json.load(f)
        if isinstance(found, list) and all(isinstance(r, list) and len(r) == 3 for r in found):
            return [tuple(r) for r in found]
    except (OSError, ValueError):
        pass
    return None


def _write(path, readings):
    try:
        atomic_write(path, json.dumps(readings), mode="w")
    except OSError:
        pass  # the cache is optional


def _readings(pairs):
    from core.teacher import Reading
    return [Reading(t, c, error=e) for t, c, e in pairs]


MIN_TAUGHT = 20  # a run without labels needs at least this many images, and as many read confidently


def teach_unlabelled(s, say=print):
    """Zero labels: (settings with CHARSET, LENGTH, CASE_SENSITIVE and the image size resolved, codec, paths,
    texts) of the images the teacher reads confidently (TEACHER_THRESHOLD). TeacherError when it reads nothing
    useful for this style."""
    folder = s.UNLABELED_DIR
    paths = [p for p, _ in data.unlabeled_images(folder)]
    if not paths:
        raise data.DataError(f"{folder}: no images to read (UNLABELED_DIR; extensions "
                             f"{', '.join(data.IMAGE_EXTENSIONS)})" + data.subfolder_hint(folder))
    sample = _readings(read(s, sample_of(paths), None, say))
    # a quarter of the images read confidently is enough to start from: the model trained on them reads better than
    # the teacher, and its own confident readings of the rest follow (a teacher at 53-64 % zero-shot still teaches)
    ok, why = usefulness(sample, s.TEACHER, min_confident=0.25)
    say(f"  teacher   {why}")
    if not ok:
        raise TeacherError(why)
    if len(paths) < MIN_TAUGHT:
        raise TeacherError(f"{folder} holds {len(paths)} image{'s' * (len(paths) != 1)}: too few to learn a captcha "
                           f"style from ({MIN_TAUGHT} at the very least; a few hundred, a few dozen of them labelled, "
                           f"read well): add images of the same captcha")
    # a teacher drops characters more often than a site varies its length: a length beside the commonest one counts
    # only when it is common itself (3 of 4 digits read in a fifth of a 4-digit set is the teacher's miss)
    inferred = infer_charset_length(sample, min_length_share=0.3)
    charset, lengths, case = inferred.charset, inferred.lengths, inferred.case
    if s.CHARSET != "infer":
        charset = s.CHARSET
    readings = _readings(read(s, paths, charset, say))
    keep = filter_readings(readings, s.TEACHER_THRESHOLD, lengths, charset)
    # the teacher's letter case cannot be trusted (ddddocr reads capitals in either case): letters are read without
    # case, in capitals, unless CASE_SENSITIVE was set on the command line (then in the case the readings show)
    case_sensitive = "CASE_SENSITIVE" in config.given() and s.CASE_SENSITIVE and case in ("upper", "lower")
    fold = str.lower if case_sensitive and case == "lower" else str.upper
    texts = [fold(readings[i].text) for i in keep]
    if len(keep) < MIN_TAUGHT:
        raise TeacherError(f"{s.TEACHER} read only {len(keep)} of {len(paths)} images with confidence >= "
                           f"{s.TEACHER_THRESHOLD} (TEACHER_THRESHOLD): too few to train on; label 100 images instead")
    codec = data.Codec("".join(sorted({c for t in texts for c in t})) if s.CHARSET == "infer" else fold(charset),
                       (min(lengths), max(lengths)) if len(lengths) > 1 else lengths[0], case_sensitive)
    kept = [paths[i] for i in keep]
    say(f"  teacher   {len(kept)} of {len(paths)} images read with confidence >= {s.TEACHER_THRESHOLD} "
        f"(TEACHER_THRESHOLD) are the training labels; {inferred.description}")
    geometry = (s.IMAGE_WIDTH, s.IMAGE_HEIGHT, s.CHANNELS)
    if not all(geometry):
        found = data.infer_geometry(kept, height=s.IMAGE_HEIGHT, length=codec.length)
        geometry = tuple(g or f for g, f in zip(geometry, found))
    width, height, channels = geometry
    s = s.replace(CHARSET=codec.charset, LENGTH=codec.length if codec.variable else codec.length[0],
                  CASE_SENSITIVE=case_sensitive, IMAGE_WIDTH=width, IMAGE_HEIGHT=height, CHANNELS=channels)
    return s, codec, kept, texts


# a reading that holds a letter read without case needs this confidence (or TEACHER_THRESHOLD, if higher): its two
# cases' probabilities summed make it surer than it is (generated captchas of 0-9a-zA-Z, 100 labels, one draw: at 0.5
# 1306 pseudo-labels, 79 % right with either case, read 214 of 500 test images; at 0.9 422 (82 %) read 263; leaving
# them out, 252; five draws: BENCHMARKS.md)
CASELESS_THRESHOLD = 0.9


def both_cases(codec):
    """{letter}: those the labels hold in both cases ('a' and 'A'), in lower case; the teacher cannot tell them apart."""
    return {c.lower() for c in codec.charset if c != c.swapcase() and c.swapcase() in codec.index}


def _without_case(text, caseless):
    """`text` with the letters of `caseless` (both_cases) in lower case, as the teacher reads them."""
    return "".join(c.lower() if c.lower() in caseless else c for c in text)


def _within_labels(s, paths, codec, say):
    """{index into paths: text} of the teacher's confident readings (TEACHER_THRESHOLD) of `paths` within the
    labels' charset and lengths. A letter the labels hold in both cases is read without case (its two cases'
    probabilities summed, as a letter of a one-case charset is) and written in lower case: the teacher cannot tell
    case (generated captchas of 0-9a-zA-Z: 28 % of its confident readings right with the case they took)."""
    caseless = both_cases(codec)
    charset = "".join(dict.fromkeys(_without_case(codec.charset, caseless)))
    readings = _readings(read(s, paths, charset, say))
    lo, hi = codec.length
    chosen = {}
    for i in filter_readings(readings, s.TEACHER_THRESHOLD, tuple(range(lo, hi + 1)), charset):
        text = codec.normalize(readings[i].text)
        if codec.check(text) is not None:  # a letter in the other case than the labels': the labels' case
            text = "".join(c if c in codec.index else c.swapcase() for c in text)
        text = _without_case(text, caseless)
        sure = readings[i].confidence >= CASELESS_THRESHOLD or not caseless.intersection(text)
        if codec.check(text) is None and sure:
            chosen[i] = text
    return chosen


def first_pseudo_labels(s, paths, codec, say=print):
    """A few labels: {index into paths: text} of the unlabelled images the teacher reads confidently within the
    labels' charset and lengths (their first pseudo-labels); a letter the labels hold in both cases in lower case,
    which teacher_candidates lets stand for either."""
    chosen = _within_labels(s, paths, codec, say)
    caseless = both_cases(codec)
    say(f"  teacher   {len(chosen)} of {len(paths)} unlabelled images read by {s.TEACHER} with confidence >= "
        f"{s.TEACHER_THRESHOLD} (TEACHER_THRESHOLD): their first pseudo-labels"
        + (f"; the {len(caseless)} letters the labels hold in both cases read without case ({s.TEACHER} cannot "
           f"tell case; a reading holding one needs confidence >= {max(CASELESS_THRESHOLD, s.TEACHER_THRESHOLD)}): "
           f"either case is right for them, and the labels teach it" if caseless else ""))
    return chosen


# the teacher reads a character where the labels hold another one at least CONFUSED_TIMES times, and in at least
# CONFUSED_SHARE of its readings of that character: the other one becomes a candidate wherever it reads that
# character. Two of one pair is a pattern (a single mistake may be noise), and a candidate only hands the choice
# between the two to the labels, as far as they show the teacher wrong (swust_mixed, 300 labels: 'l' for 'i' 2 of
# the 21 times it read 'l' on the labelled images, yet 16 test images read 'i' as 'l' without candidates)
CONFUSED_TIMES = 2
CONFUSED_SHARE = 0.05
# ... of at least CONFUSED_READS readings of that character: 2 of 3 may be chance as well as a pattern, and its
# weight (2 of 3 read wrong: 1.0, the teacher's reading then no evidence at all) taught a model the mistake
# (swust_mixed, the labelling page's second round, 150 labels, 15 of them read confidently: '0' may be 'o' 2 of 3:
# 0 read as 'o' 44 times, 844 of 939 test images against 890 without it; capped at weight 0.6, 862). Every
# candidate of the suite's random draws of 100 and 300 labels stood on 6 readings or more, but one (2 of 4). Where
# such a pair is real, few labels lose it (generated 0-9a-zA-Z, 100 labels: '0' may be 'o' 2 of 3 and 2 of 4)
CONFUSED_READS = 5


def teacher_candidates(s, paths, texts, codec, say=print):
    """{character: ((candidate, weight), ...)}, at most two candidates, where the teacher's readings of labelled
    images (`paths`, their labels `texts`; a SAMPLE of them) show it systematically reads that character for
    another one: an 'o' that is often a 'q'. A candidate's weight is how often the teacher reads the candidate so
    (its 'q' read 'o'), relative to how often it reads the character itself so (its 'o' read 'o'), at most 1.
    Where its pseudo-labels hold such a character, the position accepts the candidates with their weights
    (models.losses), and the labels decide between them; dropping those readings instead leaves the model short
    of the characters the teacher reads right. Readings of another length than the label are not counted. A
    letter the labels hold in both cases, read without case, has its other case as its first candidate, at weight 1:
    either is right."""
    picked = sample_of(range(len(paths)))
    chosen = _within_labels(s, [paths[i] for i in picked], codec, say)
    caseless = both_cases(codec)
    said, held, pairs = collections.Counter(), collections.Counter(), collections.Counter()
    for j, text in chosen.items():
        truth = _without_case(codec.normalize(texts[picked[j]]), caseless)
        if len(truth) == len(text):
            said.update(text)
            held.update(truth)
            pairs.update(zip(text, truth))
    found = {}
    for (a, b), k in pairs.most_common():
        if (a != b and k >= CONFUSED_TIMES and k >= CONFUSED_SHARE * said[a] and said[a] >= CONFUSED_READS
                and len(found.get(a, ())) < 2):
            right = pairs[a, a] / held[a] if held[a] else 0.0  # the teacher reads an 'o' as 'o' ...
            weight = min(1.0, k / held[b] / right) if right else 1.0  # ... and a 'q' as 'o'
            found[a] = found.get(a, ()) + ((b, round(weight, 2)),)
    # a letter read without case stands for both cases: the teacher's 'a' is an 'a' or an 'A' alike, and its '0' that
    # may be an 'o' may be an 'O' too; the labels decide
    kept = {a: tuple(o for b, w in others for o in ((b, w), (b.upper(), w))[:1 + (b in caseless)])
            for a, others in found.items()}
    for c in sorted(caseless):
        kept[c] = ((c.upper(), 1.0),) + kept.get(c, ())
    kept = {a: others[:2] for a, others in kept.items()}
    used = {a: [(b, w) for b, w in others if b in dict(kept[a])] for a, others in sorted(found.items())}
    if any(used.values()):
        shown = "; ".join(f"its {a!r} may be " + " or ".join(
            f"{b!r}{' or ' + repr(b.upper()) if b in caseless else ''} ({pairs[a, b]} of {said[a]}, weight {w:.2f})"
            for b, w in others) for a, others in used.items() if others)
        say(f"  teacher   on {len(chosen)} of {len(picked)} labelled images it reads confidently, it reads a character "
            f"for another one: {shown}; its pseudo-labels accept those there, and the labels decide")
    return kept


# a character the teacher reads in at least MISSING_TIMES of a sample of the unlabelled images, of a kind the labels
# hold (a digit, a letter) but in none of them: the model cannot learn it (swust_mixed: 'w' is in 90 of its 3755
# labels, so 100 labels drawn at random lack it about one time in ten, 50 labels one time in three; where 50 lacked
# it the teacher read it in 5-19 of 500 images, and a stray misreading in 3 at most, captcha_images_v2's 'z').
# Unless the labels, at the rate the teacher reads it, would hold it MISSING_EXPECTED times or more: then their
# lacking it says the teacher reads it for another character (a real one is missing that often under exp(-5), 1 %;
# swust_mixed's 'm', in 4.3 % of its images, was missing from a draw of 100 labels, the labels' expected 4.0)
MISSING_TIMES = 5
MISSING_EXPECTED = 5.0
# a kind of character (letters, digits) the labels hold none of, read by the teacher in at least this share of its
# confident readings: said, not added (swust_mixed with 12 labels of digits alone: letters in 450 of 451; the
# digit sets and amazon's letters, 100 labels each: never)
OTHER_KIND_SHARE = 0.5


def missing_from_labels(s, paths, labels, codec, say=print):
    """[(character, images)]: characters the teacher reads confidently (TEACHER_THRESHOLD, a length the labels have)
    in at least MISSING_TIMES of a SAMPLE of the unlabelled images `paths`, of a kind the labels hold (digits,
    letters), that none of the `labels` (texts) holds in either case, and rarely enough that they may lack it by
    chance (MISSING_EXPECTED). Its readings are those of the teacher without a charset (the sample a run without
    labels reads first, cached); the run adds what it finds to the charset (core.run.add_missing). A letter is
    given in the labels' case; where they hold letters in both cases, in lower case and counted in either (the
    teacher cannot tell case), and the run adds both cases."""
    readings = _readings(read(s, sample_of(paths), None, say))
    lo, hi = codec.length
    # the teacher reads Latin letters: they are of the labels' kind only where the labels hold Latin letters (a
    # charset of Cyrillic letters and digits gains no 'x' from its 'х' read so); labels of another script get no
    # warning that they hold no letter
    digits = any(c.isascii() and c.isdigit() for c in codec.charset)
    letters = any(c.isascii() and c.isalpha() for c in codec.charset)
    script = any(c.isalpha() and not c.isascii() for c in codec.charset)
    case = {c.islower() for c in codec.charset if c.isalpha()}  # {True}: the labels' letters are all lower case
    fold = (str.lower if case == {True} or both_cases(codec) else str.upper if case == {False} else str)
    counts, other = collections.Counter(), collections.Counter()
    confident = filter_readings(readings, s.TEACHER_THRESHOLD, tuple(range(lo, hi + 1)))
    for i in confident:
        text = codec.normalize(readings[i].text)
        counts.update({fold(c) for c in text if not (c in codec.index or c.swapcase() in codec.index)
                       and (c.isascii() and c.isdigit() and digits or c.isascii() and c.isalpha() and letters)})
        other.update({"digit" if c.isdigit() else "letter" for c in text if c.isascii() and c.isalnum()
                      and not (c.isdigit() and digits or c.isalpha() and (letters or script))})
    for kind, k in sorted(other.items()):  # labels of digits alone on captchas that show letters, or the reverse
        if k >= MISSING_TIMES and k >= OTHER_KIND_SHARE * len(confident):
            say(f"  warning   the teacher reads {kind}s in {k} of the {len(confident)} unlabelled images it reads "
                f"confidently, and no label holds a {kind}: the charset is the labels' ({codec.charset!r}), so the "
                f"model reads no {kind}; if the captchas show {kind}s, label images that show them")
    found = sorted((c, k) for c, k in counts.items()
                   if k >= MISSING_TIMES and k / len(confident) * len(labels) < MISSING_EXPECTED)
    return found


__all__ = ["TeacherError", "resolve_teacher", "resolve_margin", "zero_labels", "read", "teach_unlabelled",
           "first_pseudo_labels", "teacher_candidates", "missing_from_labels"]


def suggestions(name, folder, names, threads=1, cache_dir=None, announce=None):
    """{file name: {text, confidence, chars}} for the labelling page before any model is trained: a teacher's
    readings of the images `names` of `folder`, restricted to the charset it reads in a sample of SAMPLE of them
    (letters in capitals unless it reads them in lower case; its case cannot be trusted). An image it cannot read
    gets confidence None and its error. With `cache_dir` the readings are kept there, one file per folder and
    teacher: a later start reads only the images that are new or changed since (size, modification time), with
    the charset of the first. announce(to read, read before, cache file) is called before any reading.
    TeacherError when the teacher cannot be loaded."""
    cache = (os.path.join(cache_dir, "suggestions-" + hashlib.sha1(f"{name}\0{os.path.realpath(folder)}".encode(
        "utf-8", "surrogateescape")).hexdigest()[:16] + ".json") if cache_dir else None)
    kept = _load_suggestions(cache)
    stamps = {n: _stamp(os.path.join(folder, n)) for n in names}
    found = {n: kept["items"][n][1] for n in names if n in kept["items"] and kept["items"][n][0] == stamps[n]}
    todo = [n for n in names if n not in found]
    if announce:
        announce(len(todo), len(found), cache)
    if not todo:
        return found
    teacher = load_teacher(name, threads=threads)
    paths = [os.path.join(folder, n) for n in todo]
    if kept["charset"] is None:
        sample = sample_of(paths)
        by_margin = {m: teacher.read(sample, margin=m) for m in MARGINS}
        margin, _ = choose_margin(by_margin)
        charset, _, case, _ = infer_charset_length(by_margin[margin], min_length_share=0.3)
        kept.update(charset=charset, case=case, margin=margin)
    fold = str.lower if kept["case"] == "lower" else str.upper
    for n, r in zip(todo, teacher.read(paths, charset=kept["charset"] or None, margin=kept["margin"])):
        text = fold(r.text)
        found[n] = {"text": text, "confidence": None if r.error else float(r.confidence),
                    "chars": [{"char": c, "confidence": round(float(p), 4)} for c, p in zip(text, r.chars)],
                    **({"error": r.error} if r.error else {})}
        kept["items"][n] = [stamps[n], found[n]]
    if cache:
        _write(cache, kept)
    return found


def _load_suggestions(path):
    """{"charset", "case", "items": {file name: [stamp, suggestion]}} kept in `path`; empty when there is none or
    it does not read."""
    empty = {"charset": None, "case": None, "margin": 0.0, "items": {}}
    if not path or not os.path.isfile(path):
        return empty
    try:
        with open(path, encoding="utf-8") as f:
            kept = json.load(f)
        if isinstance(kept, dict) and isinstance(kept.get("items"), dict) and isinstance(kept.get("charset"), str):
            items = {n: v for n, v in kept["items"].items() if isinstance(v, list) and len(v) == 2
                     and isinstance(v[1], dict)}
            margin = kept.get("margin", 0.0)
            return {"charset": kept["charset"], "case": kept.get("case"), "items": items,
                    "margin": float(margin) if isinstance(margin, (int, float)) and 0 <= margin <= 4 else 0.0}
    except (OSError, ValueError):
        pass
    return empty
