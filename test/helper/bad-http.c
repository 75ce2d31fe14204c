/* SPDX-License-Identifier: MIT */
/* bad-http: a test-only HTTP server that misbehaves on request, for test-etcd. Not part of the
 * fleet binary.
 *
 *   bad-http [MODE]   listens on 127.0.0.1 (ephemeral port), prints the port on stdout, then
 *                     serves every connection in a forked child until killed.
 *
 * The behaviour is picked by the etcd key of each request: GET /v2/keys/<mode>[/...]; keys
 * that name no mode get MODE (or a 400 etcd error when none was given). Modes:
 *   ok            a valid etcd reply; value "<pid>:<n>" (connection process, request number on
 *                 this connection), keep-alive
 *   ok-then-close like ok, then the server closes the connection 100 ms later
 *   bad-status    an invalid status line
 *   truncated     Content-Length larger than what is sent, then close
 *   bad-chunked   a chunk size that is not hex
 *   invalid-json  200 with a body that is not JSON
 *   wrong-types   200 with JSON of the wrong shape
 *   huge-number   200 with an index beyond 2^53
 *   deep          200 with nodes nested 2000 deep
 *   deep-a        200 with nodes nested 100 deep
 *   big           200 with a 1 MiB body
 *   silent        read the request, never answer
 *   close         close at once without answering
 *   partial       send half a status line, then nothing
 *   empty-watch   200 with the head and an empty chunked body (a long poll ended)
 *   raft-error    500 with etcd errorCode 300
 *   not-found     404 with etcd errorCode 100, X-Etcd-Index 7
 *   plain-404     404 with a plain text body (not etcd)
 *   auth          401 {"message":"Insufficient credentials"} unless the request carries
 *                 "Authorization: Basic dTpw" (u:p), then ok
 * Watch streams (chunked 200, X-Etcd-Index: 10, events with modifiedIndex 11, 12, ...):
 *   stream             event 11 split over two chunks, 12 and 13 in one chunk, a blank line,
 *                      then the terminating chunk (a clean end), keep-alive
 *   stream-cut         event 11, then close without the terminating chunk
 *   stream-bad-chunk   event 11, then a chunk size that is not hex
 *   stream-bad-json    event 11, then a line that is not JSON
 *   stream-backwards   event 12, then event 11
 *   stream-huge        event 11, then 1 MiB without a newline (one endless event), then waits
 *   stream-quiet       event 11, then nothing until the client closes */
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static void write_all(int fd, const char *s, size_t n) {
        while (n > 0) {
                ssize_t l = send(fd, s, n, MSG_NOSIGNAL);
                if (l < 0) {
                        if (errno == EINTR)
                                continue;
                        _exit(0);
                }
                s += l;
                n -= (size_t) l;
        }
}

static void write_str(int fd, const char *s) {
        write_all(fd, s, strlen(s));
}

static void reply(int fd, int status, const char *extra, const char *body) {
        char head[512];
        snprintf(head, sizeof(head),
                 "HTTP/1.1 %d X\r\nContent-Type: application/json\r\nX-Etcd-Index: 7\r\n%sContent-Length: %zu\r\n\r\n",
                 status, extra ? extra : "", strlen(body));
        write_str(fd, head);
        write_str(fd, body);
}

/* Reads one request head (and skips its body); returns false on EOF. */
static bool read_request(int fd, char *buf, size_t size) {
        size_t len = 0;
        char *end;

        for (;;) {
                ssize_t l;
                buf[len] = 0;
                end = strstr(buf, "\r\n\r\n");
                if (end)
                        break;
                if (len + 1 >= size)
                        return false;
                l = recv(fd, buf + len, size - 1 - len, 0);
                if (l <= 0)
                        return false;
                len += (size_t) l;
        }
        /* Skip a body by Content-Length (requests of the etcd client are small). */
        const char *cl = strcasestr(buf, "\r\nContent-Length:");
        if (cl) {
                long want = strtol(cl + 17, NULL, 10);
                long have = (long) (len - (size_t) (end + 4 - buf));
                while (have < want) {
                        char tmp[4096];
                        ssize_t l = recv(fd, tmp, sizeof(tmp), 0);
                        if (l <= 0)
                                return false;
                        have += l;
                }
        }
        return true;
}

static void write_chunk(int fd, const char *s, size_t n) {
        char size[32];
        snprintf(size, sizeof(size), "%zx\r\n", n);
        write_str(fd, size);
        write_all(fd, s, n);
        write_str(fd, "\r\n");
}

static void stream_event(int fd, unsigned index) {
        char ev[256];
        snprintf(ev, sizeof(ev),
                 "{\"action\":\"set\",\"node\":{\"key\":\"/stream/k\",\"value\":\"%u\","
                 "\"modifiedIndex\":%u,\"createdIndex\":%u}}\n",
                 index, index, index);
        write_chunk(fd, ev, strlen(ev));
}

