"""Model registry (timm style): `build_model(name, ...)` and the head kind each model has.

Every model maps images (B, C, H, W) to logits (B, T, K):
  head "fixed": T = label positions, K = charset (+1 padding class for variable lengths)
  head "ctc":   T = time steps along the width, K = charset + 1 (blank = 0)
"""
MODELS = {}  # name -> (builder, head kind)


def register(name, head="fixed"):
    def add(builder):
        MODELS[name] = (builder, head)
        return builder
    return add


def head_of(name):
    if name not in MODELS:
        raise KeyError(f"unknown model {name!r}; registered: {', '.join(MODELS)}")
    return MODELS[name][1]


def build_model(name, in_channels, num_classes, positions, height, width, **options):
    """Build a registered model. The arguments (a plain dict) are stored in checkpoints to rebuild it."""
    builder, _ = MODELS[name] if name in MODELS else (head_of(name), None)
    return builder(in_channels=in_channels, num_classes=num_classes, positions=positions, height=height,
                   width=width, **options)


from models import cnn, resnet  # noqa: E402,F401  (registers the models)
