"""torchvision ResNet adapted to small captcha inputs: a 3x3 stride-1 stem without max-pool, so a
60x160 input ends as a (512, 8, 20) feature map, enough horizontal resolution for the characters."""
import torch.nn as nn
import torchvision

from models import register
from models.heads import FixedHead


class ResNetFixed(nn.Module):
    def __init__(self, arch, in_channels, num_classes, positions, height, width, dropout=0.2):
        super().__init__()
        net = getattr(torchvision.models, arch)(weights=None)
        net.conv1 = nn.Conv2d(in_channels, 64, 3, 2, 1, bias=False)
        net.maxpool = nn.Identity()
        self.features = nn.Sequential(net.conv1, net.bn1, net.relu, net.layer1, net.layer2, net.layer3, net.layer4)
        h, w = -(-height // 16), -(-width // 16)
        self.head = FixedHead(net.fc.in_features * h * w, positions, num_classes, dropout)

    def forward(self, x):
        return self.head(self.features(x))


@register("resnet18")
def resnet18(**kw):
    return ResNetFixed("resnet18", **kw)
