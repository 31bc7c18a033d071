/* The load generator in C, for SSE and WebSocket watchers: the same job as bench/loadgen.py
 * (which remains for Socket.IO and polling, and for machines without a C compiler), at a
 * fraction of its cost per delivery, so the load core stays quiet.
 *
 * Input (argv[1]): a text file. Line 1: "host port". Then one line per watcher:
 * "sse <path>" or "ws <path> [<first text message, no spaces>]".
 * Then the same protocol as the Python one: prints {"event":"connected",...} once every watcher
 * is connected, reads "measure" and "stop" lines on stdin, prints {"event":"result",...}.
 *
 * A delivery is a `"message":"<publish time in us>"` marker in the byte stream; its latency is
 * the receive time minus that. Streams are scanned as bytes (SSE chunks or WebSocket frames
 * alike); a marker cut by the end of a read is completed by the next one.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MARK "\"message\":\""
#define MARK_LEN 11
#define TAIL_MAX 64
#define HEAD_MAX 4096
#define IN_FLIGHT 100

enum { CONNECTING, HANDSHAKE, WAIT_FIRST, OPEN, DEAD };

typedef struct {
    int fd;
    int ws;
    int state;
    char *path;
    char *hello;
    char head[HEAD_MAX];
    int head_len;
    char tail[TAIL_MAX];
    int tail_len;
} conn_t;

static conn_t *conns;
static int n_conns, n_connected, n_failed, n_closed, in_flight, next_to_open;
static int measuring;
static long long deliveries;
static int64_t *lat;
static size_t lat_len, lat_cap;
static struct sockaddr_in addr;
static char host[256];
static int epfd;

static int64_t now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static double mono(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void note_latency(int64_t us) {
    if (lat_len == lat_cap) {
        lat_cap = lat_cap ? lat_cap * 2 : 1 << 20;
        lat = realloc(lat, lat_cap * sizeof *lat);
    }
    lat[lat_len++] = us;
}

static void send_all(int fd, const char *data, size_t len) {
    while (len) {
        ssize_t n = send(fd, data, len, MSG_NOSIGNAL);
        if (n <= 0) return;  /* tiny control writes: a full buffer means the peer is gone */
        data += n;
        len -= n;
    }
}

static void ws_send_text(int fd, const char *payload) {
    size_t n = strlen(payload);
    char frame[8 + 4 + 1024];
    if (n > 1024) return;
    size_t h = 0;
    frame[h++] = (char)0x81;
    if (n < 126) {
        frame[h++] = (char)(0x80 | n);
    } else {
        frame[h++] = (char)(0x80 | 126);
        frame[h++] = (char)(n >> 8);
        frame[h++] = (char)(n & 0xff);
    }
    memset(frame + h, 0, 4);  /* a zero masking key is valid and spares the XOR */
    h += 4;
    memcpy(frame + h, payload, n);
    send_all(fd, frame, h + n);
}

/* Count the markers in buf[0..len), note their latencies, keep what a later read completes. */
static void scan(conn_t *c, char *buf, size_t len) {
    int64_t t = now_us();
    size_t resume = len > MARK_LEN - 1 ? len - (MARK_LEN - 1) : 0;
    char *p = buf, *end = buf + len;
    while ((p = memmem(p, end - p, MARK, MARK_LEN)) != NULL) {
        char *q = p + MARK_LEN;
        int64_t v = 0;
        int digits = 0;
        while (q < end && *q >= '0' && *q <= '9') {
            v = v * 10 + (*q - '0');
            q++;
            digits++;
        }
        if (q == end) {  /* cut short: the next read completes it */
            resume = p - buf;
            break;
        }
        if (*q == '"' && digits && measuring) {
            note_latency(t - v);
            deliveries++;
        }
        p = q;
        if ((size_t)(q - buf) > resume) resume = q - buf;
    }
    size_t keep = len - resume;
    if (keep > TAIL_MAX) keep = 0;
    memcpy(c->tail, buf + resume, keep);
    c->tail_len = (int)keep;
}

static void open_next(void);

static void fail(conn_t *c) {
    if (c->state != DEAD) {
        if (c->state == OPEN) n_closed++;
        else { n_failed++; in_flight--; }
        c->state = DEAD;
        epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
        open_next();
    }
}

static void ready(conn_t *c) {
    c->state = OPEN;
    n_connected++;
    in_flight--;
    open_next();
}

static void open_next(void) {
    while (in_flight < IN_FLIGHT && next_to_open < n_conns) {
        conn_t *c = &conns[next_to_open++];
        c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        int one = 1;
        setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        c->state = CONNECTING;
        in_flight++;
        if (connect(c->fd, (struct sockaddr *)&addr, sizeof addr) < 0 && errno != EINPROGRESS) {
            fail(c);
            continue;
        }
        struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.u32 = (uint32_t)(c - conns)};
        epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev);
    }
}

static void on_writable(conn_t *c) {
    if (c->state != CONNECTING) return;
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err) { fail(c); return; }
    char req[2048];
    int n;
    if (c->ws)
        n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
                     c->path, host);
    else
        n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: %s\r\nAccept: text/event-stream\r\n\r\n",
                     c->path, host);
    send_all(c->fd, req, n);
    c->state = HANDSHAKE;
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)(c - conns)};
    epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
}

static char rbuf[TAIL_MAX + 262144];

