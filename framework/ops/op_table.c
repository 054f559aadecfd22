/* op_table.c - the one table of kernels, indexed by op and backend. A kernel a backend does
 * not provide resolves to NULL (weak symbol) and running it is a clear error, not a crash. */
#include "backend.h"

#define PK_OP(NAME, name)                                                                          \
    __attribute__((weak)) pk_status cpu_##name##_forward(pk_ctx *c, pk_node *n);                   \
    __attribute__((weak)) pk_status cpu_##name##_backward(pk_ctx *c, pk_node *n);                  \
    __attribute__((weak)) pk_status vk_##name##_forward(pk_ctx *c, pk_node *n);                    \
    __attribute__((weak)) pk_status vk_##name##_backward(pk_ctx *c, pk_node *n);
#include "ops.def"
#undef PK_OP

static const pk_op_def pk_op_table[PK_OP_COUNT] = {
#define PK_OP(NAME, name)                                                                          \
    [PK_OP_##NAME] = {#name,                                                                       \
                      {cpu_##name##_forward, vk_##name##_forward},                                 \
                      {cpu_##name##_backward, vk_##name##_backward}},
#include "ops.def"
#undef PK_OP
};

const pk_op_def *pk_op_get(pk_op op) { return &pk_op_table[op]; }
