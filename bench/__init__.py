"""bench: staticgrad against its peers (NumPy by hand, PyTorch, JAX, PyTensor) and the hardware.

    python -m bench [--quick] [--workload W1,W3] [--systems numpy,torch,staticgrad] [--out DIR]

Modules: ``workloads`` (data, float64 reference, minimal traffic), ``systems/`` (one module per
peer, one builder per workload), ``floor`` (bandwidth and GEMM), ``timing``, ``startup``
(staticgrad's cold and warm start in fresh processes), ``report`` (Markdown, JSON, PNG) and
``run`` (the command line).
"""
