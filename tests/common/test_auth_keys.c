/*
 * common/sl_auth without a scheduler: the allow-list parser (good lines,
 * comments, each malformed line refused with its line number), the lookup
 * by role, the key files sluice keygen writes (modes, never overwritten)
 * and how a program finds its own pair in a key directory; the ZAP
 * handler's user-id check against the lists, before and after a reload.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "common/sl_auth.h"
#include "tests/support/sl_test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

static void s_pair(char *pub, char *sec)
{
    assert_int_equal(zmq_curve_keypair(pub, sec), 0);
}

static void test_list_parse(void **state)
{
    (void)state;
    char a[41], b[41], s[41], text[512], err[256];
    s_pair(a, s);
    s_pair(b, s);
    sl_auth_list_t *l = sl_auth_list_new();
    snprintf(text, sizeof(text), "# clients\n\n  %s   tenant-a  \r\n%s tenant-b", a, b);
    assert_int_equal(sl_auth_list_parse(l, SL_AUTH_CLIENT, text, err, sizeof(err)), SL_OK);
    assert_int_equal(sl_auth_list_count(l, SL_AUTH_CLIENT), 2);
    assert_int_equal(sl_auth_list_count(l, SL_AUTH_EXECUTOR), 0);
    bool other = true;
    assert_string_equal(sl_auth_list_find(l, SL_AUTH_CLIENT, a, &other), "tenant-a");
    assert_false(other);
    assert_string_equal(sl_auth_list_find(l, SL_AUTH_CLIENT, b, NULL), "tenant-b");
    assert_null(sl_auth_list_find(l, SL_AUTH_EXECUTOR, a, &other));
    assert_true(other); /* listed, but as a client */
    assert_null(sl_auth_list_find(l, SL_AUTH_CLIENT, "short", &other));
    assert_false(other);

    static const struct {
        const char *fmt;
        const char *want;
    } bad[] = {
        {"%s\n", "line 1: the key needs one tenant"},
        {"%s a:b\n", "line 1: the key needs one tenant"},
        {"%s two words\n", "line 1: the key needs one tenant"},
        {"# ok\nnot-a-key-at-all tenant %s\n", "line 2: 'not-a-key-at-all' is not a Z85"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        sl_auth_list_t *m = sl_auth_list_new();
        snprintf(text, sizeof(text), bad[i].fmt, a);
        assert_int_equal(sl_auth_list_parse(m, SL_AUTH_CLIENT, text, err, sizeof(err)),
                         SL_ERR_INVALID);
        if (!strstr(err, bad[i].want))
            fail_msg("case %zu: '%s' does not say '%s'", i, err, bad[i].want);
        assert_int_equal(sl_auth_list_count(m, SL_AUTH_CLIENT), 0);
        sl_auth_list_free(&m);
    }
    /* a key listed twice */
    snprintf(text, sizeof(text), "%s x\n%s y\n", a, a);
    sl_auth_list_t *m = sl_auth_list_new();
    assert_int_equal(sl_auth_list_parse(m, SL_AUTH_EXECUTOR, text, err, sizeof(err)),
                     SL_ERR_INVALID);
    assert_non_null(strstr(err, "is listed twice"));
    sl_auth_list_free(&m);
    sl_auth_list_free(&l);
    sl_auth_list_free(&l); /* NULL-safe */
}

