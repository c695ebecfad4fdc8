/* testutil — helpers shared by the cmocka tests: scratch files and folders,
 * running the command-line tool, reading whole files. Tests run from the
 * repository root; BLINDSPOT_BUILD names the build folder (default build). */
#ifndef BS_TESTUTIL_H
#define BS_TESTUTIL_H

#include <stddef.h>
#include <stdint.h>

/* A fresh empty folder under /tmp, removed by tu_rmtree. Returns a static
 * buffer's copy (caller frees). */
char *tu_tmpdir(void);
void tu_rmtree(const char *dir);

/* Writes len bytes to path; returns 0 on success. */
int tu_write_file(const char *path, const void *data, size_t len);
/* Reads a whole file; *len gets its size, and a NUL follows the last byte
 * so that text can be searched as a string. Caller frees. NULL on error. */
uint8_t *tu_read_file(const char *path, size_t *len);

/* Path of a built binary ("blindspot") under the build folder. Static buffer. */
const char *tu_bin(const char *name);

/* Runs a shell command, captures stdout (caller frees *out, may be NULL)
 * and returns the exit status (or -1). */
int tu_run(const char *cmd, char **out);

#endif
