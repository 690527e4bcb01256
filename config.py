"""Every knob of the project, as plain constants. Edit this file, or override any name for one run with
`--NAME=value` on any script's command line (case-insensitive: `--model=resnet18` sets MODEL).

Values are read as Python literals where they look like one (`--lr=3e-3`, `--length=(4,6)`), and must
match the type of the default below; an unknown name is refused with the list of valid names.
"""
import ast
import math
import os
import re
import string
import sys

# --- data (read from TRAIN_DIR unless set: printed in one block before training, kept in the checkpoint) ---------
CHARSET = "infer"         # characters a label may contain, in class order; "infer" = those of TRAIN_DIR's labels
CASE_SENSITIVE = True     # False: labels are upper-cased (and so is CHARSET) before training and scoring
LENGTH = 0                # characters per label; a tuple (min, max) allows variable lengths; 0 = from the labels
IMAGE_WIDTH = 0           # pixels the model sees; 0 = from the images (their aspect ratio kept, a multiple of 8, at
                          # least 18 pixels a character of the longest label, 32 where labels vary in length)
IMAGE_HEIGHT = 0          # pixels; 0 = from the images (the height of the larger ones, brought into 32-64)
CHANNELS = 0              # 1 = grey, 3 = colour (RGB); 0 = colour if the images are coloured, else grey
VALIDATION = 0.1          # fraction of TRAIN_DIR held out (seeded by SEED) to pick the best checkpoint and to stop
LIMIT = 0                 # use only a seeded sample of this many TRAIN_DIR images (validation included; only they are
                          # decoded, so a huge folder costs only its sample); 0 = all
                          # (how many labelled images does this captcha need? train with 100, 250, 500, ...)
SKIP_BAD = False          # True: drop unreadable / mislabelled files with a warning instead of stopping

# --- unlabelled images (pseudo-labels: the model's own confident readings, read again as it improves) ------------
UNLABELED_DIR = ""        # a folder of images without labels, also trained on with pseudo-labels; "" = none. The same
                          # folder as TRAIN_DIR: its images labels.tsv does not list (or, with LIMIT, those not sampled)
PSEUDO_THRESHOLD = 0.9    # an image gets a pseudo-label when the model reads it with at least this sequence confidence
PSEUDO_FROM = 0.0         # pseudo-labels start once the kept model reads this fraction of validation right (0-1); 0 = at
                          # once (refresh: after the first epoch; only readings of PSEUDO_THRESHOLD confidence are used)
PSEUDO_EVERY = 1.0        # refresh: read them again when a better model is kept and the run has trained on at least this
                          # many times the number of unlabelled images since the last reading (reading them costs time)
PSEUDO_RATIO = 7.0        # unlabelled images per labelled image in each epoch, at most (FixMatch's mu); with a few
                          # hundred labels more of them an epoch means more training in the 300 epochs a run plans.
                          # Thousands of labels get a smaller share (at least 1): an epoch holds at most IMAGES_SEEN /
                          # 10 images, so the shortest planned run (10 epochs) sees no more than IMAGES_SEEN
PSEUDO_MODE = "online"    # "online" (FixMatch): at every step the weight average reads the step's unlabelled images
                          # and its confident readings train the model on strongly augmented copies of them;
                          # "refresh": the kept model reads every unlabelled image between epochs (PSEUDO_EVERY)
TEACHER = "auto"          # "ddddocr": a pretrained general reader (pip install -r requirements-ddddocr.txt) reads the
                          # unlabelled images before training: with no labels at all (UNLABELED_DIR = TRAIN_DIR, no
                          # labels.tsv) its confident readings are the training labels, charset and length included;
                          # with some labels they are the first pseudo-labels, from epoch 1 (a character it reads for
                          # another one on the labelled images, an 'o' for a 'q', accepts both, weighted by the
                          # labels). "ddddocr2": ddddocr's two bundled models (its default and its beta) read every
                          # image, and only the readings they agree on are trusted (three times the reading time).
                          # "auto": ddddocr2 where ddddocr is installed, for a run with some labels and for the
                          # labelling page (a run with no labels names it); "" = none
