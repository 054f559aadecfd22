/* commands.h - the `polyak` subcommands (one cmd_*.c each). */
#ifndef POLYAK_COMMANDS_H
#define POLYAK_COMMANDS_H

/* polyak devices: lists devices and the chosen one. */
int cmd_devices(int argc, char **argv);

/* polyak mlp: trains a small MLP on Fashion-MNIST and prints the test accuracy. */
int cmd_mlp(int argc, char **argv);

/* polyak man: supervised local learning (E2E, DGL, InfoPro, +MAN) on a CIFAR ResNet. */
int cmd_man(int argc, char **argv);

/* polyak pretrain: DINO / supervised ViT pretraining with k-NN and linear probes. */
int cmd_pretrain(int argc, char **argv);

/* polyak probe: k-NN and linear probe of labelled feature files. */
int cmd_probe(int argc, char **argv);

/* polyak bench ops|...: benchmarks with ratios against a peer. */
int cmd_bench(int argc, char **argv);

/* polyak bench splat: rasterizer and SSIM timings (bench_splat.c). */
int bench_splat(int argc, char **argv);

/* polyak splat render|train: Gaussian splatting (render a 3DGS PLY through a scene's cameras). */
int cmd_splat(int argc, char **argv);

/* polyak splat train: defined in cmd_splat_train.c. */
int cmd_splat_train(int argc, char **argv);

/* polyak splat export: a decoder model baked into a standard 3DGS PLY (cmd_splat_export.c). */
int cmd_splat_export(int argc, char **argv);

/* polyak splat prepare: photos or a video to a COLMAP project (cmd_splat_prepare.c). */
int cmd_splat_prepare(int argc, char **argv);

/* Prints the summary of a preparation (cmd_splat_prepare.c; also used by splat train). */
struct gs_prepare_options;
struct gs_prepare_result;
void splat_prepare_print(const struct gs_prepare_options *o, const struct gs_prepare_result *r);

/* polyak features: final-norm class tokens of a data set under a frozen ViT backbone. */
int cmd_features(int argc, char **argv);

/* polyak report: one self-contained HTML page about one or several run folders. */
int cmd_report(int argc, char **argv);
/* polyak ctp: continual vision-language pretraining (CTP, ablations, SeqF, joint). */
int cmd_ctp(int argc, char **argv);
/* polyak cl: continual-learning benchmarks (tasks/cl) with linear, seqft, LAE, joint. */
int cmd_cl(int argc, char **argv);

#endif
