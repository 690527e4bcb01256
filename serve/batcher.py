"""The served model and the thread that runs it: requests that arrive together share one forward pass."""
import asyncio
import os
import queue
import threading

import numpy as np
import torch

CANDIDATES = 3  # alternatives listed per character in answers


class Model:
    """The served model (.pt or .onnx, a core.inference.Predictor): JSON-ready answers with each character's candidates."""

    def __init__(self, predictor, candidates=CANDIDATES):
        self.predictor, self.candidates = predictor, candidates

    def predict(self, arrays):
        """List of uint8 (H, W, C) arrays -> list of JSON-ready predictions."""
        texts, confidences, chars, cands = self.predictor.predict_with_candidates(np.stack(arrays), self.candidates)
        return [{"text": text, "confidence": round(conf, 4),
                 "chars": [{"char": c, "confidence": round(p, 4),
                            "candidates": [{"char": a, "p": round(q, 4)} for a, q in alternatives]}
                           for c, p, alternatives in zip(text, probs, char_cands)]}
                for text, conf, probs, char_cands in zip(texts, confidences, chars, cands)]

    def info(self):
        p = self.predictor
        ckpt = p.ckpt
        return {"name": ckpt["model_name"], "head": ckpt["head"], "charset": ckpt["charset"],
                "length": list(ckpt["length"]), "image_size": {"width": p.width, "height": p.height},
                "channels": p.channels, "epoch": ckpt.get("epoch"), "accuracy": ckpt.get("accuracy"),
                "char_accuracy": ckpt.get("char_accuracy"), "checkpoint": os.path.basename(p.path),
                "runtime": p.runtime, "parameters": p.parameters}


def _settle(future, result, error):
    if future.done():
        return  # the client went away and its request was cancelled
    if error is None:
        future.set_result(result)
    else:
        future.set_exception(error)


class Batcher:
    """One inference thread that runs the model over every image waiting at once (dynamic batching).

    Under load, requests queue while a forward pass runs and the next pass takes them all (up to max_batch
    images): far less CPU per image than a pass each. At low load a request runs at once, alone; nothing
    waits for a batch to fill. One thread owns the model, so concurrent requests need no lock.
    """

    def __init__(self, model, max_batch, threads=None):
        self.model, self.max_batch, self.threads = model, max_batch, threads
        self.jobs = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._loop, name="inference", daemon=True)
        self.thread.start()

    async def predict(self, arrays):
        """Predictions for a list of uint8 (H, W, C) arrays, computed on the inference thread."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self.jobs.put((arrays, loop, future))
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
            batch, count = [job], len(job[0])
            while count < self.max_batch:
                try:
                    job = self.jobs.get_nowait()
                except queue.Empty:
                    break
                if job is None:
                    self.jobs.put(None)  # answer this batch first, then stop
                    break
                batch.append(job)
                count += len(job[0])
            self._run(batch)

    def _run(self, batch):
        try:
            results, error = self.model.predict([a for arrays, _, _ in batch for a in arrays]), None
        except Exception as e:  # re-raised in each waiting request, where CatchErrors logs it
            results, error = None, e
        start = 0
        for arrays, loop, future in batch:
            part = None if error else results[start:start + len(arrays)]
            start += len(arrays)
            try:
                loop.call_soon_threadsafe(_settle, future, part, error)
            except RuntimeError:
                pass  # that request's event loop is closed (server shutting down)
