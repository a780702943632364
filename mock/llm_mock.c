/*
 * llm-mock: a deterministic mock LLM server for the ngx_llm tests,
 * benchmarks and demo.  It speaks the OpenAI (/v1/chat/completions,
 * /v1/completions, /v1/embeddings) and Anthropic (/v1/messages) HTTP APIs,
 * streaming (SSE) or not, with timing, prefix caching and faults under the
 * caller's control (CLI options and x-mock-* request headers).
 *
 * Design
 *
 *   - One process, one thread, one level-triggered epoll loop.  Every socket
 *     is nonblocking and nothing sleeps.  Timers live in a binary min-heap
 *     of connections keyed by deadline (microseconds, CLOCK_MONOTONIC); the
 *     nearest deadline is epoll_wait's timeout.  A connection has at most
 *     one timer: the next thing it has to do.  SIGINT/SIGTERM arrive
 *     through a signalfd in the same loop.
 *   - Each --listen is an instance: its own listening socket, settings,
 *     counters and prefix cache.
 *   - A connection is a small state machine:
 *       READING  parse requests from the input buffer (pipelining works)
 *       ACTIVE   a request is in progress: waiting for its first token
 *                (TTFT), then producing one token per ITL, driven by the
 *                timer; or hanging (faults) until the client leaves
 *       CLOSING  flush the output, then shut down the write side
 *       LINGER   discard input until the peer closes (or 2 s), so that a
 *                close never becomes a RST that eats the response
 *     A client that closes while a request is active cancels it: its timer
 *     goes, the request is counted in mock_cancelled_total.
 *   - HTTP/1.1 parser: request line, headers, Content-Length or chunked
 *     bodies, Expect: 100-continue, keepalive and HTTP/1.0.  Output goes to
 *     a per connection buffer flushed with send(); EPOLLOUT is asked for
 *     only while that buffer is not empty.
 *   - Request JSON is parsed with jansson; responses are printed directly.
 *     The answer derives from XXH3 of the prompt (model, roles, texts):
 *     words drawn from a fixed vocabulary by a splitmix64 generator seeded
 *     with that hash, one word (plus a space) per token.  Same request,
 *     same bytes; ids derive from the hash too.
 *   - Prefix cache: the prompt text (model, then system and message
 *     contents) is cut into blocks of block_tokens * 4 bytes, hashed as a
 *     chain, and looked up in an LRU of block hashes (open addressing with
 *     linear probing and an intrusive doubly linked list).
 */

#define _GNU_SOURCE

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <xxhash.h>


#define MOCK_VERSION        "1.0"
#define MOCK_CREATED        1700000000
#define MOCK_MAX_HEAD       (64 * 1024)
#define MOCK_MAX_BODY       (32 * 1024 * 1024)
#define MOCK_MAX_INPUT      (MOCK_MAX_HEAD + MOCK_MAX_BODY)
#define MOCK_READ_CHUNK     16384
#define MOCK_LINGER_US      (2 * 1000000)
#define MOCK_EVENTS         512
#define MOCK_ACCEPTS        64
#define MOCK_NO_TIMER       SIZE_MAX
#define MOCK_MAX_MODEL      256
#define MOCK_EMBED_DIMS     16
#define MOCK_LRU_NIL        UINT32_MAX

/* results of internal steps */
#define MOCK_OK             0
#define MOCK_CLOSE          -1      /* the caller frees the connection */
#define MOCK_AGAIN          -2      /* need more input */
#define MOCK_BAD            -3      /* an error response was queued */

enum {
    MOCK_EV_LISTENER = 1,
    MOCK_EV_CONN,
    MOCK_EV_SIGNAL
};

enum {
    MOCK_READING = 0,
    MOCK_ACTIVE,
    MOCK_HANG,
    MOCK_CLOSING,
    MOCK_LINGER
};

enum {
    MOCK_API_NONE = 0,
    MOCK_API_CHAT,
    MOCK_API_COMPLETIONS,
    MOCK_API_EMBEDDINGS,
    MOCK_API_MESSAGES
};

enum {
    MOCK_FAULT_NONE = 0,
    MOCK_FAULT_SSE_ERROR,
    MOCK_FAULT_CLOSE,
    MOCK_FAULT_HANG_HEADERS,
    MOCK_FAULT_HANG_FIRST,
    MOCK_FAULT_MALFORMED,
    MOCK_FAULT_RESET
};

enum {
    MOCK_DONE_COMPLETED = 0,
    MOCK_DONE_CANCELLED,
    MOCK_DONE_ABORTED
};

enum {
    MOCK_CHUNK_SIZE = 0,
    MOCK_CHUNK_DATA,
    MOCK_CHUNK_DATA_END,
    MOCK_CHUNK_TRAILER,
    MOCK_CHUNK_DONE
};


typedef struct {
    char                 *data;
    size_t                len;
    size_t                cap;
} mock_buf_t;


typedef struct {
    int                   type;
    int                   fd;
} mock_ev_t;


typedef struct {
    uint64_t              key;
    uint32_t              prev;
    uint32_t              next;
} mock_lru_node_t;


typedef struct {
    mock_lru_node_t      *nodes;    /* cap + 1, the last is the sentinel */
    uint32_t             *slots;    /* node index + 1, 0: empty */
    uint32_t              mask;
    uint32_t              cap;
    uint32_t              used;
} mock_lru_t;


typedef struct {
    mock_ev_t             ev;
    const char           *spec;     /* the --listen argument */
    char                  name[64];
    char                  unix_path[108];
    struct sockaddr_storage sa;
    socklen_t             salen;

    /* settings: long so that one option table can describe them all */
    long                  ttft_ms;
    long                  itl_ms;
    long                  tokens;
    long                  status;
    long                  retry_after;
    long                  cache_blocks;
    long                  block_tokens;
    long                  prefill_us;
    long                  fault;
    long                  fault_after;

    mock_lru_t            cache;

    uint64_t              requests;
    uint64_t              completed;
    uint64_t              cancelled;
    uint64_t              aborted;
    uint64_t              errors;
    uint64_t              prompt_tokens;
    uint64_t              generation_tokens;
    uint64_t              cache_queries;
    uint64_t              cache_hits;
    long                  running;
    long                  waiting;
    long                  connections;
    long                  inflight;     /* API requests, read to finish */
} mock_instance_t;


/* what the request head said; reset for every request */
typedef struct {
    size_t                head_len;     /* 0 until the head is complete */
    size_t                scan;         /* resume point of the head search */
    size_t                req_len;      /* head + raw body, once complete */
    int                   ch_state;
    size_t                ch_pos;
    size_t                ch_left;

    char                  method[16];
    char                  path[1024];   /* without the query string */
    int                   http_minor;
    long long             content_length;
    unsigned              chunked:1;
    unsigned              keepalive:1;
    unsigned              expect_continue:1;

    long                  ttft_ms;      /* x-mock-*, -1: absent */
    long                  itl_ms;
    long                  tokens;
    long                  status;
    long                  retry_after;
    long                  fault;
    long                  fault_after;
    int                   echo;         /* 1: body, 2: head */
    const char           *bad_header;
} mock_head_t;


/* the request in progress */
typedef struct {
    unsigned              active:1;     /* counted in waiting or running */
    unsigned              counted:1;    /* counted in requests_total */
    unsigned              started:1;    /* first token produced: running */
    unsigned              decoded:1;    /* non-stream decode delay planned */
    unsigned              stream:1;
    unsigned              include_usage:1;
    unsigned              chunked:1;    /* chunked response body */
    unsigned              keepalive:1;
    unsigned              length_cut:1; /* max_tokens cut the answer */
    unsigned              fault_done:1;
    unsigned              error_event:1;
    unsigned              inflight:1;   /* counted in the inflight counts */
    int                   api;
    int                   fault;
    int                   status;       /* status line sent, 0: none */
    int                   http_minor;
    long                  fault_after;
    long                  n;            /* tokens to produce */
    long                  sent;         /* tokens produced so far */
    long                  prompt_tokens;
    long                  cached_tokens;
    uint64_t              rng;
    uint64_t              itl_us;
    uint64_t              start_us;
    uint64_t              ttft_us;      /* measured, for the log */
    long                  inflight_own; /* at arrival, itself counted */
    long                  inflight_all; /* the same over all instances */
    char                 *model;        /* JSON escaped */
    char                  id[48];
    char                  method[16];
    char                  path[96];     /* for the log */
} mock_req_t;


typedef struct mock_conn_s  mock_conn_t;

struct mock_conn_s {
    mock_ev_t             ev;
    mock_instance_t      *inst;
    mock_conn_t          *prev;
    mock_conn_t          *next;
    int                   state;
    unsigned              eof:1;
    unsigned              continue_sent:1;
    uint32_t              events;
    size_t                heap_idx;
    uint64_t              deadline;
    mock_buf_t            in;
    mock_buf_t            out;
    size_t                out_sent;
    mock_buf_t            body;         /* dechunked request body */
    mock_buf_t            pending;      /* non-stream response body */
    mock_head_t           h;
    mock_req_t            req;
};


typedef struct {
    const char           *name;
    size_t                offset;       /* of a long in mock_instance_t */
    long                  min;
    long                  max;
    int                   global;       /* also a --flag */
} mock_opt_t;


static struct {
    int                   epfd;
    int                   reserve_fd;
    int                   quiet;
    int                   real_time;
    int                   stop;
    const char           *pid_file;
    mock_ev_t             sig;
    mock_instance_t      *insts;
    size_t                ninsts;
    long                  inflight;     /* over the instances */
    mock_conn_t          *conns;
    mock_conn_t         **heap;
    size_t                heap_len;
    size_t                heap_cap;
    uint64_t              now;
    uint64_t              seq;
    mock_buf_t            text;         /* prompt text of the request */
    mock_buf_t            tmp;          /* one SSE event, one body */
    uint64_t             *hashes;
    size_t                nhashes;
    XXH3_state_t         *xxh;
    mock_instance_t       defaults;
} mock;


static const char  *mock_words[] = {
    "the", "model", "answers", "with", "plain", "words", "from", "a",
    "small", "fixed", "list", "so", "tests", "can", "predict", "every",
    "token", "stream", "cache", "prefix", "gateway", "nginx", "upstream",
    "request", "latency", "budget", "route", "fast", "quiet", "steady",
    "river", "stone", "cloud", "light", "north", "green", "paper", "glass",
    "signal", "number", "simple", "clear", "short", "long", "early", "late",
    "open", "close", "bright", "calm", "deep", "sharp", "warm", "cold",
    "above", "below", "near", "far", "again", "always", "never", "often",
    "maybe", "done"
};

_Static_assert(sizeof(mock_words) == 64 * sizeof(char *),
               "the vocabulary must hold 64 words");

static const char  *mock_fault_names[] = {
    "none", "sse-error", "close-mid-stream", "hang-headers",
    "hang-first-token", "malformed-sse", "reset", NULL
};

static const mock_opt_t  mock_opts[] = {
    { "ttft_ms", offsetof(mock_instance_t, ttft_ms), 0, 3600000, 1 },
    { "itl_ms", offsetof(mock_instance_t, itl_ms), 0, 600000, 1 },
    { "tokens", offsetof(mock_instance_t, tokens), 0, 1000000, 1 },
    { "prefill_us", offsetof(mock_instance_t, prefill_us), 0, 10000000, 1 },
    { "cache_blocks", offsetof(mock_instance_t, cache_blocks), 0, 16777216,
      1 },
    { "block_tokens", offsetof(mock_instance_t, block_tokens), 1, 65536, 1 },
    { "status", offsetof(mock_instance_t, status), 200, 599, 0 },
    { "retry_after", offsetof(mock_instance_t, retry_after), 0, 86400, 0 },
    { "fault_after", offsetof(mock_instance_t, fault_after), 0, 1000000, 0 },
    { NULL, 0, 0, 0, 0 }
};


static int mock_conn_process(mock_conn_t *c);
static int mock_conn_flush(mock_conn_t *c);
static int mock_req_step(mock_conn_t *c);


/* ---- utilities ---------------------------------------------------------- */


static void
mock_oom(void)
{
    fputs("llm-mock: out of memory\n", stderr);
    abort();
}


static void
mock_buf_reserve(mock_buf_t *b, size_t n)
{
    size_t   cap;
    char    *p;

    if (b->cap - b->len >= n) {
        return;
    }

    cap = b->cap ? b->cap : 256;
    while (cap - b->len < n) {
        cap *= 2;
    }

    p = realloc(b->data, cap);
    if (p == NULL) {
        mock_oom();
    }

    b->data = p;
    b->cap = cap;
}


static void
mock_buf_add(mock_buf_t *b, const void *p, size_t n)
{
    if (n == 0) {
        return;
    }
    mock_buf_reserve(b, n);
    memcpy(b->data + b->len, p, n);
    b->len += n;
}


static void
mock_buf_adds(mock_buf_t *b, const char *s)
{
    mock_buf_add(b, s, strlen(s));
}


__attribute__((format(printf, 2, 3)))
static void
mock_buf_addf(mock_buf_t *b, const char *fmt, ...)
{
    int      n;
    va_list  ap;

    mock_buf_reserve(b, 256);

    va_start(ap, fmt);
    n = vsnprintf(b->data + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);

    if (n < 0) {
        return;
    }

    if ((size_t) n >= b->cap - b->len) {
        mock_buf_reserve(b, (size_t) n + 1);
        va_start(ap, fmt);
        vsnprintf(b->data + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
    }

    b->len += (size_t) n;
}


/* appends s escaped for a JSON string, without the quotes */
static void
mock_buf_add_json(mock_buf_t *b, const char *s, size_t n)
{
    size_t          i;
    unsigned char   ch;

    mock_buf_reserve(b, n + 16);

    for (i = 0; i < n; i++) {
        ch = (unsigned char) s[i];

        if (ch == '"' || ch == '\\') {
            mock_buf_reserve(b, 2);
            b->data[b->len++] = '\\';
            b->data[b->len++] = (char) ch;

        } else if (ch == '\n') {
            mock_buf_add(b, "\\n", 2);

        } else if (ch == '\r') {
            mock_buf_add(b, "\\r", 2);

        } else if (ch == '\t') {
            mock_buf_add(b, "\\t", 2);

        } else if (ch < 0x20 || ch == 0x7f) {
            mock_buf_addf(b, "\\u%04x", ch);

        } else {
            mock_buf_reserve(b, 1);
            b->data[b->len++] = (char) ch;
        }
    }
}


static void
mock_buf_free(mock_buf_t *b)
{
    free(b->data);
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}


static uint64_t
mock_clock(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t) ts.tv_sec * 1000000 + (uint64_t) ts.tv_nsec / 1000;
}


