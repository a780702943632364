
/*
 * Copyright (C) ngx_llm authors
 *
 * llm_retry: a streamed answer that fails before its first token is tried
 * again on the next upstream server, nothing is tried again once a token
 * went to the client.
 *
 * nginx's upstream module can retry a request only while the response
 * header has not been sent to the client. vLLM, SGLang and the hosted APIs
 * send "200 text/event-stream" at once and fail later, in the body: an
 * error event, a closed connection, or no token at all. So for such a
 * response the header is held: the proxy's process_header callback is
 * wrapped, and once the proxy has parsed a 200 SSE header the wrapper keeps
 * answering NGX_AGAIN, so that nginx keeps reading the body into the header
 * buffer (u->buffer), where the events are framed (dechunked when chunked)
 * by the project's SSE scanner, untouched:
 *
 *   - the first content event (or the end of a complete stream): NGX_OK,
 *     nginx sends the header and the held bytes as they came, then streams
 *     as it always does;
 *   - an error event: NGX_HTTP_UPSTREAM_INVALID_HEADER, nginx's
 *     next-upstream path (proxy_next_upstream invalid_header);
 *   - the upstream closes: nginx's own "prematurely closed" path (error);
 *   - llm_first_token_timeout: the upstream read event is timed out, nginx's
 *     own timeout path (timeout).
 *
 * Every retry is thus nginx's: proxy_next_upstream (with non_idempotent,
 * a POST is never retried otherwise), proxy_next_upstream_tries and
 * _timeout, max_fails / fail_timeout and llm_balance see each failed try.
 * reinit_request is wrapped to count the retry and reset the held state,
 * finalize_request to log a retry that gave up.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_llm_module.h"


/* the scanner's verdict on the held bytes */
#define NGX_HTTP_LLM_RETRY_HOLD         0
#define NGX_HTTP_LLM_RETRY_RELEASE      1
#define NGX_HTTP_LLM_RETRY_FAIL         2


extern ngx_module_t  ngx_http_proxy_module;


static ngx_int_t ngx_http_llm_retry_content_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_llm_retry_process_header(ngx_http_request_t *r);
static ngx_int_t ngx_http_llm_retry_scan(ngx_http_request_t *r,
    ngx_http_llm_retry_t *rs, ngx_http_upstream_t *u);
static ngx_int_t ngx_http_llm_retry_reinit_request(ngx_http_request_t *r);
static void ngx_http_llm_retry_finalize_request(ngx_http_request_t *r,
    ngx_int_t rc);
static void ngx_http_llm_retry_reset(ngx_http_llm_retry_t *rs);
static void ngx_http_llm_retry_timer(ngx_event_t *ev);
static void ngx_http_llm_retry_cleanup(void *data);
static ngx_uint_t ngx_http_llm_retry_tries(ngx_http_request_t *r,
    ngx_http_llm_retry_t *rs);
static ngx_http_upstream_state_t *ngx_http_llm_retry_state(
    ngx_http_request_t *r, ngx_http_llm_retry_t *rs, ngx_uint_t last);
static ngx_uint_t ngx_http_llm_retry_why(ngx_http_llm_retry_t *rs,
    ngx_http_upstream_state_t *state);
static int ngx_http_llm_retry_event(ngx_http_llm_sse_t *sse,
    const u_char *name, size_t name_len, const u_char *data, size_t len,
    uint64_t start, uint64_t end);
static u_char *ngx_http_llm_retry_grow(ngx_http_llm_sse_t *sse, size_t size);


const char  *ngx_http_llm_retry_reasons[] = {
    "error_event", "eof", "first_token_timeout", "status", "error"
};

/* the peer a log line names when the try's state has none */
static ngx_str_t  ngx_http_llm_retry_unknown = ngx_string("the upstream");


/* configuration */

char *
ngx_http_llm_retry_directive(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    char                     *rv;
    ngx_http_llm_loc_conf_t  *llcf = conf;

    rv = ngx_conf_set_flag_slot(cf, cmd, conf);

    if (rv == NGX_CONF_OK) {
        /* where the check of ngx_http_llm_retry_merge_conf() points */
        llcf->retry.file = cf->conf_file->file.name;
        llcf->retry.line = cf->conf_file->line;
    }

    return rv;
}


