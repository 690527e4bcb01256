"""A teacher in a training run (TEACHER): a pretrained general reader (core.teacher) reads the unlabelled images
before the first epoch. With no labels at all its confident readings are the training set (charset, lengths
and case inferred from them); with a few labels they are the unlabelled images' first pseudo-labels, trained on
from the first epoch and replaced by the model's own readings where it becomes more confident.

Readings are kept in CACHE_DIR one image at a time (ReadingStore: by folder, teacher, charset and border, each
reading holding while its file's size and time do), so a second run on the same folder starts at once, the next
run of the labelling loop (a few more images labelled) reads nothing again, a run after the labelling page reads
what the page read with the same charset, and a run interrupted while the teacher reads goes on from there.
"""
import collections
import hashlib
import json
import os
import sys
import time

import config
from core import data
from core.device import cpu_count, local_world
from core.files import atomic_write
from core.teacher import (AUTO, MARGINS, TEACHERS, AgreeingTeacher, Reading, ReaderPool, TeacherError,
                          choose_margin, filter_readings, infer_charset_length, load_teacher, unavailable, usefulness)

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
            "with a few labels its readings of the unlabelled images read far better: 100 labels read 96 % of "
            "swust_mixed's and rsce_colour's test images with them, 71-83 % and 26-33 % without, docs/own_data.md)"))
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


def sample_of(paths, folder=None):
    """SAMPLE of `paths` drawn across the whole list (a seeded sample, in list order), or all of them: a folder in
    name order may group its images by source or day, and its first files alone can show one style of several.
    With `folder` (where `paths` are, some of its images left out: those labelled) the sample is drawn across all
    of the folder's images and keeps those in `paths`, so that a few more labels leave the rest of it as it was
    and its readings need not be read again (the labelling page's, the loop's last run's); drawn across `paths`
    where that keeps under nine tenths of a sample."""
    if len(paths) <= SAMPLE:
        return list(paths)
    if folder is not None:
        every = [os.path.join(folder, n) for n in data.image_names(folder)]
        if len(every) > SAMPLE:
            drawn = {every[i] for i in data.sample_indices(len(every), SAMPLE, 0)}
            kept = [p for p in paths if p in drawn]
            if len(kept) >= 0.9 * SAMPLE:
                return kept
    return [paths[i] for i in data.sample_indices(len(paths), SAMPLE, 0)]


def _stamp(path):
    """A file's size and modification time ("-" when it cannot be read): a cached reading of it holds while they do."""
    try:
        st = os.stat(path)
    except OSError:
        return "-"
    return f"{st.st_size} {st.st_mtime_ns}"


def same_reading(charset):
    """`charset` as the teacher's readings depend on it (None: any character): a letter it holds in one case only
    is read with both cases' probabilities summed (core.teacher), so "abc" and "ABC" read the same images alike,
    but for the case they write; the order of its characters does not count."""
    if charset is None:
        return None
    chars = set(charset)
    return "".join(sorted({c.lower() if len(c.swapcase()) == 1 and len(c.lower()) == 1 and c.swapcase() != c
                           and c.swapcase() not in chars else c for c in chars}))


def _in_case(text, charset):
    """A reading kept under same_reading(charset), written in the case `charset` holds each letter in."""
    if charset is None:
        return text
    return "".join(c if c in charset or c.swapcase() not in charset else c.swapcase() for c in text)


