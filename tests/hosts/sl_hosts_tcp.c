/*
 * sl-hosts-tcp: the smallest TCP sender, receiver and connect check the
 * bed's tests need (the machines have neither nc nor iperf).
 *
 *   sl-hosts-tcp recv PORT                      accept connections forever; per
 *                                               connection that carried data, print
 *                                               "bytes=B seconds=S mbit_s=R" at its EOF
 *                                               (R after a warm-up of S_WARMUP_S)
 *   sl-hosts-tcp send ADDR PORT SECONDS [TOS]   connect (retrying for connect-ms), mark
 *                                               the socket with IP_TOS, write for SECONDS,
 *                                               close; print "bytes=B"
 *   sl-hosts-tcp connect ADDR PORT TIMEOUT_MS   exit 0 when a connection opens within
 *                                               TIMEOUT_MS, 1 otherwise
 *
 * The receiver measures the rate from its first byte to EOF, so the
 * sender's socket buffer, still draining after the sender stops, counts at
 * the rate it drains at: the link's; the first S_WARMUP_S seconds (slow
 * start, the shaper's first burst) are left out of the rate when the
 * transfer lasted more than twice that. It serves connections with poll(2) so
 * that a connect check is answered while a transfer runs. Rejected: timing
 * at the sender, which counts bytes written into its socket buffer, not
 * bytes that crossed the link.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define S_MAX_CONNS 64
#define S_BUF (256u << 10)
#define S_CONNECT_RETRY_MS 5000 /* send: how long to retry a refused connect */
#define S_WARMUP_S 0.5          /* recv: unmeasured start of a transfer */

static double s_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int s_addr(const char *host, const char *port, struct sockaddr_in *sa)
{
    char *end;
    long p = strtol(port, &end, 10);
    memset(sa, 0, sizeof(*sa));
    sa->sin_family = AF_INET;
    if (*end || p < 1 || p > 65535 || inet_pton(AF_INET, host, &sa->sin_addr) != 1) {
        fprintf(stderr, "sl-hosts-tcp: bad address %s:%s\n", host, port);
        return -1;
    }
    sa->sin_port = htons((uint16_t)p);
    return 0;
}

/* Open a connection within timeout_ms: 0 and *fd_p, or -1. */
static int s_connect(const struct sockaddr_in *sa, int timeout_ms, int tos, int *fd_p)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (tos >= 0 && setsockopt(fd, IPPROTO_IP, IP_TOS, &tos, sizeof(tos))) {
        fprintf(stderr, "sl-hosts-tcp: IP_TOS %d: %s\n", tos, strerror(errno));
        close(fd);
        return -1;
    }
    if (connect(fd, (const struct sockaddr *)sa, sizeof(*sa)) && errno != EINPROGRESS) {
        close(fd);
        return -1;
    }
    struct pollfd pfd = {.fd = fd, .events = POLLOUT};
    int err = 0;
    socklen_t len = sizeof(err);
    if (poll(&pfd, 1, timeout_ms) != 1 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) || err) {
        close(fd);
        return -1;
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    *fd_p = fd;
    return 0;
}

