/*
 * test_acme.c: the ACME client's pure parts and storage protocol. The full
 * protocol runs against pebble in tests/acme/test_pebble.py.
 */
#include <criterion/criterion.h>

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "acme/acme.h"
#include "acme/acme_int.h"
#include "core/alloc.h"

/* A fixed P-256 key; its JWK and thumbprint below were computed with openssl + python hashlib. */
static const char fixed_key_pem[] =
    "-----BEGIN PRIVATE KEY-----\n"
    "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgn41pXFVvedWeHmKc\n"
    "fGTHHZPwoc58wk8HMzWN4DAgTt2hRANCAATHCjUifd9KEVM7ULwOfYZtCkMp3hp/\n"
    "6OqHhxo4Ovori5hvr9WvFool89uabOn+Xl14z/vwbVqhcBKbInrXREAL\n"
    "-----END PRIVATE KEY-----\n";
static const char fixed_jwk[] = "{\"crv\":\"P-256\",\"kty\":\"EC\","
                                "\"x\":\"xwo1In3fShFTO1C8Dn2GbQpDKd4af-jqh4caODr6K4s\","
                                "\"y\":\"mG-v1a8WiiXz25ps6f5eXXjP-_BtWqFwEpsietdEQAs\"}";
static const char fixed_thumb[] = "QeXDtIM32Cu-uC_BNZiJnQdrDYDr33NLdbrkAvdLBto";

static EVP_PKEY *fixed_key(void)
{
    EVP_PKEY *k = sy__acme_key_from_pem(fixed_key_pem, strlen(fixed_key_pem));
    cr_assert_not_null(k);
    return k;
}

/* Test-side base64url decoder (independent of the encoder under test). */
static unsigned char *b64url_decode(const char *s, size_t *len)
{
    size_t n = strlen(s);
    unsigned char *out = malloc(n);
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        const char *al = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        const char *p = strchr(al, s[i]);
        cr_assert(p != NULL && s[i] != '\0', "bad base64url character %c", s[i]);
        acc = acc << 6 | (uint32_t)(p - al);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(acc >> bits);
        }
    }
    *len = o;
    return out;
}

static char *tmpdir(void)
{
    char tmpl[] = "/tmp/sy_acme_test.XXXXXX";
    char *d = mkdtemp(tmpl);
    cr_assert_not_null(d);
    return strdup(d);
}

static void rmtree(const char *dir)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}

static int count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
            n++;
    closedir(d);
    return n;
}

Test(acme, base64url_vectors)
{
    char out[32];
    cr_assert_eq(sy__acme_b64url("", 0, out, sizeof(out)), 0);
    cr_assert_str_eq(out, "");
    sy__acme_b64url("f", 1, out, sizeof(out));
    cr_assert_str_eq(out, "Zg");
    sy__acme_b64url("fo", 2, out, sizeof(out));
    cr_assert_str_eq(out, "Zm8");
    cr_assert_eq(sy__acme_b64url("foo", 3, out, sizeof(out)), 4);
    cr_assert_str_eq(out, "Zm9v");
    sy__acme_b64url("foobar", 6, out, sizeof(out));
    cr_assert_str_eq(out, "Zm9vYmFy");
    /* The two characters that differ from base64: 62 '-' and 63 '_'. */
    sy__acme_b64url("\xfb\xff", 2, out, sizeof(out));
    cr_assert_str_eq(out, "-_8");
    /* RFC 7515 §2 / appendix C example bytes. */
    sy__acme_b64url("\x03\xec\xff\xe0", 4, out, sizeof(out));
    cr_assert_str_eq(out, "A-z_4A");
    cr_assert_eq(sy__acme_b64url("foo", 3, out, 4), 0, "no room for the NUL");
    cr_assert_eq(sy__acme_b64url("foo", 3, out, 5), 4);
}

