"""Count the operations that would make the host wait for an accelerator, without one.

On a GPU, reading a value (``.item()``, ``bool(t)``, ``float(t)``, ``if t.any():``), a data-dependent shape
(``nonzero``, boolean indexing, ``unique``, ``masked_select``), ``torch.equal`` or a linalg error check blocks
the host until the device has caught up. :class:`SyncCounter` is a ``TorchDispatchMode`` that records each
such op (``item``/``bool``/``float``/``int`` all reach the dispatcher as ``aten._local_scalar_dense``), plus
``Tensor.tolist`` and ``Tensor.numpy``, which read memory without dispatching. Each record names the innermost
``scidiff`` line.

``SyncCounter(device="meta")`` stands the meta device in for the accelerator: the sampler state lives there,
host tensors (the schedule, the optimiser's step counter) stay on the CPU, and only reads of meta tensors
count, as only reads of device tensors sync on a GPU. A meta tensor has no values, so a read returns a
stand-in: ``False`` for ``any()``, ``True`` for ``all()`` (the answers that let checks pass), else ``True``/0.
"""

from __future__ import annotations

import contextlib
import traceback

import torch
from torch.utils._python_dispatch import TorchDispatchMode

# aten ops (overload packets) that read device memory on the host or wait for a data-dependent size
READS = {"_local_scalar_dense", "nonzero", "masked_select", "equal", "_unique", "_unique2", "unique_dim",
         "unique_consecutive", "_linalg_check_errors", "masked_scatter"}
INDEXING = {"index", "index_put", "index_put_", "_index_put_impl_"}  # sync only with boolean index masks


def _where() -> str:
    """The innermost two ``scidiff`` lines of the stack: ``'helper.py:12 <- caller.py:34'``."""
    lines = [f"{f.filename.split('/scidiff/', 1)[1]}:{f.lineno}" for f in reversed(traceback.extract_stack()[:-3])
             if "/scidiff/" in f.filename and "/tests/" not in f.filename]
    return " <- ".join(lines[:2]) or "outside scidiff"


def _tensors(args):
    for a in args:
        if isinstance(a, torch.Tensor):
            yield a
        elif isinstance(a, (list, tuple)):
            yield from _tensors(a)


def _is_sync(func, args, kwargs) -> bool:
    name = func.overloadpacket.__name__
    if name in READS:
        return True
    if name == "repeat_interleave":  # without output_size the result's size is read from the device
        return func is not torch.ops.aten.repeat_interleave.self_int and kwargs.get("output_size") is None
    if name in INDEXING:
        indices = args[1] if len(args) > 1 and isinstance(args[1], (list, tuple)) else ()
        return any(isinstance(t, torch.Tensor) and t.dtype in (torch.bool, torch.uint8) for t in indices)
    return False


class SyncCounter(TorchDispatchMode):
    """``with SyncCounter() as c: ...`` then ``c.events``: ``[(op, 'file.py:line'), ...]`` (see module docs).

    Args:
        device: count only ops reading a tensor on this device type (``"meta"``); ``None`` counts all.
    """

    def __init__(self, device: str | None = None):
        super().__init__()
        self.device = device
        self.events: list[tuple[str, str]] = []
        self.paused = 0
        self._answers: dict[int, bool] = {}  # id of an any()/all() result on the stand-in device -> its stand-in
        self._patches = contextlib.ExitStack()

    def _counts(self, tensors) -> bool:
        return self.device is None or any(t.device.type == self.device for t in tensors)

    def _record(self, op: str) -> None:
        if not self.paused:
            self.events.append((op, _where()))

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        tensors = list(_tensors(args))
        if _is_sync(func, args, kwargs) and self._counts(tensors):
            self._record(func.overloadpacket.__name__)
            if self.device is not None and func is torch.ops.aten._local_scalar_dense.default:
                t = tensors[0]
                return self._answers.get(id(t), True if t.dtype == torch.bool else 0)
        out = func(*args, **kwargs)
        if self.device is not None and func.overloadpacket.__name__ in ("any", "all") and out.device.type == self.device:
            self._answers[id(out)] = func.overloadpacket.__name__ == "all"
        return out

    def __enter__(self):
        for attr in ("tolist", "numpy"):
            original = getattr(torch.Tensor, attr)

            def patched(t, *a, _original=original, _attr=attr, **k):
                if self._counts([t]):
                    self._record(_attr)
                return _original(t, *a, **k)

            self._patches.enter_context(_setattr(torch.Tensor, attr, patched))
        return super().__enter__()

    def __exit__(self, *exc):
        out = super().__exit__(*exc)
        self._patches.close()
        return out

    def quiet(self, fn):
        """``fn`` with counting paused while it runs: for a denoiser whose own syncs are not under test."""

        def call(*args, **kwargs):
            self.paused += 1
            try:
                return fn(*args, **kwargs)
            finally:
                self.paused -= 1

        return call


@contextlib.contextmanager
def _setattr(obj, name, value):
    own = name in vars(obj)
    old = vars(obj).get(name)
    setattr(obj, name, value)
    try:
        yield
    finally:
        if own:
            setattr(obj, name, old)
        else:
            delattr(obj, name)


def to_device(obj, device: str):
    """Move the tensor attributes of a plain object (an oracle, a likelihood) to ``device``, in place."""
    for key, value in vars(obj).items():
        if isinstance(value, torch.Tensor):
            setattr(obj, key, value.to(device))
    return obj


def syncs(run, device: str | None = "meta") -> list[tuple[str, str]]:
    """The sync events of ``run(counter)`` (``counter.quiet`` wraps what should not be counted)."""
    counter = SyncCounter(device)
    with counter:
        run(counter)
    return counter.events
