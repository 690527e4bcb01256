"""The labelling page's server side: a folder of unlabelled captchas, answered one at a time by a person.

    python app.py --label_dir=FOLDER [MODEL.pt|MODEL.onnx]     # then open http://127.0.0.1:8000/label

LabelStore reads and writes the answers: FOLDER/labels.tsv (`file<TAB>label`, read by data.read_tsv's rules)
and FOLDER/unreadable.txt (data.UNREADABLE_FILE, one file name per line, read by data.unreadable_marks). An
answer is one os.write of the whole line on an O_APPEND file descriptor, then fsync, under a threading lock and
an flock on the folder, and only after the files are re-read if another process changed them: two servers or
tabs never interleave lines or answer one image twice. LabelQueue offers the unanswered images, least confident
first when a model scored them at startup. mount() adds the page and its API to the app:

    GET  /label                      the page (web/label.html with this server's token, label.js, label.css)
    GET  /api/label/next?count=N     the next N unanswered images: file, text (the model's reading),
                                     confidence (of the whole text), chars [{char, confidence}]
    GET  /api/label/image?file=NAME  an image's bytes
    POST /api/label/answer           {"file": NAME, "label": TEXT} or {"file": NAME, "unreadable": true}
    POST /api/label/skip             {"file": NAME}: to the end of the queue, nothing written
    GET  /api/label/stats            total, labelled, unreadable, remaining, the last answers, the model (its
                                     name and checkpoint, or the teacher's name)

What it refuses: images that are symbolic links or resolve outside the folder (never listed; opened with
O_NOFOLLOW and checked to be a regular file, so one swapped for a link later is refused too); answer files that
are links or have other hard links (at start, and when appending: O_NOFOLLOW); requests whose Host header does
not name the server, API requests from another origin (plumbing.SameOrigin); POSTs that are not
Content-Type: application/json or lack the page's token (the X-Label-Token header; the page carries it in
<meta name="label-token">); answers for images deleted since the start. It writes no temporary files: an
answer is one append.
"""
import collections
import contextlib
import errno
import fcntl
import hashlib
import hmac
import json
import mimetypes
import os
import re
import secrets
import stat
import threading
import time
import unicodedata

import numpy as np
import torch
from fastapi import Request
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

import config
from core import data
from core.checkpoint import DEFAULT_CHECKPOINT, latest_checkpoint
from core import teach
from core.device import cpu_count
from core.teacher import auto_teacher
from core.files import file_kind
from serve.plumbing import ApiError

HEADER = "file\tlabel\n"  # the first line of a labels.tsv this page creates (data.read_tsv skips it)
MAX_LABEL = 100           # characters in a label; more is a mistake (a paste), not a captcha
MAX_NEXT = 50             # images one /api/label/next answers at most
RECENT = 10               # answers listed by /api/label/stats
SCORE_BATCH = 64          # images per forward pass when scoring the folder at startup
TEACHER_FIRST = 1000      # images the teacher reads before the page opens (drawn across the folder); it reads the
                          # others while the page is open, TEACHER_CHUNK at a time, each part offered as it is read
TEACHER_CHUNK = 1000
USAGE = 'send {"file": NAME, "label": TEXT}, or {"file": NAME, "unreadable": true}'
PAGES = ("/label",)       # the page and the API, guarded by plumbing.SameOrigin (routes.create_app)
API = ("/api/label/",)
TOKEN_HEADER = "X-Label-Token"  # what the page sends with each POST: the token in its <meta name="label-token">
TOKEN_META = re.compile(r'(<meta name="label-token" content=")[^"]*(">)')
READ_CHUNK = 64 * 1024    # bytes an image is sent in
NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
CLOEXEC = getattr(os, "O_CLOEXEC", 0)


# --- the model -----------------------------------------------------------------------------------------------

