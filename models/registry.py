"""The registry: MODELS by name, the options each takes, build_model, and the head kind of each model."""
import inspect
from collections import namedtuple

import torch.nn as nn

from models.adapt import output_shape
from models.kinds import HEADS, HeadKind  # noqa: F401

Entry = namedtuple("Entry", "builder head options defaults", defaults=({},))
MODELS = {}  # name -> Entry(builder, head kind, option names, the model's own values for neutral settings)
ARGS = ("in_channels", "num_classes", "positions", "height", "width")
OPTIONS = dict(ibn=False, attention="", pool="flat", neck=0, bnneck=False, dropout=0.2, sequence="none", hidden=256,
               widen=1.0)


class CaptchaModel(nn.Module):
    """features: (B, C, H, W) -> (B, C', h, w); head: -> logits (B, T, K)."""

    def __init__(self, features, head):
        super().__init__()
        self.features, self.head = features, head

    def forward(self, x):
        return self.head(self.features(x))


def _keywords(fn):
    return tuple(p for p in inspect.signature(fn).parameters if p not in ARGS + ("column_stride",))


def register(name, head="fixed", **defaults):
    """Decorator for a builder(in_channels, num_classes, positions, height, width, **options) -> model.

    `defaults`: the model's own value of an option wherever the setting is at its neutral value."""
    def add(builder):
        MODELS[name] = Entry(builder, head, _keywords(builder), defaults)
        return builder
    return add


def register_backbone(name, features):
    """Register `name` (fixed head) and `name_ctc` (CTC head) for a backbone.

    features(in_channels, height, width, column_stride, **tricks) -> module (B, C, H, W) -> (B, C', h, w)
    with h = H/16 and w = W/column_stride (16 for the fixed head, 8 for CTC, which needs the columns).
    """
    tricks = _keywords(features)
    for model_name, kind in ((name, HEADS["fixed"]), (f"{name}_ctc", HEADS["ctc"])):
        MODELS[model_name] = Entry(_with_head(features, kind), kind.kind, kind.options + tricks)


def _with_head(features, kind):
    """builder(in_channels, num_classes, positions, height, width, **options): `features` + the head of `kind`."""
    def build(in_channels, num_classes, positions, height, width, **options):
        head_options = {k: options.pop(k) for k in kind.options if k in options}
        body = features(in_channels, height, width, kind.column_stride, **options)
        shape = output_shape(body, in_channels, height, width)
        return CaptchaModel(body, kind.module(shape, positions, num_classes, **head_options))
    return build


def _entry(name):
    if name not in MODELS:
        raise KeyError(f"unknown model {name!r}; registered: {', '.join(MODELS)}")
    return MODELS[name]


def head_of(name):
    """The head kind of a registered model: "fixed" or "ctc"."""
    return _entry(name).head


def head(name):
    """The head-kind record (models/kinds.py) of a registered model, or of a kind given by name ("fixed", "ctc")."""
    if name in HEADS and name not in MODELS:
        return HEADS[name]
    return HEADS[_entry(name).head]


def neutral(name, option):
    """The value `option` has on model `name` when the setting is at its neutral value."""
    return MODELS[name].defaults.get(option, OPTIONS[option]) if name in MODELS else OPTIONS[option]


def describe(name, options):
    """The clovaai-style name of model `name` built with `options` ({option: value}, lower-case names from
    OPTIONS; missing = neutral): the model and every option changed from neutral, in OPTIONS order, e.g.
    resnet18_ctc-ibn-cbam-dual-bnneck. A flag reads as its name, a choice as its value ("none" as no<option>),
    a number as <option><value>."""
    parts = [name]
    for option, value in ((o, options.get(o, n)) for o, n in OPTIONS.items()):
        if value == OPTIONS[option] or value == neutral(name, option):
            continue
        if isinstance(value, bool):
            parts.append(option if value else f"no{option}")
        elif isinstance(value, str):
            parts.append(value if value not in ("", "none") else f"no{option}")
        else:
            parts.append(f"{option}{value:g}")
    return "-".join(parts)


def model_options(name, settings):
    """The options `name` takes, read from `settings` (config names: {"IBN": True, ...}; missing = neutral).

    An option set away from its neutral value on a model that does not take it is an error, so a run
    never claims a trick it did not use.
    """
    takes = _entry(name).options  # an unknown name: KeyError listing the registered ones
    options = {}
    for option, off in OPTIONS.items():
        value = settings.get(option.upper(), off)
        if option in takes:
            options[option] = neutral(name, option) if value == off else value
        elif value != off:
            users = [n for n, e in MODELS.items() if option in e.options]
            raise ValueError(f"{option.upper()}={value!r} does not apply to {name}; models that take it: "
                             f"{', '.join(users)}")
    return options


def built_options(name, build_args):
    """{option: value} of a model built with `build_args` (a checkpoint's): every option `name` takes, an option
    missing from them (a checkpoint older than the option) at its neutral value, as build_model builds it."""
    return {o: build_args.get(o, neutral(name, o)) for o in _entry(name).options if o in OPTIONS}


def build_model(name, in_channels, num_classes, positions, height, width, **options):
    """Build a registered model. The arguments (a plain dict) are stored in checkpoints to rebuild it; an option
    left out takes its neutral value for this model."""
    entry = _entry(name)
    unknown = set(options) - set(entry.options)
    if unknown:
        raise ValueError(f"{name} does not take {', '.join(sorted(unknown))}; it takes {', '.join(entry.options)}")
    options = {**{o: neutral(name, o) for o in entry.options if o in OPTIONS}, **options}
    return entry.builder(in_channels=in_channels, num_classes=num_classes, positions=positions, height=height,
                         width=width, **options)

