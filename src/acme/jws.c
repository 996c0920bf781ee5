/*
 * jws.c: base64url, the ECDSA P-256 keys, JWK and its thumbprint (RFC 7638),
 * ES256 JWS (RFC 7515/7518), the CSR and the ARI certificate identifier.
 */
#include "acme/acme.h"
#include "acme/acme_int.h"

#include <stdio.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "core/alloc.h"
#include "core/log.h"

static const char b64url_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

size_t sy__acme_b64url(const void *in, size_t len, char *out, size_t cap)
{
    const unsigned char *p = in;
    size_t need = (len / 3) * 4 + (len % 3 ? len % 3 + 1 : 0);
    if (cap < need + 1)
        return 0;
    size_t o = 0, i = 0;
    for (; i + 3 <= len; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
        out[o++] = b64url_alphabet[v >> 18 & 63];
        out[o++] = b64url_alphabet[v >> 12 & 63];
        out[o++] = b64url_alphabet[v >> 6 & 63];
        out[o++] = b64url_alphabet[v & 63];
    }
    if (len - i == 1) {
        uint32_t v = (uint32_t)p[i] << 16;
        out[o++] = b64url_alphabet[v >> 18 & 63];
        out[o++] = b64url_alphabet[v >> 12 & 63];
    } else if (len - i == 2) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;
        out[o++] = b64url_alphabet[v >> 18 & 63];
        out[o++] = b64url_alphabet[v >> 12 & 63];
        out[o++] = b64url_alphabet[v >> 6 & 63];
    }
    out[o] = '\0';
    return o;
}

char *sy__acme_b64url_dup(const void *in, size_t len)
{
    size_t cap = (len + 2) / 3 * 4 + 1;
    char *s = sy_malloc(cap);
    sy__acme_b64url(in, len, s, cap);
    return s;
}

int sy__acme_token_valid(struct sy_str token)
{
    if (token.len == 0 || token.len > SY_ACME_TOKEN_MAX)
        return 0;
    for (size_t i = 0; i < token.len; i++) {
        unsigned char c = (unsigned char)token.p[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_'))
            return 0;
    }
    return 1;
}

static void log_ssl_errors(const char *what)
{
    unsigned long e = ERR_get_error();
    char buf[256];
    if (e == 0) {
        sy_log_error("acme", "%s failed", what);
        return;
    }
    ERR_error_string_n(e, buf, sizeof(buf));
    sy_log_error("acme", "%s failed: %s", what, buf);
    ERR_clear_error();
}

EVP_PKEY *sy__acme_key_generate(void)
{
    EVP_PKEY *k = EVP_EC_gen("P-256");
    if (k == NULL)
        log_ssl_errors("generating an ECDSA P-256 key");
    return k;
}

static int is_p256(EVP_PKEY *k)
{
    char group[64];
    size_t glen = 0;
    if (EVP_PKEY_get_base_id(k) != EVP_PKEY_EC)
        return 0;
    if (!EVP_PKEY_get_utf8_string_param(k, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group),
                                        &glen))
        return 0;
    return strcmp(group, "prime256v1") == 0 || strcmp(group, "P-256") == 0;
}

EVP_PKEY *sy__acme_key_from_pem(const char *pem, size_t len)
{
    if (len > INT32_MAX)
        return NULL;
    BIO *b = BIO_new_mem_buf(pem, (int)len);
    if (b == NULL)
        return NULL;
    EVP_PKEY *k = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL);
    BIO_free(b);
    if (k == NULL) {
        ERR_clear_error();
        return NULL;
    }
    if (!is_p256(k)) {
        EVP_PKEY_free(k);
        return NULL;
    }
    return k;
}

char *sy__acme_key_to_pem(EVP_PKEY *key, size_t *len)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *out = NULL;
    if (b == NULL)
        return NULL;
    if (PEM_write_bio_PrivateKey(b, key, NULL, NULL, 0, NULL, NULL)) {
        char *p;
        long n = BIO_get_mem_data(b, &p);
        if (n > 0) {
            out = sy_strndup(p, (size_t)n);
            *len = (size_t)n;
        }
    } else {
        log_ssl_errors("encoding a key as PEM");
    }
    BIO_free(b);
    return out;
}