def choose_model(named):
    """(path or None, why): the model that makes the suggestions. The one named on the command line; else the
    newest WEIGHTS_DIR/*_best.pt (what was trained last); else none. The shipped default.pt reads generated
    captchas, not a site's own, so it is used only when named."""
    if named:
        return named, "named on the command line"
    newest = latest_checkpoint()
    if newest:
        return newest, f"the newest trained model in {config.WEIGHTS_DIR}/; name another as the first argument"
    return None, (f"no {config.WEIGHTS_DIR}/*_best.pt; the shipped {DEFAULT_CHECKPOINT} reads generated "
                  f"captchas, so it is used only when named (python app.py --label_dir=FOLDER "
                  f"{os.path.join(config.WEIGHTS_DIR, DEFAULT_CHECKPOINT)}); images in file-name order, "
                  f"no suggestions")


def score(predictor, folder, names, batch=SCORE_BATCH):
    """{name: suggestion} for the images `names` of `folder`, read by `predictor` (a core.inference.Predictor) in
    batches: text, confidence (of the whole text, unrounded: it orders the queue), chars [{char, confidence}];
    an image the model cannot load gets confidence None and its error."""
    found = {}
    before = torch.get_num_threads()
    torch.set_num_threads(max(before, cpu_count()))  # before the server starts: every core may help
    try:
        for start in range(0, len(names), batch):
            arrays, good = [], []
            for name in names[start:start + batch]:
                try:
                    arrays.append(predictor.load(os.path.join(folder, name)))
                    good.append(name)
                except data.ImageError as e:
                    found[name] = {"text": "", "confidence": None, "chars": [], "error": e.reason}
            if not arrays:
                continue
            texts, confidences, chars = predictor.predict_arrays(np.stack(arrays))
            for name, text, confidence, probs in zip(good, texts, confidences, chars):
                found[name] = {"text": text, "confidence": float(confidence),
                               "chars": [{"char": c, "confidence": round(float(p), 4)} for c, p in zip(text, probs)]}
    finally:
        torch.set_num_threads(before)
    return found


# --- checks on what a request names ---------------------------------------------------------------------

def _control(c):
    return unicodedata.category(c) in ("Cc", "Cf", "Cs", "Zl", "Zp")


def check_name(name):
    """400 unless `name` is a bare file name (no folder, no separator, not absolute, not . or ..)."""
    if not isinstance(name, str) or not name:
        raise ApiError(400, f"'file' must be the name of an image in the labelling folder; {USAGE}")
    if ("/" in name or "\\" in name or (os.altsep and os.altsep in name) or os.path.isabs(name)
            or name in (".", "..") or "\0" in name):
        raise ApiError(400, f"'file' must be a bare file name in the labelling folder, not a path: {name!r}")
    return name


def check_label(label):
    """400 unless `label` is text a labels.tsv line can hold as typed: not empty, no TAB, newline or other control
    character, no leading or trailing space (a labels.tsv reader would strip it), at most MAX_LABEL characters."""
    if not isinstance(label, str):
        raise ApiError(400, f"'label' must be text, not {type(label).__name__}; {USAGE}")
    if not label:
        raise ApiError(400, "the label is empty: type what the image shows, or mark it unreadable "
                            "({\"file\": NAME, \"unreadable\": true})")
    bad = sorted({c for c in label if _control(c)})
    if bad:
        names = ", ".join({"\t": "a TAB", "\n": "a newline", "\r": "a carriage return"}.get(c, f"U+{ord(c):04X}")
                          for c in bad)
        raise ApiError(400, f"the label {label!r} holds {names}: a label is one line of visible characters")
    if label != label.strip():
        raise ApiError(400, f"the label {label!r} has leading or trailing spaces; remove them")
    if len(label) > MAX_LABEL:
        raise ApiError(400, f"the label is {len(label)} characters long; the limit is {MAX_LABEL}")
    return label


