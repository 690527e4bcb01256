"""Heads: feature map (B, C, h, w) -> logits (B, T, K), with the matching loss and greedy decoding.

Stages, clovaai style: ColumnPool (collapse the height) -> [BiRNNSequence] -> [BNNeck] -> classifier.
  FixedHead: T = label positions, K = charset (+1 padding class when lengths vary); per-position softmax.
  CTCHead:   T = width columns, K = charset + 1 with blank = 0; CTC loss, greedy decoding.
`LOSSES[head](logits, labels, lengths)` and `DECODERS[head](logits, codec)` are what the scripts call.
"""
import functools

import torch
import torch.nn as nn
import torch.nn.functional as F

POOLS = ("flat", "avg", "max", "dual")
SEQUENCES = ("lstm", "gru", "none")


class ColumnPool(nn.Module):
    """(B, C, h, w) -> (B, D, w): one feature vector per image column.

    "flat" stacks the h cells of a column (D = C*h); "avg" and "max" pool them (D = C); "dual" concatenates
    both (D = 2C). The width is kept because character order lives there: a global pool would leave a
    fixed head guessing which character is where, and a CTC head needs the columns as time steps.
    """

    def __init__(self, mode="flat"):
        super().__init__()
        if mode not in POOLS:
            raise ValueError(f"pool {mode!r}: expected one of {', '.join(POOLS)}")
        self.mode = mode

    def out_channels(self, channels, height):
        return {"flat": channels * height, "avg": channels, "max": channels, "dual": 2 * channels}[self.mode]

    def forward(self, x):
        if self.mode == "flat":
            return x.flatten(1, 2)
        if self.mode == "avg":
            return x.mean(2)
        if self.mode == "max":
            return x.amax(2)
        return torch.cat([x.mean(2), x.amax(2)], 1)


class BNNeck(nn.Module):
    """BatchNorm between feature and classifier (Luo et al., reid strong baseline), over the last axis.

    The shift is frozen at 0, as in the paper, so the classifier sees features centred at the origin; the
    metric loss (center loss) uses the feature before this layer.
    """

    def __init__(self, dim):
        super().__init__()
        self.bn = nn.BatchNorm1d(dim)
        self.bn.bias.requires_grad_(False)

    def forward(self, x):  # (..., dim)
        return self.bn(x.flatten(0, -2)).view_as(x)


class BiRNNSequence(nn.Module):
    """(B, T, D) -> (B, T, 2*hidden): a 2-layer bidirectional LSTM or GRU over the columns (CRNN, clovaai)."""

    def __init__(self, kind, in_features, hidden):
        super().__init__()
        rnn = {"lstm": nn.LSTM, "gru": nn.GRU}[kind]
        self.rnn = rnn(in_features, hidden, num_layers=2, batch_first=True, bidirectional=True)

    def forward(self, x):
        return self.rnn(x)[0]


class FixedHead(nn.Module):
    """`positions` x `num_classes` logits from the whole feature map.

    neck = 0: one linear layer from every pooled column to every position (the foundation's head).
    neck > 0: a per-character feature (B, T, neck) first, then a classifier shared by the positions; the
    center loss needs this per-character feature.
    """

    def __init__(self, shape, positions, num_classes, pool="flat", neck=0, bnneck=False, dropout=0.0):
        super().__init__()
        channels, height, width = shape
        self.positions, self.num_classes, self.char_dim = positions, num_classes, neck
        self.pool = ColumnPool(pool)
        features = self.pool.out_channels(channels, height) * width
        if neck:
            self.embed = nn.Linear(features, positions * neck)
        dim = neck or features
        self.neck = BNNeck(dim) if bnneck else nn.Identity()
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(dim, num_classes if neck else positions * num_classes, bias=not bnneck)

    def forward(self, x):
        x = self.pool(x).flatten(1)  # (B, D*w)
        if self.char_dim:
            x = self.embed(x).view(x.shape[0], self.positions, self.char_dim)  # (B, T, neck)
        x = self.fc(self.drop(self.neck(x)))
        return x.view(x.shape[0], self.positions, self.num_classes)  # (B, T, K)


class CTCHead(nn.Module):
    """Per-column logits (B, w, K) for CTC: columns -> [BiLSTM | BiGRU] -> classifier with a blank."""

    def __init__(self, shape, positions, num_classes, pool="flat", sequence="lstm", hidden=256, bnneck=False,
                 dropout=0.0):
        super().__init__()
        if sequence not in SEQUENCES:
            raise ValueError(f"sequence {sequence!r}: expected one of {', '.join(SEQUENCES)}")
        channels, height, width = shape
        if width < positions:  # CTC emits at most one character per column
            raise ValueError(f"the backbone leaves {width} columns for labels of up to {positions} characters; "
                             f"use a wider IMAGE_WIDTH")
        self.pool = ColumnPool(pool)
        dim = self.pool.out_channels(channels, height)
        self.sequence = BiRNNSequence(sequence, dim, hidden) if sequence != "none" else nn.Identity()
        dim = 2 * hidden if sequence != "none" else dim
        self.char_dim = dim  # per-column features feed the center loss
        self.neck = BNNeck(dim) if bnneck else nn.Identity()
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(dim, num_classes, bias=not bnneck)

    def forward(self, x):
        x = self.sequence(self.pool(x).transpose(1, 2))  # (B, w, D)
        return self.fc(self.drop(self.neck(x)))  # (B, w, K)


