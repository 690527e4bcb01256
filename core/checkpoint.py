"""Checkpoints that describe themselves: save (atomic), load (weights_only, clear errors, the record checked),
the model and codec rebuilt from one, fine-tuning's tensor matching, which checkpoint a command uses, and the
description an exported ONNX model carries as metadata."""
import hashlib
import json
import os
import pickle

import torch

import config
import models
from core import data
from core.files import atomic_write, file_kind


DEFAULT_CHECKPOINT = "default.pt"  # the shipped model, in WEIGHTS_DIR
PRETRAINED_CHECKPOINT = "pretrained.pt"  # the shipped starting point of own-data training (INIT auto)
VARIED_CHECKPOINT = "varied.pt"  # ... of a run with unlabelled images and no teacher (INIT auto)


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


def _unreadable(path, error):
    """Why torch could not read `path`, and the fix, for a person: its size, the first sentence of torch's reason."""
    size = os.path.getsize(path)
    if size == 0:
        return "the file is empty (0 bytes); copy it again, or train one (python train.py)"
    reason = str(error).splitlines()[0] if str(error) else ""
    reason = reason.split(". ")[0].rstrip(".")  # torch's first sentence; the rest is advice about its own files
    if len(reason) > 160:
        reason = reason[:160].rsplit(" ", 1)[0] + " ..."
    return (f"cut short, damaged or another kind of file ({size} bytes; {type(error).__name__}"
            f"{': ' + reason if reason else ''}); copy it again, or name a checkpoint train.py wrote "
            f"(weights/<RUN>_best.pt)")


def load_checkpoint(path):
    """Load a checkpoint without executing code from it (weights_only); clear errors for bad files."""
    if not os.path.exists(path):
        raise CheckpointError(f"no checkpoint at {path} (train one with: python train.py)")
    if not os.path.isfile(path):  # a FIFO would block torch.load forever
        raise CheckpointError(f"{path} is not a regular file ({file_kind(path)}), not a checkpoint")
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
        raise CheckpointError(f"{path} is not a readable checkpoint: {_unreadable(path, e)}") from None
    if not isinstance(ckpt, dict) or "model" not in ckpt or "model_name" not in ckpt:
        raise CheckpointError(f"{path} is not a checkpoint written by train.py")
    why = _checkpoint_problem(ckpt)
    if why:
        raise CheckpointError(f"{path} is not a usable checkpoint: {why}")
    why = record_problem(ckpt, data.Codec(ckpt["charset"], tuple(ckpt["length"]), ckpt.get("case_sensitive", True)))
    if why:
        raise CheckpointError(f"{path}: its record does not match its weights ({why}): it was not written by "
                              f"train.py as it is, or was edited; use the checkpoint as training wrote it")
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


def record_problem(ckpt, codec):
    """Why a checkpoint's record (head, charset, lengths, image size, channels) disagrees with its build arguments,
    or None: a record edited or assembled from two checkpoints would load and read wrong texts."""
    kind = models.head(ckpt["model_name"])
    args = ckpt["build_args"]
    if ckpt.get("head", kind.kind) != kind.kind:
        return f"head {ckpt['head']!r}, but {ckpt['model_name']} has the {kind.kind} head"
    expected = dict(num_classes=kind.num_classes(codec), positions=codec.max_len, height=ckpt["image_size"][0],
                    width=ckpt["image_size"][1], in_channels=ckpt["channels"])
    differ = [f"{k} {args.get(k)!r} (the record says {v!r})" for k, v in expected.items() if args.get(k) != v]
    return f"build arguments {', '.join(differ)}" if differ else None


def model_from_checkpoint(ckpt, device="cpu", path="the checkpoint"):
    """(model in eval mode, codec) rebuilt from the checkpoint alone; config.py is not consulted. CheckpointError
    when the record does not describe the weights (another model, charset, size or head than they were trained
    with)."""
    codec = data.Codec(ckpt["charset"], tuple(ckpt["length"]), ckpt.get("case_sensitive", True))
    why = record_problem(ckpt, codec)
    try:
        model = None if why else models.build_model(ckpt["model_name"], **dict(ckpt["build_args"]))
        if model is not None:
            model.load_state_dict(ckpt["model"])
    except (TypeError, ValueError, KeyError, RuntimeError) as e:
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        why = "; ".join(lines[:3])[:300] or type(e).__name__
    if why:
        raise CheckpointError(f"{path}: its record does not match its weights ({why}): it was not written by "
                              f"train.py as it is, or was edited; use the checkpoint as training wrote it")
    return model.to(device).eval(), codec


