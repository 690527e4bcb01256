"""Small torch helpers the scripts share (device, AMP, checkpoints, inference), and the results plot:

    python torch_util.py [results.txt] [--out=results.png]
"""
import contextlib
import csv
import json
import os
import pickle
import random
import sys
import time

import numpy as np
import torch

import config
import data
import models
from models.heads import DECODERS

DEFAULT_CHECKPOINT = "default.pt"  # the shipped model, in WEIGHTS_DIR
RESULT_COLUMNS = ["run", "epoch", "train_loss", "char_acc", "seq_acc", "lr", "seconds", "images_per_s"]


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


# --- checkpoints -------------------------------------------------------------------------------------------

class CheckpointError(Exception):
    pass


def unwrap(model):
    """The plain model inside DDP / torch.compile wrappers, so state-dict keys carry no prefixes."""
    model = getattr(model, "module", model)
    return getattr(model, "_orig_mod", model)


def save_checkpoint(path, model, build_args, codec, **extra):
    """Atomically write a self-describing checkpoint (a plain dict loadable with weights_only=True)."""
    ckpt = {
        "model": {k: v.detach().cpu() for k, v in unwrap(model).state_dict().items()},
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
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    torch.save(ckpt, tmp)
    os.replace(tmp, path)


def load_checkpoint(path):
    """Load a checkpoint without executing code from it (weights_only); clear errors for bad files."""
    if not os.path.exists(path):
        raise CheckpointError(f"no checkpoint at {path} (train one with: python train.py)")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(f"{path} was refused: it holds objects other than tensors and plain data, "
                              f"which could run code when loaded ({str(e).splitlines()[0]})") from None
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        raise CheckpointError(f"{path} is not a readable checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(ckpt, dict) or "model" not in ckpt or "model_name" not in ckpt:
        raise CheckpointError(f"{path} is not a checkpoint written by train.py")
    return ckpt


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
    Returns a one-line report of what was kept and what starts from random init."""
    same_labels = ckpt["charset"] == codec.charset and list(ckpt["length"]) == list(codec.length)
    source, state = ckpt["model"], model.state_dict()
    kept, fresh = {}, []
    for name, tensor in state.items():
        head = name.startswith("head.fc.")
        if name in source and source[name].shape == tensor.shape and (same_labels or not head):
            kept[name] = source[name]
        else:
            fresh.append(name)
    model.load_state_dict(kept, strict=False)
    why = "" if same_labels else f" (charset {ckpt['charset']!r} -> {codec.charset!r})"
    return (f"initialised {len(kept)} of {len(state)} tensors from the checkpoint; "
            f"{len(fresh)} start afresh{why}" + (f": {', '.join(fresh[:6])}{', ...' if len(fresh) > 6 else ''}" if fresh else ""))


def latest_checkpoint():
    """This run's best (weights/<RUN>_best.pt), else the newest *_best.pt; the first path if neither exists."""
    path = os.path.join(config.WEIGHTS_DIR, f"{config.run_name()}_best.pt")
    if os.path.exists(path):
        return path
    found = [os.path.join(config.WEIGHTS_DIR, f) for f in os.listdir(config.WEIGHTS_DIR)
             if f.endswith("_best.pt")] if os.path.isdir(config.WEIGHTS_DIR) else []
    return max(found, key=os.path.getmtime) if found else path


def default_checkpoint():
    """The model test.py, predict.py and app.py use when none is named: this run's weights/<RUN>_best.pt (what
    you just trained), else the shipped weights/default.pt, else the newest *_best.pt. CheckpointError
    saying what to do when there is none."""
    own = os.path.join(config.WEIGHTS_DIR, f"{config.run_name()}_best.pt")
    shipped = os.path.join(config.WEIGHTS_DIR, DEFAULT_CHECKPOINT)
    for path in (own, shipped, latest_checkpoint()):
        if os.path.exists(path):
            return path
    raise CheckpointError(f"no model named and none in {config.WEIGHTS_DIR}/ (no {DEFAULT_CHECKPOINT}, no "
                          f"*_best.pt): train one with `python train.py`, or name one (weights/x.pt or an "
                          f"exported weights/x.onnx)")


# --- exported models (ONNX) ------------------------------------------------------------------------------

# An exported model reads what Predictor.load returns, uint8 pixels (batch, height, width, channels), and
# writes log-probabilities (batch, T, K): the decoders' softmax of them gives the probabilities back, so one
# decoding path serves both backends. The checkpoint's description travels as ONNX metadata_props.
ONNX_INPUT, ONNX_OUTPUT = "image", "log_probs"
ONNX_TEXT_KEYS = ("model_name", "head", "charset")  # stored as is; every other key holds JSON
ONNX_KEYS = ONNX_TEXT_KEYS + ("length", "case_sensitive", "image_height", "image_width", "channels", "build_args",
                              "parameters", "epoch", "accuracy", "char_accuracy")


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
    if ckpt["head"] not in DECODERS:
        raise CheckpointError(f"{path}: head {ckpt['head']!r} is not one of {', '.join(DECODERS)}")
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


class Predictor:
    """A model ready for inference: images in, (texts, confidences, per-character probabilities) out.

    `path` is a checkpoint written by train.py (run by torch on `device`) or a model written by export.py
    (.onnx, run by onnxruntime on the CPU with `threads` intra-op threads; 0 = one per core). Either way
    `ckpt` describes the model and the same decoder reads its output.
    """

    def __init__(self, path, device="cpu", threads=0):
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
        self.decode = DECODERS[self.ckpt["head"]]

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


# --- results plot --------------------------------------------------------------------------------------

def read_results(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


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
            ax.plot(epochs, [float(by_epoch[e][col]) for e in epochs], marker=".", label=run)
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