TEACHER_THRESHOLD = 0.5   # a teacher's reading is used when it reads it with at least this sequence confidence (0-1)
TEACHER_MARGIN = -1.0     # a border the teacher reads each image with, left and right, in the image's edge colour, as
                          # a fraction of its height (text touching an edge loses its first or last character without
                          # one); -1 = the one of 0, 0.25, 0.5, 1 that it reads a sample of the images most surely with

# --- generated captchas (captchaGenerator.py, and ONLINE training) -----------------------------------------
GEN_CHARSET = string.digits + string.ascii_uppercase  # characters drawn from
GEN_LENGTH = 4            # characters per captcha
GEN_WIDTH = 160           # pixels (GEN_STYLE "varied": the width follows the text; ONLINE resizes it to IMAGE_WIDTH)
GEN_HEIGHT = 60           # pixels
GEN_STYLE = "imagecaptcha"  # "imagecaptcha": the captcha package's style; "varied" (captchaGenerator.py and
                          # ONLINE): each character in its own font, size, angle, colour (pale ones too) and, when
                          # GEN_CHARSET holds one case, either case; lines, curves, dots, tinted pages; a third of the
                          # images ImageCaptcha's style (core/varied.py)
FONTS = ()                # .ttf / .otf files; () = the captcha package's own fonts ("varied": every Latin font the
                          # machine has, e.g. Debian's fonts-dejavu, fonts-liberation2, fonts-urw-base35; a folder
                          # named here stands for the Latin fonts in it)

# --- model ----------------------------------------------------------------------------------------------
MODEL = "cnn_ctc"         # any name in models.MODELS (python -c "import models; print(list(models.MODELS))")
                          # <backbone> has the fixed-length head, <backbone>_ctc the CTC head; crnn is CTC

# --- model options (tricks and head; a model takes those that apply, see README "Model zoo") --------------------
IBN = False               # IBN-a: instance + batch norm in the first three stages (ResNet family)
ATTENTION = ""            # "" = none, "se" (squeeze-excitation), "cbam" (channel + spatial); ResNet family
POOL = "flat"             # per column: "flat" keeps every cell; "avg", "max" or "dual" (avg + max) pool the height
NECK = 0                  # fixed head: size of a per-character feature (needed by CENTER_LOSS); 0 = none
BNNECK = False            # BatchNorm between feature and classifier (BNNeck); the pre-BN feature feeds the center loss
DROPOUT = 0.2             # before the classifier, 0-1
SEQUENCE = "none"         # CTC head: "none" (each column read on its own), or a 2-layer bidirectional "lstm" / "gru"
HIDDEN = 256              # CTC head: RNN units per direction
WIDEN = 1.0               # cnn / cnn_ctc: channels of every stage times this (2.0: about 4 x the compute and weights)
CENTER_LOSS = 0.0         # weight of the center loss (fixed head with NECK > 0, or CTC head); 0 = off
CENTER_LR = 0.5           # rate (0-1) at which the center-loss centres move toward each batch's features
LABEL_SMOOTHING = -1.0    # 0-1; CTC heads: weight of a penalty on over-confident frames instead; -1 = by the set's
                          # size: 0.1 under 20 000 training images (small sets need it, as with AUGMENT), else off
PRETRAINED = ""           # local torchvision weight file (.pth) to start the backbone from; "" = random init

# --- training -------------------------------------------------------------------------------------------
EPOCHS = 0                # passes over the training images; 0 = from their number (about IMAGES_SEEN images in all,
                          # 10-300 epochs); the run also stops early (PATIENCE, TIME_LIMIT, TARGET_ACCURACY)
IMAGES_SEEN = 400_000     # with EPOCHS = 0: training images the run plans to see (a small set is seen more often);
                          # images under 160x60 pixels are cheaper: proportionally more, at most twice as many
                          # (96x35: 800 000), except in a run with UNLABELED_DIR
PATIENCE = 0              # stop after this many epochs without progress on validation (fewer errors, a better character
                          # accuracy or a lower loss); 0 = a quarter of the planned epochs (at least 3); negative = never
COOLDOWN = 0.0            # > 0: when PATIENCE ends a run, the learning rate first falls linearly to 0 over this fraction
                          # of the planned epochs (at least 1), and a cooled epoch within core.engine.SLACK of the fewest
                          # validation errors is kept whatever its loss; 0 = stop at once (measured: BENCHMARKS.md)
