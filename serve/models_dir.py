"""The models a server reads with, by name: one (app.py MODEL) or every checkpoint of a folder (app.py
--models_dir=DIR), kept in step with the folder while serving.

A request leases the model it names (Models.lease) and keeps it to its end, whatever happens to the folder
meanwhile. The folder's watcher (a thread) looks at its files every second by (size, mtime_ns, inode): a new
or replaced file is loaded in the background (a Predictor and one warm-up read) and only then takes the name
over, in one step; a file that fails to load is refused with a log line naming it and why, and the model
serving under its name (if any) goes on; it is tried again when the file changes. A removed file's model is
unloaded once the requests that hold it have finished.
"""
import logging
import os
import stat
import threading
import time
from datetime import datetime, timezone

import torch

from core.inference import Predictor, fold_batchnorm
from serve.batcher import TRACING, Model
from serve.plumbing import ApiError

log = logging.getLogger("serve.models")
EXTENSIONS = (".pt", ".onnx")  # checkpoints written by train.py, models written by export.py
POLL = 1.0  # seconds between two looks at the folder


def load_predictor(path, device="cpu", threads=1, answer=None, copies=1):
    """A Predictor for `path`, loaded while other models serve: BatchNorm is folded (torch.fx) between two
    forward passes of theirs (batcher.TRACING), never during one."""
    if threads:
        torch.set_num_threads(threads)  # on the loading thread: as many as the inference thread uses
    predictor = Predictor(path, device, threads, fuse=False, answer=answer, copies=copies)
    if predictor.model is not None:
        with TRACING:
            folded = fold_batchnorm(predictor.model, predictor.channels, predictor.height, predictor.width,
                                    predictor.device)
        predictor.model, predictor.fused = folded, folded is not predictor.model
    return predictor


class Served:
    """A model serving under a name: its file, what (size, mtime_ns, inode) the file had when loaded, and the
    requests that hold it."""

    def __init__(self, name, path, signature, model, version=1):
        self.name, self.path, self.signature, self.model, self.version = name, path, signature, model, version
        self.in_flight, self.retired = 0, False
        p = model.predictor  # described now: a listing may meet it after it is unloaded
        self.description = {"name": name, "file": os.path.basename(path), "model": p.ckpt["model_name"],
                            "head": p.ckpt["head"], "charset": p.ckpt["charset"], "answer": p.answer,
                            "runtime": p.runtime, "loaded": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                            "version": version}

    def describe(self):
        return dict(self.description)


class Lease:
    """`with models.lease(name) as served:` the model a request runs on, kept until the request ends."""

    def __init__(self, models, served):
        self.models, self.served = models, served

    def __enter__(self):
        return self.served

    def __exit__(self, *exc):
        self.models.release(self.served)


class Models:
    """The models served, by name (the file name without its extension). `default`: the one a request that names
    none gets (None: the only one, if only one is served). Swaps and removals replace the whole dict under a
    lock: a reader sees the old set or the new one, never half of each."""

    empty = "no model is loaded"

    def __init__(self, default=None):
        self.lock = threading.Lock()
        self.entries = {}  # name -> Served
        self.default = default

    @classmethod
    def single(cls, predictor):
        """The one model app.py was started with (None: none, a labelling-only server)."""
        models = cls()
        if predictor is not None:
            name = os.path.splitext(os.path.basename(str(predictor.path)))[0]
            models.entries = {name: Served(name, str(predictor.path), None, Model(predictor))}
        return models

    def names(self):
        return sorted(self.entries)

    def default_name(self):
        """The name a request without ?model= reads with: ApiError when there is none to give."""
        entries = self.entries
        if self.default is not None:
            if self.default not in entries:
                raise ApiError(503, f"the default model {self.default!r} is not loaded now; the models served are: "
                                    f"{', '.join(sorted(entries)) or 'none'} (name one with ?model=NAME)")
            return self.default
        if len(entries) == 1:
            return next(iter(entries))
        if not entries:
            raise ApiError(503, self.empty)
        raise ApiError(400, f"{len(entries)} models are served ({', '.join(sorted(entries))}) and none is the "
                            f"default: name one with ?model=NAME (or start the server with --default_model=NAME)")

    def lease(self, name=None):
        """A Lease on the model `name` (None: the default); ApiError 404 naming the served ones if unknown."""
        name = self.default_name() if name is None else name
        with self.lock:
            served = self.entries.get(name)
            if served is None:
                known = ", ".join(sorted(self.entries)) or "none"
                raise ApiError(404, f"no model named {name!r}; the models served are: {known}")
            served.in_flight += 1
        return Lease(self, served)

    def release(self, served):
        with self.lock:
            served.in_flight -= 1
            last = served.retired and served.in_flight == 0
        if last:
            self._unload(served)

    def _unload(self, served):
        served.model = None  # the last reference the server holds: the weights are freed
        log.info("unloaded %s (%s, version %d)", served.name, os.path.basename(served.path), served.version)

    def put(self, served):
        """Serve `served` under its name; the model it replaces is unloaded after its in-flight requests."""
        with self.lock:
            old = self.entries.get(served.name)
            self.entries = {**self.entries, served.name: served}
        if old is not None:
            self._retire(old)

    def drop(self, name):
        with self.lock:
            entries = dict(self.entries)
            old = entries.pop(name, None)
            self.entries = entries
        if old is not None:
            self._retire(old)
        return old

    def _retire(self, served):
        with self.lock:
            served.retired = True
            idle = served.in_flight == 0
        if idle:
            self._unload(served)

    def listing(self):
        entries = self.entries
        default = self.default if self.default is not None else (next(iter(entries)) if len(entries) == 1 else None)
        return {"models": [entries[n].describe() for n in sorted(entries)], "default": default}

    def start(self):
        """Begin watching (nothing to watch here)."""

    def stop(self):
        """Stop watching."""


