"""PyTorch's first autograd example, define-then-run: y = (x + w) * (w + 1) at x=2, w=1.

PyTorch:  x = torch.tensor(2., requires_grad=True); w = torch.tensor(1., requires_grad=True)
          y = (x + w) * (w + 1); y.backward()  ->  w.grad == 5, x.grad == 2
Here the gradients are graph nodes, compiled with the forward pass into one function.

    python examples/scalar_grad.py
"""

import time

import staticgrad as sg

x = sg.placeholder((), name="x", requires_grad=True)
w = sg.parameter(1.0, name="w")
a = x + w
b = w + 1
y = a * b

dy_dw, dy_dx = sg.grad(y, [w, x])
f = sg.function([x], [y, dy_dw, dy_dx])

y_val, gw, gx = f(2.0)
print(f"y = {float(y_val)}, dy/dw = {float(gw)}, dy/dx = {float(gx)}")
print(f"is_leaf: x {x.is_leaf}, w {w.is_leaf}, a {a.is_leaf}, y {y.is_leaf}")
print(f"grad_fn: x {x.grad_fn}, a {a.grad_fn}, y {y.grad_fn}")

calls = 20000
start = time.perf_counter()
for _ in range(calls):
    f(2.0)
print(f"{(time.perf_counter() - start) / calls * 1e6:.1f} us per call "
      "(forward and both gradients)")
