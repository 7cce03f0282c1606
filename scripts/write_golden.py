#!/usr/bin/env python3
"""Write your own MoE layer's tensors as a `moe-golden/1` file, so that
`bin/moe check FILE.h5` replays each case through libmoe and says, decision
by decision, whether your layer computes what this library computes.

Needs python3, numpy and h5py (Debian: apt-get install python3-h5py);
torch tensors are accepted as they are (detached and moved to the CPU).
The format is the one of tests/golden/ (lib/golden/README.md and the
spec of every family, ../shared/golden/README.md): one group per case,

  /<case>/  attrs: family, the family's settings, b n d e h (or T ...), seed
    input/x, input/dy      x [b, n, d] ([T, d] for noisy_topk, topk_dropless);
                           dy: the upstream gradient of y, same shape
    param/<name>           w_gate [d, e], w1 [e, d, h], w2 [e, h, d], ...
    noise/<name>           the random draws the layer consumed (u, z)
    output/y, output/aux_loss, output/<loss>   (balance_loss, z_loss, ...)
    route/<name>           decisions (expert, position, token: int32) and
                           gates / logits (float64); attrs e.g. capacity
    grad/x, grad/<param>   d L / d(.) for L = sum(y * dy) + aux_loss
    tolerance/             attrs output/<k>, grad/<k>: the largest relative
                           error ||got - ref|| / ||ref|| bin/moe check allows

Floats are stored as float64 and decisions as int32, whatever you pass;
run your layer in float64 if you can (float32 adds its own rounding to
the comparison). Default tolerances are the format's floors, 1e-5 for
outputs and 1e-4 for gradients; `reference32=` (the same case run in
float32) sets each to 100 x your float32 error when that is larger, as
the shipped files do; `tolerance=` overrides any key.

    from write_golden import write_golden
    write_golden("mine.h5", {"my_case": {
        "family": "top2_gshard",
        "attrs": {"policy": "all", "threshold": 0.2, "capacity_factor": 2.0,
                  "balance_coef": 0.01, "activation": "relu"},
        "input": {"x": x, "dy": dy},
        "param": {"w_gate": w_gate, "w1": w1, "w2": w2},
        "output": {"y": y, "aux_loss": aux, "balance_loss": bal},
        "route": {"expert": expert, "position": position, "gate": gate,
                  "logits": logits},
        "route_attrs": {"capacity": capacity},
        "grad": {"x": x.grad, "w_gate": w_gate.grad, "w1": w1.grad, "w2": w2.grad},
    }})

b, n, d, e, h (T for flat inputs; eo, ei, g, s, k, top_n where they
apply) are read from the tensors' shapes when not given. A missing tensor
or setting, a shape that does not fit, or a non-finite value is refused
with a ValueError naming the case and the key. examples/user_top2.py is a
whole example. Command line:

    python3 scripts/write_golden.py --copy IN.h5 OUT.h5 [--case NAME]

reads the cases of a moe-golden/1 file back into the dictionaries above
(dropping the settings that shapes give) and writes them again: a
round-trip check of this writer (make test runs it on tests/golden/).
"""
import os
import sys
import tempfile

import numpy as np

FORMAT = "moe-golden/1"
FLOOR = {"output": 1e-5, "grad": 1e-4}
GROUPS = ("input", "param", "noise", "output", "route", "grad")
INT_ROUTES = ("expert", "position", "token")  # decisions, compared exactly
# Settings of each family (../shared/golden/README.md) that shapes do not give.
SETTINGS = {
    "top2_gshard": ("policy", "threshold", "capacity_factor", "balance_coef", "activation"),
    "topn_stmoe": ("thresholds", "capacity_factor", "balance_coef", "z_coef", "activation"),
    "switch_top1": ("capacity_factor", "balance_coef", "z_coef", "activation"),
    "expert_choice": ("capacity_factor", "activation"),
    "noisy_topk": ("noisy", "train", "noise_epsilon", "w_importance", "w_load", "activation"),
    "topk_dropless": ("activation", "renormalize", "balance_coef", "z_coef"),
    "soft_moe": ("normalize", "activation"),
    "dense_softmax": ("activation",),
    "hierarchical": ("policy", "threshold", "capacity_factor", "balance_coef", "activation"),
}
FLAT = ("noisy_topk", "topk_dropless")  # x is [T, d]


def is_decision(key):
    """route/<key> holds decisions (int32, compared exactly): expert,
    position, token, also under route/outer/ and route/inner/."""
    return key.split("/")[-1] in INT_ROUTES


def as_array(v, where):
    """numpy array of a numpy / torch / Python value (torch: detached, CPU)."""
    if hasattr(v, "detach"):
        v = v.detach().cpu().numpy()
    a = np.asarray(v)
    if a.dtype == object or a.dtype.kind not in "biuf":
        raise ValueError(f"{where}: not a numeric tensor (dtype {a.dtype})")
    return a


