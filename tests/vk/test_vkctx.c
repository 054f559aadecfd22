/* test_vkctx.c - the Vulkan context on a real driver (lavapipe in CI): listing devices, blocks,
 * uploads and read-backs (mapped and through staging), dispatch of common/selftest against a
 * C reference (bit-exact), the dispatch helper's refusals, many dispatches in one recording,
 * ordering of host writes after recorded reads, the profiler, and no validation messages.
 * Every test opens its own context (Check forks each test). Exits 77 without a Vulkan device. */
#include <check.h>
#include <glob.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/selftest.h"
#include "common/selftest_reflect.h"
#include "vk/vk.h"
#include "vk/vk_internal.h"

_Static_assert(sizeof(pc_selftest) == 16, "pc_selftest must match the GLSL block");
_Static_assert(sizeof(pc_selftest_reflect) == 20, "pc_selftest_reflect must match the GLSL block");

#define SELFTEST "common/selftest"

static uint64_t rng_state;

static uint32_t rng_next(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 32);
}

/* Fresh random floats in [-2, -1/64] U [1/64, 2]: never zero, so every write shows. */
static void fill_random(float *v, size_t n) {
    for (size_t i = 0; i < n; i++) {
        float m = 1.0f / 64 + (float)(rng_next() >> 8) / (float)(1u << 24) * (2.0f - 1.0f / 64);
        v[i] = (rng_next() & 1) ? m : -m;
    }
}

static void seed_rng(void) {
    rng_state = ((uint64_t)time(NULL) << 20) ^ (uint64_t)getpid() ^ 0x9e3779b97f4a7c15ull;
    if (!rng_state) rng_state = 1;
    fprintf(stderr, "test_vkctx: seed %llu\n", (unsigned long long)rng_state);
}

static bool env_validate(void) {
    const char *v = getenv("POLYAK_VALIDATE");
    return v && strcmp(v, "1") == 0;
}

/* Index of llvmpipe if listed (so results are the same on every machine), else 0. */
static int pick_device(void) {
    pk_device_info info[16];
    int n = 0;
    ck_assert_int_eq(vkctx_enumerate(info, 16, &n), PK_OK);
    ck_assert_int_gt(n, 0);
    for (int i = 0; i < n; i++)
        if (strstr(info[i].name, "llvmpipe")) return i;
    return 0;
}

static vkctx *open_ctx(bool profile) {
    seed_rng();
    vkctx *ctx = NULL;
    vkctx_options opt = {.validate = env_validate(), .profile = profile};
    pk_status s = vkctx_create(pick_device(), &opt, &ctx);
    ck_assert_msg(s == PK_OK, "vkctx_create: %s", polyak_error());
    return ctx;
}

static void close_ctx(vkctx *ctx) {
    ck_assert_int_eq(vkctx_validation_errors(ctx), 0);
    vkctx_destroy(ctx);
}

static pk_status run_selftest(vkctx *ctx, pk_block *x, pk_block *y, uint32_t off_x, uint32_t off_y,
                              uint32_t n, float a, uint32_t gx, uint32_t gy) {
    pc_selftest pc = {.off_x = off_x, .off_y = off_y, .n = n, .a = a};
    vk_binding b[2] = {{x, 0, 0}, {y, 0, 0}};
    return vkctx_dispatch(ctx, SELFTEST, 2, b, &pc, sizeof pc, gx, gy, 1);
}

/* y = a * x + y in C, with the same two roundings as the shader's `precise` operations. */
static void selftest_ref(const float *x, float *y, size_t n, float a) {
    for (size_t i = 0; i < n; i++) {
        float prod = a * x[i];
        y[i] = prod + y[i];
    }
}