def writable_name(name):
    """Whether a file name can stand in labels.tsv and unreadable.txt as it is: UTF-8, no control character, no
    leading or trailing space (those readers strip it)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return name == name.strip() and not any(_control(c) for c in name)


def inside(folder, name):
    """Whether `name` in `folder` is a regular file itself (not a link to one) whose resolved path is in the
    resolved folder."""
    real = os.path.realpath(folder)
    path = os.path.join(real, name)
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISREG(st.st_mode) and os.path.dirname(os.path.realpath(path)) == real


def folder_images(folder):
    """(names, left_out, links): the image files of `folder` (data.IMAGE_EXTENSIONS, not hidden, regular files
    inside the folder: `inside`), sorted; those whose names labels.tsv cannot hold (writable_name); and the
    symbolic links named like images, never listed (one may point anywhere: /etc/..., ~/.ssh/...)."""
    names, links = [], []
    for n in sorted(os.listdir(folder)):
        if os.path.splitext(n)[1].lower() not in data.IMAGE_EXTENSIONS or n.startswith("."):
            continue
        if os.path.islink(os.path.join(folder, n)):
            links.append(n)
        elif inside(folder, n):
            names.append(n)
    return [n for n in names if writable_name(n)], [n for n in names if not writable_name(n)], links


def open_image(folder, name):
    """(a binary file, its os.stat_result) of the image `name` (checked by check_name) of `folder`: opened with
    O_NOFOLLOW, so a file replaced by a symbolic link since it was listed is refused, and checked to be a regular
    file on the descriptor itself. ApiError 404 otherwise."""
    path = os.path.join(os.path.realpath(folder), name)
    try:
        fd = os.open(path, os.O_RDONLY | NOFOLLOW | os.O_NONBLOCK | CLOEXEC)
    except FileNotFoundError:
        raise ApiError(404, f"{name} is no longer in {folder} (deleted since the server started)") from None
    except OSError as e:
        if e.errno == errno.ELOOP or os.path.islink(path):
            raise ApiError(404, f"{name} in {folder} is now a symbolic link: only the folder's own files are "
                                f"served") from None
        raise ApiError(404, f"{name} in {folder} cannot be opened: {e.strerror or e}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ApiError(404, f"{name} in {folder} is no longer a regular file ({file_kind(path)})")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb"), st
    except BaseException:
        os.close(fd)
        raise


def _chunks(f, size):
    """The first `size` bytes of the file `f` (what its Content-Length said), in pieces; closes it."""
    with f:
        while size > 0:
            chunk = f.read(min(READ_CHUNK, size))
            if not chunk:
                return
            size -= len(chunk)
            yield chunk


# --- the answers on disk -----------------------------------------------------------------------------------

def _signature(path):
    try:
        st = os.lstat(path)  # a link's own: a file swapped for a link reads as changed
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


def link_refusal(path, st=None):
    """Why the answer file `path` must not be read or appended to (a symbolic link, or a file with other hard
    links: either may reach a file outside the folder), or None. `st`: its os.stat_result if open already."""
    if st is None:
        try:
            st = os.lstat(path)
        except OSError:
            return None
    if stat.S_ISLNK(st.st_mode):
        try:
            target = f" to {os.readlink(path)}"
        except OSError:
            target = ""
        return (f"{path} is a symbolic link{target}; answers are written only to a file of the folder itself: "
                f"replace the link with a regular file")
    if stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
        return (f"{path} has {st.st_nlink} hard links (the same file under other names, maybe outside the folder); "
                f"answers are written only to a file of the folder itself: replace it with a regular file of its "
                f"own (cp {os.path.basename(path)} copy && mv copy {os.path.basename(path)})")
    return None


class AlreadyAnswered(ApiError):
    """409: the image has an answer already; `existing` is it ({"label": ...} or {"unreadable": True})."""

    def __init__(self, name, existing, where):
        said = f"the label {existing['label']!r}" if "label" in existing else "unreadable"
        super().__init__(409, f"{name} is already answered in {where}: {said}; an answer is never changed here "
                              f"(edit {where} by hand to change it)")
        self.existing = existing


class LabelStore:
    """The answers of a folder: labels.tsv (`file<TAB>label`) and unreadable.txt, read at start and re-read when
    another process changes them; each new answer appended as one line, at most once per image."""

    def __init__(self, folder):
        self.folder = os.path.abspath(folder)
        self.tsv = os.path.join(self.folder, data.LABELS_FILE)
        self.unreadable_txt = os.path.join(self.folder, data.UNREADABLE_FILE)
        for path in (self.tsv, self.unreadable_txt):
            refusal = link_refusal(path)
            if refusal:
                raise data.DataError(refusal)
            if os.path.lexists(path) and not os.path.isfile(path):
                raise data.DataError(f"{path} is not a regular file ({file_kind(path)})")
            if not os.access(path if os.path.exists(path) else self.folder, os.W_OK):
                raise data.DataError(f"{path}: no permission to write it (the answers go there)")
        self.labels, self.unreadable = {}, {}  # name -> label; name -> None (a dict keeps the order)
        self.seen = {}  # path -> the signature (device, inode, size, mtime) of the version read
        self.version = 0  # counts the re-reads that replaced the answers: LabelQueue offers unanswered ones again
        self.recent = collections.deque(maxlen=RECENT)
        self.lock = threading.Lock()
        with self._locked():
            self._refresh()

    @contextlib.contextmanager
    def _locked(self):
        """This process's threads (a lock) and other processes (flock on the folder) one at a time."""
        with self.lock:
            fd = os.open(self.folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0))
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield fd
            finally:
                os.close(fd)  # releases the flock

    def _refresh(self):
        """Re-read the answer files that changed since they were read (another process, an editor)."""
        signature = _signature(self.tsv)
        if signature != self.seen.get(self.tsv, False):
            self._check(self.tsv)
            items = data.read_tsv(self.folder, self.tsv) if signature else []
            self.labels = {os.path.relpath(path, self.folder): label for path, label in items}
            self.seen[self.tsv] = signature
            self.version += 1
        signature = _signature(self.unreadable_txt)
        if signature != self.seen.get(self.unreadable_txt, False):
            self._check(self.unreadable_txt)
            marks = data.unreadable_marks(self.folder) if signature else set()
            self.unreadable = dict.fromkeys(sorted(os.path.relpath(path, self.folder) for path in marks))
            self.seen[self.unreadable_txt] = signature
            self.version += 1

    @staticmethod
    def _check(path):
        refusal = link_refusal(path)
        if refusal:
            raise data.DataError(refusal)

    def _catch_up(self):
        """_refresh while serving: a file edited into something unreadable is the request's answer, said plainly."""
        try:
            self._refresh()
        except data.DataError as e:
            raise ApiError(500, f"{e}\nFix the file; answers are taken again once it reads") from None

    def refresh(self):
        """Catch up with answers written by another process; cheap (two stats) when nothing changed."""
        if (_signature(self.tsv) != self.seen.get(self.tsv)
                or _signature(self.unreadable_txt) != self.seen.get(self.unreadable_txt)):
            with self._locked():
                self._catch_up()

    def existing(self, name):
        """The answer of `name`, {"label": ...} or {"unreadable": True}, or None."""
        if name in self.labels:
            return {"label": self.labels[name]}
        if name in self.unreadable:
            return {"unreadable": True}
        return None

    def answered(self, name):
        return name in self.labels or name in self.unreadable

    def answer(self, name, label=None):
        """Write `name`'s answer: `label`, or unreadable when None. AlreadyAnswered (409) if it has one, in
        memory or on disk (written by another process meanwhile)."""
        with self._locked() as folder_fd:
            self._catch_up()
            existing = self.existing(name)
            if existing:
                where = data.LABELS_FILE if "label" in existing else data.UNREADABLE_FILE
                raise AlreadyAnswered(name, existing, where)
            path, line = (self.unreadable_txt, f"{name}\n") if label is None else (self.tsv, f"{name}\t{label}\n")
            try:
                self._append(path, line, "" if label is None else HEADER, folder_fd)
            except OSError as e:  # a full disk, a lost permission: the person should know the answer is not in
                raise ApiError(500, f"could not write {path}: {e.strerror or e}; the answer was not saved") from None
            if label is None:
                self.unreadable[name] = None
            else:
                self.labels[name] = label
        answer = {"file": name, **({"unreadable": True} if label is None else {"label": label})}
        self.recent.appendleft({**answer, "at": round(time.time(), 3)})
        return answer

    def _append(self, path, line, header, folder_fd):
        """One os.write of `line` (after `header` if the file is new or empty, after a newline if its last line
        has none) on an O_APPEND descriptor, then fsync; on a failure the file is cut back to what it was."""
        created = not os.path.lexists(path)
        try:  # O_NOFOLLOW: never through a link (a dangling one would otherwise be created where it points)
            fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | NOFOLLOW | CLOEXEC, 0o644)
        except OSError as e:
            if e.errno == errno.ELOOP or os.path.islink(path):
                raise ApiError(500, f"{link_refusal(path) or f'{path} is a symbolic link'}; the answer was not "
                                    f"saved") from None
            raise
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise OSError(errno.EINVAL, f"not a regular file ({file_kind(path)})", path)
            refusal = link_refusal(path, st)
            if refusal:
                raise ApiError(500, f"{refusal}; the answer was not saved")
            if st.st_size == 0:
                prefix = header
            else:
                prefix = "" if os.pread(fd, 1, st.st_size - 1) == b"\n" else "\n"
            raw = (prefix + line).encode("utf-8")
            try:
                if os.write(fd, raw) != len(raw):
                    raise OSError(errno.ENOSPC, "the line was written only in part (disk full?)", path)
                os.fsync(fd)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, st.st_size)  # no half line left behind
                raise
            after = os.fstat(fd)
            self.seen[path] = (after.st_dev, after.st_ino, after.st_size, after.st_mtime_ns)
        finally:
            os.close(fd)
        if created:  # the new file's name survives a power cut once the folder is synced
            with contextlib.suppress(OSError):
                os.fsync(folder_fd)


