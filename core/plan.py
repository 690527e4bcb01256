"""A run's plan: config.py's settings as one read-only value (Settings), resolved once before training
(charset, label length, image size, model and options, epochs, batch, augmentation, label smoothing, starting
point), printed, passed down and stored in the checkpoint (its "config"); resume and --init read it back."""
import math
import os

import config
import models
from core import data
from core.checkpoint import PRETRAINED_CHECKPOINT, VARIED_CHECKPOINT, load_checkpoint

SMALL_SET = 20_000          # training images under which AUGMENT = -1 and LABEL_SMOOTHING = -1 switch on
AUTO_AUGMENT = 0.5          # AUGMENT = -1: the strength used for a small set
AUTO_SMOOTHING = 0.1        # LABEL_SMOOTHING = -1: the weight used for a small set
MIN_EPOCHS, MAX_EPOCHS = 10, 300  # EPOCHS = 0: the range the data-sized budget is kept in
SMALL_VALIDATION = 50       # a validation part of fewer images chooses nothing: one image is 2 % or more of it, and
                            # the epoch it would choose is noise; the run follows its schedule and keeps the last epoch
REFERENCE_PIXELS = 160 * 60  # IMAGES_SEEN counts images of this size (the generator's) or larger: a smaller image costs
SMALL_IMAGE_FACTOR = 2.0     # less to train on, so a run plans proportionally more of them, at most this many times
PERFECT_COOLDOWN = 0.1      # validation read without a mistake: the learning rate falls to 0 over this fraction of
                            # the planned epochs (at least 1), then the run stops (a longer run cannot read it better)


class Settings:
    """config.py's settings (NAME -> value) as one read-only value: `s.EPOCHS`, `s.as_dict()`. A resolved value is
    a new Settings (`s.replace(EPOCHS=40)`); config itself is never written while a run goes."""
    __slots__ = ("_values",)

    def __init__(self, values=None):
        object.__setattr__(self, "_values", dict(config.as_dict() if values is None else values))

    def __getattr__(self, name):
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(f"no setting {name}") from None

    def __setattr__(self, name, value):
        raise AttributeError(f"settings are read-only ({name}): make a new value with .replace({name}=...)")

    def __eq__(self, other):
        return isinstance(other, Settings) and self._values == other._values

    def replace(self, **changes):
        unknown = sorted(set(changes) - set(self._values))
        if unknown:
            raise KeyError(f"no setting {', '.join(unknown)}")
        return Settings({**self._values, **changes})

    def get(self, name, default=None):
        return self._values.get(name, default)

    def as_dict(self):
        return dict(self._values)

    def test_dir(self):
        return config.test_dir(self._values)

    def run_name(self):
        return config.run_name(self._values)


def describe_data(folder, codec, inferred, geometry, say):
    """The one block printed before training: what the data says, and which of it was inferred."""
    mark = lambda name: " (inferred)" if name in inferred else ""
    length = codec.length[0] if not codec.variable else f"{codec.length[0]}-{codec.length[1]}"
    width, height, channels = geometry
    say(f"data {folder}:\n"
        f"  charset   {codec.charset!r} ({len(codec.charset)} characters){mark('CHARSET')}"
        + ("" if codec.case_sensitive else ", case folded (CASE_SENSITIVE=False)") + "\n"
        f"  length    {length}{mark('LENGTH')}\n"
        f"  image     {width}x{height}, {'grey' if channels == 1 else 'colour'}{mark('IMAGE')}")


