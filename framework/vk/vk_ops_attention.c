/* vk_ops_attention.c - Vulkan kernels of the fused attention op (pk_attention_params, ops.h;
 * shaders nn/attention.comp and nn/attention_back.comp). The forward is one dispatch (a work
 * group per four query rows, online softmax over key blocks) writing out and the row
 * log-sum-exp; the backward two: dq (a work group per four query rows, which also saves
 * D_i = dO_i . O_i) and :kv (a work group per four key rows). No float atomics: every gradient
 * element has one owner, so runs give the same bits. Semantics and the saved lse are the CPU
 * kernels' (framework/cpu/cpu_attention.c). D lives in the step arena until the step ends. */
#include <assert.h>

#include "nn/attention.h"
#include "vk/vk_ops.h"

static_assert(sizeof(pc_attention) == 100, "pc_attention layout");

/* The push constants both directions share: offsets of q, k, v (at head 0's column), the mask,
 * out and lse; sizes, strides and the mask flag. Fails when a size does not fit the shaders. */
static pk_status att_pc(const pk_node *n, pc_attention *p) {
    const pk_attention_params *ap = PK_PARAMS(n, pk_attention_params);
    if (ap->d > ATT_MAX_D || ap->dv > ATT_MAX_D)
        return pk_error(PK_ERR_UNSUPPORTED,
                        "attention: head sizes d %lld, dv %lld: the Vulkan kernels take at most %u",
                        (long long)ap->d, (long long)ap->dv, ATT_MAX_D);
    const tensor *m = ap->mask_in >= 0 ? n->in[ap->mask_in] : NULL;
    *p = (pc_attention){.off_q = vk_off(n->in[ap->q_in]) + (uint32_t)ap->q_col,
                        .off_k = vk_off(n->in[ap->k_in]) + (uint32_t)ap->k_col,
                        .off_v = vk_off(n->in[ap->v_in]) + (uint32_t)ap->v_col,
                        .off_m = m ? vk_off(m) : 0,
                        .off_o = vk_off(n->out[0]),
                        .off_lse = vk_off(n->saved[0]),
                        .q_rs = (uint32_t)ap->q_rs,
                        .k_rs = (uint32_t)ap->k_rs,
                        .v_rs = (uint32_t)ap->v_rs,
                        .b = (uint32_t)ap->b,
                        .tq = (uint32_t)ap->tq,
                        .tk = (uint32_t)ap->tk,
                        .heads = (uint32_t)ap->heads,
                        .d = (uint32_t)ap->d,
                        .dv = (uint32_t)ap->dv,
                        .m_bs = (uint32_t)ap->m_bs,
                        .m_rs = (uint32_t)ap->m_rs,
                        .m_cs = (uint32_t)ap->m_cs,
                        .flags = m ? ATT_MASK : 0u,
                        .scale = ap->scale};
    return PK_OK;
}

/* Work groups for rows: one per ATT_R of them in each (batch, head). */
static uint64_t att_groups(const pk_attention_params *ap, int64_t rows) {
    return (uint64_t)(ap->b * ap->heads * ((rows + ATT_R - 1) / ATT_R));
}

/* out and lse: one work group per (batch, head, four query rows). */
pk_status vk_attention_forward(pk_ctx *c, pk_node *n) {
    const pk_attention_params *ap = PK_PARAMS(n, pk_attention_params);
    pc_attention p;
    PK_TRY(att_pc(n, &p));
    const tensor *q = n->in[ap->q_in], *m = ap->mask_in >= 0 ? n->in[ap->mask_in] : q;
    vk_binding b[6] = {vk_bind(q), vk_bind(n->in[ap->k_in]), vk_bind(n->in[ap->v_in]),
                       vk_bind(m), vk_bind(n->out[0]),       vk_bind(n->saved[0])};
    return vk_dispatch_groups(c, "nn/attention", 6, b, &p, sizeof p, att_groups(ap, ap->tq));
}

/* Adds into the gradients of q, k and v (never the mask): the dq pass, then the :kv pass. */
pk_status vk_attention_backward(pk_ctx *c, pk_node *n) {
    const pk_attention_params *ap = PK_PARAMS(n, pk_attention_params);
    bool wq = vk_wants_grad(n, ap->q_in), wk = vk_wants_grad(n, ap->k_in),
         wv = vk_wants_grad(n, ap->v_in);
    if (!wq && !wk && !wv) return PK_OK;
    pc_attention p;
    PK_TRY(att_pc(n, &p));
    int64_t rows = ap->b * ap->heads * ap->tq;
    tensor *dsum = tensor_new(c->step, PK_F32, 1, &rows); // D (B, H, Tq)
    if (!dsum)
        return pk_error(PK_ERR_NOMEM, "attention: no step memory for %lld row sums",
                        (long long)rows);
    tensor *go = n->out[0]->grad, *q = n->in[ap->q_in];
    tensor *gq = wq ? q->grad : go, *gk = wk ? n->in[ap->k_in]->grad : go,
           *gv = wv ? n->in[ap->v_in]->grad : go;
    const tensor *m = ap->mask_in >= 0 ? n->in[ap->mask_in] : q;
    p.off_go = vk_off(go);
    p.off_gq = vk_off(gq) + (wq ? (uint32_t)ap->q_col : 0u);
    p.off_gk = vk_off(gk) + (wk ? (uint32_t)ap->k_col : 0u);
    p.off_gv = vk_off(gv) + (wv ? (uint32_t)ap->v_col : 0u);
    p.off_dsum = vk_off(dsum);
    p.flags |= (wq ? ATT_WANT_Q : 0u) | (wk ? ATT_WANT_K : 0u) | (wv ? ATT_WANT_V : 0u);
    if (wk && wv && gk->block == gv->block && p.off_gk == p.off_gv && ap->k_rs == ap->v_rs &&
        ap->d == ap->dv)
        p.flags |= ATT_KV_SAME; // one gradient: the shader adds dk + dv through one binding
    vk_binding b[11] = {vk_bind(q),
                        vk_bind(n->in[ap->k_in]),
                        vk_bind(n->in[ap->v_in]),
                        vk_bind(m),
                        vk_bind(n->out[0]),
                        vk_bind(n->saved[0]),
                        vk_bind(go),
                        vk_bind(gq),
                        vk_bind(gk),
                        vk_bind(gv),
                        vk_bind(dsum)};
    PK_TRY(vk_dispatch_groups(c, "nn/attention_back", 11, b, &p, sizeof p, att_groups(ap, ap->tq)));
    if (!wk && !wv) return PK_OK;
    return vk_dispatch_groups(c, "nn/attention_back:kv", 11, b, &p, sizeof p,
                              att_groups(ap, ap->tk));
}
