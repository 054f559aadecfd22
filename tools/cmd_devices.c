/* cmd_devices.c - `polyak devices`: every device, its capabilities, and which one is chosen. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "commands.h"
#include "device.h"

int cmd_devices(int argc, char **argv) {
    const char *spec = NULL;
    const char *usage = "[--device SPEC]";
    if (cli_wants_help(argc, argv)) {
        printf("usage: polyak devices %s\n", usage);
        return 0;
    }
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--device") != 0) return cli_usage("devices", usage, "unknown option");
        if (i + 1 == argc) return cli_missing("devices", usage, argv[i]);
        spec = argv[++i];
    }
    pk_device_info devs[17];
    int n = 0;
    if (pk_device_list(devs, 17, &n) != PK_OK) return cli_fail("devices", "listing devices");
    if (n > 17) n = 17;
    pk_device *chosen = NULL;
    pk_status s = pk_device_open(spec, &chosen);
    const pk_device_info *ci = s == PK_OK ? pk_device_get_info(chosen) : NULL;
    printf("%-6s %-10s %-11s %10s %9s %8s  %s\n", "id", "backend", "type", "memory", "subgroup",
           "f32-atom", "name");
    for (int i = 0; i < n; i++) {
        const pk_device_info *d = &devs[i];
        char id[16];
        if (d->backend == PK_BACKEND_CPU)
            snprintf(id, sizeof id, "cpu");
        else
            snprintf(id, sizeof id, "vk:%d", d->index);
        bool is_chosen = ci && ci->backend == d->backend && ci->index == d->index;
        printf("%-6s %-10s %-11s %7.1f GB %9u %8s  %s%s\n", id,
               d->backend == PK_BACKEND_CPU ? "cpu" : "vulkan", d->type, (double)d->memory / 1e9,
               d->subgroup_size, d->float_atomics ? "yes" : "no", d->name,
               is_chosen ? "   <- chosen" : "");
    }
    if (s != PK_OK) {
        pk_device_close(chosen);
        return cli_fail("devices", "choosing a device");
    }
    pk_device_close(chosen);
    return 0;
}
