
/*
 * Copyright (C) ngx_llm authors
 *
 * The link to llm-sidecar (see ngx_http_llm_sidecar.h): the HTTP client,
 * the usage spool, and the configuration. Routing on the request path is
 * in ngx_http_llm_route.c.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_llm_module.h"
#include "ngx_http_llm_json.h"


/* the largest answer the client accepts (route and usage answers are small) */
#define NGX_HTTP_LLM_SIDECAR_MAX_RESPONSE  (256 * 1024)

/* an idle connection is closed after this long (the sidecar's is 75 s) */
#define NGX_HTTP_LLM_SIDECAR_IDLE_TIMEOUT  60000

/* spool delivery: tick, batch byte limit, quiet interval of repeated logs */
#define NGX_HTTP_LLM_SIDECAR_TICK          100
#define NGX_HTTP_LLM_SIDECAR_BATCH_BYTES   (512 * 1024)
#define NGX_HTTP_LLM_SIDECAR_LOG_INTERVAL  10000
/* after a failed exchange, route calls wait this long, ms (fail-open) */
#define NGX_HTTP_LLM_SIDECAR_BACKOFF       1000
/*
 * how long an exiting worker stays to deliver its spooled records, ms,
 * counted from when it went idle (its last record, or the exit if later)
 */
#define NGX_HTTP_LLM_SIDECAR_DRAIN         5000

/* one usage record, JSON; longer records (odd team names) are truncated */
#define NGX_HTTP_LLM_SIDECAR_RECORD_MAX    2048


struct ngx_http_llm_sidecar_call_s {
    ngx_peer_connection_t           peer;
    ngx_pool_t                     *pool;
    ngx_log_t                       log;        /* quiet: own errors only */
    ngx_buf_t                      *out;
    ngx_buf_t                      *in;
    u_char                         *body;       /* after the header */
    off_t                           content_length;
    ngx_int_t                       status;
    ngx_msec_t                      deadline;
    ngx_http_llm_sidecar_handler_pt handler;    /* NULL: cancelled */
    void                           *data;
    unsigned                        reused:1;   /* an idle connection */
    unsigned                        keepalive:1; /* the answer allows reuse */
};


/* the idle connections of this worker, most recently used first */
typedef struct {
    ngx_queue_t                     queue;
    ngx_connection_t               *connection;
} ngx_http_llm_sidecar_idle_t;


/* the spool: a byte ring of [uint32 length][record JSON] in shared memory */
typedef struct {
    uint64_t                        head;       /* next write, monotonic */
    uint64_t                        tail;       /* oldest record */
    uint64_t                        records;
    uint64_t                        dropped;    /* spool full, ever */
    uint64_t                        dropped_logged;
    uint64_t                        delivered;
    uint64_t                        seq;        /* batches taken */
    ngx_atomic_t                    link[NGX_HTTP_LLM_LINK_COUNTERS];
    ngx_atomic_t                    up;         /* last exchange answered */
    ngx_atomic_t                    failed_at;  /* msec, 0: last one did */
    ngx_pid_t                       sender;     /* batch in flight, or 0 */
    ngx_msec_t                      sent_at;
    ngx_msec_t                      drop_log_at;
    size_t                          size;       /* ring capacity */
    u_char                         *data;
} ngx_http_llm_spool_shctx_t;


typedef struct {
    ngx_http_llm_spool_shctx_t     *sh;
    ngx_slab_pool_t                *shpool;
} ngx_http_llm_spool_t;


/* the batch in flight from this worker */
typedef struct {
    ngx_http_llm_spool_t           *spool;
    uint64_t                        seq;
    uint64_t                        start;      /* tail when taken */
    uint64_t                        bytes;
    ngx_uint_t                      records;
} ngx_http_llm_spool_batch_t;


static ngx_http_llm_sidecar_call_t *ngx_http_llm_sidecar_call_create(
    ngx_msec_t timeout, ngx_http_llm_sidecar_handler_pt handler, void *data);
static ngx_http_llm_sidecar_call_t *ngx_http_llm_sidecar_call_start(
    ngx_http_llm_sidecar_call_t *call, ngx_addr_t *addr, ngx_buf_t *out);
static u_char *ngx_http_llm_sidecar_head(u_char *p, const char *path,
    size_t len);
static ngx_int_t ngx_http_llm_sidecar_connect(
    ngx_http_llm_sidecar_call_t *call);
static void ngx_http_llm_sidecar_attach(ngx_http_llm_sidecar_call_t *call,
    ngx_connection_t *c);
static ngx_connection_t *ngx_http_llm_sidecar_idle_get(void);
static void ngx_http_llm_sidecar_idle_put(ngx_connection_t *c);
static void ngx_http_llm_sidecar_idle_handler(ngx_event_t *ev);
static void ngx_http_llm_sidecar_idle_close(ngx_connection_t *c);
static void ngx_http_llm_sidecar_set_up(ngx_uint_t up);
static void ngx_http_llm_sidecar_write_handler(ngx_event_t *wev);
static void ngx_http_llm_sidecar_read_handler(ngx_event_t *rev);
static ngx_int_t ngx_http_llm_sidecar_parse(ngx_http_llm_sidecar_call_t *call,
    ngx_uint_t eof);
static void ngx_http_llm_sidecar_finish(ngx_http_llm_sidecar_call_t *call,
    ngx_int_t status);
static ngx_int_t ngx_http_llm_spool_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
static u_char *ngx_http_llm_sidecar_cpy(u_char *p, u_char *last,
    const char *s, size_t len);
static u_char *ngx_http_llm_sidecar_int(u_char *p, u_char *last, int64_t n);
static ngx_int_t ngx_http_llm_spool_put(ngx_http_llm_spool_t *spool,
    u_char *rec, size_t len);
static void ngx_http_llm_spool_copy(ngx_http_llm_spool_shctx_t *sh,
    u_char *dst, uint64_t off, size_t len);
static void ngx_http_llm_spool_tick(ngx_event_t *ev);
static void ngx_http_llm_spool_flush(ngx_cycle_t *cycle,
    ngx_http_llm_sidecar_conf_t *scf);
static void ngx_http_llm_spool_done(void *data, ngx_int_t status,
    ngx_str_t *body);
static void ngx_http_llm_spool_report(ngx_http_llm_spool_batch_t *batch,
    ngx_int_t status, ngx_str_t *body);
static char *ngx_http_llm_sidecar_zone(ngx_conf_t *cf, ngx_str_t *value,
    const char *param, ngx_shm_zone_t **zone,
    ngx_shm_zone_init_pt init);


static ngx_event_t   ngx_http_llm_spool_timer;
static ngx_msec_t    ngx_http_llm_spool_exit_at;

/* the end of this worker's last spooled record (ring offset) and when */
static uint64_t      ngx_http_llm_spool_last;
static ngx_msec_t    ngx_http_llm_spool_last_at;
static ngx_msec_t    ngx_http_llm_sidecar_fail_log_at;
static ngx_uint_t    ngx_http_llm_sidecar_fail_count;

/* keepalive: idle connections (cache) and free slots, per worker */
static ngx_queue_t   ngx_http_llm_sidecar_cache;
static ngx_queue_t   ngx_http_llm_sidecar_free;
static ngx_log_t     ngx_http_llm_sidecar_idle_log;

/*
 * the buffer usage batches are written into, kept for the next batch: one
 * batch is in flight at a time (busy while it is); a batch of hundreds of
 * KB allocated and freed each time cost page faults and a copy
 */
static u_char       *ngx_http_llm_spool_out;
static size_t        ngx_http_llm_spool_out_size;
static ngx_uint_t    ngx_http_llm_spool_out_busy;

/* the spool zone of this worker's cycle: the link counters live there */
static ngx_http_llm_spool_shctx_t  *ngx_http_llm_sidecar_sh;


/* the client */

ngx_http_llm_sidecar_call_t *
ngx_http_llm_sidecar_call(ngx_addr_t *addr, const char *path,
    ngx_str_t *body, ngx_msec_t timeout,
    ngx_http_llm_sidecar_handler_pt handler, void *data)
{
    size_t                        len;
    ngx_buf_t                    *b;
    ngx_http_llm_sidecar_call_t  *call;

    call = ngx_http_llm_sidecar_call_create(timeout, handler, data);
    if (call == NULL) {
        return NULL;
    }

    len = sizeof("POST  HTTP/1.1" CRLF "Host: llm-sidecar" CRLF
                 "Content-Type: application/json" CRLF
                 "Content-Length: " CRLF CRLF) - 1
          + ngx_strlen(path) + NGX_SIZE_T_LEN + body->len;

    b = ngx_create_temp_buf(call->pool, len);
    if (b == NULL) {
        ngx_destroy_pool(call->pool);
        return NULL;
    }

    b->last = ngx_http_llm_sidecar_head(b->last, path, body->len);
    b->last = ngx_cpymem(b->last, body->data, body->len);

    return ngx_http_llm_sidecar_call_start(call, addr, b);
}