EMA = 0.999               # > 0: evaluate, keep and save an exponential moving average of the weights, decay
                          # min(EMA, (1 + n) / (10 + n)) after n steps; 0 = the trained weights themselves
BATCH_SIZE = 0            # images per step; 0 = 128, or for a set under 2048 training images a power of 2 near
                          # a sixteenth of it (at least 16), so that a small set still gets many steps an epoch
LR = 3e-3                 # peak learning rate of the one-cycle schedule (AdamW)
AUGMENT = -1.0            # strength of a random affine jitter of training batches (1.0 = a few px / degrees); 0 = off;
                          # -1 = by the set's size: 0.5 under 20 000 training images (small sets need it), else off
PERSPECTIVE = 0.0         # strength of a random perspective warp (1.0 = corners move ~6 % of the size); 0 = off
BLUR = 0.0                # probability that a training image is Gaussian-blurred (sigma 0.3-1.2); 0 = off
NOISE = 0.0               # standard deviation of added Gaussian pixel noise (on the [-1, 1] scale); 0 = off
CONTRAST = 0.0            # strength of random contrast / brightness (and colour, for CHANNELS=3) changes; 0 = off
LINES = 0.0               # probability that a training image is crossed by a random interference curve; 0 = off
INIT = "auto"             # checkpoint to start from (fine-tuning); a different charset re-initialises only the head
                          # (a CTC head keeps the rows of the blank and of the characters both know).
                          # "auto" = the shipped weights/pretrained.pt when MODEL is its model (cnn_ctc, default options)
                          # and the run reads a folder: its features, learnt on generated captchas, carry over to
                          # other captchas (a few hundred labelled images then suffice); weights/varied.pt (captchas
                          # of many fonts and colours) for a run with unlabelled images and no TEACHER; "" = random
WEIGHT_DECAY = 1e-4       # AdamW weight decay
TIME_LIMIT = 0.0          # seconds of training after which the run stops (at the end of that epoch); 0 = none
TARGET_ACCURACY = 0.0     # stop once validation sequence accuracy reaches this (0-1); 0 = never
SEED = 1                  # seeds weight init and batch order
RUN = ""                  # run name: weights/<RUN>_best.pt, rows of results.txt; "" = MODEL and its options.
                          # A new run never replaces another's checkpoints: a taken name becomes <RUN>-2, -3, ...
DEVICE = "auto"           # "auto" (cuda, then mps, then cpu), or "cpu", "cuda", "cuda:1", "mps"
THREADS = 0               # CPU threads for torch; 0 = every core. The teacher (TEACHER) reads in this many
                          # processes of one thread each (0: one a core, at most 8)
COMPILE = False           # torch.compile the model (worth it on a GPU; the first steps wait while it compiles)
ONLINE = False            # fresh captchas every epoch, rendered in memory by generator processes (TRAIN_DIR is not read)
ONLINE_COUNT = 100_000    # ONLINE: captchas per epoch (all processes together under torchrun)
ONLINE_WORKERS = 0        # ONLINE: generator processes per training process; 0 = the cores training leaves free
                          # (GPU: every core but one per process; CPU: half the cores, training threads the rest)
ONLINE_TEST = 2000        # ONLINE: captchas rendered (with their own seed) to validate on
ONLINE_REPLAY = 0         # ONLINE: 0 = every step waits for fresh captchas; N > 0 = the last N captchas rendered stay on
                          # the device, and a step whose fresh ones are not rendered yet trains on a batch drawn from
                          # them instead (AUGMENT applies): where the generators are the bottleneck (a GPU), the model
                          # trains at its own speed on all they render. An epoch is ONLINE_COUNT images either way
SHOW = 8                  # samples in the "truth | prediction | ok" table at the end of a run (test.py: of its mistakes)

# --- reading (predict.py, test.py, app.py) ----------------------------------------------------------------
ANSWER = "none"           # "arith": the captchas are sums like "12+3=?": predict.py, test.py and the API also give the
                          # computed answer. train.py stores it in the checkpoint; set it here for an older model
TTA = 5                   # test-time augmentation: predict.py, test.py and the API read an image they read with a
                          # confidence under 0.95 again as this many copies, shifted 2 pixels up, down, left and right
                          # (6-7: 4 pixels left and right too), whose readings vote (the confidence: the winning
                          # text's summed confidence over the copies); the others keep their reading. 1 = each image
                          # read once (training's own validation and test lines always read once)
