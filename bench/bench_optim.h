/* bench_optim.h - `polyak bench teacher` and `polyak bench optim`: the fused EMA-teacher and
 * optimizer kernels on 25M parameters in 200 tensors (CPU backend), against memcpy of the
 * same bytes in the same process and against PyTorch CPU (bench/peer_optim.py, run with
 * /usr/bin/python3 when it can import torch). Linked into the CLI by tools/. */
#ifndef POLYAK_BENCH_OPTIM_H
#define POLYAK_BENCH_OPTIM_H

/* `polyak bench teacher [--json FILE] [--params N] [--tensors N] [--runs N] [--no-peer]
 * [--peer SCRIPT]`: prints a table and optionally writes the JSON list of results. Returns a
 * process exit code (0 on success). */
int cmd_bench_teacher(int argc, char **argv);

/* `polyak bench optim ...` (same options): AdamW, SGD, AdamP, SPAM, Stable-SPAM steps. */
int cmd_bench_optim(int argc, char **argv);

#endif