/* the request line and headers of a call with a body of len bytes */

static u_char *
ngx_http_llm_sidecar_head(u_char *p, const char *path, size_t len)
{
    /* HTTP/1.1 keeps the connection open for the next call */

    return ngx_sprintf(p, "POST %s HTTP/1.1" CRLF
                       "Host: llm-sidecar" CRLF
                       "Content-Type: application/json" CRLF
                       "Content-Length: %uz" CRLF CRLF, path, len);
}


static ngx_http_llm_sidecar_call_t *
ngx_http_llm_sidecar_call_create(ngx_msec_t timeout,
    ngx_http_llm_sidecar_handler_pt handler, void *data)
{
    ngx_pool_t                   *pool;
    ngx_http_llm_sidecar_call_t  *call;

    pool = ngx_create_pool(1024, ngx_cycle->log);
    if (pool == NULL) {
        return NULL;
    }

    call = ngx_pcalloc(pool, sizeof(ngx_http_llm_sidecar_call_t));
    if (call == NULL) {
        ngx_destroy_pool(pool);
        return NULL;
    }

    call->pool = pool;
    call->handler = handler;
    call->data = data;
    call->content_length = -1;
    call->deadline = ngx_current_msec + timeout;

    /*
     * nginx logs connect() failures on the connection's log at "error" or
     * "crit" each time; the spool retries every tick, so this log lets
     * through only alerts and the link reports failures itself, once per
     * interval
     */

    call->log = *ngx_cycle->log;
    call->log.log_level = NGX_LOG_ALERT;
    pool->log = &call->log;

    return call;
}


/*
 * sends out (the whole request; it stays the caller's and must outlive
 * the call when not in the call's pool) on an idle or a new connection
 */

static ngx_http_llm_sidecar_call_t *
ngx_http_llm_sidecar_call_start(ngx_http_llm_sidecar_call_t *call,
    ngx_addr_t *addr, ngx_buf_t *out)
{
    ngx_connection_t  *c;

    call->out = out;

    call->peer.sockaddr = addr->sockaddr;
    call->peer.socklen = addr->socklen;
    call->peer.name = &addr->name;
    call->peer.get = ngx_event_get_peer;
    call->peer.log = &call->log;
    call->peer.log_error = NGX_ERROR_INFO;

    c = ngx_http_llm_sidecar_idle_get();

    if (c) {
        call->reused = 1;
        call->peer.connection = c;
        ngx_http_llm_sidecar_attach(call, c);
        ngx_post_event(c->write, &ngx_posted_events);

    } else if (ngx_http_llm_sidecar_connect(call) != NGX_OK) {
        ngx_http_llm_sidecar_set_up(0);
        ngx_destroy_pool(call->pool);
        return NULL;
    }

    return call;
}


/*
 * A new connection for the call; the exchange starts from the event loop
 * (the handler is never called from within ngx_http_llm_sidecar_call())
 */

static ngx_int_t
ngx_http_llm_sidecar_connect(ngx_http_llm_sidecar_call_t *call)
{
    ngx_int_t  rc;

    call->peer.connection = NULL;

    rc = ngx_event_connect_peer(&call->peer);

    if (rc == NGX_ERROR || rc == NGX_BUSY || rc == NGX_DECLINED) {
        if (call->peer.connection) {
            ngx_close_connection(call->peer.connection);
            call->peer.connection = NULL;
        }

        return NGX_ERROR;
    }

    ngx_http_llm_sidecar_count(NGX_HTTP_LLM_LINK_CONNECT);

    ngx_http_llm_sidecar_attach(call, call->peer.connection);

    if (rc == NGX_OK) {
        ngx_post_event(call->peer.connection->write, &ngx_posted_events);
    }

    /* NGX_AGAIN: the write event comes when the connection is established */

    return NGX_OK;
}


static void
ngx_http_llm_sidecar_attach(ngx_http_llm_sidecar_call_t *call,
    ngx_connection_t *c)
{
    ngx_msec_int_t  left;

    c->data = call;
    c->pool = call->pool;
    c->log = &call->log;
    c->read->log = c->log;
    c->write->log = c->log;
    c->log_error = NGX_ERROR_INFO;
    c->read->handler = ngx_http_llm_sidecar_read_handler;
    c->write->handler = ngx_http_llm_sidecar_write_handler;

    /* one deadline for the whole exchange, on the read event */

    left = (ngx_msec_int_t) (call->deadline - ngx_current_msec);

    ngx_add_timer(c->read, left > 0 ? (ngx_msec_t) left : 1);
}


void
ngx_http_llm_sidecar_cancel(ngx_http_llm_sidecar_call_t *call)
{
    /* the exchange runs to its end (bounded by its timer), unheard */
    call->handler = NULL;
}


static void
ngx_http_llm_sidecar_write_handler(ngx_event_t *wev)
{
    ssize_t                       n;
    ngx_buf_t                    *b;
    ngx_connection_t             *c;
    ngx_http_llm_sidecar_call_t  *call;

    c = wev->data;
    call = c->data;
    b = call->out;

    while (b->pos < b->last) {
        n = c->send(c, b->pos, b->last - b->pos);

        if (n == NGX_AGAIN) {
            if (ngx_handle_write_event(wev, 0) != NGX_OK) {
                ngx_http_llm_sidecar_finish(call, NGX_ERROR);
            }

            return;
        }

        if (n == NGX_ERROR) {
            ngx_http_llm_sidecar_finish(call, NGX_ERROR);
            return;
        }

        b->pos += n;
    }

    /* request sent: the answer may already be there */

    if (c->read->ready) {
        ngx_http_llm_sidecar_read_handler(c->read);
    }
}


static void
ngx_http_llm_sidecar_read_handler(ngx_event_t *rev)
{
    size_t                        size;
    ssize_t                       n;
    ngx_int_t                     rc;
    ngx_buf_t                    *b, *nb;
    ngx_connection_t             *c;
    ngx_http_llm_sidecar_call_t  *call;

    c = rev->data;
    call = c->data;

    if (rev->timedout) {
        ngx_http_llm_sidecar_finish(call, NGX_ETIMEDOUT);
        return;
    }

    if (call->out->pos < call->out->last) {
        /* not all sent yet; a read event now means an early close */
        if (ngx_handle_read_event(rev, 0) != NGX_OK) {
            ngx_http_llm_sidecar_finish(call, NGX_ERROR);
        }

        return;
    }

    for ( ;; ) {
        b = call->in;

        if (b == NULL || b->last == b->end) {
            size = b ? 2 * (size_t) (b->end - b->start) : 1024;

            if (size > NGX_HTTP_LLM_SIDECAR_MAX_RESPONSE) {
                ngx_http_llm_sidecar_finish(call, NGX_ERROR);
                return;
            }

            nb = ngx_create_temp_buf(call->pool, size);
            if (nb == NULL) {
                ngx_http_llm_sidecar_finish(call, NGX_ERROR);
                return;
            }

            if (b) {
                nb->last = ngx_cpymem(nb->pos, b->pos, b->last - b->pos);

                if (call->body) {
                    call->body = nb->pos + (call->body - b->pos);
                }
            }

            call->in = nb;
            b = nb;
        }

        n = c->recv(c, b->last, b->end - b->last);

        if (n == NGX_AGAIN) {
            if (ngx_handle_read_event(rev, 0) != NGX_OK) {
                ngx_http_llm_sidecar_finish(call, NGX_ERROR);
            }

            return;
        }

        if (n == NGX_ERROR) {
            ngx_http_llm_sidecar_finish(call, NGX_ERROR);
            return;
        }

        if (n > 0) {
            b->last += n;
        }

        rc = ngx_http_llm_sidecar_parse(call, n == 0);

        if (rc == NGX_AGAIN && n > 0) {
            continue;
        }

        ngx_http_llm_sidecar_finish(call, rc == NGX_OK ? call->status
                                                       : NGX_ERROR);
        return;
    }
}


/*
 * A minimal HTTP/1.1 response parser for one trusted local peer: status
 * line, Content-Length, body. NGX_OK when the body is complete, NGX_AGAIN
 * for more, NGX_ERROR.
 */