def signature(st):
    return st.st_size, st.st_mtime_ns, st.st_ino


class ModelsDir(Models):
    """Every *.pt and *.onnx file of `folder`, served by name and kept in step with the folder by a watcher
    thread (start(), stop()). `load(path)`: a core.inference.Predictor for a file (raises when it cannot);
    default load_predictor (on the CPU, one thread)."""

    def __init__(self, folder, load=load_predictor, default=None, poll=POLL):
        super().__init__(default)
        self.folder, self.load, self.poll = folder, load, poll
        self.empty = f"no model is loaded: {folder} holds no *.pt or *.onnx file that loads (they are tried as " \
                     f"they appear)"
        # path -> the signature it had when it failed to load: tried again once it changes. Replaced, never
        # changed in place: listing() reads it on the event loop while the watcher works
        self.refused = {}
        self.versions = {}  # name -> how many times a file has been loaded under it
        self.swaps = 0  # files loaded after the first look at the folder (added or replaced while serving)
        self.stopping = threading.Event()
        self.thread = None
        self.unreadable = False  # the folder could not be listed at the last look (logged once)

    def files(self):
        """{name: (path, signature)} of the model files in the folder now. Hidden files (temporary copies) and
        anything but regular files (folders, FIFOs) are passed over; of x.pt and x.onnx, x.pt is served."""
        found = {}
        try:
            names = sorted(os.listdir(self.folder))
        except OSError as e:
            if not self.unreadable:
                log.warning("cannot list %s (%s); serving what is loaded", self.folder, e.strerror or e)
            self.unreadable = True
            return None
        self.unreadable = False
        for file in names:
            name, ext = os.path.splitext(file)
            if file.startswith(".") or ext not in EXTENSIONS:
                continue
            path = os.path.join(self.folder, file)
            try:
                st = os.stat(path)
            except OSError:
                continue  # removed since listed
            if not stat.S_ISREG(st.st_mode):
                continue
            if name in found and ext == ".onnx":
                continue  # x.pt sorts after x.onnx and takes the name
            found[name] = (path, signature(st))
        return found

    def sync(self):
        """One look at the folder: load what is new or changed, drop what is gone. Returns the names changed."""
        files = self.files()
        if files is None:
            return []
        changed = []
        for name, (path, sig) in files.items():
            served = self.entries.get(name)
            if served is not None and (served.path, served.signature) == (path, sig):
                continue
            if self.refused.get(path) == sig:
                continue  # refused as it is: waits for the file to change
            if self._load(name, path, sig, served):
                changed.append(name)
        for name in [n for n in self.entries if n not in files]:
            old = self.entries[name]
            log.info("removed %s: %s is gone; its model is unloaded after its %d request(s) in flight", name,
                     os.path.basename(old.path), old.in_flight)
            self.drop(name)
            changed.append(name)
        self.refused = {p: s for p, s in self.refused.items() if any(p == f[0] for f in files.values())}
        return changed

    def _load(self, name, path, sig, old):
        """Load `path` and serve it as `name` once loaded and warmed up; False (logged) when it cannot be."""
        file = os.path.basename(path)
        start = time.perf_counter()
        try:
            model = Model(self.load(path))
            model.warm_up()
        except Exception as e:  # whatever a broken or half-written file makes the loaders raise
            why = (str(e).splitlines() or [""])[0][:300] or type(e).__name__
            keeps = f"{name} keeps serving {os.path.basename(old.path)} (version {old.version})" if old else \
                    f"{name} is not served"
            log.error("refused %s: %s; %s; it is tried again when the file changes", file, why, keeps)
            self.refused = {**self.refused, path: sig}
            return False
        try:
            now = signature(os.stat(path))
        except OSError:
            now = None
        if now != sig:  # written again (or removed) while it loaded: the next look loads what is there then
            log.info("%s changed while it loaded; loading it again", file)
            return False
        version = self.versions.get(name, 0) + 1
        self.versions[name] = version
        self.refused = {p: s for p, s in self.refused.items() if p != path}
        self.put(Served(name, path, sig, model, version))
        if self.thread is not None:
            self.swaps += 1
        p = model.predictor
        log.info("%s %s: %s (%s on %s, answer %s) in %.2f s, version %d", "replaced" if old else "loaded", name, file,
                 p.ckpt["model_name"], p.runtime, p.answer, time.perf_counter() - start, version)
        return True

    def start(self):
        if self.thread is None:
            self.stopping.clear()
            self.thread = threading.Thread(target=self._watch, name="models-watcher", daemon=True)
            self.thread.start()

    def stop(self):
        self.stopping.set()
        if self.thread is not None:
            self.thread.join(timeout=30)
            self.thread = None

    def _watch(self):
        while not self.stopping.wait(self.poll):
            try:
                self.sync()
            except Exception:  # never let the watcher die: the next look tries again
                log.exception("watching %s failed", self.folder)

    def listing(self):
        refused = sorted(os.path.basename(p) for p in self.refused)
        return {**super().listing(), "refused": refused, "swaps": self.swaps}
