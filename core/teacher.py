"""A pretrained general captcha reader (a "teacher") that labels unlabelled captchas with no labels given.

    teacher = load_teacher("ddddocr", threads=1)         # TeacherError with the fix when it cannot load
    sample = teacher.read(paths[:500])                   # zero-shot: any character the reader knows
    ok, reason = usefulness(sample)                      # False: it reads nothing useful for this style
    found = infer_charset_length(sample)                 # (charset, lengths, case, description)
    readings = teacher.read(paths, charset=found.charset)  # restricted to those characters: reads more right
    keep = filter_readings(readings, 0.9, found.lengths, found.charset)  # indices of the labels to trust

`load_teacher("ddddocr2")` reads with both of ddddocr's bundled models and trusts a reading only where they agree
(AgreeingTeacher). `Teacher.read` takes image paths (str or os.PathLike), encoded image bytes, or PIL images, and
returns one `Reading(text, confidence, chars, error)` per item, in order. It never raises for an image: an unreadable
one (corrupt bytes, a missing file) reads as empty text with confidence 0 and its `error` says why.

The ddddocr teacher (`pip install -r requirements-ddddocr.txt`; optional, never a base requirement) runs the
model `ddddocr.DdddOcr(show_ad=False)` runs (common_old.onnx: a CTC reader of 8209 classes, 7932 of them CJK,
95 ASCII, plus the blank; one image a run, no batches) in an onnxruntime session of its own, so the thread count
is ours to set, and preprocesses as DdddOcr does (resize to height 64 keeping the aspect ratio, LANCZOS, then
grey, /255), except that an image with transparency is first laid on white (DdddOcr's png_fix) instead of
read with the colours hidden under its clear pixels. What it does differently from `DdddOcr.classification`:

- confidence: the product over the characters read of each character's highest frame probability on the
  greedy CTC path (the convention of models.decoding.ctc_decode). DdddOcr's own `probability=True`
  confidence is the mean of the frame maxima, blanks included: at least 0.95 for every captcha_images_v2 test
  image, right or wrong. The product ranks right readings above wrong ones (benchmarks/bench_teacher.py:
  86.5 % of those images read right, 98.8 % of those read with confidence >= 0.9).
- charset: DdddOcr.set_ranges in 1.6.1 drops the characters outside the range from the greedy reading
  ('22d5n' with the range '0123456789' reads '225'), and an int range takes the first classes of the model's
  charset (CJK), not the documented presets. Here the path is chosen among the blank and the allowed
  characters only, so a frame whose likeliest class is forbidden reads its likeliest allowed one (or blank).
  The probabilities stay those of the full softmax (not renormalised over the allowed classes): a character
  forced where the reader saw something else comes with a low confidence, so filtering still catches it.
  On captcha_images_v2 the charset inferred from the zero-shot readings mends the stray characters the model
  reads at the captcha's left edge (a CJK character, 'L', ','): 194 of 208 right instead of 180.
- case: the model's letter case cannot be trusted (`case_sensitive = False`): it reads lower-case captchas in
  lower case (647 of 653 letters on captcha_images_v2), but upper-case ImageCaptcha letters about half in
  each case. So a letter's two cases count as one class: their probabilities are summed, and the text holds
  the likelier case (charset None) or the case `charset` holds it in, where it holds only one. Letters of
  charset None readings differ from DdddOcr's only where the two cases together outweigh its choice.
"""
import collections
import dataclasses
import io
import multiprocessing
import os
import queue
import signal
import sys
import types
import unicodedata

import numpy as np

ARITHMETIC = set("+-*/=?×÷＋－＊／＝？")  # signs of captchas that ask for a sum ('12+3=?'), full-width too


class TeacherError(Exception):
    """A teacher cannot be loaded or used; the message is one line that names the fix."""