static ngx_int_t
ngx_http_llm_sidecar_parse(ngx_http_llm_sidecar_call_t *call, ngx_uint_t eof)
{
    u_char     *p, *last, *eol, *v;
    ngx_buf_t  *b;

    b = call->in;

    if (call->body == NULL) {
        last = ngx_strlcasestrn(b->pos, b->last, (u_char *) CRLF CRLF, 3);

        if (last == NULL) {
            return eof ? NGX_ERROR : NGX_AGAIN;
        }

        p = b->pos;

        if (last - p < 12 || ngx_strncmp(p, "HTTP/1.", 7) != 0) {
            return NGX_ERROR;
        }

        call->status = ngx_atoi(p + 9, 3);
        if (call->status < 100) {
            return NGX_ERROR;
        }

        /* HTTP/1.1 with a length and without "Connection: close" */
        call->keepalive = (p[7] == '1');

        for (p = ngx_strlchr(p, last, LF); p && p < last; p = eol) {
            p++;
            eol = ngx_strlchr(p, last + 2, LF);

            if (eol == NULL) {
                break;
            }

            if (eol - p > 15
                && ngx_strncasecmp(p, (u_char *) "content-length:", 15) == 0)
            {
                for (v = p + 15; *v == ' ' || *v == '\t'; v++) { /* void */ }

                call->content_length = ngx_atoof(v, eol - v - 1);

                if (call->content_length == NGX_ERROR) {
                    return NGX_ERROR;
                }

            } else if (eol - p > 11
                       && ngx_strncasecmp(p, (u_char *) "connection:", 11)
                          == 0
                       && ngx_strlcasestrn(p + 11, eol, (u_char *) "close",
                                           4)
                          != NULL)
            {
                call->keepalive = 0;
            }
        }

        call->body = last + 4;
    }

    if (call->content_length >= 0) {
        if (b->last - call->body >= call->content_length) {
            if (b->last - call->body > call->content_length) {
                /* more than the answer: the connection is not reusable */
                call->keepalive = 0;
            }

            b->last = call->body + call->content_length;
            return NGX_OK;
        }

        return eof ? NGX_ERROR : NGX_AGAIN;
    }

    /* no length: the body ends with the connection */

    call->keepalive = 0;

    return eof ? NGX_OK : NGX_AGAIN;
}


static void
ngx_http_llm_sidecar_finish(ngx_http_llm_sidecar_call_t *call,
    ngx_int_t status)
{
    ngx_str_t          body;
    ngx_pool_t        *pool;
    ngx_connection_t  *c;

    c = call->peer.connection;

    if (status == NGX_ERROR && call->reused
        && (call->in == NULL || call->in->last == call->in->start))
    {

        /*
         * the sidecar closed an idle connection (restart, its idle
         * timeout) as it was taken: once more on a new connection
         */

        ngx_close_connection(c);

        call->reused = 0;
        call->out->pos = call->out->start;

        if (ngx_http_llm_sidecar_connect(call) == NGX_OK) {
            return;
        }

        c = NULL;
    }

    if (c) {
        call->peer.connection = NULL;

        if (status > 0 && call->keepalive && !c->read->eof
            && !c->read->error && !c->error && !ngx_exiting && !ngx_terminate)
        {
            ngx_http_llm_sidecar_idle_put(c);

        } else {
            ngx_close_connection(c);
        }
    }

    ngx_http_llm_sidecar_set_up(status > 0);

    ngx_str_null(&body);

    if (status > 0 && call->body) {
        body.data = call->body;
        body.len = call->in->last - call->body;
    }

    if (call->handler) {
        call->handler(call->data, status, &body);
    }

    pool = call->pool;
    ngx_destroy_pool(pool);
}


/* keepalive */

static ngx_connection_t *
ngx_http_llm_sidecar_idle_get(void)
{
    ngx_queue_t                  *q;
    ngx_connection_t             *c;
    ngx_http_llm_sidecar_idle_t  *item;

    if (ngx_http_llm_sidecar_cache.next == NULL
        || ngx_queue_empty(&ngx_http_llm_sidecar_cache))
    {
        return NULL;
    }

    q = ngx_queue_head(&ngx_http_llm_sidecar_cache);
    ngx_queue_remove(q);
    ngx_queue_insert_head(&ngx_http_llm_sidecar_free, q);

    item = ngx_queue_data(q, ngx_http_llm_sidecar_idle_t, queue);
    c = item->connection;

    if (c->read->timer_set) {
        ngx_del_timer(c->read);
    }

    c->idle = 0;
    c->read->cancelable = 0;

    ngx_http_llm_sidecar_count(NGX_HTTP_LLM_LINK_REUSE);

    return c;
}


static void
ngx_http_llm_sidecar_idle_put(ngx_connection_t *c)
{
    ngx_queue_t                  *q;
    ngx_http_llm_sidecar_idle_t  *item;

    if (ngx_http_llm_sidecar_free.next == NULL || c->read->ready) {
        /* no keepalive, or bytes nobody asked for: not reusable */
        ngx_close_connection(c);
        return;
    }

    if (c->read->timer_set) {
        ngx_del_timer(c->read);
    }

    if (c->write->timer_set) {
        ngx_del_timer(c->write);
    }

    if (ngx_queue_empty(&ngx_http_llm_sidecar_free)) {
        /* the pool is full: the least recently used one goes */
        q = ngx_queue_last(&ngx_http_llm_sidecar_cache);
        item = ngx_queue_data(q, ngx_http_llm_sidecar_idle_t, queue);
        ngx_http_llm_sidecar_idle_close(item->connection);
    }

    q = ngx_queue_head(&ngx_http_llm_sidecar_free);
    ngx_queue_remove(q);
    ngx_queue_insert_head(&ngx_http_llm_sidecar_cache, q);

    item = ngx_queue_data(q, ngx_http_llm_sidecar_idle_t, queue);
    item->connection = c;

    c->data = item;
    c->pool = NULL;
    c->log = &ngx_http_llm_sidecar_idle_log;
    c->read->log = c->log;
    c->write->log = c->log;
    c->idle = 1;
    c->read->handler = ngx_http_llm_sidecar_idle_handler;
    c->write->handler = ngx_http_empty_handler;

    /* an idle connection never holds up an exiting worker */
    c->read->cancelable = 1;
    ngx_add_timer(c->read, NGX_HTTP_LLM_SIDECAR_IDLE_TIMEOUT);
}


static void
ngx_http_llm_sidecar_idle_handler(ngx_event_t *ev)
{
    char               buf[1];
    ssize_t            n;
    ngx_connection_t  *c;

    c = ev->data;

    if (c->close || ev->timedout) {
        ngx_http_llm_sidecar_idle_close(c);
        return;
    }

    /* the sidecar closed it (restart, idle timeout), or spoke out of turn */

    n = recv(c->fd, buf, 1, MSG_PEEK);

    if (n == -1 && ngx_socket_errno == NGX_EAGAIN) {
        ev->ready = 0;

        if (ngx_handle_read_event(ev, 0) == NGX_OK) {
            return;
        }
    }

    ngx_http_llm_sidecar_idle_close(c);
}


static void
ngx_http_llm_sidecar_idle_close(ngx_connection_t *c)
{
    ngx_http_llm_sidecar_idle_t  *item;

    item = c->data;

    ngx_queue_remove(&item->queue);
    ngx_queue_insert_head(&ngx_http_llm_sidecar_free, &item->queue);

    ngx_close_connection(c);
}


const char *
ngx_http_llm_sidecar_strerror(ngx_int_t status)
{
    if (status == NGX_ETIMEDOUT) {
        return "timed out";
    }

    if (status == NGX_ERROR) {
        return "unreachable or not speaking HTTP";
    }

    return "answered an error status";
}


/*
 * Logs a failure of the link at most once per interval per worker, with
 * the number of failures since the last report.
 */

void
ngx_http_llm_sidecar_log_failure(ngx_http_llm_sidecar_conf_t *scf,
    ngx_uint_t level, const char *what, ngx_int_t status, const char *then)
{
    ngx_http_llm_sidecar_fail_count++;

    if (ngx_http_llm_sidecar_fail_log_at
        && (ngx_msec_int_t) (ngx_current_msec
                             - ngx_http_llm_sidecar_fail_log_at)
           < NGX_HTTP_LLM_SIDECAR_LOG_INTERVAL)
    {
        return;
    }

    ngx_http_llm_sidecar_fail_log_at = ngx_current_msec;

    if (status > 0) {
        ngx_log_error(level, ngx_cycle->log, 0,
                      "llm sidecar %V %s answered %i (%ui failures in this "
                      "worker since the last report): %s; check the "
                      "sidecar's log", &scf->addr->name, what, status,
                      ngx_http_llm_sidecar_fail_count, then);

    } else {
        ngx_log_error(level, ngx_cycle->log, 0,
                      "llm sidecar %V %s %s (%ui failures in this worker "
                      "since the last report): %s; check that llm-sidecar "
                      "runs and listens there", &scf->addr->name, what,
                      ngx_http_llm_sidecar_strerror(status),
                      ngx_http_llm_sidecar_fail_count, then);
    }

    ngx_http_llm_sidecar_fail_count = 0;
}