Test(acme, token_validation)
{
    char big[SY_ACME_TOKEN_MAX + 2];
    memset(big, 'a', sizeof(big));
    cr_assert(sy__acme_token_valid(SY_STR_LIT("evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA")));
    cr_assert(sy__acme_token_valid(SY_STR_LIT("a")));
    cr_assert(sy__acme_token_valid(sy_str_make(big, SY_ACME_TOKEN_MAX)));
    cr_assert_not(sy__acme_token_valid(sy_str_make(big, SY_ACME_TOKEN_MAX + 1)));
    cr_assert_not(sy__acme_token_valid(SY_STR_LIT("")));
    cr_assert_not(sy__acme_token_valid(SY_STR_LIT("abc.def")));
    cr_assert_not(sy__acme_token_valid(SY_STR_LIT("../etc")));
    cr_assert_not(sy__acme_token_valid(SY_STR_LIT("abc=")));
    cr_assert_not(sy__acme_token_valid(SY_STR_LIT("ab+c/")));
    cr_assert_not(sy__acme_token_valid(sy_str_make("ab\0c", 4)));
}

Test(acme, jwk_and_thumbprint_of_fixed_key)
{
    EVP_PKEY *k = fixed_key();
    char *jwk = sy__acme_jwk(k);
    char t[44];
    cr_assert_str_eq(jwk, fixed_jwk);
    cr_assert_eq(sy__acme_thumbprint(k, t), 0);
    cr_assert_str_eq(t, fixed_thumb);
    sy_free(jwk);
    EVP_PKEY_free(k);
}

Test(acme, thumbprint_of_fresh_key_matches_spki_coordinates)
{
    EVP_PKEY *k = sy__acme_key_generate();
    unsigned char *der = NULL, md[32];
    char x[44], y[44], t[44];
    cr_assert_not_null(k);
    int n = i2d_PUBKEY(k, &der);
    cr_assert_eq(n, 91);
    cr_assert_eq(der[n - 65], 0x04);
    sy__acme_b64url(der + n - 64, 32, x, sizeof(x));
    sy__acme_b64url(der + n - 32, 32, y, sizeof(y));
    char jwk[200];
    snprintf(jwk, sizeof(jwk), "{\"crv\":\"P-256\",\"kty\":\"EC\",\"x\":\"%s\",\"y\":\"%s\"}", x,
             y);
    SHA256((unsigned char *)jwk, strlen(jwk), md);
    char want[44];
    sy__acme_b64url(md, 32, want, sizeof(want));
    cr_assert_eq(sy__acme_thumbprint(k, t), 0);
    cr_assert_str_eq(t, want);
    OPENSSL_free(der);
    EVP_PKEY_free(k);
}

Test(acme, key_pem_round_trip_and_rejects_other_keys)
{
    EVP_PKEY *k = sy__acme_key_generate(), *rsa = EVP_RSA_gen(2048);
    size_t len = 0;
    char *pem = sy__acme_key_to_pem(k, &len);
    EVP_PKEY *back = sy__acme_key_from_pem(pem, len);
    cr_assert_not_null(back);
    cr_assert_eq(EVP_PKEY_eq(k, back), 1);
    BIO *b = BIO_new(BIO_s_mem());
    PEM_write_bio_PrivateKey(b, rsa, NULL, NULL, 0, NULL, NULL);
    char *p;
    long n = BIO_get_mem_data(b, &p);
    cr_assert_null(sy__acme_key_from_pem(p, (size_t)n), "RSA keys are not account keys");
    cr_assert_null(sy__acme_key_from_pem("garbage", 7));
    BIO_free(b);
    sy_free(pem);
    EVP_PKEY_free(back);
    EVP_PKEY_free(rsa);
    EVP_PKEY_free(k);
}

/* Decodes one JWS member and parses it as JSON. */
static json_t *jws_part(json_t *jws, const char *name)
{
    size_t len;
    unsigned char *raw = b64url_decode(json_string_value(json_object_get(jws, name)), &len);
    json_t *j = json_loadb((char *)raw, len, 0, NULL);
    free(raw);
    return j;
}

