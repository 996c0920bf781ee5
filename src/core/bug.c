#include <stdio.h>
#include <stdlib.h>

#include "core/log.h"

void sy_bug(const char *file, int line, const char *cond)
{
    /* stderr directly: the rule that broke may be the logger's own. */
    fprintf(stderr, "switchyard: internal error at %s:%d: %s\n", file, line, cond);
    abort();
}
