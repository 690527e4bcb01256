"""The labelling page's server side: a folder of unlabelled captchas, answered one at a time by a person.

    python app.py --label_dir=FOLDER [MODEL.pt|MODEL.onnx]     # then open http://127.0.0.1:8000/label

LabelStore reads and writes the answers: FOLDER/labels.tsv (`file<TAB>label`, read by data.read_tsv's rules)
and FOLDER/unreadable.txt (data.UNREADABLE_FILE, one file name per line, read by data.unreadable_marks). An
answer is one os.write of the whole line on an O_APPEND file descriptor, then fsync, under a threading lock and
an flock on the folder, and only after the files are re-read if another process changed them: two servers or
tabs never interleave lines or answer one image twice. LabelQueue offers the unanswered images, least confident
first when a model scored them at startup. mount() adds the page and its API to the app:

    GET  /label                      the page (web/label.html, label.js, label.css)
    GET  /api/label/next?count=N     the next N unanswered images: file, text (the model's reading),
                                     confidence (of the whole text), chars [{char, confidence}]
    GET  /api/label/image?file=NAME  an image's bytes
    POST /api/label/answer           {"file": NAME, "label": TEXT} or {"file": NAME, "unreadable": true}
    POST /api/label/skip             {"file": NAME}: to the end of the queue, nothing written
    GET  /api/label/stats            total, labelled, unreadable, remaining, the last answers, the model
"""
import collections
import contextlib
import errno
import fcntl
import json
import os
import stat
import threading
import time
import unicodedata

import numpy as np
import torch
from fastapi import Request
from fastapi.responses import FileResponse, JSONResponse
from starlette.concurrency import run_in_threadpool

import config
import data
import torch_util
from serve.plumbing import ApiError

HEADER = "file\tlabel\n"  # the first line of a labels.tsv this page creates (data.read_tsv skips it)
MAX_LABEL = 100           # characters in a label; more is a mistake (a paste), not a captcha
MAX_NEXT = 50             # images one /api/label/next answers at most
RECENT = 10               # answers listed by /api/label/stats
SCORE_BATCH = 64          # images per forward pass when scoring the folder at startup
USAGE = 'send {"file": NAME, "label": TEXT}, or {"file": NAME, "unreadable": true}'


# --- the model -----------------------------------------------------------------------------------------------

def choose_model(named):
    """(path or None, why): the model that makes the suggestions. The one named on the command line; else the
    newest WEIGHTS_DIR/*_best.pt (what was trained last); else none. The shipped default.pt reads generated
    captchas, not a site's own, so it is used only when named."""
    if named:
        return named, "named on the command line"
    newest = torch_util.latest_checkpoint()
    if newest:
        return newest, f"the newest trained model in {config.WEIGHTS_DIR}/; name another as the first argument"
    return None, (f"no {config.WEIGHTS_DIR}/*_best.pt; the shipped {torch_util.DEFAULT_CHECKPOINT} reads generated "
                  f"captchas, so it is used only when named (python app.py --label_dir=FOLDER "
                  f"{os.path.join(config.WEIGHTS_DIR, torch_util.DEFAULT_CHECKPOINT)}); images in file-name order, "
                  f"no suggestions")


def score(predictor, folder, names, batch=SCORE_BATCH):
    """{name: suggestion} for the images `names` of `folder`, read by `predictor` (a torch_util.Predictor) in
    batches: text, confidence (of the whole text, unrounded: it orders the queue), chars [{char, confidence}];
    an image the model cannot load gets confidence None and its error."""
    found = {}
    before = torch.get_num_threads()
    torch.set_num_threads(max(before, torch_util.cpu_count()))  # before the server starts: every core may help
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


def folder_images(folder):
    """(names, left_out): the image files of `folder` (data.IMAGE_EXTENSIONS, not hidden, regular files), sorted;
    and those whose names labels.tsv cannot hold (writable_name)."""
    names = sorted(n for n in os.listdir(folder) if os.path.splitext(n)[1].lower() in data.IMAGE_EXTENSIONS
                   and not n.startswith(".") and os.path.isfile(os.path.join(folder, n)))
    return [n for n in names if writable_name(n)], [n for n in names if not writable_name(n)]


# --- the answers on disk -----------------------------------------------------------------------------------

def _signature(path):
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


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
            if os.path.lexists(path) and not os.path.isfile(path):
                raise data.DataError(f"{path} is not a regular file ({data.file_kind(path)})")
            if not os.access(path if os.path.exists(path) else self.folder, os.W_OK):
                raise data.DataError(f"{path}: no permission to write it (the answers go there)")
        self.labels, self.unreadable = {}, {}  # name -> label; name -> None (a dict keeps the order)
        self.seen = {}  # path -> the signature (device, inode, size, mtime) of the version read
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
            items = data.read_tsv(self.folder, self.tsv) if signature else []
            self.labels = {os.path.relpath(path, self.folder): label for path, label in items}
            self.seen[self.tsv] = signature
        signature = _signature(self.unreadable_txt)
        if signature != self.seen.get(self.unreadable_txt, False):
            marks = data.unreadable_marks(self.folder) if signature else set()
            self.unreadable = dict.fromkeys(sorted(os.path.relpath(path, self.folder) for path in marks))
            self.seen[self.unreadable_txt] = signature

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
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise OSError(errno.EINVAL, f"not a regular file ({data.file_kind(path)})", path)
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

