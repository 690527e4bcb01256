"""Load test of the web app: N requests at concurrency C against this machine; prints requests/s, latency, errors.

    python benchmarks/loadtest.py                    # starts app.py on a free port, stops it after
    python benchmarks/loadtest.py weights/cnn_best.pt --requests=10000 --concurrency=8
    python benchmarks/loadtest.py --url=http://127.0.0.1:8000 --images=dataset/test   # a server already running

Each of C connections (HTTP/1.1 keep-alive) sends one POST /api/predict after another, cycling over up to
64 images; `--mode` picks how the image is sent (multipart, json, raw). Only 127.0.0.1 / localhost / ::1
are targets, and the run stops after --requests or --seconds, whichever comes first. Exit status 1 when
any request failed.
"""
import asyncio
import base64
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # run as `python benchmarks/<name>.py`: the project's modules are one folder up

import config  # noqa: E402
from core import cli  # noqa: E402

LOOPBACK = ("127.0.0.1", "localhost", "::1")
MAX_IMAGES = 64
MODES = ("multipart", "json", "raw")  # how the image travels: form upload, base64 in JSON, the bytes as the body
EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")  # core.data.IMAGE_EXTENSIONS,
# repeated so that the load generator does not import torch: it shares the two cores with the server


def image_files(source):
    """Up to MAX_IMAGES image paths from a file or a folder."""
    if os.path.isfile(source):
        return [source]
    if not os.path.isdir(source):
        return []
    return [os.path.join(source, f) for f in sorted(os.listdir(source))
            if os.path.splitext(f)[1].lower() in EXTENSIONS][:MAX_IMAGES]


def build_request(host, port, image, name, mode):
    """The bytes of one POST /api/predict carrying `image` (file bytes) the way `mode` says."""
    if mode == "multipart":
        boundary = "loadtest7f3a9c"
        body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
                f"Content-Type: image/png\r\n\r\n").encode() + image + f"\r\n--{boundary}--\r\n".encode()
        kind = f"multipart/form-data; boundary={boundary}"
    elif mode == "json":
        body, kind = json.dumps({"image": base64.b64encode(image).decode()}).encode(), "application/json"
    elif mode == "raw":
        body, kind = image, "image/png"
    else:
        raise ValueError(f"mode {mode!r}: expected one of {', '.join(MODES)}")
    head = (f"POST /api/predict HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: {kind}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n")
    return head.encode() + body


async def send(reader, writer, request):
    """(status, body) of one request on an open keep-alive connection."""
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
    if "content-length" not in headers:
        raise ConnectionError("answer without Content-Length")
    body = await reader.readexactly(int(headers["content-length"]))
    if headers.get("connection", "").lower() == "close":
        raise ConnectionResetError("server closed the connection")  # counted once; the worker reconnects
    return status, body


def record_error(stats, message):
    stats["errors"] += 1
    if len(stats["messages"]) < 5:
        stats["messages"].append(message)


async def worker(host, port, requests, labels, state, stats, timeout, deadline):
    """Send requests[i % len] while the shared counter is below the total; record latency or error."""
    reader = writer = None
    while state["next"] < state["total"] and time.perf_counter() < deadline:
        i = state["next"]
        state["next"] += 1
        start = time.perf_counter()
        try:
            async with asyncio.timeout(timeout):
                if writer is None:
                    reader, writer = await asyncio.open_connection(host, port)
                status, body = await send(reader, writer, requests[i % len(requests)])
            text = json.loads(body)["text"] if status == 200 else None
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError, KeyError) as e:
            record_error(stats, f"{type(e).__name__}: {e}")
            if writer is not None:
                writer.close()
            reader = writer = None  # the connection is in an unknown state: start a new one
            continue
        if text is None:
            record_error(stats, f"HTTP {status}: {body[:200].decode(errors='replace')}")
            continue
        if state["measuring"]:
            stats["latencies"].append(time.perf_counter() - start)
            stats["right"] += text == labels[i % len(labels)]
    if writer is not None:
        writer.close()


async def run(host, port, requests, labels, total, concurrency, timeout, seconds, pid=None):
    """Warm up (not counted), then `total` requests from `concurrency` connections; returns the stats.

    With the server's `pid`, also the CPU time it spent: per request, a figure that holds however busy
    the machine is (req/s on a shared machine depends on what else runs)."""
    warm = {"next": 0, "total": min(total, 10 * concurrency), "measuring": False}
    scratch = {"errors": 0, "messages": [], "latencies": [], "right": 0}
    deadline = time.perf_counter() + seconds
    await asyncio.gather(*(worker(host, port, requests, labels, warm, scratch, timeout, deadline)
                           for _ in range(concurrency)))
    state = {"next": 0, "total": total, "measuring": True}
    stats = {"errors": 0, "messages": [], "latencies": [], "right": 0}
    start, cpu = time.perf_counter(), pid and cpu_seconds(pid)
    stats["memory_before"] = pid and memory_mb(pid)
    await asyncio.gather(*(worker(host, port, requests, labels, state, stats, timeout, deadline)
                           for _ in range(concurrency)))
    stats["seconds"] = time.perf_counter() - start
    stats["server_cpu"] = cpu_seconds(pid) - cpu if cpu is not None else None
    stats["sent"] = state["next"]
    stats["memory_after"], stats["memory_peak"] = (memory_mb(pid), memory_mb(pid, "VmHWM")) if pid else (None, None)
    return stats


