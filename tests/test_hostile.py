"""Hostile runs, settings and checkpoints: the training folder named twice, file names that are not UTF-8,
checkpoint records that do not match their weights, settings out of range, a read-only results.txt, Ctrl-C,
resuming with another model, file names holding tabs and newlines, killed writers' temporary files, and the
folders a checkpoint records. Each ends in the right result or one clear line, never a traceback."""
import contextlib
import copy
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
import torch

from conftest import DIGITS, ROOT, run_script
from core.generate import generate

pytestmark = pytest.mark.slow

SHIPPED = [os.path.join(ROOT, "weights", name) for name in ("default.pt", "pretrained.pt", "varied.pt")]
# the settings that name this machine's folders and files
PATH_SETTINGS = ("TRAIN_DIR", "TEST_DIR", "UNLABELED_DIR", "WEIGHTS_DIR", "RESULTS", "CACHE_DIR", "DATASET_DIR",
                 "INIT", "PRETRAINED", "FONTS")
ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


def tiny_set(folder, count=40, seed=1):
    """`count` 4-digit 160x60 captchas in `folder`; returns their file names, sorted."""
    generate(str(folder), count, seed, DIGITS, 4, 160, 60, processes=1, quiet=True)
    return sorted(n for n in os.listdir(folder) if n.endswith(".png"))


def train_args(base, *extra):
    """train.py on base/train (no test folder), every file it writes under `base`, one thread, random weights."""
    return [f"--train_dir={base}/train", "--test_dir=", f"--cache_dir={base}/cache", f"--weights_dir={base}/weights",
            f"--results={base}/results.txt", "--threads=1", "--init=", "--show=0", "--run=t", *extra]


def refused(code, output, *names):
    """Exit status 1, exactly one `error:` line and no traceback; returns the error line and what follows it. Each
    of `names` appears in the error line."""
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert code == 1, output[-3000:]
    assert len(errors) == 1, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    for name in names:
        assert name in errors[0], errors[0]
    return output[output.index("error:"):]


# Command lines that should end at once run in one interpreter, so that torch starts once: each as `python SCRIPT
# ARGS` runs it (the script as __main__, its SystemExit message printed with exit status 1, a traceback for any
# other exception). Root may write any file, so for root os.access answers as for the file's owner: a file
# without write permission is not writable.
HARNESS = r"""
import contextlib, importlib, io, json, os, runpy, sys, time, traceback
import config
import torch
from core import inference, run
if os.geteuid() == 0:
    _access = os.access
    def access(path, mode, *args, **kwargs):
        if mode & os.W_OK and os.path.isfile(path) and not os.stat(path).st_mode & 0o222:
            return False
        return _access(path, mode, *args, **kwargs)
    os.access = access
results = {}
for key, script, args in json.loads(sys.argv[1]):
    importlib.reload(config)  # the defaults again: each command line starts afresh
    sys.argv = [script, *args]
    out, err = io.StringIO(), io.StringIO()
    start = time.time()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            runpy.run_path(script, run_name="__main__")
            code = 0
        except SystemExit as e:
            if e.code is None or isinstance(e.code, int):
                code = e.code or 0
            else:
                print(e.code, file=sys.stderr)
                code = 1
        except BaseException:
            traceback.print_exc()
            code = 1
    results[key] = dict(command=" ".join(sys.argv), code=code, out=out.getvalue(), err=err.getvalue(),
                        seconds=time.time() - start)
sys.__stdout__.write(json.dumps(results))
"""


