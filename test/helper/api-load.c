/* SPDX-License-Identifier: MIT */
/* api-load: a test-only HTTP client for test/suites/hardening.sh (never part of the fleet
 * binary). TARGET is unix:PATH or tcp:HOST:PORT (IPv4).
 *
 *   api-load TARGET load CLIENTS REQUESTS KEEPALIVE SECONDS PATH...
 *       CLIENTS threads at once; each sends REQUESTS GETs (PATHs round-robin) on one keep-alive
 *       connection (KEEPALIVE=1; a new one whenever the server closes) or on a connection per
 *       request (KEEPALIVE=0). No request is started after SECONDS. Prints
 *         requests=N valid=N invalid=N unfinished=N seconds=S rps=R p50=MS p95=MS p99=MS max=MS
 *         statuses=200:N,404:N,...
 *       and exits 0 only if every request was sent and got a complete, well-formed response.
 *   api-load TARGET idle CONNS
 *       Opens CONNS connections one after the other and sends nothing. A connection the server
 *       answers is read to its end (a 503 must carry {"error":{"code":503,...}}). Then, with all
 *       the silent ones still open, a fresh client's GET /fleet/v1/units status ("held=503"),
 *       then everything is closed and a fresh client retries for 5 s until it gets 200:
 *         idle=N s503=N closed=N other=N held=CODE fresh=CODE
 *   api-load TARGET slowloris SECONDS
 *       Two clients send 1 byte per second, one inside the request head, one inside a body
 *       (Content-Length 64); meanwhile a probe sends GET /fleet/v1/units on a new connection
 *       every 250 ms. Stops once both slow clients are answered or after SECONDS:
 *         head=CODE@SECS body=CODE@SECS probes=N probe_ok=N probe_max_ms=MS
 *       (CODE 0: no answer, -1: closed without an answer). */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static struct sockaddr_storage target;
static socklen_t target_len;

static double now_sec(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

static int parse_target(const char *t) {
        memset(&target, 0, sizeof(target));
        if (strncmp(t, "unix:", 5) == 0) {
                struct sockaddr_un *un = (struct sockaddr_un *) &target;
                if (strlen(t + 5) >= sizeof(un->sun_path))
                        return -1;
                un->sun_family = AF_UNIX;
                strcpy(un->sun_path, t + 5);
                target_len = sizeof(*un);
                return 0;
        }
        if (strncmp(t, "tcp:", 4) == 0) {
                struct sockaddr_in *in = (struct sockaddr_in *) &target;
                char host[64];
                const char *colon = strrchr(t + 4, ':');
                if (!colon || (size_t) (colon - (t + 4)) >= sizeof(host))
                        return -1;
                memcpy(host, t + 4, (size_t) (colon - (t + 4)));
                host[colon - (t + 4)] = 0;
                in->sin_family = AF_INET;
                in->sin_port = htons((uint16_t) atoi(colon + 1));
                if (inet_pton(AF_INET, host, &in->sin_addr) != 1)
                        return -1;
                target_len = sizeof(*in);
                return 0;
        }
        return -1;
}

/* A blocking connection with send/receive timeouts. */
static int dial(double timeout_sec) {
        struct timeval tv = { .tv_sec = (time_t) timeout_sec,
                              .tv_usec = (suseconds_t) ((timeout_sec - (double) (time_t) timeout_sec) * 1e6) };
        int fd = socket(target.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);

        if (fd < 0)
                return -1;
        (void) setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        (void) setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
        if (target.ss_family == AF_INET) {
                int one = 1;
                (void) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        }
        if (connect(fd, (struct sockaddr *) &target, target_len) < 0) {
                close(fd);
                return -1;
        }
        return fd;
}

static int send_all(int fd, const char *p, size_t n) {
        while (n > 0) {
                ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return -1;
                }
                p += k;
                n -= (size_t) k;
        }
        return 0;
}

typedef struct Response {
        int status;        /* 0: none or malformed */
        bool close;        /* the server will close the connection */
        char *body;        /* NUL-terminated */
        size_t body_len;
} Response;

/* Reads one response. Returns 0 (complete and well formed), -1 (EOF before any byte),
 * -2 (malformed, truncated or timed out). */
