"""Data-parallel training and evaluation on a Dask cluster (LocalCluster, SSH, HPC through
dask-jobqueue, Kubernetes: any ``dask.distributed.Client``).

Shards are built on the workers by tasks (``shards``), so a lost worker's shard is rebuilt by
its task. A step (``DataParallel.step``) runs the compiled forward and backward on every shard,
each task pinned to the worker holding its shard (shards are never copied between workers),
then sums the shard gradients on the driver in shard order, so the result is bitwise the same
as one process summing the same shards in the same order, and applies the optimizer there.
The next step sends the parameters again: inside the tasks when they are small (no extra
round trip), else scattered once to every worker (one copy per worker, not per task).

What travels is the function exported by ``sg.save`` (its graph, values and generated source)
with a hash of it; each worker process loads it once (``sg.load``: machine code from the
worker's disk cache when it is warm, else compiled) and keeps it by that hash. A Numba
dispatcher is never pickled: it carries no machine code and costs milliseconds a task.

Gradients are summed by the driver rather than by an allreduce among the workers: Dask has no
collective operations, and a fixed summation order is what makes runs reproducible bit for
bit; for the parameter sizes this package compiles, the sum costs little next to a step's
compute (``bench/w8.py`` measures the per-step overhead).

Every wait has a timeout: a lost scheduler, or a step that does not finish, raises
``ConnectionError`` / ``TimeoutError`` instead of hanging.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from . import export
from .autodiff import grad
from .function import Function, function
from .ops import stop_gradient
from .ops import sum as sum_
from .tensor import Parameter, Tensor, placeholder

if TYPE_CHECKING:   # the names in annotations; Dask itself is imported when first needed
    from distributed import Client, Future


__all__ = ["Shards", "shards", "DataParallel", "data_parallel", "map_batches",
           "optimizer_step"]

TIMEOUT = 120.0   # seconds any single wait may take, unless told otherwise
# parameters up to this size travel inside each shard's task; a scatter to every worker first
# costs a round trip through the scheduler (W8, 2 workers: 14 ms of a 105 ms step)
INLINE_BYTES = 1 << 20


def dask():
    """``dask.distributed``, imported when first needed (this module's doctests and the
    workers' side need no Dask)."""
    try:
        import distributed
    except ImportError as err:
        raise ImportError("staticgrad.distributed needs Dask's distributed scheduler: "
                          "pip install 'staticgrad[distributed]'") from err
    return distributed


class Shards:
    """The futures of ``n`` shards built on the workers by ``load(k)``; keep this object
    alive while the shards are in use (a lost shard is rebuilt from its task)."""

    def __init__(self, client: Client, futures: list):
        self.client, self.futures = client, futures

    def __len__(self) -> int:
        return len(self.futures)

    def __repr__(self) -> str:
        return f"<staticgrad.distributed.Shards: {len(self)} on {self.client}>"


def shards(client: Client, load: Callable, n: int, *args) -> Shards:
    """``n`` shards, shard ``k`` made on a worker by ``load(k, *args)``: a tuple (or list) of
    arrays in the order of the function's inputs, or a dict of them by placeholder name."""
    dask()
    futures = [client.submit(load, k, *args, pure=False) for k in range(n)]
    return Shards(client, futures)


# -- on the workers ------------------------------------------------------------------------------
LOADED: dict = {}   # this process's cache: export hash -> (Function, lock), loaded once
LOADING = threading.Lock()


def loaded(blob: bytes, digest: str) -> tuple:
    """The function of an export, loaded once per process (and so compiled at most once)."""
    found = LOADED.get(digest)
    if found is None:
        with LOADING:
            found = LOADED.get(digest)
            if found is None:
                if hashlib.sha256(blob).hexdigest() != digest:
                    raise ValueError("the exported function does not match its hash")
                found = LOADED[digest] = (export.load(blob), threading.Lock())
    return found


def run_shard(blob: bytes, digest: str, k: int, shard, values: list) -> list:
    """One shard's results, computed with the driver's parameter values."""
    f, lock = loaded(blob, digest)
    try:
        if isinstance(shard, dict):
            shard = [shard[p.name] for p in f.inputs]
        with lock:   # the parameters are the function's own: one call at a time sets them
            for p, v in zip(f.parameters, values):
                p.value = v
            out = f(*shard)
        return out if isinstance(out, list) else [out]
    except (TypeError, ValueError, IndexError, KeyError, FloatingPointError) as err:
        raise type(err)(f"shard {k}: {err}") from None
    except Exception as err:   # noqa: BLE001 (any other failure, named by its shard)
        raise RuntimeError(f"shard {k}: {type(err).__name__}: {err}") from None


# -- on the driver -------------------------------------------------------------------------------
class Shipped:
    """A function exported once to the cluster, and the calls that run it on every shard."""

    def __init__(self, f: Function, client: Client, timeout: float):
        self.f, self.client, self.timeout = f, client, timeout
        self.blob = export.dumps(f)
        self.digest = hashlib.sha256(self.blob).hexdigest()
        self.future = None
        # where each shard lives, asked again only when the workers change (3.4 ms a step)
        self.holders: dict | None = None
        self.workers: frozenset = frozenset()

    def run(self, on: Shards) -> list:
        """``f`` on every shard, with the current parameter values: results in shard order."""
        client = on.client
        if client.status != "running":
            raise ConnectionError(f"staticgrad.distributed: the Dask client is {client.status}, "
                                  "not running (the scheduler is gone?)")
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                if self.future is None or self.future.status != "finished":
                    self.future = client.scatter(self.blob, broadcast=True, hash=False,
                                                 timeout=self.timeout)
                values = [p.value for p in self.f.parameters]
                if sum(v.nbytes for v in values) > INLINE_BYTES:
                    values = client.scatter(values, broadcast=True, hash=False,
                                            timeout=self.timeout)
                break
            except (OSError, dask().comm.CommClosedError) as err:
                # a worker that died a moment ago is still on the scheduler's list: try again
                # once it is gone, unless the scheduler itself is gone
                if client.status != "running" or time.monotonic() > deadline:
                    raise ConnectionError(f"staticgrad.distributed: lost the Dask scheduler "
                                          f"({type(err).__name__}: {err})") from err
                time.sleep(0.2)
        return self.wait(on, values)

    def submit(self, on: Shards, k: int, values, holders: dict):
        """Shard ``k``'s task, pinned to the worker holding the shard (none if it is lost
        and being rebuilt)."""
        shard = on.futures[k]
        where = holders.get(shard.key)
        return on.client.submit(run_shard, self.future, self.digest, k, shard, values,
                                workers=list(where[:1]) if where else None, pure=False)

    def wait(self, on: Shards, values) -> list:
        """Every shard's result, in order. A task pinned to a worker that has left is
        submitted again (its shard rebuilt by its task); the whole wait is bounded."""
        client = on.client
        workers = frozenset(client.scheduler_info().get("workers", ()))  # kept by the client
        if self.holders is None or workers != self.workers or \
                any(f.key not in self.holders for f in on.futures):
            self.holders = ask(client, self.timeout, "who_has", keys=[f.key for f in on.futures])
            self.workers = workers
        holders = self.holders
        futures = [self.submit(on, k, values, holders) for k in range(len(on))]
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                dask().wait(futures, timeout=0.5)
                break
            except TimeoutError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"staticgrad.distributed: the shards' tasks did not finish "
                                   f"in {self.timeout} s")
            if client.status != "running":
                raise ConnectionError("staticgrad.distributed: lost the Dask scheduler")
            alive = set(ask(client, self.timeout, "identity", n_workers=-1)["workers"])
            stuck = [k for k, f in enumerate(futures) if f.status == "pending" and
                     any(w not in alive for w in pinned(holders, on.futures[k]))]
            if stuck:
                holders = ask(client, self.timeout, "who_has", keys=[f.key for f in on.futures])
                holders = {key: [w for w in ws if w in alive] for key, ws in holders.items()}
                self.holders = None   # asked again next step, once the shards are rebuilt
                for k in stuck:
                    futures[k].cancel()
                    futures[k] = self.submit(on, k, values, holders)
        for future in futures:
            if future.status == "error":
                future.result()   # re-raises the worker's error ("shard k: ...")
        return client.gather(futures)