static uint64_t
mock_splitmix(uint64_t *state)
{
    uint64_t  z;

    *state += 0x9e3779b97f4a7c15ULL;
    z = *state;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}


static const char *
mock_next_word(mock_req_t *r)
{
    return mock_words[mock_splitmix(&r->rng) & 63];
}


static long long
mock_created(void)
{
    return mock.real_time ? (long long) time(NULL) : MOCK_CREATED;
}


/* strict decimal parse of s[0..n) into [min, max]; 0 or -1 */
static int
mock_parse_long(const char *s, size_t n, long min, long max, long *out)
{
    size_t  i;
    long    v;

    if (n == 0 || n > 18) {
        return -1;
    }

    v = 0;
    for (i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return -1;
        }
        v = v * 10 + (s[i] - '0');
    }

    if (v < min || v > max) {
        return -1;
    }

    *out = v;
    return 0;
}


static int
mock_fault_parse(const char *s, size_t n)
{
    int  i;

    for (i = 0; mock_fault_names[i] != NULL; i++) {
        if (strlen(mock_fault_names[i]) == n
            && strncasecmp(mock_fault_names[i], s, n) == 0)
        {
            return i;
        }
    }

    return -1;
}


static const char *
mock_reason(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 201: return "Created";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 402: return "Payment Required";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 413: return "Payload Too Large";
    case 414: return "URI Too Long";
    case 422: return "Unprocessable Entity";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    case 529: return "Site Overloaded";
    default:  return "Unknown";
    }
}


/* ---- prefix cache: LRU of block hashes ---------------------------------- */


static void
mock_lru_init(mock_lru_t *lru, uint32_t cap)
{
    uint32_t  size;

    memset(lru, 0, sizeof(*lru));
    if (cap == 0) {
        return;
    }

    size = 4;
    while (size < cap * 2) {
        size *= 2;
    }

    lru->nodes = calloc((size_t) cap + 1, sizeof(mock_lru_node_t));
    lru->slots = calloc(size, sizeof(uint32_t));
    if (lru->nodes == NULL || lru->slots == NULL) {
        mock_oom();
    }

    lru->mask = size - 1;
    lru->cap = cap;
    lru->nodes[cap].prev = cap;
    lru->nodes[cap].next = cap;
}


static void
mock_lru_clear(mock_lru_t *lru)
{
    if (lru->cap == 0) {
        return;
    }
    memset(lru->slots, 0, ((size_t) lru->mask + 1) * sizeof(uint32_t));
    lru->used = 0;
    lru->nodes[lru->cap].prev = lru->cap;
    lru->nodes[lru->cap].next = lru->cap;
}


static uint32_t
mock_lru_home(mock_lru_t *lru, uint64_t key)
{
    return (uint32_t) (key ^ (key >> 32)) & lru->mask;
}


/* the slot that holds key, or the empty slot where it would go */
static uint32_t
mock_lru_slot(mock_lru_t *lru, uint64_t key)
{
    uint32_t  i;

    i = mock_lru_home(lru, key);
    while (lru->slots[i] != 0 && lru->nodes[lru->slots[i] - 1].key != key) {
        i = (i + 1) & lru->mask;
    }

    return i;
}


static void
mock_lru_unlink(mock_lru_t *lru, uint32_t n)
{
    lru->nodes[lru->nodes[n].prev].next = lru->nodes[n].next;
    lru->nodes[lru->nodes[n].next].prev = lru->nodes[n].prev;
}


static void
mock_lru_push_front(mock_lru_t *lru, uint32_t n)
{
    uint32_t  s;

    s = lru->cap;
    lru->nodes[n].prev = s;
    lru->nodes[n].next = lru->nodes[s].next;
    lru->nodes[lru->nodes[s].next].prev = n;
    lru->nodes[s].next = n;
}


/* removes the slot i from the table, shifting back its probe chain */
static void
mock_lru_delete_slot(mock_lru_t *lru, uint32_t i)
{
    uint32_t  j, k;

    j = i;
    for ( ;; ) {
        j = (j + 1) & lru->mask;
        if (lru->slots[j] == 0) {
            break;
        }

        k = mock_lru_home(lru, lru->nodes[lru->slots[j] - 1].key);

        /* move j into the hole i unless its home lies in (i, j] */
        if ((j > i && (k <= i || k > j)) || (j < i && k <= i && k > j)) {
            lru->slots[i] = lru->slots[j];
            i = j;
        }
    }

    lru->slots[i] = 0;
}


static int
mock_lru_contains(mock_lru_t *lru, uint64_t key)
{
    return lru->slots[mock_lru_slot(lru, key)] != 0;
}


static void
mock_lru_touch(mock_lru_t *lru, uint64_t key)
{
    uint32_t  i, n;

    i = mock_lru_slot(lru, key);
    if (lru->slots[i] != 0) {
        n = lru->slots[i] - 1;
        mock_lru_unlink(lru, n);
        mock_lru_push_front(lru, n);
        return;
    }

    if (lru->used < lru->cap) {
        n = lru->used++;

    } else {
        /* evict the least recently used block */
        n = lru->nodes[lru->cap].prev;
        mock_lru_unlink(lru, n);
        mock_lru_delete_slot(lru, mock_lru_slot(lru, lru->nodes[n].key));
        i = mock_lru_slot(lru, key);
    }

    lru->nodes[n].key = key;
    lru->slots[i] = n + 1;
    mock_lru_push_front(lru, n);
}


/*
 * Returns the cached prefix in tokens of mock.text (model + prompt text)
 * and records all its full blocks, the last one first, so that a shared
 * prefix outlives the tails that follow it.
 */
static long
mock_cache_query(mock_instance_t *inst, long prompt_tokens)
{
    int        prefix;
    long       hits, cached;
    size_t     i, nblocks, bsize;
    uint64_t   h;

    if (inst->cache.cap == 0) {
        return 0;
    }

    bsize = (size_t) inst->block_tokens * 4;
    nblocks = mock.text.len / bsize;

    if (nblocks > mock.nhashes) {
        free(mock.hashes);
        mock.hashes = malloc(nblocks * sizeof(uint64_t));
        if (mock.hashes == NULL) {
            mock_oom();
        }
        mock.nhashes = nblocks;
    }

    h = 0;
    hits = 0;
    prefix = 1;

    for (i = 0; i < nblocks; i++) {
        h = XXH3_64bits_withSeed(mock.text.data + i * bsize, bsize, h);
        mock.hashes[i] = h;

        if (prefix && mock_lru_contains(&inst->cache, h)) {
            hits++;
        } else {
            prefix = 0;
        }
    }

    for (i = nblocks; i > 0; i--) {
        mock_lru_touch(&inst->cache, mock.hashes[i - 1]);
    }

    cached = hits * inst->block_tokens;
    return cached < prompt_tokens ? cached : prompt_tokens;
}


/* ---- timers: a min-heap of connections ---------------------------------- */


static void
mock_heap_set(size_t i, mock_conn_t *c)
{
    mock.heap[i] = c;
    c->heap_idx = i;
}


static void
mock_heap_up(size_t i)
{
    size_t        parent;
    mock_conn_t  *c;

    c = mock.heap[i];
    while (i > 0) {
        parent = (i - 1) / 2;
        if (mock.heap[parent]->deadline <= c->deadline) {
            break;
        }
        mock_heap_set(i, mock.heap[parent]);
        i = parent;
    }
    mock_heap_set(i, c);
}


static void
mock_heap_down(size_t i)
{
    size_t        child;
    mock_conn_t  *c;

    c = mock.heap[i];
    for ( ;; ) {
        child = 2 * i + 1;
        if (child >= mock.heap_len) {
            break;
        }
        if (child + 1 < mock.heap_len
            && mock.heap[child + 1]->deadline < mock.heap[child]->deadline)
        {
            child++;
        }
        if (c->deadline <= mock.heap[child]->deadline) {
            break;
        }
        mock_heap_set(i, mock.heap[child]);
        i = child;
    }
    mock_heap_set(i, c);
}


static void
mock_timer_del(mock_conn_t *c)
{
    size_t        i;
    mock_conn_t  *last;

    if (c->heap_idx == MOCK_NO_TIMER) {
        return;
    }

    i = c->heap_idx;
    c->heap_idx = MOCK_NO_TIMER;
    last = mock.heap[--mock.heap_len];

    if (last != c) {
        mock_heap_set(i, last);
        mock_heap_up(i);
        mock_heap_down(last->heap_idx);
    }
}


static void
mock_timer_set(mock_conn_t *c, uint64_t deadline)
{
    mock_timer_del(c);

    if (mock.heap_len == mock.heap_cap) {
        mock.heap_cap = mock.heap_cap ? mock.heap_cap * 2 : 256;
        mock.heap = realloc(mock.heap, mock.heap_cap * sizeof(mock_conn_t *));
        if (mock.heap == NULL) {
            mock_oom();
        }
    }

    c->deadline = deadline;
    mock_heap_set(mock.heap_len++, c);
    mock_heap_up(c->heap_idx);
}


static int
mock_timer_timeout(void)
{
    uint64_t  now, deadline;

    if (mock.heap_len == 0) {
        return -1;
    }

    deadline = mock.heap[0]->deadline;
    now = mock_clock();
    if (deadline <= now) {
        return 0;
    }

    if (deadline - now > (uint64_t) INT_MAX * 1000) {
        return INT_MAX;
    }

    return (int) ((deadline - now + 999) / 1000);
}


/* ---- logging and request end -------------------------------------------- */


static void
mock_log(mock_conn_t *c, int outcome)
{
    mock_req_t        *r = &c->req;
    static const char *outcomes[] = { "completed", "cancelled", "aborted" };

    if (mock.quiet) {
        return;
    }

    if (r->api == MOCK_API_NONE) {
        fprintf(stderr, "llm-mock[%s] %s %s %d %s ms=%" PRIu64 "\n",
                c->inst->name, r->method[0] ? r->method : "-",
                r->path[0] ? r->path : "-", r->status ? r->status : 499,
                outcomes[outcome], (mock.now - r->start_us) / 1000);
        return;
    }

    fprintf(stderr, "llm-mock[%s] %s %s %d %s stream=%d model=\"%.64s\" "
            "prompt=%ld cached=%ld completion=%ld ttft_ms=%" PRIu64
            " ms=%" PRIu64 " fault=%s\n",
            c->inst->name, r->method, r->path, r->status ? r->status : 499,
            outcomes[outcome], r->stream, r->model ? r->model : "-",
            r->prompt_tokens, r->cached_tokens, r->sent,
            r->ttft_us / 1000, (mock.now - r->start_us) / 1000,
            mock_fault_names[r->fault]);
}


/*
 * Ends the request in progress: counters, log line, and the next state of
 * the connection (READING for keepalive, CLOSING otherwise).
 */
static void
mock_req_finish(mock_conn_t *c, int outcome)
{
    mock_req_t       *r = &c->req;
    mock_instance_t  *inst = c->inst;
    int               keep;

    if (r->counted) {
        if (outcome == MOCK_DONE_COMPLETED) {
            inst->completed++;
        } else if (outcome == MOCK_DONE_CANCELLED) {
            inst->cancelled++;
        } else {
            inst->aborted++;
        }
        if (r->status >= 400 || r->error_event) {
            inst->errors++;
        }
    }

    if (r->active) {
        if (r->started) {
            inst->running--;
        } else {
            inst->waiting--;
        }
    }

    if (r->inflight) {
        inst->inflight--;
        mock.inflight--;
    }

    mock_log(c, outcome);

    keep = r->keepalive && outcome == MOCK_DONE_COMPLETED && !c->eof;

    free(r->model);
    memset(r, 0, sizeof(*r));
    c->pending.len = 0;
    mock_timer_del(c);

    c->state = keep ? MOCK_READING : MOCK_CLOSING;
}


/* ---- responses ---------------------------------------------------------- */


/* the status line and headers; clen < 0: streamed body */
static void
mock_head(mock_conn_t *c, int status, const char *ctype, long long clen,
    const char *extra)
{
    mock_req_t  *r = &c->req;
    mock_buf_t  *b = &c->out;

    r->status = status;

    mock_buf_addf(b, "HTTP/1.1 %d %s\r\nServer: llm-mock\r\n"
                  "x-mock-instance: %s\r\n",
                  status, mock_reason(status), c->inst->name);

    if (r->inflight) {
        mock_buf_addf(b, "x-mock-inflight: %ld/%ld\r\n", r->inflight_own,
                      r->inflight_all);
    }

    if (ctype != NULL) {
        mock_buf_addf(b, "Content-Type: %s\r\n", ctype);
    }

    if (clen >= 0) {
        mock_buf_addf(b, "Content-Length: %lld\r\n", clen);

    } else if (r->chunked) {
        mock_buf_adds(b, "Transfer-Encoding: chunked\r\n");

    } else {
        r->keepalive = 0;
    }

    if (!r->keepalive) {
        mock_buf_adds(b, "Connection: close\r\n");

    } else if (r->http_minor == 0) {
        mock_buf_adds(b, "Connection: keep-alive\r\n");
    }

    if (extra != NULL) {
        mock_buf_adds(b, extra);
    }

    mock_buf_add(b, "\r\n", 2);
}


static void
mock_respond(mock_conn_t *c, int status, const char *ctype, const char *body,
    size_t len, const char *extra)
{
    mock_head(c, status, ctype, (long long) len, extra);
    mock_buf_add(&c->out, body, len);
    mock_req_finish(c, MOCK_DONE_COMPLETED);
}