START_TEST(test_enumerate) {
    int n = -1;
    ck_assert_int_eq(vkctx_enumerate(NULL, 0, &n), PK_OK);
    ck_assert_int_gt(n, 0);
    pk_device_info info[16];
    int m = -1;
    ck_assert_int_eq(vkctx_enumerate(info, 16, &m), PK_OK);
    ck_assert_int_eq(m, n < 16 ? n : 16);
    bool llvmpipe = false;
    for (int i = 0; i < m; i++) {
        ck_assert_int_eq(info[i].backend, PK_BACKEND_VK);
        ck_assert_int_eq(info[i].index, i);
        ck_assert(info[i].name[0] != '\0');
        ck_assert_ptr_nonnull(info[i].type);
        ck_assert_uint_gt(info[i].max_storage_buffer_range, 0);
        ck_assert_uint_gt(info[i].subgroup_size, 0);
        if (strstr(info[i].name, "llvmpipe")) {
            llvmpipe = true;
            ck_assert_str_eq(info[i].type, "cpu");
            ck_assert_uint_gt(info[i].memory, 0);
        }
    }
    /* Mesa's lavapipe is what CI proves shaders on: when its driver is installed it must show */
    glob_t g;
    bool lvp_installed = glob("/usr/share/vulkan/icd.d/lvp_icd*.json", 0, NULL, &g) == 0;
    if (lvp_installed) globfree(&g);
    if (lvp_installed) ck_assert_msg(llvmpipe, "lavapipe is installed but was not listed");
    int one = -1;
    ck_assert_int_eq(vkctx_enumerate(info, 1, &one), PK_OK);
    ck_assert_int_eq(one, 1);
}
END_TEST

/* Uploads random x and y, poisons the rest of y, runs selftest at offsets on a 2-D grid and
 * compares every element of y (inside: the reference; outside: still the poison). */
static void check_offset_dispatch(vkctx *ctx) {
    const uint32_t off_x = 37, off_y = 1029, gx = 3, gy = 2;
    const uint32_t n = gx * gy * 256 - 77; /* the last group is partly idle */
    const size_t nx = off_x + n + 11, ny = off_y + n + 300;
    pk_block x, y;
    ck_assert_msg(vkctx_block_alloc(ctx, nx * 4, &x) == PK_OK, "%s", polyak_error());
    ck_assert_msg(vkctx_block_alloc(ctx, ny * 4, &y) == PK_OK, "%s", polyak_error());
    float *hx = malloc(nx * 4), *hy = malloc(ny * 4), *want = malloc(ny * 4), *got = malloc(ny * 4);
    fill_random(hx, nx);
    const float poison = nanf("");
    for (size_t i = 0; i < ny; i++)
        hy[i] = poison;
    fill_random(hy + off_y, n);
    memcpy(want, hy, ny * 4);
    const float a = 0.8125f + (float)(rng_next() % 1000) / 1024.0f;
    selftest_ref(hx + off_x, want + off_y, n, a);
    ck_assert_int_eq(vkctx_block_write(ctx, &x, 0, hx, nx * 4), PK_OK);
    ck_assert_int_eq(vkctx_block_write(ctx, &y, 0, hy, ny * 4), PK_OK);
    pk_status s = run_selftest(ctx, &x, &y, off_x, off_y, n, a, gx, gy);
    ck_assert_msg(s == PK_OK, "%s", polyak_error());
    for (size_t i = 0; i < ny; i++)
        got[i] = 12345.0f;
    ck_assert_int_eq(vkctx_block_read(ctx, &y, 0, got, ny * 4), PK_OK);
    for (size_t i = 0; i < ny; i++) {
        uint32_t gb, wb;
        memcpy(&gb, &got[i], 4);
        memcpy(&wb, &want[i], 4);
        ck_assert_msg(gb == wb, "y[%zu] = %a, want %a (off_y %u, n %u)", i, got[i], want[i], off_y,
                      n);
    }
    /* a read at an offset returns the same bytes */
    float part[5];
    ck_assert_int_eq(vkctx_block_read(ctx, &y, (off_y + 3) * 4, part, sizeof part), PK_OK);
    ck_assert(memcmp(part, want + off_y + 3, sizeof part) == 0);
    vkctx_block_free(ctx, &x);
    vkctx_block_free(ctx, &y);
    ck_assert_ptr_null(y.impl);
    vkctx_block_free(ctx, &y); /* a zeroed block is accepted */
    free(hx);
    free(hy);
    free(want);
    free(got);
}

