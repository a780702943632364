/*
 * loadgen: open-loop load generator for the balancing bench (issue 5).
 *
 * One process, one epoll loop. Requests come from a trace file, one a
 * line, four fields separated by tabs:
 *
 *     ARRIVAL  KEY  PATH  JSON-BODY
 *
 * ARRIVAL is the offset from the start in ms, or "-" to draw it: Poisson
 * arrivals at --rate requests/s from --seed. KEY is the prefix group of
 * the request ("-": none), used only by --oracle. Every request streams:
 * a body without a "stream" field gets "stream":true and
 * "stream_options":{"include_usage":true} added.
 *
 * Per request it records the status, the time to the first content event
 * (first data: chunk with non-empty text), the total time, the prompt and
 * cached tokens of the usage chunk and the x-mock-instance header; times
 * run from the request's scheduled arrival, so a late send counts. The
 * run ends with aggregates, the last line machine-readable (RESULT ...).
 *
 * Build: cc -O2 -Wall -o loadgen loadgen.c -lm (make bench-balance does).
 */

#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>


#define LG_MAX_TARGETS     16
#define LG_MAX_INSTANCES   64
#define LG_HEAD_MAX        8192
#define LG_LINE_MAX        (16 * 1024)
#define LG_BODY_MAX        (1024 * 1024)
#define LG_REQ_HEAD_MAX    1024
#define LG_EXTRA_HEADERS   2048


typedef enum {
    LG_OK = 0,
    LG_NON200,          /* status other than 200 */
    LG_NO_DONE,         /* stream ended without [DONE] / message_stop */
    LG_ERROR_EVENT,     /* an SSE error event */
    LG_TIMEOUT,         /* --timeout-ms passed */
    LG_CONNECT,         /* connect / write / read failure, bad HTTP */
    LG_DROPPED,         /* --max-inflight reached at the arrival */
    LG_NOUTCOMES
} lg_outcome_e;

static const char *lg_outcome_names[LG_NOUTCOMES] = {
    "ok", "non-200", "no [DONE]", "error event", "timeout", "connection",
    "dropped"
};


typedef struct {
    double       at;            /* arrival, s from the start */
    int          key;           /* prefix group, -1: none */
    char        *path;
    char        *body;
    size_t       body_len;
} lg_line_t;


typedef struct {
    double       start;         /* scheduled arrival */
    double       first;         /* first content event, < 0: none */
    double       end;
    uint32_t     prompt;
    uint32_t     cached;
    int16_t      status;
    int16_t      own;           /* x-mock-inflight: the replica's count */
    int16_t      all;           /* and its instances' total, -1: none */
    int8_t       instance;      /* index in lg_instances, -1: unknown */
    uint8_t      outcome;
    uint8_t      done;
    uint8_t      error_event;
    uint8_t      usage;
} lg_result_t;


typedef enum {
    LG_CONNECTING, LG_WRITING, LG_HEAD, LG_BODY, LG_IDLE
} lg_state_e;

typedef enum {
    LG_CHUNK_SIZE, LG_CHUNK_DATA, LG_CHUNK_CRLF, LG_CHUNK_TRAILER
} lg_chunk_e;


typedef struct lg_conn_s  lg_conn_t;

struct lg_conn_s {
    int          fd;
    int          target;
    int          req;           /* index in the results, -1: idle */
    lg_state_e   state;
    int          reused;        /* a kept-alive connection: resend once */
    int          got_bytes;     /* any response byte for this request */
    lg_conn_t   *next;          /* idle list / free list */

    char         out[LG_REQ_HEAD_MAX];
    size_t       out_len;
    size_t       sent;          /* of head + body */

    char         head[LG_HEAD_MAX];
    size_t       head_len;
    size_t       head_end;      /* bytes of the head with its blank line */

    int          chunked;
    int          close_delimited;
    int          conn_close;
    long long    left;          /* content-length left / chunk left */
    lg_chunk_e   chunk_state;
    char         size_line[32];
    size_t       size_len;

    char        *line;          /* LG_LINE_MAX */
    size_t       line_len;
    int          line_skip;     /* the line overflowed: drop it */
};


static struct {
    struct sockaddr_in   targets[LG_MAX_TARGETS];
    int                  ntargets;
    int                  oracle;
    double               rate;
    uint64_t             seed;
    double               slo;
    double               bound;
    int                  replicas;      /* for the replica bound, 0: seen */
    double               timeout;
    int                  keepalive;
    int                  max_inflight;
    long                 max_requests;
    int                  quiet;
    char                 extra[LG_EXTRA_HEADERS];
    size_t               extra_len;
} lg_conf = {
    .seed = 1, .slo = 0.5, .bound = 1.25, .timeout = 30, .keepalive = 64,
    .max_inflight = 4096, .max_requests = 1000000
};


static lg_line_t    *lg_lines;
static long          lg_nlines;
static lg_result_t  *lg_results;
static char          lg_instances[LG_MAX_INSTANCES][64];
static int           lg_ninstances;
static int           lg_epfd;
static double        lg_t0;
static lg_conn_t    *lg_idle[LG_MAX_TARGETS];
static int           lg_nidle[LG_MAX_TARGETS];
static int           lg_target_inflight[LG_MAX_TARGETS];
static int           lg_inflight;
static lg_conn_t   **lg_active;     /* by fd */
static int           lg_active_max;
static long          lg_resends;

/* oracle: replicas of each key, round robin among them */
static int          *lg_key_first, *lg_key_count, *lg_key_next;
static int          *lg_key_replicas;
static int           lg_nkeys;