static void
mock_error_kind(int status, const char **oa_type, const char **oa_code,
    const char **an_type)
{
    *oa_code = NULL;

    switch (status) {
    case 400:
        *oa_type = "invalid_request_error";
        *an_type = "invalid_request_error";
        break;
    case 401:
        *oa_type = "invalid_request_error";
        *oa_code = "invalid_api_key";
        *an_type = "authentication_error";
        break;
    case 403:
        *oa_type = "permission_error";
        *an_type = "permission_error";
        break;
    case 404:
        *oa_type = "invalid_request_error";
        *an_type = "not_found_error";
        break;
    case 413:
        *oa_type = "invalid_request_error";
        *an_type = "request_too_large";
        break;
    case 429:
        *oa_type = "requests";
        *oa_code = "rate_limit_exceeded";
        *an_type = "rate_limit_error";
        break;
    case 503:
    case 529:
        *oa_type = "server_error";
        *an_type = "overloaded_error";
        break;
    default:
        *oa_type = status >= 500 ? "server_error" : "invalid_request_error";
        *an_type = status >= 500 ? "api_error" : "invalid_request_error";
        break;
    }
}


/* the error object in the request's API shape, into b */
static void
mock_error_body(mock_buf_t *b, int api, int status, const char *message)
{
    const char  *oa_type, *oa_code, *an_type;

    mock_error_kind(status, &oa_type, &oa_code, &an_type);

    if (api == MOCK_API_MESSAGES) {
        mock_buf_addf(b, "{\"type\":\"error\",\"error\":{\"type\":\"%s\","
                      "\"message\":\"", an_type);
        mock_buf_add_json(b, message, strlen(message));
        mock_buf_adds(b, "\"}}");
        return;
    }

    mock_buf_adds(b, "{\"error\":{\"message\":\"");
    mock_buf_add_json(b, message, strlen(message));
    mock_buf_addf(b, "\",\"type\":\"%s\",\"param\":null,\"code\":", oa_type);
    if (oa_code != NULL) {
        mock_buf_addf(b, "\"%s\"}}", oa_code);
    } else {
        mock_buf_adds(b, "null}}");
    }
}


/* an API shaped error response; retry_after < 0: none */
static void
mock_error(mock_conn_t *c, int status, const char *message, long retry_after)
{
    char         msg[64], extra[256];
    size_t       n;
    mock_req_t  *r = &c->req;

    if (message == NULL) {
        snprintf(msg, sizeof(msg), "mock: injected HTTP %d", status);
        message = msg;
    }

    n = 0;
    extra[0] = '\0';

    if (retry_after >= 0) {
        n += (size_t) snprintf(extra + n, sizeof(extra) - n,
                               "Retry-After: %ld\r\n", retry_after);
    }

    if (status == 429) {
        n += (size_t) snprintf(extra + n, sizeof(extra) - n,
                               "x-ratelimit-remaining-requests: 0\r\n");
        if (retry_after >= 0) {
            n += (size_t) snprintf(extra + n, sizeof(extra) - n,
                                   "x-ratelimit-reset-requests: %lds\r\n",
                                   retry_after);
        }
        if (r->api == MOCK_API_MESSAGES) {
            snprintf(extra + n, sizeof(extra) - n,
                     "anthropic-ratelimit-requests-remaining: 0\r\n");
        }
    }

    mock.tmp.len = 0;
    mock_error_body(&mock.tmp, r->api, status, message);
    mock_respond(c, status, "application/json", mock.tmp.data, mock.tmp.len,
                 extra);
}


/* a protocol error before dispatch: answer and close */
static int
mock_bad_request(mock_conn_t *c, int status, const char *message)
{
    mock_req_t  *r = &c->req;

    r->start_us = mock.now;
    r->keepalive = 0;
    r->http_minor = 1;
    mock_error(c, status, message, -1);
    return MOCK_BAD;
}


/* ---- SSE events --------------------------------------------------------- */


/* sends mock.tmp as one event, one HTTP chunk */
static void
mock_sse_send(mock_conn_t *c)
{
    if (c->req.chunked) {
        mock_buf_addf(&c->out, "%zx\r\n", mock.tmp.len);
        mock_buf_add(&c->out, mock.tmp.data, mock.tmp.len);
        mock_buf_add(&c->out, "\r\n", 2);
    } else {
        mock_buf_add(&c->out, mock.tmp.data, mock.tmp.len);
    }
}


static void
mock_sse_begin(const char *event)
{
    mock.tmp.len = 0;
    if (event != NULL) {
        mock_buf_addf(&mock.tmp, "event: %s\n", event);
    }
    mock_buf_adds(&mock.tmp, "data: ");
}


static void
mock_sse_end(mock_conn_t *c)
{
    mock_buf_add(&mock.tmp, "\n\n", 2);
    mock_sse_send(c);
}


static void
mock_sse_head(mock_conn_t *c)
{
    mock_req_t  *r = &c->req;

    r->chunked = r->http_minor == 1;
    mock_head(c, 200, "text/event-stream", -1, "Cache-Control: no-cache\r\n");
}


static void
mock_usage_openai(mock_buf_t *b, mock_req_t *r)
{
    mock_buf_addf(b, "{\"prompt_tokens\":%ld,\"completion_tokens\":%ld,"
                  "\"total_tokens\":%ld,\"prompt_tokens_details\":"
                  "{\"cached_tokens\":%ld},\"completion_tokens_details\":"
                  "{\"reasoning_tokens\":0}}",
                  r->prompt_tokens, r->n, r->prompt_tokens + r->n,
                  r->cached_tokens);
}


/* an OpenAI chunk: prefix, choices (caller), suffix */
static void
mock_chunk_begin(mock_req_t *r)
{
    mock_sse_begin(NULL);

    if (r->api == MOCK_API_CHAT) {
        mock_buf_addf(&mock.tmp, "{\"id\":\"%s\",\"object\":"
                      "\"chat.completion.chunk\",\"created\":%lld,"
                      "\"model\":\"%s\",\"system_fingerprint\":\"fp_mock\","
                      "\"choices\":[", r->id, mock_created(), r->model);
    } else {
        mock_buf_addf(&mock.tmp, "{\"id\":\"%s\",\"object\":"
                      "\"text_completion\",\"created\":%lld,"
                      "\"model\":\"%s\",\"choices\":[",
                      r->id, mock_created(), r->model);
    }
}


static void
mock_chunk_end(mock_conn_t *c)
{
    mock_buf_adds(&mock.tmp, c->req.include_usage ? "],\"usage\":null}"
                                                  : "]}");
    mock_sse_end(c);
}


static void
mock_stream_start(mock_conn_t *c)
{
    mock_req_t  *r = &c->req;

    if (r->api == MOCK_API_CHAT) {
        mock_chunk_begin(r);
        mock_buf_adds(&mock.tmp, "{\"index\":0,\"delta\":{\"role\":"
                      "\"assistant\",\"content\":\"\"},\"logprobs\":null,"
                      "\"finish_reason\":null}");
        mock_chunk_end(c);

    } else if (r->api == MOCK_API_MESSAGES) {
        mock_sse_begin("message_start");
        mock_buf_addf(&mock.tmp, "{\"type\":\"message_start\",\"message\":"
                      "{\"id\":\"%s\",\"type\":\"message\",\"role\":"
                      "\"assistant\",\"model\":\"%s\",\"content\":[],"
                      "\"stop_reason\":null,\"stop_sequence\":null,"
                      "\"usage\":{\"input_tokens\":%ld,"
                      "\"cache_creation_input_tokens\":0,"
                      "\"cache_read_input_tokens\":%ld,"
                      "\"output_tokens\":1}}}",
                      r->id, r->model, r->prompt_tokens - r->cached_tokens,
                      r->cached_tokens);
        mock_sse_end(c);

        mock_sse_begin("content_block_start");
        mock_buf_adds(&mock.tmp, "{\"type\":\"content_block_start\","
                      "\"index\":0,\"content_block\":{\"type\":\"text\","
                      "\"text\":\"\"}}");
        mock_sse_end(c);

        mock_sse_begin("ping");
        mock_buf_adds(&mock.tmp, "{\"type\": \"ping\"}");
        mock_sse_end(c);
    }
}


static void
mock_stream_token(mock_conn_t *c, const char *word)
{
    mock_req_t  *r = &c->req;

    if (r->api == MOCK_API_MESSAGES) {
        mock_sse_begin("content_block_delta");
        mock_buf_addf(&mock.tmp, "{\"type\":\"content_block_delta\","
                      "\"index\":0,\"delta\":{\"type\":\"text_delta\","
                      "\"text\":\"%s \"}}", word);
        mock_sse_end(c);
        return;
    }

    mock_chunk_begin(r);
    if (r->api == MOCK_API_CHAT) {
        mock_buf_addf(&mock.tmp, "{\"index\":0,\"delta\":{\"content\":"
                      "\"%s \"},\"logprobs\":null,\"finish_reason\":null}",
                      word);
    } else {
        mock_buf_addf(&mock.tmp, "{\"text\":\"%s \",\"index\":0,"
                      "\"logprobs\":null,\"finish_reason\":null}", word);
    }
    mock_chunk_end(c);
}


static void
mock_stream_body_end(mock_conn_t *c)
{
    if (c->req.chunked) {
        mock_buf_add(&c->out, "0\r\n\r\n", 5);
    }
}


static void
mock_stream_end(mock_conn_t *c)
{
    mock_req_t  *r = &c->req;
    const char  *reason;

    if (r->api == MOCK_API_MESSAGES) {
        mock_sse_begin("content_block_stop");
        mock_buf_adds(&mock.tmp, "{\"type\":\"content_block_stop\","
                      "\"index\":0}");
        mock_sse_end(c);

        mock_sse_begin("message_delta");
        mock_buf_addf(&mock.tmp, "{\"type\":\"message_delta\",\"delta\":"
                      "{\"stop_reason\":\"%s\",\"stop_sequence\":null},"
                      "\"usage\":{\"output_tokens\":%ld}}",
                      r->length_cut ? "max_tokens" : "end_turn", r->n);
        mock_sse_end(c);

        mock_sse_begin("message_stop");
        mock_buf_adds(&mock.tmp, "{\"type\":\"message_stop\"}");
        mock_sse_end(c);

        mock_stream_body_end(c);
        return;
    }

    reason = r->length_cut ? "length" : "stop";

    mock_chunk_begin(r);
    if (r->api == MOCK_API_CHAT) {
        mock_buf_addf(&mock.tmp, "{\"index\":0,\"delta\":{},"
                      "\"logprobs\":null,\"finish_reason\":\"%s\"}", reason);
    } else {
        mock_buf_addf(&mock.tmp, "{\"text\":\"\",\"index\":0,"
                      "\"logprobs\":null,\"finish_reason\":\"%s\"}", reason);
    }
    mock_chunk_end(c);

    if (r->include_usage) {
        mock_chunk_begin(r);
        mock_buf_adds(&mock.tmp, "],\"usage\":");
        mock_usage_openai(&mock.tmp, r);
        mock_buf_adds(&mock.tmp, "}");
        mock_sse_end(c);
    }

    mock.tmp.len = 0;
    mock_buf_adds(&mock.tmp, "data: [DONE]\n\n");
    mock_sse_send(c);

    mock_stream_body_end(c);
}


static void
mock_stream_error(mock_conn_t *c)
{
    mock_req_t  *r = &c->req;

    if (r->api == MOCK_API_MESSAGES) {
        mock_sse_begin("error");
        mock_buf_adds(&mock.tmp, "{\"type\":\"error\",\"error\":{\"type\":"
                      "\"overloaded_error\",\"message\":\"Overloaded\"}}");
    } else {
        mock_sse_begin(NULL);
        mock_buf_adds(&mock.tmp, "{\"error\":{\"message\":\"mock: injected "
                      "stream error\",\"type\":\"server_error\","
                      "\"param\":null,\"code\":null}}");
    }
    mock_sse_end(c);

    r->error_event = 1;
    mock_stream_body_end(c);
}


/* two broken events: truncated JSON in data, then a line that is not SSE */
static void
mock_stream_garbage(mock_conn_t *c)
{
    mock_req_t  *r = &c->req;

    mock_sse_begin(r->api == MOCK_API_MESSAGES ? "content_block_delta"
                                               : NULL);
    mock_buf_adds(&mock.tmp, "{\"choices\":[{\"delta\":{\"content\":\n\n");
    mock_sse_send(c);

    mock.tmp.len = 0;
    mock_buf_adds(&mock.tmp, "this is not an sse line }}{{\n\n");
    mock_sse_send(c);
}


/* ---- non-stream bodies --------------------------------------------------- */


static void
mock_body_build(mock_conn_t *c)
{
    long         i;
    mock_req_t  *r = &c->req;
    mock_buf_t  *b = &c->pending;

    b->len = 0;

    if (r->api == MOCK_API_CHAT) {
        mock_buf_addf(b, "{\"id\":\"%s\",\"object\":\"chat.completion\","
                      "\"created\":%lld,\"model\":\"%s\",\"choices\":"
                      "[{\"index\":0,\"message\":{\"role\":\"assistant\","
                      "\"content\":\"", r->id, mock_created(), r->model);
    } else if (r->api == MOCK_API_COMPLETIONS) {
        mock_buf_addf(b, "{\"id\":\"%s\",\"object\":\"text_completion\","
                      "\"created\":%lld,\"model\":\"%s\",\"choices\":"
                      "[{\"text\":\"", r->id, mock_created(), r->model);
    } else {
        mock_buf_addf(b, "{\"id\":\"%s\",\"type\":\"message\",\"role\":"
                      "\"assistant\",\"model\":\"%s\",\"content\":"
                      "[{\"type\":\"text\",\"text\":\"", r->id, r->model);
    }

    for (i = 0; i < r->n; i++) {
        mock_buf_adds(b, mock_next_word(r));
        mock_buf_add(b, " ", 1);
    }

    if (r->api == MOCK_API_CHAT) {
        mock_buf_addf(b, "\",\"refusal\":null},\"logprobs\":null,"
                      "\"finish_reason\":\"%s\"}],\"usage\":",
                      r->length_cut ? "length" : "stop");
        mock_usage_openai(b, r);
        mock_buf_adds(b, ",\"system_fingerprint\":\"fp_mock\"}");

    } else if (r->api == MOCK_API_COMPLETIONS) {
        mock_buf_addf(b, "\",\"index\":0,\"logprobs\":null,"
                      "\"finish_reason\":\"%s\"}],\"usage\":",
                      r->length_cut ? "length" : "stop");
        mock_usage_openai(b, r);
        mock_buf_adds(b, "}");

    } else {
        mock_buf_addf(b, "\"}],\"stop_reason\":\"%s\",\"stop_sequence\":null,"
                      "\"usage\":{\"input_tokens\":%ld,"
                      "\"cache_creation_input_tokens\":0,"
                      "\"cache_read_input_tokens\":%ld,"
                      "\"output_tokens\":%ld}}",
                      r->length_cut ? "max_tokens" : "end_turn",
                      r->prompt_tokens - r->cached_tokens, r->cached_tokens,
                      r->n);
    }
}


