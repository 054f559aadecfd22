/* bench_vit.h - `polyak bench vit`: a ViT training step on the CPU backend (bench_vit.c), the
 * Polyak side of bench/vit_speed.sh. Linked into the CLI by tools/. */
#ifndef POLYAK_BENCH_VIT_H
#define POLYAK_BENCH_VIT_H

/* `polyak bench vit --config nano|small [--batch B] [--steps N] [--warmup N] [--threads T]
 * [--profile]`: prints the step times as one JSON line (and the per-op table on stderr with
 * --profile). Returns a process exit code (0 on success). */
int cmd_bench_vit(int argc, char **argv);

#endif