static void
lg_die(const char *fmt, ...)
{
    va_list  ap;

    va_start(ap, fmt);
    fputs("loadgen: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(2);
}


static double
lg_now(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9 - lg_t0;
}


static uint64_t
lg_rand(uint64_t *s)
{
    uint64_t  z;

    /* splitmix64 */
    z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}


static void
lg_usage(FILE *f)
{
    fputs(
"usage: loadgen --target HOST:PORT --trace FILE [options]\n"
"\n"
"Open-loop streaming load from a trace, one request a line, tab-separated:\n"
"  ARRIVAL_MS|-  KEY|-  PATH  JSON_BODY\n"
"'-' arrivals are drawn (Poisson at --rate, --seed); KEY is the prefix\n"
"group, used by --oracle. Bodies without \"stream\" get stream:true and\n"
"stream_options.include_usage added.\n"
"\n"
"  --target HOST:PORT   where requests go (IPv4); repeat with --oracle\n"
"  --oracle             route each request straight to one of the targets:\n"
"                       keys are assigned to targets largest first onto the\n"
"                       least loaded (a key heavier than a fair share gets\n"
"                       several, in turn); keyless requests go to the\n"
"                       target with the fewest requests in flight\n"
"  --trace FILE         the trace (required)\n"
"  --rate R             arrivals/s for '-' arrivals\n"
"  --seed N             seed of the arrival draws (default 1)\n"
"  --requests N         stop after the first N lines of the trace\n"
"  --slo-ms N           TTFT goal for goodput (default 500)\n"
"  --bound X            load bound factor: placements counted above\n"
"                       ceil(X x mean in flight per replica) + 1\n"
"                       (default 1.25)\n"
"  --replicas N         replicas behind x-mock-inflight's total (default:\n"
"                       the instances that answered)\n"
"  --timeout-ms N       whole-request timeout (default 30000)\n"
"  --keepalive N        idle connections kept per target (default 64;\n"
"                       0: one connection per request, Connection: close)\n"
"  --max-inflight N     arrivals beyond N requests in flight are dropped\n"
"                       and counted as errors (default 4096)\n"
"  -H, --header 'K: V'  extra request header (repeatable)\n"
"  --quiet              only the RESULT and INSTANCE lines\n"
"  -h, --help           this text\n"
"\n"
"Output: requests, errors by kind (non-200, no [DONE], error event,\n"
"timeout, connection, dropped), cache hit rate = sum cached / sum prompt\n"
"tokens (usage chunks), TTFT p50/p90/p99 of the answered requests,\n"
"goodput = requests/s answered without error within the TTFT SLO over the\n"
"arrival window, and per x-mock-instance: requests, max and mean requests\n"
"in flight (from each request's arrival to its end, client side);\n"
"placed_over / placed_excess: arrivals at which the replica that answered\n"
"held more than ceil(bound x mean in flight per replica at that instant)\n"
"+ 1 requests (the arrival counted), and the largest overshoot;\n"
"replica_over / replica_excess: the same at the replica, from the\n"
"x-mock-inflight: OWN/TOTAL its mock reports at the request's arrival\n"
"there (request read to last byte queued): OWN > ceil(bound x TOTAL /\n"
"replicas) + 1; replica_seen: answers that carried the header.\n",
        f);
}


static void
lg_parse_target(const char *s)
{
    char                 host[64];
    const char          *colon;
    struct sockaddr_in  *sin;
    long                 port;

    if (lg_conf.ntargets == LG_MAX_TARGETS) {
        lg_die("at most %d targets", LG_MAX_TARGETS);
    }

    colon = strrchr(s, ':');
    if (colon == NULL || (size_t) (colon - s) >= sizeof(host)) {
        lg_die("--target %s: expected HOST:PORT", s);
    }

    memcpy(host, s, colon - s);
    host[colon - s] = '\0';
    port = strtol(colon + 1, NULL, 10);

    sin = &lg_conf.targets[lg_conf.ntargets++];
    sin->sin_family = AF_INET;
    sin->sin_port = htons((uint16_t) port);

    if (port <= 0 || port > 65535
        || inet_pton(AF_INET, strcmp(host, "localhost") == 0 ? "127.0.0.1"
                                                             : host,
                     &sin->sin_addr) != 1)
    {
        lg_die("--target %s: expected an IPv4 HOST:PORT", s);
    }
}


/* the trace: every line kept (bodies with the stream fields added) */

static void
lg_load_trace(const char *file)
{
    static const char  stream[] =
        "\"stream\":true,\"stream_options\":{\"include_usage\":true},";
    FILE       *f;
    char       *buf, *p, *fields[4];
    size_t      cap, len, bl;
    ssize_t     got;
    long        lines, i;
    lg_line_t  *l;
    uint64_t    rs;
    double      t;
    int         k;

    f = fopen(file, "r");
    if (f == NULL) {
        lg_die("%s: %s", file, strerror(errno));
    }

    cap = 0;
    buf = NULL;
    lines = 0;
    rs = lg_conf.seed;
    t = 0;

    while (lg_nlines < lg_conf.max_requests
           && (got = getline(&buf, &cap, f)) != -1)
    {
        len = (size_t) got;
        lines++;
        while (len && (buf[len - 1] == '\n' || buf[len - 1] == '\r')) {
            buf[--len] = '\0';
        }
        if (len == 0 || buf[0] == '#') {
            continue;
        }
        if (len > LG_BODY_MAX) {
            lg_die("%s:%ld: line longer than %d bytes", file, lines,
                   LG_BODY_MAX);
        }

        p = buf;
        for (k = 0; k < 4; k++) {
            fields[k] = p;
            if (k < 3) {
                p = strchr(p, '\t');
                if (p == NULL) {
                    lg_die("%s:%ld: expected 4 tab-separated fields",
                           file, lines);
                }
                *p++ = '\0';
            }
        }

        if (fields[2][0] != '/' || fields[3][0] != '{') {
            lg_die("%s:%ld: PATH must start with / and BODY with {",
                   file, lines);
        }

        if ((lg_nlines & (lg_nlines - 1)) == 0) {
            lg_lines = realloc(lg_lines,
                               (lg_nlines ? lg_nlines * 2 : 1)
                               * sizeof(lg_line_t));
            if (lg_lines == NULL) {
                lg_die("out of memory");
            }
        }

        l = &lg_lines[lg_nlines++];

        if (strcmp(fields[0], "-") == 0) {
            if (lg_conf.rate <= 0) {
                lg_die("%s:%ld: drawn arrival ('-') needs --rate", file,
                       lines);
            }
            /* exponential gaps: 53 random bits, never log(0) */
            t += -log1p(-(double) (lg_rand(&rs) >> 11) / 9007199254740992.0)
                 / lg_conf.rate;
            l->at = t;

        } else {
            l->at = strtod(fields[0], NULL) / 1000;
        }

        l->key = strcmp(fields[1], "-") == 0 ? -1 : atoi(fields[1]);
        if (l->key >= 0 && l->key + 1 > lg_nkeys) {
            lg_nkeys = l->key + 1;
        }

        l->path = strdup(fields[2]);
        bl = strlen(fields[3]);
        l->body = malloc(bl + sizeof(stream));
        if (l->path == NULL || l->body == NULL) {
            lg_die("out of memory");
        }

        if (strstr(fields[3], "\"stream\"") == NULL) {
            /* "{" stream-fields rest-of-body, no comma before "}" */
            l->body[0] = '{';
            memcpy(l->body + 1, stream, sizeof(stream) - 1);
            memcpy(l->body + sizeof(stream), fields[3] + 1, bl - 1);
            l->body_len = bl + sizeof(stream) - 1;
            if (fields[3][1] == '}') {
                l->body[sizeof(stream) - 1] = '}';
                l->body_len--;
            }

        } else {
            memcpy(l->body, fields[3], bl);
            l->body_len = bl;
        }

        if (strlen(l->path) > 256) {
            lg_die("%s:%ld: path too long", file, lines);
        }
    }

    free(buf);
    fclose(f);

    if (lg_nlines == 0) {
        lg_die("%s: no requests", file);
    }

    /* arrivals in order (given offsets may come in any order) */
    for (i = 1; i < lg_nlines; i++) {
        if (lg_lines[i].at < lg_lines[i - 1].at) {
            lg_die("%s: arrival offsets must not decrease (line %ld)",
                   file, i + 1);
        }
    }
}


/* the oracle's assignment: keys by weight, largest first, onto the least
 * loaded targets; a key above a fair share is split over several */

static void
lg_assign_oracle(void)
{
    double   *load, share, w;
    long     *weight, i;
    int      *order, k, j, n, best, tmp, total_slots;

    n = lg_conf.ntargets;
    weight = calloc(lg_nkeys + 1, sizeof(long));
    order = calloc(lg_nkeys + 1, sizeof(int));
    load = calloc(n, sizeof(double));
    lg_key_first = calloc(lg_nkeys + 1, sizeof(int));
    lg_key_count = calloc(lg_nkeys + 1, sizeof(int));
    lg_key_next = calloc(lg_nkeys + 1, sizeof(int));
    lg_key_replicas = calloc((size_t) (lg_nkeys + 1) * n, sizeof(int));

    if (!weight || !order || !load || !lg_key_first || !lg_key_count
        || !lg_key_next || !lg_key_replicas)
    {
        lg_die("out of memory");
    }

    for (i = 0; i < lg_nlines; i++) {
        if (lg_lines[i].key >= 0) {
            weight[lg_lines[i].key]++;
        }
    }

    for (k = 0; k < lg_nkeys; k++) {
        order[k] = k;
    }

    /* insertion sort, heaviest first, ties by key: deterministic */
    for (k = 1; k < lg_nkeys; k++) {
        for (j = k; j > 0 && weight[order[j]] > weight[order[j - 1]]; j--) {
            tmp = order[j];
            order[j] = order[j - 1];
            order[j - 1] = tmp;
        }
    }

    share = (double) lg_nlines / n;
    total_slots = 0;

    for (j = 0; j < lg_nkeys; j++) {
        k = order[j];
        if (weight[k] == 0) {
            continue;
        }

        tmp = (int) ceil(weight[k] / share);
        tmp = tmp < 1 ? 1 : (tmp > n ? n : tmp);
        w = (double) weight[k] / tmp;
        lg_key_first[k] = total_slots;
        lg_key_count[k] = tmp;

        while (tmp--) {
            best = -1;
            for (i = 0; i < n; i++) {
                int  taken = 0, m;

                for (m = lg_key_first[k]; m < total_slots; m++) {
                    taken |= lg_key_replicas[m] == i;
                }
                if (!taken && (best < 0 || load[i] < load[best])) {
                    best = (int) i;
                }
            }
            load[best] += w;
            lg_key_replicas[total_slots++] = best;
        }
    }

    free(weight);
    free(order);
    free(load);
}


static int
lg_pick_target(int key)
{
    int  i, best, t;

    if (!lg_conf.oracle) {
        return 0;
    }

    if (key >= 0 && key < lg_nkeys && lg_key_count[key] > 0) {
        t = lg_key_replicas[lg_key_first[key]
                            + lg_key_next[key]++ % lg_key_count[key]];
        return t;
    }

    best = 0;
    for (i = 1; i < lg_conf.ntargets; i++) {
        if (lg_target_inflight[i] < lg_target_inflight[best]) {
            best = i;
        }
    }
    return best;
}


static int
lg_instance(const char *name, size_t len)
{
    int  i;

    if (len >= sizeof(lg_instances[0])) {
        len = sizeof(lg_instances[0]) - 1;
    }

    for (i = 0; i < lg_ninstances; i++) {
        if (strlen(lg_instances[i]) == len
            && memcmp(lg_instances[i], name, len) == 0)
        {
            return i;
        }
    }

    if (lg_ninstances == LG_MAX_INSTANCES) {
        return -1;
    }

    memcpy(lg_instances[lg_ninstances], name, len);
    lg_instances[lg_ninstances][len] = '\0';
    return lg_ninstances++;
}


/* connections */

static void
lg_conn_free(lg_conn_t *c)
{
    if (c->fd >= 0) {
        if (c->fd < lg_active_max) {
            lg_active[c->fd] = NULL;
        }
        close(c->fd);
    }
    free(c->line);
    free(c);
}


static void
lg_watch(lg_conn_t *c, uint32_t events, int op)
{
    struct epoll_event  ev;

    ev.events = events;
    ev.data.ptr = c;
    if (epoll_ctl(lg_epfd, op, c->fd, &ev) == -1) {
        lg_die("epoll_ctl: %s", strerror(errno));
    }
}


static int
lg_connect(lg_conn_t *c)
{
    int  fd, one;

    fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd == -1) {
        return -1;
    }

    one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));

    if (connect(fd, (struct sockaddr *) &lg_conf.targets[c->target],
                sizeof(struct sockaddr_in)) == -1
        && errno != EINPROGRESS)
    {
        close(fd);
        return -1;
    }

    if (fd >= lg_active_max) {
        int         n = fd * 2 + 64;
        lg_conn_t **a = realloc(lg_active, n * sizeof(lg_conn_t *));

        if (a == NULL) {
            lg_die("out of memory");
        }
        memset(a + lg_active_max, 0,
               (n - lg_active_max) * sizeof(lg_conn_t *));
        lg_active = a;
        lg_active_max = n;
    }

    c->fd = fd;
    c->state = LG_CONNECTING;
    lg_active[fd] = c;
    lg_watch(c, EPOLLOUT, EPOLL_CTL_ADD);
    return 0;
}