START_TEST(test_dispatch_offset_mapped) {
    vkctx *ctx = open_ctx(false);
    const pk_device_info *info = vkctx_info(ctx);
    pk_block probe;
    ck_assert_int_eq(vkctx_block_alloc(ctx, 4096, &probe), PK_OK);
    ck_assert_uint_eq(probe.size, 4096);
    if (strcmp(info->type, "cpu") == 0 || strcmp(info->type, "integrated") == 0)
        ck_assert_ptr_nonnull(probe.host); /* unified memory is mapped */
    vkctx_block_free(ctx, &probe);
    check_offset_dispatch(ctx);
    close_ctx(ctx);
}
END_TEST

START_TEST(test_dispatch_offset_staged) {
    vkctx *ctx = open_ctx(false);
    vkctx_debug_force_staging(ctx, true, 4096); /* many 4 KiB chunks per copy */
    pk_block probe;
    ck_assert_int_eq(vkctx_block_alloc(ctx, 4096, &probe), PK_OK);
    ck_assert_ptr_null(probe.host);
    vkctx_block_free(ctx, &probe);
    check_offset_dispatch(ctx);
    close_ctx(ctx);
}
END_TEST

START_TEST(test_refusals) {
    vkctx *ctx = open_ctx(false);
    pk_block x, y;
    ck_assert_int_eq(vkctx_block_alloc(ctx, 1024, &x), PK_OK);
    ck_assert_int_eq(vkctx_block_alloc(ctx, 1024, &y), PK_OK);
    pc_selftest pc = {.n = 1, .a = 1.0f};
    vk_binding b[2] = {{&x, 0, 0}, {&y, 0, 0}};

    ck_assert_int_eq(vkctx_dispatch(ctx, SELFTEST, 1, b, &pc, sizeof pc, 1, 1, 1), PK_ERR_INVALID);
    ck_assert_msg(strstr(polyak_error(), SELFTEST) && strstr(polyak_error(), "2") &&
                      strstr(polyak_error(), "1"),
                  "message: %s", polyak_error());
    ck_assert_int_eq(vkctx_dispatch(ctx, SELFTEST, 2, b, &pc, 12, 1, 1, 1), PK_ERR_INVALID);
    ck_assert_msg(strstr(polyak_error(), SELFTEST) && strstr(polyak_error(), "16") &&
                      strstr(polyak_error(), "12"),
                  "message: %s", polyak_error());
    ck_assert_int_eq(vkctx_dispatch(ctx, "common/no_such_shader", 2, b, &pc, sizeof pc, 1, 1, 1),
                     PK_ERR_INVALID);
    ck_assert_msg(strstr(polyak_error(), "common/no_such_shader"), "message: %s", polyak_error());
    const pk_device_info *info = vkctx_info(ctx);
    const VkPhysicalDeviceLimits *lim = &ctx->props.limits;
    ck_assert_int_eq(vkctx_dispatch(ctx, SELFTEST, 2, b, &pc, sizeof pc,
                                    lim->maxComputeWorkGroupCount[0] + 1u, 1, 1),
                     PK_ERR_INVALID);
    ck_assert_msg(strstr(polyak_error(), SELFTEST), "message: %s", polyak_error());

    pk_block big;
    ck_assert_int_eq(vkctx_block_alloc(ctx, (size_t)info->max_storage_buffer_range + 1, &big),
                     PK_ERR_INVALID);
    ck_assert_msg(strstr(polyak_error(), "maxStorageBufferRange"), "message: %s", polyak_error());
    ck_assert_ptr_null(big.impl);
    char buf[16];
    ck_assert_int_eq(vkctx_block_read(ctx, &x, 1020, buf, 8), PK_ERR_INVALID);
    ck_assert_int_eq(vkctx_block_write(ctx, &x, 1024, buf, 1), PK_ERR_INVALID);

    /* nothing was recorded by the refused calls: a real dispatch still works afterwards */
    float one = 1.5f, two = 2.25f, out = 0;
    ck_assert_int_eq(vkctx_block_write(ctx, &x, 0, &one, 4), PK_OK);
    ck_assert_int_eq(vkctx_block_write(ctx, &y, 0, &two, 4), PK_OK);
    pc.a = 2.0f;
    ck_assert_int_eq(vkctx_dispatch(ctx, SELFTEST, 2, b, &pc, sizeof pc, 1, 1, 1), PK_OK);
    ck_assert_int_eq(vkctx_block_read(ctx, &y, 0, &out, 4), PK_OK);
    ck_assert(out == 5.25f);
    vkctx_block_free(ctx, &x);
    vkctx_block_free(ctx, &y);
    close_ctx(ctx);
}
END_TEST

