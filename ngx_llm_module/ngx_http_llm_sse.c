
/*
 * Copyright (C) ngx_llm authors
 *
 * Response side: header and body filters that watch the answer go by.
 *
 * An SSE response is switched to unbuffered proxying whatever
 * proxy_buffering says, so that every event is flushed to the client as
 * soon as it arrives; the events are framed and analysed on the way
 * (time to first token, usage, terminator) without holding them back.
 * Only when the gateway itself asked upstream for the OpenAI usage chunk
 * is the output re-cut on event boundaries, to drop that one chunk.
 *
 * A JSON response is collected (up to llm_response_max_size) and
 * analysed when its last buffer passes.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_llm_module.h"


static ngx_int_t ngx_http_llm_header_filter(ngx_http_request_t *r);
static ngx_int_t ngx_http_llm_upstream_error(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx);
static ngx_int_t ngx_http_llm_upstream_error_body(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx, ngx_chain_t *in);
static ngx_int_t ngx_http_llm_template_body(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx, ngx_chain_t *in);
static ngx_int_t ngx_http_llm_body_filter(ngx_http_request_t *r,
    ngx_chain_t *in);
static ngx_int_t ngx_http_llm_sse_watch(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx, ngx_chain_t *in);
static ngx_int_t ngx_http_llm_sse_strip(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx, ngx_chain_t *in, ngx_chain_t *end);
static ngx_uint_t ngx_http_llm_sse_ended(ngx_http_request_t *r,
    ngx_chain_t *in);
static ngx_chain_t *ngx_http_llm_sse_terminator(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx);
static ngx_int_t ngx_http_llm_json_collect(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx, ngx_chain_t *in);
static size_t ngx_http_llm_strip_usage_null(u_char *p, size_t len);
static u_char *ngx_http_llm_sse_grow(ngx_http_llm_sse_t *sse, size_t size);
static int ngx_http_llm_sse_event(ngx_http_llm_sse_t *sse, const u_char *name,
    size_t name_len, const u_char *data, size_t len, uint64_t start,
    uint64_t end);
static ngx_int_t ngx_http_llm_is_type(ngx_http_request_t *r, char *type,
    size_t len);


static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;
static ngx_http_output_body_filter_pt    ngx_http_next_body_filter;


ngx_int_t
ngx_http_llm_sse_init_filters(ngx_conf_t *cf)
{
    ngx_http_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_http_llm_header_filter;

    ngx_http_next_body_filter = ngx_http_top_body_filter;
    ngx_http_top_body_filter = ngx_http_llm_body_filter;

    return NGX_OK;
}


static ngx_int_t
ngx_http_llm_header_filter(ngx_http_request_t *r)
{
    ngx_int_t                 rc;
    ngx_http_llm_ctx_t       *ctx;
    ngx_http_llm_loc_conf_t  *llcf;

    if (r != r->main) {
        return ngx_http_next_header_filter(r);
    }

    ctx = ngx_http_get_module_ctx(r, ngx_http_llm_module);

    if (ctx == NULL || !ctx->inspected || ctx->cache_hit) {
        return ngx_http_next_header_filter(r);
    }

    /* an upstream failure goes down the fallback chain (if any) */

    rc = ngx_http_llm_fallback_header(r, ctx);

    if (rc == NGX_DONE) {
        /* answered by a stale entry or the template: not watched */
        return ngx_http_next_header_filter(r);
    }

    if (rc != NGX_DECLINED) {
        return rc;
    }

    llcf = ngx_http_get_module_loc_conf(r, ngx_http_llm_module);

    if (r->headers_out.status >= NGX_HTTP_BAD_REQUEST) {
        ctx->outcome = NGX_HTTP_LLM_OUTCOME_ERROR;
    }

    if (r->upstream
        && (r->upstream->headers_in.status_n == 0 || ctx->fb.intercepted)
        && r->headers_out.status >= NGX_HTTP_INTERNAL_SERVER_ERROR)
    {
        /* nginx's own page for an upstream that never answered */
        return ngx_http_llm_upstream_error(r, ctx);
    }

    if (ngx_http_llm_is_type(r, "text/event-stream",
                             sizeof("text/event-stream") - 1)
        == NGX_OK)
    {
        ctx->sse_response = 1;

        /* the event buffer is allocated as events need it */

        ngx_http_llm_sse_init(&ctx->sse, NULL, llcf->sse_event_max_size,
                              ngx_http_llm_sse_event, r);
        ctx->sse.grow = ngx_http_llm_sse_grow;

        if (r->upstream) {
            /* events must never wait in proxy buffers */
            r->upstream->buffering = 0;
        }

        if (ctx->stream_injected) {
            ctx->strip = 1;
            ngx_http_clear_content_length(r);
        }

        ngx_http_clear_accept_ranges(r);

    } else if (ngx_http_llm_is_type(r, "application/json",
                                    sizeof("application/json") - 1)
               == NGX_OK)
    {
        ctx->json_response = 1;
    }

    return ngx_http_next_header_filter(r);
}