@dataclasses.dataclass(frozen=True)
class Reading:
    """One image read by a teacher.

    text: the reading ('' when nothing was read or the image is unreadable).
    confidence: sequence confidence in [0, 1]: the product of `chars` (for an empty text, the probability of
        the all-blank path; 0 for an unreadable image).
    chars: each character's probability, in text order (its highest frame probability on the path).
    error: '' when the image was read; else why it could not be (e.g. 'UnidentifiedImageError: ...').
    """
    text: str
    confidence: float
    chars: tuple = ()
    error: str = ""


def _unreadable(e):
    """The Reading of an image that could not be read: empty, with why."""
    return Reading("", 0.0, (), f"{type(e).__name__}: {e}".splitlines()[0])


def _read_each(items, read_one, progress=None):
    """[read_one(image)] for each item (path, bytes or PIL image) opened as an image, in order; an item that
    cannot be opened or read gets an empty Reading with why, never an exception. progress(done, total) after each."""
    if isinstance(items, (str, bytes, os.PathLike)):
        raise TypeError("read() takes a list of images; wrap a single one in a list")
    items = list(items)
    readings = []
    for n, item in enumerate(items, 1):
        try:
            readings.append(read_one(_image_input(item)))
        except Exception as e:  # any undecodable or odd image: an empty reading, never an exception
            readings.append(_unreadable(e))
        if progress:
            progress(n, len(items))
    return readings


def _image_input(item):
    """A PIL image opened from a path, bytes or a PIL image."""
    from PIL import Image

    from core.data import upright  # turned as its EXIF orientation says, as training reads it

    if isinstance(item, Image.Image):
        return upright(item)
    if isinstance(item, (bytes, bytearray, memoryview)):
        return upright(Image.open(io.BytesIO(bytes(item))))
    if isinstance(item, (str, os.PathLike)):
        return upright(Image.open(item))
    raise TypeError(f"an image is a path, bytes or a PIL image, not {type(item).__name__}")


def with_margin(image, fraction):
    """An RGB or L image widened by `fraction` of its height on the left and on the right, in the median colour of its
    first and last columns (its background where the text does not touch the edges)."""
    from PIL import Image

    width, height = image.size
    pad = int(round(fraction * height))
    if pad < 1:
        return image
    pixels = np.asarray(image)
    edges = np.concatenate([pixels[:, 0], pixels[:, -1]])
    colour = tuple(int(v) for v in np.median(edges, 0)) if edges.ndim == 2 else int(np.median(edges))
    out = Image.new(image.mode, (width + 2 * pad, height), colour)
    out.paste(image, (pad, 0))
    return out


def _greedy(ids, probs):
    """[(class index, peak probability, peak frame)] of a CTC frame path: runs of one class, blanks (0) dropped.

    Repeats merge only within a run: a blank between two runs keeps a genuine double ('A A - A' reads 'AA')."""
    runs, prev = [], 0
    for t, (i, p) in enumerate(zip(ids, probs)):
        if i != 0 and i == prev:
            if p > runs[-1][1]:
                runs[-1][1:] = [p, t]
        elif i != 0:
            runs.append([i, p, t])
        prev = i
    return runs


