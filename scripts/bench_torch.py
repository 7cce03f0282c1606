#!/usr/bin/python3
"""The bench's top-2 GShard layer in PyTorch, two ways, for `make bench`.

Same layer as `bin/moe bench` (top2_gshard): router softmax(x Wg), top-2,
gates renormalised g_r / (g_1 + g_2 + 1e-9), random second-expert policy
(kept if u < g_2 / 0.2), capacity max(4, min(n, floor(n * 1.25 / e))) per
expert and group filled rank 1 first then rank 2 in token order, GELU
experts y = gelu(x W1) W2 without biases. Two ways to run the experts:

  dense   the first seed's / mesh-tensorflow's one-hot dispatch: combine
          (g, n, e, c) and dispatch = combine > 0, expert inputs
          einsum('gnec,gnd->egcd'), outputs einsum('gnec,egcd->gnd');
  sparse  the routed rows sorted by expert: one index_select, each
          expert's two matmuls on its contiguous slice, one index_add of
          gate * output.

Forward and forward+backward (loss sum(y * dy)) are timed after a warm-up
(median, min, max over the repetitions) on torch.set_num_threads(N).
Useful FLOP/s count, as the C bench does, only the expert products of
the routed rows: 4 rows d h forward, 12 rows d h forward+backward.

Usage: /usr/bin/python3 scripts/bench_torch.py [--shape seed|small|all]
           [--threads N] [--reps R] [--out FILE.json]
Without torch it says so and exits 0 without writing anything.
"""
import argparse
import json
import math
import os
import platform
import statistics
import sys
import time

SHAPES = {"seed": dict(d=512, h=2048, e=16, b=4, n=1024),
          "small": dict(d=128, h=512, e=8, b=32, n=64)}
CF, THRESHOLD, EPS = 1.25, 0.2, 1e-9


def capacity(n, e):
    return max(4, min(n, int(math.floor(n * CF / e))))


def route(torch, x, wg, u, b, n, e):
    """Top-2 with the random policy and capacity: per rank r the expert
    (b, n), the position in its (group, expert) buffer and the gate (0 if
    dropped)."""
    probs = torch.softmax((x @ wg).view(b, n, e), dim=-1)
    top, idx = probs.topk(2, dim=-1)
    denom = top.sum(-1, keepdim=True) + EPS
    gates = top / denom
    keep2 = (u.view(b, n) < gates[..., 1] / THRESHOLD).to(x.dtype)
    c = capacity(n, e)
    out, used = [], 0
    for r in range(2):
        mask = torch.nn.functional.one_hot(idx[..., r], e).to(x.dtype)
        if r == 1:
            mask = mask * keep2.unsqueeze(-1)
        # slot = earlier tokens of that expert, after the kept rank-1 rows
        pos = torch.cumsum(mask, dim=1) - mask + used
        mask = mask * (pos < c).to(x.dtype)
        used = mask.sum(1, keepdim=True)
        p = (pos * mask).sum(-1).long()
        hit = mask.sum(-1)  # 1 if this rank's row was kept, else 0
        out.append((idx[..., r], p, gates[..., r] * hit, hit > 0))
    return out, c


def layer_dense(torch, x, wg, w1, w2, u, s):
    b, n, e, d = s["b"], s["n"], s["e"], s["d"]
    ranks, c = route(torch, x, wg, u, b, n, e)
    combine = x.new_zeros(b, n, e, c)
    for ex, pos, g, kept in ranks:
        oh = (torch.nn.functional.one_hot(ex, e).unsqueeze(-1) *
              torch.nn.functional.one_hot(pos.clamp(max=c - 1), c).unsqueeze(-2))
        combine = combine + oh.to(x.dtype) * (g * kept).view(b, n, 1, 1)
    dispatch = (combine > 0).to(x.dtype)
    xin = torch.einsum("gnec,gnd->egcd", dispatch, x.view(b, n, d)).reshape(e, b * c, d)
    hid = torch.nn.functional.gelu(torch.bmm(xin, w1))
    yout = torch.bmm(hid, w2).view(e, b, c, d)
    y = torch.einsum("gnec,egcd->gnd", combine, yout).reshape(b * n, d)
    return y, int(sum(int(k.sum()) for _, _, _, k in ranks))


