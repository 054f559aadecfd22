/* teacher_vk.h - the EMA-teacher updates on the Vulkan backend: ONE dispatch of
 * shaders/teacher/ema.comp (variants multi, segments) per update however many tensors the
 * range holds, with the arithmetic of teacher_kernels.h. Offsets and counts are in float
 * elements (run tables: 32-bit words); blocks are bound whole. The teacher object packs its
 * run table once into its arena (teacher_vk.c's hooks) and reuses it every update. Owns only
 * the host side of the dispatch. */
#ifndef POLYAK_TEACHER_VK_H
#define POLYAK_TEACHER_VK_H
#include <stddef.h>
#include <stdint.h>

#include "device.h"
#include "teacher/teacher_kernels.h"

typedef struct vkctx vkctx;

/* t[t_off + i] = m t + (1 - m) s[s_off + i] for i < n (lerp form, as teacher_ema). */
pk_status teacher_ema_vk(vkctx *ctx, pk_block *t, size_t t_off, pk_block *s, size_t s_off,
                         int64_t n, double m);

/* Two-source update t = m t + w0 s0 + w1 s1 (CTP), as teacher_ema_multi with k = 2. */
pk_status teacher_ema2_vk(vkctx *ctx, pk_block *t, size_t t_off, pk_block *s0, size_t s0_off,
                          pk_block *s1, size_t s1_off, int64_t n, double m, double w0, double w1);

/* Words of the run table teacher_ema_segments_vk reads for `nseg` runs. */
size_t teacher_runs_words(int nseg);

/* Packs a segment list into a run table (sorted by start, prefix-summed; see ema_pc.h) after
 * the same checks as teacher_ema_segments; *total receives the sum of the run lengths. */
pk_status teacher_runs_pack(const pk_teacher_segment *segs, int nseg, uint32_t *words,
                            int64_t *total);

/* The segment-list update over a packed run table at word `runs_off` of block `runs` (one
 * dispatch; copy flags honoured); offsets in the table are relative to t_base / s_base. */
pk_status teacher_ema_segments_vk(vkctx *ctx, pk_block *t, size_t t_base, pk_block *s,
                                  size_t s_base, pk_block *runs, size_t runs_off, int nseg,
                                  int64_t total, double m);

/* The two-source update (t = m t + w0 s0 + w1 s1) over a packed run table, one dispatch; both
 * sources use the run's source offset, from their own bases s0_base and s1_base. */
pk_status teacher_ema2_segments_vk(vkctx *ctx, pk_block *t, size_t t_base, pk_block *s0,
                                   size_t s0_base, pk_block *s1, size_t s1_base, pk_block *runs,
                                   size_t runs_off, int nseg, int64_t total, double m, double w0,
                                   double w1);

/* Exchanges teacher and student values over a packed run table (one dispatch; copy flags
 * ignored: every run is exchanged), bit-exact: teacher_swap on the device. */
pk_status teacher_swap_segments_vk(vkctx *ctx, pk_block *t, size_t t_base, pk_block *s,
                                   size_t s_base, pk_block *runs, size_t runs_off, int nseg,
                                   int64_t total);

#endif
