"""DataLoader: shuffled, augmented batches, optionally assembled by worker processes.

Determinism: epoch e visits the samples in the permutation drawn from (seed, e), and sample i
of epoch e is transformed with its own Generator seeded by (seed, e, i). A batch therefore
depends only on (seed, epoch, batch number), never on num_workers or on timing, and a resumed
run regenerates the same order with set_epoch(e, start_batch=k).

Workers: num_workers processes (fork on Linux, spawn elsewhere, where dataset and transform
must pickle) take (batch number, indices) tasks from one queue and put finished batches on
another. At most prefetch * num_workers batches are requested ahead of the one the caller
is consuming; the main process reorders results by batch number. Workers ignore SIGINT, so
Ctrl-C reaches only the main process, whose iterator shuts them down (finally block) on
normal end, break, exceptions and KeyboardInterrupt. A worker exception is re-raised in the
main process as RuntimeError carrying the worker's traceback.
"""
import multiprocessing
import os
import queue
import signal
import sys
import time
import traceback
import warnings

import numpy as np

from .datasets import ArrayDataset
from .folder import CorruptImageError, CorruptImageWarning

_POLL_S = 1.0      # how often a waiting main process checks that its workers are alive
_SHUTDOWN_S = 5.0  # grace period for workers to exit before they are terminated


def epoch_permutation(n, seed, epoch):
    """The visiting order of n samples in epoch `epoch`: a permutation drawn from (seed, epoch)."""
    # SeedSequence pads short entropy with zeros, so (seed, epoch) would collide with
    # (seed, epoch, 0): tag 0 marks the permutation, tag 1 the per-sample streams.
    return np.random.default_rng((seed, epoch, 0)).permutation(n)


def sample_rng(seed, epoch, index):
    """The Generator that transforms sample `index` in epoch `epoch`."""
    return np.random.default_rng((seed, epoch, 1, int(index)))


def make_batch(dataset, indices, transform, seed, epoch):
    """Assemble one batch: (x (B,C,H,W) float32 C-contiguous or None, y (B,) int64, failures).

    Samples whose image cannot be decoded are dropped with their labels and listed in
    failures as (path, reason); x is None when every sample failed.
    """
    plain_arrays = type(dataset).__getitem__ is ArrayDataset.__getitem__  # not overridden
    if transform is None and isinstance(dataset, ArrayDataset) and plain_arrays:
        x, y = dataset.batch(indices)  # vectorized, same values as the per-sample path
        return x, y, []
    images, labels, failures = [], [], []
    for i in indices:
        try:
            img, label = dataset[int(i)]
        except CorruptImageError as e:
            failures.append((e.path, e.reason))
            continue
        if transform is not None:
            img = transform(img, sample_rng(seed, epoch, i))
        images.append(img)
        labels.append(label)
    if not images:
        return None, np.zeros(0, dtype=np.int64), failures
    shapes = {np.shape(img) for img in images}
    if len(shapes) != 1:
        raise ValueError(f"DataLoader: samples in one batch have different shapes {sorted(shapes)}; "
                         f"add a transform that resizes/crops them to one size")
    x = np.empty((len(images),) + images[0].shape, dtype=np.float32)
    for k, img in enumerate(images):
        x[k] = img
    return x, np.asarray(labels, dtype=np.int64), failures


