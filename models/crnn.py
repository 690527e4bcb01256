"""CRNN (Shi, Bai and Yao, TPAMI 2017): the classic small VGG-style CNN + 2-layer BiLSTM + CTC.

Pools after the second stage halve only the height, so the columns stay dense: a 60x160 input ends as a
(512, 2, 41) map, 41 time steps. Batch norm follows every conv here (the paper has it on two), which
lets it train at the same learning rate as the other models. The BiLSTM is part of the model: where
SEQUENCE is at its neutral "none", crnn keeps it (SEQUENCE="gru" swaps it for a BiGRU).
"""
import torch.nn as nn

from models.registry import CaptchaModel, register
from models.adapt import output_shape
from models.heads import CTCHead


def conv_bn(cin, cout, kernel=3, padding=1):
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, 1, padding, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


def crnn_features(in_channels):
    return nn.Sequential(
        conv_bn(in_channels, 64), nn.MaxPool2d(2, 2),                    # (64, H/2, W/2)
        conv_bn(64, 128), nn.MaxPool2d(2, 2),                            # (128, H/4, W/4)
        conv_bn(128, 256), conv_bn(256, 256), nn.MaxPool2d(2, (2, 1), (0, 1)),  # (256, H/8, W/4 + 1)
        conv_bn(256, 512), conv_bn(512, 512), nn.MaxPool2d(2, (2, 1), (0, 1)),  # (512, H/16, W/4 + 2)
        conv_bn(512, 512, kernel=2, padding=0),                          # (512, H/16 - 1, W/4 + 1)
    )


@register("crnn", head="ctc", sequence="lstm")
def crnn(in_channels, num_classes, positions, height, width, pool="flat", sequence="lstm", hidden=256,
         bnneck=False, dropout=0.2):
    features = crnn_features(in_channels)
    shape = output_shape(features, in_channels, height, width)
    return CaptchaModel(features, CTCHead(shape, positions, num_classes, pool, sequence, hidden, bnneck, dropout))
