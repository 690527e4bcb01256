"""Training losses of the heads: per-position cross-entropy (fixed-length) and CTC, and the center loss
that either can carry. Each takes (logits (B, T, K), labels (B, max_len) codec ids, lengths (B,)).

A label position may hold candidates beside its character (`with_candidates`): the character a teacher read,
and up to two it is known to read in their place ('o' where the labels show its 'o' is often a 'q'), each with
a weight: how likely the teacher is to read it so, relative to the character itself. The loss of such a row is
-log of the weighted sum of the probabilities of the texts they spell (a noisy label's likelihood under the
teacher's confusions, the forward correction of Patrini et al., CVPR 2017): a teacher's 'o' still leans to 'o'
as far as the labels say it is right, and the labels decide the rest."""
import functools
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from models.decoding import greedy_path
from models.heads import CTCHead


SHIFT = 16  # bits of a character's id in a label value; each candidate then takes a FIELD: its id + 1, its weight
WEIGHT_BITS = 7
LEVELS = (1 << WEIGHT_BITS) - 1  # a candidate's weight in steps of 1 / LEVELS, (0, 1]
FIELD = SHIFT + WEIGHT_BITS
MASK = (1 << SHIFT) - 1
MOST_TEXTS = 16  # texts a row's candidates may spell (4 letters read without case); positions past that keep their
# first character only


def with_candidates(ids, candidates):
    """A label row (codec ids) whose position i also accepts candidates[i]: at most two (id, weight), a weight in
    (0, 1] (the first character's is 1)."""
    row = list(ids)
    for i, others in enumerate(candidates):
        for j, (other, weight) in enumerate(others[:2]):
            level = max(1, min(LEVELS, round(weight * LEVELS)))
            row[i] += ((other + 1) | level << SHIFT) << (SHIFT + FIELD * j)
    return row


def candidate(labels, j):
    """The j-th candidate (0 or 1) of each position: (ids, -1 where none; weights)."""
    field = labels >> (SHIFT + FIELD * j)
    return (field & MASK) - 1, (field >> SHIFT & LEVELS).float() / LEVELS


def first_ids(labels):
    """The labels with each position's first character only (candidates dropped)."""
    return labels & MASK


def has_candidates(labels):
    return bool((labels > MASK).any())


def spelled(labels, lengths):
    """Every text a batch's candidates spell: (rows (N,) into the batch, labels (N, max_len) plain, lengths (N,),
    log weights (N,): the sum of its candidates' log weights). A row without candidates spells one text; a row
    spells at most MOST_TEXTS."""
    rows, texts, weights = [], [], []
    others = [[part.tolist() for part in candidate(labels, j)] for j in (0, 1)]  # [[ids, weights]] per candidate
    for b, (row, n) in enumerate(zip(first_ids(labels).tolist(), lengths.tolist())):
        spell = [([], 0.0)]
        for i, c in enumerate(row):
            options = [(c, 0.0)] + [(ids[b][i], math.log(w[b][i])) for ids, w in others if ids[b][i] >= 0]
            if i >= n or len(spell) * len(options) > MOST_TEXTS:
                options = options[:1]
            spell = [(t + [c], w + x) for t, w in spell for c, x in options]
        rows += [b] * len(spell)
        texts += [t for t, _ in spell]
        weights += [w for _, w in spell]
    device = labels.device
    rows = torch.tensor(rows, device=device)
    return (rows, torch.tensor(texts, dtype=labels.dtype, device=device).view(len(rows), -1), lengths[rows],
            torch.tensor(weights, device=device))


def fixed_loss(logits, labels, lengths, label_smoothing=0.0, candidates=False):
    """Per-position softmax cross-entropy; padding positions are a class of their own. `candidates`: the labels
    may hold candidates (looking costs a host sync a step); a position with them: -log of their weighted summed
    probability."""
    if not (candidates and has_candidates(labels)):
        return F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), label_smoothing=label_smoothing)
    log_probs = logits.float().log_softmax(-1)  # (B, T, K)
    picked = log_probs.gather(-1, first_ids(labels)[..., None])[..., 0]
    for j in (0, 1):
        other, weight = candidate(labels, j)
        more = log_probs.gather(-1, other.clamp(min=0)[..., None])[..., 0] + weight.clamp(min=1 / LEVELS).log()
        picked = torch.where(other >= 0, torch.logaddexp(picked, more), picked)
    return -(1 - label_smoothing) * picked.mean() - label_smoothing * log_probs.mean()


def ctc_targets(labels, lengths):
    """Codec ids (B, max_len) padded with codec.pad -> the concatenated CTC targets, shifted past the blank."""
    keep = torch.arange(labels.shape[1], device=labels.device) < lengths[:, None]
    return labels[keep] + 1


def ctc_loss(logits, labels, lengths, label_smoothing=0.0, candidates=False):
    """CTC over the columns (mean over the batch of the loss per target character).

    label_smoothing mixes in the cross-entropy of every frame to the uniform distribution, the usual
    CTC counterpart of label smoothing: it penalises over-confident frames.
    """
    log_probs = logits.float().log_softmax(-1)  # (B, T, K)
    b, t, _ = log_probs.shape
    if candidates and has_candidates(labels):
        loss = _ctc_candidates(log_probs, labels, lengths)
    else:
        steps = torch.full((b,), t, dtype=torch.long, device=logits.device)
        loss = F.ctc_loss(log_probs.transpose(0, 1), ctc_targets(labels, lengths), steps, lengths, blank=0,
                          zero_infinity=True)
    if label_smoothing:
        loss = (1 - label_smoothing) * loss - label_smoothing * log_probs.mean()
    return loss