static void
mock_base64(mock_buf_t *b, const unsigned char *p, size_t n)
{
    size_t             i;
    uint32_t           v;
    static const char  tab[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    mock_buf_reserve(b, (n + 2) / 3 * 4);

    for (i = 0; i + 2 < n; i += 3) {
        v = (uint32_t) p[i] << 16 | (uint32_t) p[i + 1] << 8 | p[i + 2];
        b->data[b->len++] = tab[v >> 18];
        b->data[b->len++] = tab[(v >> 12) & 63];
        b->data[b->len++] = tab[(v >> 6) & 63];
        b->data[b->len++] = tab[v & 63];
    }

    if (i < n) {
        v = (uint32_t) p[i] << 16;
        if (i + 1 < n) {
            v |= (uint32_t) p[i + 1] << 8;
        }
        b->data[b->len++] = tab[v >> 18];
        b->data[b->len++] = tab[(v >> 12) & 63];
        b->data[b->len++] = i + 1 < n ? tab[(v >> 6) & 63] : '=';
        b->data[b->len++] = '=';
    }
}


/* one embedding of the given seed: a deterministic unit vector */
static void
mock_embedding(mock_buf_t *b, uint64_t seed, long dims, int b64, long index)
{
    long      i;
    float     v[4096];
    double    norm;
    uint64_t  rng;

    rng = seed;
    norm = 0;
    for (i = 0; i < dims; i++) {
        v[i] = (float) ((double) (mock_splitmix(&rng) >> 11)
                        / (double) (1ULL << 53) * 2.0 - 1.0);
        norm += (double) v[i] * v[i];
    }
    norm = sqrt(norm);
    if (norm == 0) {
        norm = 1;
    }

    mock_buf_addf(b, "%s{\"object\":\"embedding\",\"index\":%ld,"
                  "\"embedding\":", index ? "," : "", index);

    if (b64) {
        for (i = 0; i < dims; i++) {
            v[i] = (float) (v[i] / norm);
        }
        mock_buf_add(b, "\"", 1);
        mock_base64(b, (const unsigned char *) v, (size_t) dims * 4);
        mock_buf_adds(b, "\"}");
        return;
    }

    mock_buf_add(b, "[", 1);
    for (i = 0; i < dims; i++) {
        mock_buf_addf(b, "%s%.6f", i ? "," : "", v[i] / norm);
    }
    mock_buf_adds(b, "]}");
}


/* ---- request JSON -------------------------------------------------------- */


/* appends the texts of an OpenAI/Anthropic content value to mock.text */
static int
mock_add_content(json_t *content, int depth)
{
    size_t   i;
    json_t  *part, *v;

    if (content == NULL || json_is_null(content)) {
        return 0;
    }

    if (json_is_string(content)) {
        mock_buf_add(&mock.text, json_string_value(content),
                     json_string_length(content));
        return 0;
    }

    if (!json_is_array(content) || depth > 4) {
        return -1;
    }

    json_array_foreach(content, i, part) {
        if (json_is_string(part)) {
            mock_buf_add(&mock.text, json_string_value(part),
                         json_string_length(part));
            continue;
        }

        if (!json_is_object(part)) {
            continue;
        }

        v = json_object_get(part, "text");
        if (json_is_string(v)) {
            mock_buf_add(&mock.text, json_string_value(v),
                         json_string_length(v));
        }

        /* Anthropic tool_result blocks nest their content */
        v = json_object_get(part, "content");
        if (v != NULL) {
            (void) mock_add_content(v, depth + 1);
        }
    }

    return 0;
}


/* one message's text into mock.text and the answer hash */
static int
mock_add_segment(const char *role, json_t *content)
{
    size_t  from;

    from = mock.text.len;

    if (mock_add_content(content, 0) != 0) {
        return -1;
    }

    XXH3_64bits_update(mock.xxh, role, strlen(role) + 1);
    XXH3_64bits_update(mock.xxh, mock.text.data + from, mock.text.len - from);
    XXH3_64bits_update(mock.xxh, "", 1);
    return 0;
}


/* OpenAI /v1/completions prompt: string, strings, tokens or token lists */
static int
mock_add_prompt(json_t *prompt, int depth)
{
    size_t   i;
    json_t  *v;

    if (json_is_string(prompt)) {
        mock_buf_add(&mock.text, json_string_value(prompt),
                     json_string_length(prompt));
        return 0;
    }

    if (json_is_integer(prompt)) {
        mock_buf_addf(&mock.text, "%" JSON_INTEGER_FORMAT " ",
                      json_integer_value(prompt));
        return 0;
    }

    if (!json_is_array(prompt) || depth > 1) {
        return -1;
    }

    json_array_foreach(prompt, i, v) {
        if (mock_add_prompt(v, depth + 1) != 0) {
            return -1;
        }
    }

    return 0;
}


static int
mock_get_max(json_t *root, const char *key, long *max, char *err,
    size_t errlen)
{
    json_t      *v;
    json_int_t   n;

    v = json_object_get(root, key);
    if (v == NULL || json_is_null(v)) {
        return 0;
    }

    if (!json_is_integer(v) || json_integer_value(v) < 0) {
        snprintf(err, errlen, "'%s' must be a non-negative integer", key);
        return -1;
    }

    n = json_integer_value(v);
    if (n > 100000000) {
        n = 100000000;
    }
    if (*max < 0 || n < *max) {
        *max = (long) n;
    }

    return 0;
}


static int
mock_get_model(json_t *root, mock_req_t *r, char *err, size_t errlen)
{
    json_t      *v;
    size_t       len;
    const char  *model;

    model = "mock";
    len = 4;

    v = json_object_get(root, "model");
    if (v != NULL && !json_is_null(v)) {
        if (!json_is_string(v)) {
            snprintf(err, errlen, "'model' must be a string");
            return -1;
        }
        model = json_string_value(v);
        len = json_string_length(v);
        if (len > MOCK_MAX_MODEL) {
            snprintf(err, errlen, "'model' is longer than %d bytes",
                     MOCK_MAX_MODEL);
            return -1;
        }
    }

    mock.tmp.len = 0;
    mock_buf_add_json(&mock.tmp, model, len);
    r->model = strndup(mock.tmp.data ? mock.tmp.data : "", mock.tmp.len);
    if (r->model == NULL) {
        mock_oom();
    }

    /* the model leads the prompt text: it separates the cache per model */
    mock.text.len = 0;
    mock_buf_add(&mock.text, model, len);
    XXH3_64bits_reset(mock.xxh);
    XXH3_64bits_update(mock.xxh, model, len);
    XXH3_64bits_update(mock.xxh, "", 1);

    return 0;
}


/*
 * Chat, completions and messages requests: fills the request and leaves
 * the model + prompt text in mock.text.  Returns 0, or -1 with a message
 * in err.  r->n gets max_tokens (-1: none), resolved by the caller.
 */
static int
mock_parse_generate(mock_req_t *r, json_t *root, char *err, size_t errlen)
{
    long         max, messages;
    size_t       i, mlen;
    json_t      *v, *msg, *role;
    const char  *rs;

    if (mock_get_model(root, r, err, errlen) != 0) {
        return -1;
    }

    mlen = mock.text.len;
    max = -1;
    messages = 0;

    if (r->api == MOCK_API_COMPLETIONS) {
        v = json_object_get(root, "prompt");
        if (v == NULL) {
            snprintf(err, errlen, "'prompt' is required");
            return -1;
        }
        if (mock_add_prompt(v, 0) != 0) {
            snprintf(err, errlen, "'prompt' must be a string, an array of "
                     "strings or an array of tokens");
            return -1;
        }
        XXH3_64bits_update(mock.xxh, mock.text.data + mlen,
                           mock.text.len - mlen);

        if (mock_get_max(root, "max_tokens", &max, err, errlen) != 0) {
            return -1;
        }

    } else {
        if (r->api == MOCK_API_MESSAGES) {
            v = json_object_get(root, "system");
            if (v != NULL && mock_add_segment("system", v) != 0) {
                snprintf(err, errlen, "'system' must be a string or an "
                         "array of content blocks");
                return -1;
            }
        }

        v = json_object_get(root, "messages");
        if (!json_is_array(v)) {
            snprintf(err, errlen, v == NULL ? "'messages' is required"
                                            : "'messages' must be an array");
            return -1;
        }

        json_array_foreach(v, i, msg) {
            if (!json_is_object(msg)) {
                snprintf(err, errlen, "messages[%zu] must be an object", i);
                return -1;
            }

            role = json_object_get(msg, "role");
            if (role != NULL && !json_is_string(role)) {
                snprintf(err, errlen, "messages[%zu].role must be a string",
                         i);
                return -1;
            }
            rs = role != NULL ? json_string_value(role) : "";

            if (mock_add_segment(rs, json_object_get(msg, "content")) != 0) {
                snprintf(err, errlen, "messages[%zu].content must be a "
                         "string or an array", i);
                return -1;
            }
            messages++;
        }

        if (mock_get_max(root, "max_tokens", &max, err, errlen) != 0) {
            return -1;
        }
        if (r->api == MOCK_API_CHAT
            && mock_get_max(root, "max_completion_tokens", &max, err,
                            errlen) != 0)
        {
            return -1;
        }
    }

    v = json_object_get(root, "stream");
    if (v != NULL && !json_is_boolean(v) && !json_is_null(v)) {
        snprintf(err, errlen, "'stream' must be a boolean");
        return -1;
    }
    r->stream = json_is_true(v);

    v = json_object_get(root, "stream_options");
    if (json_is_object(v)) {
        r->include_usage = json_is_true(json_object_get(v, "include_usage"));
    }

    r->rng = XXH3_64bits_digest(mock.xxh);
    r->prompt_tokens = (long) ((mock.text.len - mlen + 3) / 4) + 4 * messages;
    r->n = max;

    return 0;
}


/* /v1/embeddings: builds the whole response into c->pending */
static int
mock_parse_embeddings(mock_conn_t *c, json_t *root, char *err, size_t errlen)
{
    int          b64, single;
    long         dims, count, tokens;
    size_t       i, n;
    json_t      *input, *v, *item;
    uint64_t     seed;
    mock_req_t  *r = &c->req;
    mock_buf_t  *b = &c->pending;

    if (mock_get_model(root, r, err, errlen) != 0) {
        return -1;
    }

    dims = MOCK_EMBED_DIMS;
    v = json_object_get(root, "dimensions");
    if (v != NULL && !json_is_null(v)) {
        if (!json_is_integer(v) || json_integer_value(v) < 1
            || json_integer_value(v) > 4096)
        {
            snprintf(err, errlen, "'dimensions' must be an integer "
                     "between 1 and 4096");
            return -1;
        }
        dims = (long) json_integer_value(v);
    }

    b64 = 0;
    v = json_object_get(root, "encoding_format");
    if (v != NULL && !json_is_null(v)) {
        if (json_is_string(v) && strcmp(json_string_value(v), "base64") == 0) {
            b64 = 1;
        } else if (!json_is_string(v)
                   || strcmp(json_string_value(v), "float") != 0)
        {
            snprintf(err, errlen, "'encoding_format' must be \"float\" or "
                     "\"base64\"");
            return -1;
        }
    }

    input = json_object_get(root, "input");
    if (input == NULL) {
        snprintf(err, errlen, "'input' is required");
        return -1;
    }

    /* a string, a token list, or an array of either */
    single = 1;
    n = 1;
    if (json_is_array(input)) {
        if (json_array_size(input) == 0) {
            snprintf(err, errlen, "'input' must not be empty");
            return -1;
        }
        if (!json_is_integer(json_array_get(input, 0))) {
            single = 0;
            n = json_array_size(input);
        }
    }

    b->len = 0;
    mock_buf_adds(b, "{\"object\":\"list\",\"data\":[");

    tokens = 0;
    for (i = 0; i < n; i++) {
        item = single ? input : json_array_get(input, i);

        mock.text.len = 0;
        if (json_is_string(item)) {
            mock_buf_add(&mock.text, json_string_value(item),
                         json_string_length(item));
            count = (long) (mock.text.len + 3) / 4;
        } else if (json_is_array(item)
                   && mock_add_prompt(item, 1) == 0)
        {
            count = (long) json_array_size(item);
        } else {
            snprintf(err, errlen, "'input' must be a string, an array of "
                     "strings or an array of tokens");
            return -1;
        }

        tokens += count;
        seed = XXH3_64bits_withSeed(mock.text.data, mock.text.len,
                                    XXH3_64bits(r->model, strlen(r->model)));
        mock_embedding(b, seed, dims, b64, (long) i);
    }

    mock_buf_addf(b, "],\"model\":\"%s\",\"usage\":{\"prompt_tokens\":%ld,"
                  "\"total_tokens\":%ld}}", r->model, tokens, tokens);

    r->prompt_tokens = tokens;
    r->n = 0;
    return 0;
}


/* ---- the API request lifecycle ------------------------------------------ */


/* the fault hit: what it does to the request (and the connection) */
static int
mock_abort(mock_conn_t *c, int rst)
{
    struct linger  lg;

    mock_req_finish(c, MOCK_DONE_ABORTED);

    if (!rst) {
        return MOCK_OK;         /* CLOSING: flush, then FIN */
    }

    /* what is already queued goes out first, best effort */
    if (c->out_sent < c->out.len) {
        (void) send(c->ev.fd, c->out.data + c->out_sent,
                    c->out.len - c->out_sent, MSG_NOSIGNAL);
    }
    lg.l_onoff = 1;
    lg.l_linger = 0;
    (void) setsockopt(c->ev.fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    return MOCK_CLOSE;
}


/* non-stream: the answer leaves at TTFT + (n - 1) * ITL */
static int
mock_req_step_json(mock_conn_t *c)
{
    size_t       len;
    uint64_t     rest;
    mock_req_t  *r = &c->req;

    if (!r->decoded && r->n > 1 && r->itl_us > 0) {
        r->decoded = 1;
        rest = (uint64_t) (r->n - 1) * r->itl_us;
        mock_timer_set(c, c->deadline + rest);
        return MOCK_OK;
    }

    r->sent = r->n;
    c->inst->generation_tokens += (uint64_t) r->n;

    len = c->pending.len;

    if (r->fault == MOCK_FAULT_CLOSE || r->fault == MOCK_FAULT_MALFORMED) {
        /* truncated JSON: cut by a close, or announced as the whole body */
        len /= 2;
        mock_head(c, 200, "application/json",
                  r->fault == MOCK_FAULT_CLOSE ? (long long) c->pending.len
                                               : (long long) len, NULL);
        mock_buf_add(&c->out, c->pending.data, len);
        if (r->fault == MOCK_FAULT_CLOSE) {
            return mock_abort(c, 0);
        }
        mock_req_finish(c, MOCK_DONE_COMPLETED);
        return MOCK_OK;
    }

    if (r->fault == MOCK_FAULT_RESET) {
        return mock_abort(c, 1);
    }

    mock_head(c, 200, "application/json", (long long) len, NULL);
    mock_buf_add(&c->out, c->pending.data, len);
    mock_req_finish(c, MOCK_DONE_COMPLETED);
    return MOCK_OK;
}


/* the timer of an active request fired (or its delay was zero) */
static int
mock_req_step(mock_conn_t *c)
{
    int               first;
    long              at;
    mock_req_t       *r = &c->req;
    mock_instance_t  *inst = c->inst;

    if (!r->started) {
        r->started = 1;
        r->ttft_us = mock.now - r->start_us;
        inst->waiting--;
        inst->running++;

        if (r->stream && !(r->fault == MOCK_FAULT_SSE_ERROR
                           && r->fault_after == 0))
        {
            mock_stream_start(c);
        }
    }

    if (!r->stream) {
        return mock_req_step_json(c);
    }

    first = 1;
    at = r->fault_after < r->n ? r->fault_after : r->n;

    for ( ;; ) {
        if (r->fault != MOCK_FAULT_NONE && !r->fault_done && r->sent == at) {
            r->fault_done = 1;

            switch (r->fault) {
            case MOCK_FAULT_MALFORMED:
                mock_stream_garbage(c);
                break;

            case MOCK_FAULT_SSE_ERROR:
                mock_stream_error(c);
                mock_req_finish(c, MOCK_DONE_COMPLETED);
                return MOCK_OK;

            case MOCK_FAULT_CLOSE:
                return mock_abort(c, 0);

            case MOCK_FAULT_RESET:
                return mock_abort(c, 1);
            }
        }

        if (r->sent == r->n) {
            break;
        }

        if (!first && r->itl_us > 0) {
            mock_timer_set(c, c->deadline + r->itl_us);
            return MOCK_OK;
        }

        mock_stream_token(c, mock_next_word(r));
        r->sent++;
        inst->generation_tokens++;
        first = 0;
    }

    mock_stream_end(c);
    mock_req_finish(c, MOCK_DONE_COMPLETED);
    return MOCK_OK;
}


static int
mock_api(mock_conn_t *c, const char *body, size_t len)
{
    int               rc;
    long              status, tokens, max, fault_after;
    char              err[256];
    json_t           *root;
    uint64_t          ttft_us, id;
    mock_req_t       *r = &c->req;
    mock_instance_t  *inst = c->inst;
    json_error_t      jerr;

    inst->requests++;
    r->counted = 1;

    /* injected statuses and connection faults come before any parsing */
    status = c->h.status >= 0 ? c->h.status : inst->status;
    if (status >= 300) {
        mock_error(c, (int) status, NULL,
                   c->h.retry_after >= 0 ? c->h.retry_after
                                         : inst->retry_after);
        return MOCK_OK;
    }

    r->fault = (int) (c->h.fault >= 0 ? c->h.fault : inst->fault);
    fault_after = c->h.fault_after >= 0 ? c->h.fault_after : inst->fault_after;

    if (r->fault == MOCK_FAULT_HANG_HEADERS
        || (r->fault == MOCK_FAULT_RESET && fault_after < 0))
    {
        r->active = 1;
        inst->waiting++;
        if (r->fault == MOCK_FAULT_RESET) {
            return mock_abort(c, 1);
        }
        c->state = MOCK_HANG;
        return MOCK_OK;
    }

    root = json_loadb(body, len, 0, &jerr);
    if (root == NULL) {
        snprintf(err, sizeof(err), "invalid JSON body: %s (line %d, "
                 "column %d)", jerr.text, jerr.line, jerr.column);
        mock_error(c, 400, err, -1);
        return MOCK_OK;
    }

    if (!json_is_object(root)) {
        json_decref(root);
        mock_error(c, 400, "the request body must be a JSON object", -1);
        return MOCK_OK;
    }

    if (r->api == MOCK_API_EMBEDDINGS) {
        rc = mock_parse_embeddings(c, root, err, sizeof(err));
    } else {
        rc = mock_parse_generate(r, root, err, sizeof(err));
    }

    json_decref(root);

    if (rc != 0) {
        mock_error(c, 400, err, -1);
        return MOCK_OK;
    }

    if (r->api != MOCK_API_EMBEDDINGS) {
        max = r->n;
        tokens = c->h.tokens >= 0 ? c->h.tokens : inst->tokens;
        r->n = tokens;
        if (max >= 0 && max < tokens) {
            r->n = max;
            r->length_cut = 1;
        }

        r->cached_tokens = mock_cache_query(inst, r->prompt_tokens);
        inst->cache_queries += (uint64_t) r->prompt_tokens;
        inst->cache_hits += (uint64_t) r->cached_tokens;

        id = r->rng ^ ((uint64_t) r->api << 56);
        if (mock.real_time) {
            mock.seq++;
            id ^= mock_splitmix(&mock.seq);
        }
        snprintf(r->id, sizeof(r->id), "%s%016" PRIx64,
                 r->api == MOCK_API_CHAT ? "chatcmpl-"
                 : r->api == MOCK_API_COMPLETIONS ? "cmpl-" : "msg_",
                 id);
    }

    inst->prompt_tokens += (uint64_t) r->prompt_tokens;

    /* timing */
    if (c->h.ttft_ms >= 0) {
        ttft_us = (uint64_t) c->h.ttft_ms * 1000;
    } else {
        ttft_us = (uint64_t) inst->ttft_ms * 1000
                  + (uint64_t) inst->prefill_us
                    * (uint64_t) (r->prompt_tokens - r->cached_tokens);
    }
    r->itl_us = (uint64_t) (c->h.itl_ms >= 0 ? c->h.itl_ms : inst->itl_ms)
                * 1000;

    /* faults in the answer */
    switch (r->fault) {
    case MOCK_FAULT_SSE_ERROR:
    case MOCK_FAULT_HANG_FIRST:
        r->stream = 1;          /* these answer SSE whatever was asked */
        if (r->api == MOCK_API_EMBEDDINGS) {
            fault_after = 0;
        }
        r->fault_after = fault_after >= 0 ? fault_after : 0;
        break;
    case MOCK_FAULT_CLOSE:
        r->fault_after = fault_after >= 0 ? fault_after : 2;
        break;
    case MOCK_FAULT_MALFORMED:
        r->fault_after = fault_after >= 0 ? fault_after : 1;
        break;
    case MOCK_FAULT_RESET:
        r->fault_after = fault_after;
        break;
    default:
        r->fault_after = 0;
        break;
    }

    if (r->api == MOCK_API_EMBEDDINGS && r->fault != MOCK_FAULT_SSE_ERROR
        && r->fault != MOCK_FAULT_HANG_FIRST)
    {
        r->stream = 0;
    }

    r->active = 1;
    inst->waiting++;
    c->state = MOCK_ACTIVE;

    if (r->fault == MOCK_FAULT_RESET && !r->stream) {
        return mock_abort(c, 1);
    }

    if (r->stream) {
        mock_sse_head(c);
        if (r->fault == MOCK_FAULT_HANG_FIRST) {
            c->state = MOCK_HANG;
            return MOCK_OK;
        }

    } else if (r->api != MOCK_API_EMBEDDINGS) {
        mock_body_build(c);
    }

    c->deadline = mock.now + ttft_us;
    if (ttft_us == 0) {
        return mock_req_step(c);
    }

    mock_timer_set(c, c->deadline);
    return MOCK_OK;
}


/* ---- other endpoints ----------------------------------------------------- */


static void
mock_metrics(mock_conn_t *c)
{
    mock_buf_t       *b = &mock.tmp;
    mock_instance_t  *inst = c->inst;

    b->len = 0;

#define MOCK_METRIC(name, type, help, fmt, value)                             \
    mock_buf_addf(b, "# HELP " name " " help "\n# TYPE " name " " type "\n"   \
                  name fmt "\n", value)

    MOCK_METRIC("vllm:num_requests_running", "gauge",
                "Requests past their first token.",
                "{model_name=\"mock\"} %ld", inst->running);
    MOCK_METRIC("vllm:num_requests_waiting", "gauge",
                "Requests waiting for their first token.",
                "{model_name=\"mock\"} %ld", inst->waiting);
    MOCK_METRIC("vllm:gpu_cache_usage_perc", "gauge",
                "Share of the prefix cache blocks in use.",
                "{model_name=\"mock\"} %.6f",
                inst->cache.cap ? (double) inst->cache.used / inst->cache.cap
                                : 0.0);
    MOCK_METRIC("vllm:prompt_tokens_total", "counter",
                "Prompt tokens processed.",
                "{model_name=\"mock\"} %" PRIu64, inst->prompt_tokens);
    MOCK_METRIC("vllm:generation_tokens_total", "counter",
                "Tokens generated.",
                "{model_name=\"mock\"} %" PRIu64, inst->generation_tokens);
    MOCK_METRIC("vllm:prefix_cache_queries_total", "counter",
                "Prompt tokens looked up in the prefix cache.",
                "{model_name=\"mock\"} %" PRIu64, inst->cache_queries);
    MOCK_METRIC("vllm:prefix_cache_hits_total", "counter",
                "Prompt tokens found in the prefix cache.",
                "{model_name=\"mock\"} %" PRIu64, inst->cache_hits);
    MOCK_METRIC("mock_requests_total", "counter",
                "API requests received.", " %" PRIu64, inst->requests);
    MOCK_METRIC("mock_completed_total", "counter",
                "API requests answered in full.", " %" PRIu64,
                inst->completed);
    MOCK_METRIC("mock_cancelled_total", "counter",
                "API requests whose client left first.", " %" PRIu64,
                inst->cancelled);
    MOCK_METRIC("mock_aborted_total", "counter",
                "API requests cut by an injected fault.", " %" PRIu64,
                inst->aborted);
    MOCK_METRIC("mock_errors_total", "counter",
                "API requests answered with an error.", " %" PRIu64,
                inst->errors);
    MOCK_METRIC("mock_connections", "gauge",
                "Open client connections.", " %ld", inst->connections);

#undef MOCK_METRIC

    mock_respond(c, 200, "text/plain; version=0.0.4; charset=utf-8",
                 b->data, b->len, NULL);
}


static void
mock_stats(mock_conn_t *c)
{
    mock_buf_t       *b = &mock.tmp;
    mock_instance_t  *inst = c->inst;

    b->len = 0;
    mock_buf_addf(b, "{\"instance\":\"%s\",\"requests_running\":%ld,"
                  "\"requests_waiting\":%ld,\"prompt_tokens_total\":%" PRIu64
                  ",\"generation_tokens_total\":%" PRIu64
                  ",\"prefix_cache_queries_total\":%" PRIu64
                  ",\"prefix_cache_hits_total\":%" PRIu64
                  ",\"requests_total\":%" PRIu64
                  ",\"completed_total\":%" PRIu64
                  ",\"cancelled_total\":%" PRIu64
                  ",\"aborted_total\":%" PRIu64
                  ",\"errors_total\":%" PRIu64
                  ",\"connections\":%ld,\"cache_blocks_used\":%u}\n",
                  inst->name, inst->running, inst->waiting,
                  inst->prompt_tokens, inst->generation_tokens,
                  inst->cache_queries, inst->cache_hits, inst->requests,
                  inst->completed, inst->cancelled, inst->aborted,
                  inst->errors, inst->connections, inst->cache.used);

    mock_respond(c, 200, "application/json", b->data, b->len, NULL);
}


static void
mock_models(mock_conn_t *c)
{
    mock.tmp.len = 0;
    mock_buf_addf(&mock.tmp, "{\"object\":\"list\",\"data\":[{\"id\":\"mock\","
                  "\"object\":\"model\",\"created\":%d,\"owned_by\":"
                  "\"llm-mock\"}]}", MOCK_CREATED);
    mock_respond(c, 200, "application/json", mock.tmp.data, mock.tmp.len,
                 NULL);
}


static void
mock_reset_counters(mock_conn_t *c)
{
    mock_instance_t  *inst = c->inst;

    inst->requests = 0;
    inst->completed = 0;
    inst->cancelled = 0;
    inst->aborted = 0;
    inst->errors = 0;
    inst->prompt_tokens = 0;
    inst->generation_tokens = 0;
    inst->cache_queries = 0;
    inst->cache_hits = 0;
    mock_lru_clear(&inst->cache);

    mock_respond(c, 200, "text/plain", "ok\n", 3, NULL);
}


static void
mock_echo(mock_conn_t *c, const char *body, size_t len)
{
    char  extra[64];

    c->inst->requests++;
    c->req.counted = 1;

    if (c->h.echo == 2) {
        body = c->in.data;
        len = c->h.head_len;
    }

    snprintf(extra, sizeof(extra), "x-mock-body-bytes: %zu\r\n", len);
    mock_respond(c, 200, c->h.echo == 2 ? "text/plain" : "application/json",
                 body, len, extra);
}


/* routes a complete request */
static int
mock_dispatch(mock_conn_t *c, const char *body, size_t len)
{
    int          post, get, api;
    const char  *path;
    mock_req_t  *r = &c->req;
    mock_head_t *h = &c->h;

    memset(r, 0, sizeof(*r));
    r->start_us = mock.now;
    r->keepalive = h->keepalive;
    r->http_minor = h->http_minor;
    memcpy(r->method, h->method, sizeof(r->method));
    snprintf(r->path, sizeof(r->path), "%.*s", (int) sizeof(r->path) - 1,
             h->path);

    path = h->path;
    post = strcmp(h->method, "POST") == 0;
    get = strcmp(h->method, "GET") == 0;

    if (strcmp(path, "/v1/chat/completions") == 0) {
        api = MOCK_API_CHAT;
    } else if (strcmp(path, "/v1/completions") == 0) {
        api = MOCK_API_COMPLETIONS;
    } else if (strcmp(path, "/v1/embeddings") == 0) {
        api = MOCK_API_EMBEDDINGS;
    } else if (strcmp(path, "/v1/messages") == 0) {
        api = MOCK_API_MESSAGES;
    } else {
        api = MOCK_API_NONE;
    }

    if (h->bad_header != NULL) {
        r->api = api;
        mock.text.len = 0;
        mock_buf_addf(&mock.text, "invalid value of the %s header",
                      h->bad_header);
        mock_buf_add(&mock.text, "", 1);
        mock_error(c, 400, mock.text.data, -1);
        return MOCK_OK;
    }

    if (h->echo) {
        mock_echo(c, body, len);
        return MOCK_OK;
    }

    if (api != MOCK_API_NONE) {
        /*
         * in flight from the complete request to its finish (the last
         * byte queued), per instance and over all; the arrival's own
         * counts go out in x-mock-inflight
         */
        r->inflight = 1;
        c->inst->inflight++;
        mock.inflight++;
        r->inflight_own = c->inst->inflight;
        r->inflight_all = mock.inflight;

        if (!post) {
            r->api = api;
            mock_error(c, 405, "use POST", -1);
            return MOCK_OK;
        }
        r->api = api;
        return mock_api(c, body, len);
    }

    if (get && strcmp(path, "/health") == 0) {
        mock_respond(c, 200, "text/plain", "ok", 2, NULL);

    } else if (get && strcmp(path, "/metrics") == 0) {
        mock_metrics(c);

    } else if (get && strcmp(path, "/stats") == 0) {
        mock_stats(c);

    } else if (get && strcmp(path, "/v1/models") == 0) {
        mock_models(c);

    } else if (post && strcmp(path, "/mock/reset") == 0) {
        mock_reset_counters(c);

    } else if (strcmp(path, "/health") == 0 || strcmp(path, "/metrics") == 0
               || strcmp(path, "/stats") == 0
               || strcmp(path, "/v1/models") == 0
               || strcmp(path, "/mock/reset") == 0)
    {
        mock_error(c, 405, "method not allowed", -1);

    } else {
        mock_error(c, 404, "no such endpoint", -1);
    }

    return MOCK_OK;
}


/* ---- HTTP parsing -------------------------------------------------------- */


/* the offset just past the blank line ending the head, or 0 */
static size_t
mock_head_end(const char *p, size_t len, size_t from)
{
    const char  *nl;

    while (from < len) {
        nl = memchr(p + from, '\n', len - from);
        if (nl == NULL) {
            return 0;
        }

        from = (size_t) (nl - p);

        if (from + 1 < len && p[from + 1] == '\n') {
            return from + 2;
        }
        if (from + 2 < len && p[from + 1] == '\r' && p[from + 2] == '\n') {
            return from + 3;
        }
        from++;
    }

    return 0;
}


static int
mock_header_is(const char *name, size_t n, const char *want)
{
    return strlen(want) == n && strncasecmp(name, want, n) == 0;
}


static int
mock_has_token(const char *v, size_t n, const char *token)
{
    size_t  i, start, tlen;

    tlen = strlen(token);
    i = 0;

    while (i < n) {
        while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ',')) {
            i++;
        }
        start = i;
        while (i < n && v[i] != ',' && v[i] != ' ' && v[i] != '\t') {
            i++;
        }
        if (i - start == tlen && strncasecmp(v + start, token, tlen) == 0) {
            return 1;
        }
    }

    return 0;
}


