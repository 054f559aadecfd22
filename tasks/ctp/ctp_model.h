/* ctp_model.h - the dual encoder of `polyak ctp` and its losses: ALBEF's contrastive part as
 * CTP builds on it.
 *
 * Image encoder: framework/nn/vit.h's ViT (class token). Text encoder: a pre-norm Transformer
 * with the ViT's block layout (vit_block: norm1, attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2),
 * token and position embeddings, padding masked in attention, the [CLS] token after the final
 * norm. Projections vision_proj / text_proj to `embed` (256), L2-normalised.
 * Losses: the contrastive loss of queries against keys with soft targets (ALBEF's ITA: keys are
 * the momentum features of the batch followed by the queue, targets alpha softmax(momentum
 * similarities) + (1 - alpha) positives), CTP's topology-preservation KL, and the feature queue.
 *
 * Owns: parameters (one block, so a teacher can follow them and a second instance is laid out
 * the same), views of the model over other parameter sets (the momentum teacher's tensors),
 * forwards, losses, the FIFO queue, retrieval recall. Leaves data, schedules and the loop to
 * ctp_run.c. */
#ifndef POLYAK_CTP_MODEL_H
#define POLYAK_CTP_MODEL_H
#include <stdbool.h>

#include "nn/vit.h"
#include "optim/optimizer.h"
#include "teacher/teacher.h"

typedef struct ctp_model_config {
    vit_config vision; /* in_chans 3, num_classes 0 */
    int vocab, txt_dim, txt_depth, txt_heads, max_len;
    int embed; /* projection width (256) */
} ctp_model_config;

typedef struct ctp_text_encoder {
    tensor *tok_embed; /* (V, D) */
    tensor *pos_embed; /* (1, L, D) */
    vit_block *blocks; /* depth */
    nn_layernorm norm;
} ctp_text_encoder;

typedef struct ctp_model {
    ctp_model_config cfg;
    vit *visual;
    ctp_text_encoder text;
    nn_linear vision_proj, text_proj; /* D -> embed, with bias */
    tensor **params;                  /* every parameter, creation order */
    int nparams;
    bool view; /* built by ctp_model_view: owns no vit */
} ctp_model;

/* Creates the model's parameters under `prefix` ("" for none): the ViT with timm's
 * initialisation, the text encoder likewise (trunc_normal .02 embeddings and linears), the
 * projections as PyTorch's Linear. */
pk_status ctp_model_create(pk_ctx *c, const ctp_model_config *cfg, const char *prefix, pk_rng *rng,
                           ctp_model **out);

/* A model that runs with `params` (m->nparams tensors shaped and ordered as m->params), e.g.
 * a teacher's tensors. */
pk_status ctp_model_view(const ctp_model *m, tensor *const *params, ctp_model **out);

/* Frees the bookkeeping; accepts NULL. */
void ctp_model_destroy(ctp_model *m);

/* L2-normalised image embeddings: x (B, 3, S, S) -> (B, embed). */
tensor *ctp_image_embed(pk_ctx *c, const ctp_model *m, tensor *x);

/* L2-normalised text embeddings of ids (B, L) i32 with mask (B, 1, L) f32 (0 for tokens,
 * a large negative for padding, added to the attention logits) -> (B, embed). */
tensor *ctp_text_embed(pk_ctx *c, const ctp_model *m, tensor *ids, tensor *mask);

/* The text encoder's token outputs after the final norm: ids (B, L), mask (B, 1, L) ->
 * (B, L, txt_dim) (ctp_text_embed projects row 0, the [CLS] token, of these). */
tensor *ctp_text_tokens(pk_ctx *c, const ctp_model *m, tensor *ids, tensor *mask);

/* BERT's masked-language-model loss with the decoder tied to the token embedding: the mean
 * cross-entropy of logits = tokens[pos] tok_embed^T against labels; tokens (B, L, D) from
 * ctp_text_tokens, pos (M,) i32 flat indices b * L + l of the masked positions, labels (M,) i32
 * the original ids -> (1,). */
