"""Training losses of the heads: per-position cross-entropy (fixed-length) and CTC, and the center loss
that either can carry. Each takes (logits (B, T, K), labels (B, max_len) codec ids, lengths (B,))."""
import functools

import torch
import torch.nn as nn
import torch.nn.functional as F

from models.decoding import greedy_path
from models.heads import CTCHead


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
    """The training loss (logits, labels, lengths) -> scalar: `loss_fn` (a head kind's loss) with label
    smoothing, plus the center loss when center_weight > 0. Call it after moving the model to its device."""
    if not 0 <= label_smoothing < 1:  # -1 (by the set's size) is resolved by train.resolve_small_set first
        raise ValueError(f"LABEL_SMOOTHING {label_smoothing}: expected 0-1 (or -1 before the training set is known)")
    loss_fn = functools.partial(loss_fn, label_smoothing=label_smoothing)
    return CenterLoss(model, num_classes, loss_fn, center_weight, center_lr) if center_weight else loss_fn