static void
mock_x_header(mock_head_t *h, const char *name, size_t nlen, const char *v,
    size_t vlen)
{
    int  f;

    if (mock_header_is(name, nlen, "x-mock-ttft-ms")) {
        if (mock_parse_long(v, vlen, 0, 3600000, &h->ttft_ms) != 0) {
            h->bad_header = "x-mock-ttft-ms";
        }

    } else if (mock_header_is(name, nlen, "x-mock-itl-ms")) {
        if (mock_parse_long(v, vlen, 0, 600000, &h->itl_ms) != 0) {
            h->bad_header = "x-mock-itl-ms";
        }

    } else if (mock_header_is(name, nlen, "x-mock-tokens")) {
        if (mock_parse_long(v, vlen, 0, 1000000, &h->tokens) != 0) {
            h->bad_header = "x-mock-tokens";
        }

    } else if (mock_header_is(name, nlen, "x-mock-status")) {
        if (mock_parse_long(v, vlen, 200, 599, &h->status) != 0) {
            h->bad_header = "x-mock-status";
        }

    } else if (mock_header_is(name, nlen, "x-mock-retry-after")) {
        if (mock_parse_long(v, vlen, 0, 86400, &h->retry_after) != 0) {
            h->bad_header = "x-mock-retry-after";
        }

    } else if (mock_header_is(name, nlen, "x-mock-fault")) {
        f = mock_fault_parse(v, vlen);
        if (f < 0) {
            h->bad_header = "x-mock-fault";
        } else {
            h->fault = f;
        }

    } else if (mock_header_is(name, nlen, "x-mock-fault-after")) {
        if (mock_parse_long(v, vlen, 0, 1000000, &h->fault_after) != 0) {
            h->bad_header = "x-mock-fault-after";
        }

    } else if (mock_header_is(name, nlen, "x-mock-echo")) {
        if (vlen == 1 && v[0] == '1') {
            h->echo = 1;
        } else if (vlen == 7 && strncasecmp(v, "headers", 7) == 0) {
            h->echo = 2;
        } else if (!(vlen == 1 && v[0] == '0')) {
            h->bad_header = "x-mock-echo";
        }
    }
}