void
ngx_http_llm_retry_create_conf(ngx_http_llm_retry_conf_t *conf)
{
    conf->enable = NGX_CONF_UNSET;
    conf->first_token_timeout = NGX_CONF_UNSET_MSEC;
}


char *
ngx_http_llm_retry_merge_conf(ngx_conf_t *cf, ngx_http_llm_retry_conf_t *prev,
    ngx_http_llm_retry_conf_t *conf)
{
    u_char                    *p, buf[128];
    ngx_uint_t                 mask;
    ngx_conf_file_t           *saved, at;
    ngx_http_upstream_conf_t  *ucf;
    ngx_http_core_loc_conf_t  *clcf;

    ngx_conf_merge_value(conf->enable, prev->enable, 0);
    ngx_conf_merge_msec_value(conf->first_token_timeout,
                              prev->first_token_timeout, 0);

    if (conf->file.data == NULL) {
        conf->file = prev->file;
        conf->line = prev->line;
    }

    if (!conf->enable) {
        return NGX_CONF_OK;
    }

    /*
     * the proxy's configuration starts with its ngx_http_upstream_conf_t;
     * the proxy module has merged it already (it comes before this one)
     */

    ucf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_proxy_module);
    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    if (ucf == NULL || ucf->upstream == NULL || clcf->handler == NULL) {
        /* no proxy_pass to a fixed upstream here: checked at run time */
        return NGX_CONF_OK;
    }

    mask = ucf->next_upstream;

    saved = cf->conf_file;

    if (conf->file.data) {
        /* the messages point at the llm_retry directive */
        at = *saved;
        at.file.name = conf->file;
        at.line = conf->line;
        cf->conf_file = &at;
    }

    if ((mask & NGX_HTTP_UPSTREAM_FT_OFF)
        || !(mask & NGX_HTTP_UPSTREAM_FT_NON_IDEMPOTENT))
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"llm_retry on\" needs \"non_idempotent\" in "
                           "\"proxy_next_upstream\" of location \"%V\": "
                           "nginx never sends a POST to the next server "
                           "without it", &clcf->name);
        cf->conf_file = saved;
        return NGX_CONF_ERROR;
    }

    if (!ucf->request_buffering) {
        /* nginx does not retry a request whose body it streamed */
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"llm_retry on\" cannot retry with "
                           "\"proxy_request_buffering off\" in location "
                           "\"%V\"", &clcf->name);
        cf->conf_file = saved;
        return NGX_CONF_ERROR;
    }

    p = buf;

    if (!(mask & NGX_HTTP_UPSTREAM_FT_ERROR)) {
        p = ngx_cpymem(p, " error (closed streams)", 23);
    }

    if (!(mask & NGX_HTTP_UPSTREAM_FT_TIMEOUT)) {
        p = ngx_cpymem(p, " timeout (first token timeouts)", 31);
    }

    if (!(mask & NGX_HTTP_UPSTREAM_FT_INVALID_HEADER)) {
        p = ngx_cpymem(p, " invalid_header (error events)", 30);
    }

    if (p != buf) {
        ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                           "\"proxy_next_upstream\" of location \"%V\" "
                           "lacks%*s: \"llm_retry on\" does not retry "
                           "these failures", &clcf->name, p - buf, buf);
    }

    cf->conf_file = saved;

    return NGX_CONF_OK;
}


/* the body phase, the request is about to go to the content handler */

ngx_int_t
ngx_http_llm_retry_install(ngx_http_request_t *r)
{
    ngx_http_llm_ctx_t    *ctx;
    ngx_http_llm_retry_t  *rs;

    ctx = ngx_http_get_module_ctx(r, ngx_http_llm_module);

    if (ctx == NULL || ctx->retry || r->content_handler == NULL) {
        return NGX_OK;
    }

    rs = ngx_pcalloc(r->pool, sizeof(ngx_http_llm_retry_t));
    if (rs == NULL) {
        return NGX_ERROR;
    }

    rs->request = r;
    rs->api = ctx->api;
    rs->content_handler = r->content_handler;

    r->content_handler = ngx_http_llm_retry_content_handler;
    ctx->retry = rs;

    return NGX_OK;
}