void
ngx_http_llm_sidecar_count(ngx_uint_t counter)
{
    if (ngx_http_llm_sidecar_sh) {
        (void) ngx_atomic_fetch_add(&ngx_http_llm_sidecar_sh->link[counter],
                                    1);
    }
}


static void
ngx_http_llm_sidecar_set_up(ngx_uint_t up)
{
    ngx_http_llm_spool_shctx_t  *sh;

    sh = ngx_http_llm_sidecar_sh;

    if (sh == NULL) {
        return;
    }

    /* every worker's exchanges tell all of them (one monotonic clock) */

    sh->up = up;
    sh->failed_at = up ? 0 : (ngx_current_msec ? ngx_current_msec : 1);
}


/*
 * Whether a route call is worth making: not within BACKOFF ms of the last
 * exchange, of any worker, if it failed; so that a dead or hung sidecar
 * costs requests nothing (they take the static route at once) instead of
 * a connect or a timeout each. The usage spool's tick keeps trying every
 * 100 ms while records wait, and its first success opens the way again.
 */

ngx_uint_t
ngx_http_llm_sidecar_available(void)
{
    ngx_msec_t  failed_at;

    if (ngx_http_llm_sidecar_sh == NULL) {
        return 1;
    }

    failed_at = (ngx_msec_t) ngx_http_llm_sidecar_sh->failed_at;

    return failed_at == 0
           || (ngx_msec_int_t) (ngx_current_msec - failed_at)
              >= NGX_HTTP_LLM_SIDECAR_BACKOFF;
}


/* the usage spool */

static ngx_int_t
ngx_http_llm_spool_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    size_t                       size;
    ngx_http_llm_spool_t        *ospool = data;
    ngx_http_llm_spool_t        *spool;
    ngx_http_llm_spool_shctx_t  *sh;

    spool = shm_zone->data;

    if (ospool) {
        /* reload with the same zone: the spooled records are kept */
        spool->sh = ospool->sh;
        spool->shpool = ospool->shpool;
        return NGX_OK;
    }

    spool->shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (shm_zone->shm.exists) {
        spool->sh = spool->shpool->data;
        return NGX_OK;
    }

    sh = ngx_slab_alloc(spool->shpool, sizeof(ngx_http_llm_spool_shctx_t));
    if (sh == NULL) {
        return NGX_ERROR;
    }

    spool->shpool->data = sh;
    spool->sh = sh;

    /*
     * the ring takes what the slab allocator can give in one piece; the
     * sizes tried first fail quietly (no "no memory" line at start)
     */

    spool->shpool->log_nomem = 0;

    for (size = shm_zone->shm.size / 8 * 7; size >= 4096; size -= 4096) {
        sh->data = ngx_slab_alloc(spool->shpool, size);

        if (sh->data) {
            sh->size = size;
            break;
        }
    }

    if (sh->data == NULL) {
        return NGX_ERROR;
    }

    return NGX_OK;
}


static void
ngx_http_llm_spool_copy(ngx_http_llm_spool_shctx_t *sh, u_char *dst,
    uint64_t off, size_t len)
{
    size_t  pos, first;

    pos = (size_t) (off % sh->size);
    first = ngx_min(len, sh->size - pos);

    ngx_memcpy(dst, sh->data + pos, first);
    ngx_memcpy(dst + first, sh->data, len - first);
}


static void
ngx_http_llm_spool_write(ngx_http_llm_spool_shctx_t *sh, uint64_t off,
    u_char *src, size_t len)
{
    size_t  pos, first;

    pos = (size_t) (off % sh->size);
    first = ngx_min(len, sh->size - pos);

    ngx_memcpy(sh->data + pos, src, first);
    ngx_memcpy(sh->data, src + first, len - first);
}


static ngx_int_t
ngx_http_llm_spool_put(ngx_http_llm_spool_t *spool, u_char *rec, size_t len)
{
    uint32_t                     n;
    uint64_t                     end;
    ngx_int_t                    rc;
    ngx_http_llm_spool_shctx_t  *sh;

    sh = spool->sh;
    n = (uint32_t) len;
    end = 0;

    ngx_shmtx_lock(&spool->shpool->mutex);

    if (sh->head - sh->tail + sizeof(uint32_t) + len > sh->size) {
        /* full: the newest record is the one dropped, never a spooled one */
        sh->dropped++;
        rc = NGX_DECLINED;

    } else {
        ngx_http_llm_spool_write(sh, sh->head, (u_char *) &n, sizeof(n));
        ngx_http_llm_spool_write(sh, sh->head + sizeof(n), rec, len);
        sh->head += sizeof(n) + len;
        sh->records++;
        end = sh->head;
        rc = NGX_OK;
    }

    ngx_shmtx_unlock(&spool->shpool->mutex);

    if (rc != NGX_OK) {
        return rc;
    }

    ngx_http_llm_spool_last = end;
    ngx_http_llm_spool_last_at = ngx_current_msec;

    /*
     * an exiting worker stops ticking once its records are delivered,
     * while its last streams may still be finishing: a record put after
     * that arms the tick again, so that the worker stays to deliver it
     */

    if (ngx_http_llm_spool_timer.handler
        && !ngx_http_llm_spool_timer.timer_set
        && !ngx_terminate)
    {
        ngx_add_timer(&ngx_http_llm_spool_timer, NGX_HTTP_LLM_SIDECAR_TICK);
    }

    return rc;
}


ngx_int_t
ngx_http_llm_sidecar_init_process(ngx_cycle_t *cycle)
{
    ngx_uint_t                    i;
    ngx_http_llm_spool_t         *spool;
    ngx_http_llm_main_conf_t     *lmcf;
    ngx_http_llm_sidecar_idle_t  *items;

    if (ngx_process != NGX_PROCESS_WORKER && ngx_process != NGX_PROCESS_SINGLE)
    {
        return NGX_OK;
    }

    lmcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_llm_module);

    if (lmcf == NULL || lmcf->sidecar.addr == NULL) {
        return NGX_OK;
    }

    spool = lmcf->sidecar.spool->data;
    ngx_http_llm_sidecar_sh = spool->sh;

    /* keepalive: a bounded pool of idle connections to the sidecar */

    if (lmcf->sidecar.keepalive) {
        items = ngx_pcalloc(cycle->pool, lmcf->sidecar.keepalive
                                         * sizeof(ngx_http_llm_sidecar_idle_t));
        if (items == NULL) {
            return NGX_ERROR;
        }

        ngx_queue_init(&ngx_http_llm_sidecar_cache);
        ngx_queue_init(&ngx_http_llm_sidecar_free);

        for (i = 0; i < lmcf->sidecar.keepalive; i++) {
            ngx_queue_insert_head(&ngx_http_llm_sidecar_free, &items[i].queue);
        }

        ngx_http_llm_sidecar_idle_log = *cycle->log;
        ngx_http_llm_sidecar_idle_log.log_level = NGX_LOG_ALERT;
    }

    ngx_http_llm_spool_timer.handler = ngx_http_llm_spool_tick;
    ngx_http_llm_spool_timer.data = lmcf;
    ngx_http_llm_spool_timer.log = cycle->log;
    /* not cancelable: an exiting worker waits for its next tick, which
     * delivers what is spooled first (see ngx_http_llm_spool_tick) */
    ngx_http_llm_spool_timer.cancelable = 0;

    /* workers start at different moments, so they tick out of step */

    ngx_add_timer(&ngx_http_llm_spool_timer, NGX_HTTP_LLM_SIDECAR_TICK);

    return NGX_OK;
}


