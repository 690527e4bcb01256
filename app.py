"""Serve a trained model: a page where a person tries it, and a JSON API for programs. With --label_dir, also
a page where a person labels a folder of captchas, the model's reading typed in already (docs/labelling.md).

    python app.py                              # the newest weights/*_best.pt, else weights/default.pt
    python app.py weights/cnn_best.pt --port=8080
    python app.py weights/cnn_best.onnx        # a model written by export.py, run by onnxruntime
    curl -F file=@captcha.png http://127.0.0.1:8000/api/predict
    python app.py --label_dir=my_captchas      # then http://127.0.0.1:8000/label; model: the one named, else
                                               # the newest weights/*_best.pt, else none (no suggestions)
    python app.py --models_dir=weights         # every *.pt and *.onnx of the folder by name, hot-reloaded
    curl -F file=@captcha.png 'http://127.0.0.1:8000/api/predict?model=cnn_best'   # weights/cnn_best.pt

Endpoints: GET / (the page), POST /api/predict, POST /api/predict/batch (both take ?model=NAME and
?min_confidence=P), GET /api/model, GET /api/models, GET /healthz, GET /docs and /openapi.json.
With --label_dir: GET /label (the labelling page), GET /api/label/next?count=N
(the next unanswered images, least confident first, with the model's reading), GET /api/label/image?file=NAME,
POST /api/label/answer ({"file": NAME, "label": TEXT} or {"file": NAME, "unreadable": true}: appended to
FOLDER/labels.tsv or FOLDER/unreadable.txt), POST /api/label/skip ({"file": NAME}), GET /api/label/stats.
Every error is JSON {"error": "..."}: a 4xx that says what was wrong with the request, or a 500 that gives no
internals (the traceback goes to the server's log).

Besides HOST, PORT and the MAX_* limits of config.py: --header_timeout=10 (seconds a connection has to send
its request headers, else it is closed), --max_connections=128 (more at once are answered 503),
--label_dir=FOLDER (the labelling page for the images of FOLDER), --models_dir=FOLDER (serve every model file
of FOLDER by name; a file added, replaced or removed while serving is picked up within a second or two: see
docs/serving.md), --default_model=NAME (with --models_dir: what a request naming no model reads with; default
the only one). MIN_CONFIDENCE (--min_confidence=P) marks readings below P "unsure"; ANSWER (--answer=arith)
overrides what a model records it was trained for.
The parts live in serve/: plumbing.py (HTTP), batcher.py (the models' thread), routes.py (the endpoints),
models_dir.py (the models by name, a folder's watcher), labelling.py (the labelling page's answers, queue and
endpoints).
"""
import functools
import logging
import os
import sys

import torch

import config
from core import cli, data
from core.checkpoint import default_checkpoint
from core.device import pick_device
from core.files import file_kind
from core.inference import Predictor
from core.teacher import auto_teacher
from serve import create_app, labelling, server_config
from serve.models_dir import ModelsDir, load_predictor
from serve.plumbing import HEADER_TIMEOUT, MAX_CONNECTIONS

USAGE = ("usage: python app.py [MODEL.pt|MODEL.onnx] [--host=127.0.0.1] [--port=8000] [--label_dir=FOLDER]\n"
         "       python app.py --models_dir=FOLDER [--default_model=NAME] [--host=...] [--port=...]")