class DdddocrTeacher:
    """ddddocr 1.6.1's bundled OCR model (beta: its second, common.onnx), read in this process with `threads`
    onnxruntime threads.

    Attributes: name ('ddddocr'); characters (every single character the model can output, a str);
    case_sensitive (False: its letter case cannot be trusted; see the module's notes).
    """
    name = package = "ddddocr"
    case_sensitive = False
    HEIGHT = 64  # DdddOcr resizes every image to this height, the width following the aspect ratio
    MAX_WIDTH = 32 * HEIGHT  # wider after that resize: not read (the suite's widest, colour_lines: under 10 times)

    def __init__(self, threads=1, margin=0.0, beta=False, asked="ddddocr"):
        """asked: the teacher's name its errors give (--teacher=...): ddddocr2 loads two of these."""
        try:
            import ddddocr
            import onnxruntime
            from ddddocr.models.charset_manager import CharsetManager
        except ImportError:
            raise TeacherError(f"--teacher={asked} needs the ddddocr package: "
                               "pip install -r requirements-ddddocr.txt") from None
        manager = CharsetManager()
        manager.load_default_charset(beta=beta)  # DdddOcr(show_ad=False)'s: common_old.onnx's (beta: common.onnx's)
        self.classes = manager.get_charset()  # index 0 is the blank ''
        model = os.path.join(os.path.dirname(ddddocr.__file__), "common.onnx" if beta else "common_old.onnx")
        if not os.path.isfile(model) or len(self.classes) < 2 or self.classes[0] != "":
            raise TeacherError(f"--teacher={asked} needs ddddocr 1.6.1 (its model or charset was not found): "
                               "pip install -r requirements-ddddocr.txt")
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = max(0, int(threads))  # 0: onnxruntime's choice (every core)
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # the model declares its output (1, T) but gives (T, 1, C): a warning per run
        self.session = onnxruntime.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.index = {c: i for i, c in enumerate(self.classes) if i}
        self.characters = "".join(c for c in self.classes[1:] if len(c) == 1)
        self.threads = threads
        self.margin = margin
        pairs = [(i, self.index[c.upper()]) for i, c in enumerate(self.classes)
                 if c.isascii() and c.islower() and c.upper() in self.index]
        self._lower, self._upper = np.array([i for i, _ in pairs]), np.array([u for _, u in pairs])
        self._upper_of = dict(pairs)  # lower-case letter's class -> its upper case's

    def _columns(self, charset):
        """(alphabet, primary, secondary) for a charset: alphabet[0] is the blank, then the charset's characters;
        class k's probability is the model's for class primary[k] (-1: none, 0) plus, where secondary[k] >= 0,
        for class secondary[k]: the other case of a letter whose other case the charset lacks."""
        alphabet = [""] + list(dict.fromkeys(charset))
        primary = [self.index.get(c, -1) if c else 0 for c in alphabet]
        secondary = [self.index.get(c.swapcase(), -1) if c and c.swapcase() != c and c.swapcase() not in alphabet
                     else -1 for c in alphabet]
        return alphabet, np.array(primary), np.array(secondary)

    def _decode(self, probs, columns):
        """(text, per-character probabilities) of the greedy path of probs (T, C) over columns (None: every
        class, an ASCII letter's two cases summed and written in the case likelier at its peak frame)."""
        if columns is None:
            merged = probs.copy()
            merged[:, self._lower] += probs[:, self._upper]
            merged[:, self._upper] = -1.0
            alphabet = self.classes
        else:
            alphabet, primary, secondary = columns
            merged = np.where(primary >= 0, probs[:, primary], 0.0) + np.where(secondary >= 0, probs[:, secondary], 0.0)
        peak = merged.max(1)
        runs = _greedy(merged.argmax(1).tolist(), peak.tolist())
        if columns is None:
            upper = self._upper_of
            text = "".join(self.classes[upper[i]] if i in upper and probs[t, upper[i]] > probs[t, i]
                           else self.classes[i] for i, _, t in runs)
        else:
            text = "".join(alphabet[i] for i, _, _ in runs)
        return text, tuple(float(p) for _, p, _ in runs), peak

    def _input(self, image, margin=0.0):
        """(1, 1, HEIGHT, W) float input of one PIL image, preprocessed as DdddOcr does (both bundled models read
        the same input)."""
        from PIL import Image

        if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
            rgba = image.convert("RGBA")
            image = Image.new("RGB", rgba.size, (255, 255, 255))
            image.paste(rgba, (0, 0), mask=rgba)
        if image.mode not in ("L", "RGB"):  # PIL resizes a bilevel ("1") or palette image by its nearest pixel only
            image = image.convert("RGB")
        if margin:
            image = with_margin(image, margin)
        width = int(image.size[0] * (self.HEIGHT / image.size[1]))
        if width < 1:
            raise ValueError(f"image of {image.size[0]}x{image.size[1]} pixels is too narrow")
        if width > self.MAX_WIDTH:  # its scores alone would take gigabytes (8210 classes a frame, every 8 pixels)
            raise ValueError(f"image of {image.size[0]}x{image.size[1]} pixels is too wide to be a captcha (more than "
                             f"{self.MAX_WIDTH // self.HEIGHT} times as wide as high)")
        grey = image.resize((width, self.HEIGHT), Image.LANCZOS).convert("L")
        return (np.asarray(grey, dtype=np.float32) / 255.0)[None, None]

    def _softmax(self, x):
        """(T, C) softmax of the model's scores for an input of _input."""
        scores = self.session.run(None, {self.input_name: x})[0].reshape(-1, len(self.classes))  # (T, C)
        scores = scores - scores.max(1, keepdims=True)
        e = np.exp(scores)
        return e / e.sum(1, keepdims=True)

    def _reading(self, probs, columns):
        """The Reading of probs (T, C) over columns (_columns; None: every class)."""
        text, chars, peak = self._decode(probs, columns)
        confidence = float(np.prod(chars)) if chars else float(np.prod(peak, dtype=np.float64))
        return Reading(text, min(1.0, confidence), chars)

    def read(self, items, charset=None, progress=None, margin=None):
        """One Reading per item (path, bytes or PIL image), in order; never raises for an image.

        charset: None reads any character the model knows (8209, most of them CJK); a string restricts the
        reading to its characters (the blank always allowed; where it holds one case of a letter, both cases'
        probabilities count for it; characters the model has no class for are never read).
        progress: called as progress(done, total) after each image, for long folders.
        margin: a border added on the left and right of each image, as a fraction of its height, in the colour of
            its edges (None: this teacher's `margin`); see choose_margin.
        """
        columns = None if charset is None else self._columns(charset)
        margin = self.margin if margin is None else margin
        return _read_each(items, lambda image: self._reading(self._softmax(self._input(image, margin)), columns),
                          progress)


