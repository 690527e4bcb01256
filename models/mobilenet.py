"""torchvision MobileNet V2 and V3 (small, large): their feature stages with the last stride-2 step
turned into stride 1. A 60x160 input ends as (C, 4, 10), or (C, 4, 20) with the CTC head;
C = 1280 (v2), 576 (v3 small), 960 (v3 large)."""
import functools

from models.registry import register_backbone
from models.adapt import torchvision_features


def mobilenet_features(arch, in_channels, height, width, column_stride):
    return torchvision_features(arch, ("features",), in_channels, column_stride)


for _arch in ("mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large"):
    register_backbone(_arch, functools.partial(mobilenet_features, _arch))