MIN_CONFIDENCE = 0.0      # predict.py and the API mark a reading below this sequence confidence "unsure" (its text is
                          # kept); test.py's accuracy-against-coverage table helps choose it (0-1); 0 = never unsure

# --- paths ----------------------------------------------------------------------------------------------
DATASET_DIR = "dataset"               # root of generated data
TRAIN_DIR = "dataset/train"           # training images (file-name labels or labels.tsv)
TEST_DIR = ""                         # reported after every epoch, never used to choose; "" = the folder "test"
                                      # beside TRAIN_DIR when TRAIN_DIR is named "train" and it exists
CACHE_DIR = "dataset/.cache"          # decoded uint8 arrays, so a second run starts at once
WEIGHTS_DIR = "weights"               # checkpoints
RESULTS = "results.txt"               # one row per epoch per run; torch_util.py plots it

# --- compare.py -----------------------------------------------------------------------------------------
COMPARE_MODELS = ""       # entries compare.py trains, comma-separated: a model name, optionally with its own
                          # --NAME=value ("cnn,crnn,resnet18 --ibn=1"); "" = the preset's list
COMPARE_PRESET = "quick"  # "quick": cnn, cnn_ctc (RNN and none), mobilenet_v3_small_ctc, 3 epochs (a CPU look);
                          # "full": every registered model, 20 epochs (a GPU)
COMPARE_EPOCHS = 0        # epochs per entry (the length of its one-cycle schedule); 0 = the preset's
COMPARE_SECONDS = 0       # also stop an entry after the epoch that passes this many seconds of training; 0 = no limit
COMPARE_SEEDS = 3         # seeds per variant in --ablation=1 (SEED, SEED+1, ...)
COMPARE_DIR = "comparison"  # comparison.md / .csv / .png (ablation.*), and each entry's folder: log, results, weights

# --- web app ---------------------------------------------------------------------------------------------
HOST = "127.0.0.1"        # address app.py listens on; "0.0.0.0" also serves other machines
PORT = 8000               # TCP port of app.py
MAX_IMAGE_BYTES = 2 * 1024 * 1024  # bytes; a larger image file is refused (413)
MAX_IMAGE_PIXELS = 4_000_000       # width x height; a larger image is refused before decoding (bombs)
MAX_BATCH = 64            # images in one /api/predict/batch request


def names():
    """The public configuration names, in file order."""
    return [k for k, v in vars(sys.modules[__name__]).items() if k.isupper() and not k.startswith("_") and not callable(v)]


def as_dict():
    """The current configuration (after overrides), for checkpoints."""
    module = sys.modules[__name__]
    return {k: getattr(module, k) for k in names()}


class ConfigError(ValueError):
    pass


def coerce(name, raw, default):
    """Parse `raw` (command-line text) and check it against the type of `default`."""
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        value = raw
    if isinstance(default, bool):
        if isinstance(value, int) and value in (0, 1) or isinstance(value, bool):
            return bool(value)
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no"):
            return value.lower() in ("true", "yes")
        raise ConfigError(f"--{name.lower()}={raw}: expected a boolean (0/1, true/false)")
    if isinstance(default, str):
        return raw  # text stays text: --run=123 is the run "123"
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(default, tuple) and isinstance(value, (list, tuple)):
        return tuple(value)
    if name in ("LENGTH", "GEN_LENGTH") and isinstance(value, (tuple, list)) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return tuple(value)  # variable length: (min, max)
    if isinstance(value, type(default)) and not isinstance(value, bool):
        return value
    raise ConfigError(f"--{name.lower()}={raw}: expected {type(default).__name__} like the default {default!r}, "
                      f"got {type(value).__name__}")


def help_text(options=None):
    """config.py's settings with their values and comments (what --help prints), then a script's own options."""
    with open(__file__, encoding="utf-8") as f:
        source = f.read()
    body = source[source.index("# --- "):source.index("\ndef names")].rstrip()
    lines = ["Settings (config.py; override any with --NAME=value, case-insensitive):", "", body]
    if options:
        lines += ["", "This script's own options:"] + [f"  --{k.lower()}={v!r}" for k, v in options.items()]
    return "\n".join(lines)