class AgreeingTeacher:
    """Two readers of one kind; an image's reading is trusted where both read the same text (case aside): it keeps
    the first's text and characters and the higher confidence of the two, and where they differ, the first's text
    with confidence 0, so that no run trains on it. ddddocr2: ddddocr's two bundled models (common_old.onnx and
    its beta, common.onnx), whose mistakes differ."""
    name, package = "ddddocr2", "ddddocr"
    case_sensitive = False

    def __init__(self, threads=1, margin=0.0):
        self.first, self.second = (DdddocrTeacher(threads, margin, asked=self.name),
                                   DdddocrTeacher(threads, margin, beta=True, asked=self.name))
        self.characters = self.first.characters
        self.margin = margin

    def read(self, items, charset=None, progress=None, margin=None):
        """As DdddocrTeacher.read: each image opened and prepared once, read by both models."""
        margin = self.margin if margin is None else margin
        columns = [None if charset is None else m._columns(charset) for m in (self.first, self.second)]

        def both(image):
            x = self.first._input(image, margin)
            a, b = (m._reading(m._softmax(x), c) for m, c in zip((self.first, self.second), columns))
            return (dataclasses.replace(a, confidence=max(a.confidence, b.confidence))
                    if a.text.lower() == b.text.lower() else dataclasses.replace(a, confidence=0.0))

        return _read_each(items, both, progress)


TEACHERS = {"ddddocr": DdddocrTeacher, "ddddocr2": AgreeingTeacher}  # name -> class(threads=...)
# TEACHER = "auto": this teacher, where its package is installed. With no labels and with 100 the pair reads the
# suite's sets that ddddocr's default model alone teaches worst better (swust_mixed, rsce_colour, receita) and none
# lower by more than 5 test images (BENCHMARKS.md), for about three times the reading time
AUTO = "ddddocr2"


