"""Fitting torchvision backbones to captcha images: input channels, strides, and local weight files.

ImageNet networks divide the image by 32; a 60x160 captcha would end as a 2x5 map, fewer columns than a
CTC head needs for 4 characters. `fit_strides` keeps the early downsampling steps and turns the later
ones into stride 1, so every backbone ends at height / 16 and width / 16 (fixed head) or width / 8 (CTC).
"""
import pickle
import re
from collections import OrderedDict

import torch
import torch.nn as nn

STRIDED = (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)
# torchvision's own DenseNet files still use the old key names (denselayer1.norm.1.weight); its loader renames
LEGACY_DENSENET = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$")
PROBE = 32  # side of the square image used to find the downsampling steps: 32 halves 5 times


def _pair(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


@torch.no_grad()
def output_shape(features, in_channels, height, width):
    """(C, h, w) that `features` makes of one (in_channels, height, width) image (an eval-mode pass)."""
    was_training = features.training
    features.eval()
    try:
        return tuple(features(torch.zeros(1, in_channels, height, width)).shape[1:])
    finally:
        features.train(was_training)


def downsampling_steps(features, in_channels):
    """[[module, ...], ...]: the strided convs and pools in forward order, one list per downsampling step.

    Modules that reduce the same input size belong to one step: a residual block's strided conv and its
    strided shortcut, or ShuffleNet's two branches, must keep the same stride.
    """
    by_size = OrderedDict()

    def record(module, args):
        by_size.setdefault(tuple(args[0].shape[-2:]), []).append(module)

    strided = [m for m in features.modules() if isinstance(m, STRIDED) and _pair(m.stride) != (1, 1)]
    hooks = [m.register_forward_pre_hook(record) for m in strided]
    try:
        output_shape(features, in_channels, PROBE, PROBE)
    finally:
        for h in hooks:
            h.remove()
    return list(by_size.values())


def fit_strides(features, in_channels, height_stride=16, width_stride=16):
    """Give `features` total strides (height_stride, width_stride): early steps keep theirs, later ones get 1.

    A pool whose window equals its stride (2x2 / 2) gets a window equal to the new stride, so it still
    covers each position once; a 3x3 conv or pool with padding 1 keeps the size at stride 1.
    """
    total = [1, 1]
    for step in downsampling_steps(features, in_channels):
        old = _pair(step[0].stride)
        new = []
        for axis, target in enumerate((height_stride, width_stride)):
            s = max(1, min(old[axis], target // total[axis]))
            total[axis] *= s
            new.append(s)
        for m in step:
            if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)) and _pair(m.kernel_size) == old:
                m.kernel_size = tuple(new)
            m.stride = tuple(new)
    return features


def set_in_channels(features, in_channels):
    """Replace the first convolution when the image has other than 3 channels (grey captchas have 1)."""
    name, conv = next((n, m) for n, m in features.named_modules() if isinstance(m, nn.Conv2d))
    if conv.in_channels == in_channels:
        return features
    parent = features.get_submodule(name.rpartition(".")[0]) if "." in name else features
    setattr(parent, name.rpartition(".")[2], nn.Conv2d(
        in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
        conv.groups, conv.bias is not None))
    return features


def torchvision_features(arch, stages, in_channels, column_stride, extra=()):
    """The feature stages of torchvision's `arch` (random init), fitted to captchas.

    Stages keep torchvision's child names, so `features.<key>` matches `<key>` of a torchvision weight file.
    """
    import torchvision.models  # here, not at the top: importing torchvision takes seconds, and most runs never need it

    net = getattr(torchvision.models, arch)(weights=None)
    features = nn.Sequential(OrderedDict([(s, getattr(net, s)) for s in stages] + list(extra)))
    fit_strides(features, 3, 16, column_stride)
    return set_in_channels(features, in_channels)


def load_pretrained(model, path):
    """Copy the tensors of a local torchvision weight file into `model.features`; returns a report.

    Tensors whose shape differs (a re-designed stem, a 1000-class classifier) are skipped; a colour stem
    loaded into a grey model is summed over its RGB inputs, which keeps its response to brightness.
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as e:
        raise ValueError(f"PRETRAINED={path}: not a readable weight file ({type(e).__name__}: {e})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict", state.get("model")), dict):
        state = state.get("state_dict", state.get("model"))
    own = model.state_dict()
    loaded, adapted, mismatched, unused = [], [], [], []
    for key, tensor in state.items():
        target = "features." + LEGACY_DENSENET.sub(r"\1\2", key)
        if target not in own:
            unused.append(key)
        elif own[target].shape == tensor.shape:
            own[target] = tensor
            loaded.append(key)
        elif tensor.dim() == 4 and tensor.shape[1] == 3 and own[target].shape == (len(tensor), 1, *tensor.shape[2:]):
            own[target] = tensor.sum(1, keepdim=True)
            adapted.append(key)
        else:
            mismatched.append(f"{key} {tuple(tensor.shape)} vs {tuple(own[target].shape)}")
    if not loaded and not adapted:
        raise ValueError(f"{path}: none of its {len(state)} tensors fit this model (is it a torchvision "
                         f"weight file of the same architecture?)")
    model.load_state_dict(own)
    lines = [f"{path}: loaded {len(loaded) + len(adapted)} of {len(state)} tensors into the backbone"]
    if adapted:
        lines.append(f"  summed over RGB for the grey stem: {', '.join(adapted)}")
    if mismatched:
        lines.append(f"  skipped, shape differs: {', '.join(mismatched)}")
    if unused:
        lines.append(f"  skipped, not in this model: {', '.join(unused[:8])}" + (" ..." if len(unused) > 8 else ""))
    return "\n".join(lines)
