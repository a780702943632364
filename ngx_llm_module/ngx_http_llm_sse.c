
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
static ngx_int_t ngx_http_llm_body_filter(ngx_http_request_t *r,
    ngx_chain_t *in);
static ngx_int_t ngx_http_llm_sse_watch(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx, ngx_chain_t *in);
static ngx_int_t ngx_http_llm_sse_strip(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx, ngx_chain_t *in);
static ngx_int_t ngx_http_llm_json_collect(ngx_http_request_t *r,
    ngx_http_llm_ctx_t *ctx, ngx_chain_t *in);
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
    u_char                   *buf;
    ngx_http_llm_ctx_t       *ctx;
    ngx_http_llm_loc_conf_t  *llcf;

    if (r != r->main) {
        return ngx_http_next_header_filter(r);
    }

    ctx = ngx_http_get_module_ctx(r, ngx_http_llm_module);

    if (ctx == NULL || !ctx->inspected) {
        return ngx_http_next_header_filter(r);
    }

    llcf = ngx_http_get_module_loc_conf(r, ngx_http_llm_module);

    if (r->headers_out.status >= NGX_HTTP_BAD_REQUEST) {
        ctx->outcome = NGX_HTTP_LLM_OUTCOME_ERROR;
    }

    if (ngx_http_llm_is_type(r, "text/event-stream",
                             sizeof("text/event-stream") - 1)
        == NGX_OK)
    {
        ctx->sse_response = 1;

        buf = ngx_pnalloc(r->pool, llcf->sse_event_max_size);
        if (buf == NULL) {
            return NGX_ERROR;
        }

        ngx_http_llm_sse_init(&ctx->sse, buf, llcf->sse_event_max_size,
                              ngx_http_llm_sse_event, r);

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


static ngx_int_t
ngx_http_llm_body_filter(ngx_http_request_t *r, ngx_chain_t *in)
{
    ngx_int_t            rc;
    ngx_http_llm_ctx_t  *ctx;

    if (r != r->main || in == NULL) {
        return ngx_http_next_body_filter(r, in);
    }

    ctx = ngx_http_get_module_ctx(r, ngx_http_llm_module);

    if (ctx == NULL || !ctx->inspected) {
        return ngx_http_next_body_filter(r, in);
    }

    if (ctx->sse_response) {
        if (ctx->strip) {
            return ngx_http_llm_sse_strip(r, ctx, in);
        }

        rc = ngx_http_llm_sse_watch(r, ctx, in);

    } else if (ctx->json_response) {
        rc = ngx_http_llm_json_collect(r, ctx, in);

    } else {
        rc = NGX_OK;
    }

    if (rc != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_http_next_body_filter(r, in);
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
 * Event-aligned output: complete events are emitted at once (except the
 * usage-only chunk the gateway asked for), the bytes of an event not yet
 * complete wait in ctx->pending, copied, since upstream reuses its buffer.
 */

static ngx_int_t
ngx_http_llm_sse_strip(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx,
    ngx_chain_t *in)
{
    off_t         size;
    size_t        n, keep, skip, room;
    u_char       *p, *src;
    uint64_t      off, cut_start, cut_end;
    ngx_int_t     rc;
    ngx_buf_t    *b, *out_b;
    ngx_uint_t    last, flush;
    ngx_chain_t  *cl, *out, **ll;

    size = 0;
    last = 0;
    flush = 0;

    for (cl = in; cl; cl = cl->next) {
        if (ngx_buf_in_memory(cl->buf)) {
            size += cl->buf->last - cl->buf->pos;
        }

        last |= cl->buf->last_buf;
        flush |= cl->buf->flush;
    }

    /* pending + new bytes, then cut on event boundaries */

    n = (ctx->pending ? (size_t) (ctx->pending->last - ctx->pending->pos)
                      : 0)
        + (size_t) size;

    out = NULL;
    ll = &out;

    cl = ngx_chain_get_free_buf(r->pool, &ctx->free);
    if (cl == NULL) {
        return NGX_ERROR;
    }

    out_b = cl->buf;

    if ((size_t) (out_b->end - out_b->start) < n || out_b->start == NULL) {
        out_b->start = ngx_palloc(r->pool, ngx_max(n, 4096));
        if (out_b->start == NULL) {
            return NGX_ERROR;
        }

        out_b->end = out_b->start + ngx_max(n, 4096);
    }

    out_b->pos = out_b->start;
    out_b->last = out_b->start;
    out_b->temporary = 1;
    out_b->flush = 1;
    out_b->tag = (ngx_buf_tag_t) &ngx_http_llm_module;
    out_b->last_buf = 0;

    /* the stream offset of the first byte in out_b */

    off = ctx->emitted;

    if (ctx->pending && ctx->pending->last > ctx->pending->pos) {
        out_b->last = ngx_cpymem(out_b->last, ctx->pending->pos,
                                 ctx->pending->last - ctx->pending->pos);
        ctx->pending->last = ctx->pending->pos;
    }

    for (cl = in; cl; cl = cl->next) {
        b = cl->buf;

        if (!ngx_buf_in_memory(b) || b->last == b->pos) {
            continue;
        }

        src = b->pos;
        (void) ngx_http_llm_sse_feed(&ctx->sse, src, b->last - src);
        out_b->last = ngx_cpymem(out_b->last, src, b->last - src);
        b->pos = b->last;
    }

    /*
     * ctx->sse.event_start is where the event not yet complete begins:
     * everything before it is complete events
     */

    keep = (size_t) (out_b->last - out_b->pos);

    if (!last && ctx->sse.event_start >= off) {
        keep = (size_t) (ctx->sse.event_start - off);
    }

    /* drop the usage chunk if it lies in the complete part */

    cut_start = ctx->cut_start;
    cut_end = ctx->cut_end;

    if (cut_end > cut_start && cut_start >= off && cut_end <= off + keep) {
        skip = (size_t) (cut_end - cut_start);
        p = out_b->pos + (cut_start - off);

        ngx_memmove(p, p + skip, out_b->last - (p + skip));
        out_b->last -= skip;
        keep -= skip;
        off += skip;    /* those stream bytes are accounted as emitted */
        ctx->cut_start = ctx->cut_end = 0;

        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "llm: stripped usage chunk of %uz bytes", skip);
    }

    /* the incomplete tail waits */

    n = (size_t) (out_b->last - out_b->pos) - keep;

    if (n) {
        if (ctx->pending == NULL
            || (size_t) (ctx->pending->end - ctx->pending->start) < n)
        {
            room = ngx_max(n, 1024);

            if (ctx->pending) {
                room = ngx_max(room,
                          2 * (size_t) (ctx->pending->end
                                        - ctx->pending->start));
            }

            ctx->pending = ngx_create_temp_buf(r->pool, room);
            if (ctx->pending == NULL) {
                return NGX_ERROR;
            }
        }

        ctx->pending->pos = ctx->pending->start;
        ctx->pending->last = ngx_cpymem(ctx->pending->start,
                                        out_b->pos + keep, n);
        out_b->last = out_b->pos + keep;
    }

    ctx->emitted = off + keep;

    if (last) {
        out_b->last_buf = 1;
        ctx->end = ngx_current_msec;
    }

    if (out_b->last == out_b->pos && !last) {
        /* nothing complete yet: keep the buffer for the next call */
        cl->next = ctx->free;
        ctx->free = cl;

        if (!flush) {
            return NGX_OK;
        }

        return ngx_http_next_body_filter(r, NULL);
    }

    if (out_b->last == out_b->pos) {
        out_b->temporary = 0;
        out_b->sync = 1;
    }

    *ll = cl;
    cl->next = NULL;

    rc = ngx_http_next_body_filter(r, out);

    ngx_chain_update_chains(r->pool, &ctx->free, &ctx->busy, &out,
                            (ngx_buf_tag_t) &ngx_http_llm_module);

    return rc;
}


static ngx_int_t
ngx_http_llm_json_collect(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx,
    ngx_chain_t *in)
{
    size_t                     len;
    ssize_t                    n;
    ngx_buf_t                 *b, *j;
    ngx_chain_t               *cl;
    ngx_http_llm_loc_conf_t   *llcf;
    ngx_http_llm_event_info_t  info;

    llcf = ngx_http_get_module_loc_conf(r, ngx_http_llm_module);

    for (cl = in; cl; cl = cl->next) {
        b = cl->buf;

        if (!ctx->json_overflow) {
            len = (size_t) ngx_buf_size(b);

            if (ctx->json == NULL) {
                ctx->json = ngx_create_temp_buf(r->pool,
                                                ngx_min(llcf->response_max_size,
                                                        16384));
                if (ctx->json == NULL) {
                    return NGX_ERROR;
                }
            }

            j = ctx->json;

            if ((size_t) (j->last - j->pos) + len > llcf->response_max_size)
            {
                ctx->json_overflow = 1;

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

    ngx_http_llm_event_analyze((int) ctx->api, name, name_len, data, len,
                               &info);

    if (info.content && !ctx->got_content) {
        ctx->got_content = 1;
        ctx->ttft = ngx_current_msec;

        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "llm: first token after %M ms",
                       ctx->ttft - ctx->start);
    }

    ctx->content_bytes += info.content_bytes;

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

    if (ct->len < len || ngx_strncasecmp(ct->data, (u_char *) type, len) != 0)
    {
        return NGX_DECLINED;
    }

    if (ct->len > len && ct->data[len] != ';' && ct->data[len] != ' ') {
        return NGX_DECLINED;
    }

    return NGX_OK;
}