def ask(client: Client, timeout: float, method: str, **kwargs):
    """A scheduler call (``who_has``, ``identity``) that gives up after ``timeout`` s."""
    async def call():
        return await getattr(client.scheduler, method)(**kwargs)
    return client.sync(call, callback_timeout=timeout)


def pinned(holders: dict, shard: Future) -> list:
    return list(holders.get(shard.key, ()))[:1]


def optimizer_step(params: Sequence[Parameter], optimizer) -> Function:
    """A compiled function of the gradients (one argument per parameter) that applies the
    optimizer to ``params`` in place: an ``sg.optim`` optimizer object (``sg.optim.Adam(lr=
    1e-3)``), or any callable ``optimizer(loss, params) -> [(parameter, new value), ...]``
    (``sg.optim.sgd`` with its settings bound), which differentiates a loss whose gradient is
    the given one.

    >>> import numpy as np, staticgrad as sg
    >>> import staticgrad.distributed as sgd
    >>> w = sg.parameter(np.array([1.0, 2.0]), name="w")
    >>> step = sgd.optimizer_step([w], sg.optim.SGD(lr=0.5))
    >>> step(np.array([2.0, 2.0])); w.value.tolist()
    []
    [0.0, 1.0]
    """
    grads = [placeholder(p.dims, p.dtype, name=f"grad {p.name or k}")
             for k, p in enumerate(params)]
    if hasattr(optimizer, "updates"):      # an sg.optim optimizer takes the gradients as they are
        return function(grads, [], updates=optimizer.updates(params=list(params), grads=grads))
    terms = [sum_(stop_gradient(g) * p) for g, p in zip(grads, params)]
    surrogate = terms[0]
    for term in terms[1:]:
        surrogate = surrogate + term
    return function(grads, [], updates=optimizer(surrogate, list(params)))