static int verify_es256(EVP_PKEY *k, json_t *jws)
{
    char *input = NULL;
    size_t siglen;
    cr_assert(asprintf(&input, "%s.%s", json_string_value(json_object_get(jws, "protected")),
                       json_string_value(json_object_get(jws, "payload"))) > 0);
    unsigned char *sig = b64url_decode(json_string_value(json_object_get(jws, "signature")),
                                       &siglen);
    cr_assert_eq(siglen, 64, "ES256 signatures are r||s, 64 bytes");
    ECDSA_SIG *es = ECDSA_SIG_new();
    ECDSA_SIG_set0(es, BN_bin2bn(sig, 32, NULL), BN_bin2bn(sig + 32, 32, NULL));
    unsigned char *der = NULL;
    int derlen = i2d_ECDSA_SIG(es, &der);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok = EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL, k) == 1 &&
             EVP_DigestVerify(ctx, der, (size_t)derlen, (unsigned char *)input,
                              strlen(input)) == 1;
    EVP_MD_CTX_free(ctx);
    OPENSSL_free(der);
    ECDSA_SIG_free(es);
    free(sig);
    free(input);
    return ok;
}

Test(acme, jws_with_jwk_then_kid)
{
    EVP_PKEY *k = fixed_key();
    char *s = sy__acme_jws(k, NULL, "nonce-1", "https://ca.test/new-acct",
                           "{\"termsOfServiceAgreed\":true}");
    json_t *jws = json_loads(s, 0, NULL);
    cr_assert_not_null(jws);
    json_t *prot = jws_part(jws, "protected"), *pay = jws_part(jws, "payload");
    cr_assert_str_eq(json_string_value(json_object_get(prot, "alg")), "ES256");
    cr_assert_str_eq(json_string_value(json_object_get(prot, "nonce")), "nonce-1");
    cr_assert_str_eq(json_string_value(json_object_get(prot, "url")), "https://ca.test/new-acct");
    cr_assert_null(json_object_get(prot, "kid"));
    json_t *jwk = json_object_get(prot, "jwk");
    cr_assert_str_eq(json_string_value(json_object_get(jwk, "x")),
                     "xwo1In3fShFTO1C8Dn2GbQpDKd4af-jqh4caODr6K4s");
    cr_assert(json_is_true(json_object_get(pay, "termsOfServiceAgreed")));
    cr_assert(verify_es256(k, jws));
    json_decref(prot);
    json_decref(pay);
    json_decref(jws);
    sy_free(s);

    /* kid form, POST-as-GET: empty payload, no jwk; a tampered payload fails to verify. */
    s = sy__acme_jws(k, "https://ca.test/acct/1", "n\"2", "https://ca.test/order/9", NULL);
    jws = json_loads(s, 0, NULL);
    prot = jws_part(jws, "protected");
    cr_assert_str_eq(json_string_value(json_object_get(jws, "payload")), "");
    cr_assert_str_eq(json_string_value(json_object_get(prot, "kid")), "https://ca.test/acct/1");
    cr_assert_str_eq(json_string_value(json_object_get(prot, "nonce")), "n\"2");
    cr_assert_null(json_object_get(prot, "jwk"));
    cr_assert(verify_es256(k, jws));
    json_object_set_new(jws, "payload", json_string("e30"));
    cr_assert_not(verify_es256(k, jws));
    EVP_PKEY *other = sy__acme_key_generate();
    json_object_set_new(jws, "payload", json_string(""));
    cr_assert_not(verify_es256(other, jws));
    EVP_PKEY_free(other);
    json_decref(prot);
    json_decref(jws);
    sy_free(s);
    EVP_PKEY_free(k);
}

Test(acme, csr_carries_all_domains_and_verifies)
{
    EVP_PKEY *k = sy__acme_key_generate();
    char *domains[] = {"a.example.org", "b.example.org"};
    size_t len = 0;
    unsigned char *der = sy__acme_csr(k, domains, 2, &len);
    cr_assert_not_null(der);
    const unsigned char *p = der;
    X509_REQ *req = d2i_X509_REQ(NULL, &p, (long)len);
    cr_assert_not_null(req);
    cr_assert_eq(X509_REQ_verify(req, k), 1);
    STACK_OF(X509_EXTENSION) *exts = X509_REQ_get_extensions(req);
    GENERAL_NAMES *gens = NULL;
    for (int i = 0; i < sk_X509_EXTENSION_num(exts); i++) {
        X509_EXTENSION *e = sk_X509_EXTENSION_value(exts, i);
        if (OBJ_obj2nid(X509_EXTENSION_get_object(e)) == NID_subject_alt_name)
            gens = X509V3_EXT_d2i(e);
    }
    cr_assert_not_null(gens);
    cr_assert_eq(sk_GENERAL_NAME_num(gens), 2);
    for (int i = 0; i < 2; i++) {
        GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
        cr_assert_eq(g->type, GEN_DNS);
        cr_assert_str_eq((const char *)ASN1_STRING_get0_data(g->d.dNSName), domains[i]);
    }
    char cn[64];
    X509_NAME_get_text_by_NID(X509_REQ_get_subject_name(req), NID_commonName, cn, sizeof(cn));
    cr_assert_str_eq(cn, "a.example.org");
    GENERAL_NAMES_free(gens);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    X509_REQ_free(req);
    sy_free(der);
    EVP_PKEY_free(k);
}