/*
 * A hop of the fallback chain (ngx_http_llm_fallback.c): the next group's
 * tries get a watcher of their own when its location has llm_retry; the
 * retries of the groups before it still count in $llm_retries and in the
 * metrics.
 */

ngx_int_t
ngx_http_llm_retry_hop(ngx_http_request_t *r)
{
    ngx_uint_t                i;
    ngx_http_llm_ctx_t       *ctx;
    ngx_http_llm_retry_t     *prev, *rs;
    ngx_http_llm_loc_conf_t  *llcf;

    ctx = ngx_http_get_module_ctx(r, ngx_http_llm_module);
    prev = ctx->retry;

    if (prev) {
        if (prev->timer.timer_set) {
            ngx_del_timer(&prev->timer);
        }

        /* its held events were another response's */
        prev->released = 0;
        prev->ninfos = 0;
        prev->next = 0;
    }

    llcf = ngx_http_get_module_loc_conf(r, ngx_http_llm_module);

    if (!llcf->retry.enable || ctx->req.stream != 1) {
        return NGX_OK;
    }

    ctx->retry = NULL;

    if (ngx_http_llm_retry_install(r) != NGX_OK) {
        return NGX_ERROR;
    }

    rs = ctx->retry;

    if (prev && rs) {
        rs->carried = prev->carried + prev->retries;

        for (i = 0; i < NGX_HTTP_LLM_RETRY_REASONS; i++) {
            rs->reasons[i] += prev->reasons[i];
        }
    }

    return NGX_OK;
}


/*
 * Runs the proxy's handler, which creates r->upstream, sets its callbacks
 * and starts the first try; then wraps the callbacks.
 */

