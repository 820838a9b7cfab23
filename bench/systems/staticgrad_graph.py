"""staticgrad through its public API only: define the graph, ``sg.grad``, ``sg.function``.

``backend`` is ``"numba"`` (fused, compiled loops) or ``"numpy"`` (the node-by-node reference).
Building a runner builds the graph and compiles it, so the build time is the compile time; the
same builders run in a fresh process (``bench.startup``) to time cold and warm-cache starts.
"""

from __future__ import annotations

import numpy as np

from bench.systems import Runner
from bench.workloads import LAYER_NORM_EPS, LEARNING_RATE


def setup(backend: str) -> dict:
    import staticgrad as sg
    info = {"version": sg.__version__, "backend": backend}
    if backend == "numba":
        import numba

        from staticgrad.backends.numba import pool
        info.update(numba=numba.__version__, threads=pool.size())
    return info


def describe(f) -> dict:
    """What the compiled function says about itself (node and kernel counts, pass stats)."""
    info = {"nodes": len(f.graph.nodes)}
    if f.backend == "numba" and not f.tiered:   # a tiered function's would wait for them
        info["kernels"] = len(f.kernels)
    stats = getattr(f, "stats", None)
    if stats:
        info["stats"] = stats
    return info


def threads_used(f) -> dict:
    """How the timed calls ran (``stats["threads"]``: on threads or one, whichever measured
    faster) and on how many threads, for a function with work enough for threads."""
    ways = set(getattr(f, "stats", {}).get("threads", {}).values())
    if not ways:
        return {}
    from staticgrad.backends.numba import pool
    return {"threads": " / ".join(f"{pool.size()} threads" if way == "threads" else way
                                  for way in sorted(ways, reverse=True))}


def outputs_runner(f, args: list) -> Runner:
    return Runner(lambda: f(*args), lambda: [np.asarray(o) for o in f(*args)], describe(f),
                  after=lambda: threads_used(f))


def w1(d: dict, backend: str) -> Runner:
    import staticgrad as sg
    x = sg.placeholder((None, d["x"].shape[1]), dtype=np.float32, name="x")
    y = sg.placeholder((None, d["y"].shape[1]), dtype=np.float32, name="y")
    w1 = sg.parameter(d["w1"], name="w1")
    w2 = sg.parameter(d["w2"], name="w2")
    y_pred = sg.clip(x @ w1, min=0.0) @ w2
    loss = sg.sum((y_pred - y) ** 2)
    g1, g2 = sg.grad(loss, [w1, w2])
    step = sg.function([x, y], loss, backend=backend,
                       updates=[(w1, w1 - LEARNING_RATE * g1), (w2, w2 - LEARNING_RATE * g2)])
    args = [d["x"], d["y"]]

    def check() -> list:
        before = [w1.value.astype(np.float64), w2.value.astype(np.float64)]
        loss_value = step(*args)
        return [np.asarray(loss_value), before[0] - w1.value, before[1] - w2.value]

    return Runner(lambda: step(*args), check, describe(step), after=lambda: threads_used(step))


def w2(d: dict, backend: str) -> Runner:
    import staticgrad as sg
    x = sg.placeholder((None,), dtype=np.float32, name="x")
    w = sg.placeholder((None,), dtype=np.float32, name="w")
    loss = sg.sum(sg.tanh(x * w + 1) ** 2 * sg.exp(-x * x))
    gx, gw = sg.grad(loss, [x, w])
    return outputs_runner(sg.function([x, w], [loss, gx, gw], backend=backend),
                          [d["x"], d["w"]])


def w3(d: dict, backend: str) -> Runner:
    import staticgrad as sg
    x = sg.placeholder((), name="x")
    w = sg.parameter(d["w"], name="w")
    y = (x + w) * (w + 1)
    gx, gw = sg.grad(y, [x, w])
    return outputs_runner(sg.function([x], [y, gx, gw], backend=backend), [d["x"]])


def w4(d: dict, backend: str) -> Runner:
    import staticgrad as sg
    x = sg.placeholder((None,), name="x")
    v = sg.placeholder((None,), name="v")
    g = sg.grad(sg.sum(sg.sin(x) * x ** 3), x)
    hv = sg.grad(g, x, grad_outputs=v)   # reverse over reverse: d(g . v)/dx
    return outputs_runner(sg.function([x, v], [hv], backend=backend), [d["x"], d["v"]])


def w5(d: dict, backend: str) -> Runner:
    import staticgrad as sg
    n_classes = d["W"].shape[1]
    X = sg.placeholder((None, d["X"].shape[1]), dtype=np.float32, name="X")
    labels = sg.placeholder((None,), dtype=np.int64, name="labels")
    W = sg.parameter(d["W"], name="W")
    b = sg.parameter(d["b"], name="b")
    log_p = sg.log_softmax(X @ W + b, axis=-1)
    picked = sg.sum(sg.one_hot(labels, n_classes, dtype=np.float32) * log_p, axis=-1)
    loss = -sg.mean(picked)
    gW, gb = sg.grad(loss, [W, b])
    return outputs_runner(sg.function([X, labels], [loss, gW, gb], backend=backend),
                          [d["X"], d["labels"]])


def w6(d: dict, backend: str) -> Runner:
    import staticgrad as sg
    dim = d["x"].shape[1]
    x = sg.placeholder((None, dim), dtype=np.float32, name="x")
    R = sg.placeholder((None, dim), dtype=np.float32, name="R")
    gamma = sg.parameter(d["gamma"], name="gamma")
    beta = sg.parameter(d["beta"], name="beta")
    xc = x - sg.mean(x, axis=-1, keepdims=True)
    var = sg.mean(xc * xc, axis=-1, keepdims=True)
    y = xc / sg.sqrt(var + LAYER_NORM_EPS) * gamma + beta
    loss = sg.sum(y * R)
    gx, ggamma, gbeta = sg.grad(loss, [x, gamma, beta])
    return outputs_runner(sg.function([x, R], [loss, gx, ggamma, gbeta], backend=backend),
                          [d["x"], d["R"]])


def w9(d: dict, backend: str) -> Runner:
    import staticgrad as sg
    x = sg.placeholder((None, 1, 8, 8), dtype=np.float32, name="x")
    labels = sg.placeholder((None,), dtype=np.int64, name="labels")
    p = {k: sg.parameter(d[k], name=k) for k in ("w1", "b1", "w2", "b2", "w3", "b3")}
    h = sg.relu(sg.conv2d(x, p["w1"], p["b1"], padding=1))
    h = sg.relu(sg.conv2d(h, p["w2"], p["b2"], padding=1))
    h = sg.max_pool2d(h, 2).reshape(-1, 512)
    loss = sg.cross_entropy(h @ p["w3"].T + p["b3"], labels)
    grads = sg.grad(loss, list(p.values()))
    return outputs_runner(sg.function([x, labels], [loss, *grads], backend=backend),
                          [d["x"], d["labels"]])


BUILDERS = {"W1": w1, "W2": w2, "W3": w3, "W4": w4, "W5": w5, "W6": w6, "W9": w9}
