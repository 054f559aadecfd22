/* keep_drivers.c - compiled into every test program. Under AddressSanitizer, pins the lavapipe
 * Vulkan driver in memory (RTLD_NODELETE) before any test runs: the driver leaks 128 bytes
 * (and the validation layer a few objects) that LeakSanitizer reports after the loader has unloaded
 * it, as "<unknown module>", where no suppression can name it. Pinned, the leak is attributed to
 * libvulkan_lvp.so and tests/lsan.supp suppresses it, while leaks in our own code still fail the
 * test. */
#if defined(__SANITIZE_ADDRESS__)
#include <dlfcn.h>

__attribute__((constructor)) static void pk_test_pin_drivers(void) {
    /* absent driver: nothing to pin, the Vulkan tests skip themselves */
    (void)dlopen("libvulkan_lvp.so", RTLD_NOW | RTLD_NODELETE);
    /* the validation layer (C++) keeps a few objects of its own past vkDestroyInstance */
    (void)dlopen("libVkLayer_khronos_validation.so", RTLD_NOW | RTLD_NODELETE);
}
#else
/* Nothing to do without AddressSanitizer; the declaration keeps the unit non-empty. */
typedef int pk_test_keep_drivers_unused;
#endif