/* parses the complete head; 0 or the status of the error to answer */
static int
mock_parse_head(mock_conn_t *c, const char **msg)
{
    char         *p, *end, *line, *eol, *sp, *target, *colon, *v;
    size_t        len, tlen, nlen, vlen, i;
    long long     cl;
    mock_head_t  *h = &c->h;
    int           conn_close, conn_keep;

    p = c->in.data;
    end = p + h->head_len;

    /* request line */
    line = p;
    eol = memchr(line, '\n', (size_t) (end - line));
    len = (size_t) (eol - line);
    if (len > 0 && line[len - 1] == '\r') {
        len--;
    }

    sp = memchr(line, ' ', len);
    if (sp == NULL || sp == line || (size_t) (sp - line) >= sizeof(h->method))
    {
        *msg = "malformed request line";
        return 400;
    }
    for (i = 0; line + i < sp; i++) {
        if (line[i] < 'A' || line[i] > 'Z') {
            *msg = "malformed request method";
            return 400;
        }
    }
    memcpy(h->method, line, (size_t) (sp - line));
    h->method[sp - line] = '\0';

    target = sp + 1;
    sp = memchr(target, ' ', len - (size_t) (target - line));
    if (sp == NULL) {
        *msg = "malformed request line";
        return 400;
    }
    tlen = (size_t) (sp - target);

    v = sp + 1;
    vlen = len - (size_t) (v - line);
    if (vlen != 8 || memcmp(v, "HTTP/1.", 7) != 0
        || (v[7] != '0' && v[7] != '1'))
    {
        *msg = "unsupported HTTP version";
        return (vlen >= 5 && memcmp(v, "HTTP/", 5) == 0) ? 505 : 400;
    }
    h->http_minor = v[7] - '0';

    /* absolute form: drop the scheme and authority */
    if ((tlen > 7 && strncasecmp(target, "http://", 7) == 0)
        || (tlen > 8 && strncasecmp(target, "https://", 8) == 0))
    {
        i = target[4] == ':' ? 7 : 8;
        sp = memchr(target + i, '/', tlen - i);
        if (sp == NULL) {
            target = "/";
            tlen = 1;
        } else {
            tlen -= (size_t) (sp - target);
            target = sp;
        }
    }

    if (tlen == 0 || target[0] != '/') {
        *msg = "malformed request target";
        return 400;
    }

    sp = memchr(target, '?', tlen);
    if (sp != NULL) {
        tlen = (size_t) (sp - target);
    }
    if (tlen >= sizeof(h->path)) {
        *msg = "request target too long";
        return 414;
    }
    memcpy(h->path, target, tlen);
    h->path[tlen] = '\0';

    /* headers */
    conn_close = 0;
    conn_keep = 0;

    for ( ;; ) {
        line = eol + 1;
        if (line >= end) {
            break;
        }
        eol = memchr(line, '\n', (size_t) (end - line));
        len = (size_t) (eol - line);
        if (len > 0 && line[len - 1] == '\r') {
            len--;
        }
        if (len == 0) {
            break;
        }

        if (line[0] == ' ' || line[0] == '\t') {
            *msg = "obsolete header line folding";
            return 400;
        }

        colon = memchr(line, ':', len);
        if (colon == NULL || colon == line) {
            *msg = "malformed header line";
            return 400;
        }
        nlen = (size_t) (colon - line);
        for (i = 0; i < nlen; i++) {
            if ((unsigned char) line[i] <= ' ' || line[i] == 0x7f) {
                *msg = "malformed header name";
                return 400;
            }
        }

        v = colon + 1;
        vlen = len - nlen - 1;
        while (vlen > 0 && (v[0] == ' ' || v[0] == '\t')) {
            v++;
            vlen--;
        }
        while (vlen > 0 && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t')) {
            vlen--;
        }

        if (mock_header_is(line, nlen, "content-length")) {
            cl = 0;
            if (vlen == 0 || vlen > 15) {
                *msg = "invalid Content-Length";
                return vlen > 15 ? 413 : 400;
            }
            for (i = 0; i < vlen; i++) {
                if (v[i] < '0' || v[i] > '9') {
                    *msg = "invalid Content-Length";
                    return 400;
                }
                cl = cl * 10 + (v[i] - '0');
            }
            if (h->content_length >= 0 && h->content_length != cl) {
                *msg = "conflicting Content-Length headers";
                return 400;
            }
            h->content_length = cl;

        } else if (mock_header_is(line, nlen, "transfer-encoding")) {
            if (!(vlen == 7 && strncasecmp(v, "chunked", 7) == 0)) {
                *msg = "unsupported Transfer-Encoding";
                return 501;
            }
            h->chunked = 1;

        } else if (mock_header_is(line, nlen, "connection")) {
            conn_close |= mock_has_token(v, vlen, "close");
            conn_keep |= mock_has_token(v, vlen, "keep-alive");

        } else if (mock_header_is(line, nlen, "expect")) {
            if (vlen == 12 && strncasecmp(v, "100-continue", 12) == 0) {
                h->expect_continue = 1;
            }

        } else if (nlen > 7 && strncasecmp(line, "x-mock-", 7) == 0) {
            mock_x_header(h, line, nlen, v, vlen);
        }
    }

    if (h->http_minor == 1) {
        h->keepalive = !conn_close;
    } else {
        h->keepalive = conn_keep && !conn_close;
    }

    if (h->chunked) {
        h->content_length = -1;
    }

    if (h->content_length > MOCK_MAX_BODY) {
        *msg = "request body too large";
        return 413;
    }

    return 0;
}


