
/*
 * Copyright (C) ngx_llm authors
 *
 * Usage accounting: at the log phase every inspected request has its
 * figures settled, from what upstream reported or, where it reported
 * nothing (aborted or torn streams), from estimates marked as such.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_llm_module.h"


void
ngx_http_llm_usage_settle(ngx_http_request_t *r, ngx_http_llm_ctx_t *ctx)
{
    ngx_http_llm_usage_t  *u;

    if (ctx->finalized) {
        return;
    }

    ctx->finalized = 1;

    if (ctx->end == 0) {
        ctx->end = ngx_current_msec;
    }

    if (ctx->outcome == NGX_HTTP_LLM_OUTCOME_NONE
        || (ctx->outcome != NGX_HTTP_LLM_OUTCOME_REJECTED
            && ctx->outcome != NGX_HTTP_LLM_OUTCOME_ERROR
            && !ctx->done))
    {
        if (r->connection->error
            || r->headers_out.status == 499 /* client closed request */)
        {
            ctx->outcome = NGX_HTTP_LLM_OUTCOME_ABORTED;

        } else if (r->headers_out.status >= NGX_HTTP_BAD_REQUEST) {
            ctx->outcome = NGX_HTTP_LLM_OUTCOME_ERROR;

        } else if (ctx->inspected) {
            ctx->outcome = NGX_HTTP_LLM_OUTCOME_INCOMPLETE;
        }
    }

    if (!ctx->inspected || ctx->fb.tier == NGX_HTTP_LLM_TIER_TEMPLATE) {
        /* a template answer generated nothing */
        return;
    }

    u = &ctx->usage;

    if (ctx->usage_source == NGX_HTTP_LLM_USAGE_UPSTREAM
        && ctx->api == NGX_HTTP_LLM_API_EMBEDDINGS
        && u->completion_tokens < 0)
    {
        /* embeddings generate no output tokens */
        u->completion_tokens = 0;
    }

    if (ctx->sse_response && !ctx->done
        && ctx->usage_source == NGX_HTTP_LLM_USAGE_UPSTREAM)
    {
        /*
         * the final figures never came (Anthropic's message_start has
         * the input and a placeholder output count): the output is
         * estimated from what passed
         */
        u->completion_tokens = -1;
    }

    if (ctx->usage_source == NGX_HTTP_LLM_USAGE_UPSTREAM
        && u->prompt_tokens >= 0 && u->completion_tokens >= 0)
    {
        goto done;
    }

    /*
     * nothing (or only part) came from upstream: estimate what is missing
     * from the request inspection and from the output text that passed
     */

    if (ctx->usage_source == NGX_HTTP_LLM_USAGE_NONE
        && (ctx->outcome == NGX_HTTP_LLM_OUTCOME_REJECTED
            || (ctx->outcome == NGX_HTTP_LLM_OUTCOME_ERROR
                && ctx->content_bytes == 0)))
    {
        /* nothing was generated: no usage to account */
        return;
    }

    if (u->prompt_tokens < 0) {
        u->prompt_tokens = (int64_t) ctx->req.prompt_tokens;
    }

    if (u->completion_tokens < 0) {
        u->completion_tokens = (int64_t) ((ctx->content_bytes
                                           + NGX_HTTP_LLM_BYTES_PER_TOKEN - 1)
                                          / NGX_HTTP_LLM_BYTES_PER_TOKEN);
    }

    ctx->usage_source = NGX_HTTP_LLM_USAGE_ESTIMATED;

done:

    if (ctx->outcome == NGX_HTTP_LLM_OUTCOME_ABORTED) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "llm client closed the %s request after %ui events, "
                      "upstream request cancelled, usage %s: "
                      "prompt %L completion %L",
                      ngx_http_llm_api_name(ctx->api), ctx->events,
                      ctx->usage_source == NGX_HTTP_LLM_USAGE_UPSTREAM
                      ? "from upstream" : "estimated",
                      u->prompt_tokens, u->completion_tokens);

    } else if (ctx->outcome == NGX_HTTP_LLM_OUTCOME_INCOMPLETE
               && ctx->sse_response && !ctx->ended)
    {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "llm upstream stream ended without its terminator "
                      "after %ui events, usage estimated", ctx->events);
    }
}


ngx_int_t
ngx_http_llm_usage_log_handler(ngx_http_request_t *r)
{
    ngx_http_llm_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_llm_module);

    if (ctx == NULL) {
        return NGX_OK;
    }

    ngx_http_llm_usage_settle(r, ctx);
    ngx_http_llm_limit_settle(r, ctx);
    ngx_http_llm_metrics_account(r);
    ngx_http_llm_sidecar_record(r);

    ngx_log_debug8(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "llm usage: model:\"%V\" prompt:%L cached:%L "
                   "completion:%L reasoning:%L source:%d outcome:%d "
                   "events:%ui",
                   &ctx->model, ctx->usage.prompt_tokens,
                   ctx->usage.cached_tokens, ctx->usage.completion_tokens,
                   ctx->usage.reasoning_tokens, (int) ctx->usage_source,
                   (int) ctx->outcome, ctx->events);

    return NGX_OK;
}