def run_commands(commands, timeout=600):
    """[(key, script, [args])] -> {key: {command, code, out, err, seconds}}, each run as `python SCRIPT ARGS`."""
    p = subprocess.run([sys.executable, "-c", HARNESS, json.dumps(commands)], cwd=ROOT, env=ENV, timeout=timeout,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert p.returncode == 0, p.stderr[-3000:]
    return json.loads(p.stdout)


# --- the runs the tests share --------------------------------------------------------------------------------

def interrupt(command, ready, timeout=180, sig=signal.SIGINT):
    """Start `command` in a session of its own; once `ready(output so far)`, send SIGINT to its process group
    (as Ctrl-C in a terminal does), or `sig` to the command alone (as kill does). Returns (exit status, stdout,
    stderr)."""
    # a terminal delivers SIGINT; a runner started in the background ignores it and its children inherit that:
    # the command starts with SIGINT at its default, as from a terminal
    p = subprocess.Popen(command, cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    watchdog = threading.Timer(timeout, p.kill)
    watchdog.start()
    try:
        seen = ""
        for line in p.stdout:
            seen += line
            if ready(seen):
                break
        os.killpg(p.pid, signal.SIGINT) if sig == signal.SIGINT else os.kill(p.pid, sig)
        out, err = p.communicate(timeout=timeout)
    finally:
        watchdog.cancel()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGKILL)
    return p.returncode, seen + out, err


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory):
    """train.py on a sample of 24 of 40 images (LIMIT) with UNLABELED_DIR a link to the training folder, 200
    planned epochs, interrupted (SIGINT) once its first epoch is saved; (base, arguments, exit status, stdout,
    stderr)."""
    base = tmp_path_factory.mktemp("interrupted")
    tiny_set(base / "train", 40)
    os.symlink(base / "train", base / "link")
    args = train_args(base, "--epochs=200", "--limit=24", f"--unlabeled_dir={base}/link")
    last = base / "weights" / "t_last.pt"

    def saved(out):
        if "epoch 1/200" not in out:
            return False
        deadline = time.time() + 30
        while not last.exists() and time.time() < deadline:
            time.sleep(0.05)
        return True

    code, out, err = interrupt([sys.executable, os.path.join(ROOT, "train.py"), *args], saved)
    return base, args, code, out, err


BAD_RECORDS = {
    "charset": lambda c: c.update(charset=c["charset"][:-1]),  # one class fewer than the weights hold
    "model_name": lambda c: c.update(model_name="cnn"),
    "head": lambda c: c.update(head="fixed"),
    "channels": lambda c: c.update(channels=3),
    "image_size": lambda c: c.update(image_size=[64, 160]),
    "num_classes": lambda c: c["build_args"].update(num_classes=c["build_args"]["num_classes"] + 1),
}


@pytest.fixture(scope="module")
def bad_records(tmp_path_factory):
    """weights/default.pt with one record field changed, per BAD_RECORDS key; and a folder of 4 captchas."""
    base = tmp_path_factory.mktemp("records")
    shipped = torch.load(SHIPPED[0], map_location="cpu", weights_only=True)
    assert shipped["image_size"] != [64, 160] and shipped["channels"] != 3 and shipped["model_name"] != "cnn"
    paths = {}
    for field, change in BAD_RECORDS.items():
        ckpt = copy.deepcopy(shipped)
        change(ckpt)
        paths[field] = str(base / f"edited_{field}.pt")
        torch.save(ckpt, paths[field])
    tiny_set(base / "images", 4)
    return base, paths


TRAIN_OUT_OF_RANGE = [("--epochs=-1", "EPOCHS"), ("--lr=0", "LR"), ("--lr=1e400", "LR"),
                      ("--weight_decay=-1", "WEIGHT_DECAY"), ("--batch_size=-1", "BATCH_SIZE"),
                      ("--threads=-2", "THREADS"), ("--image_height=4", "IMAGE_HEIGHT"), ("--length=(6,4)", "LENGTH"),
                      ("--limit=-1", "LIMIT"), ("--time_limit=-5", "TIME_LIMIT"), ("--ema=2", "EMA"),
                      ("--augment=1e9", "AUGMENT")]
OTHERS_OUT_OF_RANGE = [("predict.py", "--batch_size=-1", "--batch_size"),
                       ("predict.py", "--min_confidence=2", "MIN_CONFIDENCE")]


