/* failalloc — allocation-failure injection for the daemon, as a shared
 * object loaded with LD_PRELOAD (build/tests/failalloc.so; the test is
 * tests/test_failalloc.c).
 *
 * FAILALLOC names a control file of struct failalloc_control, which the
 * test and the daemon both map. The test writes target = N and arm = 1;
 * the daemon's next accepted connection clears arm and starts the count,
 * and the Nth malloc, calloc, realloc, strdup or strndup of the daemon
 * from then on (in any thread) returns NULL with errno ENOMEM, once:
 * fired is then 1, and in_mhd says whether libmicrohttpd itself made the
 * allocation (it then closes the connection: a server cannot answer
 * there). Writing target = 0 stops the counting. Nothing fails while
 * FAILALLOC is unset or before the test arms the control, so start-up
 * runs as usual. */
#define _GNU_SOURCE
#include "tests/failalloc.h"

#include <dlfcn.h>
#include <errno.h>
#include <execinfo.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

static void *(*real_malloc)(size_t);
static void *(*real_calloc)(size_t, size_t);
static void *(*real_realloc)(void *, size_t);
static void (*real_free)(void *);
static char *(*real_strdup)(const char *);
static char *(*real_strndup)(const char *, size_t);
static int (*real_accept)(int, struct sockaddr *, socklen_t *);
static int (*real_accept4)(int, struct sockaddr *, socklen_t *, int);

static failalloc_control *control;
static atomic_long count;
static atomic_long pending; /* 1: the target was passed over, fail the next one */
static pthread_mutex_t where_lock = PTHREAD_MUTEX_INITIALIZER; /* control->where */

/* dlsym may allocate before the real functions are known: from here. */
static _Alignas(16) char early[16384];
static size_t early_used;

static void *early_alloc(size_t n)
{
    n = (n + 15) & ~(size_t)15;
    if (early_used + n > sizeof early)
        return NULL;
    void *p = early + early_used;
    early_used += n;
    return p; /* static storage: already zero */
}

static int is_early(const void *p)
{
    return (const char *)p >= early && (const char *)p < early + sizeof early;
}

/* The next definitions, found on first use: libraries may allocate before
 * this object's constructor runs. */
static void resolve(void)
{
    static int resolving;
    if (resolving)
        return;
    resolving = 1;
    real_malloc = (void *(*)(size_t))dlsym(RTLD_NEXT, "malloc");
    real_calloc = (void *(*)(size_t, size_t))dlsym(RTLD_NEXT, "calloc");
    real_realloc = (void *(*)(void *, size_t))dlsym(RTLD_NEXT, "realloc");
    real_free = (void (*)(void *))dlsym(RTLD_NEXT, "free");
    real_strdup = (char *(*)(const char *))dlsym(RTLD_NEXT, "strdup");
    real_strndup = (char *(*)(const char *, size_t))dlsym(RTLD_NEXT, "strndup");
    real_accept = (int (*)(int, struct sockaddr *, socklen_t *))dlsym(RTLD_NEXT, "accept");
    real_accept4 = (int (*)(int, struct sockaddr *, socklen_t *, int))dlsym(RTLD_NEXT, "accept4");
    resolving = 0;
}

