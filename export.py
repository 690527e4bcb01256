"""Export a checkpoint to one self-contained ONNX file that predict.py, test.py and app.py also run:

    python export.py weights/cnn_best.pt                  # -> weights/cnn_best.onnx
    python export.py weights/cnn_best.pt --out=model.onnx --bench=1
    python export.py weights/cnn_best.pt --format=ddddocr   # -> weights/cnn_best.ddddocr.onnx + .charsets.json
    python export.py weights/cnn_best.pt --int8=1 --calibrate=my_captchas   # -> weights/cnn_best.int8.onnx

The graph reads uint8 pixels (batch, height, width, channels), the array predict.py builds from an image
file, normalises them inside, and writes log-probabilities (batch, T, K); the batch size is free. The
checkpoint's description (model, head, charset, length, image size, channels, accuracy) is stored as
ONNX metadata, so the file needs nothing beside it. After writing, onnxruntime's output is checked against
torch's. --bench=1 then times one image on one CPU thread with both (docs/onnx.md).

--int8=1 writes the model with 8-bit weights and activations instead (`weights/cnn_best.int8.onnx`; onnxruntime's
static quantization, calibrated on up to 200 images of --calibrate=FOLDER, TRAIN_DIR unless given): a few
times faster on a CPU; it says on how many of those images it reads the same texts as the float model.

--format=ddddocr writes a custom model for ddddocr 1.6.1 instead: a graph that takes the tensor ddddocr
feeds and writes scores its decoder reads as our texts, and the charsets JSON it loads beside it
(core/ddddocr_format.py; docs/onnx.md, "Loading the model in ddddocr").
"""
import os
import random
import statistics
import sys
import time
import warnings

import numpy as np
import torch
import torch.nn as nn

import config
from core import cli
import models
from core import checkpoint as checkpoints
from core import data
from core import ddddocr_format
from core.batches import to_float
from core.device import set_threads
from core.files import atomic_write
from core.inference import Predictor


class ExportWrapper(nn.Module):
    """uint8 (B, H, W, C) -> log-probabilities (B, T, K): the model plus the preprocessing around it."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, images):
        x = to_float(images.permute(0, 3, 1, 2))  # (B, C, H, W) in [-1, 1], as in training
        return self.model(x).float().log_softmax(-1)


def export_onnx(checkpoint, out, opset=None):
    """Write `checkpoint` (a train.py .pt) as the ONNX model `out` (atomically); returns its metadata."""
    try:
        import onnx
    except ImportError:
        raise checkpoints.CheckpointError("export needs onnx and onnxscript: pip install -r requirements.txt") \
            from None
    check_out(checkpoint, out)
    ckpt = checkpoints.load_checkpoint(checkpoint)
    model, _ = checkpoints.model_from_checkpoint(ckpt, "cpu")
    height, width = ckpt["image_size"]
    # Batch 2, not 1: torch.export would take a batch of 1 for a constant.
    example = torch.randint(0, 256, (2, height, width, ckpt["channels"]), dtype=torch.uint8)
    with warnings.catch_warnings():  # the exporter's FutureWarnings and RNN-weight notes say nothing to a user
        warnings.simplefilter("ignore")
        program = torch.onnx.export(ExportWrapper(model).eval(), (example,), dynamo=True, opset_version=opset,
                                    input_names=[checkpoints.ONNX_INPUT], output_names=[checkpoints.ONNX_OUTPUT],
                                    dynamic_shapes=({0: torch.export.Dim("batch")},), external_data=False,
                                    optimize=True, verbose=False)
    proto = program.model_proto
    meta = checkpoints.onnx_metadata(ckpt, sum(p.numel() for p in model.parameters()))
    onnx.helper.set_model_props(proto, meta)
    proto.doc_string = (f"captcha reader {ckpt['model_name']}: input '{checkpoints.ONNX_INPUT}' uint8 "
                        f"(batch, {height}, {width}, {ckpt['channels']}) pixels; output '{checkpoints.ONNX_OUTPUT}' "
                        f"float (batch, T, K) log-probabilities, {models.head(ckpt['head']).describe()}")
    onnx.checker.check_model(proto)
    atomic_write(out, proto.SerializeToString())  # a temp file beside it, then a rename
    return meta


def check_out(checkpoint, out):
    """Refuse (ConfigError) an output path that would replace the checkpoint being exported, or any file that is
    not an .onnx model: an export never writes over a checkpoint."""
    same = os.path.realpath(out) == os.path.realpath(checkpoint)
    if not same and os.path.exists(out) and os.path.exists(checkpoint):
        same = os.path.samefile(out, checkpoint)  # a hard link
    if same:
        raise config.ConfigError(f"--out={out} is the checkpoint being exported; name another file, e.g. "
                                 f"{os.path.splitext(checkpoint)[0]}.onnx")
    if not str(out).endswith(".onnx"):
        raise config.ConfigError(f"--out={out}: the exported model's name must end in .onnx (predict.py, test.py "
                                 f"and app.py tell the runtime by it)")


def compare(checkpoint, exported, images):
    """(same texts?, largest probability difference) of the two backends on uint8 images (N, H, W, C)."""
    runs = [Predictor(path, "cpu", threads=1) for path in (checkpoint, exported)]
    scores = [p.scores(images) for p in runs]
    texts = [p.decode(s, p.codec)[0] for p, s in zip(runs, scores)]
    return texts[0] == texts[1], float((scores[0].softmax(-1) - scores[1].softmax(-1)).abs().max())


def time_calls(fn, runs, warmup):
    """Median and 90th percentile of `runs` calls of fn(), in milliseconds, after `warmup` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), statistics.quantiles(times, n=10)[-1]