def layer_sparse(torch, x, wg, w1, w2, u, s):
    b, n, e = s["b"], s["n"], s["e"]
    ranks, _ = route(torch, x, wg, u, b, n, e)
    ex = torch.cat([r[0].reshape(-1) for r in ranks])
    g = torch.cat([r[2].reshape(-1) for r in ranks])
    kept = torch.cat([r[3].reshape(-1) for r in ranks])
    tok = torch.arange(b * n).repeat(2)
    sel = torch.nonzero(kept).squeeze(1)
    order = sel[torch.argsort(ex[sel], stable=True)]  # rows grouped by expert
    counts = torch.bincount(ex[order], minlength=e).tolist()
    t = tok[order]
    xs = x.index_select(0, t)
    outs, r0 = [], 0
    w1s, w2s = w1.unbind(0), w2.unbind(0)  # one stacked gradient, not e full ones
    for j, c in enumerate(counts):
        if c:
            outs.append(torch.nn.functional.gelu(xs[r0:r0 + c] @ w1s[j]) @ w2s[j])
        r0 += c
    ys = torch.cat(outs) * g[order].unsqueeze(1)
    return torch.zeros_like(x).index_add(0, t, ys), int(order.numel())


def timed(fn, reps, warmup):
    t0 = time.perf_counter()
    while True:
        fn()
        if time.perf_counter() - t0 >= warmup:
            break
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return {"median_s": statistics.median(ts), "min_s": min(ts), "max_s": max(ts),
            "reps": reps}


def bench(torch, shape, method, reps, warmup):
    s = SHAPES[shape]
    gen = torch.Generator().manual_seed(7)
    d, h, e, T = s["d"], s["h"], s["e"], s["b"] * s["n"]
    x = (torch.rand(T, d, generator=gen) * 2 - 1).requires_grad_()
    dy = torch.rand(T, d, generator=gen) * 2 - 1
    u = torch.rand(T, generator=gen)
    wg = (torch.randn(d, e, generator=gen) / math.sqrt(d)).requires_grad_()
    w1 = (torch.randn(e, d, h, generator=gen) / math.sqrt(d)).requires_grad_()
    w2 = (torch.randn(e, h, d, generator=gen) / math.sqrt(h)).requires_grad_()
    layer = layer_dense if method == "dense" else layer_sparse
    info = {}

    def fwd():
        with torch.no_grad():
            info["rows"] = layer(torch, x, wg, w1, w2, u, s)[1]

    def fwdbwd():
        for p in (x, wg, w1, w2):
            p.grad = None
        y, info["rows"] = layer(torch, x, wg, w1, w2, u, s)
        (y * dy).sum().backward()

    f, fb = timed(fwd, reps, warmup), timed(fwdbwd, reps, warmup)
    flop = 4.0 * info["rows"] * d * h
    return {"shape": shape, "method": method, "d": d, "h": h, "experts": e,
            "groups": s["b"], "tokens": s["n"], "rows": info["rows"],
            "forward": f, "forward_backward": fb,
            "gflops": {"forward": flop / f["median_s"] * 1e-9,
                       "forward_backward": 3 * flop / fb["median_s"] * 1e-9}}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shape", choices=["seed", "small", "all"], default="all")
    ap.add_argument("--threads", type=int, default=0, help="0 = all cores")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--warmup", type=float, default=0.2, help="seconds (at least one call)")
    ap.add_argument("--out", help="JSON file (refused if it exists, unless --force)")
    ap.add_argument("--force", action="store_true")
    a = ap.parse_args()
    if a.reps < 1 or a.threads < 0:
        ap.error("--reps must be >= 1 and --threads >= 0")
    try:
        import torch
    except ImportError:
        print("bench_torch.py: PyTorch is not installed (Debian: apt-get install "
              "python3-torch, run with /usr/bin/python3); skipped", file=sys.stderr)
        return 0
    if a.out and not a.force and os.path.exists(a.out):
        print(f"bench_torch.py: {a.out} exists (--force replaces it)", file=sys.stderr)
        return 1
    threads = a.threads or os.cpu_count()
    torch.set_num_threads(threads)
    shapes = ["seed", "small"] if a.shape == "all" else [a.shape]
    res = [bench(torch, sh, m, a.reps, a.warmup) for sh in shapes for m in ("dense", "sparse")]
    doc = {"format": "moe-bench-torch/1", "torch": torch.__version__,
           "python": platform.python_version(), "threads": threads, "reps": a.reps,
           "layer": "top2_gshard, random policy, threshold 0.2, capacity factor 1.25, gelu",
           "results": res}
    for r in res:
        print(f"torch {r['shape']:5s} {r['method']:6s} rows {r['rows']:6d}  forward "
              f"{1e3 * r['forward']['median_s']:9.2f} ms {r['gflops']['forward']:6.1f} GF/s  "
              f"forward+backward {1e3 * r['forward_backward']['median_s']:9.2f} ms "
              f"{r['gflops']['forward_backward']:6.1f} GF/s")
    if a.out:
        with open(a.out + ".tmp", "w") as f:
            json.dump(doc, f, indent=1)
        os.replace(a.out + ".tmp", a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