static ngx_int_t
ngx_http_llm_retry_content_handler(ngx_http_request_t *r)
{
    ngx_int_t                  rc;
    ngx_uint_t                 base, tries;
    ngx_http_upstream_t       *u;
    ngx_pool_cleanup_t        *cln;
    ngx_http_llm_ctx_t        *ctx;
    ngx_http_llm_retry_t      *rs;
    ngx_http_upstream_conf_t  *ucf;
    ngx_http_llm_loc_conf_t   *llcf;

    ctx = ngx_http_get_module_ctx(r, ngx_http_llm_module);

    if (ctx == NULL || ctx->retry == NULL) {
        /* cannot happen: an internal redirect resets the content handler */
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rs = ctx->retry;
    base = r->upstream_states ? r->upstream_states->nelts : 0;

    llcf = ngx_http_get_module_loc_conf(r, ngx_http_llm_module);
    rs->timeout = llcf->retry.first_token_timeout;

    if (rs->timeout) {
        /* the timer goes with the request, however it ends */

        cln = ngx_pool_cleanup_add(r->pool, 0);
        if (cln == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        cln->handler = ngx_http_llm_retry_cleanup;
        cln->data = rs;
    }

    rc = rs->content_handler(r);

    u = r->upstream;

    if (ngx_http_get_module_ctx(r, ngx_http_llm_module) != ctx
        || u == NULL || u->cleanup == NULL || u->header_sent
        || rs->upstream)
    {
        /* not proxied, or already over (answered, redirected) */
        return rc;
    }

    ucf = ngx_http_get_module_loc_conf(r, ngx_http_proxy_module);

    if (u->conf != ucf) {
        /* another upstream module: its bytes are not HTTP/1 */
        return rc;
    }

    if ((u->conf->next_upstream & NGX_HTTP_UPSTREAM_FT_OFF)
        || !(u->conf->next_upstream & NGX_HTTP_UPSTREAM_FT_NON_IDEMPOTENT))
    {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "llm retry: off for this request, "
                      "\"proxy_next_upstream\" lacks \"non_idempotent\"");
        return rc;
    }

    rs->upstream = u;
    rs->base = base;

    rs->process_header = u->process_header;
    rs->reinit_request = u->reinit_request;
    rs->finalize_request = u->finalize_request;

    u->process_header = ngx_http_llm_retry_process_header;
    u->reinit_request = ngx_http_llm_retry_reinit_request;
    u->finalize_request = ngx_http_llm_retry_finalize_request;

    /* tries made (a refused connect may have moved on already) + left */

    tries = ngx_http_llm_retry_tries(r, rs);
    rs->max = u->peer.tries + (tries ? tries - 1 : 0);

    ngx_http_llm_retry_reset(rs);

    if (rs->timeout) {
        rs->timer.handler = ngx_http_llm_retry_timer;
        rs->timer.data = r;
        rs->timer.log = r->connection->log;

        ngx_add_timer(&rs->timer, rs->timeout);
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "llm retry: watching, %ui tries at most, "
                   "first token timeout %M", rs->max, rs->timeout);

    return rc;
}


static ngx_int_t
ngx_http_llm_retry_process_header(ngx_http_request_t *r)
{
    ngx_int_t              rc;
    ngx_str_t             *ct;
    ngx_uint_t             status;
    ngx_http_upstream_t   *u;
    ngx_http_llm_ctx_t    *ctx;
    ngx_http_llm_retry_t  *rs;

    static ngx_str_t  sse = ngx_string("text/event-stream");

    ctx = ngx_http_get_module_ctx(r, ngx_http_llm_module);
    rs = ctx->retry;
    u = r->upstream;

    if (!rs->holding) {
        rc = rs->process_header(r);

        if (u->process_header != ngx_http_llm_retry_process_header) {
            /* the proxy went from the status line to the header lines */
            rs->process_header = u->process_header;
            u->process_header = ngx_http_llm_retry_process_header;
        }

        if (rc != NGX_OK) {
            return rc;
        }

        rs->state = u->state - (ngx_http_upstream_state_t *)
                               r->upstream_states->elts;

        status = u->headers_in.status_n;

        if (status != NGX_HTTP_OK) {
            if (status >= NGX_HTTP_INTERNAL_SERVER_ERROR
                || status == NGX_HTTP_TOO_MANY_REQUESTS)
            {
                /* a retry, if proxy_next_upstream http_NNN says so */
                rs->failed = 1;
                rs->reason = NGX_HTTP_LLM_RETRY_STATUS;
            }

            return NGX_OK;
        }

        ct = u->headers_in.content_type ? &u->headers_in.content_type->value
                                        : NULL;

        if (ct == NULL || ct->len < sse.len
            || ngx_strncasecmp(ct->data, sse.data, sse.len) != 0
            || (ct->len > sse.len && ct->data[sse.len] != ';'
                && ct->data[sse.len] != ' '))
        {
            return NGX_OK;
        }

        rs->holding = 1;
        rs->scan = u->buffer.pos;

        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "llm retry: holding the SSE header of %V until the "
                       "first token", u->peer.name);
    }

    rc = ngx_http_llm_retry_scan(r, rs, u);

    if (rc == NGX_AGAIN && u->buffer.last == u->buffer.end) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "llm retry: no token in the first %uz bytes from %V "
                      "(proxy_buffer_size), passed on without retry",
                      (size_t) (u->buffer.end - u->buffer.start),
                      u->peer.name);
        rc = NGX_OK;
    }

    if (rc == NGX_OK) {
        rs->holding = 0;
        rs->released = 1;

        if (rs->timer.timer_set) {
            ngx_del_timer(&rs->timer);
        }

        /* u->buffer.pos is still the first body byte: all of it goes */
    }

    return rc;
}


/*
 * Frames the body bytes that came since the last call. NGX_AGAIN: hold on;
 * NGX_OK: release; NGX_HTTP_UPSTREAM_INVALID_HEADER: an error event.
 */

