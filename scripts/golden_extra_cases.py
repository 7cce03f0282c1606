"""Extra golden cases for every family at shapes, seeds and settings the
shipped files do not cover. Used with the oracle's driver:

    /usr/bin/python3 ../shared/oracle/gen_golden.py tests/golden/extra \
        --cases scripts/golden_extra_cases.py

The output (tests/golden/extra/*.h5) is data and is committed, so tests
never need torch."""

SEED = 7000


def cases():
    relu, gelu, geglu = "relu", "gelu", "geglu"
    g2 = dict(family="top2_gshard", balance_coef=3e-2, activation=gelu)
    tn = dict(family="topn_stmoe", balance_coef=2e-2, z_coef=5e-3)
    sw = dict(family="switch_top1", balance_coef=1e-2, z_coef=1e-2)
    ec = dict(family="expert_choice", activation=gelu)
    return [
        dict(g2, name="x_top2_b1_e16_random", b=1, n=96, d=20, e=16, h=24,
             policy="random", threshold=0.5, capacity_factor=1.5),
        dict(g2, name="x_top2_geglu_bias_threshold", b=3, n=33, d=12, e=5, h=10,
             policy="threshold", threshold=0.35, capacity_factor=0.75,
             activation=geglu, bias=True),
        dict(g2, name="x_top2_all_tiny_cf", b=2, n=50, d=8, e=2, h=8,
             policy="all", threshold=0.2, capacity_factor=0.1, activation=relu),
        dict(tn, name="x_top4_e16", b=2, n=40, d=10, e=16, h=12, top_n=4,
             thresholds=[0.3, 0.2, 0.1], capacity_factor=1.0, activation=gelu),
        dict(tn, name="x_top3_bpr_bias", b=3, n=30, d=9, e=6, h=11, top_n=3,
             thresholds=[0.25, 0.05], capacity_factor=0.6, activation=relu,
             bias=True, priority="bpr"),
        dict(sw, name="x_switch_b4_e12", b=4, n=25, d=7, e=12, h=9,
             capacity_factor=1.25, activation=geglu, bias=True),
        dict(sw, name="x_switch_bpr_cf03", b=1, n=128, d=6, e=3, h=8,
             capacity_factor=0.3, activation=gelu, priority="bpr"),
        dict(ec, name="x_ec_cf05_bias", b=2, n=30, d=9, e=6, h=10,
             capacity_factor=0.5, bias=True),
        dict(ec, name="x_ec_geglu_cf3", b=1, n=17, d=5, e=4, h=6,
             capacity_factor=3.0, activation=geglu),
        # the other families
        dict(family="noisy_topk", name="x_noisy_k3_e12_gelu", T=80, d=10, e=12, h=14,
             k=3, noisy=True, train=True, noise_epsilon=5e-2, w_importance=0.3,
             w_load=0.05, activation=gelu),
        dict(family="noisy_topk", name="x_noisy_k1_train", T=50, d=6, e=5, h=8,
             k=1, noisy=True, train=True, noise_epsilon=0.0, w_importance=0.0,
             w_load=0.2, activation=relu),
        dict(family="soft_moe", name="x_soft_s3_geglu", b=3, n=10, d=7, e=3, s=3, h=9,
             normalize=True, scale=0.7, activation=geglu),
        dict(family="soft_moe", name="x_soft_b1_plain_relu", b=1, n=33, d=6, e=5, s=2,
             h=7, normalize=False, scale=1.0, activation=relu),
        dict(family="dense_softmax", name="x_dense_e6_gelu", b=3, n=5, d=6, e=6, h=10,
             g=9, activation=gelu),
        dict(family="hierarchical", name="x_hier_none_e3x4", b=1, n=60, d=9, eo=3, ei=4,
             h=10, policy="none", threshold=0.2, capacity_factor=2.0,
             balance_coef=5e-2, activation=gelu),
        dict(family="hierarchical", name="x_hier_random_cf1", b=3, n=40, d=8, eo=2,
             ei=3, h=8, policy="random", threshold=0.5, capacity_factor=1.0,
             balance_coef=1e-2, activation=relu),
    ]
