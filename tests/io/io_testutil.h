/* io_testutil.h - helpers for the io/ test suites: a fresh random generator, temporary folders
 * and small file writers. Header-only so each test executable stays one file. */
#ifndef POLYAK_IO_TESTUTIL_H
#define POLYAK_IO_TESTUTIL_H
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* xorshift64* seeded from time and pid: every run draws new inputs (seed printed on failure
 * through the assertion messages that include it). */
static uint64_t tu_state;
static inline uint64_t tu_rand(void) {
    if (!tu_state) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        tu_state = ((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)ts.tv_sec ^ ((uint64_t)getpid() << 40);
        if (!tu_state) tu_state = 1;
    }
    tu_state ^= tu_state >> 12;
    tu_state ^= tu_state << 25;
    tu_state ^= tu_state >> 27;
    return tu_state * 0x2545F4914F6CDD1Dull;
}
static inline double tu_uniform(double lo, double hi) {
    return lo + (hi - lo) * (double)(tu_rand() >> 11) / 9007199254740992.0;
}
static inline int tu_int(int lo, int hi) { return lo + (int)(tu_rand() % (uint64_t)(hi - lo + 1)); }

/* Creates a fresh temporary folder; returns its path (static storage per call site). */
static inline char *tu_tmpdir(void) {
    char *p = malloc(64);
    strcpy(p, "/tmp/polyak-io-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(p));
    return p;
}

/* Builds dir/name into a malloc'd string. */
static inline char *tu_path(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static inline void tu_write(const char *path, const void *buf, size_t len) {
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(buf, 1, len, f), len);
    fclose(f);
}

static inline void tu_write_str(const char *path, const char *s) { tu_write(path, s, strlen(s)); }

static inline uint8_t *tu_read(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc((size_t)n + 1);
    ck_assert_uint_eq(fread(b, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return b;
}

/* Removes a folder tree (test scratch only). */
static inline void tu_rmrf(const char *dir) {
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", dir);
}

/* Runs a suite built by make_suite and returns the exit code for main. */
static inline int tu_run(Suite *s) {
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}

#endif
