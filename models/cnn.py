"""The custom CNN: the dee1024 shape (conv-BN-ReLU-pool stages, one wide classifier), made fast on CPU.

dee1024 put Dropout(0.5) after every convolution, a third of each CPU step; here dropout sits only
before the classifier. A stride-2 stem halves the 60x160 input at once (characters are ~30 px wide).
A 60x160 input ends as (128, 3, 10); with the CTC head the last pool keeps the width: (128, 3, 20).
"""
import torch.nn as nn

from models.registry import register_backbone
from models.adapt import fit_strides

WIDTHS = (32, 64, 128, 128)  # channels of the four conv stages (times WIDEN)


def conv_bn(cin, cout, stride=1):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


def cnn_features(in_channels, height, width, column_stride, widen=1.0):
    a, b, c, d = (max(1, round(w * widen)) for w in WIDTHS)
    features = nn.Sequential(
        conv_bn(in_channels, a, stride=2), nn.MaxPool2d(2),  # (a, H/4, W/4)
        conv_bn(a, b), nn.MaxPool2d(2),                      # (b, H/8, W/8)
        conv_bn(b, c), nn.MaxPool2d(2),                      # (c, H/16, W/16)
        conv_bn(c, d),                                       # (d, H/16, W/16)
    )
    return fit_strides(features, in_channels, 16, column_stride)


register_backbone("cnn", cnn_features)
