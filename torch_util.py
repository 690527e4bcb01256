"""Small torch helpers the scripts share (device, AMP, checkpoints, inference), and the results plot:

    python torch_util.py [results.txt] [--out=results.png]
"""
import contextlib
import csv
import errno
import functools
import json
import logging
import os
import pickle
import random
import re
import sys
import time

import numpy as np
import torch

import config
import data
import models

log = logging.getLogger("torch_util")
DEFAULT_CHECKPOINT = "default.pt"  # the shipped model, in WEIGHTS_DIR
PRETRAINED_CHECKPOINT = "pretrained.pt"  # the shipped starting point of own-data training (INIT auto)
# results.txt: one row per epoch per run; char_acc / seq_acc are the validation accuracies (they choose the best
# checkpoint), test_* those on TEST_DIR (nan without one)
RESULT_COLUMNS = ["run", "epoch", "train_loss", "val_loss", "char_acc", "seq_acc", "test_char_acc", "test_seq_acc",
                  "lr", "seconds", "images_per_s"]


# --- device and precision --------------------------------------------------------------------------------

def pick_device(name="auto", index=None):
    """DEVICE as a torch.device; `index` (torchrun's LOCAL_RANK) picks this process's GPU for "auto" / "cuda"."""
    if name == "cuda" or name == "auto" and torch.cuda.is_available():
        return torch.device("cuda", index) if index is not None else torch.device("cuda")
    if name != "auto":
        return torch.device(name)
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def autocast(device):
    """bf16 autocast on CUDA; a no-op elsewhere (CPU bf16 is slower than fp32 on most CPUs)."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def sync(device):
    """Wait for the device's queued work (CUDA, MPS), so that a wall-clock time covers it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


@torch.inference_mode()
def timed_runs(model, x, device, min_runs, max_runs, max_seconds):
    """Seconds of each forward pass of x (under autocast), after two warm-up passes: max_runs of them, or as many
    as fit in max_seconds, min_runs at least."""
    with autocast(device):
        for _ in range(2):
            model(x)
        sync(device)
        times = []
        while len(times) < max_runs and (len(times) < min_runs or sum(times) < max_seconds):
            start = time.perf_counter()
            model(x)
            sync(device)
            times.append(time.perf_counter() - start)
    return times


def seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def cpu_count():
    """Cores this process may run on (its affinity mask: a container's share, not the host's total)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def set_threads(threads=0, processes=1):
    """Intra-op threads for CPU work: `threads`, or (0) this process's share of the cores when `processes` run
    on the machine (torchrun's LOCAL_WORLD_SIZE). One inter-op thread: nothing here runs ops concurrently."""
    torch.set_num_threads(threads or max(1, cpu_count() // processes))
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # settable once, before any parallel work: a second call in the same process
        pass


# --- metrics ---------------------------------------------------------------------------------------------

def edit_distance(a, b):
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, cb in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (ca != cb))
    return row[-1]


def accuracy(truths, preds):
    """(character accuracy = 1 - normalised edit distance, sequence accuracy)."""
    errors = sum(edit_distance(t, p) for t, p in zip(truths, preds))
    chars = max(1, sum(len(t) for t in truths))
    seq = sum(t == p for t, p in zip(truths, preds)) / max(1, len(truths))
    return max(0.0, 1 - errors / chars), seq


# --- files: atomic writes, temp files of killed runs, results rows ----------------------------------------

STALE_SECONDS = 300  # a temp file this old whose writer is gone is a killed run's leftover
# our temp names: .<target name>.<pid>-<8 hex>.tmp; also <file>.{pt,png,npz}.<pid>.tmp(.npz) of earlier versions
_TEMP = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)-[0-9a-f]{8}\.tmp$"
                   r"|^(?P<old>.+\.(pt|png|npz))\.(?P<oldpid>\d+)\.tmp(\.npz)?$")
_writing = set()  # temp paths this process is writing now (a killed earlier process may have had our pid)


def temp_path(path):
    """A temp name beside `path`, unique to this process and call: .<name>.<pid>-<random>.tmp (hidden, and no
    image or checkpoint extension, so no folder scan picks it up)."""
    folder, name = os.path.split(path)
    return os.path.join(folder, f".{name}.{os.getpid()}-{os.urandom(4).hex()}.tmp")


