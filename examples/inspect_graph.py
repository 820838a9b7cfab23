"""Look inside: the graph as built, what the rewrites made of it, the fused kernels and the
generated Numba source for a softmax cross-entropy gradient.

    python examples/inspect_graph.py
"""

import numpy as np

import staticgrad as sg

x = sg.placeholder((None, 4), np.float32, name="x")
labels = sg.placeholder((None,), np.int64, name="labels")
w = sg.parameter(np.zeros((4, 3), np.float32), name="w")

logits = x @ w
loss = -sg.mean(
    sg.sum(sg.log_softmax(logits, axis=1) * sg.one_hot(labels, 3, np.float32), axis=1))
gw = sg.grad(loss, w)

print("== the graph as built (forward and backward nodes) ==")
print(sg.graph([loss, gw]))

f = sg.function([x, labels], [loss, gw])
print("\n== after rewrites ==")
print(f.graph)
print("\n== fused kernels ==")
for kernel in f.kernels:
    print(kernel)
print("\n== node counts through the passes ==", f.stats["nodes"])
print("\n== generated source ==")
print(f.source)

loss_val, gw_val = f(np.ones((2, 4), np.float32), np.array([0, 2]))
print("loss", float(loss_val), "(log 3 =", float(np.log(3)), ")")