class ReadingStore:
    """The teacher's readings of single images kept in CACHE_DIR: one file per folder, teacher, charset (as it
    matters: same_reading) and border, holding {file name: [size and time, text, confidence, error, chars]}. A
    reading holds while its file's size and modification time do, so a later read of the same images the same
    way reads only those that are new or changed: a run after the labelling page (where it reads with the page's
    charset), the next run of the loop (its unlabelled images a few labelled ones fewer), a run interrupted while
    the teacher read. cache_dir "" keeps nothing."""

    def __init__(self, cache_dir, name, charset, margin):
        self.cache_dir, self.name, self.charset, self.margin = cache_dir, name, charset, float(margin)
        self.key = same_reading(charset)
        self.files = {}  # folder -> [store file, {file name: entry}, changed]

    def _file(self, folder):
        if folder not in self.files:
            h = hashlib.sha1(f"{self.name}\0{self.key!r}\0{self.margin:g}\0{folder}".encode("utf-8", "surrogateescape"))
            path = os.path.join(self.cache_dir, f"teacher-{h.hexdigest()[:16]}.json")
            self.files[folder] = [path, _load_items(path), False]
        return self.files[folder]

    @staticmethod
    def _where(path):
        real = os.path.realpath(path)  # links (a benchmark's folders) share the readings of the files they name
        return os.path.dirname(real), os.path.basename(real)

    def get(self, paths):
        """{index into paths: Reading} of the paths read before, the same way, and unchanged since."""
        if not self.cache_dir:
            return {}
        found = {}
        for i, p in enumerate(paths):
            folder, name = self._where(p)
            entry = self._file(folder)[1].get(name)
            if entry and entry[0] == _stamp(p):
                _, text, confidence, error, chars = entry
                found[i] = Reading(_in_case(text, self.charset), confidence, tuple(chars), error)
        return found

    def put(self, path, reading):
        if self.cache_dir:
            folder, name = self._where(path)
            kept = self._file(folder)
            kept[1][name] = [_stamp(path), reading.text, float(reading.confidence),
                             reading.error, [round(float(p), 6) for p in reading.chars]]
            kept[2] = True

    def save(self):
        """Writes the files that gained readings, merged with what another process wrote to them meanwhile (the
        labelling page and a run may read one folder at once)."""
        for kept in self.files.values():
            path, items, changed = kept
            if changed:
                _write(path, {"teacher": self.name, "charset": self.key, "margin": self.margin,
                              "items": {**_load_items(path), **items}})
                kept[2] = False


def _load_items(path):
    """{file name: entry} kept in a ReadingStore file; {} when there is none or it does not read."""
    if not path or not os.path.isfile(path):
        return {}
    try:
        with open(path, encoding="utf-8") as f:
            kept = json.load(f)
        items = kept.get("items") if isinstance(kept, dict) else None
        if isinstance(items, dict):
            return {n: e for n, e in items.items() if isinstance(e, list) and len(e) == 5 and isinstance(e[1], str)
                    and isinstance(e[2], (int, float)) and isinstance(e[3], str) and isinstance(e[4], list)}
    except (OSError, ValueError):
        pass
    return {}


SAVE_EVERY = 1000  # images between writes of what the teacher has read: a killed run loses at most this many


MAX_READERS = 8  # processes reading with the teacher at most (each holds its models: 0.2 GB with ddddocr2)


