// One-line wrappers for C macros and variadic functions the Swift importer drops.
// No logic lives here: each function forwards to exactly one library call.
#pragma once
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <openssl/crypto.h>
#include <openssl/bio.h>
#include <curl/curl.h>
#include <sqlite3.h>
#include <microhttpd.h>
#include <tss2/tss2_tpm2_types.h>

// OpenSSL
void vouch_openssl_free(void *p);
long vouch_BIO_get_mem_data(BIO *b, char **pp);

// libcurl
CURLcode vouch_curl_setopt_long(CURL *h, CURLoption opt, long v);
CURLcode vouch_curl_setopt_ptr(CURL *h, CURLoption opt, const void *v);
CURLcode vouch_curl_setopt_write(CURL *h, size_t (*cb)(char *, size_t, size_t, void *), void *ctx);
CURLcode vouch_curl_getinfo_long(CURL *h, CURLINFO info, long *out);

// SQLite
int vouch_sqlite_bind_text(sqlite3_stmt *s, int i, const char *v, int n);
int vouch_sqlite_bind_blob(sqlite3_stmt *s, int i, const void *v, int n);

// libmicrohttpd
struct MHD_Daemon *vouch_mhd_start(unsigned int flags, uint16_t port,
                                   MHD_AccessHandlerCallback handler, void *handler_cls,
                                   const struct MHD_OptionItem *options);
static const enum MHD_OPTION vouch_MHD_OPTION_ARRAY = MHD_OPTION_ARRAY;

// tss2 response codes the importer drops
static const TPM2_RC vouch_TPM2_RC_RETRY = TPM2_RC_RETRY;
static const TPM2_RC vouch_TPM2_RC_YIELDED = TPM2_RC_YIELDED;
static const TPM2_RC vouch_TPM2_RC_TESTING = TPM2_RC_TESTING;
// tss2 constants written as casts (a TPM2_Sign validation ticket for an unrestricted key)
static const TPM2_ST vouch_TPM2_ST_HASHCHECK = TPM2_ST_HASHCHECK;
static const TPMI_RH_HIERARCHY vouch_TPM2_RH_NULL = TPM2_RH_NULL;

// OpenSSL constants written as macro expressions
#include <openssl/evp.h>
static const int vouch_EVP_PKEY_PUBLIC_KEY = EVP_PKEY_PUBLIC_KEY;
void *vouch_openssl_malloc(size_t n);
#include <openssl/x509.h>
static const unsigned long vouch_XN_FLAG_RFC2253 = XN_FLAG_RFC2253;
CURLcode vouch_curl_setopt_write_header(CURL *h, size_t (*cb)(char *, size_t, size_t, void *), void *ctx);
// CURLOPT_SSL_CTX_FUNCTION + CURLOPT_SSL_CTX_DATA: cb gets the connection's SSL_CTX before the handshake.
CURLcode vouch_curl_setopt_ssl_ctx(CURL *h, CURLcode (*cb)(CURL *, void *, void *), void *ctx);
// CURLOPT_XFERINFOFUNCTION + CURLOPT_XFERINFODATA + CURLOPT_NOPROGRESS=0: cb runs about once a
// second (and on every transfer of bytes); a non-zero return aborts the transfer.
CURLcode vouch_curl_setopt_xferinfo(CURL *h, int (*cb)(void *, curl_off_t, curl_off_t, curl_off_t, curl_off_t), void *ctx);
/// The client's socket address of a libmicrohttpd connection (MHD_get_connection_info is variadic).
const struct sockaddr *vouch_mhd_client_addr(struct MHD_Connection *c);
/// The GnuTLS session of a libmicrohttpd TLS connection (NULL for plain connections).
void *vouch_mhd_tls_session(struct MHD_Connection *c);
/// The socket of a libmicrohttpd connection, or -1.
int vouch_mhd_connection_fd(struct MHD_Connection *c);
/// Sets one connection's idle timeout in seconds (MHD_set_connection_option is variadic);
/// returns 1 on success.
int vouch_mhd_set_connection_timeout(struct MHD_Connection *c, unsigned int seconds);
/// Names the calling thread for the kernel (ps -L, /proc/self/task/*/comm; at most 15 bytes):
/// pthread_setname_np is a GNU extension the importer does not see.
int vouch_set_thread_name(const char *name);
