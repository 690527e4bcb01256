"""torchvision DenseNet-121: its stem and dense blocks; the last transition keeps the size, so a 60x160
input ends as (1024, 3, 10), or (1024, 3, 20) with the CTC head (its 2x2 pools round 15 rows down to 7, 3)."""
import torch.nn as nn

from models.registry import register_backbone
from models.adapt import torchvision_features


def densenet121_features(in_channels, height, width, column_stride):
    # torchvision applies this ReLU in forward(), after the final batch norm
    return torchvision_features("densenet121", ("features",), in_channels, column_stride,
                                extra=[("relu", nn.ReLU(inplace=True))])


register_backbone("densenet121", densenet121_features)
