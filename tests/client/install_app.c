/*
 * The program a user builds against an installed libsluice: both install
 * checks compile it, through pkg-config (install_check.sh) and through
 * find_package(Sluice) (find_package_check.sh). It exits 0 when the library
 * links, starts a client and answers with the default backoff.
 */
#include <sluice/client.h>
#include <stdio.h>

int main(void)
{
    sl_client_cfg_t cfg;
    sl_client_t *c = NULL;
    sl_client_cfg_default(&cfg);
    cfg.insecure = true; /* nothing is sent: no keys needed */
    if (sl_client_create(&cfg, &c) != SL_OK)
        return 1;
    unsigned d = sl_backoff_delay_ms(&cfg.backoff, 1, 0, 0.0);
    sl_client_destroy(&c);
    printf("%u %s\n", d, sl_status_str(SL_ERR_RETRIES));
    return d == 2000 ? 0 : 1;
}
