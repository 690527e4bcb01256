"""A model ready for inference (Predictor): a checkpoint run by torch, or an exported model run by onnxruntime,
read by the same decoder."""
import functools
import logging
import os

import numpy as np
import torch

import config
import models
from core import data
from core.batches import to_float
from core.checkpoint import (ONNX_INPUT, ONNX_OUTPUT, CheckpointError, load_checkpoint, model_from_checkpoint,
                             onnx_checkpoint)
from core.device import autocast
from core.answers import check_answer_kind, parse
from core.coverage import is_unsure
from core.metrics import accuracy

log = logging.getLogger("inference")

# TTA: the (rows, columns) each copy of an image is rolled by before it is read, in order (the first n are used);
# the pixels leaving one side come back on the other (a few rows or columns of background)
SHIFTS = ((0, 0), (-2, 0), (2, 0), (0, -2), (0, 2), (0, -4), (0, 4))
# TTA: only an image read once with a confidence below this is read again as shifted copies that vote; the others
# keep their reading. On the suite's hardest sets 5-18 % of the images are so re-read, and the vote of those gives
# what reading every image as 5 copies gives, within 5 images of 2743 (BENCHMARKS.md)
REREAD_BELOW = 0.95


def shifted_copies(arrays, copies, first=0):
    """uint8 (N, H, W, C) -> ((copies - first) x N, H, W, C): the images rolled by each of the first `copies` SHIFTS
    from the `first`-th on, copy by copy (first=0: the unshifted images first; first=1: only the shifted ones)."""
    return np.concatenate([np.roll(arrays, shift, axis=(1, 2)) for shift in SHIFTS[first:copies]])


def vote(texts, confidences, copies):
    """The readings of `copies` copies of N images (copy by copy, as shifted_copies orders them) -> per image the
    index (into texts) of the copy that stands for the vote, and the vote's confidence. The text with the largest
    summed confidence wins (a tie: the copy read first, the unshifted image); its confidence is that sum over the
    number of copies (copies that read another text count 0: disagreement lowers it); the copy that stands for it
    is its most confident reading of that text (its per-character probabilities and candidates are reported)."""
    n = len(texts) // copies
    picked, voted = [], []
    for i in range(n):
        weight, best = {}, {}
        for j in range(i, len(texts), n):
            weight[texts[j]] = weight.get(texts[j], 0.0) + confidences[j]
            if texts[j] not in best or confidences[j] > confidences[best[texts[j]]]:
                best[texts[j]] = j
        winner = max(weight, key=weight.get)  # the first text reaching the largest weight: the unshifted one on a tie
        picked.append(best[winner])
        voted.append(weight[winner] / copies)
    return picked, voted


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
    checkpoint's). `copies` > 1 (TTA): an image read with a confidence under REREAD_BELOW is read again as that many
    shifted copies (SHIFTS), and their vote replaces its reading.
    """

    def __init__(self, path, device="cpu", threads=0, fuse=True, temperature=None, answer=None, copies=1):
        self.path = path
        if not isinstance(copies, int) or not 1 <= copies <= len(SHIFTS):
            raise ValueError(f"copies {copies!r}: expected 1-{len(SHIFTS)} (TTA)")
        self.copies = copies  # TTA: shifted copies of each image read, whose readings vote (1: each image read once)
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
            self.model, self.codec = model_from_checkpoint(self.ckpt, self.device, path)
            self.parameters = sum(p.numel() for p in self.model.parameters())
        self.height, self.width = self.ckpt["image_size"]
        self.channels = self.ckpt["channels"]
        if self.ckpt["head"] not in models.HEADS:
            raise CheckpointError(f"{path}: head {self.ckpt['head']!r} is not one of {', '.join(models.HEADS)}")
        self.head = models.head(self.ckpt["head"])
        if self.session is not None:  # the metadata must describe the graph: its classes are the charset's
            classes = self.session.get_outputs()[0].shape[-1]
            if isinstance(classes, int) and classes != self.head.num_classes(self.codec):
                raise CheckpointError(f"{path}: its metadata (charset of {len(self.codec.charset)}, {self.ckpt['head']} "
                                      f"head) does not match its graph ({classes} classes): export it again with "
                                      f"`python export.py CHECKPOINT.pt`")
        # confidences are read at the checkpoint's temperature (fitted on its validation part; older ones: 1), or
        # at the one given
        self.temperature = float(temperature or self.ckpt.get("temperature") or 1.0)
        self.decode = functools.partial(self.head.decode, temperature=self.temperature)
        # ANSWER: what the checkpoint was trained for ("arith": sums, whose computed answer goes with each reading),
        # unless `answer` says otherwise (a model trained before the setting existed)
        self.answer = check_answer_kind(answer or self.ckpt.get("answer") or self.ckpt.get("config", {}).get("ANSWER")
                                        or "none")
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
            return self.model(to_float(x)).float().cpu()

    def predict_arrays(self, arrays):
        """arrays: uint8 (N, H, W, C) -> texts, confidences, per-character probabilities (with copies > 1: an image
        read with a confidence below REREAD_BELOW gets the vote of that many shifted copies of it, see `vote`)."""
        return self._predict(arrays)[:3]

    def _predict(self, arrays, k=0):
        """(texts, confidences, per-character probabilities, candidates: k per character, or None for k = 0). With
        copies > 1, the images read with a confidence below REREAD_BELOW are read again as shifted copies, and the
        vote of all their copies (the first reading included) replaces their reading."""
        scores = self.scores(arrays)
        texts, confidences, chars = self.decode(scores, self.codec)
        candidates = self.head.candidates(scores, self.codec, k, self.temperature) if k else None
        unsure = [i for i, c in enumerate(confidences) if c < REREAD_BELOW] if self.copies > 1 else []
        if not unsure:
            return texts, confidences, chars, candidates
        more = self.scores(shifted_copies(arrays[unsure], self.copies, first=1))  # the shifted copies only
        t, c, p = self.decode(more, self.codec)
        all_texts, all_confidences = [texts[i] for i in unsure] + t, [confidences[i] for i in unsure] + c
        all_chars = [chars[i] for i in unsure] + p
        all_candidates = ([candidates[i] for i in unsure] + self.head.candidates(more, self.codec, k, self.temperature)
                          if k else None)
        picked, voted = vote(all_texts, all_confidences, self.copies)
        for i, j, v in zip(unsure, picked, voted):
            texts[i], confidences[i], chars[i] = all_texts[j], v, all_chars[j]
            if k:
                candidates[i] = all_candidates[j]
        return texts, confidences, chars, candidates

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
        best first, from the same forward pass (with copies > 1: of the copy that stands for the vote)."""
        return self._predict(arrays, k)


