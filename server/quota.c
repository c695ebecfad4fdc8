/* quota — the clients' table (a hash of fixed size with a least recently
 * seen list through it) and the token buckets; see quota.h. */
#include "server/quota.h"

#include "server/handler.h" /* HTTP_CLIENT_LEN */

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const quota_reason_names[QUOTA_REASONS] = {"rate", "client_work", "client_jobs"};

/* One client. Entries are linked by index: -1 ends a list. */
typedef struct entry {
    char client[HTTP_CLIENT_LEN];
    double tokens;       /* in the bucket at last (fractions count) */
    double last;         /* bs_now() when tokens was last brought up to date */
    int in_flight;       /* admitted and not yet released */
    int chain;           /* next entry of the same hash bucket, or of the free list */
    int newer, older;    /* the list by last use, most recent first */
} entry;

struct quota {
    pthread_mutex_t lock;
    double rate, burst;
    int max_work;
    entry *entries;      /* cap of them */
    int cap, n;
    int *buckets;        /* n_buckets heads of hash chains */
    unsigned n_buckets;  /* a power of two */
    int free_list;
    int newest, oldest;  /* ends of the list by last use */
};

quota *quota_new(double rate, int burst, int max_work, int max_clients, int max_busy)
{
    quota *q = calloc(1, sizeof *q);
    if (!q)
        return NULL;
    q->rate = rate;
    q->burst = burst > 0 ? burst : 1;
    q->max_work = max_work;
    q->cap = max_clients + max_busy;
    q->n_buckets = 16;
    while (q->n_buckets < (unsigned)q->cap)
        q->n_buckets *= 2;
    q->entries = calloc((size_t)q->cap, sizeof *q->entries);
    q->buckets = malloc(q->n_buckets * sizeof *q->buckets);
    if (!q->entries || !q->buckets) {
        quota_free(q);
        return NULL;
    }
    for (unsigned b = 0; b < q->n_buckets; b++)
        q->buckets[b] = -1;
    for (int i = 0; i < q->cap; i++)
        q->entries[i].chain = i + 1 < q->cap ? i + 1 : -1;
    q->free_list = 0;
    q->newest = q->oldest = -1;
    pthread_mutex_init(&q->lock, NULL);
    return q;
}

void quota_free(quota *q)
{
    if (!q)
        return;
    if (q->entries && q->buckets)
        pthread_mutex_destroy(&q->lock);
    free(q->entries);
    free(q->buckets);
    free(q);
}

/* FNV-1a of the client key. */
static unsigned bucket_of(const quota *q, const char *client)
{
    uint32_t h = 2166136261u;
    for (const unsigned char *p = (const unsigned char *)client; *p; p++)
        h = (h ^ *p) * 16777619u;
    return h & (q->n_buckets - 1);
}

/* The entry of client, or -1. Called with the lock held. */
static int find(const quota *q, const char *client)
{
    for (int i = q->buckets[bucket_of(q, client)]; i >= 0; i = q->entries[i].chain)
        if (!strcmp(q->entries[i].client, client))
            return i;
    return -1;
}

static void unlink_use(quota *q, int i)
{
    entry *e = &q->entries[i];
    if (e->newer >= 0)
        q->entries[e->newer].older = e->older;
    else
        q->newest = e->older;
    if (e->older >= 0)
        q->entries[e->older].newer = e->newer;
    else
        q->oldest = e->newer;
}

/* Puts entry i at the head of the list by last use. */
static void link_newest(quota *q, int i)
{
    entry *e = &q->entries[i];
    e->newer = -1;
    e->older = q->newest;
    if (q->newest >= 0)
        q->entries[q->newest].newer = i;
    q->newest = i;
    if (q->oldest < 0)
        q->oldest = i;
}

/* Forgets entry i: out of its hash chain and the list, onto the free list. */
static void forget(quota *q, int i)
{
    int *p = &q->buckets[bucket_of(q, q->entries[i].client)];
    while (*p != i)
        p = &q->entries[*p].chain;
    *p = q->entries[i].chain;
    unlink_use(q, i);
    q->entries[i].chain = q->free_list;
    q->free_list = i;
    q->n--;
}

/* A new entry for client with a full bucket, forgetting the least
 * recently seen idle client when the table is full; -1 when every entry
 * is busy. Called with the lock held. */
static int add(quota *q, const char *client, double now)
{
    if (q->free_list < 0) {
        int i = q->oldest;
        while (i >= 0 && q->entries[i].in_flight > 0)
            i = q->entries[i].newer;
        if (i < 0)
            return -1;
        forget(q, i);
    }
    int i = q->free_list;
    entry *e = &q->entries[i];
    q->free_list = e->chain;
    memset(e, 0, sizeof *e);
    snprintf(e->client, sizeof e->client, "%s", client);
    e->tokens = q->burst;
    e->last = now;
    unsigned b = bucket_of(q, client);
    e->chain = q->buckets[b];
    q->buckets[b] = i;
    link_newest(q, i);
    q->n++;
    return i;
}

quota_verdict quota_admit(quota *q, const char *client, double now, double *retry_after)
{
    pthread_mutex_lock(&q->lock);
    int i = find(q, client);
    if (i < 0)
        i = add(q, client, now);
    if (i < 0) { /* more busy clients than connections: cannot be, but refuse rather than
                    lose count */
        pthread_mutex_unlock(&q->lock);
        *retry_after = 1;
        return QUOTA_WORK;
    }
    entry *e = &q->entries[i];
    unlink_use(q, i);
    link_newest(q, i);
    quota_verdict v = QUOTA_ADMITTED;
    if (q->rate > 0) {
        if (now > e->last)
            e->tokens += (now - e->last) * q->rate;
        if (e->tokens > q->burst)
            e->tokens = q->burst;
        e->last = now;
        if (e->tokens < 1) {
            *retry_after = (1 - e->tokens) / q->rate;
            v = QUOTA_RATE;
        }
    }
    if (v == QUOTA_ADMITTED && e->in_flight >= q->max_work) {
        *retry_after = 1;
        v = QUOTA_WORK;
    }
    if (v == QUOTA_ADMITTED) {
        if (q->rate > 0)
            e->tokens -= 1;
        e->in_flight++;
    }
    pthread_mutex_unlock(&q->lock);
    return v;
}

void quota_release(quota *q, const char *client)
{
    pthread_mutex_lock(&q->lock);
    int i = find(q, client);
    if (i >= 0 && q->entries[i].in_flight > 0)
        q->entries[i].in_flight--;
    pthread_mutex_unlock(&q->lock);
}

int quota_clients(quota *q)
{
    pthread_mutex_lock(&q->lock);
    int n = q->n;
    pthread_mutex_unlock(&q->lock);
    return n;
}
