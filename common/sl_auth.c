/*
 * Keys, allow-lists and the ZAP handler (see sl_auth.h).
 *
 * ZeroMQ's CURVE proves that a peer holds the secret of the public key it
 * presents, but a CURVE server without a ZAP handler admits any key. So the
 * scheduler runs this handler: a thread with a REP socket on
 * inproc://zeromq.zap.01 that ZeroMQ asks, synchronously, once per
 * handshake. It admits a key only when the allow-list of the socket's
 * domain lists it (clients.allow on the client port, executors.allow on the
 * executor port, so a client key can never register as an executor) and
 * names the connection "<role>:<label>:<key>" (the key last: Z85 has ':'
 * in its alphabet, the role and the label have none). The label is the tenant a
 * client speaks for, so the tenant comes from the key and not from
 * anything the client sends.
 *
 * ZeroMQ does not authenticate a live connection again, so a key revoked
 * by a reload (SIGHUP) would keep its connection; sl_auth_zap_check lets
 * the scheduler test every message's user id against the lists in force,
 * so a revoked key's messages stop at once and its next handshake fails.
 *
 * The lists are shared by the handler thread and the scheduler's thread
 * (which reloads them and checks each message): one mutex, held for a
 * binary search. Handing the handler a copy over a socket was rejected:
 * the scheduler needs the lists too, and two copies can disagree during a
 * reload. The lists are sorted arrays searched by key, small enough that a
 * hash map would buy nothing.
 */
#include "common/sl_auth.h"

#include "common/sl_log.h"
#include "common/sl_file.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

const char *const sl_auth_ctr_names[SL_AUTH_CTR_COUNT] = {
    "auth_admitted", "auth_denied_unknown_key", "auth_denied_wrong_role", "auth_denied_bad_request",
    "auth_reloads",  "auth_reload_failed",
};

/* ---- files ---- */

static bool s_plain_name(const char *name)
{
    if (!name || !*name || name[0] == '.' || strlen(name) >= SL_AUTH_LABEL_MAX)
        return false;
    for (const char *p = name; *p; p++)
        if (!strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-", *p))
            return false;
    return true;
}

/* Whether key is 40 characters of Z85 that decode to 32 bytes. */
static bool s_key_valid(const char *key, size_t len)
{
    if (len != SL_AUTH_KEY_LEN)
        return false;
    char z[SL_AUTH_KEY_LEN + 1];
    uint8_t raw[32];
    memcpy(z, key, SL_AUTH_KEY_LEN);
    z[SL_AUTH_KEY_LEN] = '\0';
    return zmq_z85_decode(raw, z) != NULL;
}

static sl_status_t s_write_file(const char *path, const char *text, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, mode);
    if (fd < 0) {
        if (errno == EEXIST)
            return SL_ERR_EXISTS;
        SL_ERROR("cannot create %s: %m", path);
        return SL_ERR_IO;
    }
    size_t len = strlen(text);
    ssize_t n = write(fd, text, len);
    if (n != (ssize_t)len || fsync(fd) != 0) {
        SL_ERROR("cannot write %s: %m", path);
        close(fd);
        unlink(path);
        return SL_ERR_IO;
    }
    close(fd);
    return SL_OK;
}

