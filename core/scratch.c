/* scratch — the arena and the kept workspace of core/scratch.h.
 *
 * The arena is a stack of chunks, each one allocation with its header in
 * front. Carves come from the newest chunk while it has room; a carve that
 * does not fit opens a new chunk, at least as large as all before it, so a
 * fresh arena needs few allocations. The position (a mark) is logical: the
 * newest chunk's start position plus what it has carved. When the arena is
 * empty again and it took more than one chunk, they are replaced by one
 * chunk of the peak position: from then on a call of that size stays in
 * it. Nothing carved is ever moved. */
#include "core/scratch.h"

#include <stdlib.h>
#include <string.h>

#define ALIGN 64
#define FIRST_CHUNK (64 * 1024) /* bytes: most single-target calls fit */

typedef struct chunk {
    struct chunk *prev; /* the chunk opened before it */
    size_t at;          /* the position at which it was opened */
    size_t cap, used;   /* bytes after the header, and carved of them */
} chunk;

/* The header's size, keeping the carves after it aligned. */
#define HEADER ((sizeof(chunk) + ALIGN - 1) / ALIGN * ALIGN)

struct bs_scratch {
    chunk *top;          /* the newest chunk; NULL before the first carve */
    size_t peak;         /* the largest position seen */
    long allocations;    /* chunks and workspaces made */
    uint64_t generation; /* of the models the owner uses now */
    bs_workspace *ws;    /* kept workspace, made for ws_model ... */
    const bs_model *ws_model;
    uint64_t ws_generation; /* ... in this generation */
    bs_team *team;       /* lent to the workspace, or NULL */
};

static size_t round_up(size_t bytes)
{
    return (bytes + ALIGN - 1) / ALIGN * ALIGN;
}

static size_t position(const bs_scratch *s)
{
    return s->top ? s->top->at + s->top->used : 0;
}

/* Opens a chunk of cap bytes at the current position; 0 or -1. */
static int open_chunk(bs_scratch *s, size_t cap)
{
    if (cap > SIZE_MAX - HEADER)
        return -1;
    chunk *c = aligned_alloc(ALIGN, HEADER + cap);
    if (!c)
        return -1;
    s->allocations++;
    *c = (chunk){.prev = s->top, .at = position(s), .cap = cap};
    s->top = c;
    return 0;
}

bs_scratch *bs_scratch_new(void)
{
    return calloc(1, sizeof(bs_scratch));
}

static void drop_workspace(bs_scratch *s)
{
    bs_workspace_free(s->ws);
    s->ws = NULL;
    s->ws_model = NULL;
}

void bs_scratch_free(bs_scratch *s)
{
    if (!s)
        return;
    while (s->top) {
        chunk *c = s->top;
        s->top = c->prev;
        free(c);
    }
    drop_workspace(s);
    free(s);
}

size_t bs_scratch_mark(const bs_scratch *s)
{
    return position(s);
}

void bs_scratch_release(bs_scratch *s, size_t mark)
{
    while (s->top && s->top->prev && s->top->at >= mark) {
        chunk *c = s->top;
        s->top = c->prev;
        free(c);
    }
    if (s->top && mark < position(s))
        s->top->used = mark - s->top->at;
    if (mark == 0 && s->top && s->peak > s->top->cap) {
        /* empty: one chunk for what the largest call needed */
        chunk *old = s->top;
        s->top = NULL;
        if (open_chunk(s, s->peak) == 0)
            free(old);
        else
            s->top = old;
    }
}

void *bs_scratch_alloc(bs_scratch *s, size_t bytes)
{
    size_t len = round_up(bytes ? bytes : 1);
    if (len < bytes)
        return NULL;
    if (!s->top || len > s->top->cap - s->top->used) {
        size_t cap = s->top ? s->top->at + s->top->cap : FIRST_CHUNK;
        if (open_chunk(s, len > cap ? len : cap))
            return NULL;
    }
    unsigned char *p = (unsigned char *)s->top + HEADER + s->top->used;
    memset(p, 0, len);
    s->top->used += len;
    if (position(s) > s->peak)
        s->peak = position(s);
    return p;
}

void bs_scratch_generation(bs_scratch *s, uint64_t generation)
{
    if (generation != s->generation)
        drop_workspace(s);
    s->generation = generation;
}

bs_workspace *bs_scratch_workspace(bs_scratch *s, const bs_model *m, int batch)
{
    if (!s->ws || s->ws_model != m || s->ws_generation != s->generation ||
        s->ws->batch < batch) {
        drop_workspace(s);
        s->ws = bs_workspace_new(m, batch);
        if (!s->ws)
            return NULL;
        s->allocations++;
        s->ws_model = m;
        s->ws_generation = s->generation;
    }
    s->ws->training = 0;
    s->ws->team = s->team;
    return s->ws;
}

void bs_scratch_team(bs_scratch *s, bs_team *team)
{
    s->team = team;
}

long bs_scratch_allocations(const bs_scratch *s)
{
    return s->allocations;
}