Test(acme, ari_certificate_id)
{
    /* RFC 9773 §4.1 example: AKI 69:88:5B:..:C8:D4, serial 00:87:65:43:21. */
    static const unsigned char aki[] = {0x69, 0x88, 0x5B, 0x6B, 0x87, 0x46, 0x40,
                                        0x41, 0xE1, 0xB3, 0x7B, 0x84, 0x7B, 0xA0,
                                        0xAE, 0x2C, 0xDE, 0x01, 0xC8, 0xD4};
    static const unsigned char serial[] = {0x00, 0x87, 0x65, 0x43, 0x21};
    char *id = sy__acme_ari_id_raw(aki, sizeof(aki), serial, sizeof(serial));
    cr_assert_str_eq(id, "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE");
    sy_free(id);

    /* From a certificate: serial 0x87654321 needs its leading zero octet. */
    EVP_PKEY *k = fixed_key();
    X509 *x = X509_new();
    ASN1_INTEGER_set_uint64(X509_get_serialNumber(x), 0x87654321u);
    X509_set_pubkey(x, k);
    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
    X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &ctx, NID_subject_key_identifier, "hash");
    X509_add_ext(x, e, -1);
    X509_EXTENSION_free(e);
    e = X509V3_EXT_conf_nid(NULL, &ctx, NID_authority_key_identifier, "keyid:always");
    X509_add_ext(x, e, -1);
    X509_EXTENSION_free(e);
    X509_sign(x, k, EVP_sha256());
    const ASN1_OCTET_STRING *ski = X509_get0_subject_key_id(x);
    cr_assert_not_null(ski);
    char *want_aki =
        sy__acme_b64url_dup(ASN1_STRING_get0_data(ski), (size_t)ASN1_STRING_length(ski));
    char want[128];
    snprintf(want, sizeof(want), "%s.AIdlQyE", want_aki);
    id = sy__acme_ari_id(x);
    cr_assert_str_eq(id, want);
    sy_free(id);
    sy_free(want_aki);
    X509_free(x);
    EVP_PKEY_free(k);
}

Test(acme, atomic_write_and_exclusive_create)
{
    char *d = tmpdir(), path[256];
    snprintf(path, sizeof(path), "%s/f.key", d);
    cr_assert_eq(sy__acme_write_atomic(path, "one", 3, 0600), 0);
    struct stat st;
    cr_assert_eq(stat(path, &st), 0);
    cr_assert_eq(st.st_mode & 0777, 0600);
    size_t len;
    char *c = sy__acme_read_file(path, 100, &len);
    cr_assert_str_eq(c, "one");
    sy_free(c);
    cr_assert_eq(sy__acme_write_atomic(path, "second", 6, 0644), 0);
    c = sy__acme_read_file(path, 100, &len);
    cr_assert_str_eq(c, "second");
    cr_assert_eq(len, 6);
    sy_free(c);
    cr_assert_null(sy__acme_read_file(path, 5, &len), "larger than max");
    cr_assert_eq(count_entries(d), 1, "no temp file left behind");

    char path2[256];
    snprintf(path2, sizeof(path2), "%s/account.key", d);
    cr_assert_eq(sy__acme_write_excl(path2, "first", 5, 0600), 0);
    cr_assert_eq(sy__acme_write_excl(path2, "other", 5, 0600), 1, "never replaces");
    c = sy__acme_read_file(path2, 100, &len);
    cr_assert_str_eq(c, "first");
    sy_free(c);
    cr_assert_eq(count_entries(d), 2);

    char missing[256];
    snprintf(missing, sizeof(missing), "%s/nodir/x", d);
    cr_assert_eq(sy__acme_write_atomic(missing, "x", 1, 0600), -1);
    rmtree(d);
    free(d);
}

