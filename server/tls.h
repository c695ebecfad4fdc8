/* tls — the daemon's certificate and key for HTTPS (--tls-cert,
 * --tls-key), read and checked with GnuTLS before libmicrohttpd starts,
 * and read again on SIGHUP.
 *
 * libmicrohttpd 0.9.75 cannot swap the certificate of a running daemon, so
 * it is not given the files: it asks tls_retrieve for the certificate at
 * every handshake (MHD_OPTION_HTTPS_CERT_CALLBACK), and tls_retrieve
 * answers with the pair loaded last. A reload that fails (a file missing,
 * not PEM, a key that is not the certificate's) keeps the previous pair.
 * Every pair loaded stays in memory until tls_close, since a handshake
 * that started on it may still use it (a reload is rare and a pair is a
 * few kilobytes). */
#ifndef BS_SERVER_TLS_H
#define BS_SERVER_TLS_H

#include <gnutls/abstract.h>
#include <gnutls/gnutls.h>
#include <stddef.h>

/* Reads and checks the pair and makes it the one served (one per process).
 * Returns 0, or -1 with a message naming the file and what is wrong. */
int tls_open(const char *cert_path, const char *key_path, char *err, size_t errlen);

/* Reads the same files again; on success the new pair is served to new
 * handshakes. Returns 0, or -1 with a message (the previous pair stays). */
int tls_reload(char *err, size_t errlen);

/* Frees every pair. Call after libmicrohttpd stopped. */
void tls_close(void);

/* GnuTLS's certificate callback (gnutls_certificate_retrieve_function2). */
int tls_retrieve(gnutls_session_t session, const gnutls_datum_t *req_ca_rdn, int nreqs,
                 const gnutls_pk_algorithm_t *pk_algos, int pk_algos_length,
                 gnutls_pcert_st **pcert, unsigned int *pcert_length, gnutls_privkey_t *pkey);

#endif
