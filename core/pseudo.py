"""Pseudo-labels: the unlabelled images (UNLABELED_DIR) the kept model reads confidently, trained on beside the
labelled ones."""
import copy
import os

import numpy as np
import torch

import config
from core import data
from core.augment import Augment
from core.batches import epoch_order, to_float
from core.device import autocast
from core.plan import MIN_EPOCHS
from core.sets import same_folder, test_folder
from core.teach import zero_labels
from models.losses import with_candidates


FILL = 2.0  # labelled fillers make an epoch up to this many times its labelled images, where unlabelled ones run out


def epoch_extra(ratio, n_train, n_unlabelled, budget=0):
    """Images an epoch adds to its n_train labelled ones: up to `ratio` times as many unlabelled images, and where
    the folder holds fewer, labelled fillers only up to FILL times n_train (a teacher's no-label run leaves few
    unread). Of them, min(that, n_unlabelled) are unlabelled. `budget` (> 0: images an epoch may hold so that the
    shortest planned run, MIN_EPOCHS, stays within IMAGES_SEEN) bounds it too, but never below n_train: many labels
    and a large unlabelled folder get a smaller share instead of a run of twice the images."""
    extra = min(round(ratio * n_train), max(n_unlabelled, round(FILL * n_train)))
    return min(extra, max(n_train, budget - n_train)) if budget > 0 else extra


def epoch_budget(s):
    """The images an epoch may hold: IMAGES_SEEN / MIN_EPOCHS, so that the shortest run a plan makes sees no more
    than IMAGES_SEEN (a resumed run and one with EPOCHS set build the same epochs)."""
    return s.IMAGES_SEEN // MIN_EPOCHS


