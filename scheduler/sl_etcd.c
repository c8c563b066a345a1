/*
 * etcd v3 over its JSON gateway.
 *
 * The idea. A leader lease needs five calls (grant, keepalive, revoke, a
 * put-if-absent transaction, a read), each one small request and one small
 * answer. etcd serves its gRPC API as JSON over HTTP/1.1 as well (the
 * gateway, on the client port), so libcurl and jansson, both Debian
 * packages, are the whole client: no gRPC stack, no code generated from
 * etcd's protos. Keys and values travel base64-encoded in that JSON; the
 * coding is here, so callers deal in text.
 *
 * Endpoints. A comma list; requests go to the endpoint that answered last,
 * and on a transport failure (refused, timed out) to the next, once round
 * the list per call. An HTTP error answer (etcd speaking, but refusing) is
 * a failure of the call, not of the endpoint.
 *
 * Alternatives rejected: etcd's gRPC API (a C gRPC stack is not packaged
 * for C in Debian, and HTTP/2 framing by hand is larger than this file);
 * the v2 API (removed from etcd 3.4's defaults, no transactions with
 * leases).
 */
#include "scheduler/sl_etcd.h"

#include <curl/curl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/sl_log.h"

#define S_ENDPOINTS_MAX 8
#define S_URL_MAX 256
#define S_BODY_MAX 65536

struct sl_etcd {
    CURL *curl;
    char urls[S_ENDPOINTS_MAX][S_URL_MAX];
    int nurls, cur;
    int timeout_ms;
    char *body; /* the last answer, NUL-terminated */
    size_t body_len;
    bool body_over; /* the answer did not fit S_BODY_MAX */
    sl_etcd_stats_t st;
};

static pthread_once_t s_curl_once = PTHREAD_ONCE_INIT;
static void s_curl_init(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* ---- base64 (RFC 4648, with padding), as the gateway codes bytes ------ */

static const char s_b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Encode n bytes of in into out (cap bytes, NUL-terminated); false when it
 * does not fit. */
static bool s_b64_enc(const uint8_t *in, size_t n, char *out, size_t cap)
{
    if ((n + 2) / 3 * 4 + 1 > cap)
        return false;
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < n)
            v |= in[i + 2];
        out[o++] = s_b64[(v >> 18) & 63];
        out[o++] = s_b64[(v >> 12) & 63];
        out[o++] = i + 1 < n ? s_b64[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < n ? s_b64[v & 63] : '=';
    }
    out[o] = '\0';
    return true;
}

static int s_b64_val(char c)
{
    const char *p = c ? strchr(s_b64, c) : NULL;
    return p ? (int)(p - s_b64) : -1;
}

/* Decode text into out (cap bytes, NUL-terminated); false when malformed
 * or too long. */
