"""A checkpoint as a ddddocr (1.6.1) custom model: an ONNX file and the charsets JSON ddddocr reads beside it.

    ocr = ddddocr.DdddOcr(det=False, ocr=False, show_ad=False,
                          import_onnx_path="model.onnx", charsets_path="model.charsets.json")
    ocr.classification(open("captcha.png", "rb").read())

What ddddocr 1.6.1 does with a custom model (ddddocr/core/ocr_engine.py, models/model_loader.py):

- the JSON must hold `charset` (a list: output class i reads as charset[i]), `word`, `image` and `channel`;
- `image` = [width, height]: the image is resized to that size with PIL's LANCZOS (an image already that size
  is left as it is); [-1, height]: to that height, the width following the aspect ratio (`word` = true then
  makes it a height x height square instead: the only thing `word` changes);
- `channel` = 1: converted to grey (PIL's convert("L"), after the resize); otherwise left in the file's mode;
- pixels as float32 / 255 (0..1), laid out (1, channels, height, width), fed to the model's first input
  whatever its name;
- the first output, (1, T, K) (or (T, 1, K)): the argmax of every step, then a CTC collapse: repeats of an
  index merged, index 0 dropped (a blank), every other index i read as charset[i]. There is no other decoder:
  `word` does not change it.

The graph written here (DdddocrGraph) takes exactly that tensor, rounds it back to the 0..255 pixels our model
reads (data.load_image's uint8 array, normalised to [-1, 1] as in training) and writes (B, T, K) scores whose
per-step argmax, CTC-collapsed, is the text the project's decoder reads:

- CTC head: our blank is index 0 as well, so class i is charset[i - 1] and the charsets list is [""] + charset.
  Our decoder keeps the greedy path unless its reading has a length the labels never have; then it takes the
  likeliest path with an allowed length (models/decoding.length_paths). The graph runs the same search, so
  ddddocr reads the same text; on the frames where that path leaves the likeliest class, the path's class and
  the likeliest one swap their scores (each frame keeps the model's set of probabilities).
- fixed-length head: position j becomes two steps, its classes (shifted by one; a padding class becomes the
  blank) then a blank, so the collapse keeps doubled letters (A - A - reads AA) and drops padding.

The outputs are log-probabilities, so ddddocr's probability=True (softmax of the output) gives the model's
probabilities, plus certain blanks between a fixed head's positions.
"""
import json
import os
import warnings

import torch
import torch.nn as nn

from core import data
from core.batches import to_float
from core.files import atomic_write

INPUT, OUTPUT = "input1", "output"  # ddddocr feeds its first input whatever the name; its own models use input1
HEADS = ("ctc", "fixed")
NEVER = -1e4  # a class's score on the steps where it cannot be read (finite: ddddocr's softmax subtracts the max)


class UnsupportedModel(ValueError):
    """A checkpoint this format cannot express; str() is one line that says why."""


def codec_of(ckpt):
    """The codec the model's classes follow (a case-folding checkpoint's charset upper-cased, as training did)."""
    return data.Codec(ckpt["charset"], tuple(ckpt["length"]), ckpt.get("case_sensitive", True))


def check_supported(ckpt):
    """Raise UnsupportedModel (one line) for a checkpoint whose readings ddddocr could not reproduce."""
    if ckpt.get("head") not in HEADS:
        raise UnsupportedModel(f"head {ckpt.get('head')!r}: ddddocr export knows the {' and '.join(HEADS)} heads")
    if ckpt.get("channels") not in (1, 3):
        raise UnsupportedModel(f"{ckpt.get('channels')} channels: ddddocr feeds grey (1) or colour (3) images")
    if any(len(c) != 1 for c in codec_of(ckpt).charset):
        raise UnsupportedModel("a charset entry that is not one character")


def charsets(ckpt):
    """The charsets JSON (a dict) ddddocr reads beside the model: class i of the exported output is charset[i]."""
    check_supported(ckpt)
    height, width = ckpt["image_size"]
    return {"charset": [""] + list(codec_of(ckpt).charset),  # index 0: the blank ddddocr drops
            "word": False,  # with a fixed `image` size, word changes nothing in 1.6.1
            "image": [width, height],  # ddddocr resizes every image to exactly the model's size
            "channel": ckpt["channels"]}