static ngx_int_t
ngx_http_llm_retry_scan(ngx_http_request_t *r, ngx_http_llm_retry_t *rs,
    ngx_http_upstream_t *u)
{
    size_t      n;
    ngx_int_t   rc;
    ngx_buf_t   b;

    if (!u->headers_in.chunked) {
        n = u->buffer.last - rs->scan;

        (void) ngx_http_llm_sse_feed(&rs->sse, rs->scan, n);

        rs->scan = u->buffer.last;
        rs->body += n;

        if (rs->verdict == NGX_HTTP_LLM_RETRY_HOLD
            && u->headers_in.content_length_n >= 0
            && rs->body >= u->headers_in.content_length_n)
        {
            /* the whole body is here */
            rs->verdict = NGX_HTTP_LLM_RETRY_RELEASE;
        }

    } else {
        ngx_memzero(&b, sizeof(ngx_buf_t));
        b.pos = rs->scan;
        b.last = u->buffer.last;

        while (rs->verdict == NGX_HTTP_LLM_RETRY_HOLD) {

            rc = ngx_http_parse_chunked(r, &b, &rs->chunked);

            if (rc == NGX_OK) {
                n = (size_t) ngx_min((off_t) (b.last - b.pos),
                                     rs->chunked.size);

                (void) ngx_http_llm_sse_feed(&rs->sse, b.pos, n);

                b.pos += n;
                rs->chunked.size -= n;
                continue;
            }

            if (rc == NGX_AGAIN) {
                break;
            }

            /* NGX_DONE: the whole body; NGX_ERROR: the proxy will say */
            rs->verdict = NGX_HTTP_LLM_RETRY_RELEASE;
        }

        rs->scan = u->buffer.last;
    }

    switch (rs->verdict) {

    case NGX_HTTP_LLM_RETRY_RELEASE:
        return NGX_OK;

    case NGX_HTTP_LLM_RETRY_FAIL:

        if (!(u->conf->next_upstream & NGX_HTTP_UPSTREAM_FT_INVALID_HEADER)) {
            /*
             * not to be retried: the client gets the error event, and
             * llm_balance counts the failure nginx does not see (a 200)
             */
            ngx_http_llm_balancer_peer_failed(r, 0);
            return NGX_OK;
        }

        rs->failed = 1;
        rs->reason = NGX_HTTP_LLM_RETRY_ERROR_EVENT;
        return NGX_HTTP_UPSTREAM_INVALID_HEADER;

    default:
        return NGX_AGAIN;
    }
}


static int
ngx_http_llm_retry_event(ngx_http_llm_sse_t *sse, const u_char *name,
    size_t name_len, const u_char *data, size_t len, uint64_t start,
    uint64_t end)
{
    ngx_http_llm_retry_t       *rs = sse->data;
    ngx_http_llm_event_info_t  *info, scratch;

    /* kept for the stream watcher, which sees these events once released */

    if (rs->ninfos < NGX_HTTP_LLM_RETRY_INFOS) {
        rs->ends[rs->ninfos] = end;
        info = &rs->infos[rs->ninfos++];

    } else {
        info = &scratch;
    }

    ngx_http_llm_event_analyze((int) rs->api, name, name_len, data, len,
                               info);

    if (info->error) {
        rs->verdict = NGX_HTTP_LLM_RETRY_FAIL;
        return 1;
    }

    if (info->content || info->done || info->finish) {
        rs->verdict = NGX_HTTP_LLM_RETRY_RELEASE;
        return 1;
    }

    return 0;
}


ngx_int_t
ngx_http_llm_retry_held(ngx_http_llm_retry_t *rs, uint64_t end,
    ngx_http_llm_event_info_t *info)
{
    if (!rs->released) {
        return NGX_DECLINED;
    }

    /* both framers count the same (dechunked) body bytes */

    while (rs->next < rs->ninfos && rs->ends[rs->next] < end) {
        rs->next++;
    }

    if (rs->next == rs->ninfos || rs->ends[rs->next] != end) {
        return NGX_DECLINED;
    }

    *info = rs->infos[rs->next++];

    return NGX_OK;
}


static u_char *
ngx_http_llm_retry_grow(ngx_http_llm_sse_t *sse, size_t size)
{
    ngx_http_llm_retry_t  *rs = sse->data;

    return ngx_pnalloc(rs->request->pool, size);
}


/*
 * nginx starts the next try (the request was sent to the failed one):
 * the retry is counted and logged, the held state reset.
 */

static ngx_int_t
ngx_http_llm_retry_reinit_request(ngx_http_request_t *r)
{
    ngx_int_t                   rc;
    ngx_uint_t                  why, tries;
    ngx_str_t                  *peer;
    ngx_http_upstream_t        *u;
    ngx_http_llm_ctx_t         *ctx;
    ngx_http_llm_retry_t       *rs;
    ngx_http_upstream_state_t  *prev;

    ctx = ngx_http_get_module_ctx(r, ngx_http_llm_module);
    rs = ctx->retry;
    u = r->upstream;

    rc = rs->reinit_request(r);

    if (u->process_header != ngx_http_llm_retry_process_header) {
        /* the proxy starts over with the status line */
        rs->process_header = u->process_header;
        u->process_header = ngx_http_llm_retry_process_header;
    }

    /* u->state is the new try's, the one before it failed */

    prev = ngx_http_llm_retry_state(r, rs, 0);

    why = ngx_http_llm_retry_why(rs, prev);
    rs->reasons[why]++;

    tries = ngx_http_llm_retry_tries(r, rs);
    peer = (prev && prev->peer) ? prev->peer : &ngx_http_llm_retry_unknown;

    ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                  "llm retry: %s from %V, trying next (try %ui of %ui)",
                  ngx_http_llm_retry_reasons[why], peer, tries,
                  ngx_max(tries, rs->max));

    ngx_http_llm_retry_reset(rs);

    if (rs->timeout) {
        ngx_add_timer(&rs->timer, rs->timeout);
    }

    return rc;
}