__attribute__((constructor)) static void failalloc_init(void)
{
    if (!real_accept4)
        resolve();
    const char *path = getenv("FAILALLOC");
    if (!path)
        return;
    void *frame;
    backtrace(&frame, 1); /* loads the unwinder now, not inside malloc */
    int fd = open(path, O_RDWR);
    if (fd < 0)
        return;
    void *m = mmap(NULL, sizeof *control, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (m != MAP_FAILED)
        control = m;
}

/* Whether pthread_getattr_np is on the stack, which the daemon never
 * calls but the sanitizers' runtime does (asked only at the allocation
 * to fail: walking the stack is slow). */
static _Thread_local int walking; /* allocations of the walk itself are not counted */

/* The return addresses of the stack, without counting the walk's own
 * allocations. */
static int stack(void *frames[24])
{
    walking = 1;
    int n = backtrace(frames, 24);
    walking = 0;
    return n;
}

static int in_sanitizer(void)
{
    void *frames[24];
    int n = stack(frames);
    for (int i = 0; i < n; i++) {
        Dl_info info;
        if (dladdr(frames[i], &info) && info.dli_sname &&
            !strcmp(info.dli_sname, "pthread_getattr_np"))
            return 1;
    }
    return 0;
}

/* Whether libmicrohttpd made the allocation through libc: the first frame
 * of the stack outside libc, this shim and the sanitizers' runtime is in it (libmicrohttpd also allocates through
 * libc, as tsearch for its per-address connection counts). */
static int made_by_mhd(void)
{
    void *frames[24];
    int n = stack(frames);
    for (int i = 0; i < n; i++) {
        Dl_info info;
        if (!dladdr(frames[i], &info) || !info.dli_fname)
            return 0;
        if (strstr(info.dli_fname, "libc.so") || strstr(info.dli_fname, "failalloc") ||
            strstr(info.dli_fname, "san.so")) /* libasan, libubsan, libtsan */
            continue;
        return strstr(info.dli_fname, "libmicrohttpd") != NULL;
    }
    return 0;
}

/* Whether the allocation the caller is about to make fails. */
static int fail_now(const void *caller)
{
    if (!control)
        return 0;
    long target = atomic_load(&control->target);
    if (target <= 0 || atomic_load(&control->arm) || walking)
        return 0;
    long n = atomic_fetch_add(&count, 1) + 1;
    atomic_store(&control->counted, n);
    long one = 1;
    if (n != target && !atomic_compare_exchange_strong(&pending, &one, 0))
        return 0;
    if (in_sanitizer()) {
        /* The sanitizers' runtime reads each new thread's stack through
         * libc (pthread_getattr_np) and aborts when that fails: not the
         * daemon's doing. The next allocation, in any thread, fails
         * instead. */
        atomic_store(&pending, 1);
        return 0;
    }
    Dl_info info = {0};
    int known = dladdr(caller, &info) && info.dli_fname;
    const char *base = info.dli_saddr ? info.dli_saddr : info.dli_fbase;
    pthread_mutex_lock(&where_lock);
    atomic_store(&control->in_mhd, (known && strstr(info.dli_fname, "libmicrohttpd")) ||
                                       made_by_mhd());
    snprintf(control->where, sizeof control->where, "%s(%s+0x%lx)", known ? info.dli_fname : "?",
             info.dli_sname ? info.dli_sname : "?", (unsigned long)((const char *)caller - base));
    pthread_mutex_unlock(&where_lock);
    atomic_store(&control->fired, 1);
    errno = ENOMEM;
    return 1;
}

/* A new connection: the start of what the test armed. */
static void on_accept(int fd)
{
    long one = 1;
    if (fd >= 0 && control && atomic_compare_exchange_strong(&control->arm, &one, 0)) {
        atomic_store(&pending, 0);
        atomic_store(&count, 0);
    }
}

void *malloc(size_t n)
{
    if (!real_malloc)
        resolve();
    if (!real_malloc)
        return early_alloc(n);
    return fail_now(__builtin_return_address(0)) ? NULL : real_malloc(n);
}

void *calloc(size_t k, size_t n)
{
    if (!real_calloc)
        resolve();
    if (!real_calloc)
        return n && k > SIZE_MAX / n ? NULL : early_alloc(k * n);
    return fail_now(__builtin_return_address(0)) ? NULL : real_calloc(k, n);
}

void *realloc(void *p, size_t n)
{
    if (is_early(p)) {
        size_t room = (size_t)(early + sizeof early - (char *)p);
        void *q = malloc(n);
        if (q)
            memcpy(q, p, n < room ? n : room);
        return q;
    }
    if (!real_realloc)
        resolve();
    return fail_now(__builtin_return_address(0)) ? NULL : real_realloc(p, n);
}

void free(void *p)
{
    if (!p || is_early(p))
        return;
    if (!real_free)
        resolve();
    real_free(p);
}

char *strdup(const char *s)
{
    if (!real_strdup)
        resolve();
    return fail_now(__builtin_return_address(0)) ? NULL : real_strdup(s);
}

char *strndup(const char *s, size_t n)
{
    if (!real_strndup)
        resolve();
    return fail_now(__builtin_return_address(0)) ? NULL : real_strndup(s, n);
}

int accept(int fd, struct sockaddr *addr, socklen_t *len)
{
    int c = real_accept(fd, addr, len);
    on_accept(c);
    return c;
}

int accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags)
{
    int c = real_accept4(fd, addr, len, flags);
    on_accept(c);
    return c;
}