/*
 * The upstream failed before its response header (refused, reset, timed
 * out, every next_upstream try used): nginx is about to send its own HTML
 * 502/504 page. A client of an LLM API gets the error in its API's shape
 * instead; an error_page of the operator has run already (its internal
 * redirect leaves no ctx) and is not touched. The cause is in the error
 * log, logged by nginx's upstream module.
 */

static ngx_int_t
ngx_http_llm_upstream_error(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx)
{
    ngx_buf_t  *b;

    if (r->headers_out.status == NGX_HTTP_GATEWAY_TIME_OUT) {
        b = ngx_http_llm_error_body(r, ctx->api, NGX_HTTP_GATEWAY_TIME_OUT,
                                    "server_error", "upstream_timeout", NULL,
                                    "the upstream LLM server did not answer "
                                    "in time");

    } else {
        b = ngx_http_llm_error_body(r, ctx->api, r->headers_out.status,
                                    "server_error", "upstream_unavailable",
                                    NULL,
                                    "the upstream LLM server could not be "
                                    "reached or closed the connection "
                                    "before answering");
    }

    if (b == NULL) {
        return NGX_ERROR;
    }

    ctx->error_body = b;
    ctx->error_replaced = 1;
    ctx->outcome = NGX_HTTP_LLM_OUTCOME_ERROR;

    ngx_http_llm_error_headers(r, b);

    return ngx_http_next_header_filter(r);
}


static ngx_int_t
ngx_http_llm_upstream_error_body(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx, ngx_chain_t *in)
{
    ngx_chain_t  out, *cl;

    /* nginx's page is dropped: its buffers count as sent */

    for (cl = in; cl; cl = cl->next) {
        cl->buf->pos = cl->buf->last;
        cl->buf->file_pos = cl->buf->file_last;
    }

    if (ctx->error_body == NULL) {
        return NGX_OK;
    }

    out.buf = ctx->error_body;
    out.next = NULL;
    ctx->error_body = NULL;

    return ngx_http_next_body_filter(r, &out);
}


/* nginx's page is dropped, the template answer goes once */

static ngx_int_t
ngx_http_llm_template_body(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx,
    ngx_chain_t *in)
{
    ngx_chain_t  *cl;

    for (cl = in; cl; cl = cl->next) {
        cl->buf->pos = cl->buf->last;
        cl->buf->file_pos = cl->buf->file_last;
    }

    if (ctx->fb.sent || ctx->fb.out == NULL) {
        return NGX_OK;
    }

    ctx->fb.sent = 1;

    return ngx_http_next_body_filter(r, ctx->fb.out);
}