/* Thousands of dispatches in one recording: two independent chains (so some dispatches need a
 * barrier and some do not), one sync, compared with the same chains in C. */
static void check_many(vkctx *ctx, int steps) {
    const uint32_t n = 1000;
    pk_block x[2], y[2];
    float *hx[2], *hy[2];
    const float a[2] = {0.5f, -0.375f};
    for (int k = 0; k < 2; k++) {
        ck_assert_int_eq(vkctx_block_alloc(ctx, n * 4, &x[k]), PK_OK);
        ck_assert_int_eq(vkctx_block_alloc(ctx, n * 4, &y[k]), PK_OK);
        hx[k] = malloc(n * 4);
        hy[k] = malloc(n * 4);
        fill_random(hx[k], n);
        fill_random(hy[k], n);
        ck_assert_int_eq(vkctx_block_write(ctx, &x[k], 0, hx[k], n * 4), PK_OK);
        ck_assert_int_eq(vkctx_block_write(ctx, &y[k], 0, hy[k], n * 4), PK_OK);
    }
    for (int s = 0; s < steps; s++)
        for (int k = 0; k < 2; k++) {
            pk_status st = run_selftest(ctx, &x[k], &y[k], 0, 0, n, a[k], (n + 255) / 256, 1);
            ck_assert_msg(st == PK_OK, "%s", polyak_error());
            selftest_ref(hx[k], hy[k], n, a[k]);
        }
    ck_assert_msg(vkctx_sync(ctx) == PK_OK, "%s", polyak_error());
    float *got = malloc(n * 4);
    for (int k = 0; k < 2; k++) {
        ck_assert_int_eq(vkctx_block_read(ctx, &y[k], 0, got, n * 4), PK_OK);
        for (uint32_t i = 0; i < n; i++)
            ck_assert_msg(got[i] == hy[k][i], "chain %d y[%u] = %a, want %a", k, i, got[i],
                          hy[k][i]);
        vkctx_block_free(ctx, &x[k]);
        vkctx_block_free(ctx, &y[k]);
        free(hx[k]);
        free(hy[k]);
    }
    free(got);
}

START_TEST(test_many_dispatches) {
    vkctx *ctx = open_ctx(false);
    check_many(ctx, 1500); /* 3000 dispatches, 3 descriptor pools */
    close_ctx(ctx);
}
END_TEST

/* A host write after a recorded dispatch that reads the old bytes must not change what that
 * dispatch sees; the second dispatch must see the new bytes. */
