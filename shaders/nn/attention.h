/* attention.h - push constants of nn/attention.comp (forward) and nn/attention_back.comp (dq and
 * :kv), the fused attention op of pk_attention_params (framework/ops/ops.h). For batch b, head h:
 * q_i = q[off_q + (b Tq + i) q_rs + h d + c], k_j, v_j likewise with Tk, k_rs, v_rs (offsets
 * already include the column of head 0); out and dO (B, Tq, H dv) contiguous; lse and dsum
 * (B, H, Tq); the mask is mask[off_m + b m_bs + i m_rs + j m_cs] when flags & ATT_MASK.
 * Work groups take ATT_R rows each. Bindings, all three shaders: 0 q, 1 k, 2 v, 3 mask, 4 out, 5
 * lse; the backward also 6 dO, 7 dq, 8 dk, 9 dv, 10 dsum (D_i = dO_i . O_i, written by the dq pass,
 * read by :kv). */
#ifndef POLYAK_NN_ATTENTION_H
#define POLYAK_NN_ATTENTION_H
#include "common/pc.h"
#define ATT_MASK 1u
#define ATT_WANT_Q 2u
#define ATT_WANT_K 4u
#define ATT_WANT_V 8u
/* dk and dv are the same elements (k and v one tensor, e.g. self-attention on x, x, x): the :kv
 * pass adds both through gk. Bindings are assumed not to alias (SPIR-V without Aliased), so
 * two read-modify-writes of one element through gk and gv could be reordered. */
#define ATT_KV_SAME 16u
/* Rows (query rows, or key rows in the :kv pass) per work group: one per vec4 component, so
 * each element of k, v (or q, dO) read from memory serves four rows. */
#define ATT_R 4u
/* The largest head size (d and dv) the shaders hold in shared memory and registers. */
#define ATT_MAX_D 256u
PK_PC_BEGIN(pc_attention)
PC_U32 off_q;
PC_U32 off_k;
PC_U32 off_v;
PC_U32 off_m;
PC_U32 off_o;
PC_U32 off_lse;
PC_U32 off_go;
PC_U32 off_gq;
PC_U32 off_gk;
PC_U32 off_gv;
PC_U32 off_dsum;
PC_U32 q_rs;
PC_U32 k_rs;
PC_U32 v_rs;
PC_U32 b;
PC_U32 tq;
PC_U32 tk;
PC_U32 heads;
PC_U32 d;
PC_U32 dv;
PC_U32 m_bs;
PC_U32 m_rs;
PC_U32 m_cs;
PC_U32 flags; /* ATT_* bits */
PC_F32 scale;
PK_PC_END(pc_attention)
#endif
