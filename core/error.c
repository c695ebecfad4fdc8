/* error — see error.h. */
#include "core/error.h"

#include <stdarg.h>
#include <stdio.h>

int bs_fail(char *err, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, BS_ERR_LEN, fmt, ap);
        va_end(ap);
    }
    return -1;
}
