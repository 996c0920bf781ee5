/*
 * tls_ticket.c: the process-wide session ticket key ring.
 *
 * Every SSL_CTX of every sy_tls uses the same ring, so a ticket issued by one
 * worker thread, or before a reload, resumes anywhere in the process. Key 0
 * encrypts new tickets for SY_TLS_TICKET_ROTATE_S, then moves down the ring
 * and only decrypts (a ticket it opens is replaced by a fresh one). The lock is
 * taken only here, in the ticket callback, for a copy of 80 bytes.
 */
#include "tls/tls_int.h"

#include <pthread.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/rand.h>

struct ticket_key {
    unsigned char name[16];
    unsigned char aes[32];
    unsigned char hmac[32];
};

static pthread_mutex_t ring_lock = PTHREAD_MUTEX_INITIALIZER;
static struct ticket_key ring[SY_TLS_TICKET_KEYS];
static size_t ring_len;                /* keys in use, 0 until the first ticket */
static struct timespec ring_created;   /* when ring[0] became current (monotonic) */

static int key_init(struct ticket_key *k)
{
    return RAND_bytes(k->name, sizeof(k->name)) == 1 && RAND_bytes(k->aes, sizeof(k->aes)) == 1 &&
           RAND_bytes(k->hmac, sizeof(k->hmac)) == 1;
}

/* Called with ring_lock held. Returns 0 or -1 (no randomness: keep the ring). */
static int rotate_locked(void)
{
    struct ticket_key k;
    if (!key_init(&k))
        return -1;
    if (ring_len == SY_TLS_TICKET_KEYS)
        OPENSSL_cleanse(&ring[SY_TLS_TICKET_KEYS - 1], sizeof(ring[0]));
    else
        ring_len++;
    memmove(&ring[1], &ring[0], (ring_len - 1) * sizeof(ring[0]));
    ring[0] = k;
    OPENSSL_cleanse(&k, sizeof(k));
    clock_gettime(CLOCK_MONOTONIC, &ring_created);
    return 0;
}

void sy__tls_ticket_rotate(void)
{
    pthread_mutex_lock(&ring_lock);
    rotate_locked();
    pthread_mutex_unlock(&ring_lock);
}

/* Copies the key to encrypt with; rotates when due. Returns 0 or -1. */
static int current_key(struct ticket_key *out)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    pthread_mutex_lock(&ring_lock);
    if (ring_len == 0 || now.tv_sec - ring_created.tv_sec >= SY_TLS_TICKET_ROTATE_S)
        rotate_locked(); /* when it fails, the previous key keeps serving */
    int rc = ring_len ? 0 : -1;
    if (rc == 0)
        *out = ring[0];
    pthread_mutex_unlock(&ring_lock);
    return rc;
}

/* Copies the key named `name`. Returns -1 (unknown), 0 (current) or 1 (older). */
static int find_key(const unsigned char *name, struct ticket_key *out)
{
    int rc = -1;
    pthread_mutex_lock(&ring_lock);
    for (size_t i = 0; i < ring_len; i++) {
        if (memcmp(ring[i].name, name, sizeof(ring[i].name)) == 0) {
            *out = ring[i];
            rc = i == 0 ? 0 : 1;
            break;
        }
    }
    pthread_mutex_unlock(&ring_lock);
    return rc;
}

/*
 * The ticket cipher, fetched once: EVP_aes_256_cbc() would make OpenSSL 3 look
 * the implementation up by name in every handshake.
 */
static pthread_once_t cipher_once = PTHREAD_ONCE_INIT;
static EVP_CIPHER *ticket_cipher;

static void fetch_cipher(void)
{
    ticket_cipher = EVP_CIPHER_fetch(NULL, "AES-256-CBC", NULL);
}

static const EVP_CIPHER *cipher(void)
{
    pthread_once(&cipher_once, fetch_cipher);
    return ticket_cipher ? ticket_cipher : EVP_aes_256_cbc();
}

static int set_hmac(EVP_MAC_CTX *hctx, unsigned char *key, size_t len)
{
    char digest[] = "SHA256";
    OSSL_PARAM params[3];
    params[0] = OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, key, len);
    params[1] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0);
    params[2] = OSSL_PARAM_construct_end();
    return EVP_MAC_CTX_set_params(hctx, params);
}

/*
 * SSL_CTX_set_tlsext_ticket_key_evp_cb callback. Encrypt: 1 done, -1 error
 * (no ticket is sent). Decrypt: 0 unknown key (full handshake), 2 done and the
 * client gets a fresh ticket under the current key: TLS 1.3 tickets are meant
 * to be used once (RFC 8446 §C.4), and a client that got none after resuming
 * falls back to a full handshake next time.
 */
int sy__tls_ticket_cb(SSL *ssl, unsigned char key_name[16], unsigned char *iv,
                      EVP_CIPHER_CTX *ectx, EVP_MAC_CTX *hctx, int enc)
{
    (void)ssl;
    struct ticket_key k;
    int rc;
    if (enc) {
        if (current_key(&k) < 0)
            return -1;
        const EVP_CIPHER *ciph = cipher();
        int ivlen = EVP_CIPHER_get_iv_length(ciph);
        memcpy(key_name, k.name, sizeof(k.name));
        rc = RAND_bytes(iv, ivlen) == 1 && EVP_EncryptInit_ex(ectx, ciph, NULL, k.aes, iv) == 1 &&
                     set_hmac(hctx, k.hmac, sizeof(k.hmac)) == 1
                 ? 1
                 : -1;
    } else {
        int age = find_key(key_name, &k);
        if (age < 0)
            return 0;
        rc = set_hmac(hctx, k.hmac, sizeof(k.hmac)) == 1 &&
                     EVP_DecryptInit_ex(ectx, cipher(), NULL, k.aes, iv) == 1
                 ? 2
                 : -1;
    }
    OPENSSL_cleanse(&k, sizeof(k));
    return rc;
}