sl_status_t sl_auth_keygen(const char *dir, const char *name, char *pub_out)
{
    char pub[SL_AUTH_KEY_LEN + 1], sec[SL_AUTH_KEY_LEN + 1], path[4096], line[64];
    if (!s_plain_name(name)) {
        SL_ERROR("keygen: '%s' is not a plain file name (letters, digits, '.', '_', '-')",
                 name ? name : "");
        return SL_ERR_INVALID;
    }
    snprintf(path, sizeof(path), "%s", dir);
    for (char *p = path + 1;; p++) { /* like mkdir -p */
        char c = *p;
        if (c != '/' && c != '\0')
            continue;
        *p = '\0';
        if (mkdir(path, 0700) != 0 && errno != EEXIST) {
            SL_ERROR("keygen: cannot create %s: %m", path);
            return SL_ERR_IO;
        }
        *p = c;
        if (!c)
            break;
    }
    if (zmq_curve_keypair(pub, sec) != 0) {
        SL_ERROR("keygen: zmq_curve_keypair: %s (ZeroMQ without CURVE?)", zmq_strerror(errno));
        return SL_ERR_UNSUPPORTED;
    }
    snprintf(path, sizeof(path), "%s/%s.key", dir, name);
    snprintf(line, sizeof(line), "%s\n", sec);
    sl_status_t st = s_write_file(path, line, 0600);
    if (st == SL_ERR_EXISTS)
        SL_ERROR("keygen: %s exists; it is never overwritten", path);
    if (st != SL_OK)
        return st;
    snprintf(path, sizeof(path), "%s/%s.pub", dir, name);
    snprintf(line, sizeof(line), "%s\n", pub);
    unlink(path); /* a stale public key of a removed secret */
    if ((st = s_write_file(path, line, 0644)) != SL_OK) {
        snprintf(path, sizeof(path), "%s/%s.key", dir, name);
        unlink(path);
        return st == SL_ERR_EXISTS ? SL_ERR_IO : st;
    }
    if (pub_out)
        memcpy(pub_out, pub, sizeof(pub));
    return SL_OK;
}

/* Read one key (the first line of path, blanks trimmed) into out (41 bytes). */
static sl_status_t s_read_key(const char *path, char *out)
{
    char buf[256];
    FILE *f = fopen(path, "r");
    if (!f) {
        SL_ERROR("cannot read the key %s: %m", path);
        return SL_ERR_IO;
    }
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = buf;
    while (*p == ' ' || *p == '\t')
        p++;
    size_t len = strcspn(p, " \t\r\n");
    if (!s_key_valid(p, len)) {
        SL_ERROR("%s does not hold a Z85 key (40 characters)", path);
        return SL_ERR_INVALID;
    }
    memcpy(out, p, SL_AUTH_KEY_LEN);
    out[SL_AUTH_KEY_LEN] = '\0';
    return SL_OK;
}

/* The one NAME of a NAME.key in dir; SL_ERR_NOT_FOUND or SL_ERR_EXISTS (several). */
static sl_status_t s_sole_key(const char *dir, char *name, size_t len)
{
    DIR *d = opendir(dir);
    if (!d) {
        SL_ERROR("cannot open the key directory %s: %m", dir);
        return SL_ERR_IO;
    }
    int found = 0;
    for (struct dirent *e; (e = readdir(d));) {
        size_t l = strlen(e->d_name);
        if (l <= 4 || strcmp(e->d_name + l - 4, ".key") != 0 || e->d_name[0] == '.')
            continue;
        if (found++ == 0)
            snprintf(name, len, "%.*s", (int)(l - 4), e->d_name);
    }
    closedir(d);
    if (found == 1)
        return SL_OK;
    SL_ERROR("%s holds %s secret key (*.key): name the one to use with --key-name", dir,
             found ? "more than one" : "no");
    return found ? SL_ERR_EXISTS : SL_ERR_NOT_FOUND;
}