class LabelQueue:
    """The images of a folder still to answer, in the order they are offered: ascending confidence when a model
    scored them (images it could not load first), else file-name order. A skipped image goes to the end."""

    def __init__(self, folder, predictor=None, say=print):
        self.store = LabelStore(folder)
        self.folder = self.store.folder
        self.predictor = predictor
        names, left_out = folder_images(self.folder)
        if left_out:
            say(f"labelling: left out {len(left_out)} image(s) whose names {data.LABELS_FILE} cannot hold (a TAB, "
                f"newline or other control character, leading or trailing spaces, or not UTF-8): rename them: "
                f"{', '.join(repr(n) for n in left_out[:data.SHOW_FILES])}{', ...' if len(left_out) > data.SHOW_FILES else ''}")
        self.images = names
        self.image_set = frozenset(names)
        todo = [n for n in names if not self.store.answered(n)]
        self.suggestions, self.seconds = {}, None
        if predictor is not None and todo:
            start = time.perf_counter()
            self.suggestions = score(predictor, self.folder, todo)
            self.seconds = time.perf_counter() - start
            say(f"labelling: scored {len(todo)} images in {self.seconds:.1f} s "
                f"({len(todo) / max(self.seconds, 1e-9):.0f} per second); least confident first")
            low = {n: s["confidence"] for n, s in self.suggestions.items()}
            todo.sort(key=lambda n: (low[n] is not None, low[n] or 0.0, n))
        self.order = dict.fromkeys(todo)  # insertion order is the offer order: a skip moves a name to the end
        self.lock = threading.Lock()

    def item(self, name):
        item = {"file": name, **self.suggestions.get(name, {"text": "", "confidence": None, "chars": []})}
        if item["confidence"] is not None:
            item["confidence"] = float(f"{item['confidence']:.4g}")  # 4 significant digits: small ones differ too
        return item

    def known(self, name):
        """404 unless `name` (checked by check_name) is an image of the folder this page offers."""
        if name not in self.image_set:
            raise ApiError(404, f"no image {name!r} in {self.folder} (names are those /api/label/next gives)")
        return name

    def next(self, count):
        """The first `count` unanswered images, with their suggestions."""
        self.store.refresh()
        with self.lock:
            found, gone = [], []
            for name in self.order:
                if self.store.answered(name):
                    gone.append(name)  # answered by another process
                    continue
                found.append(name)
                if len(found) == count:
                    break
            for name in gone:
                del self.order[name]
        return [self.item(n) for n in found]

    def answer(self, name, label=None):
        answer = self.store.answer(self.known(name), label)
        with self.lock:
            self.order.pop(name, None)
        return answer

    def skip(self, name):
        self.known(name)
        existing = self.store.existing(name)
        if existing:
            where = data.LABELS_FILE if "label" in existing else data.UNREADABLE_FILE
            raise AlreadyAnswered(name, existing, where)
        with self.lock:
            self.order.pop(name, None)
            self.order[name] = None
            return len(self.order)

    def stats(self):
        store = self.store
        labelled = len(self.image_set & store.labels.keys())
        unreadable = len(self.image_set & store.unreadable.keys())
        return {"folder": self.folder, "total": len(self.images), "labelled": labelled, "unreadable": unreadable,
                "answered": labelled + unreadable, "remaining": len(self.images) - labelled - unreadable,
                "recent": list(store.recent)}


# --- the routes --------------------------------------------------------------------------------------------

def mount(app, folder, predictor, web_dir, say=print):
    """Add the labelling page and its API for `folder` to `app`; images are scored now when `predictor` is given.
    Returns the LabelQueue."""
    queue = LabelQueue(folder, predictor, say)
    model = None if predictor is None else {"name": predictor.ckpt["model_name"],
                                            "checkpoint": os.path.basename(predictor.path)}

    async def read_json(request):
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
        return FileResponse(os.path.join(web_dir, "label.html"))

    @app.get("/api/label/next", summary="The next unanswered images, least confident first, with the model's reading")
    def label_next(count: int = 3):
        if not 1 <= count <= MAX_NEXT:
            raise ApiError(400, f"count={count}: ask for 1 to {MAX_NEXT} images")
        items = queue.next(count)
        return {"items": items, "remaining": queue.stats()["remaining"]}

    @app.get("/api/label/image", summary="An image of the labelling folder", response_class=FileResponse)
    async def label_image(file: str):
        name = queue.known(check_name(file))
        path = os.path.join(queue.folder, name)
        if not os.path.isfile(path):
            raise ApiError(404, f"{name} is no longer in {queue.folder}")
        return FileResponse(path, headers={
            "Cache-Control": "private, max-age=3600", "X-Content-Type-Options": "nosniff"})

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
