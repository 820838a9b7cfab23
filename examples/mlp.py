"""The two-layer network from PyTorch's "Learning PyTorch with Examples", define-then-run.

PyTorch builds the graph again on every step and differentiates it with loss.backward().
Here the forward pass, the gradients and the SGD update are one graph, compiled once into a
single function; each step is one call.

    python examples/mlp.py
"""

import time

import numpy as np

import staticgrad as sg

N, D_in, H, D_out = 64, 1000, 100, 10
learning_rate = 1e-6
rng = np.random.default_rng(0)
x_data = rng.standard_normal((N, D_in))
y_data = rng.standard_normal((N, D_out))

# 1. define: placeholders are fed at each call, parameters keep their values between calls
x = sg.placeholder((None, D_in), name="x")
y = sg.placeholder((None, D_out), name="y")
w1 = sg.parameter(rng.standard_normal((D_in, H)), name="w1")
w2 = sg.parameter(rng.standard_normal((H, D_out)), name="w2")

h_relu = sg.clip(x @ w1, min=0.0)   # PyTorch: h.clamp(min=0)
y_pred = h_relu @ w2
loss = sg.sum((y_pred - y) ** 2)

# 2. differentiate: gradient nodes, not numbers (PyTorch: loss.backward())
grad_w1, grad_w2 = sg.grad(loss, [w1, w2])

# 3. compile once: the step computes the loss and updates both weights in place
step = sg.function([x, y], loss, updates=[(w1, w1 - learning_rate * grad_w1),
                                           (w2, w2 - learning_rate * grad_w2)])

start = time.perf_counter()
for t in range(500):
    value = step(x_data, y_data)
    if t % 100 == 99:
        print(f"step {t + 1:3d}  loss {float(value):.6g}")
elapsed = time.perf_counter() - start
print(f"500 steps in {elapsed:.3f} s ({elapsed / 500 * 1e6:.0f} us per step, first call "
      "included)")
print(f"the step is {len(step.kernels)} fused kernels; print(step.source) shows the code")