/* decodes a chunked body from c->in into c->body; OK, AGAIN or BAD */
static int
mock_dechunk(mock_conn_t *c)
{
    char         *p, *nl;
    size_t        len, n, size, i;
    mock_head_t  *h = &c->h;

    p = c->in.data;
    len = c->in.len;

    while (h->ch_state != MOCK_CHUNK_DONE) {
        if (h->ch_state == MOCK_CHUNK_DATA) {
            n = len - h->ch_pos;
            if (n == 0) {
                return MOCK_AGAIN;
            }
            if (n > h->ch_left) {
                n = h->ch_left;
            }
            mock_buf_add(&c->body, p + h->ch_pos, n);
            h->ch_pos += n;
            h->ch_left -= n;
            if (h->ch_left == 0) {
                h->ch_state = MOCK_CHUNK_DATA_END;
            }
            continue;
        }

        nl = memchr(p + h->ch_pos, '\n', len - h->ch_pos);
        if (nl == NULL) {
            if (len - h->ch_pos > 4096) {
                return mock_bad_request(c, 400, "malformed chunked body");
            }
            return MOCK_AGAIN;
        }

        n = (size_t) (nl - (p + h->ch_pos));    /* line length */
        if (n > 0 && p[h->ch_pos + n - 1] == '\r') {
            n--;
        }

        switch (h->ch_state) {
        case MOCK_CHUNK_SIZE:
            size = 0;
            for (i = 0; i < n; i++) {
                char  ch = p[h->ch_pos + i];

                if (ch >= '0' && ch <= '9') {
                    size = size * 16 + (size_t) (ch - '0');
                } else if ((ch | 0x20) >= 'a' && (ch | 0x20) <= 'f') {
                    size = size * 16 + (size_t) ((ch | 0x20) - 'a' + 10);
                } else {
                    break;
                }
                if (size > MOCK_MAX_BODY) {
                    return mock_bad_request(c, 413, "request body too large");
                }
            }
            if (i == 0 || (i < n && p[h->ch_pos + i] != ';'
                           && p[h->ch_pos + i] != ' '))
            {
                return mock_bad_request(c, 400, "malformed chunk size");
            }
            if (c->body.len + size > MOCK_MAX_BODY) {
                return mock_bad_request(c, 413, "request body too large");
            }
            h->ch_left = size;
            h->ch_state = size ? MOCK_CHUNK_DATA : MOCK_CHUNK_TRAILER;
            break;

        case MOCK_CHUNK_DATA_END:
            if (n != 0) {
                return mock_bad_request(c, 400, "malformed chunk end");
            }
            h->ch_state = MOCK_CHUNK_SIZE;
            break;

        default:    /* trailer lines, up to the empty one */
            if (n == 0) {
                h->ch_state = MOCK_CHUNK_DONE;
            }
            break;
        }

        h->ch_pos = (size_t) (nl - p) + 1;
    }

    h->req_len = h->ch_pos;
    return MOCK_OK;
}


/* MOCK_OK: a complete request; MOCK_AGAIN; MOCK_BAD: answered */
static int
mock_http_parse(mock_conn_t *c)
{
    int           status, rc;
    size_t        skip, end;
    const char   *msg;
    mock_head_t  *h = &c->h;

    if (h->head_len == 0) {
        /* empty lines before a request line are allowed */
        skip = 0;
        while (skip < c->in.len
               && (c->in.data[skip] == '\r' || c->in.data[skip] == '\n'))
        {
            skip++;
        }
        if (skip > 0) {
            memmove(c->in.data, c->in.data + skip, c->in.len - skip);
            c->in.len -= skip;
            h->scan = 0;
        }

        end = mock_head_end(c->in.data, c->in.len, h->scan);
        if (end == 0) {
            if (c->in.len > MOCK_MAX_HEAD) {
                return mock_bad_request(c, 431, "request head too large");
            }
            h->scan = c->in.len > 2 ? c->in.len - 2 : 0;
            return MOCK_AGAIN;
        }

        h->head_len = end;
        msg = "bad request";
        status = mock_parse_head(c, &msg);
        if (status != 0) {
            return mock_bad_request(c, status, msg);
        }

        h->ch_pos = end;
    }

    if (h->chunked) {
        rc = mock_dechunk(c);

    } else if (h->content_length > 0) {
        if (c->in.len - h->head_len < (size_t) h->content_length) {
            rc = MOCK_AGAIN;
        } else {
            h->req_len = h->head_len + (size_t) h->content_length;
            rc = MOCK_OK;
        }

    } else {
        h->req_len = h->head_len;
        rc = MOCK_OK;
    }

    if (rc == MOCK_AGAIN && h->expect_continue && !c->continue_sent
        && h->http_minor == 1)
    {
        c->continue_sent = 1;
        mock_buf_adds(&c->out, "HTTP/1.1 100 Continue\r\n\r\n");
    }

    return rc;
}


static void
mock_head_reset(mock_head_t *h)
{
    memset(h, 0, sizeof(*h));
    h->content_length = -1;
    h->ttft_ms = -1;
    h->itl_ms = -1;
    h->tokens = -1;
    h->status = -1;
    h->retry_after = -1;
    h->fault = -1;
    h->fault_after = -1;
}


/* ---- connections --------------------------------------------------------- */


static void
mock_conn_events(mock_conn_t *c)
{
    uint32_t            want;
    struct epoll_event  ev;

    want = c->eof ? 0 : EPOLLIN | EPOLLRDHUP;
    if (c->out_sent < c->out.len) {
        want |= EPOLLOUT;
    }

    if (want == c->events) {
        return;
    }

    ev.events = want;
    ev.data.ptr = c;
    if (epoll_ctl(mock.epfd, EPOLL_CTL_MOD, c->ev.fd, &ev) == 0) {
        c->events = want;
    }
}


static void
mock_conn_free(mock_conn_t *c)
{
    if (c->req.active || c->req.inflight || c->state == MOCK_ACTIVE
        || c->state == MOCK_HANG)
    {
        mock_req_finish(c, MOCK_DONE_CANCELLED);
    }

    mock_timer_del(c);
    close(c->ev.fd);
    c->inst->connections--;

    if (c->prev != NULL) {
        c->prev->next = c->next;
    } else {
        mock.conns = c->next;
    }
    if (c->next != NULL) {
        c->next->prev = c->prev;
    }

    free(c->req.model);
    mock_buf_free(&c->in);
    mock_buf_free(&c->out);
    mock_buf_free(&c->body);
    mock_buf_free(&c->pending);
    free(c);
}


static int
mock_conn_flush(mock_conn_t *c)
{
    ssize_t  n;

    while (c->out_sent < c->out.len) {
        n = send(c->ev.fd, c->out.data + c->out_sent,
                 c->out.len - c->out_sent, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                return MOCK_OK;
            }
            return MOCK_CLOSE;
        }
        c->out_sent += (size_t) n;
    }

    c->out.len = 0;
    c->out_sent = 0;
    if (c->out.cap > 1024 * 1024) {
        mock_buf_free(&c->out);
    }

    if (c->state == MOCK_CLOSING) {
        if (c->eof) {
            return MOCK_CLOSE;  /* the peer is gone already */
        }
        (void) shutdown(c->ev.fd, SHUT_WR);
        c->state = MOCK_LINGER;
        c->in.len = 0;
        mock_timer_set(c, mock.now + MOCK_LINGER_US);
    }

    return MOCK_OK;
}


/* parses and serves the buffered requests while the connection is idle */
static int
mock_conn_process(mock_conn_t *c)
{
    int     rc;
    size_t  n;

    while (c->state == MOCK_READING && c->in.len > 0) {
        rc = mock_http_parse(c);
        if (rc == MOCK_AGAIN || rc == MOCK_BAD) {
            break;
        }

        rc = mock_dispatch(c, c->h.chunked ? c->body.data
                                           : c->in.data + c->h.head_len,
                           c->h.chunked ? c->body.len
                                        : c->h.req_len - c->h.head_len);

        n = c->h.req_len;
        memmove(c->in.data, c->in.data + n, c->in.len - n);
        c->in.len -= n;
        mock_head_reset(&c->h);
        c->body.len = 0;
        c->continue_sent = 0;

        if (rc == MOCK_CLOSE) {
            return MOCK_CLOSE;
        }
    }

    if (c->state == MOCK_READING && c->eof) {
        c->state = MOCK_CLOSING;
    }

    return mock_conn_flush(c);
}


static int
mock_conn_read(mock_conn_t *c)
{
    ssize_t  n;
    size_t   room;

    for ( ;; ) {
        if (c->state == MOCK_CLOSING || c->state == MOCK_LINGER) {
            c->in.len = 0;      /* discard */
        }

        mock_buf_reserve(&c->in, MOCK_READ_CHUNK);
        room = c->in.cap - c->in.len;

        n = recv(c->ev.fd, c->in.data + c->in.len, room, 0);

        if (n > 0) {
            c->in.len += (size_t) n;
            if (c->in.len > MOCK_MAX_INPUT + MOCK_READ_CHUNK) {
                return MOCK_CLOSE;  /* flooding while a request runs */
            }
            if ((size_t) n < room) {
                break;
            }
            continue;
        }

        if (n == 0) {
            break;
        }

        if (errno == EINTR) {
            continue;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            return c->state == MOCK_READING ? mock_conn_process(c) : MOCK_OK;
        }

        return MOCK_CLOSE;
    }

    if (n > 0) {
        return c->state == MOCK_READING ? mock_conn_process(c) : MOCK_OK;
    }

    /* end of input: an active request is cancelled */
    c->eof = 1;

    if (c->state == MOCK_CLOSING) {
        return MOCK_OK;         /* the response may still go out */
    }
    if (c->state != MOCK_READING) {
        return MOCK_CLOSE;
    }
    if (c->in.len == 0 && c->out_sent == c->out.len) {
        return MOCK_CLOSE;
    }

    if (mock_conn_process(c) == MOCK_CLOSE) {
        return MOCK_CLOSE;
    }

    /* a request still running after EOF is a cancelled one */
    return (c->state == MOCK_ACTIVE || c->state == MOCK_HANG) ? MOCK_CLOSE
                                                              : MOCK_OK;
}


static void
mock_conn_done(mock_conn_t *c, int rc)
{
    if (rc == MOCK_OK) {
        rc = mock_conn_flush(c);
    }

    if (rc == MOCK_CLOSE) {
        mock_conn_free(c);
        return;
    }

    mock_conn_events(c);
}


static void
mock_conn_event(mock_conn_t *c, uint32_t events)
{
    int  rc;

    rc = MOCK_OK;

    if (events & EPOLLERR) {
        rc = MOCK_CLOSE;

    } else {
        if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP)) {
            rc = mock_conn_read(c);
        }
        if (rc == MOCK_OK && (events & EPOLLOUT)) {
            rc = mock_conn_flush(c);
        }
    }

    mock_conn_done(c, rc);
}


static void
mock_conn_timer(mock_conn_t *c)
{
    int  rc;

    if (c->state == MOCK_LINGER) {
        mock_conn_free(c);
        return;
    }

    rc = MOCK_OK;
    if (c->state == MOCK_ACTIVE) {
        rc = mock_req_step(c);
    }

    /* requests pipelined behind the one that just ended */
    if (rc == MOCK_OK && c->state == MOCK_READING && c->in.len > 0) {
        rc = mock_conn_process(c);
    }

    mock_conn_done(c, rc);
}


static void
mock_accept(mock_instance_t *inst)
{
    int                 fd, i, one;
    mock_conn_t        *c;
    struct epoll_event  ev;

    for (i = 0; i < MOCK_ACCEPTS; i++) {
        fd = accept4(inst->ev.fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) {
                continue;
            }
            if ((errno == EMFILE || errno == ENFILE) && mock.reserve_fd >= 0) {
                /* shed one connection rather than spin on the listener */
                fprintf(stderr, "llm-mock[%s]: out of file descriptors, "
                        "dropping a connection\n", inst->name);
                close(mock.reserve_fd);
                fd = accept(inst->ev.fd, NULL, NULL);
                if (fd >= 0) {
                    close(fd);
                }
                mock.reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
                continue;
            }
            if (errno != EAGAIN && errno != EWOULDBLOCK) {
                fprintf(stderr, "llm-mock[%s]: accept: %s\n", inst->name,
                        strerror(errno));
            }
            return;
        }

        one = 1;
        (void) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));

        c = calloc(1, sizeof(mock_conn_t));
        if (c == NULL) {
            mock_oom();
        }
        c->ev.type = MOCK_EV_CONN;
        c->ev.fd = fd;
        c->inst = inst;
        c->heap_idx = MOCK_NO_TIMER;
        c->events = EPOLLIN | EPOLLRDHUP;
        mock_head_reset(&c->h);

        ev.events = c->events;
        ev.data.ptr = c;
        if (epoll_ctl(mock.epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
            close(fd);
            free(c);
            continue;
        }

        c->next = mock.conns;
        if (mock.conns != NULL) {
            mock.conns->prev = c;
        }
        mock.conns = c;
        inst->connections++;
    }
}


/* ---- command line -------------------------------------------------------- */


static void
mock_usage(FILE *f)
{
    fputs("usage: llm-mock --listen ADDR[,key=value...] [--listen ...]\n"
          "                [--ttft-ms N] [--itl-ms N] [--tokens N]\n"
          "                [--prefill-us N] [--cache-blocks N]"
          " [--block-tokens N]\n"
          "                [--pid-file FILE] [--quiet] [--real-time]\n"
          "ADDR: HOST:PORT, [IPV6]:PORT, PORT or unix:PATH\n"
          "keys: name, ttft_ms, itl_ms, tokens, prefill_us, cache_blocks,\n"
          "      block_tokens, status, retry_after, fault, fault_after\n",
          f);
}


__attribute__((format(printf, 1, 2), noreturn))
static void
mock_arg_error(const char *fmt, ...)
{
    va_list  ap;

    fputs("llm-mock: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs("\n", stderr);
    mock_usage(stderr);
    exit(2);
}


static const mock_opt_t *
mock_opt_find(const char *name, size_t n)
{
    const mock_opt_t  *o;

    for (o = mock_opts; o->name != NULL; o++) {
        if (strlen(o->name) == n && strncmp(o->name, name, n) == 0) {
            return o;
        }
    }

    return NULL;
}


static int
mock_name_ok(const char *s, size_t n)
{
    size_t  i;

    if (n == 0 || n >= 64) {
        return 0;
    }
    for (i = 0; i < n; i++) {
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z')
              || (s[i] >= '0' && s[i] <= '9') || s[i] == '-' || s[i] == '_'
              || s[i] == '.'))
        {
            return 0;
        }
    }
    return 1;
}