static int s_recv(const char *port)
{
    struct sockaddr_in sa;
    int one = 1;
    if (s_addr("0.0.0.0", port, &sa))
        return 2;
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (lfd < 0 || setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
        bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) || listen(lfd, 16)) {
        fprintf(stderr, "sl-hosts-tcp: listen on %s: %s\n", port, strerror(errno));
        return 1;
    }
    struct pollfd pfd[S_MAX_CONNS + 1] = {{.fd = lfd, .events = POLLIN}};
    uint64_t bytes[S_MAX_CONNS + 1] = {0};
    double first[S_MAX_CONNS + 1] = {0};
    double warm[S_MAX_CONNS + 1] = {0};         /* end of the warm-up, 0 until reached */
    uint64_t warm_bytes[S_MAX_CONNS + 1] = {0}; /* bytes read by then */
    int n = 1;
    static char buf[S_BUF];
    for (;;) {
        if (poll(pfd, (nfds_t)n, -1) < 0) {
            if (errno == EINTR)
                continue;
            return 1;
        }
        for (int i = n - 1; i >= 1; i--) {
            if (!pfd[i].revents)
                continue;
            ssize_t r = read(pfd[i].fd, buf, sizeof(buf));
            if (r > 0) {
                double now = s_now();
                if (!bytes[i]) {
                    first[i] = now;
                    warm[i] = 0;
                } else if (!warm[i] && now >= first[i] + S_WARMUP_S) {
                    warm[i] = now;
                    warm_bytes[i] = bytes[i];
                }
                bytes[i] += (uint64_t)r;
                continue;
            }
            if (r < 0 && errno == EINTR)
                continue;
            if (bytes[i]) {
                double now = s_now(), dt = now - first[i];
                double from = first[i];
                uint64_t b = bytes[i];
                if (warm[i] && dt > 2 * S_WARMUP_S) {
                    from = warm[i];
                    b -= warm_bytes[i];
                }
                printf("bytes=%llu seconds=%.3f mbit_s=%.2f\n", (unsigned long long)bytes[i], dt,
                       now > from ? (double)b * 8 / (now - from) / 1e6 : 0);
                fflush(stdout);
            }
            close(pfd[i].fd);
            pfd[i] = pfd[n - 1];
            bytes[i] = bytes[n - 1];
            first[i] = first[n - 1];
            warm[i] = warm[n - 1];
            warm_bytes[i] = warm_bytes[n - 1];
            n--;
        }
        if ((pfd[0].revents & POLLIN) && n <= S_MAX_CONNS) {
            int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
            if (fd >= 0) {
                pfd[n] = (struct pollfd){.fd = fd, .events = POLLIN};
                bytes[n] = 0;
                n++;
            }
        }
    }
}

static int s_send(const char *host, const char *port, const char *secs, const char *tos_s)
{
    struct sockaddr_in sa;
    double seconds = atof(secs);
    int tos = tos_s ? (int)strtol(tos_s, NULL, 0) : -1;
    int fd = -1;
    if (s_addr(host, port, &sa) || seconds <= 0 || tos > 255)
        return 2;
    for (double until = s_now() + S_CONNECT_RETRY_MS / 1e3; s_connect(&sa, 1000, tos, &fd);) {
        if (s_now() > until) {
            fprintf(stderr, "sl-hosts-tcp: cannot connect to %s:%s\n", host, port);
            return 1;
        }
        usleep(50000);
    }
    static char buf[S_BUF];
    memset(buf, 0x5a, sizeof(buf));
    uint64_t bytes = 0;
    for (double end = s_now() + seconds; s_now() < end;) {
        ssize_t w = write(fd, buf, sizeof(buf));
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0) {
            fprintf(stderr, "sl-hosts-tcp: write: %s\n", strerror(errno));
            close(fd);
            return 1;
        }
        bytes += (uint64_t)w;
    }
    /* wait until the receiver has read everything (its EOF, then ours) */
    shutdown(fd, SHUT_WR);
    while (read(fd, buf, sizeof(buf)) > 0)
        ;
    close(fd);
    printf("bytes=%llu\n", (unsigned long long)bytes);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 3 && !strcmp(argv[1], "recv"))
        return s_recv(argv[2]);
    if ((argc == 5 || argc == 6) && !strcmp(argv[1], "send"))
        return s_send(argv[2], argv[3], argv[4], argc == 6 ? argv[5] : NULL);
    if (argc == 5 && !strcmp(argv[1], "connect")) {
        struct sockaddr_in sa;
        int fd;
        if (s_addr(argv[2], argv[3], &sa))
            return 2;
        if (s_connect(&sa, atoi(argv[4]), -1, &fd))
            return 1;
        close(fd);
        return 0;
    }
    fprintf(stderr, "usage: sl-hosts-tcp recv PORT | send ADDR PORT SECONDS [TOS] | "
                    "connect ADDR PORT TIMEOUT_MS\n");
    return 2;
}