def resolve_data(s, say=print):
    """(settings, codec): CHARSET / LENGTH / IMAGE_* / CHANNELS as set, or ("infer" / 0) read from TRAIN_DIR's labels
    and images, resolved into the settings (so the checkpoint records them). ONLINE renders GEN_* captchas."""
    if s.ONLINE:
        charset = s.GEN_CHARSET if s.CHARSET == "infer" else s.CHARSET
        codec = data.Codec(charset, s.LENGTH or s.GEN_LENGTH, s.CASE_SENSITIVE)
        geometry = (s.IMAGE_WIDTH or s.GEN_WIDTH, s.IMAGE_HEIGHT or s.GEN_HEIGHT, s.CHANNELS or 1)
        inferred, folder = (), "ONLINE (generated: GEN_CHARSET, GEN_LENGTH, GEN_WIDTH x GEN_HEIGHT)"
        odd, looked, stray = [], 0, []
    else:
        folder = s.TRAIN_DIR
        codec, _ = data.infer_codec(folder, s.CHARSET, s.LENGTH, s.CASE_SENSITIVE, s.SKIP_BAD)
        inferred = {n for n, v in (("CHARSET", s.CHARSET == "infer"), ("LENGTH", not s.LENGTH)) if v}
        geometry = (s.IMAGE_WIDTH, s.IMAGE_HEIGHT, s.CHANNELS)
        items = data.read_labels(folder)
        paths = [p for p, _ in items]
        stray = (data.rare_case([t for _, t in items]) if codec.case_sensitive and s.CHARSET == "infer"
                 and "CASE_SENSITIVE" not in config.given() else [])
        if not all(geometry):
            common = [] if s.LENGTH else data.common_lengths(len(t) for _, t in items)  # not a mistyped label's
            lengths = (common[0], common[-1]) if common else codec.length
            found = data.infer_geometry(paths, height=s.IMAGE_HEIGHT, length=lengths)
            geometry = tuple(g or f for g, f in zip(geometry, found))
            inferred |= {"IMAGE"}
        odd, looked = data.odd_sizes(paths)
    describe_data(folder, codec, inferred, geometry, say)
    width, height, channels = geometry
    if stray:
        rare = {r for r, _, _ in stray}
        holding = [(p, t) for p, t in items if not rare.isdisjoint(t)]
        letters = data.file_list([f"{r!r} {n} times beside {r.swapcase()!r} {k}" for r, n, k in stray])
        files = data.file_list([f"{os.path.basename(p)} {t!r}" for p, t in holding])
        say(f"  warning   the labels hold {len(stray)} letters in both cases, each mostly in one ({letters}) in "
            f"{len(holding)} of {len(items)} labels ({files}): if the captcha draws them in one case, correct those "
            f"labels, or train without case, --case_sensitive=0 (it reads capitals; a site that takes its answer "
            f"without case accepts them); --case_sensitive=1 keeps them apart and this quiet")
    if odd:
        far = data.file_list([f"{os.path.basename(p)} {w}x{h}" for p, (w, h) in odd])
        say(f"  warning   {len(odd)} of {looked} images looked at are far from the others' size ({far}): each is "
            f"stretched to {width}x{height}; if they are not captchas of this kind, remove them")
    return s.replace(CHARSET=codec.charset, LENGTH=codec.length if codec.variable else codec.length[0],
                     IMAGE_WIDTH=width, IMAGE_HEIGHT=height, CHANNELS=channels), codec


def planned_images(s):
    """The images a run with EPOCHS = 0 plans to see: IMAGES_SEEN for images of REFERENCE_PIXELS (160x60) or more;
    for smaller ones as many more as they are smaller (the same compute), at most SMALL_IMAGE_FACTOR times as many:
    96x35 captchas get 2 x IMAGES_SEEN, 152x48 ones 1.32 x (an image size not yet resolved counts as large). A run
    with unlabelled images (UNLABELED_DIR) plans IMAGES_SEEN whatever the size: trained longer on its own readings,
    it keeps more of its mistakes (BENCHMARKS.md)."""
    pixels = s.IMAGE_WIDTH * s.IMAGE_HEIGHT
    factor = min(SMALL_IMAGE_FACTOR, REFERENCE_PIXELS / pixels) if pixels and not s.UNLABELED_DIR else 1.0
    return round(s.IMAGES_SEEN * max(1.0, factor))


def plan_epochs(s, n_train):
    """EPOCHS, or (0) enough epochs to see about planned_images(s), kept within MIN_EPOCHS..MAX_EPOCHS."""
    if s.EPOCHS:
        return s.EPOCHS
    return max(MIN_EPOCHS, min(MAX_EPOCHS, math.ceil(planned_images(s) / max(1, n_train))))


def plan_cooldown(s, epochs, epoch):
    """Epochs of cool-down after a PATIENCE stop at `epoch`: COOLDOWN of the planned ones, at least 1, within the
    plan; 0 = none."""
    if s.COOLDOWN <= 0:
        return 0
    return min(max(1, round(s.COOLDOWN * epochs)), epochs - epoch)


def plan_batch(s, n_train):
    """BATCH_SIZE, or (0) 128, or for a small set the power of 2 nearest a sixteenth of it, 16 to 128."""
    if s.BATCH_SIZE:
        return s.BATCH_SIZE
    if not n_train:
        return 128
    return max(16, min(128, 2 ** round(math.log2(max(1, n_train / 16)))))