def percentile(sorted_values, q):
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))] if sorted_values else float("nan")


def report(stats, mode, images, concurrency):
    lat = sorted(stats["latencies"])
    ms = lambda q: 1000 * percentile(lat, q)
    rate = len(lat) / stats["seconds"] if stats["seconds"] else 0.0
    plural = "s" if images != 1 else ""
    print(f"{stats['sent']} requests ({mode}, {images} image{plural}) at concurrency {concurrency} in "
          f"{stats['seconds']:.1f} s: {rate:.0f} req/s, latency p50 {ms(0.5):.1f} ms, p90 {ms(0.9):.1f} ms, "
          f"p99 {ms(0.99):.1f} ms, max {1000 * lat[-1] if lat else float('nan'):.1f} ms, errors {stats['errors']}")
    if lat and stats["server_cpu"] is not None:
        print(f"server CPU per request: {1000 * stats['server_cpu'] / len(lat):.2f} ms "
              f"({stats['server_cpu'] / stats['seconds']:.2f} cores busy on average)")
    if stats.get("memory_before") and stats.get("memory_after"):
        print(f"server memory (resident): {stats['memory_before']:.0f} MB before the measured requests, "
              f"{stats['memory_after']:.0f} MB after, peak {stats['memory_peak']:.0f} MB")
    if lat:
        print(f"answers equal to the file-name label: {stats['right'] / len(lat):.1%}")
    for message in stats["messages"]:
        print(f"  error: {message}")


def cpu_seconds(pid):
    """User + system CPU time of a process so far (Linux /proc); None elsewhere."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def memory_mb(pid, field="VmRSS"):
    """Resident memory of a process in MB (Linux /proc; VmHWM: its peak so far); None elsewhere."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def event_loop_factory():
    """uvloop's event loop where it is installed (as uvicorn uses it): less of the shared CPU for the client."""
    try:
        import uvloop
        return uvloop.new_event_loop
    except ImportError:
        return None


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url, process, seconds=120):
    end = time.time() + seconds
    while time.time() < end:
        if process.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=2) as r:
                if r.status == 200:
                    return True
        except OSError:
            time.sleep(0.3)
    return False


def start_server(checkpoint, port, log):
    """app.py in a child process on 127.0.0.1:port; returns it once /healthz answers."""
    cmd = [sys.executable, os.path.join(ROOT, "app.py"),
           *([checkpoint] if checkpoint else []), "--host=127.0.0.1", f"--port={port}",
           f"--weights_dir={config.WEIGHTS_DIR}", f"--threads={config.THREADS}", f"--tta={config.TTA}"]
    process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    if not wait_healthy(f"http://127.0.0.1:{port}", process):
        stop_server(process)
        log.seek(0)
        sys.exit(f"error: app.py did not start:\n{log.read().decode(errors='replace')[-3000:]}")
    return process


def stop_server(process):
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def main():
    positional, opts = config.parse(url="", images="", requests=1000, concurrency=8, mode="multipart",
                                    timeout=10.0, seconds=600.0)
    if len(positional) > 1:
        sys.exit("usage: python benchmarks/loadtest.py [CHECKPOINT.pt] [--requests=N] [--concurrency=C] [--url=...]")
    if opts["requests"] < 1 or opts["concurrency"] < 1:
        sys.exit("error: --requests and --concurrency must be at least 1")
    if opts["mode"] not in MODES:
        sys.exit(f"error: --mode={opts['mode']}: expected one of {', '.join(MODES)}")
    if opts["url"] and urllib.parse.urlsplit(opts["url"]).hostname not in LOOPBACK:  # before anything else
        sys.exit(f"error: {opts['url']}: loadtest.py only targets this machine ({', '.join(LOOPBACK)})")
    source = opts["images"] or config.test_dir()
    paths = image_files(source) if source else []
    if not paths:
        sys.exit(f"error: no images in {source or 'TEST_DIR'} (pass --images=FOLDER or FILE)")
    images = [open(p, "rb").read() for p in paths]
    labels = [os.path.splitext(os.path.basename(p))[0].split("_")[0] for p in paths]

    process, log = None, tempfile.TemporaryFile()
    if opts["url"]:
        parts = urllib.parse.urlsplit(opts["url"])
        host, port = parts.hostname, parts.port or 80
    else:
        host, port = "127.0.0.1", free_port()
        process = start_server(positional[0] if positional else "", port, log)
        print(f"started app.py on 127.0.0.1:{port}", flush=True)
    try:
        requests = [build_request(host, port, image, os.path.basename(p), opts["mode"])
                    for image, p in zip(images, paths)]
        with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
            stats = runner.run(run(host, port, requests, labels, opts["requests"], opts["concurrency"],
                                   opts["timeout"], opts["seconds"], process and process.pid))
    finally:
        if process:
            stop_server(process)
    report(stats, opts["mode"], len(images), opts["concurrency"])
    if stats["errors"] or stats["sent"] < opts["requests"]:
        sys.exit(1)


if __name__ == "__main__":
    cli.run(main)