static void test_keygen_and_setup(void **state)
{
    (void)state;
    char dir[] = "/tmp/sluice-auth-keys-XXXXXX", sub[128], path[256], pub[41];
    assert_non_null(mkdtemp(dir));
    snprintf(sub, sizeof(sub), "%s/a/b", dir); /* made like mkdir -p */
    assert_int_equal(sl_auth_keygen(sub, "server", pub), SL_OK);
    struct stat st;
    snprintf(path, sizeof(path), "%s/server.key", sub);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    sl_test_expect_error("exists; it is never overwritten");
    assert_int_equal(sl_auth_keygen(sub, "server", NULL), SL_ERR_EXISTS);
    sl_test_expect_error("is not a plain file name");
    assert_int_equal(sl_auth_keygen(sub, "../evil", NULL), SL_ERR_INVALID);

    sl_auth_keys_t *k = NULL;
    /* the scheduler's pair; its public key derived from the secret */
    assert_int_equal(sl_auth_keys_setup(sub, "", false, "server", "test", &k), SL_OK);
    assert_string_equal(k->public_key, pub);
    assert_string_equal(k->server_key, "");
    sl_auth_keys_free(&k);
    assert_null(k);
    /* a client: its one *.key (the host's name) and server.pub */
    assert_int_equal(sl_auth_keygen(dir, "host1", NULL), SL_OK);
    sl_test_expect_error("server.pub: No such file");
    assert_int_equal(sl_auth_keys_setup(dir, "", false, "client", "test", &k), SL_ERR_IO);
    snprintf(path, sizeof(path), "%s/server.pub", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "%s\n", pub);
    fclose(f);
    assert_int_equal(sl_auth_keys_setup(dir, "", false, "client", "test", &k), SL_OK);
    assert_string_equal(k->server_key, pub);
    sl_auth_keys_free(&k);
    /* two pairs: the role's own name wins; without it, the choice is refused */
    assert_int_equal(sl_auth_keygen(dir, "client", NULL), SL_OK);
    assert_int_equal(sl_auth_keys_setup(dir, "", false, "client", "test", &k), SL_OK);
    sl_auth_keys_free(&k);
    sl_test_expect_error("more than one secret key");
    assert_int_equal(sl_auth_keys_setup(dir, "", false, "executor", "test", &k), SL_ERR_INVALID);
    assert_int_equal(sl_auth_keys_setup(dir, "host1", false, "executor", "test", &k), SL_OK);
    sl_auth_keys_free(&k);
    /* insecure: no keys; neither: refused; both: refused */
    assert_int_equal(sl_auth_keys_setup("", "", true, "client", "test", &k), SL_OK);
    assert_null(k);
    sl_test_expect_error("no keys: give --key-dir DIR");
    assert_int_equal(sl_auth_keys_setup("", "", false, "client", "test", &k), SL_ERR_INVALID);
    sl_test_expect_error("exclude each other");
    assert_int_equal(sl_auth_keys_setup(dir, "", true, "client", "test", &k), SL_ERR_INVALID);
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

/* The user-id check the scheduler applies to every message. */
static void test_zap_check(void **state)
{
    (void)state;
    char dir[] = "/tmp/sluice-auth-zap-XXXXXX", path[256], user[160];
    char c[41], e[41], s[41];
    assert_non_null(mkdtemp(dir));
    s_pair(c, s);
    s_pair(e, s);
    snprintf(path, sizeof(path), "%s/clients.allow", dir);
    FILE *f = fopen(path, "w");
    fprintf(f, "%s tenant-a\n", c);
    fclose(f);
    snprintf(path, sizeof(path), "%s/executors.allow", dir);
    f = fopen(path, "w");
    fprintf(f, "%s gpu0\n", e);
    fclose(f);
    void *zctx = zmq_ctx_new();
    sl_auth_zap_t *z = NULL;
    assert_int_equal(sl_auth_zap_start(zctx, dir, &z), SL_OK);
    const char *label = NULL;
    size_t len = 0;
    bool wrong = true;
    snprintf(user, sizeof(user), "client:tenant-a:%s", c);
    assert_true(sl_auth_zap_check(z, user, SL_AUTH_CLIENT, &label, &len, &wrong));
    assert_int_equal(len, 8);
    assert_memory_equal(label, "tenant-a", 8);
    assert_false(sl_auth_zap_check(z, user, SL_AUTH_EXECUTOR, NULL, NULL, &wrong));
    assert_true(wrong);
    snprintf(user, sizeof(user), "executor:gpu0:%s", e);
    assert_true(sl_auth_zap_check(z, user, SL_AUTH_EXECUTOR, NULL, NULL, NULL));
    assert_false(sl_auth_zap_check(z, "", SL_AUTH_CLIENT, NULL, NULL, &wrong));
    assert_false(wrong);
    assert_false(sl_auth_zap_check(z, "client:x:short", SL_AUTH_CLIENT, NULL, NULL, NULL));
    /* revoke the client: its user id no longer passes; a bad file keeps the lists */
    snprintf(path, sizeof(path), "%s/clients.allow", dir);
    f = fopen(path, "w");
    fclose(f);
    assert_int_equal(sl_auth_zap_reload(z), SL_OK);
    snprintf(user, sizeof(user), "client:tenant-a:%s", c);
    assert_false(sl_auth_zap_check(z, user, SL_AUTH_CLIENT, NULL, NULL, &wrong));
    assert_false(wrong);
    snprintf(path, sizeof(path), "%s/executors.allow", dir);
    f = fopen(path, "w");
    fprintf(f, "garbage\n");
    fclose(f);
    sl_test_expect_error("executors.allow: line 1");
    assert_int_equal(sl_auth_zap_reload(z), SL_ERR_INVALID);
    snprintf(user, sizeof(user), "executor:gpu0:%s", e);
    assert_true(sl_auth_zap_check(z, user, SL_AUTH_EXECUTOR, NULL, NULL, NULL));
    uint64_t ctr[SL_AUTH_CTR_COUNT];
    sl_auth_zap_counters(z, ctr);
    assert_int_equal(ctr[SL_AUTH_CTR_RELOADS], 1);
    assert_int_equal(ctr[SL_AUTH_CTR_RELOAD_FAIL], 1);
    zmq_ctx_shutdown(zctx);
    sl_auth_zap_stop(&z);
    assert_null(z);
    zmq_ctx_term(zctx);
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_list_parse),
        cmocka_unit_test(test_keygen_and_setup),
        cmocka_unit_test(test_zap_check),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
