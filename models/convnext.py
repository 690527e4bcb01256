"""torchvision ConvNeXt-Tiny: the 4x4 patchify stem and four stages. The last downsampling layer (a 2x2
conv) moves by 1 instead of 2, which also trims one row and column: a 60x160 input ends as (768, 2, 9),
or with the CTC head, whose last two steps keep the width, (768, 2, 18)."""
from models.registry import register_backbone
from models.adapt import torchvision_features


def convnext_tiny_features(in_channels, height, width, column_stride):
    return torchvision_features("convnext_tiny", ("features",), in_channels, column_stride)


register_backbone("convnext_tiny", convnext_tiny_features)