static int read_response(int fd, Response *ret) {
        char *buf = NULL, *hend;
        size_t len = 0, cap = 0, head_len, need;
        long long clen = -1;
        int status;

        memset(ret, 0, sizeof(*ret));
        for (;;) {
                ssize_t k;
                if (len + 4096 + 1 > cap) {
                        char *p;
                        cap = cap ? cap * 2 : 16384;
                        if (cap > (64U << 20))
                                goto bad;
                        p = realloc(buf, cap);
                        if (!p)
                                goto bad;
                        buf = p;
                }
                buf[len] = 0;
                if (len > 0 && (hend = strstr(buf, "\r\n\r\n")))
                        break;
                k = recv(fd, buf + len, cap - len - 1, 0);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k <= 0) {
                        free(buf);
                        return len == 0 && k == 0 ? -1 : -2;
                }
                len += (size_t) k;
        }
        head_len = (size_t) (hend - buf) + 4;
        if (sscanf(buf, "HTTP/1.%*1[01] %3d ", &status) != 1 || status < 100 || status > 599)
                goto bad;
        for (char *l = strstr(buf, "\r\n") + 2; l < hend; l = strstr(l, "\r\n") + 2) {
                if (strncasecmp(l, "Content-Length:", 15) == 0)
                        clen = atoll(l + 15);
                else if (strncasecmp(l, "Connection:", 11) == 0 && strstr(l, "close") &&
                         strstr(l, "close") < strstr(l, "\r\n"))
                        ret->close = true;
                else if (strncasecmp(l, "Transfer-Encoding:", 18) == 0)
                        goto bad; /* fleetd never chunks its replies */
        }
        if (status == 204 || status == 304 || status < 200)
                clen = 0;
        if (clen < 0)
                goto bad;
        need = head_len + (size_t) clen;
        while (len < need) {
                ssize_t k;
                if (need + 1 > cap) {
                        char *p = realloc(buf, need + 1);
                        if (!p)
                                goto bad;
                        buf = p;
                        cap = need + 1;
                }
                k = recv(fd, buf + len, need - len, 0);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k <= 0)
                        goto bad;
                len += (size_t) k;
        }
        buf[need] = 0;
        ret->status = status;
        ret->body_len = (size_t) clen;
        ret->body = strdup(buf + head_len);
        free(buf);
        return ret->body ? 0 : -2;
bad:
        free(buf);
        return -2;
}

static int one_get(const char *path, int *ret_status) {
        char req[512];
        Response r;
        int fd, k;

        *ret_status = 0;
        fd = dial(5);
        if (fd < 0)
                return -1;
        snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: fleet\r\nConnection: close\r\n\r\n", path);
        if (send_all(fd, req, strlen(req)) < 0) {
                close(fd);
                return -1;
        }
        k = read_response(fd, &r);
        close(fd);
        if (k < 0)
                return -1;
        *ret_status = r.status;
        free(r.body);
        return 0;
}

/* ---- load ---- */

static int n_requests, keepalive, n_paths;
static char **paths;
static double deadline;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static double *lat;
static size_t n_lat;
static long long valid, invalid, unfinished;
static long long statuses[600];

static void *load_client(void *arg) {
        long id = (long) arg;
        int fd = -1;
        double *mine = calloc((size_t) n_requests, sizeof(double));
        long long ok = 0, bad = 0, st[600] = {};
        int done = 0;

        if (!mine)
                return NULL;
        for (; done < n_requests && now_sec() < deadline; done++) {
                const char *path = paths[(id + done) % n_paths];
                char req[1024];
                Response r;
                double t0 = now_sec();
                int k;

                snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: fleet\r\n%s\r\n", path,
                         keepalive ? "" : "Connection: close\r\n");
                if (fd < 0)
                        fd = dial(15);
                if (fd < 0 || send_all(fd, req, strlen(req)) < 0) {
                        bad++;
                        if (fd >= 0)
                                close(fd);
                        fd = -1;
                        continue;
                }
                k = read_response(fd, &r);
                if (k == -1 && keepalive) {
                        /* The server closed an idle keep-alive connection just before our
                         * request: that is allowed, retry once on a new one. */
                        close(fd);
                        fd = dial(15);
                        if (fd >= 0 && send_all(fd, req, strlen(req)) == 0)
                                k = read_response(fd, &r);
                }
                if (k < 0) {
                        bad++;
                        if (fd >= 0)
                                close(fd);
                        fd = -1;
                        continue;
                }
                mine[ok] = now_sec() - t0;
                ok++;
                st[r.status]++;
                free(r.body);
                if (r.close || !keepalive) {
                        close(fd);
                        fd = -1;
                }
        }
        if (fd >= 0)
                close(fd);
        pthread_mutex_lock(&mu);
        memcpy(lat + n_lat, mine, (size_t) ok * sizeof(double));
        n_lat += (size_t) ok;
        valid += ok;
        invalid += bad;
        unfinished += n_requests - done;
        for (int i = 0; i < 600; i++)
                statuses[i] += st[i];
        pthread_mutex_unlock(&mu);
        free(mine);
        return NULL;
}

static int cmp_double(const void *a, const void *b) {
        double x = *(const double *) a, y = *(const double *) b;
        return x < y ? -1 : x > y;
}

