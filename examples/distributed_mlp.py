"""Data-parallel training of a small MLP on a Dask cluster (here a LocalCluster of two
one-thread worker processes on this machine; the same code runs on an SSH, HPC or Kubernetes
cluster given its Client).

Each shard is made on a worker by ``load_shard``; each step runs the compiled forward and
backward on every shard where it lives, sums the gradients on this process in shard order
and applies Adam here. Needs ``pip install -e ".[distributed]"``.

    python examples/distributed_mlp.py
"""

import time

import numpy as np
from dask.distributed import Client, LocalCluster

import staticgrad as sg
import staticgrad.distributed as sgd

SHARDS, ROWS, D_IN, H, CLASSES = 4, 2_000, 20, 32, 3


def load_shard(k: int) -> dict:
    """Shard k of a synthetic classification set, made on the worker that holds it."""
    rng = np.random.default_rng(k)
    x = rng.standard_normal((ROWS, D_IN)).astype(np.float32)
    labels = (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 1).astype(np.int64)
    return {"x": x, "labels": labels}


def main() -> None:
    rng = np.random.default_rng(0)
    x = sg.placeholder((None, D_IN), np.float32, name="x")
    labels = sg.placeholder((None,), np.int64, name="labels")
    w1 = sg.parameter(sg.init.kaiming_uniform((D_IN, H), rng=rng, dtype=np.float32), name="w1")
    w2 = sg.parameter(sg.init.kaiming_uniform((H, CLASSES), rng=rng, dtype=np.float32),
                      name="w2")
    log_p = sg.log_softmax(sg.relu(x @ w1) @ w2, axis=-1)
    loss = -sg.mean(sg.sum(sg.one_hot(labels, CLASSES, np.float32) * log_p, axis=-1))
    accuracy = sg.mean(sg.cast(sg.argmax(log_p, axis=-1) == labels, np.float32))

    with LocalCluster(n_workers=2, threads_per_worker=1, host="127.0.0.1",
                      dashboard_address=None) as cluster, Client(cluster) as client:
        shards = sgd.shards(client, load_shard, SHARDS)
        trainer = sgd.data_parallel(loss, [w1, w2], [x, labels], client, shards,
                                    optimizer=sg.optim.Adam(lr=0.01),
                                    reduce="mean")     # each shard's loss is a mean
        t0 = time.perf_counter()
        for step in range(1, 31):
            value = trainer.step()
            if step % 10 == 0:
                print(f"step {step:3d}  loss {value:.4f}")
        print(f"30 steps on {SHARDS} shards in {time.perf_counter() - t0:.1f} s "
              "(the first compiles on each worker)")
        evaluate = sg.function([x, labels], accuracy)
        scores = sgd.map_batches(evaluate, client, shards)
        print("accuracy per shard:", " ".join(f"{float(s):.3f}" for s in scores))


if __name__ == "__main__":
    main()