sl_status_t sl_auth_keys_setup(const char *key_dir, const char *key_name, bool insecure,
                               const char *role, const char *prog, sl_auth_keys_t **keys_p)
{
    bool have_dir = key_dir && *key_dir, server = strcmp(role, "server") == 0;
    *keys_p = NULL;
    if (insecure && have_dir) {
        SL_ERROR("%s: --key-dir and --insecure exclude each other", prog);
        return SL_ERR_INVALID;
    }
    if (insecure) {
        SL_WARN("%s: --insecure: the control plane is plain text and unauthenticated; anyone "
                "who reaches the scheduler's ports can %s",
                prog,
                server ? "submit under any tenant and register as an executor"
                       : "read and forge this program's messages");
        return SL_OK;
    }
    if (!have_dir) {
        SL_ERROR("%s: no keys: give --key-dir DIR (see `sluice keygen`), or --insecure to run "
                 "without authentication",
                 prog);
        return SL_ERR_INVALID;
    }
    char name[SL_AUTH_LABEL_MAX], path[4096];
    sl_status_t st = SL_OK;
    snprintf(path, sizeof(path), "%s/%s.key", key_dir, role);
    if (key_name && *key_name)
        snprintf(name, sizeof(name), "%s", key_name);
    else if (server || access(path, F_OK) == 0)
        snprintf(name, sizeof(name), "%s", role);
    else if ((st = s_sole_key(key_dir, name, sizeof(name))) != SL_OK)
        return st == SL_ERR_IO ? SL_ERR_IO : SL_ERR_INVALID;
    if (!s_plain_name(name)) {
        SL_ERROR("%s: --key-name '%s' is not a plain file name", prog, name);
        return SL_ERR_INVALID;
    }
    sl_auth_keys_t *k = calloc(1, sizeof(*k));
    if (!k)
        return SL_ERR_NOMEM;
    snprintf(path, sizeof(path), "%s/%s.key", key_dir, name);
    if ((st = s_read_key(path, k->secret_key)) != SL_OK)
        goto err_free;
    if (zmq_curve_public(k->public_key, k->secret_key) != 0) {
        SL_ERROR("%s: cannot derive the public key of %s: %s", prog, path, zmq_strerror(errno));
        st = SL_ERR_INVALID;
        goto err_free;
    }
    if (!server) {
        snprintf(path, sizeof(path), "%s/server.pub", key_dir);
        if ((st = s_read_key(path, k->server_key)) != SL_OK)
            goto err_free;
    }
    SL_INFO("%s: CURVE keys from %s (own key %s.key, public %.8s...)", prog, key_dir, name,
            k->public_key);
    *keys_p = k;
    return SL_OK;
err_free:
    free(k);
    return st;
}

void sl_auth_keys_free(sl_auth_keys_t **keys_p)
{
    if (!keys_p || !*keys_p)
        return;
    memset(*keys_p, 0, sizeof(**keys_p)); /* the secret does not linger in freed memory */
    free(*keys_p);
    *keys_p = NULL;
}

sl_status_t sl_auth_sock_client(void *sock, const sl_auth_keys_t *keys)
{
    if (!keys)
        return SL_OK;
    if (zmq_setsockopt(sock, ZMQ_CURVE_SERVERKEY, keys->server_key, SL_AUTH_KEY_LEN) != 0 ||
        zmq_setsockopt(sock, ZMQ_CURVE_PUBLICKEY, keys->public_key, SL_AUTH_KEY_LEN) != 0 ||
        zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, keys->secret_key, SL_AUTH_KEY_LEN) != 0) {
        SL_ERROR("cannot make the socket a CURVE client: %s", zmq_strerror(errno));
        return SL_ERR_IO;
    }
    return SL_OK;
}

sl_status_t sl_auth_sock_server(void *sock, const sl_auth_keys_t *keys, const char *domain)
{
    if (!keys)
        return SL_OK;
    int one = 1;
    if (zmq_setsockopt(sock, ZMQ_CURVE_SERVER, &one, sizeof(one)) != 0 ||
        zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, keys->secret_key, SL_AUTH_KEY_LEN) != 0 ||
        zmq_setsockopt(sock, ZMQ_ZAP_DOMAIN, domain, strlen(domain)) != 0) {
        SL_ERROR("cannot make the socket a CURVE server: %s", zmq_strerror(errno));
        return SL_ERR_IO;
    }
    return SL_OK;
}

/* ---- allow-lists ---- */

typedef struct s_entry {
    char key[SL_AUTH_KEY_LEN + 1]; /* Z85 public key */
    char label[SL_AUTH_LABEL_MAX]; /* tenant or executor name */
} s_entry_t;

struct sl_auth_list {
    s_entry_t *e[2]; /* per role, sorted by key */
    size_t n[2];     /* entries */
    size_t cap[2];   /* room */
};

