"""A checkpoint as a ddddocr (1.6.1) custom model: an ONNX file and the charsets JSON ddddocr reads beside it.

    ocr = ddddocr.DdddOcr(det=False, ocr=False, show_ad=False,
                          import_onnx_path="model.onnx", charsets_path="model.charsets.json")
    ocr.classification(open("captcha.png", "rb").read())

What ddddocr 1.6.1 does with a custom model (ddddocr/core/ocr_engine.py, models/model_loader.py):

- the JSON must hold `charset` (a list: output class i reads as charset[i]), `word`, `image` and `channel`;
- `image` = [width, height]: the image is resized to that size with PIL's LANCZOS (an image already that size
  is left as it is); [-1, height]: to that height, the width following the aspect ratio (`word` = true then
  makes it a height x height square instead: the only thing `word` changes);
- `channel` = 1: converted to grey (PIL's convert("L"), after the resize); otherwise left in the file's mode;
- pixels as float32 / 255 (0..1), laid out (1, channels, height, width), fed to the model's first input
  whatever its name;
- the first output, (1, T, K) (or (T, 1, K)): the argmax of every step, then a CTC collapse: repeats of an
  index merged, index 0 dropped (a blank), every other index i read as charset[i]. There is no other decoder:
  `word` does not change it.

The graph written here (DdddocrGraph) takes exactly that tensor, rounds it back to the 0..255 pixels our model
reads (data.load_image's uint8 array, normalised to [-1, 1] as in training) and writes (B, T, K) scores whose
per-step argmax, CTC-collapsed, is the text the project's decoder reads:

- CTC head: our blank is index 0 as well, so class i is charset[i - 1] and the charsets list is [""] + charset.
  Our decoder keeps the greedy path unless its reading has a length the labels never have; then it takes the
  likeliest path with an allowed length (models/decoding.length_paths). The graph runs the same search, so
  ddddocr reads the same text; on the frames where that path leaves the likeliest class, the path's class and
  the likeliest one swap their scores (each frame keeps the model's set of probabilities).
- fixed-length head: position j becomes two steps, its classes (shifted by one; a padding class becomes the
  blank) then a blank, so the collapse keeps doubled letters (A - A - reads AA) and drops padding.

The outputs are log-probabilities, so ddddocr's probability=True (softmax of the output) gives the model's
probabilities, plus certain blanks between a fixed head's positions.
"""
import json
import os
import warnings

import torch
import torch.nn as nn

from core import data
from core.batches import to_float
from core.files import atomic_write

INPUT, OUTPUT = "input1", "output"  # ddddocr feeds its first input whatever the name; its own models use input1
HEADS = ("ctc", "fixed")
NEVER = -1e4  # a class's score on the steps where it cannot be read (finite: ddddocr's softmax subtracts the max)


class UnsupportedModel(ValueError):
    """A checkpoint this format cannot express; str() is one line that says why."""


def codec_of(ckpt):
    """The codec the model's classes follow (a case-folding checkpoint's charset upper-cased, as training did)."""
    return data.Codec(ckpt["charset"], tuple(ckpt["length"]), ckpt.get("case_sensitive", True))


def check_supported(ckpt):
    """Raise UnsupportedModel (one line) for a checkpoint whose readings ddddocr could not reproduce."""
    if ckpt.get("head") not in HEADS:
        raise UnsupportedModel(f"head {ckpt.get('head')!r}: ddddocr export knows the {' and '.join(HEADS)} heads")
    if ckpt.get("channels") not in (1, 3):
        raise UnsupportedModel(f"{ckpt.get('channels')} channels: ddddocr feeds grey (1) or colour (3) images")
    if any(len(c) != 1 for c in codec_of(ckpt).charset):
        raise UnsupportedModel("a charset entry that is not one character")


def charsets(ckpt):
    """The charsets JSON (a dict) ddddocr reads beside the model: class i of the exported output is charset[i]."""
    check_supported(ckpt)
    height, width = ckpt["image_size"]
    return {"charset": [""] + list(codec_of(ckpt).charset),  # index 0: the blank ddddocr drops
            "word": False,  # with a fixed `image` size, word changes nothing in 1.6.1
            "image": [width, height],  # ddddocr resizes every image to exactly the model's size
            "channel": ckpt["channels"]}


def _lead(scores, path):
    """`scores` (B, T, K) changed so that argmax over K gives `path` (B, T): on each step the path's class and the
    likeliest class swap their scores (the same set of values), and exact ties with the leader (rounding), which
    argmax would settle by index, are nudged just below it."""
    classes = torch.arange(scores.shape[-1], device=scores.device)
    best = scores.argmax(-1, keepdim=True)
    want = path.unsqueeze(-1)
    top, mine = scores.gather(-1, best), scores.gather(-1, want)
    is_want, is_best = classes == want, classes == best
    out = torch.where(is_want, top, torch.where(is_best, mine, scores))
    return torch.where(~is_want & (out >= top), top - 1e-5 * (1 + top.abs()), out)


