"""The served models and the thread that runs them: requests that arrive together share one forward pass."""
import asyncio
import os
import queue
import threading

import numpy as np
import torch

from core.inference import reading

CANDIDATES = 3  # alternatives listed per character in answers
# torch.fx tracing (BatchNorm folding, as a model is loaded) patches torch.nn.Module.__call__ for the whole
# process while it runs: a forward pass on another thread meanwhile fails ("module is not installed as a
# submodule"). Forward passes of served models and the folding of a model loaded while serving take turns.
TRACING = threading.Lock()


class Model:
    """A served model (.pt or .onnx, a core.inference.Predictor): JSON-ready answers with each character's
    candidates, and with what core.inference.reading() adds: the computed answer when the model reads sums
    (Predictor.answer "arith"), and "unsure" under a MIN_CONFIDENCE above 0."""

    def __init__(self, predictor, candidates=CANDIDATES):
        self.predictor, self.candidates = predictor, candidates

    def predict(self, arrays, min_confidence=0.0):
        """List of uint8 (H, W, C) arrays -> list of JSON-ready predictions. `min_confidence`: one for all, or a
        list with one per image (requests batched together may ask for different ones)."""
        texts, confidences, chars, cands = self.predictor.predict_with_candidates(np.stack(arrays), self.candidates)
        thresholds = min_confidence if isinstance(min_confidence, (list, tuple)) else [min_confidence] * len(texts)
        answer = self.predictor.answer
        return [{**reading(text, conf, answer, threshold),
                 "chars": [{"char": c, "confidence": round(p, 4),
                            "candidates": [{"char": a, "p": round(q, 4)} for a, q in alternatives]}
                           for c, p, alternatives in zip(text, probs, char_cands)]}
                for text, conf, probs, char_cands, threshold in zip(texts, confidences, chars, cands, thresholds)]

    def warm_up(self):
        """One read of a blank image: the first forward pass (allocations, kernel choice) is slow."""
        p = self.predictor
        self.predict([np.zeros((p.height, p.width, p.channels), np.uint8)])

    def info(self):
        p = self.predictor
        ckpt = p.ckpt
        return {"name": ckpt["model_name"], "head": ckpt["head"], "charset": ckpt["charset"],
                "length": list(ckpt["length"]), "image_size": {"width": p.width, "height": p.height},
                "channels": p.channels, "epoch": ckpt.get("epoch"), "accuracy": ckpt.get("accuracy"),
                "char_accuracy": ckpt.get("char_accuracy"), "checkpoint": os.path.basename(p.path),
                "runtime": p.runtime, "parameters": p.parameters, "answer": p.answer}


def _settle(future, result, error):
    if future.done():
        return  # the client went away and its request was cancelled
    if error is None:
        future.set_result(result)
    else:
        future.set_exception(error)


class Batcher:
    """One inference thread that runs the models over every image waiting at once (dynamic batching).

    Under load, requests queue while a forward pass runs and the next pass takes them all (up to max_batch
    images; one pass per model among them): far less CPU per image than a pass each. At low load a request
    runs at once, alone; nothing waits for a batch to fill. One thread owns the models, so concurrent requests
    need no lock, and however many models are served, one forward pass runs at a time: the event loop keeps
    its core. `model`: the one a request runs on unless it names another (None: each request names its own).
    """

    def __init__(self, model, max_batch, threads=None):
        self.model, self.max_batch, self.threads = model, max_batch, threads
        self.jobs = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._loop, name="inference", daemon=True)
        self.thread.start()

    async def predict(self, arrays, model=None, min_confidence=0.0):
        """Predictions of `model` (default: the batcher's) for a list of uint8 (H, W, C) arrays, computed on the
        inference thread; each marked unsure below `min_confidence` (0: never)."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self.jobs.put((model or self.model, arrays, min_confidence, loop, future))
        return await future

    def close(self):
        self.jobs.put(None)
        self.thread.join(timeout=10)

    def _loop(self):
        if self.threads:
            torch.set_num_threads(self.threads)
        while True:
            job = self.jobs.get()
            if job is None:
                return
            batch, count = [job], len(job[1])
            while count < self.max_batch:
                try:
                    job = self.jobs.get_nowait()
                except queue.Empty:
                    break
                if job is None:
                    self.jobs.put(None)  # answer this batch first, then stop
                    break
                batch.append(job)
                count += len(job[1])
            models = {}  # one forward pass per model, in the order they came
            for job in batch:
                models.setdefault(id(job[0]), []).append(job)
            for jobs in models.values():
                self._run(jobs)

    def _run(self, batch):
        model = batch[0][0]
        arrays = [a for _, images, _, _, _ in batch for a in images]
        thresholds = [m for _, images, m, _, _ in batch for _ in images]
        try:  # thresholds only when a request asked for one: the plain call is the common one
            with TRACING:
                results = model.predict(arrays, thresholds) if any(thresholds) else model.predict(arrays)
            error = None
        except Exception as e:  # re-raised in each waiting request, where CatchErrors logs it
            results, error = None, e
        start = 0
        for _, images, _, loop, future in batch:
            part = None if error else results[start:start + len(images)]
            start += len(images)
            try:
                loop.call_soon_threadsafe(_settle, future, part, error)
            except RuntimeError:
                pass  # that request's event loop is closed (server shutting down)