static int s_entry_cmp(const void *a, const void *b)
{
    return strcmp(((const s_entry_t *)a)->key, ((const s_entry_t *)b)->key);
}

static const s_entry_t *s_find(const sl_auth_list_t *l, int role, const char *key)
{
    s_entry_t probe;
    if (strlen(key) != SL_AUTH_KEY_LEN)
        return NULL;
    memcpy(probe.key, key, SL_AUTH_KEY_LEN + 1);
    return l->n[role] ? bsearch(&probe, l->e[role], l->n[role], sizeof(s_entry_t), s_entry_cmp)
                      : NULL;
}

sl_auth_list_t *sl_auth_list_new(void)
{
    return calloc(1, sizeof(sl_auth_list_t));
}

void sl_auth_list_free(sl_auth_list_t **list_p)
{
    if (!list_p || !*list_p)
        return;
    free((*list_p)->e[0]);
    free((*list_p)->e[1]);
    free(*list_p);
    *list_p = NULL;
}

sl_status_t sl_auth_list_parse(sl_auth_list_t *l, sl_auth_role_t role, const char *text, char *err,
                               size_t err_len)
{
    int r = role == SL_AUTH_EXECUTOR;
    size_t first = l->n[r];
    unsigned lineno = 0;
    for (const char *p = text; p && *p;) {
        const char *end = strchr(p, '\n');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        const char *line = p;
        p = end ? end + 1 : NULL;
        lineno++;
        while (len && (*line == ' ' || *line == '\t')) {
            line++;
            len--;
        }
        while (len && strchr(" \t\r", line[len - 1]))
            len--;
        if (!len || line[0] == '#')
            continue;
        size_t klen = strcspn(line, " \t");
        if (klen > len)
            klen = len;
        const char *lab = line + klen;
        size_t llen = len - klen;
        while (llen && (*lab == ' ' || *lab == '\t')) {
            lab++;
            llen--;
        }
        if (!s_key_valid(line, klen)) {
            snprintf(err, err_len, "line %u: '%.*s' is not a Z85 public key (40 characters)",
                     lineno, (int)(klen > 48 ? 48 : klen), line);
            goto err_undo;
        }
        if (!llen || llen >= SL_AUTH_LABEL_MAX || memchr(lab, ':', llen) ||
            strcspn(lab, " \t") < llen) {
            snprintf(err, err_len,
                     "line %u: the key needs one %s (1..%d characters, no ':' "
                     "or blank) after it",
                     lineno, r ? "executor name" : "tenant", SL_AUTH_LABEL_MAX - 1);
            goto err_undo;
        }
        if (l->n[r] == l->cap[r]) {
            size_t cap = l->cap[r] ? l->cap[r] * 2 : 16;
            s_entry_t *g = realloc(l->e[r], cap * sizeof(*g));
            if (!g) {
                snprintf(err, err_len, "out of memory");
                goto err_undo;
            }
            l->e[r] = g;
            l->cap[r] = cap;
        }
        s_entry_t *e = &l->e[r][l->n[r]++];
        memcpy(e->key, line, SL_AUTH_KEY_LEN);
        e->key[SL_AUTH_KEY_LEN] = '\0';
        memcpy(e->label, lab, llen);
        e->label[llen] = '\0';
    }
    if (l->n[r] > 1) /* an empty list has no array yet */
        qsort(l->e[r], l->n[r], sizeof(s_entry_t), s_entry_cmp);
    for (size_t i = 1; i < l->n[r]; i++)
        if (strcmp(l->e[r][i - 1].key, l->e[r][i].key) == 0) {
            snprintf(err, err_len, "the key %s is listed twice", l->e[r][i].key);
            goto err_undo;
        }
    return SL_OK;
err_undo:
    l->n[r] = first; /* sorting may have mixed the new entries in: drop the role's list */
    if (first) {
        l->n[r] = 0;
        snprintf(err + strlen(err), err_len - strlen(err), " (the list is dropped)");
    }
    return SL_ERR_INVALID;
}

