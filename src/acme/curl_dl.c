#define SY_CURL_DL_IMPL
#include "acme/curl_dl.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stddef.h>

struct sy_curl_api sy_curl;

static pthread_once_t once = PTHREAD_ONCE_INIT;
static const char *load_error;

static void *sym(void *lib, const char *name)
{
    void *p = dlsym(lib, name);
    if (!p && !load_error)
        load_error = "libcurl.so.4 lacks a needed function";
    return p;
}

static void load(void)
{
    void *lib = dlopen("libcurl.so.4", RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        load_error = "cannot load libcurl.so.4 (install the libcurl4 package)";
        return;
    }
    /* POSIX allows converting dlsym's void * to a function pointer; go through memcpy-free casts. */
    *(void **)&sy_curl.global_init = sym(lib, "curl_global_init");
    *(void **)&sy_curl.easy_init = sym(lib, "curl_easy_init");
    *(void **)&sy_curl.easy_setopt = sym(lib, "curl_easy_setopt");
    *(void **)&sy_curl.easy_perform = sym(lib, "curl_easy_perform");
    *(void **)&sy_curl.easy_getinfo = sym(lib, "curl_easy_getinfo");
    *(void **)&sy_curl.easy_reset = sym(lib, "curl_easy_reset");
    *(void **)&sy_curl.easy_cleanup = sym(lib, "curl_easy_cleanup");
    *(void **)&sy_curl.easy_strerror = sym(lib, "curl_easy_strerror");
    *(void **)&sy_curl.slist_append = sym(lib, "curl_slist_append");
    *(void **)&sy_curl.slist_free_all = sym(lib, "curl_slist_free_all");
}

int sy_curl_load(const char **why)
{
    pthread_once(&once, load);
    if (load_error) {
        *why = load_error;
        return -1;
    }
    return 0;
}