static void
lg_reset_response(lg_conn_t *c)
{
    c->head_len = 0;
    c->chunked = 0;
    c->close_delimited = 0;
    c->conn_close = 0;
    c->left = 0;
    c->chunk_state = LG_CHUNK_SIZE;
    c->size_len = 0;
    c->line_len = 0;
    c->line_skip = 0;
    c->got_bytes = 0;
    c->sent = 0;
}


static void
lg_prepare(lg_conn_t *c, long req)
{
    lg_line_t  *l = &lg_lines[req];
    int         n;

    n = snprintf(c->out, sizeof(c->out),
                 "POST %s HTTP/1.1\r\n"
                 "Host: loadgen\r\n"
                 "Content-Type: application/json\r\n"
                 "Accept: text/event-stream\r\n"
                 "Content-Length: %zu\r\n"
                 "%s"
                 "%.*s\r\n",
                 l->path, l->body_len,
                 lg_conf.keepalive ? "" : "Connection: close\r\n",
                 (int) lg_conf.extra_len, lg_conf.extra);
    if (n < 0 || (size_t) n >= sizeof(c->out)) {
        lg_die("request head too long (headers of -H)");
    }

    c->out_len = n;
    c->req = (int) req;
    lg_reset_response(c);
}


/* the request is over: record it, keep or close the connection */

