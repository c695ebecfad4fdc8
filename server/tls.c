/* tls — certificate and key for HTTPS, checked and reloaded; see tls.h. */
#include "server/tls.h"

#include <gnutls/x509.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TLS_MAX_CHAIN 16 /* certificates in a chain */

typedef struct tls_pair {
    gnutls_pcert_st chain[TLS_MAX_CHAIN];
    unsigned n_chain;
    gnutls_privkey_t key;
    struct tls_pair *older; /* kept until tls_close */
} tls_pair;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static tls_pair *current;
static char cert_file[1024], key_file[1024];

/* The whole of a file, or -1 with a message naming it. */
static int read_file(const char *path, const char *flag, gnutls_datum_t *out, char *err,
                     size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "%s %s: %s", flag, path, strerror(errno));
        return -1;
    }
    size_t cap = 8192, len = 0;
    unsigned char *buf = malloc(cap);
    while (buf) {
        len += fread(buf + len, 1, cap - len - 1, f);
        if (len < cap - 1 || cap > (1u << 24))
            break;
        unsigned char *nb = realloc(buf, cap * 2);
        if (!nb)
            free(buf);
        buf = nb;
        cap *= 2;
    }
    int bad = ferror(f);
    fclose(f);
    if (!buf || bad) {
        free(buf);
        snprintf(err, errlen, "%s %s: cannot be read", flag, path);
        return -1;
    }
    buf[len] = '\0';
    out->data = buf;
    out->size = (unsigned)len;
    return 0;
}

static void pair_free(tls_pair *p)
{
    for (unsigned i = 0; i < p->n_chain; i++)
        gnutls_pcert_deinit(&p->chain[i]);
    if (p->key)
        gnutls_privkey_deinit(p->key);
    free(p);
}

/* Reads and checks the two files into a new pair, or NULL with a message. */
static tls_pair *pair_load(const char *cert_path, const char *key_path, char *err,
                           size_t errlen)
{
    gnutls_datum_t cert = {0}, key = {0};
    tls_pair *p = NULL;
    gnutls_certificate_credentials_t check = NULL;
    if (read_file(cert_path, "--tls-cert", &cert, err, errlen) ||
        read_file(key_path, "--tls-key", &key, err, errlen))
        goto out;
    /* GnuTLS's own check of the pair: both PEM, and the key the
     * certificate's (GNUTLS_E_CERTIFICATE_KEY_MISMATCH otherwise). */
    int rc = gnutls_certificate_allocate_credentials(&check);
    if (rc >= 0)
        rc = gnutls_certificate_set_x509_key_mem2(check, &cert, &key, GNUTLS_X509_FMT_PEM, NULL,
                                                  0);
    if (rc < 0) {
        snprintf(err, errlen, "--tls-cert %s with --tls-key %s: %s", cert_path, key_path,
                 gnutls_strerror(rc));
        goto out;
    }
    p = calloc(1, sizeof *p);
    if (!p) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    p->n_chain = TLS_MAX_CHAIN;
    rc = gnutls_pcert_list_import_x509_raw(p->chain, &p->n_chain, &cert, GNUTLS_X509_FMT_PEM,
                                           0);
    if (rc < 0) {
        p->n_chain = 0;
        snprintf(err, errlen, "--tls-cert %s: %s", cert_path, gnutls_strerror(rc));
        goto fail;
    }
    rc = gnutls_privkey_init(&p->key);
    if (rc >= 0)
        rc = gnutls_privkey_import_x509_raw(p->key, &key, GNUTLS_X509_FMT_PEM, NULL, 0);
    if (rc < 0) {
        snprintf(err, errlen, "--tls-key %s: %s", key_path, gnutls_strerror(rc));
        goto fail;
    }
    goto out;
fail:
    pair_free(p);
    p = NULL;
out:
    if (check)
        gnutls_certificate_free_credentials(check);
    free(cert.data);
    if (key.data)
        gnutls_memset(key.data, 0, key.size);
    free(key.data);
    return p;
}

int tls_open(const char *cert_path, const char *key_path, char *err, size_t errlen)
{
    snprintf(cert_file, sizeof cert_file, "%s", cert_path);
    snprintf(key_file, sizeof key_file, "%s", key_path);
    return tls_reload(err, errlen);
}

int tls_reload(char *err, size_t errlen)
{
    tls_pair *p = pair_load(cert_file, key_file, err, errlen);
    if (!p)
        return -1;
    pthread_mutex_lock(&lock);
    p->older = current;
    current = p;
    pthread_mutex_unlock(&lock);
    return 0;
}

void tls_close(void)
{
    pthread_mutex_lock(&lock);
    while (current) {
        tls_pair *p = current;
        current = p->older;
        pair_free(p);
    }
    pthread_mutex_unlock(&lock);
}

int tls_retrieve(gnutls_session_t session, const gnutls_datum_t *req_ca_rdn, int nreqs,
                 const gnutls_pk_algorithm_t *pk_algos, int pk_algos_length,
                 gnutls_pcert_st **pcert, unsigned int *pcert_length, gnutls_privkey_t *pkey)
{
    (void)session;
    (void)req_ca_rdn;
    (void)nreqs;
    (void)pk_algos;
    (void)pk_algos_length;
    pthread_mutex_lock(&lock);
    tls_pair *p = current;
    pthread_mutex_unlock(&lock);
    if (!p)
        return -1;
    *pcert = p->chain;
    *pcert_length = p->n_chain;
    *pkey = p->key;
    return 0;
}