static void on_readable(conn_t *c) {
    for (;;) {
        memcpy(rbuf, c->tail, c->tail_len);
        ssize_t n = recv(c->fd, rbuf + c->tail_len, sizeof rbuf - TAIL_MAX, 0);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) { fail(c); return; }
        if (n < 0) return;
        char *data = rbuf + c->tail_len;
        size_t len = (size_t)n;
        if (c->state == HANDSHAKE) {
            size_t room = HEAD_MAX - 1 - c->head_len, take = len < room ? len : room;
            memcpy(c->head + c->head_len, data, take);
            c->head_len += take;
            c->head[c->head_len] = 0;
            char *end = strstr(c->head, "\r\n\r\n");
            if (!end) { if (take < len) fail(c); continue; }
            size_t used = (end + 4 - c->head) - (c->head_len - take);
            int ok = c->ws ? strncmp(c->head + 9, "101", 3) == 0 : strncmp(c->head + 9, "200", 3) == 0;
            if (!ok) { fail(c); return; }
            if (c->ws && c->hello) {
                ws_send_text(c->fd, c->hello);
                c->state = WAIT_FIRST;
            } else {
                ready(c);
            }
            data += used;
            len -= used;
            c->tail_len = 0;
            memmove(rbuf, data, len);
            data = rbuf;
            if (!len) continue;
        }
        if (c->state == WAIT_FIRST) ready(c);
        if (c->ws && memmem(data, len, "\x89\x00", 2)) send_all(c->fd, "\x8a\x80\0\0\0\0", 6);
        scan(c, rbuf, (data - rbuf) + len);
    }
}

static int cmp64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    if (argc < 2) { fprintf(stderr, "usage: loadgen <config>\n"); return 2; }
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    FILE *f = fopen(argv[1], "r");
    if (!f) { perror(argv[1]); return 2; }
    int port;
    if (fscanf(f, "%255s %d\n", host, &port) != 2) return 2;
    char line[4096];
    size_t cap = 1024;
    conns = calloc(cap, sizeof *conns);
    while (fgets(line, sizeof line, f)) {
        char kind[8], path[2048], hello[1500];
        int fields = sscanf(line, "%7s %2047s %1499s", kind, path, hello);
        if (fields < 2) continue;
        if ((size_t)n_conns == cap) { cap *= 2; conns = realloc(conns, cap * sizeof *conns); }
        conn_t *c = &conns[n_conns++];
        memset(c, 0, sizeof *c);
        c->ws = strcmp(kind, "ws") == 0;
        c->path = strdup(path);
        c->hello = fields == 3 ? strdup(hello) : NULL;
    }
    fclose(f);
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    inet_pton(AF_INET, host, &addr.sin_addr);
    epfd = epoll_create1(0);
    double started = mono();
    open_next();
    struct epoll_event evs[1024];
    int announced = 0, stdin_watched = 0;
    double measure_started = 0;
    int closed_before = 0;
    for (;;) {
        if (!announced && n_connected + n_failed == n_conns) {
            printf("{\"event\":\"connected\",\"connected\":%d,\"failed\":%d,\"connect_s\":%.3f}\n",
                   n_connected, n_failed, mono() - started);
            fflush(stdout);
            announced = 1;
            fcntl(0, F_SETFL, fcntl(0, F_GETFL) | O_NONBLOCK);
            struct epoll_event ev = {.events = EPOLLIN, .data.u32 = UINT32_MAX};
            epoll_ctl(epfd, EPOLL_CTL_ADD, 0, &ev);
            stdin_watched = 1;
        }
        int n = epoll_wait(epfd, evs, 1024, 1000);
        for (int i = 0; i < n; i++) {
            uint32_t id = evs[i].data.u32;
            if (id == UINT32_MAX && stdin_watched) {
                char cmd[256];
                ssize_t r = read(0, cmd, sizeof cmd - 1);
                if (r <= 0) return 0;
                cmd[r] = 0;
                if (strstr(cmd, "measure")) {
                    measuring = 1;
                    deliveries = 0;
                    lat_len = 0;
                    closed_before = n_closed;
                    measure_started = mono();
                    printf("{\"event\":\"measuring\"}\n");
                    fflush(stdout);
                }
                if (strstr(cmd, "stop")) {
                    double seconds = mono() - measure_started;
                    measuring = 0;
                    printf("{\"event\":\"result\",\"seconds\":%.6f,\"deliveries\":%lld,\"requests\":0,"
                           "\"connected\":%d,\"failed\":%d,\"closed_while_measuring\":%d,\"latencies_us\":",
                           seconds, deliveries, n_connected, n_failed, n_closed - closed_before);
                    if (!lat_len) {
                        printf("{\"count\":0}}\n");
                    } else {
                        qsort(lat, lat_len, sizeof *lat, cmp64);
                        size_t p50 = lat_len / 2, p99 = (size_t)(lat_len * 0.99);
                        if (p99 >= lat_len) p99 = lat_len - 1;
                        printf("{\"count\":%zu,\"p50_ms\":%.3f,\"p99_ms\":%.3f,\"max_ms\":%.3f}}\n", lat_len,
                               lat[p50] / 1000.0, lat[p99] / 1000.0, lat[lat_len - 1] / 1000.0);
                    }
                    fflush(stdout);
                    return 0;
                }
                continue;
            }
            conn_t *c = &conns[id];
            if (c->state == DEAD) continue;
            if (evs[i].events & (EPOLLERR | EPOLLHUP) && c->state == CONNECTING) { fail(c); continue; }
            if (evs[i].events & EPOLLOUT) on_writable(c);
            if (evs[i].events & EPOLLIN && c->state != DEAD) on_readable(c);
        }
    }
}