def run_test(predictor, folder, batch_size=512, skip_bad=False, quiet=False, cache_dir=None):
    """{seq_acc, char_acc, paths, truths, preds, confs, model} for a folder (cache_dir: CACHE_DIR, None = config's)."""
    cache_dir = config.CACHE_DIR if cache_dir is None else cache_dir
    c = predictor.ckpt
    ds = data.load_folder(folder, predictor.codec, predictor.width, predictor.height, predictor.channels,
                          cache_dir, skip_bad, quiet, copies=1)
    preds, confs = predictor.read(ds.images, batch_size)
    char_acc, seq_acc = accuracy(ds.texts, preds)
    return dict(seq_acc=seq_acc, char_acc=char_acc, paths=ds.paths, truths=ds.texts, preds=preds, confs=confs,
                model=c["model_name"])


def check_labels(codec, folder, path):
    """One line, with the fix, when the folder's labels cannot be read by the model: another case or charset."""
    texts = [t for _, t in data.read_labels(folder)]
    outside = sorted({c for t in texts for c in codec.normalize(t) if c not in codec.index})
    if not outside:
        return
    folded = sorted({c for c in outside if c.swapcase() in codec.index})
    letters = {c for c in codec.charset if c.isalpha()}
    both = any(c.islower() for c in letters) and any(c.isupper() for c in letters)
    if folded and len(folded) == len(outside) and not both:  # the model's charset is of one case, the labels not
        case = "lower" if all(c.islower() for c in folded) else "mixed"
        raise data.DataError(f"{folder}: its labels are {case}-case, {path}'s charset {codec.charset!r} is not: "
                             f"train a model on such labels (labels keep their case), or train with "
                             f"--case_sensitive=0 to fold case")
    bad = sum(any(c in outside for c in codec.normalize(t)) for t in texts)
    if both and folded:  # a case-sensitive model whose labels never held one case of a letter
        raise data.DataError(f"{folder}: {bad} of {len(texts)} labels hold characters {''.join(outside)!r} that {path} "
                             f"cannot read: its charset {codec.charset!r} holds letters in both cases, but no training "
                             f"label held {', '.join(repr(c) for c in outside)}; label training images that show "
                             f"{'it' if len(outside) == 1 else 'them'} and train again")
    raise data.DataError(f"{folder}: {bad} of {len(texts)} labels hold characters {''.join(outside)!r} that {path} "
                         f"cannot read (its charset {codec.charset!r}): test on captchas of the kind it was trained on, "
                         f"or train a model on this folder (python train.py --train_dir=...)")


def reading(text, confidence, answer="none", min_confidence=0.0):
    """What predict.py and the API say of one reading: {"text", "confidence"}, with ANSWER "arith" also "answer"
    (the computed value as text, or None and "answer_error": why the reading is not a sum), and with
    MIN_CONFIDENCE > 0 "unsure": whether the confidence is below it (the text is given either way)."""
    out = dict(text=text, confidence=round(float(confidence), 4))
    if answer == "arith":
        parsed = parse(text)
        out["answer"] = parsed.text
        if not parsed.ok:
            out["answer_error"] = parsed.reason
    if min_confidence:
        out["unsure"] = is_unsure(confidence, min_confidence)
    return out
