"""The custom CNN: the dee1024 shape (conv-BN-ReLU-pool stages, one wide classifier), made fast on CPU.

dee1024 put Dropout(0.5) after every convolution, a third of each CPU step; here dropout sits only
before the classifier. A stride-2 stem halves the 60x160 input at once (characters are ~30 px wide).
"""
import torch.nn as nn

from models import register
from models.heads import FixedHead


def conv_bn(cin, cout, stride=1):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class CNN(nn.Module):
    def __init__(self, in_channels, num_classes, positions, height, width, widths=(32, 64, 128, 128), dropout=0.2):
        super().__init__()
        a, b, c, d = widths
        self.features = nn.Sequential(
            conv_bn(in_channels, a, stride=2), nn.MaxPool2d(2),  # (a, H/4, W/4)
            conv_bn(a, b), nn.MaxPool2d(2),                      # (b, H/8, W/8)
            conv_bn(b, c), nn.MaxPool2d(2),                      # (c, H/16, W/16)
            conv_bn(c, d),                                       # (d, H/16, W/16)
        )
        h, w = height // 2 // 2 // 2 // 2, width // 2 // 2 // 2 // 2
        self.head = FixedHead(d * h * w, positions, num_classes, dropout)

    def forward(self, x):
        return self.head(self.features(x))


@register("cnn")
def cnn(**kw):
    return CNN(**kw)