static char *lock_text(const char *path)
{
    size_t len;
    return sy__acme_read_file(path, 512, &len);
}

Test(acme, lock_acquire_busy_stale_takeover_heartbeat)
{
    char *d = tmpdir(), path[256];
    snprintf(path, sizeof(path), "%s/lock", d);
    struct sy__acme_lock a, b;
    sy__acme_lock_init(&a, path, 60000);
    sy__acme_lock_init(&b, path, 60000);
    cr_assert_str_neq(a.id, b.id);
    int64_t t0 = 1700000000000;
    char *holder = NULL;

    cr_assert_eq(sy__acme_lock_acquire(&a, t0, &holder), SY_ACME_LOCK_TAKEN);
    char *txt = lock_text(path);
    cr_assert(strncmp(txt, a.id, strlen(a.id)) == 0 && txt[strlen(a.id)] == ' ');
    sy_free(txt);

    cr_assert_eq(sy__acme_lock_acquire(&b, t0 + 30000, &holder), SY_ACME_LOCK_BUSY);
    cr_assert_str_eq(holder, a.id);
    sy_free(holder);

    /* A heartbeat at +50 s keeps it fresh at +100 s; stale at +111 s. */
    cr_assert_eq(sy__acme_lock_heartbeat(&a, t0 + 50000), 0);
    cr_assert_eq(sy__acme_lock_acquire(&b, t0 + 100000, &holder), SY_ACME_LOCK_BUSY);
    sy_free(holder);
    cr_assert_eq(sy__acme_lock_acquire(&b, t0 + 111000, &holder), SY_ACME_LOCK_TAKEN);
    cr_assert(b.held);
    txt = lock_text(path);
    cr_assert(strncmp(txt, b.id, strlen(b.id)) == 0);
    sy_free(txt);
    cr_assert_eq(count_entries(d), 1, "the stale lock moved aside is removed");

    /* The old holder notices and does not remove the new holder's lock. */
    cr_assert_eq(sy__acme_lock_heartbeat(&a, t0 + 112000), -1);
    cr_assert_not(a.held);
    sy__acme_lock_release(&a);
    cr_assert_eq(access(path, F_OK), 0);

    sy__acme_lock_release(&b);
    cr_assert_neq(access(path, F_OK), 0);
    cr_assert_eq(sy__acme_lock_acquire(&a, t0 + 113000, NULL), SY_ACME_LOCK_TAKEN);
    sy__acme_lock_dispose(&a);
    cr_assert_neq(access(path, F_OK), 0, "dispose releases a held lock");
    sy__acme_lock_dispose(&b);
    rmtree(d);
    free(d);
}

Test(acme, lock_unreadable_content_uses_mtime)
{
    char *d = tmpdir(), path[256];
    snprintf(path, sizeof(path), "%s/lock", d);
    int fd = open(path, O_CREAT | O_WRONLY, 0644); /* a holder died before writing */
    close(fd);
    struct sy__acme_lock l;
    sy__acme_lock_init(&l, path, 60000);
    char *holder = NULL;
    int64_t now = sy__acme_now_ms();
    cr_assert_eq(sy__acme_lock_acquire(&l, now, &holder), SY_ACME_LOCK_BUSY);
    sy_free(holder);
    cr_assert_eq(sy__acme_lock_acquire(&l, now + 61000, NULL), SY_ACME_LOCK_TAKEN);
    sy__acme_lock_dispose(&l);
    rmtree(d);
    free(d);
}