class PseudoLabels:
    """UNLABELED_DIR's images and their pseudo-labels: the kept model's readings of at least PSEUDO_THRESHOLD
    sequence confidence, refreshed as better models are kept.

    The first refresh comes once the kept model reads PSEUDO_FROM of validation right; later ones when a newer
    model has been kept and the run has trained on PSEUDO_EVERY times as many images as there are unlabelled ones
    since the last refresh. Each epoch then holds every labelled training image plus up to PSEUDO_RATIO times as
    many pseudo-labelled ones (sampled afresh each epoch; labelled images fill the rest, so every epoch has the
    same number of steps). Validation and test images never get pseudo-labels; labels the folder holds (`truth`)
    are only used to report how many pseudo-labels were right.

    PSEUDO_MODE "online" (FixMatch, Sohn et al. 2020) reads instead at every step: each epoch samples up to
    PSEUDO_RATIO times as many unlabelled images as labelled ones, whatever they read; in each batch the weight
    average (the model where EMA = 0) reads its unlabelled images under the run's own (weak) augmentation, and
    those read with PSEUDO_THRESHOLD confidence train the model, under the reading, on a strongly augmented copy
    (STRONG); the others keep a teacher's reading (trained on like a label, under the run's augmentation), or are
    left out of that step. Their rows hold no label: a length of -1, or -1 - n for a teacher's reading of n
    characters."""

    def __init__(self, s, paths, truths, codec, n_train):
        self.threshold, self.start, self.every = s.PSEUDO_THRESHOLD, s.PSEUDO_FROM, s.PSEUDO_EVERY
        self.paths, self.truths, self.codec = paths, truths, codec
        self.n_train, self.chosen = n_train, np.zeros(0, dtype=np.int64)
        # pseudo-labelled images (or fillers) an epoch
        self.extra = epoch_extra(s.PSEUDO_RATIO, n_train, len(paths), epoch_budget(s))
        self.refreshes, self.refreshed_epoch, self.trained_since, self.last = 0, None, 0, ""
        self.readings = []  # the last refresh's texts of every unlabelled image (metrics.rare_readings)
        self.kept_state, self.reader, self.temperature = None, None, 1.0
        self.teacher = {}  # {index: text}: a teacher's first pseudo-labels (TEACHER)
        self.candidates = {}  # {character: ((character, weight), ...)}: where the teacher's reading may be another
        self.online = s.PSEUDO_MODE == "online"
        self.active = self.online and not self.start  # online: reading from the first step, or once PSEUDO_FROM is met
        self.read = self.used = 0  # online: unlabelled images read, and trained on, since the last report
        self.confident = 0  # the last refresh's readings of PSEUDO_THRESHOLD confidence

    def __len__(self):
        return len(self.paths)

    @property
    def epoch_images(self):
        return self.n_train + self.extra

    def keep(self, model, temperature=1.0):
        """Remember a newly kept model's weights and temperature (pseudo-labels come from the kept model, not the
        last one, and its confidences are read as its checkpoint's readers read them)."""
        self.kept_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        self.temperature = temperature

    def due(self, kept):
        if self.kept_state is None or not kept or not kept["seq"] >= self.start:
            return False
        if self.online:
            self.active = True
            return False
        if self.refreshed_epoch is None:
            return True
        return kept["epoch"] != self.refreshed_epoch and self.trained_since >= self.every * len(self)

    def accepts(self, text, confidence):
        """Whether a reading becomes a pseudo-label: PSEUDO_THRESHOLD confidence, an allowed length and charset."""
        lo, hi = self.codec.length
        return confidence >= self.threshold and lo <= len(text) <= hi and self.codec.check(text) is None

    def attach(self, tensors):
        """Online: mark the unlabelled rows of the combined tensors (a length of -1: no reading yet)."""
        if self.online:
            tensors[2][self.n_train:] = -1

    def _row(self, text, taught):
        """The label row of a pseudo-label; a teacher's reading (`taught`) with the candidates of its characters."""
        ids = self.codec.encode(text)
        if not (taught and self.candidates):
            return ids
        return with_candidates(ids, [tuple((self.codec.index[b], w) for b, w in self.candidates.get(c, ()))
                                     for c in text])

    def _write(self, tensors, chosen, mine=()):
        """Make {index into the unlabelled images: text} the pseudo-labels: their label rows in `tensors` (online:
        their lengths as -1 - n, so the rows stay marked as unlabelled). Those not in `mine` are the teacher's."""
        _, labels, lengths = tensors
        self.chosen = np.array(sorted(chosen), dtype=np.int64)
        if len(self.chosen):
            rows = torch.tensor([self._row(chosen[i], i not in mine) for i in self.chosen], dtype=torch.int64)
            at = torch.from_numpy(self.chosen + self.n_train).to(labels.device)
            labels[at] = rows.to(labels.device)
            n = torch.tensor([len(chosen[i]) for i in self.chosen], dtype=torch.int64, device=lengths.device)
            lengths[at] = -1 - n if self.online else n

    def seed(self, chosen, tensors, say, candidates=None):
        """A teacher's readings ({index: text}) as the first pseudo-labels, trained on from the first epoch; a
        model refresh keeps them where the model is not confident. `candidates` ({character: ((character, weight),
        ...)}, core.teach.teacher_candidates): where a reading holds such a character, its position accepts those
        too."""
        self.teacher, self.candidates = dict(chosen), dict(candidates or {})
        self._write(tensors, self.teacher)
        say("pseudo-labels from the teacher: " + f"{len(chosen)} of {len(self)} unlabelled images"
            + self.audit(None, chosen))

    @torch.no_grad()
    def refresh(self, model, tensors, decode, device, kept_epoch, say):
        """Read the unlabelled images (tensors[0][n_train:]) with the kept model; write the confident readings into
        the label rows of `tensors` (a teacher's reading stays where the model is not confident)."""
        if self.reader is None:
            self.reader = copy.deepcopy(model)
        self.reader.load_state_dict(self.kept_state)
        self.reader.eval()
        images = tensors[0]
        texts, confidences = [], []
        for i in range(self.n_train, len(images), 512):
            batch = images[i:i + 512].to(device, non_blocking=True)
            with autocast(device):
                logits = self.reader(to_float(batch))
            t, c, _ = decode(logits, self.codec, self.temperature)
            texts += t
            confidences += c
        mine = {i: t for i, (t, c) in enumerate(zip(texts, confidences)) if self.accepts(t, c)}
        self.confident = len(mine)
        chosen = {**self.teacher, **mine}
        self.readings = texts
        self._write(tensors, chosen, mine)
        self.refreshes += 1
        self.refreshed_epoch, self.trained_since = kept_epoch, 0
        self.last = (f"pseudo-labels from the model of epoch {kept_epoch}: {len(mine)} of {len(self)} unlabelled "
                     f"images read with confidence >= {self.threshold}"
                     + (f", {len(chosen) - len(mine)} more keep the teacher's reading" if self.teacher else "")
                     + self.audit(texts, chosen, mine))
        say(self.last)

    def _holds(self, text, truth, taught):
        """Whether a pseudo-label accepts `truth`: it is its text, or (a teacher's reading) one its candidates spell."""
        if not (taught and self.candidates):
            return text == truth
        return len(text) == len(truth) and all(a == b or b in {c for c, _ in self.candidates.get(a, ())}
                                               for a, b in zip(text, truth))

    def audit(self, readings, chosen, mine=()):
        """', right: ...' for the images whose labels the folder knows (none: ''): how many pseudo-labels (`chosen`,
        {index: text}; those not in `mine` the teacher's, right where their candidates spell the label) are right,
        and how many of all the unlabelled images `readings` (a list, or None) reads right."""
        known = [i for i, t in enumerate(self.truths) if t is not None]
        if not known:
            return ""
        truth = lambda i: self.codec.normalize(self.truths[i])
        picked = [i for i in chosen if self.truths[i] is not None]
        right = sum(self._holds(chosen[i], truth(i), i not in mine) for i in picked)
        line = f"; right: {right} of {len(picked)} with known labels" + (f" ({right / len(picked):.2%})" if picked else "")
        if readings is not None:
            line += f" (all unlabelled images: {sum(readings[i] == truth(i) for i in known) / len(known):.2%} read right)"
        return line

    def order(self, generator, batch_size, rank, world):
        """This rank's indices into the combined tensors for one epoch (see the class's docstring)."""
        pool = torch.arange(len(self)) if self.online else torch.from_numpy(self.chosen)
        take = min(len(pool), self.extra)
        picked = pool[torch.randperm(len(pool), generator=generator)[:take]]
        fillers = torch.randint(0, self.n_train, (self.extra - take,), generator=generator)
        population = torch.cat([torch.arange(self.n_train), picked + self.n_train, fillers])
        return population[epoch_order(len(population), batch_size, generator, rank, world)]

    @torch.no_grad()
    def relabel(self, reader, decode, x, labels, lengths, augment):
        """Online: a float batch whose unlabelled rows (lengths < 0) `reader` reads -> (x, labels, lengths, scale)
        to train on: the labelled rows and those with only a teacher's reading under `augment`, then the
        unlabelled ones read confidently under STRONG. `scale` is 0 where nothing is left to train on (the step
        then trains on one row with no weight, so every process of a torchrun job still takes it)."""
        unlabelled = lengths < 0
        mine = ~unlabelled
        xu, lu, nu = x[unlabelled], labels[unlabelled], -1 - lengths[unlabelled]  # a teacher's reading, or 0
        own = torch.zeros(len(xu), dtype=torch.bool, device=x.device)  # read confidently by `reader`
        if len(xu) and self.active:
            was = reader.training
            reader.eval()
            with autocast(x.device):
                logits = reader(augment(xu) if augment else xu)
            reader.train(was)
            texts, confidences, _ = decode(logits, self.codec, self.temperature)
            for j, (t, c) in enumerate(zip(texts, confidences)):
                if self.accepts(t, c):
                    lu[j] = torch.tensor(self.codec.encode(t), dtype=lu.dtype)
                    nu[j] = len(t)
                    own[j] = True
        taught = ~own & (nu > 0)  # a teacher's reading: trained on like a label
        self.read += len(xu)
        self.used += int(own.sum()) + int(taught.sum())
        plain = torch.cat([x[mine], xu[taught]])
        parts = [(augment(plain) if augment else plain, torch.cat([labels[mine], lu[taught]]),
                  torch.cat([lengths[mine], nu[taught]]))]
        if bool(own.any()):
            parts.append((STRONG(xu[own]), lu[own], nu[own]))
        x, labels, lengths = (torch.cat(t) for t in zip(*parts))
        if len(x):
            return x, labels, lengths, 1.0
        # the row's label: a one-character text of the charset's first character (an unlabelled row holds padding,
        # the class past a CTC head's last: a target out of range that the CPU's ctc_loss writes past its buffer for)
        row = torch.full_like(lu[:1], self.codec.pad)
        row[:, 0] = 0
        return STRONG(xu[:1]), row, torch.ones_like(nu[:1]), 0.0

    def report(self):
        """Online: 'N of M unlabelled images read ... trained on' since the last report (and reset), or ''."""
        if not self.online or not self.read:
            return ""
        line = (f"online pseudo-labels: {self.used} of the {self.read} unlabelled images this epoch trained on "
                f"(read with confidence >= {self.threshold}" + (", or the teacher's reading" if self.teacher else "")
                + ")")
        self.read = self.used = 0
        return line