static void
ngx_http_llm_spool_tick(ngx_event_t *ev)
{
    uint64_t                     records, tail;
    ngx_pid_t                    sender;
    ngx_msec_t                   idle_at;
    ngx_http_llm_spool_t        *spool;
    ngx_http_llm_main_conf_t    *lmcf = ev->data;
    ngx_http_llm_spool_shctx_t  *sh;

    if (ngx_terminate) {
        return;
    }

    if (ngx_exiting || ngx_quit) {

        /*
         * A graceful stop (quit, reload, the old binary of an upgrade):
         * a reload's next generation shares the zone, but a new binary or
         * a stop does not, so the worker stays until the ring's delivered
         * tail has passed the last record it spooled itself (and its own
         * batch in flight is answered), for NGX_HTTP_LLM_SIDECAR_DRAIN ms
         * at most after it went idle; not re-arming the timer lets it
         * exit. Streams still finishing put records later: the put arms
         * the timer again (ngx_http_llm_spool_put).
         */

        spool = lmcf->sidecar.spool->data;
        sh = spool->sh;

        ngx_shmtx_lock(&spool->shpool->mutex);

        records = sh->records;
        tail = sh->tail;
        sender = sh->sender;

        ngx_shmtx_unlock(&spool->shpool->mutex);

        if (ngx_http_llm_spool_exit_at == 0) {
            ngx_http_llm_spool_exit_at = ngx_current_msec ? ngx_current_msec
                                                          : 1;
        }

        idle_at = ngx_http_llm_spool_exit_at;

        if (ngx_http_llm_spool_last_at
            && (ngx_msec_int_t) (ngx_http_llm_spool_last_at - idle_at) > 0)
        {
            idle_at = ngx_http_llm_spool_last_at;
        }

        if (tail >= ngx_http_llm_spool_last && sender != ngx_pid) {
            ngx_log_debug2(NGX_LOG_DEBUG_HTTP, ev->log, 0,
                           "llm sidecar: exiting worker's records "
                           "delivered (tail %uL, own last %uL)",
                           tail, ngx_http_llm_spool_last);
            return;
        }

        if ((ngx_msec_int_t) (ngx_current_msec - idle_at)
            >= NGX_HTTP_LLM_SIDECAR_DRAIN)
        {
            ngx_log_error(NGX_LOG_WARN, ev->log, 0,
                          "llm sidecar: worker exits with %uL usage records "
                          "still in spool \"%V\": a reload's new workers "
                          "deliver them, a stop or binary upgrade loses them; "
                          "check that the sidecar runs",
                          records, &lmcf->sidecar.spool->shm.name);
            return;
        }

    }

    ngx_http_llm_spool_flush((ngx_cycle_t *) ngx_cycle, &lmcf->sidecar);

    ngx_add_timer(ev, NGX_HTTP_LLM_SIDECAR_TICK);
}


/*
 * The master exits (a stop, or the old master of a binary upgrade) after
 * its last worker: what the spool still holds is lost, since no other
 * generation maps this zone. Read without the lock: every worker is gone
 * and a crashed one may have left the mutex held.
 */

void
ngx_http_llm_sidecar_exit_master(ngx_cycle_t *cycle)
{
    ngx_http_llm_spool_t        *spool;
    ngx_http_llm_main_conf_t    *lmcf;
    ngx_http_llm_spool_shctx_t  *sh;

    lmcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_llm_module);

    if (lmcf == NULL || lmcf->sidecar.addr == NULL
        || lmcf->sidecar.spool == NULL)
    {
        return;
    }

    spool = lmcf->sidecar.spool->data;
    sh = spool ? spool->sh : NULL;

    if (sh == NULL) {
        return;
    }

    if (sh->records == 0) {
        ngx_log_error(NGX_LOG_NOTICE, cycle->log, 0,
                      "llm sidecar spool \"%V\" empty at exit: %uL usage "
                      "records delivered, %uL dropped",
                      &lmcf->sidecar.spool->shm.name, sh->delivered,
                      sh->dropped);
        return;
    }

    ngx_log_error(NGX_LOG_WARN, cycle->log, 0,
                  "llm sidecar spool \"%V\": %uL usage records lost at "
                  "exit (%uL delivered, %uL dropped before): the sidecar "
                  "did not take them in time; check that it runs and "
                  "answers within llm_sidecar timeout=",
                  &lmcf->sidecar.spool->shm.name, sh->records,
                  sh->delivered, sh->dropped);
}


/*
 * Takes the oldest records into one POST /v1/usage. One batch is in
 * flight at a time across the workers (the zone says who sends); the
 * records leave the spool only when the sidecar acknowledged them.
 */

static void
ngx_http_llm_spool_flush(ngx_cycle_t *cycle, ngx_http_llm_sidecar_conf_t *scf)
{
    u_char                       *p;
    size_t                        len, size;
    uint32_t                      n;
    uint64_t                      off, dropped;
    ngx_buf_t                    *out;
    ngx_uint_t                    records;
    ngx_http_llm_spool_t         *spool;
    ngx_http_llm_spool_batch_t   *batch;
    ngx_http_llm_spool_shctx_t   *sh;
    ngx_http_llm_sidecar_call_t  *call;

    spool = scf->spool->data;
    sh = spool->sh;

    ngx_shmtx_lock(&spool->shpool->mutex);

    dropped = 0;

    if (sh->dropped != sh->dropped_logged
        && (ngx_msec_int_t) (ngx_current_msec - sh->drop_log_at)
           >= NGX_HTTP_LLM_SIDECAR_LOG_INTERVAL)
    {
        dropped = sh->dropped - sh->dropped_logged;
        sh->dropped_logged = sh->dropped;
        sh->drop_log_at = ngx_current_msec;
    }

    if (sh->records == 0
        || (sh->sender
            && (ngx_msec_int_t) (ngx_current_msec - sh->sent_at)
               < (ngx_msec_int_t) (2 * scf->timeout + 1000)))
    {
        ngx_shmtx_unlock(&spool->shpool->mutex);
        goto log;
    }

    if (ngx_http_llm_spool_out_busy) {
        /* this worker's last batch is still being answered */
        ngx_shmtx_unlock(&spool->shpool->mutex);
        goto log;
    }

    /* the batch's size first */

    off = sh->tail;
    records = 0;

    while (off < sh->head && records < scf->batch) {
        ngx_http_llm_spool_copy(sh, (u_char *) &n, off, sizeof(n));

        if (records && off + sizeof(n) + n - sh->tail
                       > NGX_HTTP_LLM_SIDECAR_BATCH_BYTES)
        {
            break;
        }

        off += sizeof(n) + n;
        records++;
    }

    /* the records without their lengths, a comma after each, the frame */

    len = off - sh->tail - records * sizeof(n) + records
          + sizeof("{\"records\":[}") - 1;

    size = sizeof("POST /v1/usage HTTP/1.1" CRLF "Host: llm-sidecar" CRLF
                  "Content-Type: application/json" CRLF
                  "Content-Length: " CRLF CRLF) - 1
           + NGX_SIZE_T_LEN + len;

    if (size > ngx_http_llm_spool_out_size) {
        size = ngx_max(size, NGX_HTTP_LLM_SIDECAR_BATCH_BYTES + 4096);
        p = ngx_alloc(size, cycle->log);

        if (p == NULL) {
            ngx_shmtx_unlock(&spool->shpool->mutex);
            return;
        }

        if (ngx_http_llm_spool_out) {
            ngx_free(ngx_http_llm_spool_out);
        }

        ngx_http_llm_spool_out = p;
        ngx_http_llm_spool_out_size = size;
    }

    batch = ngx_calloc(sizeof(ngx_http_llm_spool_batch_t), cycle->log);

    if (batch == NULL) {
        ngx_shmtx_unlock(&spool->shpool->mutex);
        return;
    }

    p = ngx_http_llm_sidecar_head(ngx_http_llm_spool_out, "/v1/usage", len);
    p = ngx_cpymem(p, "{\"records\":[", 12);

    for (off = sh->tail; off < sh->head && records; records--) {
        ngx_http_llm_spool_copy(sh, (u_char *) &n, off, sizeof(n));
        ngx_http_llm_spool_copy(sh, p, off + sizeof(n), n);
        p += n;
        *p++ = ',';
        off += sizeof(n) + n;
        batch->records++;
    }

    p[-1] = ']';
    *p++ = '}';

    batch->spool = spool;
    batch->seq = ++sh->seq;
    batch->start = sh->tail;
    batch->bytes = off - sh->tail;

    sh->sender = ngx_pid;
    sh->sent_at = ngx_current_msec;

    ngx_shmtx_unlock(&spool->shpool->mutex);

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, cycle->log, 0,
                   "llm sidecar: usage batch of %ui records, %uz bytes",
                   batch->records, len);

    ngx_http_llm_sidecar_count(NGX_HTTP_LLM_LINK_USAGE_CALL);

    ngx_http_llm_spool_out_busy = 1;

    call = ngx_http_llm_sidecar_call_create(scf->timeout,
                                            ngx_http_llm_spool_done, batch);
    out = call ? ngx_calloc_buf(call->pool) : NULL;

    if (out == NULL) {
        if (call) {
            ngx_destroy_pool(call->pool);
        }

        ngx_http_llm_spool_done(batch, NGX_ERROR, NULL);
        goto log;
    }

    out->start = ngx_http_llm_spool_out;
    out->pos = out->start;
    out->last = p;
    out->end = out->start + ngx_http_llm_spool_out_size;
    out->temporary = 1;

    if (ngx_http_llm_sidecar_call_start(call, scf->addr, out) == NULL) {
        ngx_http_llm_spool_done(batch, NGX_ERROR, NULL);
    }

