/* SPDX-License-Identifier: MIT */
/* fuzz-http-server: the API's HTTP/1.1 server as a whole (lib/http-server.h): a client on a
 * unix socket sends the input, in writes of a size the first byte picks (bit 0: then
 * half-closes), while the server's event loop runs. The handler answers by path: "/later..."
 * from a later loop iteration, "/never..." not at all (the request becomes an orphan when the
 * client goes), "/twice..." twice (the second must be refused), anything else at once with the
 * request body echoed. Properties: everything the server writes parses as a sequence of
 * HTTP/1.1 responses (lib/http.h), one per answered request plus at most one error of its own,
 * echoed bodies come back intact, and every connection is gone once the client closed. */
#include <stdio.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "fuzz.h"
#include "http-server.h"
#include "http.h"

#define MAX_PENDING 64

static sd_event *event;
static HttpServer *server;
static struct sockaddr_un addr;
static socklen_t addr_len;

/* What the handler saw and did, in order. */
typedef struct Handled {
        bool head;
        bool answered;
        int status;
        Buf body;
} Handled;

static Handled handled[MAX_PENDING];
static size_t n_handled;
static HttpRequest *later[MAX_PENDING], *never[MAX_PENDING];
static size_t n_later, n_never;
static sd_event_source *later_source;

static void answer(HttpRequest *r, int status, size_t slot) {
        int k = fl_http_request_reply(r, status, "text/plain", fl_buf_str(&r->body), r->body.len);

        FUZZ_CHECK(k == 0 || k == -ENOTCONN);
        FUZZ_CHECK(fl_http_request_reply(r, status, NULL, NULL, 0) == -EALREADY || k == -ENOTCONN);
        if (k == 0 && slot < MAX_PENDING) {
                handled[slot].answered = true;
                handled[slot].status = status;
        }
}

static int on_later(sd_event_source *s, void *userdata) {
        for (size_t i = 0; i < n_later; i++) {
                size_t slot = SIZE_MAX;

                /* requests of a connection are answered in order: the oldest waiting slot */
                for (size_t k = 0; k < n_handled; k++)
                        if (handled[k].status == -1) {
                                handled[k].status = -2;
                                slot = k;
                                break;
                        }
                answer(later[i], 201, slot);
                fl_http_request_unref(later[i]);
        }
        n_later = 0;
        return 0;
}

static void handler(HttpServer *s, HttpRequest *r, void *userdata) {
        size_t slot = n_handled;

        FUZZ_CHECK(r->conn && !r->replied && !fl_http_request_is_orphan(r));
        FUZZ_CHECK(r->body.len <= 4096);
        if (n_handled < MAX_PENDING) {
                handled[slot] = (Handled) { .head = streq(r->method, "HEAD"), .status = 0 };
                FUZZ_CHECK(fl_buf_append(&handled[slot].body, fl_buf_str(&r->body), r->body.len) >= 0 ||
                           r->body.len == 0);
                n_handled++;
        }
        FUZZ_CHECK(fl_http_request_add_header(r, "X-Fuzz", "1") == 0);
        if (startswith(r->path, "/later") && n_later < MAX_PENDING) {
                if (slot < MAX_PENDING)
                        handled[slot].status = -1; /* answered by on_later, in order */
                later[n_later++] = fl_http_request_ref(r);
                FUZZ_CHECK(sd_event_source_set_enabled(later_source, SD_EVENT_ONESHOT) >= 0);
        } else if (startswith(r->path, "/never") && n_never < MAX_PENDING)
                never[n_never++] = fl_http_request_ref(r);
        else
                answer(r, startswith(r->path, "/twice") ? 202 : 200, slot);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
        HttpServerOptions opts = {
                .server_name = "fleetd/fuzz",
                .max_header_bytes = 1024,
                .max_body_bytes = 4096,
        };
        int fd;

        FUZZ_CHECK(sd_event_new(&event) >= 0);
        FUZZ_CHECK(fl_http_server_new(event, &opts, handler, NULL, &server) == 0);
        FUZZ_CHECK(sd_event_add_defer(event, &later_source, on_later, NULL) >= 0);
        FUZZ_CHECK(sd_event_source_set_enabled(later_source, SD_EVENT_OFF) >= 0);

        addr.sun_family = AF_UNIX;
        /* abstract socket: nothing on disk */
        snprintf(addr.sun_path + 1, sizeof(addr.sun_path) - 1, "fleet-fuzz-http-server-%d", (int) getpid());
        addr_len = (socklen_t) (offsetof(struct sockaddr_un, sun_path) + 1 + strlen(addr.sun_path + 1));
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        FUZZ_CHECK(fd >= 0);
        FUZZ_CHECK(bind(fd, (struct sockaddr *) &addr, addr_len) == 0);
        FUZZ_CHECK(listen(fd, 16) == 0);
        FUZZ_CHECK(fl_http_server_add_listener(server, fd, NULL) == 0);
        return 0;
}

/* Runs the loop until nothing is pending; returns how many events ran. */
static unsigned spin(void) {
        unsigned n = 0;
        while (n < 10000 && sd_event_run(event, 0) > 0)
                n++;
        return n;
}

