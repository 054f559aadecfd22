/* pk_test.h - what the test suites share: contexts per backend, random data, normalised
 * error, golden files written by PyTorch, and the op harness (forward, backward, finite
 * differences, backend vs backend). */
#ifndef POLYAK_PK_TEST_H
#define POLYAK_PK_TEST_H
#include <check.h>
#include <stdbool.h>
#include <stdint.h>

#include "backend.h"
#include "ops/ops.h"

/* ---- contexts ---- */

/* Creates a context on "cpu" or a Vulkan spec ("vk:llvmpipe"); fails the test on error. */
pk_ctx *pkt_ctx(const char *device);

/* True when a Vulkan device exists (tests that need one skip otherwise). */
bool pkt_have_vulkan(void);

/* Destroys a Vulkan or CPU context and fails the test if validation reported messages. */
void pkt_ctx_done(pk_ctx *c);

/* Runs a Check suite; returns the process exit code (0 pass, 1 fail). */
int pkt_run_suite(Suite *s);

/* ---- data ---- */

/* Deterministic random generator (splitmix64). */
typedef struct pkt_rng {
    uint64_t s;
} pkt_rng;

/* Uniform float in [lo, hi). */
float pkt_uniform(pkt_rng *r, float lo, float hi);

/* Fills n floats uniformly in [lo, hi), bounded away from zero by |x| >= 0.05 when lo < 0 < hi
 * would allow it (never zeros). */
void pkt_fill_uniform(pkt_rng *r, float *x, int64_t n, float lo, float hi);

/* ||a - b|| / max(||b||, 1e-12), in double. */
double pkt_nerr(const float *a, const float *b, int64_t n);

/* Creates a parameter tensor (requires grad) holding `data`. */
tensor *pkt_param(pk_ctx *c, int ndim, const int64_t *shape, const float *data);

/* Creates a non-parameter step tensor holding `data` (dtype f32 or i32). */
tensor *pkt_const(pk_ctx *c, pk_dtype dtype, int ndim, const int64_t *shape, const void *data);

/* Downloads a tensor into a new malloc'd float array (caller frees). */
float *pkt_download(const tensor *t);

/* ---- golden files (tests/golden/make_goldens.py writes them) ---- */

typedef struct pkt_array {
    char name[64];
    int ndim;
    int64_t shape[PK_MAX_DIMS];
    int64_t numel;
    float *data;
} pkt_array;

typedef struct pkt_golden {
    int count;
    pkt_array *arrays;
} pkt_golden;

/* Loads tests/golden/<rel>; fails the test if missing or malformed. */
pkt_golden *pkt_golden_load(const char *rel);

/* Returns the array named `name`; fails the test if absent. */
const pkt_array *pkt_golden_get(const pkt_golden *g, const char *name);

/* Returns the array named `name` or NULL. */
const pkt_array *pkt_golden_find(const pkt_golden *g, const char *name);

/* Frees a golden file; accepts NULL. */
void pkt_golden_free(pkt_golden *g);

/* ---- the op harness ---- */

#define PKT_MAX_INPUTS 8

/* Builds the op under test from its inputs (tensors in the same order as the case's). */
typedef tensor *(*pkt_build_fn)(pk_ctx *c, tensor **in, const void *arg);

typedef struct pkt_input {
    int ndim;
    int64_t shape[PK_MAX_DIMS];
    pk_dtype dtype;    /* PK_F32 inputs get gradients; PK_I32 are indices/labels */
    const float *data; /* f32 data, or i32 data reinterpreted via idata */
    const int32_t *idata;
    bool no_grad; /* f32 input that is not differentiated (e.g. targets) */
} pkt_input;

typedef struct pkt_case {
    const char *name;
    pkt_build_fn build;
    const void *arg;
    int n_in;
    pkt_input in[PKT_MAX_INPUTS];
    const float *upstream; /* d loss / d out; NULL: random */
} pkt_case;

/* Result of one run: the output and every input's gradient, on the host. */
typedef struct pkt_result {
    int64_t out_numel;
    float *out;
    float *grad[PKT_MAX_INPUTS];
    int64_t numel[PKT_MAX_INPUTS];
} pkt_result;

/* Runs the case forward and backward (seeded with upstream) on context c. */
pkt_result pkt_case_run(pk_ctx *c, const pkt_case *k, const float *upstream);

/* Frees a result. */
void pkt_result_free(pkt_result *r);

/* Checks every f32 input's gradient against central finite differences of
 * L = sum(out * upstream) on context c, at up to `samples` elements per input. */
void pkt_check_gradients(pk_ctx *c, const pkt_case *k, int samples, double tol);

/* Checks a case against golden arrays "<prefix>.out" and "<prefix>.grad<i>" (inputs
 * "<prefix>.in<i>" and "<prefix>.up" are read by the caller to build the case). */
void pkt_check_golden(pk_ctx *c, const pkt_case *k, const pkt_golden *g, const char *prefix,
                      double tol);

/* Runs the case on CPU and on the Vulkan context and compares outputs and gradients. */
void pkt_check_backends(pk_ctx *cpu, pk_ctx *vk, const pkt_case *k, double tol);

/* Fills a case from golden arrays "<prefix>.in<i>" (f32; differentiated when
 * "<prefix>.grad<i>" exists) and "<prefix>.idx<i>" (indices stored as floats, made i32). The
 * case keeps pointers into g (and into an internal buffer for indices, freed with g's life). */
void pkt_case_from_golden(const pkt_golden *g, const char *prefix, pkt_build_fn build,
                          const void *arg, pkt_case *out);

/* Tolerances of the op checks. */
typedef struct pkt_tols {
    double golden;  /* normalised error vs PyTorch (CPU) */
    double fd;      /* finite differences (CPU) */
    double backend; /* Vulkan vs CPU */
} pkt_tols;

/* Checks one golden case: on the CPU against PyTorch and finite differences, or (vulkan) on
 * the Vulkan device against the CPU and PyTorch, with zero validation messages. */
void pkt_check_case(const char *golden_file, const char *prefix, pkt_build_fn build,
                    const void *arg, bool vulkan, pkt_tols tol);

#endif
