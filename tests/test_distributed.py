"""``staticgrad.distributed`` on a LocalCluster (loopback, two one-thread worker processes):
steps bitwise equal to one process summing the same shards in the same order, shards never
copied between workers, a worker killed mid-run, a failing shard, a lost scheduler."""

from __future__ import annotations

import os
import signal
import sys
import time

import numpy as np
import pytest

import staticgrad as sg

distributed = pytest.importorskip("distributed", reason="needs dask[distributed] "
                                  "(pip install -e '.[distributed]')")
import cloudpickle  # noqa: E402  (comes with distributed)

import staticgrad.distributed as sgd  # noqa: E402

# the workers cannot import this test module: send its functions by value
cloudpickle.register_pickle_by_value(sys.modules[__name__])

SHARDS, ROWS, FEATURES = 4, 50, 6


def load_shard(k: int, bad: int = -1) -> tuple:
    rng = np.random.default_rng(100 + k)
    x = rng.standard_normal((ROWS, FEATURES + (k == bad))).astype(np.float32)
    y = (x[:, :FEATURES] @ np.arange(1.0, FEATURES + 1) - 2.0).astype(np.float32)
    return x, y


def model(seed: int = 0):
    """A fresh linear model: placeholders, parameters (the same start for a seed), loss."""
    rng = np.random.default_rng(seed)
    x = sg.placeholder((None, FEATURES), np.float32, name="x")
    y = sg.placeholder((None,), np.float32, name="y")
    w = sg.parameter(rng.standard_normal(FEATURES).astype(np.float32) * 0.1, name="w")
    b = sg.parameter(np.zeros((), np.float32), name="b")
    loss = sg.sum((x @ w + b - y) ** 2) * (1.0 / ROWS)
    return [x, y], [w, b], loss


def sgd_opt(loss, params):
    return sg.optim.sgd(loss, params, lr=0.01, momentum=0.5)


def single_process(steps: int, seed: int = 0) -> tuple:
    """The same training in this process: each shard's loss and gradients from the same
    compiled function, summed in shard order, the same optimizer step."""
    inputs, params, loss = model(seed)
    gradients = sg.function(inputs, [loss, *sg.grad(loss, params)])
    apply = sgd.optimizer_step(params, sgd_opt)
    data = [load_shard(k) for k in range(SHARDS)]
    losses = []
    for _ in range(steps):
        total, grads = sgd.accumulate([gradients(*d) for d in data])
        apply(*grads)
        losses.append(float(total))
    return [p.value.copy() for p in params], losses


@pytest.fixture(scope="module")
def client():
    single_process(1)     # compiles here first: the workers then load from the disk cache
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       host="127.0.0.1", dashboard_address=None)
    with distributed.Client(cluster) as c:
        yield c
    cluster.close(timeout=30)


def trainer(client, shards, seed: int = 0):
    inputs, params, loss = model(seed)
    return sgd.data_parallel(loss, params, inputs, client, shards, sgd_opt, timeout=60), params


def test_steps_equal_one_process_summing_in_shard_order(client):
    shards = sgd.shards(client, load_shard, SHARDS)
    train, params = trainer(client, shards)
    losses = [train.step() for _ in range(5)]
    want, want_losses = single_process(5)
    assert losses == want_losses
    for p, v in zip(params, want):
        assert p.value.tobytes() == v.tobytes()
    # every shard is still on exactly one worker: pinned tasks never copied one
    held = client.who_has(shards.futures)
    assert all(len(held[f.key]) == 1 for f in shards.futures), held
    # each worker process loaded the shipped function once, from its warm disk cache (this
    # process compiled the same kernels first): nothing compiled there, no dispatcher shipped
    digest = train.shipped.digest
    loads = client.run(lambda: [f.stats.get("cache") for d, (f, _) in sgd.LOADED.items()
                                if d == digest])
    assert sorted(loads.values()) == [["hit"], ["hit"]], loads


def test_parameters_too_large_to_travel_in_tasks_are_scattered_first(client, monkeypatch):
    # small parameters travel inside each task; past INLINE_BYTES, once to every worker
    monkeypatch.setattr(sgd, "INLINE_BYTES", 0)
    sent = []
    scatter = client.scatter
    monkeypatch.setattr(client, "scatter", lambda data, **kw: sent.append(data) or
                        scatter(data, **kw))
    train, params = trainer(client, sgd.shards(client, load_shard, SHARDS))
    losses = [train.step() for _ in range(3)]
    want, want_losses = single_process(3)
    assert losses == want_losses
    for p, v in zip(params, want):
        assert p.value.tobytes() == v.tobytes()
    assert sum(isinstance(data, list) for data in sent) == 3   # the values, once a step


def test_a_worker_killed_at_step_15_of_40_changes_nothing(client):
    shards = sgd.shards(client, load_shard, SHARDS)
    train, params = trainer(client, shards)
    pids = client.run(os.getpid)
    for step in range(40):
        if step == 15:
            os.kill(next(iter(pids.values())), signal.SIGKILL)
        train.step()
    want, _ = single_process(40)
    for p, v in zip(params, want):
        assert p.value.tobytes() == v.tobytes()
    client.wait_for_workers(2, timeout=60)   # the nanny restarted it, for the next tests


def test_a_failing_shard_names_itself_and_the_placeholder_and_updates_nothing(client):
    shards = sgd.shards(client, load_shard, SHARDS, 2)     # shard 2 has a column too many
    train, params = trainer(client, shards)
    before = [p.value.copy() for p in params]
    with pytest.raises(ValueError, match=r"shard 2: placeholder 'x': axis 1 has size 7, "
                                         r"expected 6"):
        train.step()
    for p, v in zip(params, before):
        np.testing.assert_array_equal(p.value, v)


def test_map_batches_gives_each_shards_results_in_order(client):
    shards = sgd.shards(client, load_shard, SHARDS)
    inputs, params, loss = model(3)
    f = sg.function(inputs, [loss, inputs[1] * 2.0])
    got = sgd.map_batches(f, client, shards)
    for k, (value, doubled) in enumerate(got):
        want = f(*load_shard(k))
        assert value.tobytes() == want[0].tobytes() and np.array_equal(doubled, want[1])
    with pytest.raises(ValueError, match="has updates"):
        sgd.map_batches(sg.function(inputs, loss, updates=sgd_opt(loss, params)), client,
                        shards)


def test_a_lost_scheduler_is_a_clear_error_not_a_hang():
    cluster = distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                       protocol="tcp://", host="127.0.0.1",
                                       dashboard_address=None)
    c = distributed.Client(cluster)
    try:
        shards = sgd.shards(c, load_shard, 2)
        inputs, params, loss = model()
        train = sgd.data_parallel(loss, params, inputs, c, shards, sgd_opt, timeout=10)
        train.step()
        before = [p.value.copy() for p in params]
        cluster.close()
        t0 = time.monotonic()
        with pytest.raises((ConnectionError, TimeoutError), match="staticgrad.distributed"):
            train.step()
        assert time.monotonic() - t0 < 30
        for p, v in zip(params, before):
            np.testing.assert_array_equal(p.value, v)
    finally:
        c.close(timeout=5)
        cluster.close()