static sl_status_t s_load_file(sl_auth_list_t *l, sl_auth_role_t role, const char *dir,
                               const char *file)
{
    char path[4096], err[256];
    snprintf(path, sizeof(path), "%s/%s", dir, file);
    char *text = NULL;
    size_t n = 0;
    sl_status_t st = sl_file_read(path, &text, &n);
    if (st == SL_ERR_NOT_FOUND)
        return SL_OK;
    if (st == SL_ERR_IO)
        SL_ERROR("cannot read %s: %m", path);
    if (st != SL_OK)
        return st;
    st = sl_auth_list_parse(l, role, text, err, sizeof(err));
    free(text);
    if (st != SL_OK)
        SL_ERROR("%s: %s", path, err);
    return st;
}

sl_status_t sl_auth_list_load(const char *dir, sl_auth_list_t **list_p)
{
    sl_auth_list_t *l = sl_auth_list_new();
    if (!l)
        return SL_ERR_NOMEM;
    sl_status_t st = s_load_file(l, SL_AUTH_CLIENT, dir, "clients.allow");
    if (st == SL_OK)
        st = s_load_file(l, SL_AUTH_EXECUTOR, dir, "executors.allow");
    if (st != SL_OK) {
        sl_auth_list_free(&l);
        return st;
    }
    *list_p = l;
    return SL_OK;
}

const char *sl_auth_list_find(const sl_auth_list_t *list, sl_auth_role_t role, const char *key,
                              bool *other_p)
{
    int r = role == SL_AUTH_EXECUTOR;
    const s_entry_t *e = s_find(list, r, key);
    if (other_p)
        *other_p = !e && s_find(list, !r, key);
    return e ? e->label : NULL;
}

size_t sl_auth_list_count(const sl_auth_list_t *list, sl_auth_role_t role)
{
    return list->n[role == SL_AUTH_EXECUTOR];
}

/* ---- the ZAP handler ---- */

struct sl_auth_zap {
    char dir[4096];                          /* the key directory */
    void *rep;                               /* REP on inproc://zeromq.zap.01 (the thread's) */
    pthread_t thread;                        /* the handler */
    pthread_mutex_t lock;                    /* guards list (see the design comment) */
    sl_auth_list_t *list;                    /* the allow-lists in force */
    _Atomic uint64_t ctr[SL_AUTH_CTR_COUNT]; /* counters */
    uint64_t denials_logged;                 /* denials seen (the thread's own) */
};

/* Receive the frames of one request (at most 8 kept). Returns the count, or -1 on ETERM. */
static int s_zap_recv(void *rep, zmq_msg_t *f, int max)
{
    int n = 0, more = 1;
    while (more) {
        zmq_msg_t part;
        zmq_msg_init(&part);
        if (zmq_msg_recv(&part, rep, 0) < 0) {
            zmq_msg_close(&part);
            if (errno == EINTR && n == 0)
                return 0;
            for (int i = 0; i < n && i < max; i++)
                zmq_msg_close(&f[i]);
            return errno == ETERM ? -1 : 0;
        }
        more = zmq_msg_more(&part);
        if (n < max) {
            f[n] = part;
        } else {
            zmq_msg_close(&part);
        }
        n++;
    }
    return n > max ? max : n;
}

static void s_zap_send(void *rep, const zmq_msg_t *reqid, const char *code, const char *text,
                       const char *user)
{
    zmq_send(rep, "1.0", 3, ZMQ_SNDMORE);
    zmq_send(rep, zmq_msg_data((zmq_msg_t *)reqid), zmq_msg_size((zmq_msg_t *)reqid), ZMQ_SNDMORE);
    zmq_send(rep, code, strlen(code), ZMQ_SNDMORE);
    zmq_send(rep, text, strlen(text), ZMQ_SNDMORE);
    zmq_send(rep, user, strlen(user), ZMQ_SNDMORE);
    zmq_send(rep, "", 0, 0);
}

