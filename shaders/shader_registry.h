/* shader_registry.h - look-up of the SPIR-V embedded at build time (see shaders/CMakeLists.txt). */
#ifndef POLYAK_SHADER_REGISTRY_H
#define POLYAK_SHADER_REGISTRY_H
#include <stddef.h>
#include <stdint.h>

typedef struct pk_spirv {
    const char *name;     /* path below shaders/ without ".comp", plus ":variant" for variants */
    const uint32_t *code; /* SPIR-V words */
    size_t size;          /* bytes */
} pk_spirv;

/* Returns the embedded shader named `name` (e.g. "nn/binary"), or NULL. */
const pk_spirv *pk_shader_find(const char *name);

/* Returns how many shaders (variants included) are embedded. */
size_t pk_shader_count(void);

#endif