/* Affine coordinates of an EC P-256 public key, 32 bytes each. */
static int ec_coords(EVP_PKEY *key, unsigned char x[32], unsigned char y[32])
{
    BIGNUM *bx = NULL, *by = NULL;
    int ok = EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_EC_PUB_X, &bx) &&
             EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_EC_PUB_Y, &by) &&
             BN_bn2binpad(bx, x, 32) == 32 && BN_bn2binpad(by, y, 32) == 32;
    BN_free(bx);
    BN_free(by);
    if (!ok)
        log_ssl_errors("reading the EC public key");
    return ok ? 0 : -1;
}

char *sy__acme_jwk(EVP_PKEY *key)
{
    unsigned char x[32], y[32];
    char bx[44], by[44];
    if (ec_coords(key, x, y) < 0)
        return NULL;
    sy__acme_b64url(x, 32, bx, sizeof(bx));
    sy__acme_b64url(y, 32, by, sizeof(by));
    return sy_asprintf("{\"crv\":\"P-256\",\"kty\":\"EC\",\"x\":\"%s\",\"y\":\"%s\"}", bx, by);
}

int sy__acme_thumbprint(EVP_PKEY *key, char out[44])
{
    char *jwk = sy__acme_jwk(key);
    unsigned char md[32];
    unsigned int mdlen = 0;
    if (jwk == NULL)
        return -1;
    int ok = EVP_Digest(jwk, strlen(jwk), md, &mdlen, EVP_sha256(), NULL) && mdlen == 32;
    sy_free(jwk);
    if (!ok)
        return -1;
    sy__acme_b64url(md, 32, out, 44);
    return 0;
}

/* ES256 over data: r||s, 32 bytes each. */
static int es256_sign(EVP_PKEY *key, const char *data, size_t len, unsigned char sig[64])
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned char der[80];
    size_t derlen = sizeof(der);
    ECDSA_SIG *es = NULL;
    int ok = 0;
    if (ctx == NULL)
        return -1;
    if (EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, key) != 1 ||
        EVP_DigestSign(ctx, der, &derlen, (const unsigned char *)data, len) != 1) {
        log_ssl_errors("signing a JWS");
        goto out;
    }
    const unsigned char *p = der;
    es = d2i_ECDSA_SIG(NULL, &p, (long)derlen);
    if (es == NULL)
        goto out;
    const BIGNUM *r, *s;
    ECDSA_SIG_get0(es, &r, &s);
    ok = BN_bn2binpad(r, sig, 32) == 32 && BN_bn2binpad(s, sig + 32, 32) == 32;
out:
    ECDSA_SIG_free(es);
    EVP_MD_CTX_free(ctx);
    return ok ? 0 : -1;
}

/* JSON string literal of s (quotes and escapes). */
static char *json_quote(const char *s)
{
    size_t n = strlen(s);
    char *out = sy_malloc(n * 6 + 3);
    size_t o = 0;
    out[o++] = '"';
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            out[o++] = '\\';
            out[o++] = (char)c;
        } else if (c < 0x20) {
            o += (size_t)snprintf(out + o, 7, "\\u%04x", c);
        } else {
            out[o++] = (char)c;
        }
    }
    out[o++] = '"';
    out[o] = '\0';
    return out;
}

char *sy__acme_jws(EVP_PKEY *key, const char *kid, const char *nonce, const char *url,
                   const char *payload)
{
    char *who, *prot, *bprot, *bpay, *qnonce = json_quote(nonce), *qurl = json_quote(url);
    char *out = NULL;
    unsigned char sig[64];
    char bsig[90];
    if (kid != NULL) {
        char *qkid = json_quote(kid);
        who = sy_asprintf("\"kid\":%s", qkid);
        sy_free(qkid);
    } else {
        char *jwk = sy__acme_jwk(key);
        if (jwk == NULL) {
            sy_free(qnonce);
            sy_free(qurl);
            return NULL;
        }
        who = sy_asprintf("\"jwk\":%s", jwk);
        sy_free(jwk);
    }
    prot = sy_asprintf("{\"alg\":\"ES256\",%s,\"nonce\":%s,\"url\":%s}", who, qnonce, qurl);
    bprot = sy__acme_b64url_dup(prot, strlen(prot));
    bpay = payload ? sy__acme_b64url_dup(payload, strlen(payload)) : sy_strdup("");
    char *input = sy_asprintf("%s.%s", bprot, bpay);
    if (es256_sign(key, input, strlen(input), sig) == 0) {
        sy__acme_b64url(sig, 64, bsig, sizeof(bsig));
        out = sy_asprintf("{\"protected\":\"%s\",\"payload\":\"%s\",\"signature\":\"%s\"}", bprot,
                          bpay, bsig);
    }
    sy_free(input);
    sy_free(bpay);
    sy_free(bprot);
    sy_free(prot);
    sy_free(who);
    sy_free(qnonce);
    sy_free(qurl);
    return out;
}

