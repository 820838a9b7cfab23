"""The six workloads: their data, their float64 reference, and the least work they need.

Each ``Workload`` makes its inputs (seeded, so every system and every process sees the same
numbers), computes the outputs every system must reproduce with the hand-written NumPy code run
in float64 (``tests/test_bench.py`` checks that code against finite differences), and counts the
minimal bytes moved and GEMM flops, from which ``floor.py`` derives the hardware floor.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from bench.systems import numpy_hand as hand

LEARNING_RATE = 1e-6  # the PyTorch tutorial's
LAYER_NORM_EPS = 1e-5


@dataclass(frozen=True)
class Workload:
    """One benchmark problem, the same for every system."""
    name: str                                    # "W1" ... "W6"
    title: str
    dtype: np.dtype                              # the precision every system computes in
    outputs: tuple[str, ...]                     # what is checked, in the order systems return it
    make_data: Callable[[bool], dict]            # quick -> inputs (NumPy arrays, ``dtype``)
    reference: Callable[[dict], list]            # inputs -> outputs, float64
    traffic: Callable[[dict], tuple[int, int]]   # inputs -> (minimal bytes moved, GEMM flops)
    fixed_calls: bool = False                    # W1: a sample is ``steps`` consecutive steps

    def describe(self, data: dict) -> str:
        shapes = ", ".join(f"{k} {'x'.join(map(str, v.shape)) or 'scalar'}"
                           for k, v in data.items() if isinstance(v, np.ndarray))
        return f"{self.title} ({shapes}; {np.dtype(self.dtype).name})"


def _rng(name: str) -> np.random.Generator:
    # one stream per workload, so selecting workloads does not change any workload's data
    return np.random.default_rng(int(name[1:]) + 2024)


def _f64(data: dict) -> dict:
    return {k: v.astype(np.float64) if v.dtype.kind == "f" else v for k, v in data.items()}


# --- W1: the PyTorch tutorial's two-layer network, one SGD step per call ----------------------

def w1_data(quick: bool) -> dict:
    n, d_in, h, d_out = (8, 50, 10, 3) if quick else (64, 1000, 100, 10)
    rng = _rng("W1")
    f32 = lambda *s: rng.standard_normal(s).astype(np.float32)
    return dict(x=f32(n, d_in), y=f32(n, d_out), w1=f32(d_in, h), w2=f32(h, d_out))


def w1_reference(d: dict) -> list:
    # a training step's visible effect: its loss and how much it moved each weight
    d = _f64(d)
    loss, g1, g2 = hand.mlp_loss_and_grads(d["x"], d["y"], d["w1"], d["w2"])
    return [loss, LEARNING_RATE * g1, LEARNING_RATE * g2]


def w1_traffic(d: dict) -> tuple[int, int]:
    (n, d_in), (h, d_out) = d["x"].shape, d["w2"].shape
    weights = d["w1"].nbytes + d["w2"].nbytes
    # read x, y; read and write both weights. Forward: 2 GEMMs; backward: 3 (no grad for x)
    flops = 2 * n * d_in * h * 2 + 2 * n * h * d_out * 3
    return d["x"].nbytes + d["y"].nbytes + 2 * weights, flops


# --- W2: one fused elementwise expression and its two gradients -----------------------------

def w2_data(quick: bool) -> dict:
    n = 10_000 if quick else 10_000_000
    rng = _rng("W2")
    return dict(x=rng.standard_normal(n).astype(np.float32),
                w=rng.standard_normal(n).astype(np.float32))


def w2_reference(d: dict) -> list:
    d = _f64(d)
    return list(hand.elementwise_loss_and_grads(d["x"], d["w"]))


def w2_traffic(d: dict) -> tuple[int, int]:
    return 4 * d["x"].nbytes, 0  # read x and w, write the two gradients


# --- W3: the autograd tutorial's tiny graph: per-call overhead ------------------------------

def w3_data(quick: bool) -> dict:
    return dict(x=np.array(2.0), w=np.array(1.0))


def w3_reference(d: dict) -> list:
    return [np.float64(v) for v in hand.tiny_graph(d["x"][()], d["w"][()])]


def w3_traffic(d: dict) -> tuple[int, int]:
    return 5 * 8, 0  # two scalars in, three out


# --- W4: Hessian-vector product (second-order reverse mode) ---------------------------------

def w4_data(quick: bool) -> dict:
    n = 100 if quick else 1000
    rng = _rng("W4")
    return dict(x=rng.standard_normal(n), v=rng.standard_normal(n))


def w4_reference(d: dict) -> list:
    return [hand.hessian_vector_product(d["x"], d["v"])]


def w4_traffic(d: dict) -> tuple[int, int]:
    return 3 * d["x"].nbytes, 0  # read x and v, write H v


# --- W5: softmax regression, cross-entropy with integer labels ------------------------------

def w5_data(quick: bool) -> dict:
    n, d, c = (64, 32, 10) if quick else (4096, 512, 10)
    rng = _rng("W5")
    return dict(X=rng.standard_normal((n, d)).astype(np.float32),
                labels=rng.integers(0, c, n).astype(np.int64),
                W=(0.1 * rng.standard_normal((d, c))).astype(np.float32),
                b=(0.1 * rng.standard_normal(c)).astype(np.float32))


def w5_reference(d: dict) -> list:
    d = _f64(d)
    return list(hand.softmax_regression(d["X"], d["labels"], d["W"], d["b"]))


def w5_traffic(d: dict) -> tuple[int, int]:
    (n, dim), c = d["X"].shape, d["W"].shape[1]
    small = 2 * (d["W"].nbytes + d["b"].nbytes)  # read the weights, write their gradients
    return d["X"].nbytes + d["labels"].nbytes + small, 2 * n * dim * c * 2  # X@W and X.T@dz


# --- W6: layer norm over the last axis, loss = sum(y * R) -----------------------------------

def w6_data(quick: bool) -> dict:
    n, d = (32, 64) if quick else (8192, 1024)
    rng = _rng("W6")
    f32 = lambda *s: rng.standard_normal(s).astype(np.float32)
    return dict(x=f32(n, d), gamma=(1.0 + 0.1 * f32(d)), beta=0.1 * f32(d), R=f32(n, d))


def w6_reference(d: dict) -> list:
    d = _f64(d)
    return list(hand.layer_norm(d["x"], d["gamma"], d["beta"], d["R"], LAYER_NORM_EPS))


def w6_traffic(d: dict) -> tuple[int, int]:
    # read x and R, write dx (a row fits in cache, so one pass suffices); gamma/beta are small
    return 3 * d["x"].nbytes + 4 * d["gamma"].nbytes, 0


# --- W9: the digits CNN of examples/digits_cnn.py: loss and gradients of a training step -----

def w9_data(quick: bool) -> dict:
    n = 8 if quick else 64
    rng = _rng("W9")

    def uniform(bound, *shape):   # PyTorch's default initialization for these layers
        return rng.uniform(-bound, bound, shape).astype(np.float32)

    return dict(x=rng.uniform(0, 1, (n, 1, 8, 8)).astype(np.float32),
                labels=rng.integers(0, 10, n).astype(np.int64),
                w1=uniform(1 / 3, 16, 1, 3, 3), b1=uniform(1 / 3, 16),
                w2=uniform(1 / 12, 32, 16, 3, 3), b2=uniform(1 / 12, 32),
                w3=uniform(512 ** -0.5, 10, 512), b3=uniform(512 ** -0.5, 10))


def w9_reference(d: dict) -> list:
    d = _f64(d)
    return list(hand.digits_cnn(*(d[k] for k in hand.CNN_INPUTS)))


def w9_traffic(d: dict) -> tuple[int, int]:
    n = d["x"].shape[0]
    params = sum(d[k].nbytes for k in ("w1", "b1", "w2", "b2", "w3", "b3"))
    positions = n * 8 * 8
    conv1, conv2, linear = 2 * positions * 16 * 9, 2 * positions * 32 * 144, 2 * n * 512 * 10
    # forward; backward: weight gradients of all three, input gradients of conv2 and linear
    flops = (conv1 + conv2 + linear) + (conv1 + 2 * conv2 + 2 * linear)
    return d["x"].nbytes + d["labels"].nbytes + 2 * params, flops


WORKLOADS: dict[str, Workload] = {w.name: w for w in [
    Workload("W1", "two-layer MLP training step (PyTorch tutorial), SGD update inside",
             np.dtype(np.float32), ("loss", "w1 step", "w2 step"),
             w1_data, w1_reference, w1_traffic, fixed_calls=True),
    Workload("W2", "sum(tanh(x*w + 1)**2 * exp(-x*x)), grads wrt x, w",
             np.dtype(np.float32), ("loss", "grad x", "grad w"),
             w2_data, w2_reference, w2_traffic),
    Workload("W3", "tiny graph y = (x+w)*(w+1), grads wrt x, w",
             np.dtype(np.float64), ("y", "grad x", "grad w"),
             w3_data, w3_reference, w3_traffic),
    Workload("W4", "Hessian-vector product of sum(sin(x) * x**3)",
             np.dtype(np.float64), ("H v",),
             w4_data, w4_reference, w4_traffic),
    Workload("W5", "softmax regression, mean cross-entropy, grads wrt W, b",
             np.dtype(np.float32), ("loss", "grad W", "grad b"),
             w5_data, w5_reference, w5_traffic),
    Workload("W6", "layer norm over the last axis, loss sum(y * R), grads wrt x, gamma, beta",
             np.dtype(np.float32), ("loss", "grad x", "grad gamma", "grad beta"),
             w6_data, w6_reference, w6_traffic),
    Workload("W9", "digits CNN (conv 3x3 x2, max pool, linear; batch 64 of 1x8x8), "
             "cross-entropy, grads wrt its 6 parameters",
             np.dtype(np.float32), ("loss", "grad w1", "grad b1", "grad w2", "grad b2",
                                    "grad w3", "grad b3"),
             w9_data, w9_reference, w9_traffic),
]}

# largest error, relative to the largest reference magnitude, that still counts as correct:
# float32 sums over millions of terms legitimately drift by ~1e-4
TOLERANCE = {np.dtype(np.float32): 1e-3, np.dtype(np.float64): 1e-9}


def compare(workload: Workload, outputs: list, reference: list) -> tuple[bool, list[dict]]:
    """Each output against the reference: ``(all ok, [{name, error, tol, ok}, ...])``."""
    tol = TOLERANCE[workload.dtype]
    if len(outputs) != len(reference):
        return False, [dict(name="outputs", error=f"got {len(outputs)} outputs, "
                            f"expected {len(reference)}", tol=tol, ok=False)]
    report = []
    for name, got, ref in zip(workload.outputs, outputs, reference):
        got, ref = np.asarray(got, dtype=np.float64), np.asarray(ref, dtype=np.float64)
        if got.shape != ref.shape:
            report.append(dict(name=name, error=f"shape {got.shape}, expected {ref.shape}",
                               tol=tol, ok=False))
            continue
        scale = max(float(np.max(np.abs(ref), initial=0.0)), np.finfo(np.float64).tiny)
        error = float(np.max(np.abs(got - ref), initial=0.0)) / scale
        ok = bool(np.isfinite(got).all()) and error <= tol  # NaN fails even where ref is NaN
        report.append(dict(name=name, error=error, tol=tol, ok=ok))
    return all(r["ok"] for r in report), report