# --- the queue ---------------------------------------------------------------------------------------------

def _shuffled(name):
    """A fixed place for `name` in a shuffle of names (the same at every start)."""
    return hashlib.sha1(name.encode("utf-8", "surrogateescape")).hexdigest()


class LabelQueue:
    """The images of a folder still to answer, in the order they are offered: ascending confidence when a model or
    the teacher read them (images it could not load first; equal ones in a fixed shuffle: _offer_order), else
    file-name order; a large folder's images the teacher reads while the page is open after the others
    (TEACHER_FIRST). A skipped image goes to the end; so does one whose answer was taken out of labels.tsv or
    unreadable.txt by hand (seen at the next request). Images deleted since the start are no longer offered, and
    answers for them are refused."""

    def __init__(self, folder, predictor=None, say=print):
        self.store = LabelStore(folder)
        self.folder = self.store.folder
        self.predictor = predictor
        names, left_out, links = folder_images(self.folder)
        if links:
            say(f"labelling: left out {len(links)} symbolic link(s) named like images: only the folder's own files "
                f"are listed and served (a link may point anywhere); copy the images in instead: "
                f"{', '.join(repr(n) for n in links[:data.SHOW_FILES])}"
                f"{', ...' if len(links) > data.SHOW_FILES else ''}")
        if left_out:
            say(f"labelling: left out {len(left_out)} image(s) whose names {data.LABELS_FILE} cannot hold (a TAB, "
                f"newline or other control character, leading or trailing spaces, or not UTF-8): rename them: "
                f"{', '.join(repr(n) for n in left_out[:data.SHOW_FILES])}{', ...' if len(left_out) > data.SHOW_FILES else ''}")
        self.images = names
        self.image_set = frozenset(names)
        todo = [n for n in names if not self.store.answered(n)]
        self.suggestions, self.seconds = {}, None
        self.later, self.skipped, self.reading, self.unread = set(), {}, None, 0
        self.stopping = threading.Event()
        # before any model: the teacher's readings (TEACHER "auto": ddddocr's two models where it is installed)
        self.teacher = teacher = auto_teacher(config.TEACHER) if predictor is None else ""
        if (predictor is not None or teacher) and todo:
            start = time.perf_counter()
            first, kept = todo, {}
            if predictor is not None:
                self.suggestions = score(predictor, self.folder, todo)
            else:
                reader = teach.PageReader(teacher, self.folder, threads=0, cache_dir=config.CACHE_DIR)
                kept = reader.kept(todo)
                unread = [n for n in todo if n not in kept]
                if len(unread) > TEACHER_FIRST:  # a large folder: the page opens after a part of it, drawn across it
                    drawn = {unread[i] for i in data.sample_indices(len(unread), TEACHER_FIRST, 0)}
                    first = [n for n in todo if n in kept or n in drawn]
                    self.later = {n for n in unread if n not in drawn}
                say(self._announce(len(todo) - len(kept), len(kept), len(self.later)))
                if unread:
                    reader.choose(todo)  # on the sample a run on the folder reads too
                self.suggestions = reader.read(first, kept)
            self.seconds = time.perf_counter() - start
            read = len(first) - len(kept)
            by = f"read by {teacher}, " if teacher else ""
            # no rate for the teacher: its first start also reads a sample at each border (core.teacher.MARGINS)
            rate = "" if teacher else f" ({read / max(self.seconds, 1e-9):.0f} per second)"
            say(f"labelling: {by}scored {read} images in {self.seconds:.1f} s{rate}; least confident first"
                if read else f"labelling: {len(todo)} images, least confident first")
            if self.later:
                say(f"labelling: {teacher} reads the other {len(self.later)} images while the page is open (offered "
                    f"after these, least confident first as they are read)")
                self.reading = threading.Thread(target=self._read_later, args=(reader, say), daemon=True,
                                                name="teacher")
                self.unread = len(self.later)
            todo = self._offer_order(todo)
        self.order = dict.fromkeys(todo)  # insertion order is the offer order: a skip moves a name to the end
        self.rank = todo + [n for n in names if n not in self.order]  # the order an unanswered image comes back in
        self.version = self.store.version
        self.lock = threading.Lock()
        if self.reading:
            self.reading.start()

    def _announce(self, to_read, before, later):
        """The line said before the teacher reads: what it reads now, what later, what was kept."""
        teacher, cache = self.teacher, config.CACHE_DIR
        kept = f"its readings of {before} {'more ' * bool(to_read)}from an earlier start are kept in {cache}"
        how = "(TEACHER; --teacher= opens the page at once, in file-name order)"
        if not to_read:
            return f"labelling: {teacher} types its readings in before any model is trained {how}: {kept}"
        now = (f"{to_read - later} of the {to_read} images, drawn across the folder, before the page opens, and the "
               f"others while it is open," if later else f"the {to_read} images")
        return (f"labelling: {teacher} reads {now} to type its readings in before any model is trained {how}"
                + (f"; {kept}" if before else ""))

    def _offer_order(self, names):
        """`names` in the order they are offered: those read (or scored) least confident first (those it could
        not load first of all), then those the teacher reads while the page is open, least confident first as they
        are read, the others in file-name order. Images of the same confidence come in a fixed shuffle, not by
        name: ddddocr's pair gives every image its two models read differently confidence 0 (most of a folder
        they read badly), and names group a folder by source or day."""
        low = {n: s["confidence"] for n, s in self.suggestions.items()}
        return sorted(names, key=lambda n: (n in self.later, n not in low, low.get(n) is not None, low.get(n) or 0.0,
                                            _shuffled(n) if n in low else "", n))

    def _read_later(self, reader, say):
        """The teacher reads the images left for later (self.later) while the page is open, a part at a time; each
        part joins the offers, the images not offered yet reordered (skipped ones stay last)."""
        rest = sorted(self.later)
        started, done = time.monotonic(), 0
        try:
            for c in range(0, len(rest), TEACHER_CHUNK):
                if self.stopping.is_set():
                    return
                part = reader.read(rest[c:c + TEACHER_CHUNK], show=False)
                done += len(part)
                with self.lock:
                    self.suggestions.update(part)
                    self.unread = len(rest) - done
                    waiting = [n for n in self.order if n not in self.skipped]
                    settled = [n for n in waiting if n not in self.later]
                    self.order = dict.fromkeys(settled + self._offer_order([n for n in waiting if n in self.later])
                                               + [n for n in self.order if n in self.skipped])
                if done < len(rest):  # "teacher   done/total (rate, time left)"
                    so_far = teach._so_far(done, len(rest), time.monotonic() - started).split(None, 1)[1]
                    say(f"labelling: {self.teacher} has read {so_far} of the images left for later")
        except Exception as e:  # the page goes on without the readings it did not get
            say(f"labelling: {self.teacher} stopped reading after {done} of the other {len(rest)} images "
                f"({type(e).__name__}: {e}); the images it did not read are offered without its reading")
            self.unread = 0
            return
        say(f"labelling: {self.teacher} read the other {len(rest)} images in {time.monotonic() - started:.0f} s; "
            f"each is offered with its reading")

    def wait(self, stop=False):
        """Returns once the teacher has read every image it reads while the page is open (stop: once it has read
        the part it is reading, the rest left unread)."""
        if stop:
            self.stopping.set()
        if self.reading:
            self.reading.join()

    def item(self, name):
        item = {"file": name, **self.suggestions.get(name, {"text": "", "confidence": None, "chars": []})}
        if name in self.later and name not in self.suggestions:
            item["pending"] = True  # the teacher has not read it yet (it reads it while the page is open)
        if item["confidence"] is not None:
            item["confidence"] = float(f"{item['confidence']:.4g}")  # 4 significant digits: small ones differ too
        return item

    def known(self, name):
        """404 unless `name` (checked by check_name) is an image of the folder this page offers."""
        if name not in self.image_set:
            raise ApiError(404, f"no image {name!r} in {self.folder} (names are those /api/label/next gives)")
        return name

    def present(self, name):
        """404 unless the image `name` is still a regular file of the folder (not deleted, not a link now)."""
        if not inside(self.folder, name):
            raise ApiError(404, f"{name} is no longer in {self.folder} (deleted, moved or replaced by a link since "
                                f"the server started); nothing was written")
        return name

    def next(self, count):
        """The first `count` unanswered images still in the folder, with their suggestions."""
        self.store.refresh()
        with self.lock:
            if self.version != self.store.version:  # the answer files were re-read: one taken out comes back
                self.version = self.store.version
                for name in self.rank:
                    if name not in self.order and not self.store.answered(name):
                        self.order[name] = None
            found, gone = [], []
            for name in self.order:
                if self.store.answered(name):
                    gone.append(name)  # answered by another process
                    continue
                if not inside(self.folder, name):
                    continue  # deleted since the start: not offered (it is again if it comes back)
                found.append(name)
                if len(found) == count:
                    break
            for name in gone:
                del self.order[name]
        return [self.item(n) for n in found]

    def answer(self, name, label=None):
        answer = self.store.answer(self.present(self.known(name)), label)
        with self.lock:
            self.order.pop(name, None)
            self.skipped.pop(name, None)
        return answer

    def skip(self, name):
        self.present(self.known(name))
        existing = self.store.existing(name)
        if existing:
            where = data.LABELS_FILE if "label" in existing else data.UNREADABLE_FILE
            raise AlreadyAnswered(name, existing, where)
        with self.lock:
            self.order.pop(name, None)
            self.order[name] = None
            self.skipped.pop(name, None)
            self.skipped[name] = None
            return len(self.order)

    def stats(self):
        store = self.store
        labelled = len(self.image_set & store.labels.keys())
        unreadable = len(self.image_set & store.unreadable.keys())
        return {"folder": self.folder, "total": len(self.images), "labelled": labelled, "unreadable": unreadable,
                "answered": labelled + unreadable, "remaining": len(self.images) - labelled - unreadable,
                "recent": list(store.recent), "teacher_reading": self.unread}