def _worker_loop(dataset, transform, seed, tasks, results, parent_pid):
    """Worker process: turn (batch_no, epoch, indices) tasks into results until None arrives."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the main process handles Ctrl-C
    while True:
        try:
            task = tasks.get(timeout=_POLL_S)
        except queue.Empty:
            if os.getppid() != parent_pid:  # orphaned: the main process died without cleanup
                return
            continue
        if task is None:
            return
        batch_no, epoch, indices = task
        try:
            x, y, failures = make_batch(dataset, indices, transform, seed, epoch)
            results.put((batch_no, x, y, failures, None))
        except Exception:  # reported to and re-raised by the main process
            results.put((batch_no, None, None, [], traceback.format_exc()))


class DataLoader:
    """Iterate over (x, y) batches of a data set: x (B,C,H,W) float32 C-contiguous, y (B,) int64.

    dataset: ArrayDataset, ImageFolder or anything with len() and ds[i] -> (CHW image, label).
    transform: callable transform(img, rng) -> img applied per sample (see transforms.py).
    shuffle=False visits samples in order (every epoch the same). drop_last drops a final
    short batch. Batches with undecodable images come out smaller (CorruptImageWarning once
    per path); a batch with no decodable image is skipped.

    Each iter(loader) runs one epoch, loader.epoch, then advances it; set_epoch(e, k) makes
    the next iteration epoch e starting at its batch k (for resuming).
    """

    def __init__(self, dataset, batch_size, shuffle=True, seed=0, transform=None,
                 num_workers=0, prefetch=2, drop_last=False):
        if batch_size < 1 or num_workers < 0 or prefetch < 1 or seed < 0:
            raise ValueError(f"DataLoader: need batch_size >= 1, num_workers >= 0, prefetch >= 1, "
                             f"seed >= 0; got {batch_size}, {num_workers}, {prefetch}, {seed}")
        self.dataset, self.batch_size, self.shuffle = dataset, int(batch_size), shuffle
        self.seed, self.transform, self.drop_last = int(seed), transform, drop_last
        self.num_workers, self.prefetch = int(num_workers), int(prefetch)
        self.epoch, self._start_batch = 0, 0
        self._reported = set()  # paths already warned about

    def __len__(self):
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def set_epoch(self, epoch, start_batch=0):
        self.epoch, self._start_batch = int(epoch), int(start_batch)

    def batch_indices(self, epoch):
        """The list of index arrays making up the batches of `epoch`."""
        n = len(self.dataset)
        order = epoch_permutation(n, self.seed, epoch) if self.shuffle else np.arange(n)
        return [order[s:s + self.batch_size] for s in range(0, len(self) * self.batch_size, self.batch_size)]

    def __iter__(self):
        epoch, start = self.epoch, self._start_batch
        self.epoch, self._start_batch = epoch + 1, 0
        batches = list(enumerate(self.batch_indices(epoch)))[start:]
        if self.num_workers == 0:
            return self._iter_serial(epoch, batches)
        return self._iter_workers(epoch, batches)

    def _emit(self, x, y, failures):
        for path, reason in failures:
            if path not in self._reported:
                self._reported.add(path)
                warnings.warn(f"skipping unreadable image {path}: {reason}", CorruptImageWarning,
                              stacklevel=3)
        return x is not None

    def _iter_serial(self, epoch, batches):
        for _, indices in batches:
            x, y, failures = make_batch(self.dataset, indices, self.transform, self.seed, epoch)
            if self._emit(x, y, failures):
                yield x, y

    def _iter_workers(self, epoch, batches):
        ctx = multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")
        tasks, results = ctx.Queue(), ctx.Queue()
        args = (self.dataset, self.transform, self.seed, tasks, results, os.getpid())
        workers = [ctx.Process(target=_worker_loop, args=args, daemon=True)
                   for _ in range(self.num_workers)]
        try:
            for w in workers:
                w.start()
            ahead = self.prefetch * self.num_workers
            sent, done, ready = 0, 0, {}  # tasks sent, batches yielded, results out of order
            while done < len(batches):
                while sent < len(batches) and sent - done < ahead:
                    batch_no, indices = batches[sent]
                    tasks.put((batch_no, epoch, indices))
                    sent += 1
                want = batches[done][0]
                while want not in ready:
                    result = _get_result(results, workers)
                    ready[result[0]] = result[1:]
                x, y, failures, error = ready.pop(want)
                done += 1
                if error is not None:
                    raise RuntimeError(f"DataLoader worker failed on batch {want} of epoch {epoch}:\n{error}")
                if self._emit(x, y, failures):
                    yield x, y
        finally:
            _shutdown(workers, tasks, results)


def _get_result(results, workers):
    """Next result from the queue; RuntimeError if a worker died (killed, segfault, OOM)."""
    while True:
        try:
            return results.get(timeout=_POLL_S)
        except queue.Empty:
            dead = [w for w in workers if not w.is_alive()]
            if dead:
                raise RuntimeError(f"DataLoader worker (pid {dead[0].pid}) exited unexpectedly "
                                   f"with code {dead[0].exitcode}") from None


def _shutdown(workers, tasks, results):
    """Stop workers: sentinels, drain results (a worker cannot exit while its queue buffer is
    unflushed), then terminate whatever is still alive after the grace period."""
    for w in workers:
        if w.is_alive():
            tasks.put(None)
    deadline = time.monotonic() + _SHUTDOWN_S
    while any(w.is_alive() for w in workers) and time.monotonic() < deadline:
        try:
            results.get(timeout=0.05)
        except queue.Empty:
            pass
    for w in workers:
        if w.is_alive():
            w.terminate()
        if w.pid is not None:  # started
            w.join(timeout=1.0)
    for q in (tasks, results):
        q.cancel_join_thread()  # never block interpreter exit on unsent sentinels
        q.close()
