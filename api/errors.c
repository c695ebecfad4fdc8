/* errors — the table of error codes; see errors.h. */
#include "api/errors.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const bs_error_info table[BS_E_COUNT] = {
#define BS_ERROR_ROW(name, code, status, meaning) [BS_E_##name] = {code, status, meaning},
    BS_ERROR_TABLE(BS_ERROR_ROW)
#undef BS_ERROR_ROW
};

const bs_error_info *bs_error_get(bs_error_code e)
{
    return &table[e];
}

int bs_error_find(const char *code)
{
    for (int i = 0; i < BS_E_COUNT; i++)
        if (!strcmp(table[i].code, code))
            return i;
    return -1;
}

json_t *bs_error_json(bs_error_code e, const char *message)
{
    return json_pack("{s:s, s:s}", "code", table[e].code, "message", message);
}

int bs_api_fail(bs_api_error *err, bs_error_code code, const char *fmt, ...)
{
    va_list ap;
    err->code = code;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
    return -1;
}
