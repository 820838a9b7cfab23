"""Higher-order gradients: every gradient is a graph, so it can be differentiated again.

PyTorch needs create_graph=True for this; here it is always so.

    python examples/higher_order.py
"""

import numpy as np

import staticgrad as sg

# d/dx x**3 = 3x^2, d2/dx2 = 6x, d3/dx3 = 6
x = sg.placeholder((), name="x")
y = x ** 3
g1 = sg.grad(y, x)
g2 = sg.grad(g1, x)
g3 = sg.grad(g2, x)
f = sg.function([x], [g1, g2, g3])
print("at x = 2:", [float(v) for v in f(2.0)], "(expected 12, 12, 6)")

# a Hessian-vector product of f(v) = sum(sin(v) * v**3): grad of (grad . u)
v = sg.placeholder((None,), name="v")
u = sg.placeholder((None,), name="u")
loss = sg.sum(sg.sin(v) * v ** 3)
hvp = sg.grad(sg.sum(sg.grad(loss, v) * u), v)
hvp_fn = sg.function([v, u], hvp)

rng = np.random.default_rng(0)
v_val, u_val = rng.standard_normal(5), rng.standard_normal(5)
# the Hessian of sum(sin(v) v^3) is diagonal: d2/dv2 = -sin v^3 + 6 cos v^2 + 6 sin v
diag = -np.sin(v_val) * v_val**3 + 6 * np.cos(v_val) * v_val**2 + 6 * np.sin(v_val) * v_val
print("Hessian-vector product matches the closed form:",
      np.allclose(hvp_fn(v_val, u_val), diag * u_val))

# the gradient of one parameter as a function of another: d(loss after one SGD step)/d(lr)
w = sg.parameter(np.array([1.0, -2.0]), name="w")
lr = sg.placeholder((), name="lr")
data = sg.placeholder((2,), name="data")
inner = sg.sum((w - data) ** 2)
w_next = w - lr * sg.grad(inner, w)
outer = sg.sum(w_next ** 2)
d_outer_d_lr = sg.grad(outer, lr)
print("d outer / d lr at lr=0.1:",
      float(sg.function([lr, data], d_outer_d_lr)(0.1, np.array([0.5, 0.5]))))