static ngx_int_t
ngx_http_llm_body_filter(ngx_http_request_t *r, ngx_chain_t *in)
{
    ngx_int_t            rc;
    ngx_chain_t         *end, *out, *cl, **ll;
    ngx_http_llm_ctx_t  *ctx;

    if (r != r->main || in == NULL) {
        return ngx_http_next_body_filter(r, in);
    }

    ctx = ngx_http_get_module_ctx(r, ngx_http_llm_module);

    if (ctx == NULL) {
        return ngx_http_next_body_filter(r, in);
    }

    /* before the client can see the response's end */
    ngx_http_llm_limit_stream_end(r, ctx, in);

    if (!ctx->inspected || ctx->cache_hit) {
        return ngx_http_next_body_filter(r, in);
    }

    if (ctx->error_replaced) {
        return ngx_http_llm_upstream_error_body(r, ctx, in);
    }

    if (ctx->fb.tier == NGX_HTTP_LLM_TIER_STALE) {
        /* the cache's body filter sends the entry */
        return ngx_http_next_body_filter(r, in);
    }

    if (ctx->fb.tier == NGX_HTTP_LLM_TIER_TEMPLATE) {
        return ngx_http_llm_template_body(r, ctx, in);
    }

    if (ctx->json_response) {
        if (ngx_http_llm_json_collect(r, ctx, in) != NGX_OK) {
            return NGX_ERROR;
        }

        return ngx_http_next_body_filter(r, in);
    }

    if (!ctx->sse_response) {
        return ngx_http_next_body_filter(r, in);
    }

    if (ctx->limit.cut && ctx->ended) {
        /* cut off by a rate limit: an error cancels the upstream request */
        if (ngx_http_llm_limit_drain(in) == NGX_AGAIN) {
            return NGX_ERROR;
        }

        return ngx_http_next_body_filter(r, NULL);
    }

    if (!ctx->strip) {
        (void) ngx_http_llm_sse_watch(r, ctx, in);
    }

    end = NULL;

    if (ctx->limit.cut && !ctx->ended && !ctx->done) {
        end = ngx_http_llm_limit_cutoff(r, ctx);
        if (end == NULL) {
            return NGX_ERROR;
        }
    }

    if (!ctx->done && !ctx->ended && !ctx->error_event
        && ngx_http_llm_sse_ended(r, in))
    {
        end = ngx_http_llm_sse_terminator(r, ctx);
        if (end == NULL) {
            return NGX_ERROR;
        }
    }

    if (ctx->strip) {
        return ngx_http_llm_sse_strip(r, ctx, in, end);
    }

    if (end == NULL) {
        return ngx_http_next_body_filter(r, in);
    }

    /* the same buffers, the last one no longer last, then the terminator */

    out = NULL;
    ll = &out;

    for ( /* void */ ; in; in = in->next) {
        cl = ngx_alloc_chain_link(r->pool);
        if (cl == NULL) {
            return NGX_ERROR;
        }

        cl->buf = in->buf;

        if (cl->buf->last_buf) {
            cl->buf->last_buf = 0;

            if (ngx_buf_size(cl->buf) == 0) {
                cl->buf->sync = 1;
            }
        }

        *ll = cl;
        ll = &cl->next;
    }

    *ll = end;

    rc = ngx_http_next_body_filter(r, out);

    return rc;
}


/*
 * The stream is over without its terminator when the response ends (the
 * upstream closed a close-delimited stream) or when nginx flushes after
 * the upstream connection went away (premature close, read timeout).
 */

static ngx_uint_t
ngx_http_llm_sse_ended(ngx_http_request_t *r, ngx_chain_t *in)
{
    ngx_uint_t    data, flush;
    ngx_chain_t  *cl;

    data = 0;
    flush = 0;

    for (cl = in; cl; cl = cl->next) {
        if (cl->buf->last_buf) {
            return 1;
        }

        if (ngx_buf_size(cl->buf)) {
            data = 1;
        }

        flush |= cl->buf->flush;
    }

    return (flush && !data && r->upstream
            && r->upstream->peer.connection == NULL);
}


/*
 * What a client SDK understands as a failed stream: an error event in its
 * API's shape (and, for OpenAI, the [DONE] terminator), so that it raises
 * a clear error instead of hanging on a torn connection.
 */

