"""Load test of a server with several models (app.py --models_dir), and of a model file replaced under load.

    python benchmarks/swaptest.py                       # weights/default.pt and weights/pretrained.pt
    python benchmarks/swaptest.py A.pt B.onnx --requests=4000 --concurrency=8 --swaps=10 --images=dataset/test

Copies the two models into a temporary folder as a.EXT and b.EXT, starts app.py --models_dir on it
(127.0.0.1, a free port), then:

1. two models: --requests requests from --concurrency keep-alive connections, half of them reading with
   ?model=a, half with ?model=b;
2. swap under load: the same load, while a.EXT is replaced --swaps times (os.replace of a full copy, the
   two models' files in turn); each replacement waits until /api/models shows it picked up, then the next.

For each part: requests, failed requests, requests/s, latency p50/p95/p99/max; for the second also the swaps
picked up and how long each took to be served. Images: --images (a folder or file), else TEST_DIR, else 32
generated captchas. Exit status 1 when a request failed or a swap was not picked up.
"""
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # run as `python benchmarks/<name>.py`: the project's modules are one folder up

import config  # noqa: E402
from core import cli  # noqa: E402
from benchmarks import loadtest  # noqa: E402

DEFAULT_MODELS = ("weights/default.pt", "weights/pretrained.pt")


def copy_in(source, folder, name):
    """Replace folder/name by a full copy of `source` in one step (a hidden temporary file, then os.replace)."""
    temporary = os.path.join(folder, f".{name}.part")
    shutil.copyfile(source, temporary)
    os.replace(temporary, os.path.join(folder, name))


def listing(url):
    with urllib.request.urlopen(url + "/api/models", timeout=10) as r:
        return json.loads(r.read())


def version(url, name):
    return {m["name"]: m["version"] for m in listing(url)["models"]}.get(name)


def request_for(host, port, image, file, mode, model):
    """loadtest's request, for one model."""
    request = loadtest.build_request(host, port, image, file, mode)
    return request.replace(b"POST /api/predict ", f"POST /api/predict?model={model} ".encode(), 1)


async def load(host, port, per_model, total, concurrency, timeout, seconds, until=None):
    """`total` requests (or until `until` is done) from `concurrency` connections, the models in turn."""
    state = {"next": 0, "total": total, "measuring": True}
    stats = {"errors": 0, "messages": [], "latencies": [], "right": 0}
    deadline = time.perf_counter() + seconds
    models = list(per_model)
    workers = [loadtest.worker(host, port, per_model[models[i % len(models)]][0], per_model[models[i % len(models)]][1],
                               state, stats, timeout, deadline) for i in range(concurrency)]
    start = time.perf_counter()
    if until is None:
        await asyncio.gather(*workers)
        result = None
    else:
        tasks = [asyncio.ensure_future(w) for w in workers]
        try:
            result = await until
        finally:
            state["total"] = 0  # the workers stop after the request they are sending
            await asyncio.gather(*tasks)
    stats["seconds"] = time.perf_counter() - start
    stats["sent"] = state["next"]
    return stats, result


async def swapper(url, folder, name, ext, sources, swaps, wait):
    """Replace folder/name.ext `swaps` times (the sources in turn); each time wait until it is served.
    Returns the seconds each took to be picked up (None: not within `wait`)."""
    took = []
    current = await asyncio.to_thread(version, url, name)
    await asyncio.sleep(1.0)  # some load before the first swap
    for n in range(swaps):
        await asyncio.to_thread(copy_in, sources[(n + 1) % len(sources)], folder, name + ext)
        start = time.perf_counter()
        while time.perf_counter() - start < wait:
            await asyncio.sleep(0.05)
            if await asyncio.to_thread(version, url, name) == current + 1:
                current += 1
                took.append(time.perf_counter() - start)
                break
        else:
            took.append(None)
            current = await asyncio.to_thread(version, url, name)
        await asyncio.sleep(0.5)  # load on the new model before the next swap
    return took


def report(title, stats):
    lat = sorted(stats["latencies"])
    ms = lambda q: 1000 * loadtest.percentile(lat, q)
    rate = len(lat) / stats["seconds"] if stats["seconds"] else 0.0
    print(f"{title}: {stats['sent']} requests in {stats['seconds']:.1f} s, {stats['errors']} failed, {rate:.0f} req/s, "
          f"latency p50 {ms(0.5):.1f} ms, p95 {ms(0.95):.1f} ms, p99 {ms(0.99):.1f} ms, "
          f"max {1000 * lat[-1] if lat else float('nan'):.1f} ms")
    for message in stats["messages"]:
        print(f"  error: {message}")


