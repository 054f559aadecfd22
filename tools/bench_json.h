/* bench_json.h - the JSON list every `polyak bench` writes with --json: one object per
 * measurement {"name","backend","ms","rate","unit","peer","peer_rate","ratio"}, where ratio
 * is our rate / the peer's rate and peer fields are null where no peer ran. */
#ifndef POLYAK_BENCH_JSON_H
#define POLYAK_BENCH_JSON_H
#include <stdbool.h>

typedef struct bench_json bench_json;

/* Starts a JSON list written to `path` on close (NULL: collect nothing). */
bench_json *bench_json_open(const char *path);

/* Adds a measurement; peer NULL (or NAN rates) writes nulls. */
void bench_json_add(bench_json *j, const char *name, const char *backend, double ms, double rate,
                    const char *unit, const char *peer, double peer_rate, double ratio);

/* Writes the file atomically (temporary + rename) and frees; true on success or NULL j. */
bool bench_json_close(bench_json *j);

#endif