static bool s_frame_is(zmq_msg_t *m, const char *s)
{
    size_t n = strlen(s);
    return zmq_msg_size(m) == n && memcmp(zmq_msg_data(m), s, n) == 0;
}

/* Judge one request: frames version, request id, domain, address, routing
 * id, mechanism, credentials (RFC 27). */
static void s_zap_judge(sl_auth_zap_t *z, zmq_msg_t *f, int n)
{
    char user[SL_AUTH_USER_MAX] = "", key[SL_AUTH_KEY_LEN + 1];
    if (n < 2) /* no request id to answer with: ZeroMQ never sends this */
        return;
    bool client = n >= 3 && s_frame_is(&f[2], SL_AUTH_CLIENT_DOMAIN);
    bool executor = n >= 3 && s_frame_is(&f[2], SL_AUTH_EXECUTOR_DOMAIN);
    if (n != 7 || !s_frame_is(&f[0], "1.0") || (!client && !executor) ||
        !s_frame_is(&f[5], "CURVE") || zmq_msg_size(&f[6]) != 32) {
        atomic_fetch_add(&z->ctr[SL_AUTH_CTR_BAD_REQUEST], 1);
        s_zap_send(z->rep, &f[1], "400", "not a CURVE handshake on a sluice socket", "");
        return;
    }
    zmq_z85_encode(key, zmq_msg_data(&f[6]), 32);
    sl_auth_role_t role = executor ? SL_AUTH_EXECUTOR : SL_AUTH_CLIENT;
    bool other = false;
    pthread_mutex_lock(&z->lock);
    const char *label = sl_auth_list_find(z->list, role, key, &other);
    if (label)
        snprintf(user, sizeof(user), "%s:%s:%s", executor ? "executor" : "client", label, key);
    pthread_mutex_unlock(&z->lock);
    if (label) {
        atomic_fetch_add(&z->ctr[SL_AUTH_CTR_ADMITTED], 1);
        s_zap_send(z->rep, &f[1], "200", "OK", user);
        return;
    }
    atomic_fetch_add(&z->ctr[other ? SL_AUTH_CTR_WRONG_ROLE : SL_AUTH_CTR_UNKNOWN_KEY], 1);
    /* A refused peer reconnects and is refused again: the first denials
     * are logged, then one in 1000 (the counters have them all). */
    uint64_t denials = ++z->denials_logged;
    if (denials <= 20 || denials % 1000 == 0)
        SL_WARN("auth: %s key %.8s... refused on the %s port", other ? "a valid" : "an unknown",
                key, executor ? "executor" : "client");
    s_zap_send(z->rep, &f[1], "400", other ? "key of the other role" : "unknown key", "");
}

static void *s_zap_main(void *arg)
{
    sl_auth_zap_t *z = arg;
    zmq_msg_t f[8];
    for (;;) {
        int n = s_zap_recv(z->rep, f, 8);
        if (n < 0)
            break;
        if (n == 0)
            continue;
        s_zap_judge(z, f, n);
        for (int i = 0; i < n; i++)
            zmq_msg_close(&f[i]);
    }
    zmq_close(z->rep);
    return NULL;
}

sl_status_t sl_auth_zap_start(void *zctx, const char *dir, sl_auth_zap_t **zap_p)
{
    sl_auth_zap_t *z = calloc(1, sizeof(*z));
    if (!z)
        return SL_ERR_NOMEM;
    snprintf(z->dir, sizeof(z->dir), "%s", dir);
    sl_status_t st = sl_auth_list_load(dir, &z->list);
    if (st != SL_OK)
        goto err_free;
    st = SL_ERR_IO;
    int zero = 0;
    z->rep = zmq_socket(zctx, ZMQ_REP);
    if (!z->rep || zmq_setsockopt(z->rep, ZMQ_LINGER, &zero, sizeof(zero)) != 0 ||
        zmq_bind(z->rep, "inproc://zeromq.zap.01") != 0) {
        SL_ERROR("auth: cannot bind the ZAP handler: %s", zmq_strerror(errno));
        goto err_close;
    }
    pthread_mutex_init(&z->lock, NULL);
    if (pthread_create(&z->thread, NULL, s_zap_main, z) != 0) {
        SL_ERROR("auth: cannot start the ZAP thread: %m");
        pthread_mutex_destroy(&z->lock);
        goto err_close;
    }
    SL_INFO("auth: CURVE with ZAP; %zu client key(s), %zu executor key(s) allowed",
            sl_auth_list_count(z->list, SL_AUTH_CLIENT),
            sl_auth_list_count(z->list, SL_AUTH_EXECUTOR));
    *zap_p = z;
    return SL_OK;
err_close:
    if (z->rep)
        zmq_close(z->rep);
    sl_auth_list_free(&z->list);
err_free:
    free(z);
    return st;
}