static void
mock_parse_addr(mock_instance_t *inst, const char *spec, size_t n)
{
    int                 rc;
    long                port;
    char                host[256], serv[8];
    const char         *colon;
    struct addrinfo     hints, *res;
    struct sockaddr_un *sun;

    if (n > 5 && strncmp(spec, "unix:", 5) == 0) {
        if (n - 5 >= sizeof(inst->unix_path) || spec[5] != '/') {
            mock_arg_error("--listen %s: bad unix socket path (absolute, "
                           "under 108 bytes)", inst->spec);
        }
        memcpy(inst->unix_path, spec + 5, n - 5);
        inst->unix_path[n - 5] = '\0';

        sun = (struct sockaddr_un *) &inst->sa;
        sun->sun_family = AF_UNIX;
        memcpy(sun->sun_path, inst->unix_path, n - 4);
        inst->salen = sizeof(struct sockaddr_un);

        colon = strrchr(inst->unix_path, '/') + 1;
        snprintf(inst->name, sizeof(inst->name), "%s",
                 *colon ? colon : "unix");
        return;
    }

    /* [v6]:port, host:port or port */
    if (n > 0 && spec[0] == '[') {
        colon = memchr(spec, ']', n);
        if (colon == NULL || colon + 1 >= spec + n || colon[1] != ':') {
            mock_arg_error("--listen %s: bad address, want [IPV6]:PORT",
                           inst->spec);
        }
        snprintf(host, sizeof(host), "%.*s", (int) (colon - spec - 1),
                 spec + 1);
        colon++;

    } else {
        colon = memrchr(spec, ':', n);
        if (colon == NULL) {
            snprintf(host, sizeof(host), "127.0.0.1");
            colon = spec - 1;
        } else {
            if (colon == spec || (size_t) (colon - spec) >= sizeof(host)) {
                mock_arg_error("--listen %s: bad host", inst->spec);
            }
            snprintf(host, sizeof(host), "%.*s", (int) (colon - spec), spec);
        }
    }

    if (mock_parse_long(colon + 1, (size_t) (spec + n - colon - 1), 1, 65535,
                        &port) != 0)
    {
        mock_arg_error("--listen %s: bad port '%.*s' (1-65535)", inst->spec,
                       (int) (spec + n - colon - 1), colon + 1);
    }
    snprintf(serv, sizeof(serv), "%ld", port);

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV | AI_PASSIVE;

    rc = getaddrinfo(host, serv, &hints, &res);
    if (rc != 0) {
        mock_arg_error("--listen %s: bad host '%s': %s", inst->spec, host,
                       gai_strerror(rc));
    }
    memcpy(&inst->sa, res->ai_addr, res->ai_addrlen);
    inst->salen = res->ai_addrlen;
    freeaddrinfo(res);

    snprintf(inst->name, sizeof(inst->name), "%ld", port);
}


static void
mock_parse_listen(mock_instance_t *inst, const char *spec)
{
    int                f;
    long               v;
    size_t             n, klen;
    const char        *p, *comma, *eq;
    const mock_opt_t  *o;

    inst->spec = spec;

    comma = strchr(spec, ',');
    n = comma ? (size_t) (comma - spec) : strlen(spec);
    if (n == 0) {
        mock_arg_error("--listen %s: missing address", spec);
    }
    mock_parse_addr(inst, spec, n);

    for (p = comma; p != NULL; p = comma) {
        p++;
        comma = strchr(p, ',');
        n = comma ? (size_t) (comma - p) : strlen(p);

        eq = memchr(p, '=', n);
        if (eq == NULL) {
            mock_arg_error("--listen %s: option '%.*s' wants key=value",
                           spec, (int) n, p);
        }
        klen = (size_t) (eq - p);
        eq++;
        n -= klen + 1;

        if (klen == 4 && strncmp(p, "name", 4) == 0) {
            if (!mock_name_ok(eq, n)) {
                mock_arg_error("--listen %s: bad name '%.*s' (1-63 of "
                               "[A-Za-z0-9._-])", spec, (int) n, eq);
            }
            memcpy(inst->name, eq, n);
            inst->name[n] = '\0';
            continue;
        }

        if (klen == 5 && strncmp(p, "fault", 5) == 0) {
            f = mock_fault_parse(eq, n);
            if (f < 0) {
                mock_arg_error("--listen %s: bad fault '%.*s'", spec, (int) n,
                               eq);
            }
            inst->fault = f;
            continue;
        }

        o = mock_opt_find(p, klen);
        if (o == NULL) {
            mock_arg_error("--listen %s: unknown option '%.*s'", spec,
                           (int) klen, p);
        }
        if (mock_parse_long(eq, n, o->min, o->max, &v) != 0) {
            mock_arg_error("--listen %s: bad value '%.*s' for %s (%ld-%ld)",
                           spec, (int) n, eq, o->name, o->min, o->max);
        }
        *(long *) ((char *) inst + o->offset) = v;
    }
}


static void
mock_parse_args(int argc, char **argv)
{
    int                i;
    long               v;
    char               key[32];
    size_t             k, n, nlisten;
    const char        *arg, *val, *eq;
    const char       **listen;
    const mock_opt_t  *o;
    mock_instance_t   *d = &mock.defaults;

    listen = calloc((size_t) argc, sizeof(char *));
    if (listen == NULL) {
        mock_oom();
    }
    nlisten = 0;

    d->ttft_ms = 0;
    d->itl_ms = 0;
    d->tokens = 16;
    d->prefill_us = 0;
    d->cache_blocks = 4096;
    d->block_tokens = 16;

    for (i = 1; i < argc; i++) {
        arg = argv[i];

        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            mock_usage(stdout);
            exit(0);
        }
        if (strcmp(arg, "--version") == 0) {
            puts("llm-mock " MOCK_VERSION);
            exit(0);
        }
        if (strcmp(arg, "--quiet") == 0) {
            mock.quiet = 1;
            continue;
        }
        if (strcmp(arg, "--real-time") == 0) {
            mock.real_time = 1;
            continue;
        }

        if (strncmp(arg, "--", 2) != 0) {
            mock_arg_error("unexpected argument '%s'", arg);
        }

        /* --name value or --name=value */
        eq = strchr(arg, '=');
        n = eq ? (size_t) (eq - arg) : strlen(arg);
        if (eq != NULL) {
            val = eq + 1;
        } else if (i + 1 < argc) {
            val = argv[++i];
        } else {
            mock_arg_error("option %s needs a value", arg);
        }

        if (n == 8 && strncmp(arg, "--listen", 8) == 0) {
            listen[nlisten++] = val;
            continue;
        }
        if (n == 10 && strncmp(arg, "--pid-file", 10) == 0) {
            if (*val == '\0') {
                mock_arg_error("--pid-file needs a file name");
            }
            mock.pid_file = val;
            continue;
        }

        /* --ttft-ms and friends: the option table with '_' for '-' */
        if (n - 2 >= sizeof(key)) {
            mock_arg_error("unknown option '%.*s'", (int) n, arg);
        }
        for (k = 2; k < n; k++) {
            key[k - 2] = arg[k] == '-' ? '_' : arg[k];
        }
        key[n - 2] = '\0';

        o = mock_opt_find(key, n - 2);
        if (o == NULL || !o->global) {
            mock_arg_error("unknown option '%.*s'", (int) n, arg);
        }
        if (mock_parse_long(val, strlen(val), o->min, o->max, &v) != 0) {
            mock_arg_error("bad value '%s' for %.*s (%ld-%ld)", val, (int) n,
                           arg, o->min, o->max);
        }
        *(long *) ((char *) d + o->offset) = v;
    }

    if (nlisten == 0) {
        mock_arg_error("at least one --listen is required");
    }

    mock.insts = calloc(nlisten, sizeof(mock_instance_t));
    if (mock.insts == NULL) {
        mock_oom();
    }
    mock.ninsts = nlisten;

    for (k = 0; k < nlisten; k++) {
        mock_instance_t  *inst = &mock.insts[k];

        inst->ttft_ms = -1;
        inst->itl_ms = -1;
        inst->tokens = -1;
        inst->prefill_us = -1;
        inst->cache_blocks = -1;
        inst->block_tokens = -1;
        inst->status = 0;
        inst->retry_after = -1;
        inst->fault = MOCK_FAULT_NONE;
        inst->fault_after = -1;

        mock_parse_listen(inst, listen[k]);

        for (o = mock_opts; o->name != NULL; o++) {
            long  *field = (long *) ((char *) inst + o->offset);

            if (o->global && *field < 0) {
                *field = *(long *) ((char *) d + o->offset);
            }
        }
    }

    free(listen);
}


/* ---- main ---------------------------------------------------------------- */


static void
mock_listen(mock_instance_t *inst)
{
    int                 fd, one;
    struct stat         st;
    struct epoll_event  ev;

    fd = socket(inst->sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
                0);
    if (fd < 0) {
        fprintf(stderr, "llm-mock: --listen %s: socket: %s\n", inst->spec,
                strerror(errno));
        exit(1);
    }

    one = 1;
    (void) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));

    /* a stale socket file from a previous run, never a regular file */
    if (inst->unix_path[0] && stat(inst->unix_path, &st) == 0
        && S_ISSOCK(st.st_mode))
    {
        (void) unlink(inst->unix_path);
    }

    if (bind(fd, (struct sockaddr *) &inst->sa, inst->salen) != 0
        || listen(fd, 4096) != 0)
    {
        fprintf(stderr, "llm-mock: --listen %s: %s\n", inst->spec,
                strerror(errno));
        exit(1);
    }

    inst->ev.type = MOCK_EV_LISTENER;
    inst->ev.fd = fd;

    ev.events = EPOLLIN;
    ev.data.ptr = inst;
    if (epoll_ctl(mock.epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
        fprintf(stderr, "llm-mock: epoll_ctl: %s\n", strerror(errno));
        exit(1);
    }

    mock_lru_init(&inst->cache, (uint32_t) inst->cache_blocks);

    if (!mock.quiet) {
        fprintf(stderr, "llm-mock[%s]: listening on %s (ttft_ms=%ld "
                "itl_ms=%ld tokens=%ld prefill_us=%ld cache_blocks=%ld "
                "block_tokens=%ld)\n", inst->name, inst->spec,
                inst->ttft_ms, inst->itl_ms, inst->tokens, inst->prefill_us,
                inst->cache_blocks, inst->block_tokens);
    }
}


static void
mock_setup(void)
{
    FILE                *f;
    size_t               i;
    sigset_t             mask;
    struct rlimit        rl;
    struct epoll_event   ev;

    /* thousands of connections need more than the usual 1024 descriptors */
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        (void) setrlimit(RLIMIT_NOFILE, &rl);
    }

    signal(SIGPIPE, SIG_IGN);

    mock.epfd = epoll_create1(EPOLL_CLOEXEC);
    if (mock.epfd < 0) {
        fprintf(stderr, "llm-mock: epoll_create1: %s\n", strerror(errno));
        exit(1);
    }

    sigemptyset(&mask);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGTERM);
    sigprocmask(SIG_BLOCK, &mask, NULL);

    mock.sig.type = MOCK_EV_SIGNAL;
    mock.sig.fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
    if (mock.sig.fd < 0) {
        fprintf(stderr, "llm-mock: signalfd: %s\n", strerror(errno));
        exit(1);
    }
    ev.events = EPOLLIN;
    ev.data.ptr = &mock.sig;
    (void) epoll_ctl(mock.epfd, EPOLL_CTL_ADD, mock.sig.fd, &ev);

    mock.reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    mock_buf_reserve(&mock.text, 4096);
    mock_buf_reserve(&mock.tmp, 4096);
    mock.xxh = XXH3_createState();
    if (mock.xxh == NULL) {
        mock_oom();
    }

    for (i = 0; i < mock.ninsts; i++) {
        mock_listen(&mock.insts[i]);
    }

    /* written last: its presence means the sockets are listening */
    if (mock.pid_file != NULL) {
        f = fopen(mock.pid_file, "w");
        if (f == NULL) {
            fprintf(stderr, "llm-mock: --pid-file %s: %s\n", mock.pid_file,
                    strerror(errno));
            exit(1);
        }
        fprintf(f, "%ld\n", (long) getpid());
        fclose(f);
    }
}


static void
mock_cleanup(void)
{
    size_t            i;
    mock_instance_t  *inst;

    while (mock.conns != NULL) {
        mock.conns->req.active = 0;
        mock.conns->state = MOCK_READING;
        mock_conn_free(mock.conns);
    }

    for (i = 0; i < mock.ninsts; i++) {
        inst = &mock.insts[i];
        close(inst->ev.fd);
        if (inst->unix_path[0]) {
            (void) unlink(inst->unix_path);
        }
        free(inst->cache.nodes);
        free(inst->cache.slots);
    }

    if (mock.pid_file != NULL) {
        (void) unlink(mock.pid_file);
    }

    free(mock.insts);
    free(mock.heap);
    free(mock.hashes);
    mock_buf_free(&mock.text);
    mock_buf_free(&mock.tmp);
    XXH3_freeState(mock.xxh);
    close(mock.sig.fd);
    close(mock.epfd);
    if (mock.reserve_fd >= 0) {
        close(mock.reserve_fd);
    }
}


int
main(int argc, char **argv)
{
    int                      i, n;
    mock_ev_t               *ev;
    mock_conn_t             *c;
    struct epoll_event       events[MOCK_EVENTS];
    struct signalfd_siginfo  si;
    static char              logbuf[65536];

    mock_parse_args(argc, argv);

    /* one write per loop turn for the request log, not one per line */
    setvbuf(stderr, logbuf, _IOFBF, sizeof(logbuf));

    mock_setup();
    fflush(stderr);

    while (!mock.stop) {
        n = epoll_wait(mock.epfd, events, MOCK_EVENTS, mock_timer_timeout());
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            fprintf(stderr, "llm-mock: epoll_wait: %s\n", strerror(errno));
            break;
        }

        mock.now = mock_clock();

        for (i = 0; i < n; i++) {
            ev = events[i].data.ptr;

            switch (ev->type) {
            case MOCK_EV_LISTENER:
                mock_accept((mock_instance_t *) ev);
                break;

            case MOCK_EV_SIGNAL:
                while (read(ev->fd, &si, sizeof(si)) == sizeof(si)) {
                    mock.stop = 1;
                }
                break;

            default:
                mock_conn_event((mock_conn_t *) ev, events[i].events);
                break;
            }
        }

        while (mock.heap_len > 0 && mock.heap[0]->deadline <= mock.now) {
            c = mock.heap[0];
            mock_timer_del(c);
            mock_conn_timer(c);
        }

        fflush(stderr);
    }

    if (!mock.quiet) {
        fputs("llm-mock: exiting\n", stderr);
    }
    mock_cleanup();
    fflush(stderr);

    return 0;
}
