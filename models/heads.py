"""Heads: feature map (B, C, h, w) -> logits (B, T, K).

Stages, clovaai style: ColumnPool (collapse the height) -> [BiRNNSequence] -> [BNNeck] -> classifier.
  FixedHead: T = label positions, K = charset (+1 padding class when lengths vary); per-position softmax.
  CTCHead:   T = width columns, K = charset + 1 with blank = 0.
Their losses are in models/losses.py, their decoders in models/decoding.py; models/kinds.py ties each head
to its loss and decoder in one record per head kind.
"""
import torch
import torch.nn as nn

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

    def __init__(self, shape, positions, num_classes, pool="flat", sequence="none", hidden=256, bnneck=False,
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
