/* error — how errors travel: as a return value plus a one-sentence message a
 * user can act on, written into a caller's char[BS_ERR_LEN]. Nothing below
 * main prints or exits. */
#ifndef BS_ERROR_H
#define BS_ERROR_H

#define BS_ERR_LEN 256 /* size of every error-message buffer */

/* Formats the message into err (when not NULL; long messages are cut) and
 * returns -1, so that `return bs_fail(err, "...", ...);` reads as it does. */
int bs_fail(char *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