Test(acme, retry_after)
{
    int64_t now = 784111777000 - 10000; /* 10 s before Sun, 06 Nov 1994 08:49:37 GMT */
    cr_assert_eq(sy__acme_retry_after_ms("120", now), 120000);
    cr_assert_eq(sy__acme_retry_after_ms(" 5 \r", now), 5000);
    cr_assert_eq(sy__acme_retry_after_ms("0", now), 0);
    cr_assert_eq(sy__acme_retry_after_ms("99999999999999999999", now), 86400000);
    cr_assert_eq(sy__acme_retry_after_ms("Sun, 06 Nov 1994 08:49:37 GMT", now), 10000);
    cr_assert_eq(sy__acme_retry_after_ms("Sun, 06 Nov 1994 08:49:37 GMT", now + 60000), 0);
    cr_assert_eq(sy__acme_retry_after_ms("Mon, 07 Nov 1994 08:49:37 GMT", now), 86400000);
    cr_assert_eq(sy__acme_retry_after_ms(NULL, now), -1);
    cr_assert_eq(sy__acme_retry_after_ms("", now), -1);
    cr_assert_eq(sy__acme_retry_after_ms("1.5", now), -1);
    cr_assert_eq(sy__acme_retry_after_ms("-3", now), -1);
    cr_assert_eq(sy__acme_retry_after_ms("Sun, 06 Foo 1994 08:49:37 GMT", now), -1);
    cr_assert_eq(sy__acme_retry_after_ms("Sunday, 06-Nov-94 08:49:37 GMT", now), -1);
}

Test(acme, backoff_bounds)
{
    cr_assert_eq(sy__acme_backoff_ms(0, 1.0, 12345), 0);
    cr_assert_eq(sy__acme_backoff_ms(1, 1.0, 0), 30000);
    cr_assert_eq(sy__acme_backoff_ms(1, 1.0, UINT32_MAX), 60000);
    cr_assert_eq(sy__acme_backoff_ms(2, 1.0, UINT32_MAX), 120000);
    int64_t prev_max = 0;
    for (unsigned f = 1; f < 40; f++) {
        int64_t lo = sy__acme_backoff_ms(f, 1.0, 0), hi = sy__acme_backoff_ms(f, 1.0, UINT32_MAX);
        cr_assert(lo * 2 == hi || lo * 2 == hi + 1, "jitter spans [d/2, d]");
        cr_assert(hi <= 86400000, "capped at 24 h");
        cr_assert(hi >= prev_max, "never shrinks");
        prev_max = hi;
        for (uint32_t r = 1; r < 10; r++) {
            int64_t v = sy__acme_backoff_ms(f, 1.0, r * 400000000u);
            cr_assert(v >= lo && v <= hi);
        }
    }
    cr_assert_eq(sy__acme_backoff_ms(30, 1.0, UINT32_MAX), 86400000);
    cr_assert_eq(sy__acme_backoff_ms(1, 0.01, UINT32_MAX), 600);
    cr_assert_eq(sy__acme_backoff_ms(1, 0.00001, 0), 1);
}

Test(acme, check_conf)
{
    char *good[] = {"a.example.org", "b-1.example.org"};
    char *wild[] = {"*.example.org"};
    char *upper[] = {"A.example.org"};
    char *slash[] = {"../x"};
    struct sy_acme_conf c = {.enabled = 1, .directory = "https://ca/dir", .domains = good,
                             .ndomains = 2, .storage = "/tmp/x"};
    char *err = NULL;
    cr_assert_eq(sy_acme_check_conf(&c, &err), 0);
    cr_assert_null(err);
    c.domains = wild;
    c.ndomains = 1;
    cr_assert_eq(sy_acme_check_conf(&c, &err), -1);
    cr_assert(strstr(err, "*.example.org") != NULL);
    sy_free(err);
    c.domains = upper;
    cr_assert_eq(sy_acme_check_conf(&c, &err), -1);
    sy_free(err);
    c.domains = slash;
    cr_assert_eq(sy_acme_check_conf(&c, &err), -1);
    sy_free(err);
    c.domains = good;
    c.directory = "http://ca/dir";
    cr_assert_eq(sy_acme_check_conf(&c, &err), -1);
    sy_free(err);
    c.directory = "https://ca/dir";
    c.storage = NULL;
    cr_assert_eq(sy_acme_check_conf(&c, &err), -1);
    sy_free(err);
    c.storage = "/tmp/x";
    char *p = sy_acme_cert_path(&c);
    cr_assert_str_eq(p, "/tmp/x/certificates/a.example.org.crt");
    sy_free(p);
    p = sy_acme_key_path(&c);
    cr_assert_str_eq(p, "/tmp/x/certificates/a.example.org.key");
    sy_free(p);
}