# the borders a run tries (TEACHER_MARGIN -1): ddddocr drops a character that touches the image's edge, often with
# confidence (jaccount, whose letters fill the width: of 500 training images, 25 of the 471 readings a run would
# train on wrong, most a letter short, 'mrhtl' read 'mrht' at 0.999; with half the height each side, 4 of 494). Where
# the text keeps clear of the edges a border costs (captcha_images_v2: 469 of 500 training images read right, 394
# with half the height each side). Its mean confidence on a sample tells the two apart on the suite's sets but
# dotted_digits, where no border is kept and the labels are as good (benchmarks/teacher_margin.py, BENCHMARKS.md)
MARGINS = (0.0, 0.25, 0.5, 1.0)
MARGIN_GAIN = 0.01  # a border is used when the mean confidence it reads the sample with beats no border by this


def choose_margin(by_margin):
    """(margin, description) from {margin: [Reading]} of one sample read with each margin (0.0 among them): the
    margin the teacher reads it with the highest mean confidence, where that beats no margin by MARGIN_GAIN; else 0."""
    mean = {m: float(np.mean([r.confidence for r in rs])) if rs else 0.0 for m, rs in by_margin.items()}
    best = max(sorted(mean), key=lambda m: mean[m])
    shown = ", ".join(f"{m:g}: {mean[m]:.3f}" for m in sorted(mean))
    if best == 0.0 or mean[best] < mean.get(0.0, 0.0) + MARGIN_GAIN:
        return 0.0, f"reads the images as they are (mean confidence by border {shown}; TEACHER_MARGIN)"
    return best, (f"reads each image with a border of {best:g} of its height left and right: it reads them more surely "
                  f"so (mean confidence by border {shown}; TEACHER_MARGIN)")


def unavailable(name=AUTO):
    """Why the teacher `name` cannot read here, or "" when it can (it is loaded once to find out: 0.2 s; ddddocr2
    loads both models, 0.7 s)."""
    import importlib.util
    package = getattr(TEACHERS.get(name), "package", name)
    if importlib.util.find_spec(package) is None:
        return f"{package} is not installed: pip install -r requirements-ddddocr.txt adds it"
    try:
        load_teacher(name, threads=1)
    except TeacherError as e:
        return f"{name} does not load: {e}"
    return ""


def auto_teacher(name):
    """TEACHER as a teacher's name: "auto" is AUTO where it can read, else "" (none); other values as they are."""
    if name != "auto":
        return name
    return "" if unavailable(AUTO) else AUTO


def load_teacher(name="ddddocr", threads=1):
    """The teacher registered under `name`, its session on `threads` CPU threads (0: onnxruntime's choice).

    Raises TeacherError (one line naming the fix) for an unknown name or a missing package.
    """
    if name not in TEACHERS:
        raise TeacherError(f"unknown teacher {name!r}: known teachers are {', '.join(sorted(TEACHERS))}")
    return TEACHERS[name](threads=threads)