def bench(checkpoint, exported, runs=500, warmup=50):
    """{backend: (median ms, p90 ms)} for one image (batch 1) on one CPU thread: torch and onnxruntime.

    Both include the uint8 -> [-1, 1] normalisation and exclude decoding (the same Python for both)."""
    torch.set_num_threads(1)
    return {name: bench_one(path, runs, warmup) for name, path in (("torch", checkpoint), ("onnxruntime", exported))}


def bench_one(path, runs=500, warmup=50):
    """(median ms, p90 ms) of one random image (batch 1) read by the model at `path` on one CPU thread."""
    predictor = Predictor(path, "cpu", threads=1)
    image = np.random.default_rng(0).integers(0, 256, (1, predictor.height, predictor.width, predictor.channels),
                                              dtype=np.uint8)
    return time_calls(lambda: predictor.scores(image), runs, warmup)


CALIBRATION_IMAGES = 200  # images --int8=1 calibrates on (a seeded sample of the folder)


def calibration_folder(opts):
    """--calibrate, else TRAIN_DIR: the folder --int8=1 calibrates on; ConfigError, before any work, when it is
    not a folder."""
    folder = opts["calibrate"] or config.TRAIN_DIR
    if not folder or not os.path.isdir(folder):
        where = f"; {folder} is not a folder" if folder else ""
        raise config.ConfigError(f"--int8=1 calibrates on images like those the model will read: name a folder of "
                                 f"them with --calibrate=FOLDER (labels are not needed){where}")
    return folder


def calibration_images(folder, predictor, count=CALIBRATION_IMAGES):
    """uint8 (N, H, W, C): up to `count` images of `folder` (a seeded sample) as `predictor` reads them; files that
    do not open as images are left out. ConfigError when the folder holds none."""
    names = data.image_names(folder)
    arrays, skipped = [], []
    for name in random.Random(0).sample(names, len(names)):
        try:
            arrays.append(predictor.load(os.path.join(folder, name)))
        except data.ImageError as e:
            skipped.append(f"{name} ({e.reason})")
            continue
        if len(arrays) == count:
            break
    if skipped:
        print(f"warning: --calibrate={folder}: left out {len(skipped)} file(s) that do not read as images: "
              f"{', '.join(skipped[:data.SHOW_FILES])}{', ...' if len(skipped) > data.SHOW_FILES else ''}")
    if not arrays:
        raise config.ConfigError(f"--calibrate={folder}: no images there to calibrate --int8=1 on")
    return np.stack(arrays)