def plan_patience(s, epochs, n_val=None):
    """PATIENCE, or (0) a quarter of the planned epochs, at least 3; None = never stop early (also, unless PATIENCE
    is set, for a validation part under SMALL_VALIDATION images: too small to tell progress from noise)."""
    if s.PATIENCE < 0 or not s.PATIENCE and n_val is not None and n_val < SMALL_VALIDATION:
        return None
    return s.PATIENCE or max(3, epochs // 4)


def resolve_small_set(s, n_train):
    """The settings with AUGMENT and LABEL_SMOOTHING resolved where they are -1 (by the set's size): AUTO_AUGMENT
    and AUTO_SMOOTHING for a set of `n_train` training images under SMALL_SET, else off (as for fresh ONLINE data,
    n_train None). A small set is memorised long before a run ends; both regularise it (BENCHMARKS.md: what each
    was compared against)."""
    small = n_train is not None and n_train < SMALL_SET
    return s.replace(AUGMENT=s.AUGMENT if s.AUGMENT >= 0 else AUTO_AUGMENT if small else 0.0,
                     LABEL_SMOOTHING=s.LABEL_SMOOTHING if s.LABEL_SMOOTHING >= 0 else AUTO_SMOOTHING if small else 0.0)


def resolve_batch(s, n_train, epochs):
    """The settings with the run's EPOCHS and BATCH_SIZE (plan_epochs, plan_batch) and AUGMENT / LABEL_SMOOTHING
    (resolve_small_set) resolved: what the checkpoint records."""
    return resolve_small_set(s, n_train).replace(EPOCHS=epochs, BATCH_SIZE=plan_batch(s, n_train))


def adopt_model(s, ckpt):
    """The settings with a checkpoint's MODEL and model options (fine-tuning and resume build its model)."""
    options = {o.upper(): v for o, v in models.registry.built_options(ckpt["model_name"], ckpt["build_args"]).items()}
    return s.replace(MODEL=ckpt["model_name"], **options)


# INIT auto's starting points. pretrained.pt: a model trained on rendered captchas of one font with affine
# augmentation. Not default.pt, the best reader of those captchas (trained on fresh ones without augmentation): as a
# starting point it read fewer images of the small real sets (BENCHMARKS.md, "Where own-data training starts").
# varied.pt: the same network trained on captchas of many fonts, sizes and colours (GEN_STYLE "varied"), for a run
# whose unlabelled images no teacher reads: there a few labels must teach the glyphs that the model's own confident
# readings then confirm. With 100 labels it lifted the suite's worst sets (rsce_colour 6 -> 29 %, swust_mixed 55 ->
# 77 %, jaccount 81 -> 94 %, its classifier carried over; BENCHMARKS.md, "Without a teacher: a starting point of
# many fonts" and "Dark and shaded pages in the varied style")
WEIGHTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "weights")
SHIPPED = os.path.join(WEIGHTS, PRETRAINED_CHECKPOINT)
VARIED = os.path.join(WEIGHTS, VARIED_CHECKPOINT)


def resolve_init(s, resume, say):
    """INIT, or for INIT = "auto" the shipped starting point when this run could start from it ("" otherwise): a run
    that reads a folder (not ONLINE), is not resumed, and whose MODEL and options are the shipped model's. The
    starting point is VARIED for a run with unlabelled images (UNLABELED_DIR, PSEUDO_RATIO) and no TEACHER (resolved
    before), else SHIPPED."""
    if s.INIT != "auto":
        return s.INIT
    if resume or s.ONLINE:
        return ""
    alone = bool(s.UNLABELED_DIR and s.PSEUDO_RATIO and not s.TEACHER)
    path = VARIED if alone else SHIPPED
    if not os.path.exists(path):
        say(f"INIT auto: random weights ({os.path.relpath(path)} is missing; `git checkout -- "
            f"{os.path.relpath(path)}` restores it, --init=PATH names another starting point)")
        return ""
    shipped = load_checkpoint(path)
    try:  # an unknown model or a trick it does not take: the same message make_model gives
        ours = models.model_options(s.MODEL, s.as_dict())
    except (KeyError, ValueError) as e:
        raise config.ConfigError(e.args[0]) from None
    theirs = models.registry.built_options(shipped["model_name"], shipped["build_args"])
    if shipped["model_name"] != s.MODEL or ours != theirs:
        say(f"INIT auto: random weights (the shipped {os.path.relpath(path)} is {shipped['model_name']} "
            f"{theirs}, this run {s.MODEL} {ours})")
        return ""
    about = "captchas of many fonts, sizes and colours, for a run whose unlabelled images no teacher reads" if alone \
        else "captchas"
    say(f"INIT auto: starting from the shipped {os.path.relpath(path)} (features learnt on generated {about}; "
        f"--init= starts from random weights, --init=PATH from another checkpoint)")
    return path


def check_resume(s, resume, path, codec, epochs):
    """Refuse a --resume=1 whose settings differ from the run it continues (another MODEL, data or EPOCHS)."""
    before = resume.get("config", {})
    now = dict(MODEL=s.MODEL, CHARSET=codec.charset, IMAGE_WIDTH=s.IMAGE_WIDTH,
               IMAGE_HEIGHT=s.IMAGE_HEIGHT, CHANNELS=s.CHANNELS, EMA=s.EMA)
    differ = [f"{k} {before[k]!r} -> {v!r}" for k, v in now.items() if k in before and before[k] != v]
    planned = resume.get("planned_epochs", before.get("EPOCHS"))
    if planned and epochs != planned:
        differ.append(f"EPOCHS {planned} -> {epochs}")
    if differ:
        raise config.ConfigError(f"--resume=1 continues {path}, trained with other settings ({'; '.join(differ)}). "
                                 f"Resume with the run's own settings, or start a new run from it: "
                                 f"--init={path} (fine-tuning, a fresh schedule)")

