"""Why conv2d is im2col + BLAS: staticgrad's conv2d (windows fused into the column buffer, one
GEMM per product) against a direct-loop Numba convolution, forward and backward, 3x3 kernels
with padding 1, float32, on the digits CNN's second layer and on a bigger layer. Prints the best
of 30 calls of each, one after the other in one process.

    python -m bench.conv_strategies
"""

from __future__ import annotations

import time

import numba
import numpy as np

import staticgrad as sg


@numba.njit(fastmath=True, cache=True)
def conv_fwd(x, w, out):
    N, C, H, W = x.shape
    O = w.shape[0]
    out[:] = 0
    for n in range(N):
        for o in range(O):
            for c in range(C):
                for i in range(3):
                    for j in range(3):
                        wv = w[o, c, i, j]
                        for h in range(max(0, 1 - i), min(H, H + 1 - i)):
                            for v in range(max(0, 1 - j), min(W, W + 1 - j)):
                                out[n, o, h, v] += wv * x[n, c, h + i - 1, v + j - 1]

@numba.njit(fastmath=True, cache=True)
def conv_bwd(x, w, g, gx, gw):
    N, C, H, W = x.shape
    O = w.shape[0]
    gx[:] = 0
    gw[:] = 0
    for n in range(N):
        for o in range(O):
            for c in range(C):
                for i in range(3):
                    for j in range(3):
                        wv = w[o, c, i, j]
                        acc = np.float32(0)
                        for h in range(max(0, 1 - i), min(H, H + 1 - i)):
                            for v in range(max(0, 1 - j), min(W, W + 1 - j)):
                                gv = g[n, o, h, v]
                                acc += gv * x[n, c, h + i - 1, v + j - 1]
                                gx[n, c, h + i - 1, v + j - 1] += wv * gv
                        gw[o, c, i, j] += acc

def best(fn, n=30):
    fn()
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return min(ts) * 1e3

def compare(n: int, c: int, size: int, o: int) -> None:
    rng = np.random.default_rng(0)
    x_data = rng.standard_normal((n, c, size, size)).astype(np.float32)
    w_data = rng.standard_normal((o, c, 3, 3)).astype(np.float32)
    g_data = rng.standard_normal((n, o, size, size)).astype(np.float32)
    x, w, g = (sg.placeholder(a.shape, np.float32) for a in (x_data, w_data, g_data))
    y = sg.conv2d(x, w, padding=1)
    f = sg.function([x, w, g], [y, *sg.grad(y, [x, w], grad_outputs=g)])
    out, gx, gw = np.empty_like(g_data), np.empty_like(x_data), np.empty_like(w_data)
    ours = f(x_data, w_data, g_data)
    conv_fwd(x_data, w_data, out)
    conv_bwd(x_data, w_data, g_data, gx, gw)
    for mine, theirs in zip(ours, (out, gx, gw)):   # the same numbers, to float32 sums
        np.testing.assert_allclose(mine, theirs, rtol=1e-3, atol=1e-2)
    t_sg = best(lambda: f.unchecked(x_data, w_data, g_data))
    t_direct = best(lambda: (conv_fwd(x_data, w_data, out),
                             conv_bwd(x_data, w_data, g_data, gx, gw)))
    print(f"x {n}x{c}x{size}x{size}, {o} output channels: im2col + BLAS {t_sg:.2f} ms, "
          f"direct loops {t_direct:.2f} ms ({t_direct / t_sg:.1f}x)")


if __name__ == "__main__":
    for shape in [(64, 16, 8, 32), (32, 16, 32, 32)]:
        compare(*shape)
