/*
 * An example placement plugin for `sluice-scheduler --policy-path`:
 * the candidate with the shortest predicted time to first token, and
 * among executors the learned model cannot yet predict, the one with the
 * fewest jobs in flight per credit. Built on its own, against the
 * installed header only:
 *
 *   cc -shared -fPIC -O2 -I<prefix>/include shortest_ttft.c -o libshortest_ttft.so
 *   sluice-scheduler --policy-path ./libshortest_ttft.so ...
 *
 * SLUICE_POLICY_PIN=<name>, when set, places every job on the executor of
 * that name while it is a candidate (a test uses it to see which policy
 * placed a job); SLUICE_POLICY_BROKEN=1 answers out of range on purpose
 * (the scheduler then places with --policy and counts it).
 */
#include <sluice/policy.h>

#include <stdlib.h>
#include <string.h>

typedef struct state {
    const char *pin; /* SLUICE_POLICY_PIN or NULL */
    int broken;      /* SLUICE_POLICY_BROKEN=1 */
    unsigned long placed, observed;
} state_t;

static int s_init(uint64_t seed, void **state_p)
{
    (void)seed;
    state_t *s = calloc(1, sizeof(*s));
    if (!s)
        return -1;
    s->pin = getenv("SLUICE_POLICY_PIN");
    const char *b = getenv("SLUICE_POLICY_BROKEN");
    s->broken = b && strcmp(b, "1") == 0;
    *state_p = s;
    return 0;
}

static size_t s_place(void *state, const sl_policy_plugin_job_t *job,
                      const sl_policy_plugin_exec_t *cands, size_t n)
{
    state_t *s = state;
    (void)job;
    s->placed++;
    if (s->broken)
        return n; /* out of range */
    size_t best = 0;
    for (size_t i = 0; i < n; i++) {
        if (s->pin && strcmp(cands[i].name, s->pin) == 0)
            return i;
        const sl_policy_plugin_exec_t *c = &cands[i], *b = &cands[best];
        if (c->prediction_valid && b->prediction_valid) {
            if (c->predicted_ttft_s < b->predicted_ttft_s)
                best = i;
        } else if (c->prediction_valid != b->prediction_valid) {
            if (!c->prediction_valid)
                best = i; /* try the unknown one: its model learns */
        } else if ((double)c->inflight / (c->credits ? c->credits : 1) <
                   (double)b->inflight / (b->credits ? b->credits : 1)) {
            best = i;
        }
    }
    return best;
}

static void s_observe(void *state, const sl_policy_plugin_job_t *job,
                      const sl_policy_plugin_result_t *res)
{
    state_t *s = state;
    (void)job;
    (void)res;
    s->observed++;
}

static void s_fini(void *state)
{
    free(state);
}

static const sl_policy_plugin_t s_table = {.abi = SL_POLICY_PLUGIN_ABI,
                                           .name = "shortest-ttft",
                                           .init = s_init,
                                           .place = s_place,
                                           .observe = s_observe,
                                           .fini = s_fini};

const sl_policy_plugin_t *sl_policy_plugin_v1(void)
{
    return &s_table;
}
