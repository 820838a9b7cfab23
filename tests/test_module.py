"""``sg.named_parameters`` and ``sg.Module``: parameters collected from nested Python objects,
named by path, each once, without entering staticgrad's own objects."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

import staticgrad as sg


class Block(sg.Module):
    def __init__(self, n):
        self.norm = {"scale": sg.parameter(np.ones(n)), "shift": sg.parameter(np.zeros(n))}
        self.linears = [SimpleNamespace(w=sg.parameter(np.eye(n), name="w")) for _ in range(2)]

    def forward(self, x):
        for linear in self.linears:
            x = x @ linear.w
        return x * self.norm["scale"] + self.norm["shift"]


def test_paths_follow_attributes_items_and_keys():
    model = SimpleNamespace(blocks=[Block(2), Block(3)], head=(sg.parameter(1.0),))
    assert list(sg.named_parameters(model)) == [
        "blocks.0.norm.scale", "blocks.0.norm.shift", "blocks.0.linears.0.w",
        "blocks.0.linears.1.w", "blocks.1.norm.scale", "blocks.1.norm.shift",
        "blocks.1.linears.0.w", "blocks.1.linears.1.w", "head.0"]
    assert list(sg.named_parameters(model.blocks[0], prefix="first")) == [
        "first.norm.scale", "first.norm.shift", "first.linears.0.w", "first.linears.1.w"]


def test_a_shared_parameter_and_a_cycle_are_visited_once():
    shared = sg.parameter(np.ones(2), name="shared")
    a = SimpleNamespace(w=shared)
    b = SimpleNamespace(w=shared, partner=a)
    a.partner = b                              # a cycle
    assert sg.named_parameters({"a": a, "b": b}) == {"a.w": shared}


def test_placeholders_functions_and_optimizers_are_not_entered():
    w = sg.parameter(np.ones(2), name="w")
    x = sg.placeholder((2,), name="x")
    opt = sg.optim.Adam(lr=0.1)
    loss = sg.sum(w * x)
    step = sg.function([x], loss, updates=opt.updates(loss, [w]), backend="numpy")
    model = SimpleNamespace(w=w, x=x, step=step, opt=opt, helper=np.sum, data=np.ones(3))
    assert sg.named_parameters(model) == {"w": w}       # not the optimizer's moments


def test_a_lone_parameter_is_named_by_its_name():
    w = sg.parameter(np.ones(2), name="w")
    assert sg.named_parameters(w) == {"w": w}
    assert list(sg.named_parameters([sg.parameter(1.0), sg.parameter(2.0)])) == ["0", "1"]


def test_module_methods_and_call():
    block = Block(2)
    assert block.parameters() == list(block.named_parameters().values())
    assert len(block.parameters()) == 4
    x = sg.placeholder((None, 2), name="x")
    f = sg.function([x], block(x), backend="numpy")
    assert f(np.array([[1.0, 2.0]])).tolist() == [[1.0, 2.0]]