static bool s_b64_dec(const char *in, char *out, size_t cap)
{
    size_t n = strlen(in), o = 0;
    if (n % 4)
        return false;
    for (size_t i = 0; i < n; i += 4) {
        int v[4];
        for (int k = 0; k < 4; k++)
            v[k] = in[i + k] == '=' && k >= 2 ? 0 : s_b64_val(in[i + k]);
        if (v[0] < 0 || v[1] < 0 || v[2] < 0 || v[3] < 0)
            return false;
        uint32_t w =
            (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
        int bytes = in[i + 2] == '=' ? 1 : in[i + 3] == '=' ? 2 : 3;
        if (o + (size_t)bytes + 1 > cap)
            return false;
        out[o++] = (char)(w >> 16);
        if (bytes > 1)
            out[o++] = (char)(w >> 8);
        if (bytes > 2)
            out[o++] = (char)w;
    }
    out[o] = '\0';
    return strlen(out) == o; /* text only: no NUL inside */
}

/* ---- HTTP --------------------------------------------------------------- */

static size_t s_on_body(char *p, size_t size, size_t n, void *arg)
{
    sl_etcd_t *e = arg;
    size_t len = size * n;
    if (e->body_len + len >= S_BODY_MAX) {
        e->body_over = true;
        return len; /* read on, refuse it at the end */
    }
    memcpy(e->body + e->body_len, p, len);
    e->body_len += len;
    e->body[e->body_len] = '\0';
    return len;
}

/* POST json to path on the current endpoint, then the others; the answer
 * parsed into *ans_p (caller frees). */
static sl_status_t s_call(sl_etcd_t *e, const char *path, json_t *req, json_t **ans_p)
{
    char *text = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    if (!text)
        return SL_ERR_NOMEM;
    sl_status_t rc = SL_ERR_IO;
    for (int tries = 0; tries < e->nurls; tries++) {
        char url[S_URL_MAX + 64];
        snprintf(url, sizeof(url), "%s%s", e->urls[e->cur], path);
        e->body_len = 0;
        e->body[0] = '\0';
        e->body_over = false;
        curl_easy_setopt(e->curl, CURLOPT_URL, url);
        curl_easy_setopt(e->curl, CURLOPT_POSTFIELDS, text);
        e->st.requests++;
        CURLcode cc = curl_easy_perform(e->curl);
        long code = 0;
        curl_easy_getinfo(e->curl, CURLINFO_RESPONSE_CODE, &code);
        if (cc != CURLE_OK) {
            SL_DEBUG("etcd: %s: %s", url, curl_easy_strerror(cc));
            e->cur = (e->cur + 1) % e->nurls;
            e->st.failovers++;
            continue;
        }
        json_error_t jerr;
        json_t *ans = e->body_over ? NULL : json_loads(e->body, 0, &jerr);
        if (code != 200 || !ans || !json_is_object(ans)) {
            SL_WARN("etcd: %s answered %ld: %.200s", url, code,
                    e->body_over ? "(over the answer limit)" : e->body);
            json_decref(ans);
            rc = SL_ERR_IO;
            break;
        }
        *ans_p = ans;
        rc = SL_OK;
        break;
    }
    free(text);
    if (rc != SL_OK)
        e->st.failures++;
    return rc;
}

/* An int64 the gateway writes as a decimal string (or a number). */
static bool s_int(const json_t *o, const char *name, int64_t *v_p)
{
    const json_t *v = json_object_get(o, name);
    if (json_is_integer(v)) {
        *v_p = (int64_t)json_integer_value(v);
        return true;
    }
    if (json_is_string(v)) {
        char *end;
        long long x = strtoll(json_string_value(v), &end, 10);
        if (*end == '\0' && end != json_string_value(v)) {
            *v_p = (int64_t)x;
            return true;
        }
    }
    return false;
}

/* ---- public ------------------------------------------------------------- */

sl_status_t sl_etcd_create(const char *endpoints, int timeout_ms, sl_etcd_t **e_p)
{
    if (!endpoints || !e_p || timeout_ms <= 0)
        return SL_ERR_INVALID;
    pthread_once(&s_curl_once, s_curl_init);
    sl_etcd_t *e = calloc(1, sizeof(*e));
    if (!e)
        return SL_ERR_NOMEM;
    const char *p = endpoints;
    while (*p) {
        size_t len = strcspn(p, ",");
        while (len && (*p == ' ')) {
            p++;
            len--;
        }
        if (len) {
            if (e->nurls == S_ENDPOINTS_MAX || len >= S_URL_MAX) {
                SL_ERROR("etcd: endpoint list '%s': at most %d endpoints of %d bytes", endpoints,
                         S_ENDPOINTS_MAX, S_URL_MAX - 1);
                free(e);
                return SL_ERR_INVALID;
            }
            memcpy(e->urls[e->nurls], p, len);
            while (len && e->urls[e->nurls][len - 1] == '/')
                len--; /* "http://h:2379/" and "http://h:2379" alike */
            e->urls[e->nurls++][len] = '\0';
        }
        p += len;
        while (*p == ',' || *p == ' ' || *p == '/')
            p++;
    }
    if (e->nurls == 0) {
        free(e);
        return SL_ERR_INVALID;
    }
    e->timeout_ms = timeout_ms;
    e->body = malloc(S_BODY_MAX);
    e->curl = curl_easy_init();
    if (!e->body || !e->curl) {
        free(e->body);
        if (e->curl)
            curl_easy_cleanup(e->curl);
        free(e);
        return SL_ERR_NOMEM;
    }
    e->body[0] = '\0';
    curl_easy_setopt(e->curl, CURLOPT_WRITEFUNCTION, s_on_body);
    curl_easy_setopt(e->curl, CURLOPT_WRITEDATA, e);
    curl_easy_setopt(e->curl, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
    curl_easy_setopt(e->curl, CURLOPT_CONNECTTIMEOUT_MS, (long)timeout_ms);
    curl_easy_setopt(e->curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e->curl, CURLOPT_PROTOCOLS_STR, "http,https");
    *e_p = e;
    return SL_OK;
}

void sl_etcd_destroy(sl_etcd_t **e_p)
{
    if (!e_p || !*e_p)
        return;
    sl_etcd_t *e = *e_p;
    curl_easy_cleanup(e->curl);
    free(e->body);
    free(e);
    *e_p = NULL;
}

sl_status_t sl_etcd_lease_grant(sl_etcd_t *e, int ttl_s, int64_t *id_p, int *ttl_p)
{
    json_t *ans = NULL;
    sl_status_t rc =
        s_call(e, "/v3/lease/grant", json_pack("{s:I}", "TTL", (json_int_t)ttl_s), &ans);
    if (rc != SL_OK)
        return rc;
    int64_t id = 0, ttl = 0;
    if (!s_int(ans, "ID", &id) || !s_int(ans, "TTL", &ttl) || ttl <= 0) {
        SL_WARN("etcd: a lease grant without an ID and a TTL");
        rc = SL_ERR_MSG_MALFORMED;
    } else {
        *id_p = id;
        *ttl_p = (int)ttl;
    }
    json_decref(ans);
    return rc;
}

sl_status_t sl_etcd_lease_keepalive(sl_etcd_t *e, int64_t id, int *ttl_p)
{
    char idtxt[32];
    snprintf(idtxt, sizeof(idtxt), "%lld", (long long)id);
    json_t *ans = NULL;
    sl_status_t rc = s_call(e, "/v3/lease/keepalive", json_pack("{s:s}", "ID", idtxt), &ans);
    if (rc != SL_OK)
        return rc;
    /* the stream's one answer: {"result": {..., "TTL": "n"}}; an unknown
     * lease comes back without a TTL (0 left out of the JSON) */
    const json_t *res = json_object_get(ans, "result");
    int64_t ttl = 0;
    if (!json_is_object(res)) {
        SL_WARN("etcd: a keepalive answer without a result: %.200s", e->body);
        rc = SL_ERR_MSG_MALFORMED;
    } else {
        if (!s_int(res, "TTL", &ttl))
            ttl = 0;
        *ttl_p = ttl > 0 ? (int)ttl : 0;
    }
    json_decref(ans);
    return rc;
}

sl_status_t sl_etcd_lease_revoke(sl_etcd_t *e, int64_t id)
{
    char idtxt[32];
    snprintf(idtxt, sizeof(idtxt), "%lld", (long long)id);
    json_t *ans = NULL;
    sl_status_t rc = s_call(e, "/v3/lease/revoke", json_pack("{s:s}", "ID", idtxt), &ans);
    json_decref(ans);
    return rc;
}

/* The value of the first key-value of a range answer, decoded. */
static bool s_first_value(const json_t *range, char *value, size_t cap)
{
    const json_t *kv = json_array_get(json_object_get(range, "kvs"), 0);
    const json_t *v = json_object_get(kv, "value");
    if (!json_is_object(kv))
        return false;
    if (!v) { /* an empty value is left out */
        if (value && cap)
            value[0] = '\0';
        return true;
    }
    char tmp[SL_ETCD_VALUE_MAX + 1];
    if (!json_is_string(v) || !s_b64_dec(json_string_value(v), tmp, sizeof(tmp)))
        return false;
    if (value && cap)
        snprintf(value, cap, "%s", tmp);
    return true;
}

sl_status_t sl_etcd_put_if_absent(sl_etcd_t *e, const char *key, const char *value, int64_t lease,
                                  bool *won_p, char *holder, size_t cap)
{
    char k64[SL_ETCD_VALUE_MAX * 2], v64[SL_ETCD_VALUE_MAX * 2], idtxt[32];
    if (strlen(key) > SL_ETCD_VALUE_MAX || strlen(value) > SL_ETCD_VALUE_MAX ||
        !s_b64_enc((const uint8_t *)key, strlen(key), k64, sizeof(k64)) ||
        !s_b64_enc((const uint8_t *)value, strlen(value), v64, sizeof(v64)))
        return SL_ERR_INVALID;
    snprintf(idtxt, sizeof(idtxt), "%lld", (long long)lease);
    json_t *req = json_pack("{s:[{s:s, s:s, s:s, s:s}], s:[{s:{s:s, s:s, s:s}}], s:[{s:{s:s}}]}",
                            "compare", "key", k64, "target", "CREATE", "result", "EQUAL",
                            "create_revision", "0", "success", "request_put", "key", k64, "value",
                            v64, "lease", idtxt, "failure", "request_range", "key", k64);
    json_t *ans = NULL;
    sl_status_t rc = s_call(e, "/v3/kv/txn", req, &ans);
    if (rc != SL_OK)
        return rc;
    *won_p = json_is_true(json_object_get(ans, "succeeded"));
    if (!*won_p && holder && cap) {
        const json_t *r0 = json_array_get(json_object_get(ans, "responses"), 0);
        if (!s_first_value(json_object_get(r0, "response_range"), holder, cap))
            holder[0] = '\0'; /* gone between the compare and the read */
    }
    json_decref(ans);
    return SL_OK;
}

sl_status_t sl_etcd_get(sl_etcd_t *e, const char *key, char *value, size_t cap, bool *found_p)
{
    char k64[SL_ETCD_VALUE_MAX * 2];
    if (strlen(key) > SL_ETCD_VALUE_MAX ||
        !s_b64_enc((const uint8_t *)key, strlen(key), k64, sizeof(k64)))
        return SL_ERR_INVALID;
    json_t *ans = NULL;
    sl_status_t rc = s_call(e, "/v3/kv/range", json_pack("{s:s}", "key", k64), &ans);
    if (rc != SL_OK)
        return rc;
    *found_p = s_first_value(ans, value, cap);
    json_decref(ans);
    return SL_OK;
}

void sl_etcd_stats(const sl_etcd_t *e, sl_etcd_stats_t *st)
{
    *st = e->st;
}
