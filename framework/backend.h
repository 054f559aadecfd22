/* backend.h - the op interface both backends implement, and the training context.
 *
 * An op is declared once in ops/ops.def: a name, and for each backend a forward and a
 * backward kernel found through one table indexed by op and backend. A kernel receives the
 * node: its inputs, outputs, saved tensors and a small parameter struct. Forward kernels
 * write the outputs; backward kernels ADD into the gradients of the inputs that require them
 * (the autograd engine allocates and zeroes those first). */
#ifndef POLYAK_BACKEND_H
#define POLYAK_BACKEND_H
#include <stdbool.h>
#include <stdint.h>

#include "tensor.h"

#define PK_MAX_IN 8
#define PK_MAX_OUT 3
#define PK_MAX_SAVED 4
#define PK_PARAM_BYTES 192

typedef struct pk_ctx pk_ctx;
typedef struct pk_pool pk_pool;

struct pk_node {
    int op;
    int n_in, n_out;
    tensor *in[PK_MAX_IN];
    tensor *out[PK_MAX_OUT];
    tensor *saved[PK_MAX_SAVED]; /* what forward keeps for backward (e.g. mean/rstd, argmax) */
    _Alignas(8) unsigned char params[PK_PARAM_BYTES];
};

/* The parameter struct of node `n`, as type T. */
#define PK_PARAMS(n, T) ((T *)(void *)(n)->params)

typedef pk_status (*pk_kernel)(pk_ctx *c, pk_node *n);

typedef enum pk_op {
#define PK_OP(NAME, name) PK_OP_##NAME,
#include "ops/ops.def"
#undef PK_OP
    PK_OP_COUNT
} pk_op;

typedef struct pk_op_def {
    const char *name;
    pk_kernel forward[PK_BACKEND_COUNT];
    pk_kernel backward[PK_BACKEND_COUNT]; /* NULL: the op is not differentiable */
} pk_op_def;

/* Returns the definition of op `op`. */
const pk_op_def *pk_op_get(pk_op op);

/* The training context: one device, its arenas, the tape and the step's bookkeeping. */
struct pk_ctx {
    pk_device *dev;
    pk_backend backend;
    pk_pool *pool; /* CPU backend worker threads (also used for host-side work) */
    void *vk;      /* vkctx* on the Vulkan backend */
    pk_arena *params, *grads, *state, *teachers; /* persistent */
    pk_arena *step;                              /* activations: reset every step */
    bool grad_enabled;
    bool training; /* dropout active, batchnorm uses batch statistics */
    uint64_t seed; /* dropout: counter-based RNG, same masks on every backend */
    uint64_t rng_counter;
    bool poison;
    /* names of parameters, owned by the context (see pk_ctx_name) */
    char **names;
    int nnames, names_cap;
    /* the tape */
    pk_node **tape;
    int tape_len, tape_cap;
    struct pk_node_slab *nodes;
    /* synchronised batch norm (data parallel, tasks/common/dist.h): when set, batch norms in
     * training sum their per-channel statistics over every rank with it (n doubles, in place,
     * the same on every rank), so they normalise over the global batch; CPU backend only.
     * NULL: the statistics of this process's batch. */
    pk_status (*bn_allreduce)(void *user, double *x, int64_t n);
    void *bn_allreduce_user;
    /* kernel seconds per op: [op][0] forward and [op][1] backward wall time, [op][2] forward
     * and [op][3] backward process CPU time (all threads); NULL unless pk_ctx_time_ops */
    double (*op_seconds)[4];
};

/* Options for pk_ctx_create; zero gives the defaults. */
typedef struct pk_ctx_options {
    const char *device; /* device spec, see pk_device_open; NULL = default */
    uint64_t seed;
    int threads; /* CPU backend threads; 0 = all cores */
    bool poison; /* fill the step arena with NaN at every step start (tests: unwritten outputs show)
                  */
} pk_ctx_options;

/* Creates a context: opens the device and creates the persistent and step arenas. */
pk_status pk_ctx_create(const pk_ctx_options *opt, pk_ctx **out);

/* Destroys the context, its arenas and its device; accepts NULL. */
void pk_ctx_destroy(pk_ctx *c);

/* Starts (on) or stops (off) adding each kernel's wall and process CPU time into
 * c->op_seconds, zeroed when switched on. On Vulkan a kernel only records work, so the times
 * there are recording times. */
pk_status pk_ctx_time_ops(pk_ctx *c, bool on);

/* Starts a step: waits for the device, clears the tape, resets the step arena. */
pk_status pk_step_begin(pk_ctx *c);

/* Starts a step without waiting for the device: clears the tape and resets the step arena.
 * On Vulkan, work already recorded or submitted that still uses the old activations is
 * ordered before the new step's writes by barriers (the tracker carries accesses across
 * submissions), so a training step can chain several of these (MAN's local modules) in one
 * recording and end with pk_device_submit. */
pk_status pk_step_reset(pk_ctx *c);

/* Creates a node for `op` with the given inputs and parameter struct (copied). */
pk_node *pk_node_new(pk_ctx *c, pk_op op, tensor *const *in, int n_in, const void *params,
                     size_t params_size);

/* Runs the node's forward kernel on the context's backend; records it on the tape when
 * gradients are enabled and an input requires them. Outputs must be set by the caller. */
pk_status pk_node_run(pk_ctx *c, pk_node *n);

/* Records a node whose forward needs no kernel (views such as reshape) on the tape. */
pk_status pk_node_record(pk_ctx *c, pk_node *n);

/* Returns a copy of "prefix.suffix" that lives as long as the context (parameter names). */
const char *pk_ctx_name(pk_ctx *c, const char *prefix, const char *suffix);

/* Returns the CPU worker pool of the context. */
pk_pool *pk_ctx_pool(pk_ctx *c);

#endif
