"""torchvision ShuffleNet V2 x1.0: stem, three stages and the 1x1 conv5; the last stage keeps the size.
A 60x160 input ends as (1024, 4, 10), or (1024, 4, 20) with the CTC head."""
from models.registry import register_backbone
from models.adapt import torchvision_features


def shufflenet_v2_x1_0_features(in_channels, height, width, column_stride):
    return torchvision_features("shufflenet_v2_x1_0", ("conv1", "maxpool", "stage2", "stage3", "stage4", "conv5"),
                                in_channels, column_stride)


register_backbone("shufflenet_v2_x1_0", shufflenet_v2_x1_0_features)
