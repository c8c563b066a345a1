/*
 * Authentication of the control plane: CURVE key pairs in a key directory,
 * the allow-lists that say whose keys are admitted and as what, and the ZAP
 * handler that applies them to every handshake on the scheduler's sockets.
 *
 * A key directory (--key-dir DIR) holds:
 *   NAME.key         a secret key, Z85, one line, mode 0600 (`sluice keygen`)
 *   NAME.pub         its public key, Z85, one line
 *   server.pub       the scheduler's public key (clients and executors)
 *   clients.allow    scheduler only: "<z85 public key> <tenant>" per line
 *   executors.allow  scheduler only: "<z85 public key> <name>" per line
 * Blank lines and lines starting with '#' are ignored in the allow-lists.
 * A program's own pair is NAME.key/NAME.pub with NAME from --key-name; when
 * that is empty, NAME is the program's role ("server" for the scheduler,
 * "executor", "client") if that pair exists, else the directory's one *.key
 * (so a host's key directory may name its pair after the host).
 *
 * The ZAP handler sets the user id of an admitted connection to
 * "client:<tenant>:<key>" or "executor:<name>:<key>"; ZeroMQ attaches it to
 * every message of the connection ("User-Id"), and sl_auth_zap_check reads
 * role, tenant and key back from it, against the lists as reloaded.
 */
#ifndef SL_AUTH_H
#define SL_AUTH_H

#include <sluice/status.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SL_AUTH_KEY_LEN 40   /* a Z85 key: 32 bytes as 40 characters */
#define SL_AUTH_LABEL_MAX 64 /* a tenant or executor name, with its terminator */
#define SL_AUTH_USER_MAX 128 /* "executor:" + label + ":" + key, terminated */
#define SL_AUTH_CLIENT_DOMAIN "sluice-clients"
#define SL_AUTH_EXECUTOR_DOMAIN "sluice-executors"

/* Who a key speaks for. */
typedef enum sl_auth_role {
    SL_AUTH_CLIENT = 0,   /* listed in clients.allow: may submit, cancel, ask status */
    SL_AUTH_EXECUTOR = 1, /* listed in executors.allow: may register and report */
} sl_auth_role_t;

/* A program's keys (Z85 strings). */
typedef struct sl_auth_keys {
    char public_key[SL_AUTH_KEY_LEN + 1]; /* its own public key */
    char secret_key[SL_AUTH_KEY_LEN + 1]; /* its own secret key */
    char server_key[SL_AUTH_KEY_LEN + 1]; /* the scheduler's public key ("" in the scheduler) */
} sl_auth_keys_t;

/* Write a new pair as dir/name.key (0600) and dir/name.pub; the directory
 * is created (0700) when missing. SL_ERR_EXISTS when dir/name.key exists
 * (never overwritten), SL_ERR_INVALID for a name that is not a plain file
 * name, SL_ERR_IO otherwise (logged). pub_out (41 bytes) gets the public key. */
sl_status_t sl_auth_keygen(const char *dir, const char *name, char *pub_out);

/*
 * A program's keys from its --key-dir / --key-name / --insecure knobs; role
 * is "server" (the scheduler), "executor" or "client" (the default NAME).
 * insecure: *keys_p = NULL and a WARN that the control plane is plain text;
 * key_dir set: *keys_p owns the keys read (server.pub too unless server);
 * neither: SL_ERR_INVALID with an error naming the two flags. key_dir and
 * insecure together are refused too (SL_ERR_INVALID). prog names the
 * program in the messages. Free with sl_auth_keys_free.
 */
sl_status_t sl_auth_keys_setup(const char *key_dir, const char *key_name, bool insecure,
                               const char *role, const char *prog, sl_auth_keys_t **keys_p);
void sl_auth_keys_free(sl_auth_keys_t **keys_p);

/* Make sock (not yet connected) a CURVE client with keys; NULL keys leave
 * it plain text. SL_ERR_IO (logged) when ZeroMQ refuses. */
