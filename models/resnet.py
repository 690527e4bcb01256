"""torchvision ResNets and ResNeXt adapted to captchas, with pprp's tricks (IBN-a, SE / CBAM attention).

Stem: one 3x3 stride-2 conv and no max-pool (the ImageNet 7x7 conv + pool throws away a quarter of a 60 px
image at once). Stages 2-4 halve the map, so a 60x160 input ends as (C, 4, 10); with the CTC head the last
stage keeps the width: (C, 4, 20). C = 512 (resnet18/34), 2048 (resnet50/101/152, resnext50_32x4d).
"""
import functools
from collections import OrderedDict

import torch.nn as nn

from models.registry import register_backbone
from models.adapt import fit_strides
import models.tricks as tricks


@functools.cache
def _blocks():
    """{"basic", "bottleneck"}: torchvision's residual blocks with attention on the residual branch, before the
    sum (as in SE-ResNet). Built on first use: importing torchvision takes seconds, and most runs never need it."""
    from torchvision.models.resnet import BasicBlock, Bottleneck

    class AttentionBasicBlock(BasicBlock):
        def __init__(self, *args, attention_kind="", **kw):
            super().__init__(*args, **kw)
            self.attention = tricks.attention(attention_kind, self.bn2.num_features)

        def forward(self, x):
            identity = x if self.downsample is None else self.downsample(x)
            out = self.relu(self.bn1(self.conv1(x)))
            return self.relu(self.attention(self.bn2(self.conv2(out))) + identity)

    class AttentionBottleneck(Bottleneck):  # stride on the 3x3 conv
        def __init__(self, *args, attention_kind="", **kw):
            super().__init__(*args, **kw)
            self.attention = tricks.attention(attention_kind, self.bn3.num_features)

        def forward(self, x):
            identity = x if self.downsample is None else self.downsample(x)
            out = self.relu(self.bn1(self.conv1(x)))
            out = self.relu(self.bn2(self.conv2(out)))
            return self.relu(self.attention(self.bn3(self.conv3(out))) + identity)

    return {"basic": AttentionBasicBlock, "bottleneck": AttentionBottleneck}


ARCHS = {  # name: (block, blocks per stage, groups, width per group)
    "resnet18": ("basic", [2, 2, 2, 2], 1, 64),
    "resnet34": ("basic", [3, 4, 6, 3], 1, 64),
    "resnet50": ("bottleneck", [3, 4, 6, 3], 1, 64),
    "resnet101": ("bottleneck", [3, 4, 23, 3], 1, 64),
    "resnet152": ("bottleneck", [3, 8, 36, 3], 1, 64),
    "resnext50_32x4d": ("bottleneck", [3, 4, 6, 3], 32, 4),
}


def resnet_features(arch, in_channels, height, width, column_stride, ibn=False, attention=""):
    from torchvision.models.resnet import ResNet

    kind, layers, groups, width_per_group = ARCHS[arch]
    block = _blocks()[kind]
    make_block = functools.partial(block, attention_kind=attention)
    make_block.expansion = block.expansion  # ResNet reads block.expansion
    net = ResNet(make_block, layers, groups=groups, width_per_group=width_per_group)
    net.conv1 = nn.Conv2d(in_channels, 64, 3, 2, 1, bias=False)
    if ibn:  # IBN-a: stages 1-3 only; the last stage keeps batch norm for discrimination
        for stage in (net.layer1, net.layer2, net.layer3):
            for b in stage:
                b.bn1 = tricks.IBNNorm(b.bn1.num_features)
    names = ("conv1", "bn1", "relu", "layer1", "layer2", "layer3", "layer4")
    features = nn.Sequential(OrderedDict((n, getattr(net, n)) for n in names))
    return fit_strides(features, in_channels, 16, column_stride)


for _arch in ARCHS:
    register_backbone(_arch, functools.partial(resnet_features, _arch))