static ngx_chain_t *
ngx_http_llm_sse_terminator(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx)
{
    ngx_chain_t  *cl;

    static ngx_str_t  openai = ngx_string(
        "\n\ndata: {\"error\":{\"message\":\"The upstream model server "
        "ended the stream before it was complete.\",\"type\":"
        "\"server_error\",\"param\":null,\"code\":\"upstream_incomplete\"}}"
        "\n\ndata: [DONE]\n\n");

    static ngx_str_t  anthropic = ngx_string(
        "\n\nevent: error\ndata: {\"type\":\"error\",\"error\":{\"type\":"
        "\"api_error\",\"message\":\"The upstream model server ended the "
        "stream before it was complete.\"}}\n\n");

    cl = ngx_http_llm_sse_end_chain(r, ctx, &openai, &anthropic);

    if (cl) {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "llm upstream stream ended without its terminator "
                      "after %ui events, the client stream was closed with "
                      "an error event", ctx->events);
    }

    return cl;
}


/*
 * The last buffer of a stream the gateway ends itself: the error event of
 * the client's API (each text starts with a blank line that closes an
 * event cut in the middle; it is skipped when no event is open).
 */

ngx_chain_t *
ngx_http_llm_sse_end_chain(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx,
    ngx_str_t *openai, ngx_str_t *anthropic)
{
    ngx_str_t     s;
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    ctx->ended = 1;

    s = NGX_HTTP_LLM_IS_ANTHROPIC(ctx->api) ? *anthropic : *openai;

    if (ctx->strip || ctx->sse.event_start == ctx->sse.offset) {
        s.data += 2;
        s.len -= 2;
    }

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NULL;
    }

    b->pos = s.data;
    b->last = s.data + s.len;
    b->memory = 1;
    b->flush = 1;
    b->last_buf = 1;

    cl = ngx_alloc_chain_link(r->pool);
    if (cl == NULL) {
        return NULL;
    }

    cl->buf = b;
    cl->next = NULL;

    return cl;
}


static ngx_int_t
ngx_http_llm_sse_watch(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx,
    ngx_chain_t *in)
{
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    for (cl = in; cl; cl = cl->next) {
        b = cl->buf;

        if (ngx_buf_in_memory(b) && b->last > b->pos) {
            (void) ngx_http_llm_sse_feed(&ctx->sse, b->pos, b->last - b->pos);
        }

        if (b->last_buf) {
            ctx->end = ngx_current_msec;
        }
    }

    return NGX_OK;
}


/*
 * Event-aligned output: complete events are emitted at once (less the
 * usage-only chunk the gateway asked for), the bytes of an event not yet
 * complete wait in ctx->pending, copied, since upstream reuses its buffer.
 * ctx->emitted is the stream offset of the first pending byte.
 */