static void
ngx_http_llm_retry_finalize_request(ngx_http_request_t *r, ngx_int_t rc)
{
    ngx_uint_t                  i, why, tries, counted;
    ngx_str_t                  *peer;
    ngx_http_upstream_t        *u;
    ngx_http_llm_ctx_t         *ctx;
    ngx_http_llm_retry_t       *rs;
    ngx_http_upstream_state_t  *state;

    ctx = ngx_http_get_module_ctx(r, ngx_http_llm_module);
    rs = ctx->retry;
    u = r->upstream;

    if (rs->timer.timer_set) {
        ngx_del_timer(&rs->timer);
    }

    if (!rs->finalized) {
        rs->finalized = 1;

        tries = ngx_http_llm_retry_tries(r, rs);
        rs->retries = rs->carried + (tries ? tries - 1 : 0);

        /* retries without a reinit: a refused connect, no live peer */

        counted = 0;

        for (i = 0; i < NGX_HTTP_LLM_RETRY_REASONS; i++) {
            counted += rs->reasons[i];
        }

        if (rs->retries > counted) {
            rs->reasons[NGX_HTTP_LLM_RETRY_ERROR] += rs->retries - counted;
        }

        if (!u->header_sent && !rs->released
            && rc >= NGX_HTTP_INTERNAL_SERVER_ERROR)
        {
            state = ngx_http_llm_retry_state(r, rs, 1);
            why = ngx_http_llm_retry_why(rs, state);
            peer = (state && state->peer) ? state->peer
                                         : &ngx_http_llm_retry_unknown;

            ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                          "llm retry: %s from %V, giving up after %ui %s",
                          ngx_http_llm_retry_reasons[why], peer, tries,
                          tries == 1 ? "try" : "tries");

            if (rs->holding) {
                /*
                 * the held 200 was never sent: the client gets nginx's
                 * 502 / 504 in its API's shape (ngx_http_llm_sse.c), or
                 * the operator's error_page
                 */
                u->headers_in.status_n = 0;
            }
        }

        rs->holding = 0;
    }

    rs->finalize_request(r, rc);
}


static void
ngx_http_llm_retry_reset(ngx_http_llm_retry_t *rs)
{
    ngx_http_llm_loc_conf_t  *llcf;

    llcf = ngx_http_get_module_loc_conf(rs->request, ngx_http_llm_module);

    rs->failed = 0;
    rs->holding = 0;
    rs->verdict = NGX_HTTP_LLM_RETRY_HOLD;
    rs->scan = NULL;
    rs->body = 0;
    rs->ninfos = 0;
    rs->next = 0;

    ngx_memzero(&rs->chunked, sizeof(ngx_http_chunked_t));

    ngx_http_llm_sse_init(&rs->sse, NULL, llcf->sse_event_max_size,
                          ngx_http_llm_retry_event, rs);
    rs->sse.grow = ngx_http_llm_retry_grow;
}


/* the try had llm_first_token_timeout to send its first token */