static double pct(double p) {
        size_t i;
        if (n_lat == 0)
                return 0;
        i = (size_t) (p * (double) (n_lat - 1) + 0.5);
        return lat[i] * 1000.0;
}

static int do_load(int argc, char **argv) {
        int clients;
        pthread_t *th;
        pthread_attr_t attr;
        double t0, secs;
        bool first = true;

        if (argc < 5)
                return 2;
        clients = atoi(argv[0]);
        n_requests = atoi(argv[1]);
        keepalive = atoi(argv[2]);
        t0 = now_sec();
        deadline = t0 + atof(argv[3]);
        paths = argv + 4;
        n_paths = argc - 4;
        if (clients <= 0 || n_requests <= 0)
                return 2;
        lat = calloc((size_t) clients * (size_t) n_requests, sizeof(double));
        th = calloc((size_t) clients, sizeof(pthread_t));
        if (!lat || !th)
                return 2;
        pthread_attr_init(&attr);
        pthread_attr_setstacksize(&attr, 256 * 1024);
        for (long i = 0; i < clients; i++)
                if (pthread_create(&th[i], &attr, load_client, (void *) i) != 0) {
                        fprintf(stderr, "pthread_create failed\n");
                        return 2;
                }
        for (int i = 0; i < clients; i++)
                pthread_join(th[i], NULL);
        secs = now_sec() - t0;
        qsort(lat, n_lat, sizeof(double), cmp_double);
        printf("requests=%lld valid=%lld invalid=%lld unfinished=%lld seconds=%.2f rps=%.0f p50=%.2f p95=%.2f "
               "p99=%.2f max=%.2f statuses=",
               (long long) clients * n_requests, valid, invalid, unfinished, secs, (double) valid / secs,
               pct(0.50), pct(0.95), pct(0.99), n_lat ? lat[n_lat - 1] * 1000.0 : 0.0);
        for (int i = 0; i < 600; i++)
                if (statuses[i]) {
                        printf("%s%d:%lld", first ? "" : ",", i, statuses[i]);
                        first = false;
                }
        printf("\n");
        free(lat);
        free(th);
        return invalid == 0 && unfinished == 0 ? 0 : 1;
}

/* ---- idle ---- */

static int do_idle(int argc, char **argv) {
        int n, *fds, *state, idle = 0, s503 = 0, closed = 0, other = 0, held = 0, fresh = 0;
        double end;

        if (argc < 1)
                return 2;
        n = atoi(argv[0]);
        fds = calloc((size_t) n, sizeof(int));
        state = calloc((size_t) n, sizeof(int)); /* 0 silent, 1 503, 2 closed, 3 other */
        if (!fds || !state)
                return 2;

        /* One at a time, and a connection the server answers is read and closed at once:
         * the server's small budget of 503 replies in flight is never exhausted by us. */
        for (int i = 0; i < n; i++) {
                struct pollfd p;
                fds[i] = dial(10);
                if (fds[i] < 0) {
                        state[i] = 2;
                        continue;
                }
                p = (struct pollfd) { .fd = fds[i], .events = POLLIN };
                if (poll(&p, 1, 20) == 1) {
                        Response r;
                        int k = read_response(fds[i], &r);
                        state[i] = k == -1                                          ? 2
                                   : k == 0 && r.status == 503 && strstr(r.body, "\"code\":503") ? 1
                                                                                      : 3;
                        if (k == 0)
                                free(r.body);
                        close(fds[i]);
                        fds[i] = -1;
                }
        }
        /* Late answers (a busy server) still count for what they are. */
        end = now_sec() + 1.0;
        while (now_sec() < end) {
                struct pollfd *p = calloc((size_t) n, sizeof(*p));
                int m = 0, k;
                for (int i = 0; i < n; i++)
                        if (fds[i] >= 0)
                                p[m++] = (struct pollfd) { .fd = fds[i], .events = POLLIN };
                k = m ? poll(p, (nfds_t) m, 100) : 0;
                for (int j = 0; k > 0 && j < m; j++) {
                        if (!p[j].revents)
                                continue;
                        for (int i = 0; i < n; i++)
                                if (fds[i] == p[j].fd) {
                                        Response r;
                                        int x = read_response(fds[i], &r);
                                        state[i] = x == -1 ? 2 : x == 0 && r.status == 503 ? 1 : 3;
                                        if (x == 0)
                                                free(r.body);
                                        close(fds[i]);
                                        fds[i] = -1;
                                }
                }
                free(p);
        }
        for (int i = 0; i < n; i++) {
                idle += state[i] == 0;
                s503 += state[i] == 1;
                closed += state[i] == 2;
                other += state[i] == 3;
        }
        (void) one_get("/fleet/v1/units", &held);
        for (int i = 0; i < n; i++)
                if (fds[i] >= 0)
                        close(fds[i]);
        end = now_sec() + 5.0;
        do {
                if (one_get("/fleet/v1/units", &fresh) == 0 && fresh == 200)
                        break;
                usleep(100 * 1000);
        } while (now_sec() < end);
        printf("idle=%d s503=%d closed=%d other=%d held=%d fresh=%d\n", idle, s503, closed, other, held, fresh);
        free(fds);
        free(state);
        return 0;
}