def _pid_alive(pid):
    if pid == os.getpid():
        return False  # ours, but not in _writing: left by an earlier process that had the same pid
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OverflowError, OSError):  # PermissionError: a live process of another account: keep its file
        return True
    return True


def remove_stale_temps(folder, max_age=STALE_SECONDS):
    """Remove the temp files of killed writers from `folder`: names of our temp pattern, older than `max_age`
    seconds, whose process is gone. Files of live writers (another run on the same folder) are left alone.
    Returns the names removed; never raises."""
    removed = []
    try:
        names = os.listdir(folder or ".")
    except OSError:
        return removed
    now = time.time()
    for name in names:
        m = _TEMP.match(name)
        if not m:
            continue
        path = os.path.join(folder, name)
        pid = int(m["pid"] or m["oldpid"])
        try:
            old = now - os.lstat(path).st_mtime > max_age
            if old and path not in _writing and not _pid_alive(pid):
                os.remove(path)
                removed.append(name)
        except OSError:  # gone already, or not ours to remove
            pass
    return removed


def atomic_write(path, content, mode="wb", fsync=True, clean=True):
    """Write `path` all at once or not at all: `content` (bytes / str, or a callable given the open file, e.g.
    `lambda f: torch.save(obj, f)`) goes to a temp file beside it (temp_path: unique per process and call, so
    concurrent writers never collide), is flushed (and fsynced), then renamed over `path` (os.replace). On any
    exception (disk full, Ctrl-C) the temp file is removed and the exception raised; `path` keeps its old content.
    The folder is created if missing. `clean`: first remove killed runs' temp files from it (remove_stale_temps)."""
    folder = os.path.dirname(path)
    if folder:
        os.makedirs(folder, exist_ok=True)
    if clean:
        remove_stale_temps(folder)
    tmp = temp_path(path)
    _writing.add(tmp)
    try:
        with open(tmp, mode.replace("w", "x")) as f:  # x: never follow a planted file or link
            if callable(content):
                content(f)
            else:
                f.write(content)
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise
    finally:
        _writing.discard(tmp)
    if fsync:  # the rename itself survives a power cut once the folder is synced
        with contextlib.suppress(OSError, AttributeError):
            fd = os.open(folder or ".", os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    return path


def _is_header(fields, first):
    """Whether a table line's fields are a header: names only, the first one `first` (rows hold numbers)."""
    return len(fields) > 1 and fields[0] == first and all(re.fullmatch(r"[A-Za-z_]\w*", f) for f in fields)


def append_row(path, columns, row):
    """Append `row` (a dict with every name in `columns`) to the tab-separated table at `path` (results.txt).

    The header (`columns`) is written when the file is new or empty, and again (a new section, which
    read_results follows) when the file's last header names other columns, as after an upgrade. A last line
    without its newline (a killed writer) is ended first, so rows are never glued together. The row goes out in
    one write to a file opened for appending, and is fsynced."""
    header = "\t".join(columns)
    line = "\t".join(str(row[c]) for c in columns) + "\n"
    if os.path.exists(path) and not os.path.isfile(path):  # reading a FIFO would wait forever
        raise OSError(errno.EISDIR if os.path.isdir(path) else errno.EINVAL,
                      f"not a regular file ({data.file_kind(path)})", path)
    with open(path, "a+b") as f:
        f.seek(0)
        text = f.read().decode("utf-8", "replace")
        current = None
        for old in text.splitlines():
            fields = old.split("\t")
            if _is_header(fields, columns[0]):
                current = old
        prefix = "\n" if text and not text.endswith("\n") else ""
        if current != header:
            prefix += header + "\n"
        f.write((prefix + line).encode())
        f.flush()
        os.fsync(f.fileno())


# --- checkpoints -------------------------------------------------------------------------------------------

class CheckpointError(Exception):
    pass


def unwrap(model):
    """The plain model inside DDP / torch.compile wrappers, so state-dict keys carry no prefixes."""
    model = getattr(model, "module", model)
    return getattr(model, "_orig_mod", model)


def host_state(model):
    """The model's parameters and buffers as host tensors (what a checkpoint stores), whatever wraps it."""
    return {k: v.detach().cpu() for k, v in unwrap(model).state_dict().items()}


def save_checkpoint(path, model, build_args, codec, **extra):
    """Write a self-describing checkpoint (a plain dict loadable with weights_only=True) with atomic_write: a
    killed or failing save (disk full) leaves the previous file whole. CheckpointError when it cannot be written."""
    ckpt = {
        "model": host_state(model),
        "model_name": build_args["name"],
        "build_args": {k: v for k, v in build_args.items() if k != "name"},
        "head": models.head_of(build_args["name"]),
        "charset": codec.charset,
        "length": list(codec.length),
        "case_sensitive": codec.case_sensitive,
        "image_size": [build_args["height"], build_args["width"]],
        "channels": build_args["in_channels"],
        **extra,
    }
    try:
        atomic_write(path, lambda f: torch.save(ckpt, f))
    except OSError as e:
        raise CheckpointError(f"could not save {path} ({e.strerror or e}); {path} is as it was before this save, "
                              f"and no temporary file is left") from None


def load_checkpoint(path):
    """Load a checkpoint without executing code from it (weights_only); clear errors for bad files."""
    if not os.path.exists(path):
        raise CheckpointError(f"no checkpoint at {path} (train one with: python train.py)")
    if not os.path.isfile(path):  # a FIFO would block torch.load forever
        raise CheckpointError(f"{path} is not a regular file ({data.file_kind(path)}), not a checkpoint")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        blocked = next((line for line in lines if "GLOBAL" in line), None)  # torch names the refused object
        if blocked:
            raise CheckpointError(f"{path} was refused: it holds objects other than tensors and plain data, "
                                  f"which could run code when loaded ({blocked})") from None
        detail = next((line for line in lines if not line.startswith(("Weights only", "Please file", "Check the",
                                                                       "In PyTorch"))), type(e).__name__)
        raise CheckpointError(f"{path} is not a readable checkpoint ({detail[:200]})") from None
    except Exception as e:  # truncated zip, foreign file, ...: torch raises many kinds
        first = str(e).splitlines()[0][:300] if str(e) else ""
        raise CheckpointError(f"{path} is not a readable checkpoint ({type(e).__name__}: {first})") from None
    if not isinstance(ckpt, dict) or "model" not in ckpt or "model_name" not in ckpt:
        raise CheckpointError(f"{path} is not a checkpoint written by train.py")
    why = _checkpoint_problem(ckpt)
    if why:
        raise CheckpointError(f"{path} is not a usable checkpoint: {why}")
    return ckpt


def _checkpoint_problem(ckpt):
    """Why a loaded dict cannot describe a model (a field missing or of the wrong kind), or None."""
    def ints(v, n):
        return isinstance(v, (list, tuple)) and len(v) == n and all(isinstance(x, int) and x >= 0 for x in v)

    checks = [
        ("model", lambda v: isinstance(v, dict) and all(isinstance(t, torch.Tensor) for t in v.values()),
         "a dict of tensors"),
        ("model_name", lambda v: isinstance(v, str) and v in models.MODELS, "a model name in models.MODELS"),
        ("build_args", lambda v: isinstance(v, dict), "a dict"),
        ("charset", lambda v: isinstance(v, str) and v and len(set(v)) == len(v), "a string of distinct characters"),
        ("length", lambda v: ints(v, 2) and 0 < v[0] <= v[1], "[shortest, longest] label length"),
        ("image_size", lambda v: ints(v, 2) and min(v) > 0, "[height, width]"),
        ("channels", lambda v: v in (1, 3), "1 or 3"),
    ]
    for key, ok, want in checks:
        if key not in ckpt:
            return f"it has no {key!r}"
        if not ok(ckpt[key]):
            return f"{key} = {str(ckpt[key])[:80]!r} (expected {want})"
    return None


def model_from_checkpoint(ckpt, device="cpu"):
    """(model in eval mode, codec) rebuilt from the checkpoint alone; config.py is not consulted."""
    build_args = dict(ckpt["build_args"])
    model = models.build_model(ckpt["model_name"], **build_args)
    model.load_state_dict(ckpt["model"])
    codec = data.Codec(ckpt["charset"], tuple(ckpt["length"]), ckpt.get("case_sensitive", True))
    return model.to(device).eval(), codec


def load_matching(model, ckpt, codec):
    """Fine-tuning: copy the checkpoint's tensors into `model` where name and shape match. When the charset
    (or length) differs from the checkpoint's, the classifier (head.fc) starts afresh whatever its shape.
    Returns a report of what was kept and why each other tensor starts from random init."""
    same_labels = ckpt["charset"] == codec.charset and list(ckpt["length"]) == list(codec.length)
    source, state = ckpt["model"], model.state_dict()
    kept, fresh, adapted = {}, {}, []
    for name, tensor in state.items():
        if name.startswith("head.fc.") and not same_labels:
            fresh[name] = f"charset {ckpt['charset']!r} -> {codec.charset!r}" if ckpt["charset"] != codec.charset \
                else f"label length {tuple(ckpt['length'])} -> {codec.length}"
        elif name not in source:
            fresh[name] = "not in the checkpoint (another model or options)"
        elif (source[name].dim() == 4 and source[name].shape[1] == 1 and tensor.shape[1] > 1
              and source[name].shape[:1] + source[name].shape[2:] == tensor.shape[:1] + tensor.shape[2:]):
            # a grey model's first convolution for colour images: each channel gets a third of the grey weights, so
            # a grey-looking colour image gives the grey model's answer
            kept[name] = source[name].repeat(1, tensor.shape[1], 1, 1) / tensor.shape[1]
            adapted.append(name)
        elif source[name].shape != tensor.shape:
            fresh[name] = f"shape {tuple(source[name].shape)} -> {tuple(tensor.shape)} (image size, channels or classes)"
        else:
            kept[name] = source[name]
    model.load_state_dict(kept, strict=False)
    lines = [f"initialised {len(kept)} of {len(state)} tensors from the checkpoint; {len(fresh)} start afresh"]
    lines += [f"  {name}: grey -> {state[name].shape[1]} channels (the grey weights shared out)" for name in adapted]
    by_reason = {}
    for name, why in fresh.items():
        by_reason.setdefault(why, []).append(name)
    lines += [f"  {', '.join(names[:6])}{', ...' if len(names) > 6 else ''}: {why}" for why, names in by_reason.items()]
    return "\n".join(lines)


def latest_checkpoint():
    """The newest *_best.pt in WEIGHTS_DIR (the model trained last), or None."""
    found = [os.path.join(config.WEIGHTS_DIR, f) for f in os.listdir(config.WEIGHTS_DIR)
             if f.endswith("_best.pt")] if os.path.isdir(config.WEIGHTS_DIR) else []
    return max(found, key=os.path.getmtime) if found else None


def default_checkpoint(say=print):
    """The model test.py, predict.py and app.py use when none is named: the newest weights/*_best.pt (what you
    trained last), else the shipped weights/default.pt. Says which (through `say`); CheckpointError saying what to
    do when there is none."""
    newest = latest_checkpoint()
    shipped = os.path.join(config.WEIGHTS_DIR, DEFAULT_CHECKPOINT)
    path = newest or (shipped if os.path.exists(shipped) else None)
    if path is None:
        raise CheckpointError(f"no model named and none in {config.WEIGHTS_DIR}/ (no {DEFAULT_CHECKPOINT}, no "
                              f"*_best.pt): train one with `python train.py`, or name one (weights/x.pt or an "
                              f"exported weights/x.onnx)")
    if say:
        why = "the newest trained model" if newest else "the shipped model"
        say(f"model: {path} ({why}; name another as the first argument)")
    return path


# --- exported models (ONNX) ------------------------------------------------------------------------------

# An exported model reads what Predictor.load returns, uint8 pixels (batch, height, width, channels), and
# writes log-probabilities (batch, T, K): the decoders' softmax of them gives the probabilities back, so one
# decoding path serves both backends. The checkpoint's description travels as ONNX metadata_props.
ONNX_INPUT, ONNX_OUTPUT = "image", "log_probs"
ONNX_TEXT_KEYS = ("model_name", "head", "charset")  # stored as is; every other key holds JSON
ONNX_KEYS = ONNX_TEXT_KEYS + ("length", "case_sensitive", "image_height", "image_width", "channels", "build_args",
                              "parameters", "epoch", "accuracy", "char_accuracy", "temperature")


def onnx_metadata(ckpt, parameters):
    """{key: text} describing a checkpoint, for an exported model's metadata_props."""
    height, width = ckpt["image_size"]
    values = dict(ckpt, length=list(ckpt["length"]), image_height=height, image_width=width, parameters=parameters)
    return {k: values[k] if k in ONNX_TEXT_KEYS else json.dumps(values[k])
            for k in ONNX_KEYS if values.get(k) is not None}


def onnx_checkpoint(meta, path):
    """The checkpoint-like description (no weights) read back from an exported model's metadata."""
    missing = [k for k in ("model_name", "head", "charset", "length", "image_height", "image_width", "channels")
               if k not in meta]
    if missing:
        raise CheckpointError(f"{path} has no {', '.join(missing)} in its metadata: export it with "
                              f"`python export.py CHECKPOINT.pt`")
    try:
        ckpt = {k: meta[k] if k in ONNX_TEXT_KEYS else json.loads(meta[k]) for k in ONNX_KEYS if k in meta}
    except ValueError as e:
        raise CheckpointError(f"{path}: unreadable metadata ({e})") from None
    if ckpt["head"] not in models.HEADS:
        raise CheckpointError(f"{path}: head {ckpt['head']!r} is not one of {', '.join(models.HEADS)}")
    ckpt["image_size"] = [ckpt.pop("image_height"), ckpt.pop("image_width")]
    return ckpt


def onnx_session(path, threads=0):
    """An onnxruntime CPU session (threads: intra-op threads, 0 = onnxruntime's choice, one per core)."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise CheckpointError(f"{path}: running an .onnx model needs onnxruntime "
                              f"(pip install -r requirements.txt)") from None
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only: no warnings about unused initializers and the like
    try:
        return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime's own exception types (InvalidProtobuf, Fail, ...)
        why = str(e).splitlines()[0][:300] if str(e) else type(e).__name__
        raise CheckpointError(f"{path} is not a readable ONNX model ({why})") from None


def fold_batchnorm(model, channels, height, width, device="cpu"):
    """`model` (eval mode) with each BatchNorm folded into the convolution before it (torch.fx): a third less CPU
    per image, the same outputs within float tolerance (checked here on a random batch). The model itself when
    it cannot be traced or the check fails."""
    from torch.fx.experimental import optimization

    try:
        fused = optimization.fuse(model)
        x = torch.rand(2, channels, height, width, device=device) * 2 - 1  # (B, C, H, W) in [-1, 1]
        with torch.inference_mode():
            if torch.allclose(model(x), fused(x), atol=1e-3, rtol=1e-3):
                return fused
        log.info("BatchNorm folding changed the outputs; running the model as it is")
    except Exception as e:  # a model torch.fx cannot trace still runs, only unfolded
        log.info("running the model without BatchNorm folding (%s: %s)", type(e).__name__, e)
    return model


class Predictor:
    """A model ready for inference: images in, (texts, confidences, per-character probabilities) out.

    `path` is a checkpoint written by train.py (run by torch on `device`, BatchNorm folded into the convolutions
    unless fuse=False) or a model written by export.py (.onnx, run by onnxruntime on the CPU with `threads`
    intra-op threads; 0 = one per core). Either way `ckpt` describes the model, `head` is its head-kind record
    (models/kinds.py) and the same decoder reads its output, with confidences at `temperature` (None: the
    checkpoint's).
    """

    def __init__(self, path, device="cpu", threads=0, fuse=True, temperature=None):
        self.path = path
        if str(path).endswith(".onnx"):
            if not os.path.exists(path):
                raise CheckpointError(f"no model at {path} (write one with: python export.py weights/x.pt)")
            self.runtime, self.model, self.device = "onnxruntime", None, torch.device("cpu")
            self.session = onnx_session(path, threads)
            self.ckpt = onnx_checkpoint(self.session.get_modelmeta().custom_metadata_map, path)
            self.codec = data.Codec(self.ckpt["charset"], tuple(self.ckpt["length"]),
                                    self.ckpt.get("case_sensitive", True))
            self.parameters = self.ckpt.get("parameters")
        else:
            self.runtime, self.session = "torch", None
            self.ckpt = load_checkpoint(path)
            self.device = torch.device(device)
            self.model, self.codec = model_from_checkpoint(self.ckpt, self.device)
            self.parameters = sum(p.numel() for p in self.model.parameters())
        self.height, self.width = self.ckpt["image_size"]
        self.channels = self.ckpt["channels"]
        if self.ckpt["head"] not in models.HEADS:
            raise CheckpointError(f"{path}: head {self.ckpt['head']!r} is not one of {', '.join(models.HEADS)}")
        self.head = models.head(self.ckpt["head"])
        # confidences are read at the checkpoint's temperature (fitted on its validation part; older ones: 1), or
        # at the one given
        self.temperature = float(temperature or self.ckpt.get("temperature") or 1.0)
        self.decode = functools.partial(self.head.decode, temperature=self.temperature)
        self.fused = False
        if fuse and self.model is not None:
            folded = fold_batchnorm(self.model, self.channels, self.height, self.width, self.device)
            self.model, self.fused = folded, folded is not self.model

    def load(self, source):
        return data.load_image(source, self.width, self.height, self.channels)

    @torch.inference_mode()
    def scores(self, arrays):
        """uint8 (N, H, W, C) -> what the decoder reads, (N, T, K) on the CPU: logits (torch) or
        log-probabilities (onnxruntime); their softmax is the same."""
        arrays = np.require(arrays, np.uint8, ["C_CONTIGUOUS", "WRITEABLE"])  # torch warns on read-only arrays
        if self.session is not None:
            return torch.from_numpy(self.session.run([ONNX_OUTPUT], {ONNX_INPUT: arrays})[0])
        x = torch.from_numpy(arrays).permute(0, 3, 1, 2).to(self.device)
        with autocast(self.device):
            return self.model(data.to_float(x)).float().cpu()

    def predict_arrays(self, arrays):
        """arrays: uint8 (N, H, W, C) -> texts, confidences, per-character probabilities."""
        return self.decode(self.scores(arrays), self.codec)

    def read(self, arrays, batch_size=512):
        """predict_arrays' (texts, confidences) for any number of images, `batch_size` at a time."""
        texts, confidences = [], []
        for i in range(0, len(arrays), batch_size):
            t, c, _ = self.predict_arrays(arrays[i:i + batch_size])
            texts += t
            confidences += c
        return texts, confidences

    def predict_with_candidates(self, arrays, k):
        """predict_arrays, plus per image and per character read the k likeliest characters [(char, p), ...],
        best first, from the same forward pass."""
        scores = self.scores(arrays)
        return (*self.decode(scores, self.codec), self.head.candidates(scores, self.codec, k, self.temperature))


# --- results plot --------------------------------------------------------------------------------------

def read_results(path, first=RESULT_COLUMNS[0]):
    """The rows of a results.txt as dicts. A header line met later starts a new section with its own columns
    (append_row writes one when the columns change); a row cut short has None for its missing columns."""
    rows, header = [], None
    with open(path, newline="", encoding="utf-8", errors="replace") as f:
        for fields in csv.reader(f, delimiter="\t"):
            if not fields:
                continue
            if _is_header(fields, first):
                header = fields
            elif header:
                rows.append({k: (fields[i] if i < len(fields) else None) for i, k in enumerate(header)})
    return rows


def plot_results(path="results.txt", out="results.png"):
    """results.txt -> results.png: sequence accuracy, character accuracy, loss per epoch; a line per run."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_results(path)
    runs = {}
    for row in rows:
        runs.setdefault(row["run"], {})[int(row["epoch"])] = row  # a resumed epoch replaces the old row
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for run, by_epoch in runs.items():
        epochs = sorted(by_epoch)
        for ax, col in zip(axes, ["seq_acc", "char_acc", "train_loss"]):
            line, = ax.plot(epochs, [float(by_epoch[e][col]) for e in epochs], marker=".", label=f"{run} validation")
            test = [float(by_epoch[e].get("test_" + col, "nan") or "nan") for e in epochs] if col != "train_loss" else []
            if any(v == v for v in test):  # not all nan: the run had a test folder
                ax.plot(epochs, test, ls="--", color=line.get_color(), label=f"{run} test")
    for ax, title in zip(axes, ["sequence accuracy", "character accuracy", "train loss"]):
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[2].set_yscale("log")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def main():
    positional, opts = config.parse(out="results.png")
    path = positional[0] if positional else config.RESULTS
    if not os.path.exists(path):
        sys.exit(f"error: {path} not found (python train.py writes it)")
    print(f"wrote {plot_results(path, opts['out'])}")


if __name__ == "__main__":
    main()