FEW_CONFIDENT = 0.1  # a run without a teacher whose kept model reads under this share of the unlabelled images
                     # confidently trained on its labels nearly alone: it says so (few_confident)


def few_confident(pseudo, teacher, folder):
    """'' or the line a run prints when its unlabelled images added little: no teacher's readings, and its kept model
    reads under FEW_CONFIDENT of them with PSEUDO_THRESHOLD confidence (rsce_colour with 100 labels: 2 of 8758, its
    epochs trained on none; swust_mixed: 1592 of 3656, the unlabelled images lifting it from 33 to 55 %)."""
    if teacher or not len(pseudo) or pseudo.confident >= FEW_CONFIDENT * len(pseudo):
        return ""
    from core.teacher import AUTO, unavailable
    why = unavailable(AUTO)
    return (f"the unlabelled images added little: the model reads {pseudo.confident} of {len(pseudo)} with the "
            f"confidence a pseudo-label needs (PSEUDO_THRESHOLD={pseudo.threshold:g}), so it learnt from its labels "
            f"nearly alone. Label more (the labelling page offers the least sure first: python app.py "
            f"--label_dir={folder}), or let a teacher read them: --teacher={AUTO}" + (f" ({why})" if why else ""))


# PSEUDO_MODE "online": the strong augmentation of the unlabelled images (FixMatch's RandAugment, in the terms of
# core.augment): a larger warp with perspective, contrast and colour changes, blur, noise and an interference line
STRONG = Augment(affine=1.0, perspective=0.5, blur=0.3, noise=0.05, contrast=0.6, lines=0.3)