class DataParallel:
    """Synchronous data-parallel training of ``loss`` over ``params`` on the shards of a Dask
    cluster; see ``data_parallel``."""

    def __init__(self, loss: Tensor, params: Sequence[Parameter], inputs: Sequence[Tensor],
                 client: Client, shards: Shards, optimizer: Callable, reduce: str = "sum",
                 timeout: float = TIMEOUT):
        if reduce not in ("sum", "mean"):
            raise ValueError(f"data_parallel: reduce must be 'sum' or 'mean', got {reduce!r}")
        self.params, self.shards, self.reduce = list(params), shards, reduce
        # what the workers run: the loss and its gradients, no update
        self.gradients = function(list(inputs), [loss, *grad(loss, self.params)])
        self.apply = optimizer_step(self.params, optimizer)
        self.shipped = Shipped(self.gradients, client, timeout)
        self.steps = 0

    def step(self) -> float:
        """One step: every shard's loss and gradients, summed in shard order (divided by the
        number of shards for ``reduce="mean"``), then the optimizer's update; returns the
        loss. A failing shard raises its error, naming the shard, and updates nothing."""
        results = self.shipped.run(self.shards)
        loss, grads = accumulate(results)
        if self.reduce == "mean":
            n = len(results)
            loss, grads = loss / n, [(g / n).astype(g.dtype) for g in grads]
        self.apply(*grads)
        self.steps += 1
        return float(loss)


def accumulate(results: list) -> tuple:
    """``(loss, gradients)`` summed over shards, strictly in shard order."""
    loss, *grads = [np.array(v) for v in results[0]]
    for other in results[1:]:
        loss = loss + other[0]
        grads = [g + h for g, h in zip(grads, other[1:])]
    return loss, grads


def data_parallel(loss: Tensor, params: Sequence[Parameter], inputs: Sequence[Tensor],
                  client: Client, shards: Shards, optimizer, reduce: str = "sum",
                  timeout: float = TIMEOUT) -> DataParallel:
    """A trainer: ``trainer.step()`` runs one synchronous data-parallel step of ``loss`` (a
    scalar of the placeholders ``inputs``) over ``shards`` and updates ``params`` on the
    driver with ``optimizer``: an ``sg.optim`` optimizer (``sg.optim.Adam(lr=1e-3)``) or a
    callable ``(loss, params) -> updates``. ``reduce="sum"`` adds the shards' losses
    and gradients (for a loss that sums over rows), ``"mean"`` averages them (a per-shard
    mean over equal shards). ``timeout`` bounds every wait, in seconds.
    """
    return DataParallel(loss, params, inputs, client, shards, optimizer, reduce, timeout)


def map_batches(f: Function, client: Client, shards: Shards,
                timeout: float = TIMEOUT) -> list:
    """``f`` (a compiled function without updates) on every shard, on the worker holding it,
    with the current parameter values: the results in shard order."""
    if f.updates:
        raise ValueError("map_batches: the function has updates, which would change only the "
                         "workers' copies of the parameters; use data_parallel to train")
    if shards.client is not client:
        raise ValueError("map_batches: the shards belong to another client")
    results = Shipped(f, client, timeout).run(shards)
    return [r[0] if f.single else r for r in results]
