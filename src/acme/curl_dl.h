/*
 * curl_dl.h: libcurl, loaded at run time.
 *
 * libcurl pulls in some thirty shared libraries (GnuTLS, Kerberos, LDAP, ...)
 * whose start-up costs memory and time in every gateway, also the many that
 * never use ACME. So the gateway is not linked against it: the ACME client
 * loads libcurl.so.4 with dlopen() when it starts, and the calls below go
 * through a table of function pointers. Include this after <curl/curl.h>.
 */
#ifndef SY_ACME_CURL_DL_H
#define SY_ACME_CURL_DL_H

/* The type-checking macros of curl.h would shadow the pointer table below. */
#define CURL_DISABLE_TYPECHECK 1
#include <curl/curl.h>

struct sy_curl_api {
    CURLcode (*global_init)(long flags);
    CURL *(*easy_init)(void);
    CURLcode (*easy_setopt)(CURL *h, CURLoption opt, ...);
    CURLcode (*easy_perform)(CURL *h);
    CURLcode (*easy_getinfo)(CURL *h, CURLINFO info, ...);
    void (*easy_reset)(CURL *h);
    void (*easy_cleanup)(CURL *h);
    const char *(*easy_strerror)(CURLcode code);
    struct curl_slist *(*slist_append)(struct curl_slist *list, const char *s);
    void (*slist_free_all)(struct curl_slist *list);
};

extern struct sy_curl_api sy_curl;

/*
 * Loads libcurl once (thread-safe). Returns 0, or -1 with a static reason in
 * *why (no libcurl on the machine, or a symbol missing).
 */
int sy_curl_load(const char **why);

#ifndef SY_CURL_DL_IMPL
#undef curl_easy_setopt
#undef curl_easy_getinfo
#define curl_global_init sy_curl.global_init
#define curl_easy_init sy_curl.easy_init
#define curl_easy_setopt sy_curl.easy_setopt
#define curl_easy_perform sy_curl.easy_perform
#define curl_easy_getinfo sy_curl.easy_getinfo
#define curl_easy_reset sy_curl.easy_reset
#define curl_easy_cleanup sy_curl.easy_cleanup
#define curl_easy_strerror sy_curl.easy_strerror
#define curl_slist_append sy_curl.slist_append
#define curl_slist_free_all sy_curl.slist_free_all
#endif

#endif