static void check_write_ordering(vkctx *ctx) {
    const uint32_t n = 512;
    pk_block x, y;
    ck_assert_int_eq(vkctx_block_alloc(ctx, n * 4, &x), PK_OK);
    ck_assert_int_eq(vkctx_block_alloc(ctx, n * 4, &y), PK_OK);
    float *x1 = malloc(n * 4), *x2 = malloc(n * 4), *hy = malloc(n * 4), *got = malloc(n * 4);
    fill_random(x1, n);
    fill_random(x2, n);
    fill_random(hy, n);
    ck_assert_int_eq(vkctx_block_write(ctx, &x, 0, x1, n * 4), PK_OK);
    ck_assert_int_eq(vkctx_block_write(ctx, &y, 0, hy, n * 4), PK_OK);
    ck_assert_int_eq(run_selftest(ctx, &x, &y, 0, 0, n, 1.0f, 2, 1), PK_OK);
    ck_assert_int_eq(vkctx_block_write(ctx, &x, 0, x2, n * 4), PK_OK);
    ck_assert_int_eq(run_selftest(ctx, &x, &y, 0, 0, n, 3.0f, 2, 1), PK_OK);
    selftest_ref(x1, hy, n, 1.0f);
    selftest_ref(x2, hy, n, 3.0f);
    ck_assert_int_eq(vkctx_block_read(ctx, &y, 0, got, n * 4), PK_OK);
    for (uint32_t i = 0; i < n; i++)
        ck_assert_msg(got[i] == hy[i], "y[%u] = %a, want %a", i, got[i], hy[i]);
    vkctx_block_free(ctx, &x);
    vkctx_block_free(ctx, &y);
    free(x1);
    free(x2);
    free(hy);
    free(got);
}

START_TEST(test_write_ordering) {
    vkctx *ctx = open_ctx(false);
    check_write_ordering(ctx);
    vkctx_debug_force_staging(ctx, true, 1024);
    check_write_ordering(ctx);
    check_many(ctx, 20); /* staged uploads interleaved in one recording */
    close_ctx(ctx);
}
END_TEST

START_TEST(test_profile) {
    vkctx *ctx = open_ctx(true);
    check_many(ctx, 5); /* 10 selftest dispatches */
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    ck_assert_ptr_nonnull(f);
    vkctx_profile_report(ctx, f);
    fclose(f);
    ck_assert_msg(strstr(text, SELFTEST) != NULL, "profile table:\n%s", text);
    ck_assert_msg(strstr(text, " 10 ") != NULL, "profile table lacks the count 10:\n%s", text);
    free(text);
    close_ctx(ctx);
}
END_TEST

/* The zero-message checks elsewhere mean something only if a real mistake is counted. */
START_TEST(test_validation_counts) {
    if (!env_validate()) return;
    vkctx *ctx = open_ctx(false);
    ck_assert_int_eq(vkctx_validation_errors(ctx), 0);
    VkBufferCreateInfo bad = {.sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO,
                              .size = 0, /* VUID-VkBufferCreateInfo-size-00912 */
                              .usage = VK_BUFFER_USAGE_STORAGE_BUFFER_BIT};
    VkBuffer buf = VK_NULL_HANDLE;
    fprintf(stderr, "test_vkctx: the next validation message is expected\n");
    VkResult r = vkCreateBuffer(ctx->device, &bad, NULL, &buf);
    if (r == VK_SUCCESS && buf) vkDestroyBuffer(ctx->device, buf, NULL);
    ck_assert_int_ge(vkctx_validation_errors(ctx), 1);
    vkctx_destroy(ctx);
}
END_TEST

/* Reflection of a push-constant array and a binding gap: 4 bindings, 20 bytes, and the kernel
 * sees the array elements where C put them. */