unsigned char *sy__acme_csr(EVP_PKEY *key, char *const *domains, size_t ndomains, size_t *len)
{
    X509_REQ *req = X509_REQ_new();
    X509_NAME *name = X509_NAME_new();
    GENERAL_NAMES *gens = GENERAL_NAMES_new();
    STACK_OF(X509_EXTENSION) *exts = sk_X509_EXTENSION_new_null();
    X509_EXTENSION *ext = NULL;
    unsigned char *der = NULL, *out = NULL;
    int ok = 0;
    if (req == NULL || name == NULL || gens == NULL || exts == NULL || ndomains == 0)
        goto out;
    if (!X509_REQ_set_version(req, X509_REQ_VERSION_1))
        goto out;
    if (strlen(domains[0]) <= 64 &&
        !X509_NAME_add_entry_by_NID(name, NID_commonName, MBSTRING_ASC,
                                    (const unsigned char *)domains[0], -1, -1, 0))
        goto out;
    if (!X509_REQ_set_subject_name(req, name))
        goto out;
    for (size_t i = 0; i < ndomains; i++) {
        GENERAL_NAME *gn = GENERAL_NAME_new();
        ASN1_IA5STRING *ia5 = ASN1_IA5STRING_new();
        if (gn == NULL || ia5 == NULL ||
            !ASN1_STRING_set(ia5, domains[i], (int)strlen(domains[i]))) {
            GENERAL_NAME_free(gn);
            ASN1_IA5STRING_free(ia5);
            goto out;
        }
        GENERAL_NAME_set0_value(gn, GEN_DNS, ia5);
        if (!sk_GENERAL_NAME_push(gens, gn)) {
            GENERAL_NAME_free(gn);
            goto out;
        }
    }
    ext = X509V3_EXT_i2d(NID_subject_alt_name, 0, gens);
    if (ext == NULL || !sk_X509_EXTENSION_push(exts, ext))
        goto out;
    ext = NULL;
    if (!X509_REQ_add_extensions(req, exts) || !X509_REQ_set_pubkey(req, key) ||
        X509_REQ_sign(req, key, EVP_sha256()) <= 0)
        goto out;
    int n = i2d_X509_REQ(req, &der);
    if (n <= 0)
        goto out;
    out = sy_malloc((size_t)n);
    memcpy(out, der, (size_t)n);
    *len = (size_t)n;
    ok = 1;
out:
    if (!ok)
        log_ssl_errors("building the CSR");
    OPENSSL_free(der);
    X509_EXTENSION_free(ext);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    GENERAL_NAMES_free(gens);
    X509_NAME_free(name);
    X509_REQ_free(req);
    return out;
}

char *sy__acme_ari_id_raw(const unsigned char *aki, size_t akilen, const unsigned char *serial,
                          size_t seriallen)
{
    char *a = sy__acme_b64url_dup(aki, akilen), *s = sy__acme_b64url_dup(serial, seriallen);
    char *id = sy_asprintf("%s.%s", a, s);
    sy_free(a);
    sy_free(s);
    return id;
}

char *sy__acme_ari_id(X509 *cert)
{
    const ASN1_OCTET_STRING *aki = X509_get0_authority_key_id(cert);
    const ASN1_INTEGER *serial = X509_get0_serialNumber(cert);
    unsigned char *der = NULL;
    char *id = NULL;
    if (aki == NULL || serial == NULL)
        return NULL;
    int n = i2d_ASN1_INTEGER(serial, &der);
    /* Skip the INTEGER tag and its length octets; serials are at most 20 octets. */
    if (n >= 3 && der[0] == 0x02 && der[1] < 0x80 && (size_t)der[1] + 2 == (size_t)n)
        id = sy__acme_ari_id_raw(ASN1_STRING_get0_data(aki), (size_t)ASN1_STRING_length(aki),
                                 der + 2, (size_t)n - 2);
    OPENSSL_free(der);
    return id;
}