# --- the routes --------------------------------------------------------------------------------------------

def mount(app, folder, predictor, web_dir, say=print):
    """Add the labelling page and its API for `folder` to `app`; images are scored now when `predictor` is given.
    Returns the LabelQueue (its `token`: what the page sends with each POST)."""
    queue = LabelQueue(folder, predictor, say)
    queue.token = token = secrets.token_urlsafe(32)  # new at each start: a page of an earlier start is reloaded
    if predictor is not None:
        model = {"name": predictor.ckpt["model_name"], "checkpoint": os.path.basename(predictor.path)}
    else:  # the teacher's readings, when it read the folder (before any model is trained on it)
        model = {"name": queue.teacher, "checkpoint": None, "teacher": True} if queue.suggestions else None

    async def read_json(request):
        """The JSON object of a POST from the page: Content-Type application/json (a form or text/plain post from
        another site is a "simple" cross-site request a browser sends without asking; JSON it sends only after
        a CORS preflight this server never answers) and the page's token in X-Label-Token."""
        kind = request.headers.get("content-type", "").partition(";")[0].strip().lower()
        if kind != "application/json":
            raise ApiError(415, f"the body must be sent as Content-Type: application/json, not {kind or '(none)'!r}; "
                                f"{USAGE}")
        sent = request.headers.get(TOKEN_HEADER)
        if not sent:
            raise ApiError(403, f"no {TOKEN_HEADER} header: answers are taken only from the labelling page this server "
                                f"serves (it sends the token of its <meta name=\"label-token\">)")
        if not hmac.compare_digest(sent.encode("utf-8", "replace"), token.encode()):
            raise ApiError(403, f"wrong {TOKEN_HEADER}: the page is from an earlier start of the server or another "
                                f"server; reload /label")
        body = await request.body()
        try:
            payload = json.loads(body) if body else None
        except (ValueError, RecursionError):
            raise ApiError(400, f"the body is not valid JSON; {USAGE}") from None
        if not isinstance(payload, dict):
            raise ApiError(400, f"expected a JSON object; {USAGE}")
        return payload

    def conflict(e):
        return JSONResponse({"error": e.message, "existing": e.existing}, status_code=409)

    @app.get("/label", include_in_schema=False)
    async def label_page():
        with open(os.path.join(web_dir, "label.html"), encoding="utf-8") as f:
            page = f.read()
        return HTMLResponse(TOKEN_META.sub(lambda m: m.group(1) + token + m.group(2), page, count=1))

    @app.get("/api/label/next", summary="The next unanswered images, least confident first, with the model's reading")
    def label_next(count: int = 3):
        if not 1 <= count <= MAX_NEXT:
            raise ApiError(400, f"count={count}: ask for 1 to {MAX_NEXT} images")
        items = queue.next(count)
        return {"items": items, "remaining": queue.stats()["remaining"]}

    @app.get("/api/label/image", summary="An image of the labelling folder", response_class=StreamingResponse)
    async def label_image(file: str):
        name = queue.known(check_name(file))
        f, st = await run_in_threadpool(open_image, queue.folder, name)
        kind = mimetypes.guess_type(name)[0] or "application/octet-stream"
        return StreamingResponse(_chunks(f, st.st_size), media_type=kind, headers={"Content-Length": str(st.st_size)})

    @app.post("/api/label/answer", summary="Answer an image: its label, or unreadable; written to labels.tsv or "
                                           "unreadable.txt at once", responses={409: {"description": "answered"}})
    async def label_answer(request: Request):
        payload = await read_json(request)
        name = queue.known(check_name(payload.get("file")))
        unreadable = payload.get("unreadable", False)
        if not isinstance(unreadable, bool):
            raise ApiError(400, f"'unreadable' must be true or false; {USAGE}")
        label = payload.get("label")
        if unreadable and label is not None:
            raise ApiError(400, f"give a label or unreadable: true, not both; {USAGE}")
        if not unreadable:
            if label is None:
                raise ApiError(400, f"no 'label' in the body; {USAGE}")
            check_label(label)
        try:
            answer = await run_in_threadpool(queue.answer, name, None if unreadable else label)
        except AlreadyAnswered as e:
            return conflict(e)
        return {**answer, "stats": queue.stats()}

    @app.post("/api/label/skip", summary="Skip an image: it goes to the end of the queue; nothing is written")
    async def label_skip(request: Request):
        payload = await read_json(request)
        name = check_name(payload.get("file"))
        try:
            position = queue.skip(name)
        except AlreadyAnswered as e:
            return conflict(e)
        return {"file": name, "skipped": True, "position": position}

    @app.get("/api/label/stats", summary="Images in the folder, answered, remaining; the last answers; the model")
    def label_stats():
        return {**queue.stats(), "model": model}

    return queue