START_TEST(test_reflection) {
    vkctx *ctx = open_ctx(false);
    const uint32_t n = 300, off_c = 17;
    pk_block a, b, unused, c;
    ck_assert_int_eq(vkctx_block_alloc(ctx, n * 4, &a), PK_OK);
    ck_assert_int_eq(vkctx_block_alloc(ctx, n * 4, &b), PK_OK);
    ck_assert_int_eq(vkctx_block_alloc(ctx, 256, &unused), PK_OK);
    ck_assert_int_eq(vkctx_block_alloc(ctx, (off_c + n) * 4, &c), PK_OK);
    float *ha = malloc(n * 4), *hb = malloc(n * 4), *hc = malloc((off_c + n) * 4);
    fill_random(ha, n);
    fill_random(hb, n);
    const float poison = nanf("");
    for (uint32_t i = 0; i < off_c + n; i++)
        hc[i] = poison;
    ck_assert_int_eq(vkctx_block_write(ctx, &a, 0, ha, n * 4), PK_OK);
    ck_assert_int_eq(vkctx_block_write(ctx, &b, 0, hb, n * 4), PK_OK);
    ck_assert_int_eq(vkctx_block_write(ctx, &c, 0, hc, (off_c + n) * 4), PK_OK);
    pc_selftest_reflect pc = {.n = n, .w = {0.75f, -1.25f, 0.3125f}, .off_c = off_c};
    vk_binding bind[4] = {{&a, 0, 0}, {&b, 0, 0}, {&unused, 0, 0}, {&c, 0, 0}};
    const char *name = "common/selftest_reflect";
    ck_assert_int_eq(vkctx_dispatch(ctx, name, 3, bind, &pc, sizeof pc, 5, 1, 1), PK_ERR_INVALID);
    ck_assert_msg(strstr(polyak_error(), name) && strstr(polyak_error(), "4"), "message: %s",
                  polyak_error());
    ck_assert_int_eq(vkctx_dispatch(ctx, name, 4, bind, &pc, 16, 5, 1, 1), PK_ERR_INVALID);
    ck_assert_msg(strstr(polyak_error(), "20"), "message: %s", polyak_error());
    pk_status s = vkctx_dispatch(ctx, name, 4, bind, &pc, sizeof pc, (n + 63) / 64, 1, 1);
    ck_assert_msg(s == PK_OK, "%s", polyak_error());
    float *got = malloc((off_c + n) * 4);
    ck_assert_int_eq(vkctx_block_read(ctx, &c, 0, got, (off_c + n) * 4), PK_OK);
    for (uint32_t i = 0; i < off_c; i++)
        ck_assert_msg(isnan(got[i]), "c[%u] overwritten", i);
    for (uint32_t i = 0; i < n; i++) {
        float s0 = pc.w[0] * ha[i], s1 = pc.w[1] * hb[i], s2 = s0 + s1, s3 = s2 + pc.w[2];
        ck_assert_msg(got[off_c + i] == s3, "c[%u] = %a, want %a", off_c + i, got[off_c + i], s3);
    }
    vkctx_block_free(ctx, &a);
    vkctx_block_free(ctx, &b);
    vkctx_block_free(ctx, &unused);
    vkctx_block_free(ctx, &c);
    free(ha);
    free(hb);
    free(hc);
    free(got);
    close_ctx(ctx);
}
END_TEST

START_TEST(test_destroy_null) { vkctx_destroy(NULL); }
END_TEST

int main(void) {
    int n = 0;
    if (vkctx_enumerate(NULL, 0, &n) != PK_OK) {
        fprintf(stderr, "test_vkctx: vkctx_enumerate: %s\n", polyak_error());
        return 1;
    }
    if (n == 0) {
        fprintf(stderr, "test_vkctx: no Vulkan device; skipping\n");
        return 77;
    }
    Suite *s = suite_create("vkctx");
    TCase *tc = tcase_create("vkctx");
    tcase_set_timeout(tc, 120); /* lavapipe compiles pipelines slowly */
    tcase_add_test(tc, test_enumerate);
    tcase_add_test(tc, test_dispatch_offset_mapped);
    tcase_add_test(tc, test_dispatch_offset_staged);
    tcase_add_test(tc, test_refusals);
    tcase_add_test(tc, test_many_dispatches);
    tcase_add_test(tc, test_write_ordering);
    tcase_add_test(tc, test_profile);
    tcase_add_test(tc, test_validation_counts);
    tcase_add_test(tc, test_reflection);
    tcase_add_test(tc, test_destroy_null);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