def quantize_int8(float_path, out, images):
    """Write `out` (atomically): the ONNX model `float_path` with 8-bit weights (per channel) and activations
    (onnxruntime's static quantization, QDQ), the activations' ranges measured on `images`; its metadata kept."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    source = onnx.load(float_path)
    name = source.graph.input[0].name
    prepared, quantized = float_path + ".pre.onnx", float_path + ".int8.onnx"

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{name: image[None]} for image in images])

        def get_next(self):
            return next(self.batches, None)

    try:
        try:
            quant_pre_process(float_path, prepared)
        except Exception:  # the optional shape inference and graph clean-up: quantize the graph as it is
            prepared = float_path
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                quantize_static(prepared, quantized, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
        except Exception as e:  # an operator the quantizer does not take: one line, and the way without it
            raise checkpoints.CheckpointError(f"onnxruntime could not quantize this model ({type(e).__name__}: {e}); "
                                              f"export it without --int8=1") from None
        model = onnx.load(quantized)
        onnx.helper.set_model_props(model, {p.key: p.value for p in source.metadata_props})
        model.doc_string = source.doc_string + "; 8-bit weights and activations (onnxruntime static quantization)"
        atomic_write(out, model.SerializeToString())
    finally:
        for path in {prepared, quantized} - {float_path}:
            if os.path.exists(path):
                os.remove(path)


def export_ddddocr(checkpoint, out, opset=None):
    """--format=ddddocr: `checkpoint` as a ddddocr custom model (core/ddddocr_format.py), `out` and its
    .charsets.json; checked with ddddocr's preprocessing and decoding against torch on 8 images."""
    if str(checkpoint).endswith(".onnx"):
        raise config.ConfigError(f"{checkpoint}: --format=ddddocr exports a checkpoint (.pt), not an exported .onnx")
    onnx_path, charsets_path = ddddocr_format.output_paths(out)
    check_out(checkpoint, onnx_path)
    start = time.time()
    ckpt = checkpoints.load_checkpoint(checkpoint)
    ddddocr_format.check_supported(ckpt)
    model, _ = checkpoints.model_from_checkpoint(ckpt, "cpu")
    info = ddddocr_format.export(ckpt, model, onnx_path, charsets_path, opset)
    height, width = ckpt["image_size"]
    print(f"{checkpoint} ({ckpt['model_name']}, {ckpt['head']} head) -> {onnx_path} and {charsets_path}: a ddddocr "
          f"custom model, {width}x{height} {'grey' if ckpt['channels'] == 1 else 'colour'}, "
          f"{len(info['charset'])} classes, in {time.time() - start:.1f} s")
    predictor = Predictor(checkpoint, "cpu", threads=1)
    images = np.random.default_rng(0).integers(0, 256, (8, height, width, ckpt["channels"]), dtype=np.uint8)
    same = predictor.read(images)[0] == ddddocr_format.read_exported(onnx_path, info, images)
    print(f"check: ddddocr's input and decoding vs torch on 8 images: {'same' if same else 'DIFFERENT'} texts")
    if not same:
        sys.exit(f"error: {onnx_path} does not reproduce {checkpoint} in ddddocr; please report the model and options")
    print("load it in ddddocr 1.6.1 (pip install -r requirements-ddddocr.txt):")
    print("\n".join("    " + line for line in ddddocr_format.load_lines(onnx_path, charsets_path).splitlines()))