static void
lg_finish(lg_conn_t *c, lg_outcome_e outcome)
{
    lg_result_t  *r = &lg_results[c->req];
    int           keep;

    r->end = lg_now();

    if (outcome == LG_OK) {
        if (r->status != 200) {
            outcome = LG_NON200;
        } else if (r->error_event) {
            outcome = LG_ERROR_EVENT;
        } else if (!r->done) {
            outcome = LG_NO_DONE;
        }
    }
    r->outcome = outcome;

    lg_inflight--;
    lg_target_inflight[c->target]--;

    keep = outcome != LG_TIMEOUT && outcome != LG_CONNECT
           && lg_conf.keepalive > 0 && !c->conn_close
           && !c->close_delimited && c->state == LG_BODY
           && lg_nidle[c->target] < lg_conf.keepalive;

    c->req = -1;

    if (!keep) {
        lg_conn_free(c);
        return;
    }

    c->state = LG_IDLE;
    c->next = lg_idle[c->target];
    lg_idle[c->target] = c;
    lg_nidle[c->target]++;
    lg_watch(c, EPOLLIN | EPOLLRDHUP, EPOLL_CTL_MOD);
}


static void
lg_send(lg_conn_t *c);


static void
lg_dispatch(long req)
{
    lg_result_t  *r = &lg_results[req];
    lg_conn_t    *c;
    int           t;

    r->start = lg_lines[req].at;
    r->first = -1;
    r->instance = -1;
    r->own = 0;
    r->all = -1;
    r->status = 0;

    if (lg_inflight >= lg_conf.max_inflight) {
        r->end = r->start;
        r->outcome = LG_DROPPED;
        return;
    }

    t = lg_pick_target(lg_lines[req].key);
    lg_inflight++;
    lg_target_inflight[t]++;

    c = lg_idle[t];
    if (c != NULL) {
        lg_idle[t] = c->next;
        lg_nidle[t]--;
        lg_prepare(c, req);
        c->reused = 1;
        c->state = LG_WRITING;
        lg_watch(c, EPOLLOUT, EPOLL_CTL_MOD);
        lg_send(c);
        return;
    }

    c = calloc(1, sizeof(lg_conn_t));
    if (c == NULL || (c->line = malloc(LG_LINE_MAX)) == NULL) {
        lg_die("out of memory");
    }
    c->fd = -1;
    c->target = t;
    lg_prepare(c, req);

    if (lg_connect(c) == -1) {
        c->state = LG_CONNECTING;
        lg_finish(c, LG_CONNECT);
    }
}


/* a kept-alive connection the server had closed: once on a new one */

static void
lg_failed(lg_conn_t *c)
{
    int  req;

    if (c->reused && !c->got_bytes) {
        req = c->req;
        lg_resends++;
        if (c->fd >= 0) {
            lg_active[c->fd] = NULL;
            close(c->fd);
            c->fd = -1;
        }
        lg_prepare(c, req);
        c->reused = 0;
        if (lg_connect(c) == 0) {
            return;
        }
    }

    lg_finish(c, LG_CONNECT);
}


static void
lg_send(lg_conn_t *c)
{
    lg_line_t     *l = &lg_lines[c->req];
    struct iovec   iov[2];
    ssize_t        n;
    size_t         total;
    int            cnt;

    total = c->out_len + l->body_len;

    while (c->sent < total) {
        cnt = 0;
        if (c->sent < c->out_len) {
            iov[cnt].iov_base = c->out + c->sent;
            iov[cnt++].iov_len = c->out_len - c->sent;
            iov[cnt].iov_base = l->body;
            iov[cnt++].iov_len = l->body_len;

        } else {
            iov[cnt].iov_base = l->body + (c->sent - c->out_len);
            iov[cnt++].iov_len = total - c->sent;
        }

        n = writev(c->fd, iov, cnt);
        if (n == -1) {
            if (errno == EAGAIN) {
                return;
            }
            if (errno == EINTR) {
                continue;
            }
            lg_failed(c);
            return;
        }
        c->sent += n;
    }

    c->state = LG_HEAD;
    lg_watch(c, EPOLLIN | EPOLLRDHUP, EPOLL_CTL_MOD);
}