log:

    if (dropped) {
        ngx_log_error(NGX_LOG_ERR, cycle->log, 0,
                      "llm sidecar spool \"%V\" full: %uL usage records "
                      "dropped since the last report (%uL in all); "
                      "increase the spool size or check the sidecar",
                      &scf->spool->shm.name, dropped, sh->dropped);
    }
}


static void
ngx_http_llm_spool_done(void *data, ngx_int_t status, ngx_str_t *body)
{
    ngx_http_llm_spool_batch_t  *batch = data;

    ngx_http_llm_spool_out_busy = 0;

    ngx_http_llm_spool_report(batch, status, body);
    ngx_free(batch);
}


static void
ngx_http_llm_spool_report(ngx_http_llm_spool_batch_t *batch, ngx_int_t status,
    ngx_str_t *body)
{
    ngx_uint_t                    ack;
    ngx_http_llm_spool_t         *spool;
    ngx_http_llm_main_conf_t     *lmcf;
    ngx_http_llm_spool_shctx_t   *sh;

    lmcf = ngx_http_cycle_get_module_main_conf(ngx_cycle, ngx_http_llm_module);

    /*
     * 2xx: delivered (records the sidecar rejected as invalid are in its
     * answer and log, and must not be retried); another 4xx but 408 / 429:
     * the batch can never succeed and would block the spool: dropped and
     * counted; anything else: kept for the next tick
     */

    ack = (status >= 200 && status < 300)
          || (status >= 400 && status < 500 && status != 408
              && status != 429);

    spool = batch->spool;
    sh = spool->sh;

    ngx_shmtx_lock(&spool->shpool->mutex);

    if (sh->seq == batch->seq && sh->sender == ngx_pid) {
        sh->sender = 0;

        if (ack && sh->tail == batch->start) {
            sh->tail += batch->bytes;
            sh->records -= batch->records;

            if (status < 300) {
                sh->delivered += batch->records;

            } else {
                sh->dropped += batch->records;
            }
        }
    }

    ngx_shmtx_unlock(&spool->shpool->mutex);

    if (status < 200 || status >= 300) {
        ngx_http_llm_sidecar_count(NGX_HTTP_LLM_LINK_USAGE_ERROR);
    }

    if (status >= 200 && status < 300) {
        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                       "llm sidecar: usage batch of %ui records delivered",
                       batch->records);

        /*
         * a full batch waiting goes now, not at the next tick, so delivery
         * keeps up with the request rate (one batch per tick would cap it
         * at batch x 10 records/s); less waits for the tick, so that
         * batches stay large and the sidecar is woken up less often
         */

        if (lmcf && sh->records >= lmcf->sidecar.batch && !ngx_terminate) {
            ngx_http_llm_spool_flush((ngx_cycle_t *) ngx_cycle,
                                     &lmcf->sidecar);
        }

        if (body && body->len
            && ngx_strlcasestrn(body->data, body->data + body->len,
                                (u_char *) "\"rejected\":0", 11)
               == NULL)
        {
            ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                          "llm sidecar rejected usage records: %V",
                          body);
        }

        return;
    }

    if (lmcf && ack) {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "llm sidecar refused a usage batch of %ui records "
                      "with %i, dropped: %V", batch->records, status,
                      body ? body : &lmcf->sidecar.addr->name);
        return;
    }

    if (lmcf) {
        ngx_http_llm_sidecar_log_failure(&lmcf->sidecar, NGX_LOG_WARN,
                                         "usage delivery",
                                         status,
                                         "records stay spooled and are "
                                         "retried");
    }
}


/*
 * the usage record is built with these instead of ngx_slprintf(): the
 * format parsing of a dozen calls was a visible part of a request's cost
 * (perf, bench/route.sh); like ngx_slprintf(), they return last when the
 * text does not fit
 */

#define ngx_http_llm_sidecar_lit(p, last, s)                                 \
    ngx_http_llm_sidecar_cpy(p, last, s, sizeof(s) - 1)


static u_char *
ngx_http_llm_sidecar_cpy(u_char *p, u_char *last, const char *s, size_t len)
{
    if (len > (size_t) (last - p)) {
        return last;
    }

    return ngx_cpymem(p, s, len);
}


static u_char *
ngx_http_llm_sidecar_int(u_char *p, u_char *last, int64_t n)
{
    u_char    *d;
    size_t     len;
    uint64_t   v;
    u_char     tmp[NGX_INT64_LEN + 1];

    d = tmp + sizeof(tmp);
    v = n < 0 ? (uint64_t) -(n + 1) + 1 : (uint64_t) n;

    do {
        *--d = (u_char) ('0' + v % 10);
        v /= 10;
    } while (v);

    if (n < 0) {
        *--d = '-';
    }

    len = tmp + sizeof(tmp) - d;

    if (len > (size_t) (last - p)) {
        return last;
    }

    /* a few bytes: a loop, not a memcpy() call */

    while (d < tmp + sizeof(tmp)) {
        *p++ = *d++;
    }

    return p;
}


/* the usage record of one request, from its ctx */

void
ngx_http_llm_sidecar_record(ngx_http_request_t *r)
{
    u_char                      *p, *last;
    ngx_str_t                    s, empty;
    ngx_msec_t                   ttft, duration;
    ngx_http_llm_ctx_t          *ctx;
    ngx_http_llm_usage_t        *u;
    ngx_http_variable_value_t   *vv;
    ngx_http_llm_main_conf_t    *lmcf;
    ngx_http_llm_sidecar_conf_t *scf;
    const char                  *tier;
    u_char                       buf[NGX_HTTP_LLM_SIDECAR_RECORD_MAX];

    static const char  *sources[] = { "none", "upstream", "estimated", "none" };

    lmcf = ngx_http_get_module_main_conf(r, ngx_http_llm_module);
    scf = &lmcf->sidecar;

    if (scf->addr == NULL) {
        return;
    }

    ctx = ngx_http_llm_get_ctx(r);

    if (ctx == NULL || !ctx->inspected) {
        /* bodies the gateway could not understand carry no model */
        return;
    }

    if (ngx_http_llm_link_ctx(r) == NULL) {
        return;
    }

    ngx_str_null(&empty);
    u = &ctx->usage;
    p = buf;
    last = buf + sizeof(buf) - 1;

    p = ngx_http_llm_sidecar_lit(p, last, "{\"request_id\":");

    vv = ngx_http_get_indexed_variable(r, scf->request_id_index);

    if (vv == NULL || vv->not_found) {
        return;
    }

    s.data = vv->data;
    s.len = vv->len;
    p = ngx_http_llm_sidecar_json_str(p, last, &s);

    p = ngx_http_llm_sidecar_lit(p, last, ",\"key_hash\":");
    p = ngx_http_llm_sidecar_json_str(p, last, &ctx->key_hash);

    p = ngx_http_llm_sidecar_lit(p, last, ",\"team\":");
    p = ngx_http_llm_sidecar_json_str(p, last,
                                      ctx->link ? &ctx->link->team : &empty);

    p = ngx_http_llm_sidecar_lit(p, last, ",\"model\":");
    p = ngx_http_llm_sidecar_json_str(p, last, &ctx->model);

    p = ngx_http_llm_sidecar_lit(p, last, ",\"served_model\":");
    p = ngx_http_llm_sidecar_json_str(p, last,
                                      ctx->link && ctx->link->served_model.len
                                      ? &ctx->link->served_model
                                      : &ctx->model);

    p = ngx_http_llm_sidecar_lit(p, last, ",\"upstream\":");

    if (ctx->link && ctx->link->upstream.len
        && ctx->fb.tier == NGX_HTTP_LLM_TIER_PRIMARY)
    {
        /* the decision's group; after a fallback, the address used */
        s = ctx->link->upstream;

    } else {
        vv = ngx_http_get_indexed_variable(r, scf->upstream_addr_index);
        s.data = vv && !vv->not_found ? vv->data : NULL;
        s.len = vv && !vv->not_found ? vv->len : 0;
    }

    p = ngx_http_llm_sidecar_json_str(p, last, &s);

    vv = ngx_http_get_indexed_variable(r, scf->cache_status_index);
    s.data = vv && !vv->not_found ? vv->data : NULL;
    s.len = vv && !vv->not_found ? vv->len : 0;

    ttft = ctx->ttft ? ctx->ttft - ctx->start : 0;
    duration = ctx->end - ctx->start;

    p = ngx_http_llm_sidecar_lit(p, last, ",\"prompt_tokens\":");
    p = ngx_http_llm_sidecar_int(p, last, ngx_max(u->prompt_tokens, 0));
    p = ngx_http_llm_sidecar_lit(p, last, ",\"cached_tokens\":");
    p = ngx_http_llm_sidecar_int(p, last, ngx_max(u->cached_tokens, 0));
    p = ngx_http_llm_sidecar_lit(p, last, ",\"cache_write_tokens\":");
    p = ngx_http_llm_sidecar_int(p, last, ngx_max(u->cache_write_tokens, 0));
    p = ngx_http_llm_sidecar_lit(p, last, ",\"completion_tokens\":");
    p = ngx_http_llm_sidecar_int(p, last, ngx_max(u->completion_tokens, 0));
    p = ngx_http_llm_sidecar_lit(p, last, ",\"reasoning_tokens\":");
    p = ngx_http_llm_sidecar_int(p, last, ngx_max(u->reasoning_tokens, 0));
    p = ngx_http_llm_sidecar_lit(p, last, ",\"usage_source\":\"");
    p = ngx_http_llm_sidecar_cpy(p, last, sources[ctx->usage_source],
                                 ngx_strlen(sources[ctx->usage_source]));
    p = ngx_http_llm_sidecar_lit(p, last, "\",\"status\":");
    p = ngx_http_llm_sidecar_int(p, last,
                                 r->headers_out.status
                                 ? (int64_t) r->headers_out.status
                                 : (r->connection->error ? 499 : 0));
    p = ngx_http_llm_sidecar_lit(p, last, ",\"ttft_ms\":");
    p = ngx_http_llm_sidecar_int(p, last, (int64_t) ttft);
    p = ngx_http_llm_sidecar_lit(p, last, ",\"duration_ms\":");
    p = ngx_http_llm_sidecar_int(p, last, (int64_t) duration);
    p = ngx_http_llm_sidecar_lit(p, last, ",\"cache_status\":");

    p = ngx_http_llm_sidecar_json_str(p, last, &s);

    tier = ngx_http_llm_fallback_tier_name(ctx);
    p = ngx_http_llm_sidecar_lit(p, last, ",\"tier\":\"");
    p = ngx_http_llm_sidecar_cpy(p, last, tier, ngx_strlen(tier));

    p = ngx_http_llm_sidecar_lit(p, last, "\",\"ts\":");
    p = ngx_http_llm_sidecar_int(p, last,
                                 (int64_t) r->start_sec * 1000
                                 + r->start_msec);
    p = ngx_http_llm_sidecar_lit(p, last, "}");

    if (p == last) {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "llm usage record longer than %d bytes not spooled: "
                      "shorten llm_team", NGX_HTTP_LLM_SIDECAR_RECORD_MAX);
        return;
    }

    (void) ngx_http_llm_spool_put(scf->spool->data, buf, p - buf);
}