static void wait_close(int fd) {
        char c;
        while (recv(fd, &c, 1, 0) > 0)
                ;
}

/* Returns false when the connection is over. */
static bool serve_stream(int fd, const char *mode) {
        write_str(fd, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Etcd-Index: 10\r\n"
                      "X-Raft-Index: 20\r\nTransfer-Encoding: chunked\r\n\r\n");
        if (strcmp(mode, "stream") == 0) {
                const char *e1 = "{\"action\":\"set\",\"node\":{\"key\":\"/stream/k\",\"value\":\"11\","
                                 "\"modifiedIndex\":11,\"createdIndex\":11}}\n";
                const char *e23 = "{\"action\":\"set\",\"node\":{\"key\":\"/stream/k\",\"value\":\"12\","
                                  "\"modifiedIndex\":12,\"createdIndex\":12}}\n"
                                  "{\"action\":\"delete\",\"node\":{\"key\":\"/stream/k\","
                                  "\"modifiedIndex\":13,\"createdIndex\":12},\"prevNode\":{\"key\":\"/stream/k\","
                                  "\"value\":\"12\",\"modifiedIndex\":12,\"createdIndex\":12}}\n";
                write_chunk(fd, e1, 30);
                usleep(50000);
                write_chunk(fd, e1 + 30, strlen(e1) - 30);
                usleep(50000);
                write_chunk(fd, e23, strlen(e23));
                write_chunk(fd, "\n", 1);
                write_str(fd, "0\r\n\r\n");
                return true;
        }
        if (strcmp(mode, "stream-backwards") == 0) {
                stream_event(fd, 12);
                stream_event(fd, 11);
                wait_close(fd);
                return false;
        }
        stream_event(fd, 11);
        usleep(50000);
        if (strcmp(mode, "stream-bad-chunk") == 0)
                write_str(fd, "zz\r\n{}\r\n0\r\n\r\n");
        else if (strcmp(mode, "stream-bad-json") == 0)
                write_chunk(fd, "{\"action\":\n", 12);
        else if (strcmp(mode, "stream-huge") == 0) {
                static char chunk[16384];
                memset(chunk, ' ', sizeof(chunk));
                chunk[0] = '{';
                write_chunk(fd, chunk, sizeof(chunk));
                chunk[0] = ' ';
                for (int i = 0; i < 63; i++)
                        write_chunk(fd, chunk, sizeof(chunk));
        } else if (strcmp(mode, "stream-cut") == 0)
                return false;
        wait_close(fd);
        return false;
}

static const char *const modes[] = {
        "ok", "ok-then-close", "bad-status", "truncated", "bad-chunked", "invalid-json", "wrong-types",
        "huge-number", "deep", "deep-a", "big", "silent", "close", "partial", "empty-watch", "raft-error",
        "not-found", "plain-404", "auth", "stream", "stream-cut", "stream-bad-chunk", "stream-bad-json",
        "stream-backwards", "stream-huge", "stream-quiet",
};