def shapes_give(family, t):
    """The sizes the tensors' shapes give (b, n, d or T, d; e, h, ...)."""
    got = {}
    x = t["input"]["x"]
    if x.ndim == 2:
        got["T"], got["d"] = x.shape
    elif x.ndim == 3:
        got["b"], got["n"], got["d"] = x.shape
    p = t["param"]
    if family == "hierarchical":
        got["eo"] = p["w_gate_outer"].shape[1]
        got["ei"] = p["w_gate_inner"].shape[2]
    elif family == "soft_moe":
        got["e"], got["s"] = p["phi"].shape[1:]
    elif family == "dense_softmax":
        got["g"], got["e"] = p["g_w2"].shape
    elif "w_gate" in p:
        got["e"] = p["w_gate"].shape[1]
    if "w2" in p:
        got["h"] = p["w2"].shape[-2]
    if x.ndim == 2 and "expert" in t["route"]:
        got["k"] = t["route"]["expert"].shape[0]
    if family == "topn_stmoe" and "expert" in t["route"]:
        got["top_n"] = t["route"]["expert"].shape[0]
    return got


def check_case(name, family, t, attrs):
    """Refuses what bin/moe check could not use, naming the case and key."""
    where = f"case {name}"
    if not isinstance(family, str) or not family:
        raise ValueError(f"{where}: 'family' must name the routing family (e.g. {', '.join(SETTINGS)})")
    for k in ("x", "dy"):
        if k not in t["input"]:
            raise ValueError(f"{where}: input/{k} missing")
    x = t["input"]["x"]
    if x.ndim not in (2, 3) or (family in SETTINGS and x.ndim != (2 if family in FLAT else 3)):
        raise ValueError(f"{where}: input/x has shape {x.shape}, "
                         f"{'[T, d]' if family in FLAT else '[b, n, d]'} expected")
    for g, k in (("output", "y"), ("output", "aux_loss"), ("grad", "x")):
        if k not in t[g]:
            raise ValueError(f"{where}: {g}/{k} missing")
    for k, ref in (("input/dy", x), ("output/y", x), ("grad/x", x)):
        g, kk = k.split("/")
        if t[g][kk].shape != ref.shape:
            raise ValueError(f"{where}: {k} has shape {t[g][kk].shape}, input/x's {x.shape} expected")
    if t["output"]["aux_loss"].size != 1:
        raise ValueError(f"{where}: output/aux_loss must be a scalar")
    for k, v in t["param"].items():
        if k not in t["grad"]:
            raise ValueError(f"{where}: grad/{k} missing (every param/ needs its gradient)")
        if t["grad"][k].shape != v.shape:
            raise ValueError(f"{where}: grad/{k} has shape {t['grad'][k].shape}, "
                             f"param/{k}'s {v.shape} expected")
    missing = [s for s in SETTINGS.get(family, ()) if s not in attrs]  # other families: bin/moe check says
    if missing:
        raise ValueError(f"{where}: family {family} needs the setting(s) {', '.join(missing)} "
                         f"(../shared/golden/README.md)")
    for g in GROUPS:
        for k, v in t[g].items():
            if v.dtype.kind == "f" and not np.all(np.isfinite(v)):
                raise ValueError(f"{where}: {g}/{k} has non-finite values")
            if g == "route" and is_decision(k) and np.any(v != np.round(v)):
                raise ValueError(f"{where}: route/{k} holds decisions: integers expected")


def rel_err(got, ref):
    got, ref = np.asarray(got, np.float64), np.asarray(ref, np.float64)
    den = np.linalg.norm(ref.ravel())
    return float(np.linalg.norm((got - ref).ravel()) / (den if den > 0 else 1.0))


def tolerances(t, ref32, extra):
    """tolerance/ attrs: the floors, 100 x the float32 error when larger, overrides."""
    tol = {}
    for g in ("output", "route", "grad"):
        for k, v in t[g].items():
            if g == "route" and is_decision(k):
                continue
            key = ("output" if g == "route" else g) + "/" + k
            floor = FLOOR["grad" if g == "grad" else "output"]
            tol[key] = floor
            if ref32 is not None and k in ref32.get(g, {}):
                tol[key] = max(floor, 100.0 * rel_err(as_array(ref32[g][k], key), v))
    tol.update({k: float(v) for k, v in (extra or {}).items()})
    return tol


