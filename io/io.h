/* io.h - umbrella header for io/: files in and out, host memory only, no Vulkan. */
#ifndef POLYAK_IO_H
#define POLYAK_IO_H
#include "status.h"
#endif