static void
ngx_http_llm_retry_timer(ngx_event_t *ev)
{
    ngx_connection_t      *c;
    ngx_http_request_t    *r;
    ngx_http_upstream_t   *u;
    ngx_http_llm_ctx_t    *ctx;
    ngx_http_llm_retry_t  *rs;

    r = ev->data;

    ctx = ngx_http_get_module_ctx(r, ngx_http_llm_module);
    if (ctx == NULL || ctx->retry == NULL) {
        return;
    }

    rs = ctx->retry;
    u = r->upstream;

    if (u != rs->upstream || u->header_sent || rs->released
        || u->peer.connection == NULL)
    {
        return;
    }

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "llm retry: no token from %V within "
                  "llm_first_token_timeout %M ms", u->peer.name, rs->timeout);

    rs->failed = 1;
    rs->reason = NGX_HTTP_LLM_RETRY_TIMEOUT;
    rs->state = u->state - (ngx_http_upstream_state_t *)
                           r->upstream_states->elts;

    /*
     * nginx's own read timeout path: ngx_http_upstream_process_header()
     * sees the timed out read event and calls the next upstream
     */

    c = u->peer.connection;
    c->read->timedout = 1;

    if (c->read->timer_set) {
        ngx_del_timer(c->read);
    }

    c->read->handler(c->read);
}


static void
ngx_http_llm_retry_cleanup(void *data)
{
    ngx_http_llm_retry_t  *rs = data;

    if (rs->timer.timer_set) {
        ngx_del_timer(&rs->timer);
    }
}


/* tries of this upstream so far, the current one included */

static ngx_uint_t
ngx_http_llm_retry_tries(ngx_http_request_t *r, ngx_http_llm_retry_t *rs)
{
    ngx_uint_t                  i, n;
    ngx_http_upstream_state_t  *state;

    if (r->upstream_states == NULL) {
        return 0;
    }

    state = r->upstream_states->elts;
    n = 0;

    for (i = rs->base; i < r->upstream_states->nelts; i++) {
        if (state[i].peer) {
            n++;
        }
    }

    return n;
}


/*
 * The state of the try that failed: the held one, when a try is held
 * (a refused connect may have come after it without a reinit), else the
 * one before the current try (reinit) or the current one (finalize).
 */

static ngx_http_upstream_state_t *
ngx_http_llm_retry_state(ngx_http_request_t *r, ngx_http_llm_retry_t *rs,
    ngx_uint_t last)
{
    ngx_uint_t                  n;
    ngx_http_upstream_state_t  *state;

    if (r->upstream_states == NULL) {
        return NULL;
    }

    state = r->upstream_states->elts;
    n = r->upstream_states->nelts;

    if ((rs->failed || rs->holding) && rs->state < n) {
        return &state[rs->state];
    }

    if (last) {
        return n ? &state[n - 1] : NULL;
    }

    return (n >= 2) ? &state[n - 2] : NULL;
}


/* why the try of state failed */

static ngx_uint_t
ngx_http_llm_retry_why(ngx_http_llm_retry_t *rs,
    ngx_http_upstream_state_t *state)
{
    if (rs->failed) {
        return rs->reason;
    }

    if (rs->holding) {
        /* proxy_read_timeout ran out before the first token, or EOF */
        return (state && state->status == NGX_HTTP_GATEWAY_TIME_OUT)
               ? NGX_HTTP_LLM_RETRY_TIMEOUT : NGX_HTTP_LLM_RETRY_EOF;
    }

    return NGX_HTTP_LLM_RETRY_ERROR;
}


ngx_int_t
ngx_http_llm_retry_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    u_char                     *p;
    ngx_uint_t                  i, n;
    ngx_http_llm_ctx_t         *ctx;
    ngx_http_llm_retry_t       *rs;
    ngx_http_upstream_state_t  *state;

    ctx = ngx_http_get_module_ctx(r, ngx_http_llm_module);
    rs = ctx ? ctx->retry : NULL;

    if (rs && rs->finalized) {
        n = rs->retries;

    } else if (r->upstream_states && r->upstream_states->nelts) {
        /* in flight, or without llm_retry: nginx's tries so far */
        state = r->upstream_states->elts;
        n = 0;

        for (i = (rs && rs->upstream) ? rs->base : 0;
             i < r->upstream_states->nelts;
             i++)
        {
            if (state[i].peer) {
                n++;
            }
        }

        n = (n ? n - 1 : 0) + (rs ? rs->carried : 0);

    } else {
        v->not_found = 1;
        return NGX_OK;
    }

    p = ngx_pnalloc(r->pool, NGX_INT_T_LEN);
    if (p == NULL) {
        return NGX_ERROR;
    }

    v->data = p;
    v->len = ngx_sprintf(p, "%ui", n) - p;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;

    return NGX_OK;
}
