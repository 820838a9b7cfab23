"""JAX: each workload is one ``jax.jit`` function of ``value_and_grad`` (XLA fuses it).

Inputs are placed on the device once; a call blocks until its results are ready, since JAX
dispatches asynchronously and would otherwise be timed returning futures. float64 is switched
on for W3/W4; float32 inputs stay float32 (Python scalars are weakly typed).
"""

from __future__ import annotations

import os

import numpy as np

from bench.systems import Runner
from bench.workloads import LAYER_NORM_EPS, LEARNING_RATE


def setup() -> dict:
    os.environ.setdefault("JAX_PLATFORMS", "cpu")  # skip probing for accelerators
    import jax
    import jaxlib
    jax.config.update("jax_enable_x64", True)
    return {"version": jax.__version__, "jaxlib": jaxlib.__version__,
            "devices": [str(d) for d in jax.devices()],
            "XLA_FLAGS": os.environ.get("XLA_FLAGS") or "(unset: XLA sizes its pool to the cores)"}


def arrays(d: dict, *names: str) -> list:
    import jax
    return [jax.device_put(d[n]) for n in names]


def jitted(f, args: list) -> Runner:
    import jax
    call = lambda: jax.block_until_ready(f(*args))
    return Runner(call, lambda: [np.asarray(o) for o in jax.tree_util.tree_leaves(call())])


def w1(d: dict) -> Runner:
    import jax
    import jax.numpy as jnp

    def loss_fn(w1, w2, x, y):
        y_pred = jnp.maximum(x @ w1, 0) @ w2
        return jnp.sum((y_pred - y) ** 2)

    def step(w1, w2, x, y):
        loss, (g1, g2) = jax.value_and_grad(loss_fn, argnums=(0, 1))(w1, w2, x, y)
        return loss, w1 - LEARNING_RATE * g1, w2 - LEARNING_RATE * g2

    # donating the weights lets XLA update them in place, as the other systems do
    step = jax.jit(step, donate_argnums=(0, 1))
    x, y, w1, w2 = arrays(d, "x", "y", "w1", "w2")
    state = [w1, w2]

    def call():
        loss, state[0], state[1] = jax.block_until_ready(step(state[0], state[1], x, y))
        return loss

    def check() -> list:
        before = [np.asarray(w, dtype=np.float64) for w in state]
        loss = call()
        return [np.asarray(loss)] + [b - np.asarray(w) for b, w in zip(before, state)]

    return Runner(call, check)


def w2(d: dict) -> Runner:
    import jax
    import jax.numpy as jnp
    f = lambda x, w: jnp.sum(jnp.tanh(x * w + 1) ** 2 * jnp.exp(-x * x))
    return jitted(jax.jit(jax.value_and_grad(f, argnums=(0, 1))), arrays(d, "x", "w"))


def w3(d: dict) -> Runner:
    import jax
    f = lambda x, w: (x + w) * (w + 1)
    return jitted(jax.jit(jax.value_and_grad(f, argnums=(0, 1))), arrays(d, "x", "w"))


def w4(d: dict) -> Runner:
    import jax
    import jax.numpy as jnp
    g = jax.grad(lambda x: jnp.sum(jnp.sin(x) * x ** 3))
    hvp = lambda x, v: jax.jvp(g, (x,), (v,))[1]   # forward over reverse, as JAX recommends
    return jitted(jax.jit(hvp), arrays(d, "x", "v"))


def w5(d: dict) -> Runner:
    import jax
    import jax.numpy as jnp

    def loss_fn(W, b, X, labels):
        log_p = jax.nn.log_softmax(X @ W + b, axis=-1)
        return -jnp.mean(jnp.take_along_axis(log_p, labels[:, None], axis=-1))

    f = jax.jit(jax.value_and_grad(loss_fn, argnums=(0, 1)))
    return jitted(f, arrays(d, "W", "b", "X", "labels"))


def w6(d: dict) -> Runner:
    import jax
    import jax.numpy as jnp

    def loss_fn(x, gamma, beta, R):
        mu = jnp.mean(x, axis=-1, keepdims=True)
        var = jnp.mean((x - mu) ** 2, axis=-1, keepdims=True)
        y = (x - mu) / jnp.sqrt(var + LAYER_NORM_EPS) * gamma + beta
        return jnp.sum(y * R)

    f = jax.jit(jax.value_and_grad(loss_fn, argnums=(0, 1, 2)))
    return jitted(f, arrays(d, "x", "gamma", "beta", "R"))


def w9(d: dict) -> Runner:
    import jax
    import jax.numpy as jnp
    from jax import lax

    def conv(x, w, b):
        out = lax.conv_general_dilated(x, w, (1, 1), ((1, 1), (1, 1)),
                                       dimension_numbers=("NCHW", "OIHW", "NCHW"))
        return out + b[:, None, None]

    def loss_fn(w1, b1, w2, b2, w3, b3, x, labels):
        h = jax.nn.relu(conv(x, w1, b1))
        h = jax.nn.relu(conv(h, w2, b2))
        h = lax.reduce_window(h, -jnp.inf, lax.max, (1, 1, 2, 2), (1, 1, 2, 2), "VALID")
        log_p = jax.nn.log_softmax(h.reshape(h.shape[0], -1) @ w3.T + b3, axis=-1)
        return -jnp.mean(jnp.take_along_axis(log_p, labels[:, None], axis=-1))

    f = jax.jit(jax.value_and_grad(loss_fn, argnums=(0, 1, 2, 3, 4, 5)))
    return jitted(f, arrays(d, "w1", "b1", "w2", "b2", "w3", "b3", "x", "labels"))


BUILDERS = {"W1": w1, "W2": w2, "W3": w3, "W4": w4, "W5": w5, "W6": w6, "W9": w9}
