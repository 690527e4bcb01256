"""Small torch helpers the scripts share (device, AMP, checkpoints, inference), and the results plot:

    python torch_util.py [results.txt] [--out=results.png]
"""
import contextlib
import csv
import os
import pickle
import random
import sys

import numpy as np
import torch

import config
import data
import models
from models.heads import DECODERS

RESULT_COLUMNS = ["run", "epoch", "train_loss", "char_acc", "seq_acc", "lr", "seconds", "images_per_s"]


# --- device and precision --------------------------------------------------------------------------------

def pick_device(name="auto"):
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def autocast(device):
    """bf16 autocast on CUDA; a no-op elsewhere (CPU bf16 is slower than fp32 on most CPUs)."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def set_threads(threads=0):
    torch.set_num_threads(threads or os.cpu_count())


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
    codec = data.Codec(ckpt["charset"], tuple(ckpt["length"]))
    return model.to(device).eval(), codec


def latest_checkpoint():
    """Default checkpoint for test.py / predict.py: this run's best, else the newest *_best.pt."""
    path = os.path.join(config.WEIGHTS_DIR, f"{config.run_name()}_best.pt")
    if os.path.exists(path):
        return path
    found = [os.path.join(config.WEIGHTS_DIR, f) for f in os.listdir(config.WEIGHTS_DIR)
             if f.endswith("_best.pt")] if os.path.isdir(config.WEIGHTS_DIR) else []
    return max(found, key=os.path.getmtime) if found else path


class Predictor:
    """A checkpoint ready for inference: images in, (text, confidence, per-char probabilities) out."""

    def __init__(self, path, device="cpu"):
        self.path = path
        self.ckpt = load_checkpoint(path)
        self.device = torch.device(device)
        self.model, self.codec = model_from_checkpoint(self.ckpt, self.device)
        self.height, self.width = self.ckpt["image_size"]
        self.channels = self.ckpt["channels"]
        self.decode = DECODERS[self.ckpt["head"]]

    def load(self, source):
        return data.load_image(source, self.width, self.height, self.channels)

    @torch.inference_mode()
    def predict_arrays(self, arrays):
        """arrays: uint8 (N, H, W, C) -> texts, confidences, per-character probabilities."""
        x = torch.from_numpy(np.ascontiguousarray(arrays)).permute(0, 3, 1, 2).to(self.device)
        with autocast(self.device):
            logits = self.model(data.to_float(x))
        return self.decode(logits, self.codec)


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
