/*
 * fuzz_config.c: the YAML loader on arbitrary bytes. Any input must give
 * either a snapshot or an error string, never a crash or a leak.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "config/config.h"
#include "core/alloc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *err = NULL;
    struct sy_config *cfg = sy_config_load_string("fuzz.yaml", (const char *)data, size, &err);

    if ((cfg == NULL) == (err == NULL))
        abort(); /* exactly one of the two must be set */
    sy_config_free(cfg);
    sy_free(err);
    return 0;
}