# --- losses ------------------------------------------------------------------------------------------------

def fixed_loss(logits, labels, lengths, label_smoothing=0.0):
    """Per-position softmax cross-entropy; padding positions are a class of their own."""
    return F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), label_smoothing=label_smoothing)


def ctc_targets(labels, lengths):
    """Codec ids (B, max_len) padded with codec.pad -> the concatenated CTC targets, shifted past the blank."""
    keep = torch.arange(labels.shape[1], device=labels.device) < lengths[:, None]
    return labels[keep] + 1


def ctc_loss(logits, labels, lengths, label_smoothing=0.0):
    """CTC over the columns (mean over the batch of the loss per target character).

    label_smoothing mixes in the cross-entropy of every frame to the uniform distribution, the usual
    CTC counterpart of label smoothing: it penalises over-confident frames.
    """
    log_probs = logits.float().log_softmax(-1)  # (B, T, K)
    b, t, _ = log_probs.shape
    steps = torch.full((b,), t, dtype=torch.long, device=logits.device)
    loss = F.ctc_loss(log_probs.transpose(0, 1), ctc_targets(labels, lengths), steps, lengths, blank=0,
                      zero_infinity=True)
    if label_smoothing:
        loss = (1 - label_smoothing) * loss - label_smoothing * log_probs.mean()
    return loss


# --- decoding ----------------------------------------------------------------------------------------------

def fixed_decode(logits, codec):
    """texts, sequence confidence (product of position maxima), per-character probabilities."""
    probs = logits.float().softmax(-1)
    conf, ids = probs.max(-1)  # (B, T)
    texts, confs, chars = [], [], []
    for row_ids, row_conf in zip(ids.tolist(), conf.tolist()):
        keep = [(i, p) for i, p in zip(row_ids, row_conf) if i < len(codec.charset)]
        texts.append("".join(codec.charset[i] for i, _ in keep))
        chars.append([p for _, p in keep])
        confs.append(float(torch.tensor(row_conf).prod()))
    return texts, confs, chars


def greedy_path(ids):
    """[(class id, first step, last step)] of the best path: runs of one class, blanks dropped.

    Repeats merge only within a run, so a blank between two runs keeps a genuine double: the path
    A A - A B - B reads AABB. (Dropping blanks before merging, a common bug, would read AB.)
    """
    runs, prev = [], 0
    for t, i in enumerate(ids):
        if i != 0 and i == prev:
            runs[-1][2] = t
        elif i != 0:
            runs.append([i, t, t])
        prev = i
    return runs


def ctc_decode(logits, codec):
    """texts, sequence confidence, per-character probabilities from the greedy CTC path.

    A character's probability is its highest frame probability within its run; the sequence confidence is
    their product (for an empty reading, the product over frames of the best path).
    """
    probs = logits.float().softmax(-1)
    conf, ids = probs.max(-1)  # (B, T)
    texts, confs, chars = [], [], []
    for row_ids, row_conf in zip(ids.tolist(), conf.tolist()):
        runs = greedy_path(row_ids)
        texts.append("".join(codec.charset[i - 1] for i, _, _ in runs))
        chars.append([max(row_conf[a:b + 1]) for _, a, b in runs])
        confs.append(float(torch.tensor(chars[-1] or row_conf).prod()))
    return texts, confs, chars


LOSSES = {"fixed": fixed_loss, "ctc": ctc_loss}
DECODERS = {"fixed": fixed_decode, "ctc": ctc_decode}


# --- center loss ---------------------------------------------------------------------------------------------

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
        classes = self.classes(logits.detach(), labels, lengths).flatten()
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


def make_loss(loss_fn, model, num_classes, label_smoothing=0.0, center_weight=0.0, center_lr=0.5):
    """The training loss (logits, labels, lengths) -> scalar: `loss_fn` (a LOSSES entry) with label
    smoothing, plus the center loss when center_weight > 0. Call it after moving the model to its device."""
    loss_fn = functools.partial(loss_fn, label_smoothing=label_smoothing)
    return CenterLoss(model, num_classes, loss_fn, center_weight, center_lr) if center_weight else loss_fn