static bool drain(int fd, Buf *in) {
        char buf[16384];
        bool eof = false;

        for (;;) {
                ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
                if (n > 0) {
                        FUZZ_CHECK(fl_buf_append(in, buf, (size_t) n) >= 0);
                        continue;
                }
                if (n == 0)
                        eof = true;
                else
                        FUZZ_CHECK(errno == EAGAIN || errno == ECONNRESET);
                return eof || (n < 0 && errno == ECONNRESET);
        }
}

static void check_responses(const Buf *in) {
        HttpResponseParser p;
        size_t pos = 0, i = 0, errors = 0;

        while (pos < in->len) {
                bool head = i < n_handled && handled[i].head;
                size_t consumed = 0;
                int r;

                fl_http_response_parser_init(&p, 64 * 1024, 64 * 1024, head);
                r = fl_http_response_parser_feed(&p, in->data + pos, in->len - pos, &consumed);
                if (r == 0 && !fl_http_response_parser_started(&p)) {
                        /* only "100 Continue" left: the client stopped in the middle of a
                         * body, and the server just closed */
                        fl_http_response_parser_done(&p);
                        break;
                }
                if (r == 0)
                        r = fl_http_response_parser_eof(&p);
                if (r != 1)
                        fprintf(stderr, "server output does not parse at %zu (%s):\n%s\n", pos, strempty(p.error),
                                in->data + pos);
                FUZZ_CHECK(r == 1);
                {
                        _cleanup_(fl_http_response_freep) HttpResponse *resp = fl_http_response_parser_take(&p);
                        const char *server_hdr = fl_http_response_header(resp, "Server");
                        FUZZ_CHECK(server_hdr && streq(server_hdr, "fleetd/fuzz"));
                        if (resp->status >= 400) {
                                /* the server's own refusal: last thing on the connection */
                                errors++;
                                FUZZ_CHECK(!resp->keep_alive);
                        } else {
                                FUZZ_CHECK(errors == 0);
                                FUZZ_CHECK(i < n_handled || n_handled == MAX_PENDING);
                                if (i < n_handled) {
                                        FUZZ_CHECK(handled[i].answered && handled[i].status == resp->status);
                                        FUZZ_CHECK(fl_http_response_header(resp, "X-Fuzz"));
                                        if (!handled[i].head)
                                                FUZZ_CHECK(resp->body.len == handled[i].body.len &&
                                                           memcmp(fl_buf_str(&resp->body), fl_buf_str(&handled[i].body),
                                                                  resp->body.len) == 0);
                                }
                                i++;
                        }
                }
                fl_http_response_parser_done(&p);
                pos += consumed;
        }
        FUZZ_CHECK(errors <= 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_close_ int fd = -EBADF;
        HttpServerStats st;
        Buf in = BUF_INIT;
        size_t step, pos = 0;
        bool half_close, closed = false;

        if (size < 1 || size > 32 * 1024)
                return 0;
        half_close = data[0] & 1;
        step = data[0] >> 1 ? (size_t) (data[0] >> 1) * 8 : size;
        data++;
        size--;

        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        FUZZ_CHECK(fd >= 0);
        FUZZ_CHECK(connect(fd, (struct sockaddr *) &addr, addr_len) == 0);

        while (pos < size && !closed) {
                ssize_t n = send(fd, data + pos, MIN(step, size - pos), MSG_NOSIGNAL | MSG_DONTWAIT);
                if (n < 0) {
                        /* the server closed on us (after a refusal), or its buffer is full */
                        FUZZ_CHECK(errno == EAGAIN || errno == EPIPE || errno == ECONNRESET);
                        if (errno != EAGAIN)
                                break;
                        n = 0;
                }
                pos += (size_t) n;
                spin();
                closed = drain(fd, &in);
        }
        if (half_close && !closed)
                (void) shutdown(fd, SHUT_WR);
        for (unsigned rounds = 0; !closed && rounds < 1000; rounds++) {
                unsigned ran = spin();
                size_t before = in.len;
                closed = drain(fd, &in);
                if (ran == 0 && in.len == before)
                        break; /* waiting for a "/never" answer, or for more input */
        }

        /* Client gone: no connection may stay behind, "/never" requests are orphans. */
        fd = safe_close(fd);
        for (unsigned rounds = 0; rounds < 100; rounds++) {
                fl_http_server_get_stats(server, &st);
                if (st.connections_open == 0)
                        break;
                spin();
        }
        fl_http_server_get_stats(server, &st);
        FUZZ_CHECK(st.connections_open == 0);
        for (size_t i = 0; i < n_never; i++) {
                FUZZ_CHECK(fl_http_request_is_orphan(never[i]));
                FUZZ_CHECK(fl_http_request_reply(never[i], 200, NULL, NULL, 0) == -ENOTCONN);
                fl_http_request_unref(never[i]);
        }
        n_never = 0;
        spin(); /* "/later" answers for a connection that is gone */
        FUZZ_CHECK(n_later == 0);

        check_responses(&in);
        fl_buf_done(&in);
        for (size_t i = 0; i < n_handled; i++)
                fl_buf_done(&handled[i].body);
        n_handled = 0;
        return 0;
}