tensor *ctp_mlm_loss(pk_ctx *c, const ctp_model *m, tensor *tokens, tensor *pos, tensor *labels);

/* -mean_rows sum_j targets[i, j] log_softmax(q k^T / temp)[i, j]: q (B, E), k (N, E),
 * targets (B, N) constant rows summing to 1 -> (1,). */
tensor *ctp_contrastive_loss(pk_ctx *c, tensor *q, tensor *k, tensor *targets, float temp);

/* ALBEF's soft targets on the host: targets (B, N) = alpha softmax(qm km^T / temp) +
 * (1 - alpha) pos / rowsum(pos), pos[i, j] = (qid[i] == kid[j]); qm (B, E), km (N, E). */
void ctp_soft_targets(const float *qm, const float *km, const int32_t *qid, const int32_t *kid,
                      int b, int n, int e, float temp, float alpha, float *targets);

/* CTP's topology preservation: (i2t + t2i) / 2 + (i2i + t2t) / 2 of KL(softmax(ref / T) ||
 * softmax(cur / T)) (batchmean) of in-batch similarity matrices, the diagonal masked out of
 * i2i and t2t (the official code's weighting: half the sum of the four, not their mean). img, txt
 * (B, E) current; img_ref, txt_ref (B, E) constants. -> (1,). */
tensor *ctp_topology_loss(pk_ctx *c, tensor *img, tensor *txt, tensor *img_ref, tensor *txt_ref,
                          float temp);

/* ctp_topology_loss with the diagonal mask given: mask (B, B), -1e4 on the diagonal and 0
 * elsewhere (a tensor kept across steps, so nothing is uploaded per step). */
tensor *ctp_topology_loss_masked(pk_ctx *c, tensor *img, tensor *txt, tensor *img_ref,
                                 tensor *txt_ref, tensor *mask, float temp);

/* CTP's compatible momentum update, one fused teacher call: t = 0.9 t + 0.05 current +
 * 0.05 previous (current, previous: tensors laid out as the teacher's students). */
pk_status ctp_compatible_update(pk_teacher *t, tensor *const *current, tensor *const *previous);

/* Learning rate at step `step` (from 0) of a task of `total` steps: CTP's
 * utils.cosine_scheduler without warm-up, min + (lr - min) (1 + cos(pi step / total)) / 2 with
 * min = lr * min_ratio; a linear warm-up (lr (step + 1) / warmup) replaces its first `warmup`
 * steps. */
double ctp_task_lr(int64_t step, int64_t total, double lr, int warmup, double min_ratio);

/* Makes o a new optimizer again (CTP creates a new AdamW at every task start): every state
 * tensor zeroed, the step count 0. */
pk_status ctp_optimizer_reset(pk_optimizer *o);

/* t = the tensors of `src` (laid out as t's students): a fused update with m 0, weight 1. */
pk_status ctp_teacher_copy(pk_teacher *t, tensor *const *src);

/* The momentum features' FIFO queue (ALBEF: 1,024 features per modality, initialised to random
 * unit vectors, the newest batch written at ptr). */
typedef struct ctp_queue {
    int size, dim, ptr;
    float *feat; /* (size, dim) */
    float *ids;  /* (size) caption group of each feature, -1 for the random start */
} ctp_queue;

/* Allocates a queue of random unit vectors drawn from rng. */
pk_status ctp_queue_init(ctp_queue *q, int size, int dim, pk_rng *rng);

/* Writes b features (b, dim) and their ids at ptr (wrapping), advances ptr. */
void ctp_queue_push(ctp_queue *q, const float *feat, const int32_t *ids, int b);

/* Frees the queue's memory. */
void ctp_queue_free(ctp_queue *q);

/* Recall@1/5/10 both ways of a similarity matrix sim (ni images, nt texts); image i's text is
 * img_text[i]; a text is found when any of its images is within the top k. i2t and t2i get 3
 * fractions each. */
void ctp_recall(const float *sim, const int32_t *img_text, int ni, int nt, double i2t[3],
                double t2i[3]);

#endif