/*
 * The worker-facing answer with an unreachable CA: the attempt fails before
 * any key is made, so -1 (503) while no key exists; once another replica
 * writes account.key, the answer after the one-second re-read throttle;
 * the 404 cases; metrics text; the shared back-off record; a prompt stop.
 */
Test(acme, http01_answer_from_storage_and_metrics, .timeout = 30)
{
    char *d = tmpdir();
    char *domains[] = {"a.example.org"};
    struct sy_acme_conf c = {.enabled = 1, .directory = "https://127.0.0.1:9/dir",
                             .domains = domains, .ndomains = 1, .storage = d};
    setenv("SWITCHYARD_ACME_BACKOFF_SCALE", "100", 1); /* the failed attempt backs off long */
    struct sy_acme *a = sy_acme_start(&c);
    cr_assert_not_null(a);
    char out[SY_ACME_HTTP01_MAX];
    struct sy_str tok = SY_STR_LIT("tok_EN-1");
    struct sy_acme_status st;
    for (int i = 0; i < 200; i++) {
        sy_acme_get_status(a, &st);
        if (st.orders_error)
            break;
        nanosleep(&(struct timespec){0, 50 * 1000000}, NULL);
    }
    cr_assert_eq(st.orders_error, 1, "the unreachable CA counts one failed attempt");
    cr_assert_not(st.have_account_key, "nothing to sign with: no key was created");
    cr_assert_eq(sy_acme_http01_answer(a, tok, out, sizeof(out)), -1);

    /* Another replica creates the key: found after the one-second throttle. */
    char key[256];
    snprintf(key, sizeof(key), "%s/account.key", d);
    cr_assert_eq(sy__acme_write_excl(key, fixed_key_pem, strlen(fixed_key_pem), 0600), 0);
    cr_assert_eq(sy_acme_http01_answer(a, tok, out, sizeof(out)), -1, "throttled re-read");
    struct timespec ts = {1, 100 * 1000000};
    nanosleep(&ts, NULL);
    char want[128];
    snprintf(want, sizeof(want), "tok_EN-1.%s", fixed_thumb);
    cr_assert_eq(sy_acme_http01_answer(a, tok, out, sizeof(out)), (ssize_t)strlen(want));
    cr_assert_str_eq(out, want);
    cr_assert_eq(sy_acme_http01_answer(a, SY_STR_LIT("a/b"), out, sizeof(out)), 0);
    cr_assert_eq(sy_acme_http01_answer(a, SY_STR_LIT(""), out, sizeof(out)), 0);
    cr_assert_eq(sy_acme_http01_answer(a, tok, out, 20), 0, "cap below SY_ACME_HTTP01_MAX");
    sy_acme_get_status(a, &st);
    cr_assert(st.have_account_key);

    char m[1024];
    size_t n = sy_acme_metrics(a, m, sizeof(m));
    cr_assert(n > 0 && n < sizeof(m));
    cr_assert(strstr(m, "switchyard_acme_orders_total{result=\"error\"} 1\n") != NULL);
    cr_assert(strstr(m, "switchyard_acme_orders_total{result=\"valid\"} 0\n") != NULL);
    cr_assert(strstr(m, "switchyard_acme_last_success_timestamp_seconds 0\n") != NULL);
    cr_assert(strstr(m, "switchyard_acme_certificate_expiry_timestamp_seconds 0\n") != NULL);
    cr_assert_eq(sy_acme_metrics(a, m, 100), 0);

    /* The failure is recorded for the other replicas. */
    char state[256];
    snprintf(state, sizeof(state), "%s/state.json", d);
    json_t *j = json_load_file(state, 0, NULL);
    cr_assert_not_null(j);
    cr_assert_eq(json_integer_value(json_object_get(j, "failures")), 1);
    cr_assert(json_integer_value(json_object_get(j, "retry_at_ms")) > sy__acme_now_ms() + 60000);
    json_decref(j);

    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    sy_acme_stop(a);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    cr_assert(t1.tv_sec - t0.tv_sec < 2, "stop wakes the sleeping thread");
    cr_assert_neq(access(key, F_OK), -1);
    unsetenv("SWITCHYARD_ACME_BACKOFF_SCALE");
    rmtree(d);
    free(d);
}