static void serve(int fd, const char *default_mode) {
        char req[65536];
        unsigned n = 0;

        while (read_request(fd, req, sizeof(req))) {
                char mode[64] = "", body[512];
                const char *p = strstr(req, "/v2/keys/");
                bool known = false;

                n++;
                if (p)
                        sscanf(p + 9, "%63[a-z0-9-]", mode);
                for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++)
                        known = known || strcmp(mode, modes[i]) == 0;
                if (!known && default_mode)
                        snprintf(mode, sizeof(mode), "%s", default_mode);

                if (strncmp(mode, "stream", 6) == 0) {
                        if (!serve_stream(fd, mode))
                                return;
                } else if (strcmp(mode, "ok") == 0 || strcmp(mode, "ok-then-close") == 0) {
                        snprintf(body, sizeof(body),
                                 "{\"action\":\"get\",\"node\":{\"key\":\"/%s\",\"value\":\"%d:%u\","
                                 "\"modifiedIndex\":5,\"createdIndex\":5}}",
                                 mode, (int) getpid(), n);
                        reply(fd, 200, NULL, body);
                        if (strcmp(mode, "ok-then-close") == 0) {
                                usleep(100000);
                                return;
                        }
                } else if (strcmp(mode, "bad-status") == 0) {
                        write_str(fd, "HTTP/1.1 OK 200\r\nContent-Length: 0\r\n\r\n");
                } else if (strcmp(mode, "truncated") == 0) {
                        write_str(fd, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"action\":\"get\"");
                        return;
                } else if (strcmp(mode, "bad-chunked") == 0) {
                        write_str(fd, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n");
                } else if (strcmp(mode, "invalid-json") == 0) {
                        reply(fd, 200, NULL, "{\"action\":\"get\",\"node\":{\"key\":");
                } else if (strcmp(mode, "wrong-types") == 0) {
                        reply(fd, 200, NULL, "{\"action\":\"get\",\"node\":{\"key\":5,\"value\":[]}}");
                } else if (strcmp(mode, "huge-number") == 0) {
                        reply(fd, 200, NULL,
                              "{\"action\":\"get\",\"node\":{\"key\":\"/a\",\"value\":\"v\","
                              "\"modifiedIndex\":1e300}}");
                } else if (strcmp(mode, "deep") == 0 || strcmp(mode, "deep-a") == 0) {
                        char head[256];
                        const int depth = strcmp(mode, "deep") == 0 ? 2000 : 100;
                        snprintf(head, sizeof(head), "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n",
                                 (int) strlen("{\"action\":\"get\",\"node\":") + depth * (int) strlen("{\"nodes\":[") +
                                         depth * 2 + 1);
                        write_str(fd, head);
                        write_str(fd, "{\"action\":\"get\",\"node\":");
                        for (int i = 0; i < depth; i++)
                                write_str(fd, "{\"nodes\":[");
                        for (int i = 0; i < depth; i++)
                                write_str(fd, "]}");
                        write_str(fd, "}");
                } else if (strcmp(mode, "big") == 0) {
                        static char chunk[4096];
                        memset(chunk, ' ', sizeof(chunk));
                        write_str(fd, "HTTP/1.1 200 OK\r\nContent-Length: 1048576\r\n\r\n");
                        for (int i = 0; i < 256; i++)
                                write_all(fd, chunk, sizeof(chunk));
                } else if (strcmp(mode, "silent") == 0) {
                        char c;
                        /* Until the client gives up and closes. */
                        while (recv(fd, &c, 1, 0) > 0)
                                ;
                        return;
                } else if (strcmp(mode, "close") == 0) {
                        return;
                } else if (strcmp(mode, "partial") == 0) {
                        char c;
                        write_str(fd, "HTTP/1.1 2");
                        while (recv(fd, &c, 1, 0) > 0)
                                ;
                        return;
                } else if (strcmp(mode, "empty-watch") == 0) {
                        write_str(fd, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Etcd-Index: 9\r\n"
                                      "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n");
                } else if (strcmp(mode, "raft-error") == 0) {
                        reply(fd, 500, NULL,
                              "{\"errorCode\":300,\"message\":\"Raft Internal Error\",\"cause\":\"timeout\",\"index\":7}");
                } else if (strcmp(mode, "not-found") == 0) {
                        reply(fd, 404, NULL,
                              "{\"errorCode\":100,\"message\":\"Key not found\",\"cause\":\"/not-found\",\"index\":7}");
                } else if (strcmp(mode, "plain-404") == 0) {
                        write_str(fd, "HTTP/1.1 404 Not Found\r\nContent-Length: 19\r\n\r\n404 page not found\n");
                } else if (strcmp(mode, "auth") == 0) {
                        if (strstr(req, "\r\nAuthorization: Basic dTpw\r\n"))
                                reply(fd, 200, NULL,
                                      "{\"action\":\"get\",\"node\":{\"key\":\"/auth\",\"value\":\"yes\"}}");
                        else
                                reply(fd, 401, NULL, "{\"message\":\"Insufficient credentials\"}");
                } else {
                        reply(fd, 400, NULL, "{\"errorCode\":209,\"message\":\"unknown test mode\"}");
                }
        }
}

int main(int argc, char **argv) {
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t al = sizeof(a);
        int s, one = 1;

        signal(SIGCHLD, SIG_IGN);   /* no zombies */
        s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (s < 0 || setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
            bind(s, (struct sockaddr *) &a, sizeof(a)) < 0 || listen(s, 64) < 0 ||
            getsockname(s, (struct sockaddr *) &a, &al) < 0) {
                perror("bad-http");
                return 1;
        }
        printf("%u\n", ntohs(a.sin_port));
        fflush(stdout);

        for (;;) {
                int fd = accept4(s, NULL, NULL, SOCK_CLOEXEC);
                pid_t pid;

                if (fd < 0) {
                        if (errno == EINTR || errno == ECONNABORTED)
                                continue;
                        perror("accept");
                        return 1;
                }
                pid = fork();
                if (pid == 0) {
                        /* Die with the server, which the test kills by PID. */
                        prctl(PR_SET_PDEATHSIG, SIGKILL);
                        close(s);
                        serve(fd, argc > 1 ? argv[1] : NULL);
                        close(fd);
                        _exit(0);
                }
                close(fd);
        }
}