def STRAY_COMMANDS(settings, stray):
    """(key, train.py arguments) of command lines that name a folder or setting the wrong way: a folder given as an
    argument, NAME=value without its dashes, a run name that is a path, a device that does not exist, the training
    folder as the test folder."""
    folder = str(settings / "train")
    return [("folder argument", [folder, *train_args(stray)]),
            ("dashless option", ["epochs=1", *train_args(settings)]),
            ("run path", train_args(settings, "--run=../../elsewhere")),
            ("no such device", train_args(settings, "--device=tpu")),
            ("test is train", train_args(settings, f"--test_dir={folder}", f"--weights_dir={stray}/weights",
                                         f"--cache_dir={stray}/cache"))]


@pytest.fixture(scope="module")
def refusals(tmp_path_factory, interrupted, bad_records):
    """The command lines below that must end at once, run in one interpreter (run_commands); (folders, results)."""
    base = tmp_path_factory.mktemp("refusals")
    names = tiny_set(base / "settings" / "train", 8)
    tiny_set(base / "not_utf8" / "train", 40)
    shutil.copyfile(os.fsencode(base / "not_utf8" / "train" / names[0]),
                    os.fsencode(base / "not_utf8" / "train") + b"/12\xff34_a1.png")
    tiny_set(base / "read_only" / "train", 40)  # enough to train on: the refusal, not the data, must stop it
    (base / "read_only" / "results.txt").write_text("")
    (base / "read_only" / "results.txt").chmod(0o444)
    tsv = base / "tsv"
    tiny_set(tsv, 2)
    shutil.copyfile(base / "settings" / "train" / names[0], tsv / "a\tb\nc.png")
    commands = [(f"train.py {arg}", "train.py", train_args(base / "settings", arg)) for arg, _ in TRAIN_OUT_OF_RANGE]
    commands += [(f"{script} {arg}", script, [SHIPPED[0], str(tsv), "--threads=1", arg])
                 for script, arg, _ in OTHERS_OUT_OF_RANGE]
    for field, path in bad_records[1].items():
        commands += [(f"predict {field}", "predict.py", [path, f"{bad_records[0]}/images", "--threads=1"]),
                     (f"test {field}", "test.py", [path, f"--test_dir={bad_records[0]}/images",
                                                   f"--cache_dir={bad_records[0]}/cache", "--threads=1"])]
    stray = base / "stray"  # command lines a person gets wrong: each refused before anything is read or written
    commands += [(key, "train.py", args) for key, args in STRAY_COMMANDS(base / "settings", stray)]
    (base / "empty.pt").write_bytes(b"")
    commands += [("empty checkpoint", "predict.py", [str(base / "empty.pt"), str(tsv), "--threads=1"])]
    commands += [("not utf8", "train.py", train_args(base / "not_utf8", "--epochs=1")),
                 ("read only", "train.py", train_args(base / "read_only", "--epochs=1")),
                 ("other model", "train.py", [*interrupted[1], "--resume=1", "--model=cnn"]),
                 ("tsv", "predict.py", [SHIPPED[0], str(tsv), "--threads=1"])]
    return base, run_commands(commands)


# --- 1. the training folder named by another spelling never leaks into the unlabelled images ------------------

def test_unlabeled_images_leave_out_the_labelled_ones_however_the_folder_is_spelt(tmp_path, monkeypatch):
    from core import data

    train = tmp_path / "train"
    names = tiny_set(train, 12)
    os.symlink(train, tmp_path / "link")
    monkeypatch.chdir(tmp_path)
    labelled, rest = names[:8], names[8:]
    spelt = {"relative": "train", "absolute": str(train), "link": str(tmp_path / "link"), "relative link": "link"}
    for folder_as in spelt:
        for labelled_as in spelt:
            if folder_as == labelled_as:
                continue
            exclude = [os.path.join(spelt[labelled_as], n) for n in labelled]
            found = data.unlabeled_images(spelt[folder_as], exclude)
            assert sorted(os.path.basename(p) for p, _ in found) == rest, (folder_as, labelled_as)


def test_a_link_to_the_training_folder_gives_only_the_images_not_sampled(interrupted):
    out = interrupted[3]
    line = next(line for line in out.splitlines() if line.strip().startswith("unlabeled"))
    assert line.split()[1] == "16", out  # 40 images, 24 sampled (training and validation): 16 left unlabelled
    assert "22 training images (a sample: LIMIT=24), 2 validation" in out, out


