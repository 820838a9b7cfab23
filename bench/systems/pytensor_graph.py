"""PyTensor: a define-then-run peer; ``pytensor.function`` rewrites the graph and compiles it.

``mode`` selects the backend: ``None`` is PyTensor's default (the Numba linker since
PyTensor 3), ``"NUMBA"`` asks for Numba explicitly and ``"CVM"`` is the C backend. Constants are
float32 NumPy scalars because PyTensor turns a Python float into a float64 constant, which
would upcast the float32 graphs.
"""

from __future__ import annotations

import numpy as np

from bench.systems import Runner, Skipped
from bench.workloads import LAYER_NORM_EPS, LEARNING_RATE


def linker_name(mode) -> str:
    from pytensor.compile.mode import get_mode
    return type(get_mode(mode).linker).__name__


def setup(mode) -> dict:
    import warnings

    import pytensor
    default = linker_name(None)
    if mode == "NUMBA" and default == linker_name("NUMBA"):
        raise Skipped(f"PyTensor's default mode already uses {default}: see the default row")
    # a pip-installed PyTensor finds no BLAS to link its C code to and says so at length;
    # the fact is recorded below instead (it matters for the C mode's matmuls)
    warnings.filterwarnings("ignore", message="PyTensor could not link to a BLAS")
    return {"version": pytensor.__version__, "mode": mode or "default",
            "linker": linker_name(mode), "floatX": pytensor.config.floatX,
            "blas_ldflags": pytensor.config.blas__ldflags or "none (NumPy C-API fallback)"}


def compiled(inputs, outputs, mode, args: list, updates=None):
    import pytensor
    f = pytensor.function(inputs, outputs, mode=mode, updates=updates)
    return f, Runner(lambda: f(*args), lambda: [np.asarray(o) for o in f(*args)])


def w1(d: dict, mode) -> Runner:
    import pytensor
    import pytensor.tensor as pt
    lr = np.float32(LEARNING_RATE)
    x, y = pt.matrix("x", dtype="float32"), pt.matrix("y", dtype="float32")
    w1 = pytensor.shared(d["w1"].copy(), name="w1")
    w2 = pytensor.shared(d["w2"].copy(), name="w2")
    y_pred = pt.maximum(x @ w1, 0) @ w2
    loss = pt.sum((y_pred - y) ** 2)
    g1, g2 = pytensor.grad(loss, [w1, w2])
    f, runner = compiled([x, y], loss, mode, [d["x"], d["y"]],
                         updates=[(w1, w1 - lr * g1), (w2, w2 - lr * g2)])

    def check() -> list:
        before = [w.get_value().astype(np.float64) for w in (w1, w2)]
        loss_value = f(d["x"], d["y"])
        return [np.asarray(loss_value)] + [b - w.get_value() for b, w in zip(before, (w1, w2))]

    runner.check = check
    return runner


def w2(d: dict, mode) -> Runner:
    import pytensor
    import pytensor.tensor as pt
    x, w = pt.vector("x", dtype="float32"), pt.vector("w", dtype="float32")
    loss = pt.sum(pt.tanh(x * w + 1) ** 2 * pt.exp(-x * x))
    return compiled([x, w], [loss, *pytensor.grad(loss, [x, w])], mode, [d["x"], d["w"]])[1]


def w3(d: dict, mode) -> Runner:
    import pytensor
    import pytensor.tensor as pt
    x, w = pt.dscalar("x"), pt.dscalar("w")
    y = (x + w) * (w + 1)
    return compiled([x, w], [y, *pytensor.grad(y, [x, w])], mode, [d["x"], d["w"]])[1]


def w4(d: dict, mode) -> Runner:
    import pytensor
    import pytensor.tensor as pt
    x, v = pt.dvector("x"), pt.dvector("v")
    g = pytensor.grad(pt.sum(pt.sin(x) * x ** 3), x)
    hv = pytensor.grad(pt.sum(g * v), x)   # reverse over reverse
    return compiled([x, v], [hv], mode, [d["x"], d["v"]])[1]


def w5(d: dict, mode) -> Runner:
    import pytensor
    import pytensor.tensor as pt
    from pytensor.tensor.special import log_softmax
    X, labels = pt.matrix("X", dtype="float32"), pt.vector("labels", dtype="int64")
    W, b = pt.matrix("W", dtype="float32"), pt.vector("b", dtype="float32")
    log_p = log_softmax(X @ W + b, axis=-1)
    loss = -pt.mean(log_p[pt.arange(X.shape[0]), labels])
    return compiled([X, labels, W, b], [loss, *pytensor.grad(loss, [W, b])], mode,
                    [d["X"], d["labels"], d["W"], d["b"]])[1]


def w6(d: dict, mode) -> Runner:
    import pytensor
    import pytensor.tensor as pt
    x, R = pt.matrix("x", dtype="float32"), pt.matrix("R", dtype="float32")
    gamma, beta = pt.vector("gamma", dtype="float32"), pt.vector("beta", dtype="float32")
    xc = x - pt.mean(x, axis=-1, keepdims=True)
    var = pt.mean(xc * xc, axis=-1, keepdims=True)
    y = xc / pt.sqrt(var + np.float32(LAYER_NORM_EPS)) * gamma + beta
    loss = pt.sum(y * R)
    grads = pytensor.grad(loss, [x, gamma, beta])
    return compiled([x, gamma, beta, R], [loss, *grads], mode,
                    [d["x"], d["gamma"], d["beta"], d["R"]])[1]


BUILDERS = {"W1": w1, "W2": w2, "W3": w3, "W4": w4, "W5": w5, "W6": w6}