static ngx_int_t
ngx_http_llm_sse_strip(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx,
    ngx_chain_t *in, ngx_chain_t *end)
{
    size_t        total, complete, tail, n, room;
    u_char       *p;
    uint64_t      off;
    ngx_int_t     rc;
    ngx_buf_t    *b, *out_b;
    ngx_uint_t    last, flush;
    ngx_chain_t  *cl, *ol;

    total = ctx->pending ? (size_t) (ctx->pending->last - ctx->pending->pos)
                         : 0;
    last = 0;
    flush = 0;

    for (cl = in; cl; cl = cl->next) {
        if (ngx_buf_in_memory(cl->buf)) {
            total += cl->buf->last - cl->buf->pos;
        }

        last |= cl->buf->last_buf;
        flush |= cl->buf->flush;
    }

    ol = ngx_chain_get_free_buf(r->pool, &ctx->free);
    if (ol == NULL) {
        return NGX_ERROR;
    }

    out_b = ol->buf;

    if (out_b->start == NULL || (size_t) (out_b->end - out_b->start) < total)
    {
        room = ngx_max(total, 4096);

        out_b->start = ngx_palloc(r->pool, room);
        if (out_b->start == NULL) {
            return NGX_ERROR;
        }

        out_b->end = out_b->start + room;
    }

    out_b->pos = out_b->start;
    out_b->last = out_b->start;
    out_b->temporary = 1;
    out_b->flush = 1;
    out_b->sync = 0;
    out_b->last_buf = 0;
    out_b->tag = (ngx_buf_tag_t) &ngx_http_llm_module;

    /* pending bytes first, then the new ones, fed to the framer */

    off = ctx->emitted;

    if (ctx->pending) {
        out_b->last = ngx_cpymem(out_b->last, ctx->pending->pos,
                                 ctx->pending->last - ctx->pending->pos);
        ctx->pending->last = ctx->pending->pos;
    }

    for (cl = in; cl; cl = cl->next) {
        b = cl->buf;

        if (!ngx_buf_in_memory(b) || b->last == b->pos) {
            continue;
        }

        (void) ngx_http_llm_sse_feed(&ctx->sse, b->pos, b->last - b->pos);
        out_b->last = ngx_cpymem(out_b->last, b->pos, b->last - b->pos);
        b->pos = b->last;
    }

    /* what lies before the event in progress is complete events */

    complete = total;

    if ((!last || end) && ctx->sse.event_start >= off
        && ctx->sse.event_start - off < total)
    {
        complete = (size_t) (ctx->sse.event_start - off);
    }

    tail = total - complete;

    if (end) {
        /* the stream is over: an event cut in the middle is dropped */
        out_b->last = out_b->pos + complete;

    } else if (tail) {
        if (ctx->pending == NULL
            || (size_t) (ctx->pending->end - ctx->pending->start) < tail)
        {
            room = ngx_max(tail, 1024);

            ctx->pending = ngx_create_temp_buf(r->pool, room);
            if (ctx->pending == NULL) {
                return NGX_ERROR;
            }
        }

        ctx->pending->pos = ctx->pending->start;
        ctx->pending->last = ngx_cpymem(ctx->pending->start,
                                        out_b->pos + complete, tail);
        out_b->last = out_b->pos + complete;
    }

    /* the usage-only chunk, when it is among the complete events */

    if (ctx->cut_end > ctx->cut_start
        && ctx->cut_start >= off && ctx->cut_end <= off + complete)
    {
        p = out_b->pos + (size_t) (ctx->cut_start - off);
        n = (size_t) (ctx->cut_end - ctx->cut_start);

        ngx_memmove(p, p + n, out_b->last - (p + n));
        out_b->last -= n;
        ctx->cut_start = 0;
        ctx->cut_end = 0;

        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "llm: stripped the usage chunk, %uz bytes", n);
    }

    /*
     * asked for usage, OpenAI also adds "usage":null to every chunk: it
     * goes too, so the client gets the bytes it would have got
     */

    out_b->last = out_b->pos
                  + ngx_http_llm_strip_usage_null(out_b->pos,
                                                  out_b->last - out_b->pos);

    ctx->emitted = off + complete;

    if (last || end) {
        out_b->last_buf = (end == NULL);
        ctx->end = ngx_current_msec;
    }

    if (out_b->last == out_b->pos) {

        if (!last && end == NULL) {
            /* nothing complete yet: the buffer waits for the next call */
            ol->next = ctx->free;
            ctx->free = ol;

            return flush ? ngx_http_next_body_filter(r, NULL) : NGX_OK;
        }

        out_b->temporary = 0;
        out_b->sync = 1;
    }

    ol->next = end;

    rc = ngx_http_next_body_filter(r, ol);

    ngx_chain_update_chains(r->pool, &ctx->free, &ctx->busy, &ol,
                            (ngx_buf_tag_t) &ngx_http_llm_module);

    return rc;
}


/*
 * Removes ',"usage":null' (or ', "usage": null') that ends a data line:
 * JSON strings cannot hold a raw quote or line break, so the sequence
 * right before the end of a line is the top-level member, nothing else.
 * One pass from line end to line end; the end of the buffer ends a line.
 */

