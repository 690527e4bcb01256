"""Backbone tricks from pprp/captcha.Pytorch, as modules the ResNet family plugs in: IBN-a and attention."""
import torch
import torch.nn as nn


class IBNNorm(nn.Module):
    """IBN-a (Pan et al., ECCV 2018): instance norm on half the channels, batch norm on the rest.

    Instance norm removes per-image contrast and colour shifts (captcha styles vary in both) while the
    batch-normed half keeps what tells characters apart; used in place of bn1 in the first three stages.
    """

    def __init__(self, channels):
        super().__init__()
        self.half = channels // 2
        self.instance = nn.InstanceNorm2d(self.half, affine=True)
        self.batch = nn.BatchNorm2d(channels - self.half)

    def forward(self, x):
        a, b = x.split([self.half, x.shape[1] - self.half], 1)
        return torch.cat([self.instance(a.contiguous()), self.batch(b.contiguous())], 1)


class SEAttention(nn.Module):
    """Squeeze-and-excitation (Hu et al., CVPR 2018): reweight channels by a gate from their global mean."""

    def __init__(self, channels, reduction=16):
        super().__init__()
        hidden = max(8, channels // reduction)
        self.gate = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(channels, hidden, 1), nn.ReLU(inplace=True),
                                  nn.Conv2d(hidden, channels, 1), nn.Sigmoid())

    def forward(self, x):
        return x * self.gate(x)


class CBAMAttention(nn.Module):
    """CBAM (Woo et al., ECCV 2018): a channel gate from average- and max-pooled descriptors through one
    shared MLP, then a spatial gate from a 7x7 conv over the channel mean and max maps."""

    def __init__(self, channels, reduction=16):
        super().__init__()
        hidden = max(8, channels // reduction)
        self.mlp = nn.Sequential(nn.Conv2d(channels, hidden, 1), nn.ReLU(inplace=True), nn.Conv2d(hidden, channels, 1))
        self.spatial = nn.Conv2d(2, 1, 7, padding=3)

    def forward(self, x):
        x = x * torch.sigmoid(self.mlp(x.mean((2, 3), keepdim=True)) + self.mlp(x.amax((2, 3), keepdim=True)))
        maps = torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], 1)  # (B, 2, h, w)
        return x * torch.sigmoid(self.spatial(maps))


ATTENTIONS = {"": nn.Identity, "se": SEAttention, "cbam": CBAMAttention}


def attention(kind, channels):
    if kind not in ATTENTIONS:
        raise ValueError(f"attention {kind!r}: expected one of {', '.join(repr(k) for k in ATTENTIONS)}")
    return ATTENTIONS[kind](channels)