/*
 * llm_metrics: the usage spool of this node and the link's counters.
 * Capacity is in bytes because records differ in length; the alert rules
 * use the byte ratio.
 */

static ngx_http_llm_metrics_family_t  ngx_http_llm_spool_families[] = {
    { "llm_usage_spool_records", "gauge",
      "Usage records waiting in the spool for the sidecar." },
    { "llm_usage_spool_bytes", "gauge", "Bytes of the spool in use." },
    { "llm_usage_spool_capacity_bytes", "gauge", "Size of the spool ring." },
    { "llm_usage_spool_dropped_total", "counter",
      "Usage records dropped because the spool was full." },
    { "llm_usage_delivered_records_total", "counter",
      "Usage records the sidecar acknowledged." }
};


static ngx_http_llm_metrics_family_t  ngx_http_llm_link_families[] = {
    { "llm_sidecar_up", "gauge",
      "Whether the last exchange with the sidecar got an answer (1) "
      "or failed (0)." },
    { "llm_sidecar_calls_total", "counter",
      "Calls to the sidecar by endpoint." },
    { "llm_sidecar_errors_total", "counter",
      "Calls to the sidecar that failed: unreachable, timed out, garbled "
      "or an error status." },
    { "llm_sidecar_connections_total", "counter",
      "Connections to the sidecar opened and idle ones reused (keepalive)." },
    { "llm_route_decisions_total", "counter",
      "Route decisions applied, by source: a fresh sidecar answer, the "
      "decision cache, or the static route (fallback) when the sidecar "
      "failed." }
};


typedef struct {
    ngx_uint_t                    family;
    const char                   *labels;
    ngx_uint_t                    counter;
} ngx_http_llm_link_series_t;


static ngx_http_llm_link_series_t  ngx_http_llm_link_series[] = {
    { 1, "call=\"route\"", NGX_HTTP_LLM_LINK_ROUTE_CALL },
    { 1, "call=\"usage\"", NGX_HTTP_LLM_LINK_USAGE_CALL },
    { 2, "call=\"route\"", NGX_HTTP_LLM_LINK_ROUTE_ERROR },
    { 2, "call=\"usage\"", NGX_HTTP_LLM_LINK_USAGE_ERROR },
    { 3, "kind=\"opened\"", NGX_HTTP_LLM_LINK_CONNECT },
    { 3, "kind=\"reused\"", NGX_HTTP_LLM_LINK_REUSE },
    { 4, "source=\"sidecar\"", NGX_HTTP_LLM_LINK_DECISION_SIDECAR },
    { 4, "source=\"cache\"", NGX_HTTP_LLM_LINK_DECISION_CACHE },
    { 4, "source=\"fallback\"", NGX_HTTP_LLM_LINK_DECISION_FALLBACK }
};


ngx_chain_t **
ngx_http_llm_sidecar_metrics(ngx_http_request_t *r, ngx_chain_t **ll,
    off_t *len)
{
    u_char                       *p;
    uint64_t                      v[5];
    ngx_buf_t                    *b;
    ngx_str_t                    *zone;
    ngx_uint_t                    f, i, n;
    ngx_atomic_uint_t             link[NGX_HTTP_LLM_LINK_COUNTERS];
    ngx_http_llm_spool_t         *spool;
    ngx_http_llm_main_conf_t     *lmcf;
    ngx_http_llm_spool_shctx_t   *sh;
    ngx_http_llm_sidecar_conf_t  *scf;

    lmcf = ngx_http_get_module_main_conf(r, ngx_http_llm_module);
    scf = &lmcf->sidecar;

    if (scf->addr == NULL || scf->spool == NULL) {
        return ll;
    }

    spool = scf->spool->data;
    sh = spool->sh;

    if (sh == NULL) {
        return ll;
    }

    ngx_shmtx_lock(&spool->shpool->mutex);

    v[0] = sh->records;
    v[1] = sh->head - sh->tail;
    v[2] = sh->size;
    v[3] = sh->dropped;
    v[4] = sh->delivered;

    ngx_shmtx_unlock(&spool->shpool->mutex);

    for (i = 0; i < NGX_HTTP_LLM_LINK_COUNTERS; i++) {
        link[i] = sh->link[i];
    }

    zone = &scf->spool->shm.name;

    n = sizeof(ngx_http_llm_spool_families)
        / sizeof(ngx_http_llm_metrics_family_t);

    b = ngx_create_temp_buf(r->pool, n * (256 + zone->len + NGX_INT64_LEN)
                                     + 4096);
    if (b == NULL) {
        return NULL;
    }

    p = b->last;

    for (f = 0; f < n; f++) {
        p = ngx_http_llm_metrics_family(p, &ngx_http_llm_spool_families[f]);
        p = ngx_sprintf(p, "%s{zone=\"%V\"} %uL\n",
                        ngx_http_llm_spool_families[f].name, zone, v[f]);
    }

    p = ngx_http_llm_metrics_family(p, &ngx_http_llm_link_families[0]);
    p = ngx_sprintf(p, "llm_sidecar_up %ui\n", (ngx_uint_t) (sh->up ? 1 : 0));

    n = sizeof(ngx_http_llm_link_series) / sizeof(ngx_http_llm_link_series_t);

    for (i = 0; i < n; i++) {
        f = ngx_http_llm_link_series[i].family;

        if (i == 0 || f != ngx_http_llm_link_series[i - 1].family) {
            p = ngx_http_llm_metrics_family(p, &ngx_http_llm_link_families[f]);
        }

        p = ngx_sprintf(p, "%s{%s} %uA\n",
                        ngx_http_llm_link_families[f].name,
                        ngx_http_llm_link_series[i].labels,
                        link[ngx_http_llm_link_series[i].counter]);
    }

    b->last = p;

    return ngx_http_llm_metrics_append(r, ll, b, len);
}