def _lead(scores, path):
    """`scores` (B, T, K) changed so that argmax over K gives `path` (B, T): on each step the path's class and the
    likeliest class swap their scores (the same set of values), and exact ties with the leader (rounding), which
    argmax would settle by index, are nudged just below it."""
    classes = torch.arange(scores.shape[-1], device=scores.device)
    best = scores.argmax(-1, keepdim=True)
    want = path.unsqueeze(-1)
    top, mine = scores.gather(-1, best), scores.gather(-1, want)
    is_want, is_best = classes == want, classes == best
    out = torch.where(is_want, top, torch.where(is_best, mine, scores))
    return torch.where(~is_want & (out >= top), top - 1e-5 * (1 + top.abs()), out)


class _Nodes:
    """ONNX nodes written by hand (names prefixed, constants as initializers): the CTC search below would be
    thousands of nodes and minutes of work for torch's exporter, unrolled over the frames; written directly it is
    about 30 nodes a frame and instant."""

    def __init__(self, prefix="ddddocr_"):
        self.prefix, self.nodes, self.initializers, self.count = prefix, [], [], 0

    def _name(self):
        self.count += 1
        return f"{self.prefix}{self.count}"

    def const(self, value, dtype):
        import numpy as np
        from onnx import numpy_helper

        name = self._name()
        self.initializers.append(numpy_helper.from_array(np.asarray(value, dtype), name))
        return name

    def __call__(self, op, *inputs, outputs=1, **attrs):
        from onnx import helper

        names = [self._name() for _ in range(outputs)]
        self.nodes.append(helper.make_node(op, list(inputs), names, **attrs))
        return names[0] if outputs == 1 else names

    def slice(self, x, axis, start, end):
        return self("Slice", x, self.const([start], "int64"), self.const([end], "int64"), self.const([axis], "int64"))


def ctc_nodes(g, logits, steps, classes, lo, hi):
    """Nodes from `logits` (B, T, K) to scores whose per-frame argmax is the path models.decoding.ctc_paths reads:
    the greedy path, or where its reading's length is outside lo..hi, length_paths' likeliest path with an allowed
    length (the same search step for step: TopK, >=, ArgMax settle ties as torch does there). Returns the name of
    the (B, T, K) output: the log-probabilities, led by the path (_lead)."""
    import numpy as np

    neg_inf = g.const(-np.inf, "float32")
    same = g.const(np.arange(classes).reshape(1, 1, classes), "int64")
    blank_col = g.const((np.arange(classes) == 0).reshape(1, 1, classes), "bool")
    k_const = g.const(classes, "int64")
    probs = g("Softmax", logits, axis=-1)
    greedy = g("ArgMax", probs, axis=2, keepdims=0)  # (B, T)
    log_probs = g("LogSoftmax", logits, axis=-1)
    path = greedy
    if lo <= steps:
        lp = g("Log", g("Max", probs, g.const(1e-30, "float32")))
        count = np.arange(hi + 1).reshape(1, hi + 1, 1)
        cls = np.arange(classes).reshape(1, 1, classes)
        start = g.const(((count == 0) & (cls == 0)) | ((count == 1) & (cls >= 1)), "bool")
        score = g("Where", start, g.slice(lp, 1, 0, 1), neg_inf)  # (B, hi + 1, K)
        pads = g.const([0, 1, 0, 0, 0, 0], "int64")  # one row before the count axis: count -1 does not exist
        two = g.const([2], "int64")
        backs = []
        for t in range(1, steps):
            top, order = g("TopK", score, two, axis=2, outputs=2)  # best and second-best last class
            ptop = g("Pad", g.slice(top, 1, 0, hi), pads, neg_inf)  # row k: count k - 1's
            pord = g("Pad", g.slice(order, 1, 0, hi), pads, g.const(-1, "int64"))
            pord0, pord1 = g.slice(pord, 2, 0, 1), g.slice(pord, 2, 1, 2)
            clash = g("Equal", pord0, same)
            adv = g("Where", clash, g.slice(ptop, 2, 1, 2), g.slice(ptop, 2, 0, 1))
            take = g("GreaterOrEqual", score, adv)  # the same class as the last frame: the count stays
            new = g("Where", blank_col, g.slice(top, 2, 0, 1), g("Where", take, score, adv))
            came = g("Where", take, same, g("Where", clash, pord1, pord0))
            moved = g("Mul", g("Cast", g("Not", take), to=7), k_const)  # 7: int64
            backs.append(g("Flatten", g("Where", blank_col, g.slice(order, 2, 0, 1), g("Add", came, moved)), axis=1))
            score = g("Add", new, g.slice(lp, 1, t, t + 1))
        end = g("Flatten", g.slice(score, 1, lo, hi + 1), axis=1)
        best = g("ArgMax", end, axis=1, keepdims=1)  # (B, 1)
        finite = g("Cast", g("Not", g("IsInf", end)), to=7)
        found = g("Greater", g("ReduceSum", finite, g.const([1], "int64"), keepdims=1), g.const(0, "int64"))
        k = g("Add", g("Div", best, k_const), g.const(lo, "int64"))
        c = g("Mod", best, k_const)
        trail = [c]
        for t in range(steps - 1, 0, -1):  # back from the end state: (count, class) -> the frame before's
            code = g("GatherElements", backs[t - 1], g("Add", g("Mul", k, k_const), c), axis=1)
            k, c = g("Sub", k, g("Div", code, k_const)), g("Mod", code, k_const)
            trail.append(c)
        searched = g("Concat", *trail[::-1], axis=1)  # (B, T)
        before = g("Pad", g.slice(greedy, 1, 0, steps - 1), g.const([0, 1, 0, 0], "int64"), g.const(0, "int64"))
        zero = g.const(0, "int64")
        starts = g("And", g("Not", g("Equal", greedy, zero)), g("Not", g("Equal", greedy, before)))
        n = g("ReduceSum", g("Cast", starts, to=7), g.const([1], "int64"), keepdims=1)  # the greedy reading's length
        off = g("Or", g("Less", n, g.const(lo, "int64")), g("Greater", n, g.const(hi, "int64")))
        path = g("Where", g("And", found, off), searched, greedy)
    # _lead: the path's class and the frame's likeliest swap scores; exact ties with the leader nudged below it
    best = g("ArgMax", log_probs, axis=2, keepdims=1)
    want = g("Unsqueeze", path, g.const([2], "int64"))
    top, mine = g("GatherElements", log_probs, best, axis=2), g("GatherElements", log_probs, want, axis=2)
    is_want, is_best = g("Equal", same, want), g("Equal", same, best)
    out = g("Where", is_want, top, g("Where", is_best, mine, log_probs))
    tie = g("And", g("Not", is_want), g("GreaterOrEqual", out, top))
    below = g("Sub", top, g("Mul", g.const(1e-5, "float32"), g("Add", g.const(1, "float32"), g("Abs", top))))
    return g("Where", tie, below, out)


