#define _GNU_SOURCE   /* pthread_setname_np */
#include <pthread.h>
#include "CVouchShims.h"

void vouch_openssl_free(void *p) { OPENSSL_free(p); }
long vouch_BIO_get_mem_data(BIO *b, char **pp) { return BIO_get_mem_data(b, pp); }

CURLcode vouch_curl_setopt_long(CURL *h, CURLoption opt, long v) { return curl_easy_setopt(h, opt, v); }
CURLcode vouch_curl_setopt_ptr(CURL *h, CURLoption opt, const void *v) { return curl_easy_setopt(h, opt, v); }
CURLcode vouch_curl_setopt_write(CURL *h, size_t (*cb)(char *, size_t, size_t, void *), void *ctx) {
    CURLcode rc = curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, cb);
    return rc != CURLE_OK ? rc : curl_easy_setopt(h, CURLOPT_WRITEDATA, ctx);
}
CURLcode vouch_curl_getinfo_long(CURL *h, CURLINFO info, long *out) { return curl_easy_getinfo(h, info, out); }

int vouch_sqlite_bind_text(sqlite3_stmt *s, int i, const char *v, int n) { return sqlite3_bind_text(s, i, v, n, SQLITE_TRANSIENT); }
int vouch_sqlite_bind_blob(sqlite3_stmt *s, int i, const void *v, int n) { return sqlite3_bind_blob(s, i, v, n, SQLITE_TRANSIENT); }

struct MHD_Daemon *vouch_mhd_start(unsigned int flags, uint16_t port,
                                   MHD_AccessHandlerCallback handler, void *handler_cls,
                                   const struct MHD_OptionItem *options) {
    return MHD_start_daemon(flags, port, NULL, NULL, handler, handler_cls,
                            MHD_OPTION_ARRAY, options, MHD_OPTION_END);
}
void *vouch_openssl_malloc(size_t n) { return OPENSSL_malloc(n); }
CURLcode vouch_curl_setopt_write_header(CURL *h, size_t (*cb)(char *, size_t, size_t, void *), void *ctx) {
    CURLcode rc = curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, cb);
    return rc != CURLE_OK ? rc : curl_easy_setopt(h, CURLOPT_HEADERDATA, ctx);
}
const struct sockaddr *vouch_mhd_client_addr(struct MHD_Connection *c) {
    const union MHD_ConnectionInfo *i = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    return i ? i->client_addr : NULL;
}

void *vouch_mhd_tls_session(struct MHD_Connection *c) {
    const union MHD_ConnectionInfo *i = MHD_get_connection_info(c, MHD_CONNECTION_INFO_GNUTLS_SESSION);
    return i ? i->tls_session : NULL;
}

int vouch_mhd_connection_fd(struct MHD_Connection *c) {
    const union MHD_ConnectionInfo *i = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    return i ? i->connect_fd : -1;
}
int vouch_mhd_set_connection_timeout(struct MHD_Connection *c, unsigned int seconds) {
    return MHD_set_connection_option(c, MHD_CONNECTION_OPTION_TIMEOUT, seconds) == MHD_YES;
}
CURLcode vouch_curl_setopt_ssl_ctx(CURL *h, CURLcode (*cb)(CURL *, void *, void *), void *ctx) {
    CURLcode rc = curl_easy_setopt(h, CURLOPT_SSL_CTX_FUNCTION, cb);
    return rc != CURLE_OK ? rc : curl_easy_setopt(h, CURLOPT_SSL_CTX_DATA, ctx);
}
CURLcode vouch_curl_setopt_xferinfo(CURL *h, int (*cb)(void *, curl_off_t, curl_off_t, curl_off_t, curl_off_t), void *ctx) {
    CURLcode rc = curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, cb);
    if (rc == CURLE_OK) rc = curl_easy_setopt(h, CURLOPT_XFERINFODATA, ctx);
    return rc != CURLE_OK ? rc : curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
}

int vouch_set_thread_name(const char *name) { return pthread_setname_np(pthread_self(), name); }
