"""Batches of a decoded set: uint8 -> float, the epoch's order (shared out by rank), resident or streamed batches."""
import torch


def to_float(images):
    """uint8 (B, C, H, W) -> float in [-1, 1]; done on the device, in batch."""
    return images.float().mul_(2 / 255).sub_(1)


def epoch_order(n, batch_size, generator, rank=0, world=1):
    """This rank's indices (CPU int64) for one epoch of `n` images.

    A permutation of range(n) drawn from `generator` (seeded alike on every rank), cut to whole global batches
    of batch_size * world; rank r takes the r-th batch_size indices of each. The ranks' shares are disjoint and
    equally long, so every rank takes the same number of steps. With world = 1 the batches are those of
    batches(n, batch_size, device, generator, drop_last=True).
    """
    order = torch.randperm(n, generator=generator)
    steps = n // (batch_size * world)
    return order[:steps * batch_size * world].view(steps, world, batch_size)[:, rank].reshape(-1)


def resident_batches(tensors, order, batch_size):
    """(images, labels, lengths) batches of device-resident tensors in `order`: index slices on the device."""
    images, labels, lengths = tensors
    order = order.to(images.device)
    for i in range(0, len(order), batch_size):
        idx = order[i:i + batch_size]
        yield images[idx], labels[idx], lengths[idx]


def fits_on_device(nbytes, device, share=0.5):
    """Whether `nbytes` of data may live on `device`: on CUDA when they take at most `share` of the free memory
    (the rest is for the model and its activations); elsewhere always (CPU data is in memory already)."""
    if device.type != "cuda":
        return True
    free, _ = torch.cuda.mem_get_info(device)
    return nbytes <= share * free


def host_tensors(tensors, device):
    """CPU copies of (images, labels, lengths) for stream_batches, in pinned (page-locked) memory for CUDA."""
    tensors = tuple(t.cpu() for t in tensors)
    return tuple(t.pin_memory() for t in tensors) if device.type == "cuda" else tensors


def stream_batches(tensors, order, batch_size, device, chunk_batches=16):
    """The batches of resident_batches for a set kept in host memory (too large for the device).

    A thread gathers each chunk of `chunk_batches` batches on the CPU into pinned memory and, on CUDA, starts
    its non_blocking copy on a side stream; the next chunk is gathered and copied while the current one
    computes. The compute stream waits for the copy's event, never the host.
    """
    from concurrent.futures import ThreadPoolExecutor

    images, labels, lengths = tensors  # on the CPU (pinned for CUDA)
    cuda = device.type == "cuda"
    copy_stream = torch.cuda.Stream(device) if cuda else None
    size = batch_size * chunk_batches
    chunks = [order[i:i + size] for i in range(0, len(order), size)]

    def load(idx):
        if not cuda:
            return images[idx], labels[idx], lengths[idx], None
        host = [torch.empty((len(idx),) + t.shape[1:], dtype=t.dtype, pin_memory=True) for t in tensors]
        for t, out in zip(tensors, host):
            torch.index_select(t, 0, idx, out=out)
        with torch.cuda.device(device), torch.cuda.stream(copy_stream):
            # the pinned blocks go back to torch's host allocator only once these copies are done
            moved = [h.to(device, non_blocking=True) for h in host]
            done = torch.cuda.Event()
            done.record(copy_stream)
        return (*moved, done)

    with ThreadPoolExecutor(1) as pool:
        ahead = pool.submit(load, chunks[0]) if chunks else None
        for k in range(len(chunks)):
            *chunk, done = ahead.result()
            if k + 1 < len(chunks):
                ahead = pool.submit(load, chunks[k + 1])
            if cuda:
                current = torch.cuda.current_stream(device)
                current.wait_event(done)
                for t in chunk:  # allocated on the copy stream, used on this one
                    t.record_stream(current)
            for i in range(0, len(chunk[0]), batch_size):
                yield tuple(t[i:i + batch_size] for t in chunk)


class ReplayPool:
    """The last `capacity` captchas a run rendered, kept on the device (ONLINE_REPLAY): fresh chunks are written in
    a ring, and a batch is drawn from those written so far, uniformly, with replacement. All of it stays on the
    device: a draw is one random index tensor and three index reads, no host sync."""

    def __init__(self, capacity, shape, positions, device):
        self.capacity, self.filled, self.next = capacity, 0, 0
        self.images = torch.empty((capacity, *shape), dtype=torch.uint8, device=device)
        self.labels = torch.empty((capacity, positions), dtype=torch.int64, device=device)
        self.lengths = torch.empty((capacity,), dtype=torch.int64, device=device)
        self.drawn = 0  # images drawn since the last reset_stats (for the epoch's report)

    def reset_stats(self):
        self.drawn = 0

    def add(self, images, labels, lengths):
        """Write a chunk (tensors on the device) over the oldest captchas."""
        n = len(images)
        if n > self.capacity:
            images, labels, lengths, n = images[-self.capacity:], labels[-self.capacity:], lengths[-self.capacity:], \
                self.capacity
        first = min(n, self.capacity - self.next)  # up to the end of the ring, then from its start
        for dst, src in ((self.images, images), (self.labels, labels), (self.lengths, lengths)):
            dst[self.next:self.next + first] = src[:first]
            dst[:n - first] = src[first:]
        self.next = (self.next + n) % self.capacity
        self.filled = min(self.capacity, self.filled + n)

    def draw(self, batch_size):
        idx = torch.randint(self.filled, (batch_size,), device=self.images.device)
        self.drawn += batch_size
        return self.images[idx], self.labels[idx], self.lengths[idx]
