/* failalloc — the control file shared by the allocation-failure shim
 * (tests/failalloc.c, preloaded into the daemon) and its test
 * (tests/test_failalloc.c). */
#ifndef BS_FAILALLOC_H
#define BS_FAILALLOC_H

#include <stdatomic.h>

typedef struct failalloc_control {
    atomic_long target; /* the allocation to fail, counted from the armed
                           connection's accept; 0: none */
    atomic_long arm;    /* 1: the next accepted connection starts the count */
    atomic_long fired;  /* 1 once the target allocation was failed */
    atomic_long in_mhd; /* 1 when libmicrohttpd made that allocation */
    atomic_long counted; /* allocations counted since the armed accept */
    char where[160];    /* who made it: object(symbol+offset), for messages */
} failalloc_control;

#endif