def class_rows(old_charset, new_charset, caseless=False):
    """For a CTC classifier (row 0 the blank, row i+1 character i): the checkpoint row each new row starts from,
    or None (afresh). The blank and every character the checkpoint knows keep their rows. A letter known only in
    the other case takes that letter's row when the checkpoint reads letters without case (`caseless`: trained on
    both cases under one label); otherwise it starts afresh: `a` from the `A` of a model that saw capitals only
    read worse (captcha_images_v2 with 100 labels: 197 of 208 against 202 with the blank's and the digits' rows
    alone; BENCHMARKS.md)."""
    old = {c: i + 1 for i, c in enumerate(old_charset)}
    return [0] + [old.get(c, old.get(c.swapcase()) if caseless else None) for c in new_charset]


def column_cells(model, ckpt):
    """(channels, the checkpoint's cells per column, this model's) when head.fc reads columns stacked from
    `model`'s feature map (pool "flat", no sequence or neck between) and the two differ only in the map's height
    (another image height); None otherwise."""
    head, size = getattr(model, "head", None), ckpt.get("image_size")
    fc = getattr(head, "fc", None)
    if (ckpt.get("head") != "ctc" or not size or getattr(getattr(head, "pool", None), "mode", None) != "flat"
            or not isinstance(fc, torch.nn.Linear) or not isinstance(head.sequence, torch.nn.Identity)
            or not isinstance(head.neck, torch.nn.Identity)):
        return None
    first = next((m for m in model.features.modules() if isinstance(m, torch.nn.Conv2d)), None)
    if first is None:
        return None
    c, before, _ = models.adapt.output_shape(model.features, first.in_channels, *size)
    if fc.in_features % c or fc.in_features == c * before:
        return None
    return c, before, fc.in_features // c


def resample_columns(weight, c, before, after):
    """head.fc's weight (K, c * before) for columns of `before` cells made for columns of `after`: each class's
    weights over a column's cells interpolated to the new height and scaled by before / after, so a feature map
    resampled to the new height gives about the same logits."""
    w = weight.reshape(len(weight), c, before)
    w = torch.nn.functional.interpolate(w, size=after, mode="linear", align_corners=False) * (before / after)
    return w.reshape(len(weight), c * after)


def _ctc_head_rows(ckpt, codec, source, state, cells=None):
    """head.fc's tensors for a CTC model whose charset or image height differs from the checkpoint's: built row by
    row from the checkpoint's (class_rows), each row's columns resampled to this model's feature height where
    `cells` (column_cells) gives one; {} when the head is not a CTC classifier of the expected shapes."""
    w, b = "head.fc.weight", "head.fc.bias"
    if ckpt.get("head") != "ctc" or w not in source or w not in state or b not in source or b not in state:
        return {}, 0
    weights = resample_columns(source[w], *cells) if cells else source[w]
    if (weights.shape[0] != len(ckpt["charset"]) + 1 or state[w].shape[0] != len(codec.charset) + 1
            or weights.shape[1:] != state[w].shape[1:]):
        return {}, 0
    rows = class_rows(ckpt["charset"], codec.charset, caseless=not ckpt.get("case_sensitive", True))
    weight, bias = state[w].clone(), state[b].clone()
    for new, old in enumerate(rows):
        if old is not None:
            weight[new], bias[new] = weights[old], source[b][old]
    return {w: weight, b: bias}, sum(r is not None for r in rows[1:])


