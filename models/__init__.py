"""Model registry (timm style): `build_model(name, ...)` and the head kind each model has.

Every model maps images (B, C, H, W) in [-1, 1] to logits (B, T, K):
  head "fixed": T = label positions, K = charset (+1 padding class for variable lengths)
  head "ctc":   T = columns along the width, K = charset + 1 (blank = 0)
A backbone registers twice: `name` with the fixed head and `name_ctc` with the CTC head.

Options (tricks and head settings) are build arguments, stored in checkpoints; `OPTIONS` holds their
neutral values. A model takes only the options that apply to it (`MODELS[name].options`).
"""
import inspect
from collections import namedtuple

import torch.nn as nn

from models.adapt import load_pretrained, output_shape  # noqa: F401  (load_pretrained: for train.py)
from models.heads import CTCHead, FixedHead

Entry = namedtuple("Entry", "builder head options")
MODELS = {}  # name -> Entry(builder, head kind, option names)
ARGS = ("in_channels", "num_classes", "positions", "height", "width")
OPTIONS = dict(ibn=False, attention="", pool="flat", neck=0, bnneck=False, dropout=0.2, sequence="lstm", hidden=256)
HEAD_OPTIONS = {"fixed": ("pool", "neck", "bnneck", "dropout"),
                "ctc": ("pool", "sequence", "hidden", "bnneck", "dropout")}


class CaptchaModel(nn.Module):
    """features: (B, C, H, W) -> (B, C', h, w); head: -> logits (B, T, K)."""

    def __init__(self, features, head):
        super().__init__()
        self.features, self.head = features, head

    def forward(self, x):
        return self.head(self.features(x))


def _keywords(fn):
    return tuple(p for p in inspect.signature(fn).parameters if p not in ARGS + ("column_stride",))


def register(name, head="fixed"):
    """Decorator for a builder(in_channels, num_classes, positions, height, width, **options) -> model."""
    def add(builder):
        MODELS[name] = Entry(builder, head, _keywords(builder))
        return builder
    return add


def register_backbone(name, features):
    """Register `name` (fixed head) and `name_ctc` (CTC head) for a backbone.

    features(in_channels, height, width, column_stride, **tricks) -> module (B, C, H, W) -> (B, C', h, w)
    with h = H/16 and w = W/column_stride (16 for the fixed head, 8 for CTC, which needs the columns).
    """
    tricks = _keywords(features)

    def fixed(in_channels, num_classes, positions, height, width, pool="flat", neck=0, bnneck=False,
              dropout=0.2, **kw):
        body = features(in_channels, height, width, 16, **kw)
        shape = output_shape(body, in_channels, height, width)
        return CaptchaModel(body, FixedHead(shape, positions, num_classes, pool, neck, bnneck, dropout))

    def ctc(in_channels, num_classes, positions, height, width, pool="flat", sequence="lstm", hidden=256,
            bnneck=False, dropout=0.2, **kw):
        body = features(in_channels, height, width, 8, **kw)
        shape = output_shape(body, in_channels, height, width)
        return CaptchaModel(body, CTCHead(shape, positions, num_classes, pool, sequence, hidden, bnneck, dropout))

    MODELS[name] = Entry(fixed, "fixed", HEAD_OPTIONS["fixed"] + tricks)
    MODELS[f"{name}_ctc"] = Entry(ctc, "ctc", HEAD_OPTIONS["ctc"] + tricks)


def head_of(name):
    if name not in MODELS:
        raise KeyError(f"unknown model {name!r}; registered: {', '.join(MODELS)}")
    return MODELS[name].head


def model_options(name, settings):
    """The options `name` takes, read from `settings` (config names: {"IBN": True, ...}; missing = neutral).

    An option set away from its neutral value on a model that does not take it is an error, so a run
    never claims a trick it did not use.
    """
    head_of(name)  # an unknown name: KeyError listing the registered ones
    takes = MODELS[name].options
    options = {}
    for option, neutral in OPTIONS.items():
        value = settings.get(option.upper(), neutral)
        if option in takes:
            options[option] = value
        elif value != neutral:
            users = [n for n, e in MODELS.items() if option in e.options]
            raise ValueError(f"{option.upper()}={value!r} does not apply to {name}; models that take it: "
                             f"{', '.join(users)}")
    return options


def build_model(name, in_channels, num_classes, positions, height, width, **options):
    """Build a registered model. The arguments (a plain dict) are stored in checkpoints to rebuild it."""
    head_of(name)
    entry = MODELS[name]
    unknown = set(options) - set(entry.options)
    if unknown:
        raise ValueError(f"{name} does not take {', '.join(sorted(unknown))}; it takes {', '.join(entry.options)}")
    return entry.builder(in_channels=in_channels, num_classes=num_classes, positions=positions, height=height,
                         width=width, **options)


# importing the families registers their models, in this order
from models import cnn, crnn, resnet, densenet, mobilenet, efficientnet, shufflenet, regnet, convnext  # noqa: E402,F401