# --- 2. a file name that is not UTF-8 ---------------------------------------------------------------------------

def test_a_file_name_that_is_not_utf8_is_named(refusals):
    base, results = refusals
    r = results["not utf8"]
    message = refused(r["code"], r["out"] + r["err"])
    assert "34_a1.png" in message, message
    assert not list((base / "not_utf8").glob("weights/*.pt"))  # nothing trained


def not_utf8_set(base):
    names = tiny_set(base / "train", 40)
    shutil.copyfile(os.fsencode(base / "train" / names[0]), os.fsencode(base / "train") + b"/12\xff34_a1.png")


def test_a_file_name_that_is_not_utf8_is_left_out_with_skip_bad(tmp_path):
    not_utf8_set(tmp_path)
    p = subprocess.run([sys.executable, os.path.join(ROOT, "train.py"), *train_args(tmp_path, "--epochs=1"),
                        "--skip_bad=1"], cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=300)
    out = p.stdout.decode("utf-8", "backslashreplace")
    assert p.returncode == 0 and "Traceback" not in out, out[-3000:]
    assert "==> best:" in out


def test_a_file_name_that_is_not_utf8_is_left_out_where_stdout_is_strict_utf8(tmp_path):
    not_utf8_set(tmp_path)
    p = subprocess.run([sys.executable, os.path.join(ROOT, "train.py"), *train_args(tmp_path, "--epochs=1"),
                        "--skip_bad=1"], cwd=ROOT, env={**ENV, "PYTHONIOENCODING": "utf-8:strict"},
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=300)
    out = p.stdout.decode("utf-8", "backslashreplace")
    assert p.returncode == 0 and "Traceback" not in out, out[-3000:]


def test_predict_prints_a_file_name_that_is_not_utf8_where_stdout_is_strict_utf8(tmp_path):
    folder = os.fsencode(str(tmp_path))
    from PIL import Image
    Image.new("L", (160, 60), 255).save(os.path.join(folder, b"12\xff34.png"))
    p = subprocess.run([sys.executable, os.path.join(ROOT, "predict.py"), os.path.join(ROOT, "weights", "default.pt"),
                        str(tmp_path)], cwd=ROOT, env={**ENV, "PYTHONIOENCODING": "utf-8:strict"},
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=300)
    out, err = p.stdout.decode("utf-8", "backslashreplace"), p.stderr.decode("utf-8", "backslashreplace")
    assert p.returncode == 0 and "Traceback" not in err, err[-3000:]
    assert len(out.splitlines()) == 1 and "12\\udcff34.png" in out, out


# --- 3. checkpoint records that do not match their weights ------------------------------------------------------

@pytest.mark.parametrize("field", BAD_RECORDS)
def test_predictor_refuses_a_record_that_does_not_match_its_weights(bad_records, field):
    from core.checkpoint import CheckpointError
    from core.inference import Predictor

    path = bad_records[1][field]
    with pytest.raises(CheckpointError) as e:
        Predictor(path, threads=1)
    assert path in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("script", ["predict", "test"])