u_char *
ngx_http_llm_sidecar_json_str(u_char *p, u_char *last, ngx_str_t *s)
{
    u_char         c;
    size_t         n;
    const u_char  *q, *run, *end;

    static u_char  hex[] = "0123456789abcdef";

    if (p + 2 > last) {
        return last;
    }

    *p++ = '"';

    if (s->len == 0) {
        /* an unset string has no data to point into */
        *p++ = '"';
        return p;
    }

    q = s->data;
    end = q + s->len;

    for ( ;; ) {

        /* a run of bytes that go as they are, copied at once */

        run = q;

#if defined(__SSE2__)
        /* 16 bytes at a time while none needs a look */

        while (end - q >= 16
               && ngx_http_llm_json_mask(_mm_loadu_si128((const __m128i *) q))
                  == 0)
        {
            q += 16;
        }
#endif

        while (q < end && *q >= 0x20 && *q != '"' && *q != '\\') {
            q++;
        }

        n = q - run;

        if (n + 2 > (size_t) (last - p)) {
            return last;
        }

        p = ngx_cpymem(p, run, n);

        if (q == end) {
            break;
        }

        c = *q++;

        if (p + 7 > last) {
            return last;
        }

        if (c == '"' || c == '\\') {
            *p++ = '\\';
            *p++ = c;

        } else {
            p = ngx_cpymem(p, "\\u00", 4);
            *p++ = hex[c >> 4];
            *p++ = hex[c & 0xf];
        }
    }

    *p++ = '"';

    return p;
}


/* configuration */

/*
 * llm_sidecar unix:/path [timeout=200ms] [fail=open|closed]
 *             [spool=name:size] [decisions=name:size] [batch=N]
 *             [keepalive=N];
 */

char *
ngx_http_llm_sidecar_directive(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_llm_main_conf_t  *lmcf = conf;

    ngx_str_t                    *value, name;
    ngx_url_t                     u;
    ngx_int_t                     n;
    ngx_uint_t                    i;
    ngx_http_llm_sidecar_conf_t  *scf;

    scf = &lmcf->sidecar;

    if (scf->addr) {
        return "is duplicate";
    }

    value = cf->args->elts;

    ngx_memzero(&u, sizeof(ngx_url_t));
    u.url = value[1];
    u.no_resolve = 1;

    if (ngx_parse_url(cf->pool, &u) != NGX_OK || u.naddrs == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid llm_sidecar address \"%V\"%s%s",
                           &value[1], u.err ? ": " : "",
                           u.err ? u.err : "");
        return NGX_CONF_ERROR;
    }

    if (u.family != AF_UNIX
        && !(u.family == AF_INET
             && ((struct sockaddr_in *) u.addrs[0].sockaddr)->sin_addr.s_addr
                == htonl(INADDR_LOOPBACK)))
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "llm_sidecar \"%V\" must be a unix socket "
                           "(\"unix:/path\") or 127.0.0.1:port", &value[1]);
        return NGX_CONF_ERROR;
    }

    scf->addr = &u.addrs[0];
    scf->timeout = 200;
    scf->batch = 500;
    scf->keepalive = 8;

    for (i = 2; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "timeout=", 8) == 0) {
            name.data = value[i].data + 8;
            name.len = value[i].len - 8;
            scf->timeout = ngx_parse_time(&name, 0);

            if (scf->timeout == (ngx_msec_t) NGX_ERROR || scf->timeout == 0) {
                goto invalid;
            }

            continue;
        }

        if (ngx_strcmp(value[i].data, "fail=open") == 0) {
            scf->fail_closed = 0;
            continue;
        }

        if (ngx_strcmp(value[i].data, "fail=closed") == 0) {
            scf->fail_closed = 1;
            continue;
        }

        if (ngx_strncmp(value[i].data, "batch=", 6) == 0) {
            n = ngx_atoi(value[i].data + 6, value[i].len - 6);

            if (n < 1 || n > 10000) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "llm_sidecar \"%V\": batch must be "
                                   "between 1 and 10000", &value[i]);
                return NGX_CONF_ERROR;
            }

            scf->batch = n;
            continue;
        }

        if (ngx_strncmp(value[i].data, "keepalive=", 10) == 0) {
            n = ngx_atoi(value[i].data + 10, value[i].len - 10);

            if (n == NGX_ERROR || n > 1024) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "llm_sidecar \"%V\": keepalive must be "
                                   "between 0 and 1024", &value[i]);
                return NGX_CONF_ERROR;
            }

            scf->keepalive = n;
            continue;
        }

        if (ngx_strncmp(value[i].data, "spool=", 6) == 0) {
            if (ngx_http_llm_sidecar_zone(cf, &value[i], "spool",
                                          &scf->spool,
                                          ngx_http_llm_spool_init_zone)
                != NGX_CONF_OK)
            {
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "decisions=", 10) == 0) {
            if (ngx_http_llm_sidecar_zone(cf, &value[i], "decisions",
                                          &scf->decisions,
                                          ngx_http_llm_route_init_zone)
                != NGX_CONF_OK)
            {
                return NGX_CONF_ERROR;
            }

            continue;
        }

        goto invalid;
    }

    if (scf->spool == NULL) {
        ngx_str_set(&name, "spool=llm_spool:1m");

        if (ngx_http_llm_sidecar_zone(cf, &name, "spool", &scf->spool,
                                      ngx_http_llm_spool_init_zone)
            != NGX_CONF_OK)
        {
            return NGX_CONF_ERROR;
        }
    }

    if (scf->decisions == NULL) {
        ngx_str_set(&name, "decisions=llm_decisions:1m");

        if (ngx_http_llm_sidecar_zone(cf, &name, "decisions",
                                      &scf->decisions,
                                      ngx_http_llm_route_init_zone)
            != NGX_CONF_OK)
        {
            return NGX_CONF_ERROR;
        }
    }

    ngx_str_set(&name, "llm_request_id");
    scf->request_id_index = ngx_http_get_variable_index(cf, &name);

    ngx_str_set(&name, "upstream_addr");
    scf->upstream_addr_index = ngx_http_get_variable_index(cf, &name);

    ngx_str_set(&name, "llm_cache_status");
    scf->cache_status_index = ngx_http_get_variable_index(cf, &name);

    if (scf->request_id_index == NGX_ERROR
        || scf->upstream_addr_index == NGX_ERROR
        || scf->cache_status_index == NGX_ERROR)
    {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid llm_sidecar parameter \"%V\"; expected "
                       "timeout=TIME, fail=open|closed, spool=NAME:SIZE, "
                       "decisions=NAME:SIZE, batch=N or keepalive=N",
                       &value[i]);
    return NGX_CONF_ERROR;
}


static char *
ngx_http_llm_sidecar_zone(ngx_conf_t *cf, ngx_str_t *value,
    const char *param, ngx_shm_zone_t **zone, ngx_shm_zone_init_pt init)
{
    u_char     *p;
    ssize_t     size;
    ngx_str_t   name, s;
    void       *data;

    name.data = value->data + ngx_strlen(param) + 1;
    name.len = value->len - ngx_strlen(param) - 1;

    p = (u_char *) ngx_strlchr(name.data, name.data + name.len, ':');

    if (p == NULL || p == name.data) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "llm_sidecar \"%V\": %s must be NAME:SIZE",
                           value, param);
        return NGX_CONF_ERROR;
    }

    s.data = p + 1;
    s.len = name.data + name.len - s.data;
    name.len = p - name.data;

    size = ngx_parse_size(&s);

    if (size == NGX_ERROR || size < (ssize_t) (8 * ngx_pagesize)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "llm_sidecar \"%V\": %s size must be at least "
                           "%uzk", value, param, 8 * ngx_pagesize / 1024);
        return NGX_CONF_ERROR;
    }

    if (init == ngx_http_llm_spool_init_zone) {
        data = ngx_pcalloc(cf->pool, sizeof(ngx_http_llm_spool_t));

    } else {
        data = ngx_http_llm_route_zone_data(cf);
    }

    if (data == NULL) {
        return NGX_CONF_ERROR;
    }

    *zone = ngx_shared_memory_add(cf, &name, size, &ngx_http_llm_module);
    if (*zone == NULL) {
        return NGX_CONF_ERROR;
    }

    if ((*zone)->data) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "llm_sidecar: zone \"%V\" is already used",
                           &name);
        return NGX_CONF_ERROR;
    }

    (*zone)->init = init;
    (*zone)->data = data;

    return NGX_CONF_OK;
}