def _serve(name, tasks, results):
    """A reader process of ReaderPool: the teacher `name` on one thread reads each task (key, paths, charset,
    margin) of `tasks` into `results` as (key, [Reading]), until its command ends it or is gone; (key, message)
    where it cannot."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the command: it keeps what was read and stops these
    parent = multiprocessing.parent_process()
    try:
        teacher = load_teacher(name, threads=1)
    except Exception as e:
        results.put((None, str(e)))  # sent before this process ends
        return
    results.cancel_join_thread()  # from here on, never wait at exit for a command that is gone to take a reading
    while True:
        if parent is not None and not parent.is_alive():  # the command was killed: no one takes what is read
            return
        try:
            task = tasks.get(timeout=2.0)
        except queue.Empty:
            continue
        key, paths, charset, margin = task
        try:
            results.put((key, teacher.read(paths, charset, margin=margin)))
        except Exception as e:  # read() never raises for an image: this is a defect, said by the command
            results.put((key, f"{type(e).__name__}: {e}"))


class ReaderPool:
    """`workers` processes, each reading with the teacher `name` on one thread. ddddocr's models read an image
    about twice as fast on one thread per process as on two threads of one onnxruntime session (2-core AMD
    EPYC, 240 rsce_colour images with ddddocr2: 17 a second on one thread, 13-15 on two, 32 in two processes)."""
    TASK = 50  # images a process reads at a time: how often progress moves, and how evenly the processes share

    def __init__(self, name, workers):
        context = multiprocessing.get_context("spawn")  # never fork a process whose torch may hold locks
        self.tasks, self.results = context.Queue(), context.Queue()
        main = sys.modules["__main__"]
        # a spawned process imports its parent's __main__ (train.py: torch, 3 s and 0.6 GB each): these import
        # core.teacher alone (0.5 s and 0.2 GB with both of ddddocr's models)
        sys.modules["__main__"] = types.ModuleType("__main__")
        self.processes = [context.Process(target=_serve, args=(name, self.tasks, self.results), daemon=True)
                          for _ in range(workers)]
        try:
            for p in self.processes:
                p.start()
        except BaseException:  # those started end with the others that could not
            self.close()
            raise
        finally:
            sys.modules["__main__"] = main

    def read(self, paths, charset=None, margin=0.0):
        """Yields (start, [Reading]) for consecutive parts of `paths` of TASK images, as they are read (in any
        order). TeacherError where a process cannot load the teacher or ends."""
        starts = range(0, len(paths), self.TASK)
        for start in starts:
            self.tasks.put((start, list(paths[start:start + self.TASK]), charset, margin))
        for _ in starts:
            key, got = self._next()
            if isinstance(got, str):
                raise TeacherError(got if key is None else f"a teacher process failed: {got}")
            yield key, got

    def _next(self):
        while True:
            try:
                return self.results.get(timeout=1.0)
            except queue.Empty:
                ended = [p.exitcode for p in self.processes if not p.is_alive()]
                if ended and self.results.empty():  # what an ended process sent is taken first
                    raise TeacherError(f"a teacher process ended (exit code {ended[0]}; out of memory?): --threads=1 "
                                       f"reads in the command's own process") from None

    def close(self):
        started = [p for p in self.processes if p.pid is not None]
        for p in started:
            if p.is_alive():
                p.terminate()
        for p in started:
            p.join(timeout=10)
        for q in (self.tasks, self.results):
            q.close()
            q.cancel_join_thread()  # tasks never taken: nothing to wait for

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _script(c):
    """'cjk', 'ascii' or 'other' for one character."""
    if ord(c) < 128:
        return "ascii"
    name = unicodedata.name(c, "")
    return "cjk" if name.startswith(("CJK", "HIRAGANA", "KATAKANA", "HANGUL")) else "other"


def _share(part, whole):
    """A percentage rounded down, so that 1997 of 2000 is 99 %, not 100 %."""
    return f"{100 * part // whole} %" if whole else "0 %"


@dataclasses.dataclass(frozen=True)
class Inferred:
    """What a set of readings says about the captcha: unpacks as (charset, lengths, case, description).

    charset: the characters read often enough to be real, sorted (letters folded to `case` when single-case).
    lengths: the dominant label length(s), sorted: (5,) or (4, 5, 6); () when nothing was read.
    case: 'lower' or 'upper' (the letters read are of one case; a few of the other case are folded into it),
        'mixed', or None (no letters).
    description: one line for the user.
    """
    charset: str
    lengths: tuple
    case: object
    description: str

    def __iter__(self):
        return iter((self.charset, self.lengths, self.case, self.description))


def _basis(readings, min_confidence):
    """The non-empty texts to infer from: those read with min_confidence or more when they are at least 20 and a
    third of the non-empty ones (a teacher's doubtful readings hold most of its stray characters), else all."""
    texts = [r.text for r in readings if r.text]
    sure = [r.text for r in readings if r.text and r.confidence >= min_confidence]
    return (sure, True) if len(sure) >= max(20, len(texts) / 3) else (texts, False)


def _fold(texts, case_sensitive):
    """(texts, case): case 'lower' or 'upper' when 90 % or more of the letters read are of that case (the texts
    folded to it), else 'mixed' (the texts folded to lower case unless case_sensitive), or None (no letters)."""
    letters = [c for t in texts for c in t if c.lower() != c.upper()]
    if not letters:
        return texts, None
    lower = sum(c.islower() for c in letters) / len(letters)
    if lower >= 0.9:
        return [t.lower() for t in texts], "lower"
    if lower <= 0.1:
        return [t.upper() for t in texts], "upper"
    return (texts if case_sensitive else [t.lower() for t in texts]), "mixed"


def _lengths(texts, min_length_share):
    """The dominant lengths: the commonest, and any other held by min_length_share of the texts."""
    counts = collections.Counter(len(t) for t in texts)
    if not counts:
        return ()
    top = counts.most_common(1)[0][0]
    return tuple(sorted(n for n, k in counts.items() if n == top or k >= min_length_share * len(texts)))


STRAY = 2  # a character read this often or less in the sample is a stray reading of noise, whatever its share


def _charset(texts, min_share):
    """The characters that occur at least min_share of the count each would have in a uniform charset of the
    characters kept (iterated until stable), and more than STRAY times."""
    counts = collections.Counter(c for t in texts for c in t)
    kept = set(counts)
    while kept:
        total = sum(counts[c] for c in kept)
        floor = max(STRAY + 1, min_share * total / len(kept))
        now = {c for c in kept if counts[c] >= floor}
        if now == kept:
            break
        kept = now
    return "".join(sorted(kept))


def infer_charset_length(readings, min_share=0.1, min_length_share=0.15, min_confidence=0.5, case_sensitive=False):
    """From the readings alone: the charset, the label length(s), the letter case, and a one-line description.

    min_share: a character is real when it occurs at least this fraction of the count each character would
        have if the charset were uniform, and more than STRAY times (stray readings of noise occur far less
        often: at most twice in 500 images of each suite set the teacher can read, where the rarest real
        character of a set occurs 6 to 192 times, 0.18 to 0.96 of its uniform share).
    min_length_share: a length beside the commonest one counts when this fraction of the readings has it.
    min_confidence: the readings used are those at least this confident when there are enough of them.
    case_sensitive: whether the teacher's letter case can be trusted (Teacher.case_sensitive; ddddocr: False).
        When not, letters of both cases ('mixed') are counted without case and the charset holds them in lower
        case, so that a read restricted to it sums both cases' probabilities; map them to your labels' case.
    Returns an Inferred, which unpacks as (charset, lengths, case, description).
    """
    texts, sure = _basis(readings, min_confidence)
    if not texts:
        return Inferred("", (), None, f"nothing read in {len(readings)} images")
    texts, case = _fold(texts, case_sensitive)
    lengths = _lengths(texts, min_length_share)
    charset = _charset([t for t in texts if len(t) in lengths], min_share)
    if case is not None and not any(c.lower() != c.upper() for c in charset):
        case = None
    of_length = sum(len(t) in lengths for t in texts)
    length_text = (f"length {lengths[0]}" if len(lengths) == 1 else f"lengths {', '.join(map(str, lengths))}")
    case_text = {None: "no letters", "lower": "letters in lower case", "upper": "letters in upper case",
                 "mixed": "letters in both cases" + ("" if case_sensitive else " (counted in lower case)")}[case]
    basis = f"the {len(texts)} readings with confidence >= {min_confidence}" if sure else f"{len(texts)} readings"
    description = (f"charset {charset!r} ({len(charset)} characters), {length_text} "
                   f"({_share(of_length, len(texts))} of them), {case_text}; from {basis} of {len(readings)} images")
    return Inferred(charset, lengths, case, description)


def _arithmetic(text):
    return any(c.isdigit() for c in text) and any(c in ARITHMETIC for c in text) and not text.isalnum()


def usefulness(readings, name="ddddocr", min_useful=0.5, min_confident=0.5, confident=0.9, labels=100):
    """(ok, reason): whether the readings can teach this captcha style, and a one-line message for the user.

    Not useful when most readings are empty or unreadable, when they look like arithmetic ('12+3=?') or
    another script (CJK), when fewer than `min_useful` of the images read as text of the inferred length(s)
    and charset, or when fewer than `min_confident` of the images read so with `confident` confidence.
    `name` and `labels` (how many images to label instead) only shape the message.
    """
    n = len(readings)
    advice = f"it cannot teach this style: label {labels} images instead"
    if not n:
        return False, f"{name} was given no images to read"
    texts = [r.text for r in readings if r.text]
    unreadable = sum(bool(r.error) for r in readings)
    if unreadable >= n / 2:
        return False, (f"{_share(unreadable, n)} of the {n} files given to {name} are not images it can open "
                       f"(like: {next(r.error for r in readings if r.error)}); give it a folder of captcha images")
    if len(texts) < n / 2:
        extra = f" ({unreadable} of them unreadable files)" if unreadable else ""
        return False, f"{name} read no text in {_share(n - len(texts), n)} of {n} images{extra}; {advice}"
    arithmetic = [t for t in texts if _arithmetic(t)]
    if len(arithmetic) >= 0.3 * len(texts):
        return False, (f"{name} read {_share(len(arithmetic), n)} of {n} images as arithmetic "
                       f"(like {arithmetic[0]!r}); {advice}")
    foreign = [t for t in texts if any(_script(c) != "ascii" for c in t)]
    if len(foreign) >= 0.3 * len(texts):
        script = "CJK" if any(_script(c) == "cjk" for t in foreign for c in t) else "another script"
        return False, f"{name} read {_share(len(foreign), n)} of {n} images as {script} (like {foreign[0]!r}); {advice}"
    charset, lengths, _, _ = infer_charset_length(readings)
    useful = [readings[i] for i in filter_readings(readings, 0.0, lengths, charset)]
    sure = sum(r.confidence >= confident for r in useful)
    if len(useful) < min_useful * n:
        return False, f"{name} read {_share(len(useful), n)} of {n} images as text of one length and charset; {advice}"
    length_text = f"{lengths[0]}" if len(lengths) == 1 else f"{lengths[0]}-{lengths[-1]}"
    what = f"as {length_text} characters from {charset!r}"
    if sure < min_confident * n:
        return False, (f"{name} read {_share(len(useful), n)} of {n} images {what}, but only {_share(sure, n)} "
                       f"with confidence >= {confident}; {advice}")
    return True, (f"{name} read {_share(len(useful), n)} of {n} images {what}, {_share(sure, n)} with "
                  f"confidence >= {confident}")


def _allowed(charset):
    """The characters a text may hold for `charset`: its own, and the other case of a letter it holds in one case."""
    allowed = set(charset)
    return allowed | {c.swapcase() for c in charset if c.swapcase() not in allowed}


def filter_readings(readings, min_confidence=0.9, lengths=None, charset=None):
    """Indices of the readings to use as labels: confidence >= min_confidence, a length in `lengths` (None:
    any non-empty text), and with `charset` only its characters (a letter in either case where charset holds
    one case of it, as Teacher.read counts them). Readings of an unreadable image never pass."""
    allowed = _allowed(charset) if charset else None
    keep = []
    for i, r in enumerate(readings):
        if r.error or not r.text or r.confidence < min_confidence:
            continue
        if lengths is not None and len(r.text) not in lengths:
            continue
        if allowed is not None and not set(r.text) <= allowed:
            continue
        keep.append(i)
    return keep