def test_predict_and_test_refuse_a_record_that_does_not_match_its_weights(refusals, bad_records, script):
    for field, path in bad_records[1].items():
        r = refusals[1][f"{script} {field}"]
        assert not r["out"].strip(), r  # nothing read
        refused(r["code"], r["out"] + r["err"], path)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_app_refuses_to_start_with_a_record_that_does_not_match_its_weights(bad_records):
    path = bad_records[1]["charset"]
    p = subprocess.Popen([sys.executable, os.path.join(ROOT, "app.py"), path, "--host=127.0.0.1",
                          f"--port={free_port()}", "--threads=1"], cwd=ROOT, env=ENV, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    try:
        out, _ = p.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        p.kill()
        out, _ = p.communicate()
        pytest.fail(f"app.py started serving {path}:\n{out[-3000:]}")
    refused(p.returncode, out, path)
    assert "serving" not in out


def fake_export(path, meta, classes, height, width, channels, positions=20):
    """An ONNX model with export.py's input and output names and shapes ((batch, `positions`, `classes`)
    scores) and `meta` as its metadata."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    nodes = [helper.make_node("Cast", ["image"], ["x"], to=TensorProto.FLOAT),
             helper.make_node("ReduceMean", ["x"], ["mean"], axes=[1, 2, 3], keepdims=0),
             helper.make_node("Unsqueeze", ["mean", "axes"], ["column"]),
             helper.make_node("Mul", ["column", "zero"], ["nothing"]),
             helper.make_node("Add", ["nothing", "scores"], ["log_probs"])]
    initial = [helper.make_tensor("axes", TensorProto.INT64, [2], [1, 2]),
               helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0]),
               helper.make_tensor("scores", TensorProto.FLOAT, [1, positions, classes], [0.0] * positions * classes)]
    image = helper.make_tensor_value_info("image", TensorProto.UINT8, ["batch", height, width, channels])
    scores = helper.make_tensor_value_info("log_probs", TensorProto.FLOAT, ["batch", positions, classes])
    graph = helper.make_graph(nodes, "reader", [image], [scores], initial)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    helper.set_model_props(model, meta)
    onnx.checker.check_model(model)
    with open(path, "wb") as f:
        f.write(model.SerializeToString())


def test_predictor_refuses_onnx_metadata_that_does_not_match_its_graph(tmp_path):
    pytest.importorskip("onnxruntime")
    from core.checkpoint import CheckpointError, load_checkpoint, onnx_metadata
    from core.inference import Predictor

    ckpt = load_checkpoint(SHIPPED[0])
    meta = onnx_metadata(ckpt, 1)
    height, width = ckpt["image_size"]
    shape = (ckpt["build_args"]["num_classes"], height, width, ckpt["channels"])
    fake_export(tmp_path / "as_exported.onnx", meta, *shape)
    assert Predictor(str(tmp_path / "as_exported.onnx"), threads=1).codec.charset == ckpt["charset"]
    fake_export(tmp_path / "edited.onnx", {**meta, "charset": ckpt["charset"][:-1]}, *shape)
    with pytest.raises(CheckpointError) as e:
        Predictor(str(tmp_path / "edited.onnx"), threads=1)
    assert str(tmp_path / "edited.onnx") in str(e.value) and "graph" in str(e.value)


# --- 4. settings out of range: refused before any work -------------------------------------------------------

@pytest.mark.parametrize("script, arg, name",
                         [("train.py", *case) for case in TRAIN_OUT_OF_RANGE] + OTHERS_OUT_OF_RANGE)
def test_a_setting_out_of_range_is_refused_before_any_work(refusals, script, arg, name):
    r = refusals[1][f"{script} {arg}"]
    refused(r["code"], r["out"] + r["err"], name)
    assert not r["out"].strip() and r["seconds"] < 5, r  # nothing read, nothing trained


@pytest.mark.parametrize("key, names", [("folder argument", ["train.py", "--train_dir="]),
                                        ("dashless option", ["'epochs=1'", "--epochs=1"]),
                                        ("run path", ["RUN=", "no folder"]), ("no such device", ["DEVICE='tpu'"]),
                                        ("test is train", ["TEST_DIR=", "is TRAIN_DIR"])])
def test_a_command_line_that_names_something_the_wrong_way_is_refused(refusals, key, names):
    """Never dropped or taken as it is: an argument train.py does not take (a folder meant for --train_dir trained
    nothing or the default folder), a run name that writes checkpoints outside WEIGHTS_DIR, a device this machine
    lacks (torch's traceback), the training folder as the test folder (a figure of the training images)."""
    r = refusals[1][key]
    refused(r["code"], r["out"] + r["err"], *names)
    assert "epoch 1/" not in r["out"]
    assert not os.path.exists(refusals[0] / "elsewhere_best.pt") and not os.path.exists(refusals[0] / "stray" / "weights")


def test_an_empty_or_foreign_checkpoint_says_what_it_is(refusals, tmp_path):
    r = refusals[1]["empty checkpoint"]
    assert "empty (0 bytes)" in refused(r["code"], r["out"] + r["err"], "empty.pt")
    from core.checkpoint import CheckpointError, load_checkpoint
    (tmp_path / "text.pt").write_text("hello")
    with pytest.raises(CheckpointError, match=r"cut short, damaged or another kind of file \(5 bytes; .*copy it again"):
        load_checkpoint(str(tmp_path / "text.pt"))


def test_settings_out_of_range_write_nothing(refusals):
    settings = refusals[0] / "settings"
    assert sorted(os.listdir(settings)) == ["train"]  # no cache, weights or results


def test_a_generator_count_out_of_range_is_refused(tmp_path):
    p = run_script("captchaGenerator.py", f"--dataset_dir={tmp_path}", "--split=gen", "--count=-5", check=False,
                   timeout=60)
    refused(p.returncode, p.stdout, "--count")
    assert os.listdir(tmp_path) == []


# --- 5. a read-only results.txt ------------------------------------------------------------------------------

def test_a_read_only_results_file_is_refused_before_the_first_epoch(refusals):
    base, results = refusals
    r = results["read only"]
    path = base / "read_only" / "results.txt"
    refused(r["code"], r["out"] + r["err"], str(path))
    assert "epoch 1/" not in r["out"] and path.read_text() == ""
    assert not os.path.exists(base / "read_only" / "weights" / "t_last.pt")


# --- 6. Ctrl-C ------------------------------------------------------------------------------------------------

def test_ctrl_c_during_training_ends_with_one_line_naming_the_kept_checkpoint(interrupted):
    base, _, code, out, err = interrupted
    assert code == 130, out[-2000:] + err[-2000:]
    assert "Traceback" not in out + err, err[-3000:]
    lines = [line for line in err.splitlines() if line.startswith("interrupted")]
    assert len(lines) == 1, err
    assert str(base / "weights" / "t_best.pt") in lines[0] and "--resume=1" in lines[0], lines[0]


def test_ctrl_c_during_generation_ends_with_one_line(tmp_path):
    command = [sys.executable, os.path.join(ROOT, "captchaGenerator.py"), f"--dataset_dir={tmp_path}", "--split=gen",
               "--count=20000", "--seed=1"]
    code, out, err = interrupt(command, lambda out: "captchas of" in out and time.sleep(2) is None)
    assert code == 130, out[-2000:] + err[-2000:]
    assert "Traceback" not in out + err, err[-3000:]
    assert len([line for line in err.splitlines() if line.startswith("interrupted")]) == 1, err


def test_sigterm_stops_a_command_as_ctrl_c_does(tmp_path):
    """kill, timeout or a service manager's stop (SIGTERM, sent to the command alone): training ends as on Ctrl-C,
    one line naming the kept checkpoint and the resume command, exit 143; generation too, its pool's workers
    ending without a traceback of their own."""
    tiny_set(tmp_path / "train", 40)
    last = tmp_path / "weights" / "t_last.pt"

    def saved(out):
        deadline = time.time() + 30
        while "epoch 1/200" in out and not last.exists() and time.time() < deadline:
            time.sleep(0.05)
        return "epoch 1/200" in out

    command = [sys.executable, os.path.join(ROOT, "train.py"), *train_args(tmp_path, "--epochs=200", "--limit=24")]
    code, out, err = interrupt(command, saved, sig=signal.SIGTERM)
    assert code == 143 and "Traceback" not in out + err, out[-2000:] + err[-2000:]
    lines = [line for line in err.splitlines() if line.startswith("terminated (SIGTERM)")]
    assert len(lines) == 1 and str(tmp_path / "weights" / "t_best.pt") in lines[0] and "--resume=1" in lines[0], err
    command = [sys.executable, os.path.join(ROOT, "captchaGenerator.py"), f"--dataset_dir={tmp_path}", "--split=gen",
               "--count=20000", "--seed=1"]
    code, out, err = interrupt(command, lambda out: "captchas of" in out and time.sleep(2) is None, sig=signal.SIGTERM)
    assert code == 143 and "Traceback" not in out + err, out[-2000:] + err[-2000:]
    assert len([line for line in err.splitlines() if line.startswith("terminated (SIGTERM)")]) == 1, err


# --- 7. --resume=1 with another model -------------------------------------------------------------------------

def test_resume_with_another_model_is_refused_naming_both(refusals):
    r = refusals[1]["other model"]
    refused(r["code"], r["out"] + r["err"], "cnn_ctc", "--model=cnn ")
    assert "resumed" not in r["out"]


def test_resume_without_model_continues_the_run(interrupted, refusals):
    base, args, *_ = interrupted
    p = run_script("train.py", *args, "--resume=1", "--time_limit=0.01", timeout=300)
    assert f"resumed {base / 'weights' / 't_last.pt'} after epoch" in p.stdout, p.stdout
    assert "model cnn_ctc" in p.stdout and "TIME_LIMIT" in p.stdout


# --- 8. predict.py's TSV with a tab and a newline in a file name ----------------------------------------------

def test_predict_escapes_tabs_and_newlines_in_file_names(refusals):
    base, results = refusals
    r = results["tsv"]
    assert r["code"] == 0, r
    lines = r["out"].rstrip("\n").split("\n")
    assert len(lines) == 3 and all(len(line.split("\t")) == 3 for line in lines), r["out"]
    names = [n for n in os.listdir(base / "tsv") if "\t" not in n]
    assert sorted(line.split("\t")[0] for line in lines) == sorted(
        [os.path.join(str(base / "tsv"), "a\\tb\\nc.png")] + [str(base / "tsv" / n) for n in names])


# --- 9. killed writers' temporary files -----------------------------------------------------------------------

def test_a_killed_saves_temporary_file_is_removed_and_a_live_writers_kept(tmp_path, monkeypatch):
    from core import files

    target = str(tmp_path / "x.pt")
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    with monkeypatch.context() as m:
        m.setattr(os, "getpid", lambda: gone.pid)
        killed = files.temp_path(target)
    ours = files.temp_path(target)
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        with monkeypatch.context() as m:
            m.setattr(os, "getpid", lambda: live.pid)
            other = files.temp_path(target)
        minute_ago = time.time() - 60
        for path in (killed, ours, other):
            with open(path, "wb") as f:
                f.write(b"half a checkpoint")
            os.utime(path, (minute_ago, minute_ago))
        files._writing.add(ours)
        try:
            files.atomic_write(target, b"whole")
        finally:
            files._writing.discard(ours)
        assert not os.path.exists(killed)
        assert os.path.exists(ours) and os.path.exists(other)
        with open(target, "rb") as f:
            assert f.read() == b"whole"
    finally:
        live.kill()
        live.wait()


# --- 10. checkpoints record no folders of the machine that trained them ---------------------------------------

def path_values(recorded):
    for name in PATH_SETTINGS:
        values = recorded.get(name, "")
        for value in values if isinstance(values, (tuple, list)) else [values]:
            yield name, str(value)


@pytest.mark.parametrize("path", SHIPPED, ids=os.path.basename)
def test_shipped_checkpoints_record_no_folders(path):
    recorded = torch.load(path, map_location="cpu", weights_only=True)["config"]
    for name, value in path_values(recorded):
        assert not value.startswith("/") and "/" not in value, (name, value)


def test_a_trained_checkpoint_records_only_the_last_part_of_its_paths(interrupted):
    base = interrupted[0]
    for kept in ("t_best.pt", "t_last.pt"):
        recorded = torch.load(base / "weights" / kept, map_location="cpu", weights_only=True)["config"]
        assert {name: recorded[name] for name in ("TRAIN_DIR", "UNLABELED_DIR", "CACHE_DIR", "WEIGHTS_DIR",
                                                  "RESULTS")} == dict(TRAIN_DIR="train", UNLABELED_DIR="link",
                                                                      CACHE_DIR="cache", WEIGHTS_DIR="weights",
                                                                      RESULTS="results.txt")
        for name, value in path_values(recorded):
            assert "/" not in value, (name, value)