/* one SSE line of a 200 stream */

static unsigned long
lg_number_after(const char *s, const char *key)
{
    const char  *p = strstr(s, key);

    return p ? strtoul(p + strlen(key), NULL, 10) : 0;
}


static int
lg_has_text(const char *s, const char *key)
{
    const char  *p = s;
    size_t       kl = strlen(key);

    while ((p = strstr(p, key)) != NULL) {
        p += kl;
        if (*p != '"') {
            return 1;
        }
    }
    return 0;
}


static void
lg_sse_line(lg_conn_t *c, char *line, size_t len)
{
    lg_result_t  *r = &lg_results[c->req];
    char         *d;

    if (len < 5 || memcmp(line, "data:", 5) != 0) {
        return;
    }
    d = line + 5;
    if (*d == ' ') {
        d++;
    }

    if (strcmp(d, "[DONE]") == 0) {
        r->done = 1;
        return;
    }

    /* OpenAI error object, Anthropic error event */
    if (strncmp(d, "{\"error\"", 8) == 0
        || strstr(d, "\"type\":\"error\"") != NULL)
    {
        r->error_event = 1;
        return;
    }

    if (strstr(d, "\"type\":\"message_stop\"") != NULL) {
        r->done = 1;
        return;
    }

    if (r->first < 0
        && (lg_has_text(d, "\"content\":\"") || lg_has_text(d, "\"text\":\"")))
    {
        r->first = lg_now();
    }

    if (strstr(d, "\"usage\":{") != NULL) {
        if (strstr(d, "\"prompt_tokens\":") != NULL) {
            r->prompt = lg_number_after(d, "\"prompt_tokens\":");
            r->cached = lg_number_after(d, "\"cached_tokens\":");
            r->usage = 1;

        } else if (strstr(d, "\"input_tokens\":") != NULL) {
            /* Anthropic: input_tokens counts the uncached ones only */
            r->cached = lg_number_after(d, "\"cache_read_input_tokens\":");
            r->prompt = lg_number_after(d, "\"input_tokens\":") + r->cached;
            r->usage = 1;
        }
    }
}


static void
lg_body_data(lg_conn_t *c, const char *p, size_t n)
{
    size_t  i;

    if (lg_results[c->req].status != 200) {
        return;
    }

    for (i = 0; i < n; i++) {
        if (p[i] == '\n') {
            if (!c->line_skip) {
                if (c->line_len && c->line[c->line_len - 1] == '\r') {
                    c->line_len--;
                }
                c->line[c->line_len] = '\0';
                lg_sse_line(c, c->line, c->line_len);
            }
            c->line_len = 0;
            c->line_skip = 0;

        } else if (c->line_len + 1 < LG_LINE_MAX) {
            c->line[c->line_len++] = p[i];

        } else {
            c->line_skip = 1;
        }
    }
}


/* body framing; returns bytes used, sets *end at the end of the body */

static size_t
lg_body(lg_conn_t *c, const char *p, size_t n, int *end)
{
    size_t  used = 0, k;

    *end = 0;

    if (!c->chunked) {
        if (c->close_delimited) {
            lg_body_data(c, p, n);
            return n;
        }
        k = (size_t) c->left < n ? (size_t) c->left : n;
        lg_body_data(c, p, k);
        c->left -= k;
        *end = c->left == 0;
        return k;
    }

    while (used < n && !*end) {
        switch (c->chunk_state) {

        case LG_CHUNK_SIZE:
        case LG_CHUNK_TRAILER:
            if (p[used] != '\n') {
                if (c->size_len + 1 >= sizeof(c->size_line)) {
                    /* chunk extensions or trailers: keep the start */
                    used++;
                    continue;
                }
                c->size_line[c->size_len++] = p[used++];
                continue;
            }
            used++;
            c->size_line[c->size_len] = '\0';
            if (c->size_len && c->size_line[c->size_len - 1] == '\r') {
                c->size_line[--c->size_len] = '\0';
            }

            if (c->chunk_state == LG_CHUNK_TRAILER) {
                if (c->size_len == 0) {
                    *end = 1;
                }
                c->size_len = 0;
                continue;
            }

            c->left = strtoll(c->size_line, NULL, 16);
            c->size_len = 0;
            c->chunk_state = c->left == 0 ? LG_CHUNK_TRAILER : LG_CHUNK_DATA;
            break;

        case LG_CHUNK_DATA:
            k = (size_t) c->left < n - used ? (size_t) c->left : n - used;
            lg_body_data(c, p + used, k);
            used += k;
            c->left -= k;
            if (c->left == 0) {
                c->chunk_state = LG_CHUNK_CRLF;
            }
            break;

        case LG_CHUNK_CRLF:
            if (p[used++] == '\n') {
                c->chunk_state = LG_CHUNK_SIZE;
            }
            break;
        }
    }

    return used;
}


/* the response head; returns 1 when complete, -1 on a bad one */

