"""Model registry (timm style): `build_model(name, ...)`, and the head kind each model has.

Every model maps images (B, C, H, W) in [-1, 1] to logits (B, T, K):
  head "fixed": T = label positions, K = charset (+1 padding class for variable lengths)
  head "ctc":   T = columns along the width, K = charset + 1 (blank = 0)
A backbone registers twice: `name` with the fixed head and `name_ctc` with the CTC head. `head(name)` is the
model's head-kind record (classes, loss, decoder, candidates, options: models/kinds.py).

Options (tricks and head settings) are build arguments, stored in checkpoints; `OPTIONS` holds their
neutral values. A model takes only the options that apply to it (`MODELS[name].options`); a model may have
its own value where the setting is neutral (crnn keeps the paper's BiLSTM). `describe(name, options)` names a
run by the options changed from neutral.
"""
from models import losses  # noqa: F401
from models.adapt import load_pretrained  # noqa: F401
from models.kinds import HEADS, HeadKind  # noqa: F401
from models.registry import (ARGS, MODELS, OPTIONS, CaptchaModel, build_model, describe, head, head_of,  # noqa: F401
                             model_options, neutral, register, register_backbone)
# importing the families registers their models, in this order
from models import cnn, crnn, resnet, densenet, mobilenet, efficientnet, shufflenet, regnet, convnext  # noqa: E402,F401,I001