static size_t
ngx_http_llm_strip_usage_null(u_char *p, size_t len)
{
    size_t   i, n;
    u_char  *dst, *end, *line, *eol;

    static ngx_str_t  spellings[] = {
        ngx_string(",\"usage\":null}"),
        ngx_string(", \"usage\": null}")
    };

    end = p + len;
    dst = p;

    /* p: the first byte not yet moved; the bytes from line on are intact */

    for (line = p; /* void */; line = eol + 1) {
        eol = (u_char *) ngx_http_llm_sse_eol(line, end);

        for (i = 0; i < 2; i++) {
            n = spellings[i].len;

            if ((size_t) (eol - line) >= n
                && ngx_memcmp(eol - n, spellings[i].data, n) == 0)
            {
                /* all but the '}' goes */

                if (dst != p) {
                    ngx_memmove(dst, p, eol - n - p);
                }

                dst += eol - n - p;
                p = eol - 1;
                break;
            }
        }

        if (eol == end) {
            break;
        }
    }

    if (dst != p) {
        ngx_memmove(dst, p, end - p);
    }

    dst += end - p;

    return dst - (end - len);
}


static u_char *
ngx_http_llm_sse_grow(ngx_http_llm_sse_t *sse, size_t size)
{
    ngx_http_request_t  *r = sse->data;

    return ngx_pnalloc(r->pool, size);
}


static ngx_int_t
ngx_http_llm_json_collect(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx,
    ngx_chain_t *in)
{
    size_t                     len, size;
    ssize_t                    n;
    ngx_buf_t                 *b, *j;
    ngx_chain_t               *cl;
    ngx_http_llm_loc_conf_t   *llcf;
    ngx_http_llm_event_info_t  info;

    llcf = ngx_http_get_module_loc_conf(r, ngx_http_llm_module);

    for (cl = in; cl; cl = cl->next) {
        b = cl->buf;

        len = (size_t) ngx_buf_size(b);

        if (ctx->json_overflow) {
            /* unread: the output is estimated from the answer's size */
            if (ctx->api != NGX_HTTP_LLM_API_EMBEDDINGS) {
                ctx->content_bytes += len;
            }

        } else {
            if (ctx->json == NULL) {
                /*
                 * sized by the answer's length when known: a small answer
                 * then fits in the request pool instead of a 16K malloc()
                 */
                size = 16384;

                if (r->headers_out.content_length_n > 0
                    && r->headers_out.content_length_n < 16384)
                {
                    size = (size_t) r->headers_out.content_length_n;
                }

                ctx->json = ngx_create_temp_buf(r->pool,
                                                ngx_min(llcf->response_max_size,
                                                        size));
                if (ctx->json == NULL) {
                    return NGX_ERROR;
                }
            }

            j = ctx->json;

            if ((size_t) (j->last - j->pos) + len > llcf->response_max_size)
            {
                ctx->json_overflow = 1;

                if (ctx->api != NGX_HTTP_LLM_API_EMBEDDINGS) {
                    ctx->content_bytes += (size_t) (j->last - j->pos) + len;
                }

                ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                              "llm response larger than "
                              "llm_response_max_size %uz, usage estimated",
                              llcf->response_max_size);

            } else if (len) {
                if ((size_t) (j->end - j->last) < len) {
                    j = ngx_create_temp_buf(r->pool,
                            ngx_min(llcf->response_max_size,
                                    2 * (size_t) (j->end - j->start) + len));
                    if (j == NULL) {
                        return NGX_ERROR;
                    }

                    j->last = ngx_cpymem(j->pos, ctx->json->pos,
                                         ctx->json->last - ctx->json->pos);
                    ctx->json = j;
                }

                if (b->in_file && !ngx_buf_in_memory(b)) {
                    n = ngx_read_file(b->file, j->last, len, b->file_pos);
                    if (n != (ssize_t) len) {
                        ctx->json_overflow = 1;

                    } else {
                        j->last += len;
                    }

                } else {
                    j->last = ngx_cpymem(j->last, b->pos, len);
                }
            }
        }

        if (!b->last_buf) {
            continue;
        }

        ctx->end = ngx_current_msec;

        if (ctx->json_overflow || ctx->json == NULL) {

            if (r->headers_out.status < NGX_HTTP_BAD_REQUEST) {
                ctx->done = 1;
                ctx->outcome = NGX_HTTP_LLM_OUTCOME_COMPLETE;
            }

            continue;
        }

        ngx_http_llm_response_analyze((int) ctx->api, ctx->json->pos,
                                      ctx->json->last - ctx->json->pos,
                                      &info);

        if (info.usage) {
            ngx_http_llm_usage_merge(&ctx->usage, &info.u);
            ctx->usage_source = NGX_HTTP_LLM_USAGE_UPSTREAM;
        }

        ctx->content_bytes += info.content_bytes;

        if (info.error) {
            ctx->outcome = NGX_HTTP_LLM_OUTCOME_ERROR;

        } else if (r->headers_out.status < NGX_HTTP_BAD_REQUEST) {
            ctx->done = 1;
            ctx->outcome = NGX_HTTP_LLM_OUTCOME_COMPLETE;
        }
    }

    return NGX_OK;
}