def main():
    positional, opts = config.parse(out="", bench=False, runs=500, opset=0, format="onnx", int8=False,
                                    calibrate="")
    if len(positional) > 1:
        sys.exit("usage: python export.py [CHECKPOINT.pt] [--out=MODEL.onnx] [--format=onnx|ddddocr] [--bench=1] "
                 "[--runs=500] [--int8=1 --calibrate=FOLDER]")
    if opts["format"] not in ("onnx", "ddddocr"):
        raise config.ConfigError(f"--format={opts['format']}: onnx (the default, for predict.py, test.py, app.py) "
                                 f"or ddddocr (a custom model for ddddocr 1.6.1)")
    checkpoint = positional[0] if positional else checkpoints.default_checkpoint()
    if opts["format"] == "ddddocr":
        if opts["bench"] or opts["int8"]:
            raise config.ConfigError(f"--{'bench' if opts['bench'] else 'int8'}=1 is for the default format; leave it "
                                     f"out with --format=ddddocr")
        set_threads(config.THREADS)
        return export_ddddocr(checkpoint, opts["out"] or os.path.splitext(checkpoint)[0] + ".ddddocr.onnx",
                              opts["opset"] or None)
    if str(checkpoint).endswith(".onnx"):
        raise config.ConfigError(f"{checkpoint}: export.py exports a checkpoint written by train.py (.pt)")
    out = opts["out"] or os.path.splitext(checkpoint)[0] + (".int8.onnx" if opts["int8"] else ".onnx")
    check_out(checkpoint, out)
    folder = calibration_folder(opts) if opts["int8"] else None
    set_threads(config.THREADS)
    start = time.time()
    # --int8=1: the float graph first (beside the output, removed at the end), checked, then quantized
    exported = out + ".float.onnx" if opts["int8"] else out
    try:
        meta = export_onnx(checkpoint, exported, opts["opset"] or None)
        predictor = Predictor(exported, threads=1)
        images = np.random.default_rng(0).integers(0, 256, (8, predictor.height, predictor.width, predictor.channels),
                                                   dtype=np.uint8)
        same, diff = compare(checkpoint, exported, images)
        if not same or diff > 1e-3:
            sys.exit(f"error: {exported} does not reproduce {checkpoint} (onnxruntime vs torch on 8 images: "
                     f"{'same' if same else 'different'} texts, largest probability difference {diff:.1e}); please "
                     f"report the model and options")
        accuracy = f", accuracy {float(meta['accuracy']):.4f}" if "accuracy" in meta else ""
        if opts["int8"]:
            calibration = calibration_images(folder, predictor)
            quantize_int8(exported, out, calibration)
        print(f"{checkpoint} ({meta['model_name']}, {meta['head']} head{accuracy}) -> {out}: "
              f"{os.path.getsize(out) / 1e6:.1f} MB{', 8-bit' if opts['int8'] else ''} in {time.time() - start:.1f} s")
        print(f"check: onnxruntime vs torch on 8 images: same texts, largest probability difference {diff:.1e}")
        if opts["int8"]:
            texts = [p.read(calibration)[0] for p in (predictor, Predictor(out, threads=1))]
            agree = sum(a == b for a, b in zip(*texts))
            print(f"check: 8-bit vs float on the {len(calibration)} calibration images of {folder}: the same texts "
                  f"on {agree} ({agree / len(calibration):.1%})")
            if agree < 0.99 * len(calibration):
                print(f"warning: the 8-bit model reads {len(calibration) - agree} of them differently: measure it "
                      f"(python test.py {out} --test_dir=FOLDER) before it replaces the float one")
        if opts["bench"]:
            print(f"latency of one {predictor.width}x{predictor.height}x{predictor.channels} image (batch 1, one CPU "
                  f"thread, {opts['runs']} runs after 50 warm-up; decoding not included):")
            rows = bench(checkpoint, exported, opts["runs"])
            if opts["int8"]:
                rows["onnxruntime 8-bit"] = bench_one(out, opts["runs"])
            for name, (median, p90) in rows.items():
                print(f"  {name:<17} median {median:.3f} ms, p90 {p90:.3f} ms")
    finally:
        if exported != out and os.path.exists(exported):
            os.remove(exported)


if __name__ == "__main__":
    cli.run(main, errors=(ddddocr_format.UnsupportedModel,))