static int
lg_head(lg_conn_t *c)
{
    lg_result_t  *r = &lg_results[c->req];
    char         *p, *eol, *colon, *v;
    int           have_length = 0;

    c->head[c->head_len] = '\0';
    p = strstr(c->head, "\r\n\r\n");
    if (p == NULL) {
        return c->head_len >= LG_HEAD_MAX - 1 ? -1 : 0;
    }
    c->head_end = p - c->head + 4;

    if (strncmp(c->head, "HTTP/1.", 7) != 0 || strlen(c->head) < 12) {
        return -1;
    }
    r->status = (int16_t) atoi(c->head + 9);
    c->conn_close = c->head[7] == '0';

    for (p = strstr(c->head, "\r\n") + 2; *p != '\r'; p = eol + 2) {
        eol = strstr(p, "\r\n");
        *eol = '\0';
        colon = strchr(p, ':');
        if (colon == NULL) {
            continue;
        }
        *colon = '\0';
        for (v = colon + 1; *v == ' ' || *v == '\t'; v++) { /* void */ }

        if (strcasecmp(p, "content-length") == 0) {
            c->left = strtoll(v, NULL, 10);
            have_length = 1;

        } else if (strcasecmp(p, "transfer-encoding") == 0) {
            c->chunked = strcasestr(v, "chunked") != NULL;

        } else if (strcasecmp(p, "connection") == 0) {
            if (strcasestr(v, "close") != NULL) {
                c->conn_close = 1;
            }

        } else if (strcasecmp(p, "x-mock-instance") == 0) {
            r->instance = (int8_t) lg_instance(v, strlen(v));

        } else if (strcasecmp(p, "x-mock-inflight") == 0) {
            int  own, all;

            if (sscanf(v, "%d/%d", &own, &all) == 2 && own > 0
                && all >= own && all < 32768)
            {
                r->own = (int16_t) own;
                r->all = (int16_t) all;
            }
        }
    }

    if (!c->chunked && !have_length) {
        c->close_delimited = 1;
        c->conn_close = 1;
    }

    return 1;
}


static void
lg_read(lg_conn_t *c)
{
    char     buf[16384];
    char    *p;
    ssize_t  n;
    size_t   used, room, prev;
    int      end, rc;

    for ( ;; ) {
        n = read(c->fd, buf, sizeof(buf));

        if (n == -1) {
            if (errno == EAGAIN) {
                return;
            }
            if (errno == EINTR) {
                continue;
            }
            lg_failed(c);
            return;
        }

        if (n == 0) {
            if (c->state == LG_BODY && c->close_delimited) {
                lg_finish(c, LG_OK);
            } else if (c->state == LG_BODY) {
                /* truncated: a status, maybe no [DONE] */
                lg_finish(c, lg_results[c->req].status == 200 ? LG_OK
                                                              : LG_CONNECT);
            } else {
                lg_failed(c);
            }
            return;
        }

        c->got_bytes = 1;
        p = buf;

        if (c->state == LG_HEAD) {
            prev = c->head_len;
            room = LG_HEAD_MAX - 1 - c->head_len;
            used = (size_t) n < room ? (size_t) n : room;
            memcpy(c->head + c->head_len, p, used);
            c->head_len += used;

            rc = lg_head(c);
            if (rc == -1) {
                lg_finish(c, LG_CONNECT);
                return;
            }
            if (rc == 0) {
                continue;
            }

            /* the bytes of this read past the head belong to the body */
            used = c->head_end - prev;
            p += used;
            n -= used;
            c->state = LG_BODY;

            if (!c->chunked && !c->close_delimited && c->left == 0) {
                lg_finish(c, LG_OK);
                return;
            }
        }

        while (n > 0) {
            used = lg_body(c, p, (size_t) n, &end);
            p += used;
            n -= used;
            if (end) {
                lg_finish(c, LG_OK);
                return;
            }
        }
    }
}


static void
lg_event(lg_conn_t *c, uint32_t events)
{
    int        err;
    socklen_t  len;

    switch (c->state) {

    case LG_CONNECTING:
        err = 0;
        len = sizeof(err);
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1
            || err != 0)
        {
            lg_finish(c, LG_CONNECT);
            return;
        }
        c->state = LG_WRITING;
        /* fall through */

    case LG_WRITING:
        if (events & (EPOLLERR | EPOLLHUP)) {
            lg_failed(c);
            return;
        }
        lg_send(c);
        return;

    case LG_HEAD:
    case LG_BODY:
        lg_read(c);
        return;

    case LG_IDLE:
        /* the server closed a kept-alive connection (or sent garbage) */
        {
            lg_conn_t  **pp;

            for (pp = &lg_idle[c->target]; *pp; pp = &(*pp)->next) {
                if (*pp == c) {
                    *pp = c->next;
                    lg_nidle[c->target]--;
                    break;
                }
            }
        }
        lg_conn_free(c);
        return;
    }
}


/* requests past their deadline */

static void
lg_expire(double now)
{
    lg_conn_t  *c;
    int         fd;

    for (fd = 0; fd < lg_active_max; fd++) {
        c = lg_active[fd];
        if (c != NULL && c->req >= 0
            && now - lg_results[c->req].start > lg_conf.timeout)
        {
            lg_finish(c, LG_TIMEOUT);
        }
    }
}


/* report */

static int
lg_cmp_double(const void *a, const void *b)
{
    double  x = *(const double *) a, y = *(const double *) b;

    return (x > y) - (x < y);
}


typedef struct {
    double  t;
    int     delta;
    int     inst;
} lg_edge_t;


static int
lg_cmp_edge(const void *a, const void *b)
{
    const lg_edge_t  *x = a, *y = b;

    if (x->t != y->t) {
        return (x->t > y->t) - (x->t < y->t);
    }
    /* an end before a start at the same instant */
    return x->delta - y->delta;
}


static double
lg_pct(const double *v, long n, double p)
{
    long  i;

    if (n == 0) {
        return 0;
    }
    i = (long) ceil(p / 100 * n) - 1;
    return v[i < 0 ? 0 : i];
}