sl_status_t sl_auth_sock_client(void *sock, const sl_auth_keys_t *keys);
/* Make sock (not yet bound) a CURVE server whose handshakes the ZAP
 * handler judges in domain; NULL keys leave it plain text. */
sl_status_t sl_auth_sock_server(void *sock, const sl_auth_keys_t *keys, const char *domain);

/* ---- allow-lists (pure) ---------------------------------------------- */

typedef struct sl_auth_list sl_auth_list_t;

/* Parse the text of clients.allow (role client) or executors.allow into
 * list (adding to what it holds). SL_ERR_INVALID with err naming the line
 * for a malformed line (a key that is not 40 Z85 characters, a missing or
 * too long label, a key listed twice). */
sl_status_t sl_auth_list_parse(sl_auth_list_t *list, sl_auth_role_t role, const char *text,
                               char *err, size_t err_len);
sl_auth_list_t *sl_auth_list_new(void);
/* Read dir/clients.allow and dir/executors.allow (a missing file is an
 * empty list). SL_ERR_INVALID or SL_ERR_IO (logged) and nothing made on error. */
sl_status_t sl_auth_list_load(const char *dir, sl_auth_list_t **list_p);
void sl_auth_list_free(sl_auth_list_t **list_p);
/* The label (tenant or name) of key in role, or NULL when key is not listed
 * in role; *other_p (may be NULL) says whether it is listed in the other one. */
const char *sl_auth_list_find(const sl_auth_list_t *list, sl_auth_role_t role, const char *key,
                              bool *other_p);
size_t sl_auth_list_count(const sl_auth_list_t *list, sl_auth_role_t role);

/* ---- the ZAP handler ------------------------------------------------- */

/* Its counters (sl_auth_zap_counters). */
typedef enum sl_auth_ctr {
    SL_AUTH_CTR_ADMITTED,    /* handshakes admitted */
    SL_AUTH_CTR_UNKNOWN_KEY, /* denied: the key is in no allow-list */
    SL_AUTH_CTR_WRONG_ROLE,  /* denied: a client key on the executor port, or the reverse */
    SL_AUTH_CTR_BAD_REQUEST, /* denied: not CURVE, an unknown domain, a malformed request */
    SL_AUTH_CTR_RELOADS,     /* allow-lists reloaded */
    SL_AUTH_CTR_RELOAD_FAIL, /* reloads refused (the lists in force were kept) */
    SL_AUTH_CTR_COUNT,
} sl_auth_ctr_t;

extern const char *const sl_auth_ctr_names[SL_AUTH_CTR_COUNT];

typedef struct sl_auth_zap sl_auth_zap_t;

/* Read the allow-lists of dir and start the handler thread on
 * inproc://zeromq.zap.01 of zctx (before any CURVE server socket binds).
 * Stop it with sl_auth_zap_stop after zmq_ctx_shutdown(zctx). */
sl_status_t sl_auth_zap_start(void *zctx, const char *dir, sl_auth_zap_t **zap_p);
/* Read the allow-lists again; on error the lists in force stay (logged). */
sl_status_t sl_auth_zap_reload(sl_auth_zap_t *zap);
/*
 * Whether the sender of a message whose "User-Id" is user may speak as role
 * under the lists in force now (a key revoked since its handshake may not).
 * On true, *label_p (may be NULL) points into user at the tenant or name
 * (len in *label_len_p); *wrong_role_p (may be NULL) says, on false, that
 * the key is valid but of the other role.
 */
bool sl_auth_zap_check(sl_auth_zap_t *zap, const char *user, sl_auth_role_t role,
                       const char **label_p, size_t *label_len_p, bool *wrong_role_p);
void sl_auth_zap_counters(const sl_auth_zap_t *zap, uint64_t out[SL_AUTH_CTR_COUNT]);
/* Join the thread (its socket sees ETERM once the context is shut down). NULL-safe. */
void sl_auth_zap_stop(sl_auth_zap_t **zap_p);

#endif