/* ---- slowloris ---- */

static volatile bool slow_done;
static int probes, probe_ok;
static double probe_max;

static void *probe_thread(void *arg) {
        while (!slow_done) {
                double t0 = now_sec();
                int st = 0;
                if (one_get("/fleet/v1/units", &st) == 0 && st == 200)
                        probe_ok++;
                probes++;
                if (now_sec() - t0 > probe_max)
                        probe_max = now_sec() - t0;
                usleep(250 * 1000);
        }
        return NULL;
}

typedef struct Slow {
        const char *prefix; /* sent at once */
        const char *drip;   /* then one byte per second */
        int fd;
        size_t sent;
        int status;         /* 0 none yet, -1 closed without an answer */
        double at;
        bool done;
} Slow;

static void slow_check(Slow *s, double t0) {
        struct pollfd p = { .fd = s->fd, .events = POLLIN };
        Response r;
        int k;

        if (s->done || poll(&p, 1, 0) != 1)
                return;
        k = read_response(s->fd, &r);
        s->status = k == 0 ? r.status : -1;
        if (k == 0)
                free(r.body);
        s->at = now_sec() - t0;
        s->done = true;
        close(s->fd);
}

static int do_slowloris(int argc, char **argv) {
        Slow slow[2] = {
                { .prefix = "GET /fleet/v1/units HTTP/1.1\r\nHost: fleet\r\nX-Slow: ",
                  .drip = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" },
                { .prefix = "PUT /fleet/v1/units/slow.service HTTP/1.1\r\nHost: fleet\r\n"
                            "Content-Type: application/json\r\nContent-Length: 64\r\n\r\n",
                  .drip = "{\"options\":[{\"section\":\"Service\",\"name\":\"ExecStart\",\"value\":\"/bin/true\"}]}" },
        };
        pthread_t th;
        double t0 = now_sec(), max;

        if (argc < 1)
                return 2;
        max = atof(argv[0]);
        for (int i = 0; i < 2; i++) {
                slow[i].fd = dial(max + 5);
                if (slow[i].fd < 0 || send_all(slow[i].fd, slow[i].prefix, strlen(slow[i].prefix)) < 0) {
                        fprintf(stderr, "slowloris: cannot connect\n");
                        return 2;
                }
        }
        pthread_create(&th, NULL, probe_thread, NULL);
        while (now_sec() - t0 < max && !(slow[0].done && slow[1].done)) {
                for (int i = 0; i < 2; i++) {
                        Slow *s = &slow[i];
                        slow_check(s, t0);
                        if (s->done || s->sent >= strlen(s->drip))
                                continue;
                        if (send(s->fd, s->drip + s->sent, 1, MSG_NOSIGNAL) != 1) {
                                /* the server closed on us: read what it said */
                                slow_check(s, t0);
                                if (!s->done) {
                                        s->done = true;
                                        s->status = -1;
                                        s->at = now_sec() - t0;
                                }
                                continue;
                        }
                        s->sent++;
                }
                for (int k = 0; k < 10 && !(slow[0].done && slow[1].done); k++) {
                        usleep(100 * 1000);
                        slow_check(&slow[0], t0);
                        slow_check(&slow[1], t0);
                }
        }
        slow_done = true;
        pthread_join(th, NULL);
        printf("head=%d@%.1f body=%d@%.1f probes=%d probe_ok=%d probe_max_ms=%.1f\n", slow[0].status, slow[0].at,
               slow[1].status, slow[1].at, probes, probe_ok, probe_max * 1000.0);
        return 0;
}

int main(int argc, char **argv) {
        signal(SIGPIPE, SIG_IGN);
        if (argc < 3 || parse_target(argv[1]) < 0) {
                fprintf(stderr, "usage: api-load unix:PATH|tcp:HOST:PORT load|idle|slowloris ARGS...\n");
                return 2;
        }
        if (strcmp(argv[2], "load") == 0)
                return do_load(argc - 3, argv + 3);
        if (strcmp(argv[2], "idle") == 0)
                return do_idle(argc - 3, argv + 3);
        if (strcmp(argv[2], "slowloris") == 0)
                return do_slowloris(argc - 3, argv + 3);
        fprintf(stderr, "unknown mode %s\n", argv[2]);
        return 2;
}