def suggest(key, candidates):
    """' (did you mean --epochs?)' for a misspelled option, or ''."""
    import difflib

    close = difflib.get_close_matches(key, candidates, n=1, cutoff=0.6)
    if not close:  # --epoch for --epochs, --lr_rate for --lr: a prefix is as good a hint
        close = [c for c in candidates if c.startswith(key) or key.startswith(c)][:1]
    return f" (did you mean --{close[0]}?)" if close else ""


_given = set()  # the settings named on the command line (config.given())


def given():
    """The names of the settings this run's command line set (--NAME=value), e.g. {"MODEL", "EPOCHS"}."""
    return set(_given)


def parse(argv=None, arguments=None, folder_option="", **options):
    """Apply `--NAME=value` overrides from argv to this module.

    `options` are a script's own settings with their defaults (e.g. split="train"); they are parsed the
    same way. `--help` prints the settings and exits. Returns (positional arguments, dict of the script's options).
    `arguments`: the most positional arguments the command takes (None: any number); more are refused, naming
    the first one left over and, for a folder, the option that takes one (`folder_option`, e.g. "train_dir").
    """
    argv = sys.argv[1:] if argv is None else argv
    module = sys.modules[__name__]
    valid = {n.lower(): n for n in names()}
    extra = {k.lower(): k for k in options}
    positional, result = [], dict(options)
    for arg in argv:
        if arg in ("-h", "--help"):
            doc = getattr(sys.modules.get("__main__"), "__doc__", None)
            print((doc.strip() + "\n\n" if doc else "") + help_text(options))
            sys.exit(0)
        if not arg.startswith("--"):
            positional.append(arg)
            continue
        key, sep, raw = arg[2:].partition("=")
        key = key.lower().replace("-", "_")
        if not sep:
            hint = suggest(key, sorted(extra) + sorted(valid)) if key not in extra and key not in valid else ""
            raise ConfigError(f"{arg}: write --NAME=value (e.g. --epochs=5){hint}")
        if key in extra:
            name = extra[key]
            result[name] = coerce(name, raw, options[name])
        elif key in valid:
            name = valid[key]
            setattr(module, name, coerce(name, raw, getattr(module, name)))
            _given.add(name)
        else:
            raise ConfigError(f"unknown option --{key}{suggest(key, sorted(extra) + sorted(valid))}; "
                              f"`--help` lists every setting")
    if arguments is not None and len(positional) > arguments:
        raise ConfigError(_stray(positional[arguments], arguments, folder_option, sorted(extra) + sorted(valid)))
    check()  # every setting in range before any work starts
    return positional, result


def _stray(arg, arguments, folder_option, names):
    """The message for a positional argument a command does not take (it would otherwise be dropped unread)."""
    key, sep, value = arg.partition("=")
    key = key.lstrip("-").lower().replace("-", "_")
    if sep and key in names:
        hint = f": write --{key}={value}"
    elif folder_option and os.path.isdir(arg):
        hint = f": a folder is named with --{folder_option}={arg}"
    else:
        hint = "; options are written --NAME=value (`--help` lists them)"
    takes = ("no arguments, only --NAME=value options" if arguments == 0 else
             f"at most {arguments} argument{'s' * (arguments > 1)} besides its --NAME=value options")
    return f"{arg!r}: {os.path.basename(sys.argv[0]) or 'this command'} takes {takes}{hint}"


def _number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _length(v, low=1):
    if isinstance(v, int) and not isinstance(v, bool):
        return v == 0 or v >= low
    return (isinstance(v, tuple) and len(v) == 2 and all(isinstance(x, int) and not isinstance(x, bool) for x in v)
            and low <= v[0] <= v[1])