static void
lg_report(long n, double elapsed)
{
    long          i, outcome[LG_NOUTCOMES] = { 0 }, nttft, good, errors;
    long          count[LG_MAX_INSTANCES + 1] = { 0 }, ne;
    unsigned long long  prompt = 0, cached = 0;
    double       *ttft, window, span_start, span_end, busy, mean_sum;
    double        p50, p90, p99, mean;
    const char   *name;
    lg_edge_t    *edges;
    int           k, cur, max, max_all, over_max, bound;
    int           now[LG_MAX_INSTANCES + 1], total;
    long          over, rover, rseen;
    int           rmax, nrep;
    char          counts[4096];
    size_t        cl;

    ttft = malloc(n * sizeof(double));
    edges = malloc(2 * n * sizeof(lg_edge_t));
    if (ttft == NULL || edges == NULL) {
        lg_die("out of memory");
    }

    nttft = 0;
    good = 0;
    span_start = n ? lg_results[0].start : 0;
    span_end = span_start;

    for (i = 0; i < n; i++) {
        lg_result_t  *r = &lg_results[i];

        outcome[r->outcome]++;
        if (r->usage) {
            prompt += r->prompt;
            cached += r->cached;
        }
        if (r->outcome == LG_OK && r->first >= 0) {
            ttft[nttft++] = r->first - r->start;
            if (r->first - r->start <= lg_conf.slo) {
                good++;
            }
        }
        count[r->instance < 0 ? LG_MAX_INSTANCES : r->instance]++;
        if (r->end > span_end) {
            span_end = r->end;
        }
    }

    qsort(ttft, nttft, sizeof(double), lg_cmp_double);
    p50 = lg_pct(ttft, nttft, 50) * 1000;
    p90 = lg_pct(ttft, nttft, 90) * 1000;
    p99 = lg_pct(ttft, nttft, 99) * 1000;

    /* the arrival window: first to last arrival plus one mean gap */
    window = n > 1 ? (lg_results[n - 1].start - lg_results[0].start)
                     * n / (n - 1)
                   : 1;
    if (window <= 0) {
        window = 1;
    }

    errors = n - outcome[LG_OK];

    if (!lg_conf.quiet) {
        printf("loadgen: %ld requests, %.1f s of arrivals (%.1f/s), "
               "run %.1f s, %ld resent on a new connection\n",
               n, window, n / window, elapsed, lg_resends);
        printf("  errors %ld:", errors);
        for (k = 1; k < LG_NOUTCOMES; k++) {
            printf(" %s %ld%s", lg_outcome_names[k], outcome[k],
                   k + 1 < LG_NOUTCOMES ? "," : "\n");
        }
        printf("  cache hit rate %.4f (%llu cached / %llu prompt tokens)\n",
               prompt ? (double) cached / prompt : 0, cached, prompt);
        printf("  TTFT ms p50 %.1f p90 %.1f p99 %.1f (%ld answered)\n",
               p50, p90, p99, nttft);
        printf("  goodput %.2f req/s with TTFT <= %.0f ms (%ld of %ld)\n",
               good / window, lg_conf.slo * 1000, good, n);
    }

    /* in flight per instance, from each request's arrival to its end */
    max_all = 0;
    mean_sum = 0;
    cl = 0;
    counts[0] = '\0';

    for (k = 0; k <= lg_ninstances; k++) {
        int  idx = k < lg_ninstances ? k : LG_MAX_INSTANCES;

        if (count[idx] == 0) {
            continue;
        }

        ne = 0;
        busy = 0;
        for (i = 0; i < n; i++) {
            lg_result_t  *r = &lg_results[i];
            int           ri = r->instance < 0 ? LG_MAX_INSTANCES
                                               : r->instance;

            if (ri != idx || r->outcome == LG_DROPPED) {
                continue;
            }
            edges[ne].t = r->start;
            edges[ne++].delta = 1;
            edges[ne].t = r->end;
            edges[ne++].delta = -1;
            busy += r->end - r->start;
        }
        qsort(edges, ne, sizeof(lg_edge_t), lg_cmp_edge);

        cur = 0;
        max = 0;
        for (i = 0; i < ne; i++) {
            cur += edges[i].delta;
            if (cur > max) {
                max = cur;
            }
        }

        mean = span_end > span_start ? busy / (span_end - span_start) : 0;
        name = k < lg_ninstances ? lg_instances[k] : "-";

        printf("INSTANCE %s requests=%ld max_inflight=%d mean_inflight=%.2f\n",
               name, count[idx], max, mean);

        if (k < lg_ninstances) {
            if (max > max_all) {
                max_all = max;
            }
            mean_sum += mean;
        }
        cl += snprintf(counts + cl, cl < sizeof(counts) ? sizeof(counts) - cl
                                                        : 0,
                       "%s%s:%ld", cl ? "/" : "", name, count[idx]);
        if (cl >= sizeof(counts)) {
            cl = sizeof(counts) - 1;
        }
    }

    /*
     * the bounded-load figure: at every placement (a request's arrival,
     * counted on the replica that answered it), in flight there against
     * ceil(factor x mean in flight per replica at that instant) + 1, the
     * request itself counted; over = placements above it, excess = the
     * largest overshoot (0: never above)
     */
    ne = 0;
    for (i = 0; i < n; i++) {
        lg_result_t  *r = &lg_results[i];

        if (r->instance < 0 || r->outcome == LG_DROPPED) {
            continue;
        }
        edges[ne].t = r->start;
        edges[ne].inst = r->instance;
        edges[ne++].delta = 1;
        edges[ne].t = r->end;
        edges[ne].inst = r->instance;
        edges[ne++].delta = -1;
    }
    qsort(edges, ne, sizeof(lg_edge_t), lg_cmp_edge);

    memset(now, 0, sizeof(now));
    total = 0;
    over = 0;
    over_max = 0;
    for (i = 0; i < ne; i++) {
        now[edges[i].inst] += edges[i].delta;
        total += edges[i].delta;
        if (edges[i].delta < 0 || lg_ninstances == 0) {
            continue;
        }
        bound = (int) ceil(lg_conf.bound * total / lg_ninstances - 1e-9)
                + 1;
        if (now[edges[i].inst] > bound) {
            over++;
            if (now[edges[i].inst] - bound > over_max) {
                over_max = now[edges[i].inst] - bound;
            }
        }
    }

    /*
     * the same bound at the replica: its own count and its instances'
     * total when the request arrived there (x-mock-inflight), so the
     * client's view of when a request starts and ends plays no part
     */
    nrep = lg_conf.replicas ? lg_conf.replicas : lg_ninstances;
    rover = 0;
    rseen = 0;
    rmax = 0;
    for (i = 0; i < n; i++) {
        lg_result_t  *r = &lg_results[i];

        if (r->all < 0 || nrep == 0) {
            continue;
        }
        rseen++;
        bound = (int) ceil(lg_conf.bound * r->all / nrep - 1e-9) + 1;
        if (r->own > bound) {
            rover++;
            if (r->own - bound > rmax) {
                rmax = r->own - bound;
            }
        }
    }

    if (!lg_conf.quiet) {
        printf("  placements above ceil(%.2f x mean in flight) + 1: %ld "
               "(largest excess %d), client side\n", lg_conf.bound, over,
               over_max);
        printf("  arrivals above it at the replica (x-mock-inflight, "
               "%d replicas): %ld (largest excess %d) of %ld\n", nrep,
               rover, rmax, rseen);
    }

    printf("RESULT requests=%ld errors=%ld non200=%ld no_done=%ld "
           "error_event=%ld timeout=%ld connection=%ld dropped=%ld "
           "hit_rate=%.4f ttft_p50_ms=%.1f ttft_p90_ms=%.1f ttft_p99_ms=%.1f "
           "goodput=%.2f offered=%.2f max_inflight=%d mean_inflight=%.2f "
           "placed_over=%ld placed_excess=%d replica_over=%ld "
           "replica_excess=%d replica_seen=%ld instances=%s\n",
           n, errors, outcome[LG_NON200], outcome[LG_NO_DONE],
           outcome[LG_ERROR_EVENT], outcome[LG_TIMEOUT], outcome[LG_CONNECT],
           outcome[LG_DROPPED], prompt ? (double) cached / prompt : 0,
           p50, p90, p99, good / window, n / window, max_all,
           lg_ninstances ? mean_sum / lg_ninstances : 0,
           over, over_max, rover, rmax, rseen, cl ? counts : "-");

    free(ttft);
    free(edges);
}