def put_attr(obj, k, v):
    """int -> int64, float -> float64, str -> fixed-length ASCII, sequences -> arrays."""
    if isinstance(v, str):
        obj.attrs[k] = np.bytes_(v.encode("ascii"))
    elif isinstance(v, (bool, np.bool_)):
        obj.attrs[k] = np.int64(int(v))
    else:
        a = as_array(v, f"attribute {k}")
        obj.attrs[k] = a.astype(np.int64 if a.dtype.kind in "biu" else np.float64)


def write_case(f, name, case):
    family = case["family"]
    t = {g: {k: as_array(v, f"case {name}: {g}/{k}") for k, v in (case.get(g) or {}).items()}
         for g in GROUPS}
    attrs = dict(case.get("attrs") or {})
    check_case(name, family, t, attrs)
    for k, v in shapes_give(family, t).items():
        if k in attrs and int(attrs[k]) != int(v):
            raise ValueError(f"case {name}: attribute {k} = {attrs[k]} but the tensors give {v}")
        attrs.setdefault(k, int(v))
    attrs.setdefault("seed", 0)
    grp = f.create_group(name)
    put_attr(grp, "family", family)
    for k, v in attrs.items():
        put_attr(grp, k, v)
    for g in GROUPS:
        for k, v in t[g].items():
            int_route = g == "route" and is_decision(k)
            grp.create_dataset(f"{g}/{k}", data=v.astype(np.int32 if int_route else np.float64))
    for k, v in (case.get("route_attrs") or {}).items():  # "capacity", "inner/capacity"
        sub, _, a = ("route/" + k).rpartition("/")
        put_attr(grp.require_group(sub), a, int(v) if np.ndim(v) == 0 else v)
    tg = grp.create_group("tolerance")
    for k, v in tolerances(t, case.get("reference32"), case.get("tolerance")).items():
        tg.attrs[k] = np.float64(v)


def write_golden(path, cases):
    """Writes cases ({name: case dict}, see the module's help) as a new
    moe-golden/1 file at path (replaced if it exists; written to a
    temporary file in the same folder first, renamed when complete)."""
    import h5py
    if not cases:
        raise ValueError("no cases")
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(suffix=".h5", dir=folder)
    os.close(fd)
    try:
        with h5py.File(tmp, "w") as f:
            f.attrs["format"] = np.bytes_(FORMAT.encode("ascii"))
            for name, case in cases.items():
                write_case(f, name, case)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def read_golden(path, only=None):
    """The cases of a moe-golden/1 file as write_golden's dictionaries,
    without the settings the shapes give (b, n, d, e, h, ...)."""
    import h5py
    cases = {}
    with h5py.File(path, "r") as f:
        fmt = f.attrs.get("format", b"")
        if (fmt.decode() if isinstance(fmt, bytes) else str(fmt)) != FORMAT:
            raise ValueError(f"{path}: not a {FORMAT} file")
        for name, grp in f.items():
            if only and name != only:
                continue
            dec = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in grp.attrs.items()}
            family = dec.pop("family")
            c = {"family": family, "attrs": dec}
            for g in GROUPS:
                c[g] = {}
                if g in grp:
                    grp[g].visititems(lambda k, o, g=g, c=c: c[g].__setitem__(k, o[()])
                                      if isinstance(o, h5py.Dataset) else None)
            if "route" in grp:
                ra = {k: v for k, v in grp["route"].attrs.items()}
                grp["route"].visititems(lambda k, o, ra=ra: ra.update(
                    {f"{k}/{a}": v for a, v in o.attrs.items()}) if isinstance(o, h5py.Group) else None)
                c["route_attrs"] = ra
            if "tolerance" in grp:
                c["tolerance"] = {k: float(v) for k, v in grp["tolerance"].attrs.items()}
            given = shapes_give(family, {g: {k: np.asarray(v) for k, v in c[g].items()}
                                         for g in GROUPS})
            for k in given:
                c["attrs"].pop(k, None)
            cases[name] = c
    return cases


def main(argv):
    if len(argv) >= 3 and argv[0] == "--copy":
        only = argv[argv.index("--case") + 1] if "--case" in argv else None
        try:
            cases = read_golden(argv[1], only)
            if not cases:
                raise ValueError(f"{argv[1]}: no case {only}")
            write_golden(argv[2], cases)
        except ImportError as e:
            print(f"write_golden.py: {e} (Debian: apt-get install python3-h5py)", file=sys.stderr)
            return 1
        except (OSError, ValueError, KeyError) as e:
            print(f"write_golden.py: {e}".replace("\n", " "), file=sys.stderr)
            return 1
        print(f"write_golden.py: {len(cases)} case(s) of {argv[1]} written to {argv[2]}")
        return 0
    if argv[:1] in (["-h"], ["--help"]):
        print(__doc__.strip())
        return 0
    print("usage: python3 scripts/write_golden.py --copy IN.h5 OUT.h5 [--case NAME]\n"
          "       (or import write_golden; --help describes the format)", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