static int
ngx_http_llm_sse_event(ngx_http_llm_sse_t *sse, const u_char *name,
    size_t name_len, const u_char *data, size_t len, uint64_t start,
    uint64_t end)
{
    ngx_http_request_t         *r = sse->data;
    ngx_http_llm_ctx_t         *ctx;
    ngx_http_llm_event_info_t   info;

    ctx = ngx_http_get_module_ctx(r, ngx_http_llm_module);

    ctx->events++;

    ngx_http_llm_cache_event(r, name, name_len, data, len);

    if (ctx->retry == NULL
        || ngx_http_llm_retry_held(ctx->retry, end, &info) != NGX_OK)
    {
        ngx_http_llm_event_analyze((int) ctx->api, name, name_len, data, len,
                                   &info);
    }

    if (info.content && !ctx->got_content) {
        ctx->got_content = 1;
        ctx->ttft = ngx_current_msec;

        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "llm: first token after %M ms",
                       ctx->ttft - ctx->start);
    }

    ctx->content_bytes += info.content_bytes;

    if (info.content && ctx->bal.pd) {
        ngx_http_llm_balancer_progress(r);     /* tokens served, TTFT */
    }

    if (info.content_bytes && ctx->limit.nholds) {
        ngx_http_llm_limit_meter(r, ctx);
    }

    if (info.usage) {
        ngx_http_llm_usage_merge(&ctx->usage, &info.u);
        ctx->usage_source = NGX_HTTP_LLM_USAGE_UPSTREAM;
    }

    if (info.usage_only && ctx->strip) {
        ctx->cut_start = start;
        ctx->cut_end = end;
    }

    if (info.error) {
        ctx->error_event = 1;
        ctx->outcome = NGX_HTTP_LLM_OUTCOME_ERROR;

        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "llm upstream sent an error event after %ui events",
                      ctx->events - 1);
    }

    if (info.done) {
        ctx->done = 1;

        if (!ctx->error_event) {
            ctx->outcome = NGX_HTTP_LLM_OUTCOME_COMPLETE;
        }
    }

    return 0;
}


static ngx_int_t
ngx_http_llm_is_type(ngx_http_request_t *r, char *type, size_t len)
{
    ngx_str_t  *ct;

    ct = &r->headers_out.content_type;

    /* the usual spelling first: one memcmp(), not a byte loop */

    if (ct->len < len
        || (ngx_memcmp(ct->data, type, len) != 0
            && ngx_strncasecmp(ct->data, (u_char *) type, len) != 0))
    {
        return NGX_DECLINED;
    }

    if (ct->len > len && ct->data[len] != ';' && ct->data[len] != ' ') {
        return NGX_DECLINED;
    }

    return NGX_OK;
}