def _length_path(log_probs, lo, hi):
    """models.decoding.length_paths as graph operations, for all rows: (paths (B, T), found (B,)). The same search
    step for step (topk, >=, argmax: the same ties), unrolled over the T frames and traced back with gathers."""
    steps, classes = log_probs.shape[1], log_probs.shape[2]
    count = torch.arange(hi + 1, device=log_probs.device).view(1, hi + 1, 1)
    same = torch.arange(classes, device=log_probs.device).view(1, 1, classes)
    start = ((count == 0) & (same == 0)) | ((count == 1) & (same >= 1))
    score = torch.where(start, log_probs[:, :1, :], torch.full_like(log_probs[:, :1, :], -torch.inf))
    back_cls, back_adv = [], []
    for t in range(1, steps):
        top, order = score.topk(2, dim=2)  # (B, hi + 1, 2): best and second-best last class
        top2, order2 = top[..., 1:2], order[..., 1:2]
        clash = order[:, :-1, :1] == same  # (B, hi, K)
        adv = torch.where(clash, top2[:, :-1], top[:, :-1, :1])
        stay = score[:, 1:]
        take_stay = stay >= adv
        moved = torch.where(take_stay, stay, adv)[..., 1:]  # (B, hi, K - 1)
        chars = torch.cat([torch.full_like(moved[:, :1], -torch.inf), moved], 1)  # no character read: count 0
        new = torch.cat([top[:, :, :1], chars], 2)  # a blank keeps the count, after the best last class
        adv_from = torch.where(clash, order2[:, :-1], order[:, :-1, :1])
        cls = torch.where(take_stay, same, adv_from)[..., 1:]
        back_cls.append(torch.cat([order[:, :, :1], torch.cat([torch.zeros_like(cls[:, :1]), cls], 1)], 2))
        adv_flag = (~take_stay[..., 1:]).long()
        back_adv.append(torch.cat([torch.zeros_like(order[:, :, :1]),
                                   torch.cat([torch.zeros_like(adv_flag[:, :1]), adv_flag], 1)], 2))
        score = new + log_probs[:, t:t + 1, :]
    end = score[:, lo:hi + 1].flatten(1)
    best = end.argmax(1)
    found = torch.isfinite(end).any(1)
    k, c = best // classes + lo, best % classes
    path = [c]
    for t in range(steps - 1, 0, -1):
        at = (k * classes + c).unsqueeze(1)
        k, c = (k - back_adv[t - 1].flatten(1).gather(1, at)[:, 0],
                back_cls[t - 1].flatten(1).gather(1, at)[:, 0])
        path.append(c)
    return torch.stack(path[::-1], 1), found


def ctc_path(logits, lo, hi):
    """The frame path (B, T) the project's CTC decoder reads (models.decoding.ctc_paths): greedy, or where its
    reading's length is outside lo..hi, the likeliest path whose reading has an allowed length."""
    probs = logits.float().softmax(-1)
    greedy = probs.argmax(-1)
    if lo > logits.shape[1]:  # the frames cannot hold lo characters: the decoder keeps the greedy path
        return greedy
    before = torch.cat([torch.zeros_like(greedy[:, :1]), greedy[:, :-1]], 1)
    n = ((greedy != 0) & (greedy != before)).sum(1)
    path, found = _length_path(probs.clamp_min(1e-30).log(), lo, hi)
    use = found & ((n < lo) | (n > hi))
    return torch.where(use.unsqueeze(1), path, greedy)


class DdddocrGraph(nn.Module):
    """float32 (B, C, H, W) in 0..1, what ddddocr feeds -> (B, T, K) scores it decodes into our model's texts."""

    def __init__(self, model, ckpt):
        super().__init__()
        check_supported(ckpt)
        self.model = model
        self.head = ckpt["head"]
        codec = codec_of(ckpt)
        self.lo, self.hi = codec.length
        self.chars, self.variable = len(codec.charset), codec.variable

    def forward(self, x):
        pixels = (x * 255).round().clamp(0, 255)  # ddddocr's /255 undone: the uint8 values, exactly
        logits = self.model(to_float(pixels)).float()
        log_probs = logits.log_softmax(-1)
        if self.head == "ctc":  # blank 0 and characters 1..C, as ddddocr reads them
            return _lead(log_probs, ctc_path(logits, self.lo, self.hi))
        ids = logits.softmax(-1).argmax(-1)  # what fixed_decode reads: a class per position
        path = torch.where(ids < self.chars, ids + 1, torch.zeros_like(ids))  # padding -> blank
        pad = log_probs[..., self.chars:] if self.variable else torch.full_like(log_probs[..., :1], NEVER)
        step = _lead(torch.cat([pad, log_probs[..., :self.chars]], -1), path)  # (B, L, 1 + C)
        blank = torch.cat([torch.zeros_like(step[..., :1]), torch.full_like(step[..., 1:], NEVER)], -1)
        return torch.stack([step, blank], 2).flatten(1, 2)  # (B, 2L, 1 + C): char, blank, char, blank, ...


