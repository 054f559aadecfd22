#!/usr/bin/python3
"""peer_optim.py - the PyTorch CPU peer for `polyak bench teacher|optim` (bench/bench_optim.c).

Times, on P float32 parameters split into T tensors (sizes as the C side makes them):
  lerp          per-tensor t.lerp_(s, 1 - m)                         (EMA teacher)
  foreach_ema   torch._foreach_mul_(t, m); torch._foreach_add_(t, s, alpha=1 - m)
  foreach_ema2  CTP's two-source EMA: _foreach_mul_ + two _foreach_add_
  adamw         torch.optim.AdamW(foreach=True).step()  (lr 1e-3, wd 1e-2)
  sgd           torch.optim.SGD(momentum=0.9, foreach=True).step()
Prints one JSON object: medians in milliseconds over --runs runs (after 2 warm-up runs).
The C side passes --threads with its own worker count so both sides use the same cores.
Run with /usr/bin/python3 (Debian python3-torch 1.13).
"""
import argparse
import json
import statistics
import time

import torch


def sizes(total, count):
    # the same split as bench_sizes() in bench_optim.c: weights 1..7 cycling
    w = [1 + i % 7 for i in range(count)]
    s = [total * x // sum(w) for x in w]
    s[-1] += total - sum(s)
    return s


def median_ms(fn, runs):
    for _ in range(2):
        fn()
    ts = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(ts)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--params", type=int, default=25_000_000)
    ap.add_argument("--tensors", type=int, default=200)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--only", default="all", choices=["all", "teacher", "optim"])
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    a = ap.parse_args()
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    sz = sizes(a.params, a.tensors)
    out = dict(params=a.params, tensors=a.tensors, runs=a.runs, threads=torch.get_num_threads(),
               torch=torch.__version__)
    with torch.no_grad():
        if a.only in ("all", "teacher"):
            t = [torch.randn(n) for n in sz]
            s = [torch.randn(n) for n in sz]
            m = 0.996

            def lerp():
                for x, y in zip(t, s):
                    x.lerp_(y, 1 - m)

            def foreach():
                torch._foreach_mul_(t, m)
                torch._foreach_add_(t, s, alpha=1 - m)

            out["lerp_ms"] = median_ms(lerp, a.runs)
            out["foreach_ema_ms"] = median_ms(foreach, a.runs)
            s2 = [torch.randn(n) for n in sz]

            def foreach2():
                torch._foreach_mul_(t, 0.9)
                torch._foreach_add_(t, s, alpha=0.05)
                torch._foreach_add_(t, s2, alpha=0.05)

            out["foreach_ema2_ms"] = median_ms(foreach2, a.runs)
            del t, s, s2
    if a.only in ("all", "optim"):
        ps = [torch.nn.Parameter(torch.randn(n)) for n in sz]
        for p in ps:
            p.grad = torch.randn_like(p) * 1e-2
        opt = torch.optim.AdamW(ps, lr=1e-3, weight_decay=1e-2, foreach=True)
        out["adamw_ms"] = median_ms(opt.step, a.runs)
        del opt
        opt = torch.optim.SGD(ps, lr=1e-3, momentum=0.9, foreach=True)
        out["sgd_ms"] = median_ms(opt.step, a.runs)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
