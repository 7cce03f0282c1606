#!/usr/bin/python3
"""C against PyTorch in one table, and the record of a `make bench` run.

Usage: scripts/bench_table.py C.json [TORCH.json] [--md FILE.md]

Reads the JSON of `bin/moe bench` (moe-bench/2) and, if given and present,
of scripts/bench_torch.py (moe-bench-torch/1); prints, per shape, the C
top2_gshard layer against the dense one-hot and the sparse index PyTorch
versions (forward+backward ms, useful GFLOP/s, C speed-up over each) and
the targets of the benchmark issue; --md also writes them with the date,
machine, OpenBLAS configuration and commit of the C run.
"""
import argparse
import json
import os
import sys

# The targets for C's seed speed-up over each PyTorch method.
SPEEDUP_TARGETS = {"dense": (">= 2.5", lambda x: x >= 2.5),
                   "sparse": ("> 1", lambda x: x > 1.0)}


def targets(c):
    """The issue's targets, each as (what, measured, target, met)."""
    out = []
    row = {(r["shape"], r["family"]): r for r in c["results"]}
    seed, small = row.get(("seed", "top2_gshard")), row.get(("small", "top2_gshard"))
    if seed:
        out.append(("seed top2 fwd+bwd useful / same-run 6-product sgemm limit",
                    seed["ratio"]["forward_backward"], ">= 0.9",
                    seed["ratio"]["forward_backward"] >= 0.9))
        sh = seed["split_s"].get("overhead_share")
        if sh is not None:
            out.append(("seed top2 routing+dispatch+combine share of layer time", sh,
                        "<= 0.10", sh <= 0.10))
    if small:
        out.append(("small top2 fwd+bwd useful / same-run 6-product sgemm limit",
                    small["ratio"]["forward_backward"], ">= 0.7",
                    small["ratio"]["forward_backward"] >= 0.7))
    t = c.get("train")
    if t:
        out.append(("training step MFU (vs N-thread sgemm of the biggest product)",
                    t["mfu"], ">= 0.40", t["mfu"] >= 0.40))
        m = t["memory"]["peak_over_needed"]
        out.append(("training step peak memory / needed bytes", m, "<= 1.5", m <= 1.5))
    return out


def table(c, torch):
    lines = ["| shape | C ms | C GF/s | torch dense ms | GF/s | torch sparse ms | GF/s | "
             "C / dense | C / sparse |", "|---|---|---|---|---|---|---|---|---|"]
    tr = {(r["shape"], r["method"]): r for r in (torch or {}).get("results", [])}
    speedups = []
    for r in c["results"]:
        if r["family"] != "top2_gshard":
            continue
        ms = 1e3 * r["forward_backward"]["median_s"]
        cells = [r["shape"], f"{ms:.2f}", f"{r['gflops']['forward_backward']:.1f}"]
        ups = []
        for m in ("dense", "sparse"):
            t = tr.get((r["shape"], m))
            if not t:
                cells += ["-", "-"]
                ups.append("-")
                continue
            tms = 1e3 * t["forward_backward"]["median_s"]
            cells += [f"{tms:.2f}", f"{t['gflops']['forward_backward']:.1f}"]
            ups.append(f"{tms / ms:.2f}x")
            speedups.append((r["shape"], m, tms / ms))
        lines.append("| " + " | ".join(cells + ups) + " |")
    return lines, speedups


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("c_json")
    ap.add_argument("torch_json", nargs="?")
    ap.add_argument("--md")
    a = ap.parse_args()
    with open(a.c_json) as f:
        c = json.load(f)
    torch = None
    if a.torch_json and os.path.exists(a.torch_json):
        with open(a.torch_json) as f:
            torch = json.load(f)
    lines, speedups = table(c, torch)
    tg = targets(c)
    for shape, m, x in speedups:
        if shape == "seed":
            want, met = SPEEDUP_TARGETS[m]
            tg.append((f"seed top2 fwd+bwd speed-up over PyTorch {m}", x, want, met(x)))
    head = (f"C top2_gshard forward+backward against PyTorch ({torch['torch']}, "
            f"{torch['threads']} threads)" if torch else
            "C top2_gshard forward+backward (no PyTorch results: torch missing or skipped)")
    out = [head, ""] + lines + ["", "| target | measured | wanted | met |", "|---|---|---|---|"]
    out += [f"| {w} | {v:.3f} | {t} | {'yes' if ok else 'NO'} |" for w, v, t, ok in tg]
    print("\n".join(out))
    if a.md:
        m = c["machine"]
        md = [f"# moe bench, {c['date']}", "",
              f"- commit: `{c['git_rev']}`",
              f"- machine: {m['cpu']}, {m['nproc']} cores online, {c['threads']} threads used",
              f"- OpenBLAS: `{c['openblas_config']}`",
              f"- files: `{os.path.basename(a.c_json)}` (bin/moe bench --shape all), "
              f"`{os.path.basename(a.c_json)[:-5]}.txt` (its tables)" +
              (f", `{os.path.basename(a.torch_json)}` (scripts/bench_torch.py)" if torch else ""),
              ""] + out + [""]
        with open(a.md + ".tmp", "w") as f:
            f.write("\n".join(md))
        os.replace(a.md + ".tmp", a.md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