# NAME -> (whether a value is allowed, what is allowed: the message's second half)
_RANGES = {
    "EPOCHS": (lambda v: v >= 0, "0 (from the set's size) or a number of passes, e.g. 30"),
    "IMAGES_SEEN": (lambda v: v > 0, "above 0, e.g. 400000"),
    "LR": (lambda v: _number(v) and 0 < v <= 1, "above 0 and at most 1, e.g. 3e-3"),
    "WEIGHT_DECAY": (lambda v: _number(v) and 0 <= v <= 1, "from 0 to 1, e.g. 1e-4"),
    "BATCH_SIZE": (lambda v: v >= 0, "0 (planned from the set) or images per step, e.g. 64"),
    "THREADS": (lambda v: v >= 0, "0 (every core) or a number of threads"),
    "IMAGE_WIDTH": (lambda v: v == 0 or 16 <= v <= 2048, "0 (from the images) or 16-2048 pixels"),
    "IMAGE_HEIGHT": (lambda v: v == 0 or 16 <= v <= 1024, "0 (from the images) or 16-1024 pixels"),
    "CHANNELS": (lambda v: v in (0, 1, 3), "0 (from the images), 1 (grey) or 3 (colour)"),
    "LENGTH": (_length, "0 (from the labels), a length, or (shortest, longest) with 1 <= shortest <= longest"),
    "GEN_LENGTH": (lambda v: v != 0 and _length(v), "a length, or (shortest, longest) with 1 <= shortest <= longest"),
    "GEN_WIDTH": (lambda v: 16 <= v <= 2048, "16-2048 pixels"),
    "GEN_HEIGHT": (lambda v: 16 <= v <= 1024, "16-1024 pixels"),
    "VALIDATION": (lambda v: 0 <= v < 1, "a fraction from 0 to below 1, e.g. 0.1"),
    "LIMIT": (lambda v: v >= 0, "0 (every image) or a number of images"),
    "TIME_LIMIT": (lambda v: _number(v) and v >= 0, "0 (none) or seconds"),
    "TARGET_ACCURACY": (lambda v: 0 <= v <= 1, "0 (never) or a fraction up to 1"),
    "EMA": (lambda v: 0 <= v < 1, "0 (off) or a decay below 1, e.g. 0.999"),
    "COOLDOWN": (lambda v: 0 <= v <= 1, "0 (off) or a fraction of the planned epochs up to 1"),
    "AUGMENT": (lambda v: v == -1 or 0 <= v <= 3, "-1 (by the set's size), 0 (off) or a strength up to 3"),
    "PERSPECTIVE": (lambda v: 0 <= v <= 3, "0 (off) or a strength up to 3"),
    "BLUR": (lambda v: 0 <= v <= 1, "0 (off) or a probability up to 1"),
    "NOISE": (lambda v: 0 <= v <= 1, "0 (off) or a standard deviation up to 1"),
    "CONTRAST": (lambda v: 0 <= v <= 1, "0 (off) or a strength up to 1"),
    "LINES": (lambda v: 0 <= v <= 1, "0 (off) or a probability up to 1"),
    "LABEL_SMOOTHING": (lambda v: v == -1 or 0 <= v < 1, "-1 (by the set's size), 0 (off) or a weight below 1"),
    "DROPOUT": (lambda v: 0 <= v < 1, "from 0 to below 1"),
    "HIDDEN": (lambda v: v >= 1, "at least 1"),
    "WIDEN": (lambda v: 0.25 <= v <= 8, "0.25-8"),
    "NECK": (lambda v: v >= 0, "0 (none) or a feature size"),
    "CENTER_LOSS": (lambda v: _number(v) and v >= 0, "0 (off) or a weight"),
    "CENTER_LR": (lambda v: 0 <= v <= 1, "from 0 to 1"),
    "PSEUDO_THRESHOLD": (lambda v: 0 <= v <= 1, "a confidence from 0 to 1, e.g. 0.9"),
    "TEACHER_THRESHOLD": (lambda v: 0 <= v <= 1, "a confidence from 0 to 1, e.g. 0.5"),
    "TEACHER_MARGIN": (lambda v: v == -1 or 0 <= v <= 4, "-1 (chosen on a sample) or a fraction of the image height "
                                                         "from 0 to 4, e.g. 0.5"),
    "TEACHER": (lambda v: v in ("", "auto", "ddddocr", "ddddocr2"),
                "\"auto\", \"ddddocr\", \"ddddocr2\" or \"\" (none)"),
    "GEN_STYLE": (lambda v: v in ("imagecaptcha", "varied"), "\"imagecaptcha\" or \"varied\""),
    "PSEUDO_FROM": (lambda v: 0 <= v <= 1, "a fraction of validation from 0 to 1"),
    "PSEUDO_EVERY": (lambda v: _number(v) and v >= 0, "0 or more"),
    "PSEUDO_RATIO": (lambda v: _number(v) and v >= 0, "0 or more"),
    "PSEUDO_MODE": (lambda v: v in ("refresh", "online"), '"refresh" or "online"'),
    "ONLINE_COUNT": (lambda v: v >= 1, "at least 1"),
    "ONLINE_TEST": (lambda v: v >= 1, "at least 1"),
    "ONLINE_REPLAY": (lambda v: v >= 0, "0 (off) or a number of captchas"),
    "ONLINE_WORKERS": (lambda v: v >= 0, "0 (from the cores) or a number of processes"),
    "SHOW": (lambda v: v >= 0, "0 or more rows"),
    "SEED": (lambda v: v >= 0, "0 or more"),
    "TTA": (lambda v: 1 <= v <= 7, "1 (each image read once) to 7 copies"),
    "MIN_CONFIDENCE": (lambda v: 0 <= v <= 1, "a confidence from 0 (never unsure) to 1"),
    "ANSWER": (lambda v: v in ("none", "arith"), "\"none\" or \"arith\""),
    "PORT": (lambda v: 1 <= v <= 65535, "a TCP port from 1 to 65535"),
    "MAX_IMAGE_BYTES": (lambda v: v >= 1, "at least 1"),
    "MAX_IMAGE_PIXELS": (lambda v: v >= 1, "at least 1"),
    "MAX_BATCH": (lambda v: v >= 1, "at least 1"),
    "RUN": (lambda v: v == "" or bool(re.fullmatch(r"[\w+-][\w.+-]*", v)),
            "\"\" (named after MODEL) or a plain name of letters, digits, '_', '-', '+' and '.' (no folder: "
            "checkpoints go to WEIGHTS_DIR), e.g. swust100"),
    "DEVICE": (lambda v: v in ("auto", "cpu", "cuda", "mps") or bool(re.fullmatch(r"cuda:\d+", v)),
               "\"auto\", \"cpu\", \"cuda\", \"cuda:N\" or \"mps\""),
}


