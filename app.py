"""Serve a trained model: a page where a person tries it, and a JSON API for programs.

    python app.py                              # the newest weights/*_best.pt, else weights/default.pt
    python app.py weights/cnn_best.pt --port=8080
    python app.py weights/cnn_best.onnx        # a model written by export.py, run by onnxruntime
    curl -F file=@captcha.png http://127.0.0.1:8000/api/predict

Endpoints: GET / (the page), POST /api/predict, POST /api/predict/batch, GET /api/model, GET /healthz,
GET /docs and /openapi.json. Every error is JSON {"error": "..."}: a 4xx that says what was wrong with
the request, or a 500 that gives no internals (the traceback goes to the server's log).

Besides HOST, PORT and the MAX_* limits of config.py: --header_timeout=10 (seconds a connection has to send
its request headers, else it is closed), --max_connections=128 (more at once are answered 503).
The parts live in serve/: plumbing.py (HTTP), batcher.py (the model's thread), routes.py (the endpoints).
"""
import logging
import sys

import torch

import config
import torch_util
from serve import create_app, server_config
from serve.plumbing import HEADER_TIMEOUT, MAX_CONNECTIONS

USAGE = "usage: python app.py [MODEL.pt|MODEL.onnx] [--host=127.0.0.1] [--port=8000]"


def main():
    import uvicorn

    positional, opts = config.parse(header_timeout=HEADER_TIMEOUT, max_connections=MAX_CONNECTIONS)
    if len(positional) > 1:
        sys.exit(USAGE)
    if not 1 <= config.PORT <= 65535:
        raise config.ConfigError(f"--port={config.PORT}: a TCP port is a number from 1 to 65535")
    if not opts["header_timeout"] > 0 or opts["max_connections"] < 1:
        raise config.ConfigError("--header_timeout must be above 0 seconds and --max_connections at least 1")
    path = positional[0] if positional else torch_util.default_checkpoint()
    # One inference thread with one torch (or onnxruntime) thread by default: the event loop needs the other
    # core, and batching (not intra-op threads) is what makes small images fast. --threads=N overrides.
    threads = config.THREADS or 1
    torch.set_num_threads(threads)
    predictor = torch_util.Predictor(path, torch_util.pick_device(config.DEVICE), threads)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_app(predictor, threads=threads)
    info = predictor.ckpt
    accuracy = f", accuracy {info['accuracy']:.4f} recorded in training" if info.get("accuracy") is not None else ""
    print(f"serving {path} ({info['model_name']} on {predictor.runtime}, charset {info['charset']!r}{accuracy}) "
          f"at http://{config.HOST}:{config.PORT}", flush=True)
    uvicorn.Server(server_config(app, config.HOST, config.PORT, opts["header_timeout"],
                                 max_connections=opts["max_connections"])).run()


if __name__ == "__main__":
    try:
        main()
    except (config.ConfigError, torch_util.CheckpointError) as e:
        sys.exit(f"error: {e}")