def unlabeled_folder(s):
    """UNLABELED_DIR, or "" without one; a ConfigError where a run cannot use it (ONLINE, the test folder, no
    validation part)."""
    folder = s.UNLABELED_DIR
    if not folder:
        return ""
    if s.ONLINE:
        raise config.ConfigError("UNLABELED_DIR is for training on a folder, not with ONLINE (fresh labelled captchas)")
    if not os.path.isdir(folder):
        raise config.ConfigError(f"UNLABELED_DIR={folder}: " + ("no such folder" if not os.path.exists(folder) else
                                                                f"not a folder ({data.file_kind(folder)})"))
    if same_folder(folder, test_folder(s)):
        raise config.ConfigError(f"UNLABELED_DIR={folder} is the test folder: test images must never be trained on, "
                                 f"not even with pseudo-labels; name another folder")
    if not s.VALIDATION:
        raise config.ConfigError("UNLABELED_DIR needs a validation part (VALIDATION > 0): a pseudo-label's "
                                 "confidence is read at the temperature the validation images fit (and PSEUDO_FROM "
                                 "waits on them); leave --validation at its 0.1")
    return folder


def load_unlabeled(s, train_set, val_set, test_set, codec, quiet=False):
    """(PseudoLabels without readings yet, their images (N, H, W, C) uint8), or (None, None) without UNLABELED_DIR.
    Never the run's labelled, validation or test images (UNLABELED_DIR = the test folder is refused)."""
    folder = unlabeled_folder(s)
    if not folder:
        return None, None
    labelled = [p for part in (train_set, val_set, test_set) if part for p in part.paths]
    # file names are labels only in a folder of labelled images (not in one a teacher reads for want of labels)
    names_are_labels = same_folder(folder, s.TRAIN_DIR) and not zero_labels(s)
    items = data.unlabeled_images(folder, labelled, truth_from_names=names_are_labels)
    paths = [p for p, _ in items]
    share = min(epoch_extra(s.PSEUDO_RATIO, len(train_set), len(paths), epoch_budget(s)), len(paths))
    # held three times: decoded, then beside the labelled images in one array, then as the run's tensors
    data.check_memory(len(paths), s.IMAGE_WIDTH, s.IMAGE_HEIGHT, s.CHANNELS, f"UNLABELED_DIR={folder}",
                      f"give it a sample of them in a folder of its own (an epoch trains on up to PSEUDO_RATIO="
                      f"{s.PSEUDO_RATIO:g} times as many unlabelled images as labelled ones: "
                      f"{share} here), or "
                      + data.SMALLER_IMAGES, copies=3)
    images, ok, failed = data.decode_images(paths, s.IMAGE_WIDTH, s.IMAGE_HEIGHT, s.CHANNELS,
                                            s.CACHE_DIR, quiet)
    names = data.file_list([os.path.basename(p) for p in failed])
    keep = np.flatnonzero(ok)
    if not keep.size and not same_folder(folder, s.TRAIN_DIR):
        found = (f"its {len(failed)} image files are unreadable ({names})" if failed else
                 f"it holds no image files ({', '.join(data.IMAGE_EXTENSIONS)})")
        fix = (not failed and data.subfolder_hint(folder)) or ("; name a folder of your captcha images without "
                                                               "labels, or leave UNLABELED_DIR empty to train on "
                                                               "the labels alone")
        raise config.ConfigError(f"UNLABELED_DIR={folder}: {found}{fix}")
    if failed and not quiet:
        print(f"warning: {folder}: {len(failed)} unreadable images left out: {names}")
    pseudo = PseudoLabels(s, [paths[i] for i in keep], [items[i][1] for i in keep], codec, len(train_set))
    return pseudo, images[keep]