class DdddocrGraph(nn.Module):
    """float32 (B, C, H, W) in 0..1, what ddddocr feeds -> (B, T, K) scores it decodes into our model's texts."""

    def __init__(self, model, ckpt):
        super().__init__()
        check_supported(ckpt)
        self.model = model
        self.head = ckpt["head"]
        codec = codec_of(ckpt)
        self.lo, self.hi = codec.length
        self.chars, self.variable = len(codec.charset), codec.variable

    def forward(self, x):
        pixels = (x * 255).round().clamp(0, 255)  # ddddocr's /255 undone: the uint8 values, exactly
        logits = self.model(to_float(pixels)).float()
        if self.head == "ctc":  # the logits; ctc_nodes, added to the exported graph, make the scores
            return logits
        log_probs = logits.log_softmax(-1)
        ids = logits.softmax(-1).argmax(-1)  # what fixed_decode reads: a class per position
        path = torch.where(ids < self.chars, ids + 1, torch.zeros_like(ids))  # padding -> blank
        pad = log_probs[..., self.chars:] if self.variable else torch.full_like(log_probs[..., :1], NEVER)
        step = _lead(torch.cat([pad, log_probs[..., :self.chars]], -1), path)  # (B, L, 1 + C)
        blank = torch.cat([torch.zeros_like(step[..., :1]), torch.full_like(step[..., 1:], NEVER)], -1)
        return torch.stack([step, blank], 2).flatten(1, 2)  # (B, 2L, 1 + C): char, blank, char, blank, ...


def add_ctc_decoder(proto, graph):
    """Replace the exported CTC graph's output (the logits) by ctc_nodes' scores, under the same name."""
    from onnx import TensorProto, helper

    out = proto.graph.output[0]
    steps, classes = (d.dim_value for d in out.type.tensor_type.shape.dim[1:])
    out.name, logits = OUTPUT, "ddddocr_logits"
    for node in proto.graph.node:
        node.output[:] = [logits if name == OUTPUT else name for name in node.output]
    g = _Nodes()
    scores = ctc_nodes(g, logits, steps, classes, graph.lo, graph.hi)
    g.nodes.append(helper.make_node("Identity", [scores], [OUTPUT]))
    proto.graph.node.extend(g.nodes)
    proto.graph.initializer.extend(g.initializers)
    out.type.tensor_type.elem_type = TensorProto.FLOAT