sl_status_t sl_auth_zap_reload(sl_auth_zap_t *z)
{
    sl_auth_list_t *l = NULL;
    sl_status_t st = sl_auth_list_load(z->dir, &l);
    if (st != SL_OK) {
        atomic_fetch_add(&z->ctr[SL_AUTH_CTR_RELOAD_FAIL], 1);
        SL_WARN("auth: the allow-lists of %s were not reloaded; the ones in force stay", z->dir);
        return st;
    }
    pthread_mutex_lock(&z->lock);
    sl_auth_list_t *old = z->list;
    z->list = l;
    pthread_mutex_unlock(&z->lock);
    sl_auth_list_free(&old);
    atomic_fetch_add(&z->ctr[SL_AUTH_CTR_RELOADS], 1);
    SL_INFO("auth: allow-lists reloaded: %zu client key(s), %zu executor key(s)",
            sl_auth_list_count(l, SL_AUTH_CLIENT), sl_auth_list_count(l, SL_AUTH_EXECUTOR));
    return SL_OK;
}

bool sl_auth_zap_check(sl_auth_zap_t *z, const char *user, sl_auth_role_t role,
                       const char **label_p, size_t *label_len_p, bool *wrong_role_p)
{
    if (wrong_role_p)
        *wrong_role_p = false;
    /* The key is the last 40 characters (Z85 has ':' in its alphabet); the
     * role and the label have none. */
    size_t len = strlen(user);
    const char *c1 = strchr(user, ':');
    const char *c2 = len > SL_AUTH_KEY_LEN ? user + len - SL_AUTH_KEY_LEN - 1 : NULL;
    if (!c1 || !c2 || c2 <= c1 || *c2 != ':')
        return false;
    bool exec = (size_t)(c1 - user) == 8 && memcmp(user, "executor", 8) == 0;
    bool client = (size_t)(c1 - user) == 6 && memcmp(user, "client", 6) == 0;
    if (!exec && !client)
        return false;
    sl_auth_role_t has = exec ? SL_AUTH_EXECUTOR : SL_AUTH_CLIENT;
    pthread_mutex_lock(&z->lock);
    bool listed = sl_auth_list_find(z->list, has, c2 + 1, NULL) != NULL;
    pthread_mutex_unlock(&z->lock);
    if (!listed)
        return false;
    if (has != role) {
        if (wrong_role_p)
            *wrong_role_p = true;
        return false;
    }
    if (label_p)
        *label_p = c1 + 1;
    if (label_len_p)
        *label_len_p = (size_t)(c2 - c1 - 1);
    return true;
}

void sl_auth_zap_counters(const sl_auth_zap_t *z, uint64_t out[SL_AUTH_CTR_COUNT])
{
    for (int i = 0; i < SL_AUTH_CTR_COUNT; i++)
        out[i] = z ? atomic_load(&((sl_auth_zap_t *)z)->ctr[i]) : 0;
}

void sl_auth_zap_stop(sl_auth_zap_t **zap_p)
{
    if (!zap_p || !*zap_p)
        return;
    sl_auth_zap_t *z = *zap_p;
    pthread_join(z->thread, NULL);
    pthread_mutex_destroy(&z->lock);
    sl_auth_list_free(&z->list);
    free(z);
    *zap_p = NULL;
}