def load_matching(model, ckpt, codec):
    """Fine-tuning: copy the checkpoint's tensors into `model` where name and shape match. When the charset
    differs from the checkpoint's, a CTC classifier (head.fc) keeps the blank's row and the rows of the characters
    both know (class_rows) and the others start afresh; a fixed-length head whose charset or length differs starts
    afresh whatever its shape. A CTC classifier reading the stacked cells of a column taller or shorter than the
    checkpoint's (another image height) gets the checkpoint's rows resampled to the new height (resample_columns).
    Returns a report of what was kept and why each other tensor starts from random init."""
    same_charset = ckpt["charset"] == codec.charset
    source, state = ckpt["model"], model.state_dict()
    kept, fresh, adapted = {}, {}, []
    cells = column_cells(model, ckpt)
    rows, known = ({}, 0) if same_charset and not cells else _ctc_head_rows(ckpt, codec, source, state, cells)
    for name, tensor in state.items():
        if name in rows:
            kept[name] = rows[name]
        elif name.startswith("head.fc.") and not same_charset:
            fresh[name] = f"charset {ckpt['charset']!r} -> {codec.charset!r}"
        elif name.startswith("head.fc.") and ckpt.get("head") != "ctc" and list(ckpt["length"]) != list(codec.length):
            fresh[name] = f"label length {tuple(ckpt['length'])} -> {codec.length}"  # a fixed head's classes per place
        elif name not in source:
            fresh[name] = "not in the checkpoint (another model or options)"
        elif (source[name].dim() == 4 and {source[name].shape[1], tensor.shape[1]} == {1, 3}
              and source[name].shape[:1] + source[name].shape[2:] == tensor.shape[:1] + tensor.shape[2:]):
            # a first convolution between grey and colour images: the input channels' weights summed, then shared
            # out evenly, so a grey-looking image (R = G = B) gets the checkpoint's answer either way
            kept[name] = source[name].sum(1, keepdim=True).repeat(1, tensor.shape[1], 1, 1) / tensor.shape[1]
            adapted.append(name)
        elif source[name].shape != tensor.shape:
            fresh[name] = f"shape {tuple(source[name].shape)} -> {tuple(tensor.shape)} (image size, channels or classes)"
        else:
            kept[name] = source[name]
    model.load_state_dict(kept, strict=False)
    lines = [f"initialised {len(kept)} of {len(state)} tensors from the checkpoint; {len(fresh)} start afresh"]
    if rows:
        lines.append(f"  head.fc: the blank's row and {known} of {len(codec.charset)} characters' rows from the "
                     f"checkpoint's (the characters it knows" + (", either case" if not ckpt.get("case_sensitive", True)
                                                                 else "") + ")"
                     + (", the others afresh" if known < len(codec.charset) else "")
                     + (f"; each column's {cells[1]} cells resampled to {cells[2]} (another image height)"
                        if cells else ""))
    lines += [f"  {name}: " + (f"grey -> {state[name].shape[1]} channels (the grey weights shared out)"
                               if state[name].shape[1] > 1 else "colour -> grey (the channels' weights summed)")
              for name in adapted]
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


def state_digest(state_dict):
    """SHA-256 of a state dict's names and values: equal digests, equal weights and buffers."""
    h = hashlib.sha256()
    for name, tensor in sorted(state_dict.items()):
        h.update(name.encode() + tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


# --- exported models (ONNX) ------------------------------------------------------------------------------


# An exported model reads what Predictor.load returns, uint8 pixels (batch, height, width, channels), and
# writes log-probabilities (batch, T, K): the decoders' softmax of them gives the probabilities back, so one
# decoding path serves both backends. The checkpoint's description travels as ONNX metadata_props.
ONNX_INPUT, ONNX_OUTPUT = "image", "log_probs"
ONNX_TEXT_KEYS = ("model_name", "head", "charset")  # stored as is; every other key holds JSON
ONNX_KEYS = ONNX_TEXT_KEYS + ("length", "case_sensitive", "image_height", "image_width", "channels", "build_args",
                              "parameters", "epoch", "accuracy", "char_accuracy", "temperature", "answer")


def onnx_metadata(ckpt, parameters):
    """{key: text} describing a checkpoint, for an exported model's metadata_props."""
    height, width = ckpt["image_size"]
    values = dict(ckpt, length=list(ckpt["length"]), image_height=height, image_width=width, parameters=parameters,
                  answer=ckpt.get("config", {}).get("ANSWER"))
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