def main():
    import uvicorn

    positional, opts = config.parse(header_timeout=HEADER_TIMEOUT, max_connections=MAX_CONNECTIONS, label_dir="",
                                    models_dir="", default_model="")
    if len(positional) > 1:
        sys.exit(USAGE)
    if opts["models_dir"]:
        return serve_folder(positional, opts)
    if not 1 <= config.PORT <= 65535:
        raise config.ConfigError(f"--port={config.PORT}: a TCP port is a number from 1 to 65535")
    if not opts["header_timeout"] > 0 or opts["max_connections"] < 1:
        raise config.ConfigError("--header_timeout must be above 0 seconds and --max_connections at least 1")
    label_dir = opts["label_dir"] or None
    if label_dir is not None and not os.path.isdir(label_dir):
        raise config.ConfigError(f"--label_dir={label_dir}: " + ("no such folder" if not os.path.exists(label_dir)
                                 else f"not a folder ({file_kind(label_dir)})"))
    if label_dir is None:
        path = positional[0] if positional else default_checkpoint()
    else:  # suggestions come from a model trained on the user's captchas, never silently from the shipped one
        path, why = labelling.choose_model(positional[0] if positional else None)
        teacher = auto_teacher(config.TEACHER) if path is None else ""
        if teacher:
            why = f"TEACHER: {teacher} reads the images instead"
        print(f"labelling model: {path or 'none'} ({why})", flush=True)
    # One inference thread with one torch (or onnxruntime) thread by default: the event loop needs the other
    # core, and batching (not intra-op threads) is what makes small images fast. --threads=N overrides.
    threads = config.THREADS or 1
    torch.set_num_threads(threads)
    predictor = (Predictor(path, pick_device(config.DEVICE), threads, answer=answer_setting(), copies=config.TTA)
                 if path else None)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_app(predictor, threads=threads, label_dir=label_dir, say=lambda m: print(m, flush=True))
    url = f"http://{config.HOST}:{config.PORT}"
    if predictor is not None:
        info = predictor.ckpt
        accuracy = f", accuracy {info['accuracy']:.4f} recorded in training" if info.get("accuracy") is not None else ""
        print(f"serving {path} ({info['model_name']} on {predictor.runtime}, charset {info['charset']!r}{accuracy}) "
              f"at {url}", flush=True)
    if label_dir is not None:
        stats = app.state.labelling.stats()
        print(f"labelling {stats['folder']}: {stats['total']} images, {stats['answered']} answered, "
              f"{stats['remaining']} to go, at {url}/label", flush=True)
        if not stats["total"]:
            print(f"warning: {stats['folder']} holds no images ({', '.join(data.IMAGE_EXTENSIONS)}), so the page "
                  f"has nothing to label" + (data.subfolder_hint(stats["folder"]) or "; copy the captchas in and "
                                             "start again (the folder is listed at the start)"), flush=True)
    uvicorn.Server(server_config(app, config.HOST, config.PORT, opts["header_timeout"],
                                 max_connections=opts["max_connections"])).run()


def answer_setting():
    """ANSWER when the command line sets it (a model trained before the setting existed), else None: each model
    reads as its checkpoint records."""
    return config.ANSWER if "ANSWER" in config.given() else None


def serve_folder(positional, opts):
    """python app.py --models_dir=FOLDER: every model file of FOLDER by name, kept in step with the folder."""
    import uvicorn

    folder = opts["models_dir"]
    if positional or opts["label_dir"]:
        raise config.ConfigError("--models_dir serves the models of its folder: name no model file and no "
                                 "--label_dir with it (run a second server for labelling)")
    if not os.path.isdir(folder):
        raise config.ConfigError(f"--models_dir={folder}: " + ("no such folder" if not os.path.exists(folder)
                                 else f"not a folder ({file_kind(folder)})"))
    threads = config.THREADS or 1  # as for one model: one inference thread for all, one torch thread
    torch.set_num_threads(threads)
    device, answer = pick_device(config.DEVICE), answer_setting()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    load = functools.partial(load_predictor, device=device, threads=threads, answer=answer, copies=config.TTA)
    models = ModelsDir(folder, load, default=opts["default_model"] or None)
    models.sync()  # the files there now, loaded before the server answers; the watcher starts with the server
    names = models.names()
    if models.default is not None and models.default not in models.files():
        raise config.ConfigError(f"--default_model={models.default}: {folder} has no {models.default}.pt or "
                                 f"{models.default}.onnx (its models: {', '.join(names) or 'none'})")
    app = create_app(None, threads=threads, models=models)
    print(f"serving {len(names)} model(s) of {folder} at http://{config.HOST}:{config.PORT}: "
          f"{', '.join(names) or 'none yet'}" + (f" (default {models.default})" if models.default else "")
          + "; watching the folder for changes", flush=True)
    uvicorn.Server(server_config(app, config.HOST, config.PORT, opts["header_timeout"],
                                 max_connections=opts["max_connections"])).run()


if __name__ == "__main__":
    cli.run(main)