def check(s=None):
    """Refuse a setting out of its range before any work starts: one line naming it, its value and what is allowed
    (ConfigError). `s`: config names -> values, or a core.plan.Settings; None = this module's values."""
    values = as_dict() if s is None else s if isinstance(s, dict) else s.as_dict()
    for name, (ok, allowed) in _RANGES.items():
        if name not in values:
            continue
        value = values[name]
        try:
            good = bool(ok(value))
        except TypeError:  # a tuple where a number belongs, or the other way round
            good = False
        if isinstance(value, float) and not math.isfinite(value):
            good = False
        if not good:
            raise ConfigError(f"{name}={value!r} is out of range: {allowed} (--{name.lower()}=...)")
    return s


def test_dir(settings=None):
    """TEST_DIR, or (TEST_DIR = "") the folder "test" beside a TRAIN_DIR named "train", if it exists; "" = none.
    `settings`: config names -> values (default: this module's current values)."""
    settings = as_dict() if settings is None else settings
    if settings["TEST_DIR"]:
        return settings["TEST_DIR"]
    parent, name = os.path.split(os.path.normpath(settings["TRAIN_DIR"]))
    sibling = os.path.join(parent, "test")
    return sibling if name == "train" and os.path.isdir(sibling) else ""


def run_name(settings=None):
    """RUN, or (clovaai style) MODEL and every option changed from its neutral value, so results.txt rows say
    what was trained: resnet18_ctc-ibn-cbam-dual-bnneck-center0.01. `settings`: config names -> values
    (default: this module's current values)."""
    import models  # here, not at the top: config stays importable without torch

    settings = as_dict() if settings is None else settings
    if settings.get("RUN"):
        return settings["RUN"]
    model = settings["MODEL"]
    takes = models.MODELS[model].options if model in models.MODELS else models.OPTIONS
    parts = [models.describe(model, {o: settings[o.upper()] for o in models.OPTIONS if o in takes})]
    parts += [f"center{settings['CENTER_LOSS']:g}"] * bool(settings["CENTER_LOSS"])
    parts += [f"ls{settings['LABEL_SMOOTHING']:g}"] * (settings["LABEL_SMOOTHING"] > 0)  # -1: by the set's size
    return "-".join(parts + ["pretrained"] * bool(settings["PRETRAINED"]))
