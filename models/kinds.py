"""One record per head kind: everything the scripts need to know about a head, in one place.

    kind = models.head("cnn_ctc")             # by model name (or by kind: models.head("ctc"))
    kind.num_classes(codec)                    # K of the logits (B, T, K)
    kind.loss(logits, labels, lengths)         # training loss (label_smoothing=... optional)
    kind.decode(logits, codec[, temperature])  # -> texts, confidences, per-character probabilities
    kind.candidates(logits, codec, k[, temperature])  # -> per image, per character, the k likeliest [(char, p), ...]
    kind.options                               # the build options the head takes
    kind.describe()                            # what its output (B, T, K) holds, in words

Scripts look a model's head up here instead of testing names or kinds themselves.
"""
from dataclasses import dataclass
from typing import Callable

import models.decoding as decoding
import models.losses as losses
from models.heads import CTCHead, FixedHead


@dataclass(frozen=True)
class HeadKind:
    kind: str                  # "fixed" or "ctc", as checkpoints and exported models store it
    module: type               # the nn.Module: module(shape, positions, num_classes, **options)
    column_stride: int         # the backbone's width stride the head needs (CTC reads columns as time steps)
    options: tuple             # build options the head takes (models.OPTIONS holds their neutral values)
    classes: Callable          # codec -> number of classes K
    loss: Callable             # (logits, labels, lengths, label_smoothing=0.0) -> scalar
    decode: Callable           # (logits, codec, temperature=1.0) -> texts, confidences, per-character probabilities
    candidates: Callable       # (logits, codec, k, temperature=1.0) -> per image, per character, [(char, p), ...]
    output: str                # what T and K are

    def num_classes(self, codec):
        return self.classes(codec)

    def describe(self):
        return f"{self.kind} head: {self.output}"


FIXED = HeadKind(
    kind="fixed", module=FixedHead, column_stride=16, options=("pool", "neck", "bnneck", "dropout"),
    classes=lambda codec: codec.fixed_classes, loss=losses.fixed_loss, decode=decoding.fixed_decode,
    candidates=decoding.fixed_candidates,
    output="per label position, the charset (+ a padding class when lengths vary)")

CTC = HeadKind(
    kind="ctc", module=CTCHead, column_stride=8, options=("pool", "sequence", "hidden", "bnneck", "dropout"),
    classes=lambda codec: codec.ctc_classes, loss=losses.ctc_loss, decode=decoding.ctc_decode,
    candidates=decoding.ctc_candidates,
    output="per image column, blank + the charset (CTC, blank = 0)")

HEADS = {h.kind: h for h in (FIXED, CTC)}