def output_paths(out):
    """(ONNX path, charsets JSON path) for --out: X.onnx -> X.onnx and X.charsets.json."""
    stem = out[:-len(".onnx")] if out.endswith(".onnx") else out
    return stem + ".onnx", stem + ".charsets.json"


def export(ckpt, model, onnx_path, charsets_path, opset=None):
    """Write `model` (rebuilt from the loaded checkpoint dict `ckpt`, eval mode, on the CPU) as the ddddocr model
    `onnx_path` and its `charsets_path` JSON, each atomically; returns the charsets dict. UnsupportedModel for a
    checkpoint the format cannot express."""
    import onnx

    info = charsets(ckpt)
    height, width = ckpt["image_size"]
    graph = DdddocrGraph(model, ckpt).eval()
    # Batch 2, not 1: torch.export would take a batch of 1 for a constant (ddddocr feeds 1; any size works).
    example = torch.rand(2, ckpt["channels"], height, width)
    with warnings.catch_warnings():  # the exporter's FutureWarnings and notes say nothing to a user
        warnings.simplefilter("ignore")
        program = torch.onnx.export(graph, (example,), dynamo=True, opset_version=opset, input_names=[INPUT],
                                    output_names=[OUTPUT], dynamic_shapes=({0: torch.export.Dim("batch")},),
                                    external_data=False, optimize=True, verbose=False)
    proto = program.model_proto
    onnx.helper.set_model_props(proto, {"format": "ddddocr", "charsets": json.dumps(info, ensure_ascii=False),
                                        "model_name": ckpt["model_name"], "head": ckpt["head"]})
    proto.doc_string = (f"captcha reader {ckpt['model_name']} for ddddocr: input '{INPUT}' float32 (batch, "
                        f"{ckpt['channels']}, {height}, {width}) pixels / 255; output '{OUTPUT}' (batch, T, "
                        f"{len(info['charset'])}) scores, argmax per step then CTC collapse, blank 0")
    onnx.checker.check_model(proto)
    atomic_write(onnx_path, proto.SerializeToString())
    atomic_write(charsets_path, json.dumps(info, ensure_ascii=False, indent=1).encode("utf-8"))
    return info


def load_lines(onnx_path, charsets_path):
    """The Python lines that read an image with the exported model in ddddocr."""
    return (f"import ddddocr\n"
            f"ocr = ddddocr.DdddOcr(det=False, ocr=False, show_ad=False,\n"
            f"                      import_onnx_path={os.fspath(onnx_path)!r}, "
            f"charsets_path={os.fspath(charsets_path)!r})\n"
            f"text = ocr.classification(open('captcha.png', 'rb').read())")


def ddddocr_text(output, charset):
    """ddddocr 1.6.1's reading of one image's output (T, K) (OCREngine._process_text_output, for checks without
    ddddocr): argmax per step, repeats merged, index 0 dropped, index i read as charset[i]."""
    text, before = [], None
    for i in output.argmax(-1).tolist():
        if i != before and i != 0 and i < len(charset):
            text.append(charset[i])
        before = i
    return "".join(text)


def read_exported(onnx_path, info, pixels):
    """The texts ddddocr's decoder reads from the exported model (run with onnxruntime on one thread) for uint8
    images (N, H, W, C) at the model's size: the tensor ddddocr would feed, then its decoding."""
    import numpy as np
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = 1, 1
    options.log_severity_level = 3
    session = ort.InferenceSession(os.fspath(onnx_path), options, providers=["CPUExecutionProvider"])
    x = (np.asarray(pixels, np.float32) / 255.0).transpose(0, 3, 1, 2)  # as ddddocr: float32 / 255, NCHW
    texts = []
    for i in range(len(x)):  # one at a time, as ddddocr runs it
        texts.append(ddddocr_text(session.run(None, {INPUT: x[i:i + 1]})[0][0], info["charset"]))
    return texts
