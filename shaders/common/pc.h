/* pc.h - lets one push-constant struct be written once and read by both GLSL and C.
 * A shader's header writes PK_PC_BEGIN(name) fields... PK_PC_END(name); C sees a typedef
 * struct and adds a static_assert on its size, GLSL sees the push_constant block `pc`.
 * Only 4-byte scalars (PC_U32, PC_I32, PC_F32) and arrays of them, so both layouts agree. */
#ifndef POLYAK_PC_H
#define POLYAK_PC_H
#ifdef VULKAN
#define PC_U32 uint
#define PC_I32 int
#define PC_F32 float
#define PK_PC_BEGIN(name) layout(push_constant) uniform name##_block {
#define PK_PC_END(name)                                                                            \
    }                                                                                              \
    pc;
#else
#include <stdint.h>
#define PC_U32 uint32_t
#define PC_I32 int32_t
#define PC_F32 float
#define PK_PC_BEGIN(name) typedef struct name {
#define PK_PC_END(name)                                                                            \
    }                                                                                              \
    name;
#endif
#endif