def readers(threads):
    """Processes the teacher reads in for THREADS `threads` (0: one a core, at most MAX_READERS; under torchrun,
    this process's share of the cores, as core.device.set_threads gives torch)."""
    return max(1, int(threads)) if threads else min(MAX_READERS, max(1, cpu_count() // local_world()))


def _read_parts(name, paths, charset, margin, workers, progress=None):
    """Yields (indices into paths, [Reading]) as the teacher reads `paths`: in `workers` processes (ReaderPool) where
    there are at least two of its tasks, else here on one thread. progress(images read) after each image (here) or
    each task (in processes)."""
    pool = None
    if workers > 1 and len(paths) >= 2 * ReaderPool.TASK:
        try:
            pool = ReaderPool(name, min(workers, -(-len(paths) // ReaderPool.TASK)))
        except (OSError, AssertionError):  # no processes here (a sandbox's limits, no /dev/shm; a daemonic process
            pool = None                     # may have none): this one reads them all
    if pool:
        done = 0
        with pool:
            for start, readings in pool.read(paths, charset, margin):
                done += len(readings)
                if progress:
                    progress(done)
                yield range(start, start + len(readings)), readings
        return
    teacher = load_teacher(name, threads=1)
    for c in range(0, len(paths), CHUNK):
        part = range(c, min(c + CHUNK, len(paths)))
        shown = (lambda n, _, c=c: progress(c + n)) if progress else None
        yield part, teacher.read([paths[i] for i in part], charset=charset, progress=shown, margin=margin)


def _so_far(done, total, seconds):
    """'  teacher   done/total (rate a second, about ... left)': how far a long read is."""
    rate = done / max(seconds, 1e-9)
    left = (total - done) / rate if rate else 0.0
    return (f"  teacher   {done}/{total} ({rate:.0f} a second"
            + (f", about {left / 60:.0f} min left)" if left >= 90 else f", about {left:.0f} s left)" if done < total
               else ")"))


def read_images(name, paths, charset=None, margin=0.0, threads=1, cache_dir="", say=print, show=True):
    """[Reading] of the teacher `name` for `paths`, each read with `charset` and `margin`, in order, in
    readers(threads) processes; those read the same way before (ReadingStore) are not read again. A line is said
    when some were and some were not; with `show`, progress (how many, how fast, how long left) is shown in a
    terminal, and a line every LOG_EVERY images in a log. Ctrl-C keeps what was read and says so."""
    store = ReadingStore(cache_dir, name, charset, margin)
    found = store.get(paths)
    todo = [i for i in range(len(paths)) if i not in found]
    if not todo:
        return [found[i] for i in range(len(paths))]
    if found:
        say(f"  teacher   {len(found)} of {len(paths)} images read before, the same way (kept in {cache_dir}); "
            f"reading the other {len(todo)}")
    started = time.monotonic()
    progress = (lambda n: print("\r" + _so_far(n, len(todo), time.monotonic() - started).ljust(70), flush=True,
                                end="\n" if n == len(todo) else "")) if show and sys.stdout.isatty() else None
    done = 0
    try:
        for part, readings in _read_parts(name, [paths[i] for i in todo], charset, margin, readers(threads),
                                          progress):
            for j, r in zip(part, readings):
                found[todo[j]] = r
                store.put(paths[todo[j]], r)
            before, done = done, done + len(readings)
            if show and not progress and len(todo) > LOG_EVERY and (done // LOG_EVERY > before // LOG_EVERY
                                                                    or done == len(todo)):
                print(_so_far(done, len(todo), time.monotonic() - started), flush=True)  # a long read is not stuck
            if done // SAVE_EVERY > before // SAVE_EVERY:
                store.save()
    except KeyboardInterrupt:
        if not cache_dir or not done:
            raise
        store.save()
        raise KeyboardInterrupt(f"the teacher read {len(found)} of {len(paths)} images; they are kept in {cache_dir}, "
                                f"and the same command goes on from there") from None
    store.save()
    return [found[i] for i in range(len(paths))]


def read(s, paths, charset=None, say=print, margin=None):
    """[Reading] of the teacher for `paths` (charset: restrict the readings to it), kept in CACHE_DIR
    (read_images); each image read with the border `margin` (None: TEACHER_MARGIN, resolved by resolve_margin; -1
    unresolved reads none)."""
    margin = max(0.0, s.TEACHER_MARGIN) if margin is None else margin
    return read_images(s.TEACHER, list(paths), charset, margin, s.THREADS, s.CACHE_DIR, say)


def margin_of(s, paths, say=print):
    """(margin, description): the border (core.teacher.MARGINS) the teacher reads a SAMPLE of `paths` most surely
    with (core.teacher.choose_margin); 0 without trying the others where it can open too few of them to tell."""
    sample = sample_of(paths, s.UNLABELED_DIR)
    plain = read(s, sample, None, say, margin=0.0)
    if sum(bool(r.error) for r in plain) >= len(plain) / 2:  # not images: the run says so where it reads them
        return 0.0, "reads the images as they are"
    by_margin = {0.0: plain, **{m: read(s, sample, None, say, margin=m) for m in MARGINS if m}}
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


def _write(path, value):
    """`value` as JSON in `path`, written whole or not at all; nothing where it cannot be (the cache is optional)."""
    try:
        atomic_write(path, json.dumps(value), mode="w")
    except OSError:
        pass  # the cache is optional


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
    sample = read(s, sample_of(paths, folder), None, say)
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
    readings = read(s, paths, charset, say)
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
    readings = read(s, paths, charset, say)
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
    readings = read(s, sample_of(paths, s.UNLABELED_DIR), None, say)
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


class PageReader:
    """The labelling page's teacher, before any model is trained: it reads images of `folder` into suggestions
    ({text, confidence, chars}), restricted to the charset it reads in a sample of SAMPLE of them (letters in
    capitals unless it reads them in lower case; its case cannot be trusted), with the border it reads that sample
    most surely with (choose_margin); an image it cannot read gets confidence None and its error. With `cache_dir`
    the readings are kept there (ReadingStore), and the charset, case and border the first start chose beside them
    (one small file per folder and teacher): a later start reads only the images that are new or changed since
    (size, modification time), and a run that reads the folder the same way (its labels' charset the page's)
    none. threads: as THREADS (0: a process a core, read_images)."""

    def __init__(self, name, folder, threads=0, cache_dir=None):
        self.name, self.folder, self.threads, self.cache_dir = name, folder, threads, cache_dir or ""
        self.chosen = (os.path.join(cache_dir, "suggestions-" + hashlib.sha1(f"{name}\0{os.path.realpath(folder)}"
                       .encode("utf-8", "surrogateescape")).hexdigest()[:16] + ".json") if cache_dir else None)
        self.choice = _load_choice(self.chosen)

    def _paths(self, names):
        return [os.path.join(self.folder, n) for n in names]

    def kept(self, names):
        """{name: Reading} of `names` read before with the kept charset and border (none before a choice)."""
        if self.choice["charset"] is None:
            return {}
        found = ReadingStore(self.cache_dir, self.name, self.choice["charset"] or None,
                             self.choice["margin"]).get(self._paths(names))
        return {names[i]: r for i, r in found.items()}

    def choose(self, names, show=True):
        """The charset, case and border to read with, chosen on a sample of `names` drawn across the folder (the
        sample a run on the folder chooses its border on: sample_of), unless an earlier start's are kept."""
        if self.choice["charset"] is not None:
            return
        sample = sample_of(self._paths(names), self.folder)
        by_margin = {m: read_images(self.name, sample, None, m, self.threads, self.cache_dir, _quiet, show)
                     for m in MARGINS}
        margin, _ = choose_margin(by_margin)
        charset, _, case, _ = infer_charset_length(by_margin[margin], min_length_share=0.3)
        self.choice.update(charset=charset, case=case, margin=margin)
        if self.chosen:
            _write(self.chosen, self.choice)

    def read(self, names, kept=None, show=True):
        """{name: suggestion} for `names`: those in `kept` (kept()) as they are, the others read (choose() on
        `names` first where nothing is chosen yet). show: progress lines (read_images). A suggestion of ddddocr's
        pair that its two models read differently holds `disagree` (its text the first model's)."""
        kept = kept or {}
        if all(n in kept for n in names):
            readings = [kept[n] for n in names]
        else:
            self.choose(names, show)
            readings = read_images(self.name, self._paths(names), self.choice["charset"] or None,
                                   self.choice["margin"], self.threads, self.cache_dir, _quiet, show)
        fold = str.lower if self.choice["case"] == "lower" else str.upper
        pair = TEACHERS.get(self.name) is AgreeingTeacher  # its confidence 0: its two models read differently
        suggested = {}
        for n, r in zip(names, readings):
            text = fold(r.text)
            suggested[n] = {"text": text, "confidence": None if r.error else float(r.confidence),
                            "chars": [{"char": c, "confidence": round(float(p), 4)} for c, p in zip(text, r.chars)],
                            **({"error": r.error} if r.error else {}),
                            **({"disagree": True} if pair and not r.error and text and r.confidence == 0 else {})}
        return suggested


def _quiet(*_):
    """A say() that says nothing (the labelling page says what it reads)."""


def _load_choice(path):
    """{"charset", "case", "margin"} the labelling page chose for a folder, kept in `path`; charset None when there
    is none or it does not read."""
    empty = {"charset": None, "case": None, "margin": 0.0}
    if not path or not os.path.isfile(path):
        return empty
    try:
        with open(path, encoding="utf-8") as f:
            kept = json.load(f)
        if isinstance(kept, dict) and isinstance(kept.get("charset"), str):
            margin = kept.get("margin", 0.0)
            return {"charset": kept["charset"], "case": kept.get("case"),
                    "margin": float(margin) if isinstance(margin, (int, float)) and 0 <= margin <= 4 else 0.0}
    except (OSError, ValueError):
        pass
    return empty