def _ctc_candidates(log_probs, labels, lengths):
    """ctc_loss's mean when some rows hold candidates: a row's loss is -log of the weighted sum of the probabilities
    of the texts its candidates spell, per target character. A text that cannot fit the columns (with the blanks a
    repeated character needs) counts as impossible; a row with no possible text has no loss, as zero_infinity
    gives."""
    b, t, _ = log_probs.shape
    rows, texts, n, log_weights = spelled(labels, lengths)
    steps = torch.full((len(rows),), t, dtype=torch.long, device=log_probs.device)
    per = F.ctc_loss(log_probs[rows].transpose(0, 1), ctc_targets(texts, n), steps, n, blank=0,
                     reduction="none", zero_infinity=True)  # -log p(text), 0 where impossible
    inside = torch.arange(texts.shape[1], device=texts.device)[None, 1:] < n[:, None]
    repeats = ((texts[:, 1:] == texts[:, :-1]) & inside).sum(1)
    possible = n + repeats <= t
    score = torch.where(possible, log_weights - per, torch.full_like(per, -torch.inf))  # log (weight p(text))
    top = torch.full((b,), -torch.inf, device=per.device).scatter_reduce(0, rows, score, "amax")
    top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
    total = torch.zeros(b, device=per.device).index_add(0, rows, (score - top[rows]).exp())
    nll = -(top + total.clamp(min=1e-30).log())
    nll = torch.where(total > 0, nll, torch.zeros_like(nll))
    return (nll / lengths.clamp(min=1)).mean()


class CenterLoss(nn.Module):
    """`loss_fn` + weight * center loss (Wen et al., ECCV 2016) on the per-character features.

    The features are those entering the head's classifier (before the BNNeck), read by a hook, so the
    model's forward and its checkpoints stay as they are. Each class has a centre; the loss pulls a
    character's feature to its class centre, and after each step the centres move toward the batch's
    features at their own rate `alpha` (the paper's update rule; no optimizer, nothing to restore).
    Class of a feature: the label at that position (fixed head), or for a CTC head the character the
    greedy path reads in that column, in samples read correctly (alignment-free labels have no column).
    """

    def __init__(self, model, num_classes, loss_fn, weight, alpha=0.5):
        super().__init__()
        head = getattr(model, "module", model).head
        if not head.char_dim:
            raise ValueError("CENTER_LOSS needs per-character features: set NECK > 0 (e.g. 128) for a "
                             "fixed head, or use a CTC model")
        self.ctc = isinstance(head, CTCHead)
        self.loss_fn, self.weight, self.alpha = loss_fn, weight, alpha
        device = next(model.parameters()).device
        self.register_buffer("centers", torch.zeros(num_classes, head.char_dim, device=device))
        self.features = None
        head.neck.register_forward_pre_hook(self._keep)

    def _keep(self, module, args):
        if module.training:
            self.features = args[0]

    def classes(self, logits, labels, lengths):
        """(B, T) class per feature, -1 where it has none."""
        if not self.ctc:
            return labels
        ids = logits.argmax(-1)  # (B, T)
        out = torch.full_like(ids, -1)
        for b, (row, label, n) in enumerate(zip(ids.tolist(), (labels + 1).tolist(), lengths.tolist())):
            runs = greedy_path(row)
            if [i for i, _, _ in runs] == label[:n]:
                for i, first, last in runs:
                    out[b, first:last + 1] = i
        return out

    def forward(self, logits, labels, lengths):
        loss = self.loss_fn(logits, labels, lengths)
        classes = self.classes(logits.detach(), first_ids(labels), lengths).flatten()
        keep = classes >= 0
        if not keep.any():
            return loss
        feats, classes = self.features.float().flatten(0, -2)[keep], classes[keep]  # (N, dim), (N,)
        centers = self.centers[classes]
        with torch.no_grad():  # c_j -= alpha * sum_i (c_j - x_i) / (1 + n_j)
            counts = torch.bincount(classes, minlength=len(self.centers)).float()
            delta = torch.zeros_like(self.centers).index_add_(0, classes, centers - feats.detach())
            self.centers -= self.alpha * delta / (1 + counts[:, None])
        return loss + self.weight * 0.5 * (feats - centers).pow(2).sum(1).mean()


def make_loss(loss_fn, model, num_classes, label_smoothing=0.0, center_weight=0.0, center_lr=0.5, candidates=False):
    """The training loss (logits, labels, lengths) -> scalar: `loss_fn` (a head kind's loss) with label
    smoothing, plus the center loss when center_weight > 0; `candidates`: its labels may hold candidates (a
    teacher's pseudo-labels). Call it after moving the model to its device."""
    if not 0 <= label_smoothing < 1:  # -1 (by the set's size) is resolved by train.resolve_small_set first
        raise ValueError(f"LABEL_SMOOTHING {label_smoothing}: expected 0-1 (or -1 before the training set is known)")
    loss_fn = functools.partial(loss_fn, label_smoothing=label_smoothing, candidates=candidates)
    return CenterLoss(model, num_classes, loss_fn, center_weight, center_lr) if center_weight else loss_fn
