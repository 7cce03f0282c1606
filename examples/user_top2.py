#!/usr/bin/env python3
"""A user's own top-2 MoE layer in plain PyTorch (GShard top-2, second-expert
policy `all`, ReLU experts), checked against libmoe decision by decision:

    python3 examples/user_top2.py mine.h5           # the layer as GShard has it
    bin/moe check mine.h5                           # PASS
    python3 examples/user_top2.py wrong.h5 --no-renorm
    bin/moe check wrong.h5                          # FAIL: output/y, 0.28 off

It runs the layer in float64 on random inputs, takes every gradient of
L = sum(y * dy) + aux_loss with autograd and hands the tensors to
scripts/write_golden.py. Needs python3-torch and python3-h5py.
"""
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scripts"))
from write_golden import write_golden  # noqa: E402


def top2_layer(x, w_gate, w1, w2, capacity_factor, balance_coef, renorm=True):
    """x [b, n, d] (each row b a group of n tokens); w_gate [d, e], w1 [e, d, h], w2 [e, h, d]."""
    b, n, d = x.shape
    e = w_gate.shape[1]
    logits = x @ w_gate                                          # [b, n, e]
    p = logits.softmax(-1)
    g1, i1 = p.max(-1)                                           # rank 1
    m1 = F.one_hot(i1, e).to(x.dtype)
    g2, i2 = (p * (1 - m1)).max(-1)                              # rank 2: the best other expert
    m2 = F.one_hot(i2, e).to(x.dtype)
    if renorm:                                                   # before any dropping
        g1, g2 = g1 / (g1 + g2 + 1e-9), g2 / (g1 + g2 + 1e-9)
    balance = e * e * (p.mean(1) * m1.mean(1)).mean()            # first choices before dropping
    cap = max(4, min(n, int(n * capacity_factor // e)))
    pos1 = ((m1.cumsum(1) - m1) * m1).sum(-1)                    # slot of rank 1, token order
    pos2 = ((m2.cumsum(1) - m2 + (m1 * (pos1 < cap)[..., None]).sum(1, keepdim=True)) * m2).sum(-1)
    keep1, keep2 = (pos1 < cap).to(x.dtype), (pos2 < cap).to(x.dtype)
    combine = (g1 * keep1)[..., None] * m1 + (g2 * keep2)[..., None] * m2   # [b, n, e]
    out = torch.einsum("bneh,ehd->bned", torch.relu(torch.einsum("bnd,edh->bneh", x, w1)), w2)
    y = torch.einsum("bne,bned->bnd", combine, out)
    route = {"expert": torch.stack([i1, i2]), "gate": torch.stack([g1 * keep1, g2 * keep2]),
             "position": torch.stack([torch.where(keep1 > 0, pos1, -torch.ones_like(pos1)),
                                      torch.where(keep2 > 0, pos2, -torch.ones_like(pos2))]),
             "logits": logits}
    return y, balance_coef * balance, balance, route, cap


def main(argv):
    if not argv or argv[0].startswith("-"):
        print(__doc__, file=sys.stderr)
        return 2
    renorm = "--no-renorm" not in argv
    b, n, d, e, h, cf, coef = 2, 16, 8, 4, 16, 2.0, 0.01
    torch.manual_seed(7)
    x = torch.randn(b, n, d, dtype=torch.float64, requires_grad=True)
    w_gate = torch.randn(d, e, dtype=torch.float64).mul_(d ** -0.5).requires_grad_()
    w1 = torch.randn(e, d, h, dtype=torch.float64).mul_(d ** -0.5).requires_grad_()
    w2 = torch.randn(e, h, d, dtype=torch.float64).mul_(h ** -0.5).requires_grad_()
    dy = torch.randn(b, n, d, dtype=torch.float64)
    y, aux, balance, route, cap = top2_layer(x, w_gate, w1, w2, cf, coef, renorm)
    ((y * dy).sum() + aux).backward()
    write_golden(argv[0], {"user_top2": {
        "family": "top2_gshard",
        "attrs": {"policy": "all", "threshold": 0.2, "capacity_factor": cf,
                  "balance_coef": coef, "activation": "relu", "seed": 7},
        "input": {"x": x, "dy": dy},
        "param": {"w_gate": w_gate, "w1": w1, "w2": w2},
        "output": {"y": y, "aux_loss": aux, "balance_loss": balance},
        "route": route, "route_attrs": {"capacity": cap},
        "grad": {"x": x.grad, "w_gate": w_gate.grad, "w1": w1.grad, "w2": w2.grad},
    }})
    print(f"user_top2.py: wrote {argv[0]} (renormalised gates: {'yes' if renorm else 'no'}); "
          f"now: bin/moe check {argv[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
