"""torchvision RegNetY-400MF: stem and trunk; the last stage keeps the size. A 60x160 input ends as
(440, 4, 10), or (440, 4, 20) with the CTC head."""
from models.registry import register_backbone
from models.adapt import torchvision_features


def regnet_y_400mf_features(in_channels, height, width, column_stride):
    return torchvision_features("regnet_y_400mf", ("stem", "trunk_output"), in_channels, column_stride)


register_backbone("regnet_y_400mf", regnet_y_400mf_features)
