"""Heads: feature map (B, C, h, w) -> logits (B, T, K), with the matching loss and greedy decoding."""
import torch
import torch.nn as nn
import torch.nn.functional as F


class FixedHead(nn.Module):
    """One classifier over the whole flattened feature map, `positions` x `num_classes` logits."""

    def __init__(self, features, positions, num_classes, dropout=0.0):
        super().__init__()
        self.positions, self.num_classes = positions, num_classes
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(features, positions * num_classes)

    def forward(self, x):
        x = self.fc(self.drop(torch.flatten(x, 1)))
        return x.view(x.shape[0], self.positions, self.num_classes)  # (B, T, K)


def fixed_loss(logits, labels, lengths, label_smoothing=0.0):
    """Per-position softmax cross-entropy; padding positions are a class of their own."""
    return F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), label_smoothing=label_smoothing)


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


LOSSES = {"fixed": fixed_loss}
DECODERS = {"fixed": fixed_decode}