def images_for(source, scratch):
    paths = loadtest.image_files(source) if source else []
    if not paths:
        from core.generate import generate
        folder = os.path.join(scratch, "images")
        generate(folder, 32, 7, "0123456789", 4, 160, 60, processes=1, quiet=True)
        paths = loadtest.image_files(folder)
    return paths


def main():
    positional, opts = config.parse(images="", requests=2000, concurrency=8, mode="multipart", swaps=10,
                                    timeout=10.0, seconds=300.0, wait=30.0)
    sources = [os.path.abspath(p) for p in (positional or DEFAULT_MODELS)]
    if len(sources) != 2 or any(not os.path.isfile(p) for p in sources):
        sys.exit("usage: python benchmarks/swaptest.py [A.pt|A.onnx B.pt|B.onnx] [--requests=N] [--concurrency=C] "
                 "[--swaps=N] (two model files that exist)")
    if opts["requests"] < 1 or opts["concurrency"] < 2 or opts["swaps"] < 0:
        sys.exit("error: --requests at least 1, --concurrency at least 2 (a connection per model), --swaps 0 or more")
    scratch = tempfile.mkdtemp(prefix="swaptest-")
    folder = os.path.join(scratch, "models")
    os.makedirs(folder)
    ext = os.path.splitext(sources[0])[1]
    copy_in(sources[0], folder, "a" + ext)
    copy_in(sources[1], folder, "b" + os.path.splitext(sources[1])[1])
    paths = images_for(opts["images"] or config.test_dir(), scratch)
    images = [open(p, "rb").read() for p in paths]
    labels = [os.path.splitext(os.path.basename(p))[0].split("_")[0] for p in paths]

    host, port = "127.0.0.1", loadtest.free_port()
    url = f"http://{host}:{port}"
    log = tempfile.TemporaryFile()
    process = subprocess.Popen([sys.executable, os.path.join(ROOT, "app.py"), f"--models_dir={folder}",
                                "--default_model=a", f"--host={host}", f"--port={port}", f"--threads={config.THREADS}"],
                               stdout=log, stderr=subprocess.STDOUT)
    try:
        if not loadtest.wait_healthy(url, process):
            log.seek(0)
            sys.exit(f"error: app.py did not start:\n{log.read().decode(errors='replace')[-3000:]}")
        print(f"serving {', '.join(m['name'] + ' (' + m['model'] + ')' for m in listing(url)['models'])} of "
              f"{folder} at {url}", flush=True)
        per_model = {m: ([request_for(host, port, image, os.path.basename(p), opts["mode"], m)
                          for image, p in zip(images, paths)], labels) for m in ("a", "b")}
        with asyncio.Runner(loop_factory=loadtest.event_loop_factory()) as runner:
            runner.run(load(host, port, per_model, min(200, opts["requests"]), opts["concurrency"], opts["timeout"],
                            opts["seconds"]))  # warm-up, not counted
            both, _ = runner.run(load(host, port, per_model, opts["requests"], opts["concurrency"], opts["timeout"],
                                      opts["seconds"]))
            swapping, took = runner.run(load(host, port, per_model, 10**9, opts["concurrency"], opts["timeout"],
                                             opts["seconds"], swapper(url, folder, "a", ext, sources, opts["swaps"],
                                                                      opts["wait"])))
        served = listing(url)
    finally:
        loadtest.stop_server(process)
        log.seek(0)
        server_log = log.read().decode(errors="replace")
        shutil.rmtree(scratch, ignore_errors=True)
    report(f"two models (a, b), concurrency {opts['concurrency']}", both)
    report(f"swap under load, a.{ext.lstrip('.')} replaced {opts['swaps']} times", swapping)
    picked = [t for t in took if t is not None]
    print(f"swaps picked up: {len(picked)} of {opts['swaps']} (server's count: {served['swaps']})"
          + (f", each served {min(picked):.2f}-{max(picked):.2f} s after its os.replace "
             f"(mean {sum(picked) / len(picked):.2f} s)" if picked else ""))
    refused = server_log.count(" refused ")
    if refused or "Traceback" in server_log:
        print(f"server log: {refused} file(s) refused, tracebacks: {server_log.count('Traceback')}")
    if both["errors"] or swapping["errors"] or len(picked) < opts["swaps"]:
        sys.exit(1)


if __name__ == "__main__":
    cli.run(main)