def output_paths(out):
    """(ONNX path, charsets JSON path) for --out: X.onnx -> X.onnx and X.charsets.json."""
    stem = out[:-len(".onnx")] if out.endswith(".onnx") else out
    return stem + ".onnx", stem + ".charsets.json"


def export(ckpt, model, onnx_path, charsets_path, opset=None):
    """Write `model` (rebuilt from the loaded checkpoint dict `ckpt`, eval mode, on the CPU) as the ddddocr model
    `onnx_path` and its `charsets_path` JSON, each atomically; returns the charsets dict. UnsupportedModel for a
    checkpoint the format cannot express."""
    import onnx

    info = charsets(ckpt)
    height, width = ckpt["image_size"]
    graph = DdddocrGraph(model, ckpt).eval()
    # Batch 2, not 1: torch.export would take a batch of 1 for a constant (ddddocr feeds 1; any size works).
    example = torch.rand(2, ckpt["channels"], height, width)
    with warnings.catch_warnings():  # the exporter's FutureWarnings and notes say nothing to a user
        warnings.simplefilter("ignore")
        program = torch.onnx.export(graph, (example,), dynamo=True, opset_version=opset, input_names=[INPUT],
                                    output_names=[OUTPUT], dynamic_shapes=({0: torch.export.Dim("batch")},),
                                    external_data=False, optimize=True, verbose=False)  # optimize: BatchNorm folded
    proto = program.model_proto
    if ckpt["head"] == "ctc":  # blank 0 and characters 1..C, as ddddocr reads them
        add_ctc_decoder(proto, DdddocrGraph(model, ckpt))
    onnx.helper.set_model_props(proto, {"format": "ddddocr", "charsets": json.dumps(info, ensure_ascii=False),
                                        "model_name": ckpt["model_name"], "head": ckpt["head"]})
    proto.doc_string = (f"captcha reader {ckpt['model_name']} for ddddocr: input '{INPUT}' float32 (batch, "
                        f"{ckpt['channels']}, {height}, {width}) pixels / 255; output '{OUTPUT}' (batch, T, "
                        f"{len(info['charset'])}) scores, argmax per step then CTC collapse, blank 0")
    onnx.checker.check_model(proto)
    atomic_write(onnx_path, proto.SerializeToString())
    atomic_write(charsets_path, json.dumps(info, ensure_ascii=False, indent=1).encode("utf-8"))
    return info


def load_lines(onnx_path, charsets_path):
    """The Python lines that read an image with the exported model in ddddocr."""
    return (f"import ddddocr\n"
            f"ocr = ddddocr.DdddOcr(det=False, ocr=False, show_ad=False,\n"
            f"                      import_onnx_path={os.fspath(onnx_path)!r}, "
            f"charsets_path={os.fspath(charsets_path)!r})\n"
            f"text = ocr.classification(open('captcha.png', 'rb').read())")


def ddddocr_text(output, charset):
    """ddddocr 1.6.1's reading of one image's output (T, K) (OCREngine._process_text_output, for checks without
    ddddocr): argmax per step, repeats merged, index 0 dropped, index i read as charset[i]."""
    text, before = [], None
    for i in output.argmax(-1).tolist():
        if i != before and i != 0 and i < len(charset):
            text.append(charset[i])
        before = i
    return "".join(text)


def read_exported(onnx_path, info, pixels):
    """The texts ddddocr's decoder reads from the exported model (run with onnxruntime on one thread) for uint8
    images (N, H, W, C) at the model's size: the tensor ddddocr would feed, then its decoding."""
    import numpy as np
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = 1, 1
    options.log_severity_level = 3
    session = ort.InferenceSession(os.fspath(onnx_path), options, providers=["CPUExecutionProvider"])
    x = (np.asarray(pixels, np.float32) / 255.0).transpose(0, 3, 1, 2)  # as ddddocr: float32 / 255, NCHW
    texts = []
    for i in range(len(x)):  # one at a time, as ddddocr runs it
        texts.append(ddddocr_text(session.run(None, {INPUT: x[i:i + 1]})[0][0], info["charset"]))
    return texts