int
main(int argc, char **argv)
{
    static const struct option  opts[] = {
        { "target", required_argument, NULL, 't' },
        { "oracle", no_argument, NULL, 'o' },
        { "trace", required_argument, NULL, 'f' },
        { "rate", required_argument, NULL, 'r' },
        { "seed", required_argument, NULL, 's' },
        { "requests", required_argument, NULL, 'n' },
        { "slo-ms", required_argument, NULL, 'S' },
        { "bound", required_argument, NULL, 'b' },
        { "replicas", required_argument, NULL, 'R' },
        { "timeout-ms", required_argument, NULL, 'T' },
        { "keepalive", required_argument, NULL, 'k' },
        { "max-inflight", required_argument, NULL, 'm' },
        { "header", required_argument, NULL, 'H' },
        { "quiet", no_argument, NULL, 'q' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 }
    };
    struct epoll_event  evs[256];
    const char         *trace = NULL;
    double              now, wait, last_expire;
    long                next;
    int                 o, i, ne, ms;
    size_t              hl;

    while ((o = getopt_long(argc, argv, "hH:", opts, NULL)) != -1) {
        switch (o) {
        case 't': lg_parse_target(optarg); break;
        case 'o': lg_conf.oracle = 1; break;
        case 'f': trace = optarg; break;
        case 'r': lg_conf.rate = atof(optarg); break;
        case 's': lg_conf.seed = strtoull(optarg, NULL, 10); break;
        case 'n': lg_conf.max_requests = atol(optarg); break;
        case 'S': lg_conf.slo = atof(optarg) / 1000; break;
        case 'b': lg_conf.bound = atof(optarg); break;
        case 'R': lg_conf.replicas = atoi(optarg); break;
        case 'T': lg_conf.timeout = atof(optarg) / 1000; break;
        case 'k': lg_conf.keepalive = atoi(optarg); break;
        case 'm': lg_conf.max_inflight = atoi(optarg); break;
        case 'q': lg_conf.quiet = 1; break;
        case 'H':
            hl = strlen(optarg);
            if (strchr(optarg, ':') == NULL || strpbrk(optarg, "\r\n")
                || lg_conf.extra_len + hl + 2 >= sizeof(lg_conf.extra))
            {
                lg_die("-H %s: expected 'Name: value' (2 KB in all)", optarg);
            }
            memcpy(lg_conf.extra + lg_conf.extra_len, optarg, hl);
            memcpy(lg_conf.extra + lg_conf.extra_len + hl, "\r\n", 2);
            lg_conf.extra_len += hl + 2;
            break;
        case 'h': lg_usage(stdout); return 0;
        default: lg_usage(stderr); return 2;
        }
    }

    if (optind != argc || trace == NULL || lg_conf.ntargets == 0) {
        lg_usage(stderr);
        return 2;
    }
    if (lg_conf.ntargets > 1 && !lg_conf.oracle) {
        lg_die("several --target need --oracle");
    }
    if (lg_conf.max_requests <= 0 || lg_conf.max_inflight <= 0
        || lg_conf.timeout <= 0 || lg_conf.keepalive < 0)
    {
        lg_die("--requests, --max-inflight, --timeout-ms must be > 0");
    }

    lg_load_trace(trace);
    if (lg_conf.oracle) {
        lg_assign_oracle();
    }

    lg_results = calloc(lg_nlines, sizeof(lg_result_t));
    lg_epfd = epoll_create1(EPOLL_CLOEXEC);
    if (lg_results == NULL || lg_epfd == -1) {
        lg_die("out of memory or epoll: %s", strerror(errno));
    }

    lg_t0 = 0;
    lg_t0 = lg_now();
    next = 0;
    last_expire = 0;

    while (next < lg_nlines || lg_inflight > 0) {
        now = lg_now();

        while (next < lg_nlines && lg_lines[next].at <= now) {
            lg_dispatch(next++);
        }

        if (now - last_expire >= 0.1) {
            lg_expire(now);
            last_expire = now;
        }

        wait = next < lg_nlines ? lg_lines[next].at - lg_now() : 0.1;
        ms = wait <= 0 ? 0 : (int) ceil(wait * 1000);
        if (ms > 100) {
            ms = 100;
        }

        ne = epoll_wait(lg_epfd, evs, 256, ms);
        if (ne == -1 && errno != EINTR) {
            lg_die("epoll_wait: %s", strerror(errno));
        }

        for (i = 0; i < ne; i++) {
            lg_conn_t  *c = evs[i].data.ptr;

            lg_event(c, evs[i].events);
        }
    }

    lg_report(lg_nlines, lg_now());
    return 0;
}
