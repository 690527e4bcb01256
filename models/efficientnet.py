"""torchvision EfficientNet-B0: its feature stages with the last stride-2 step turned into stride 1.
A 60x160 input ends as (1280, 4, 10), or (1280, 4, 20) with the CTC head."""
from models.registry import register_backbone
from models.adapt import torchvision_features


def efficientnet_b0_features(in_channels, height, width, column_stride):
    return torchvision_features("efficientnet_b0", ("features",), in_channels, column_stride)


register_backbone("efficientnet_b0", efficientnet_b0_features)
