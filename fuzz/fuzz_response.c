
/*
 * Copyright (C) ngx_llm authors
 *
 * libFuzzer target for the analysis of JSON responses and event data, for
 * both APIs, with an event name taken from the input.
 */


#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ngx_http_llm_event.h"
#include "ngx_http_llm_inspect.h"


#define check(cond)                                                           \
    if (!(cond)) {                                                            \
        fprintf(stderr, "fuzz_response: %s:%d: %s\n", __FILE__, __LINE__,    \
                #cond);                                                       \
        abort();                                                              \
    }


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


static void
fuzz_check(const ngx_http_llm_event_info_t *info)
{
    check(!info->usage_only || info->usage);
    check(info->content_bytes == 0 || info->content);
    check(info->u.prompt_tokens >= -1 && info->u.completion_tokens >= -1);
    check(info->u.cached_tokens >= -1 && info->u.cache_write_tokens >= -1);
    check(info->u.reasoning_tokens >= -1);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int                         api;
    size_t                      nlen;
    const u_char               *body;
    ngx_http_llm_event_info_t   info, full;

    static const char  *names[] = {
        "", "message_start", "content_block_delta", "message_delta",
        "message_stop", "error", "ping", "completion"
    };

    if (size == 0) {
        return 0;
    }

    api = (data[0] & 1) ? NGX_HTTP_LLM_API_MESSAGES : NGX_HTTP_LLM_API_CHAT;
    body = data + 1;
    nlen = strlen(names[(data[0] >> 1) % 8]);

    ngx_http_llm_response_analyze(api, body, size - 1, &info);
    fuzz_check(&info);

    /* the fast path, when it took the body, agrees with the full analysis */

    ngx_http_llm_response_analyze_full(api, body, size - 1, &full);

    check(info.content == full.content && info.usage == full.usage);
    check(info.usage_only == full.usage_only && info.done == full.done);
    check(info.error == full.error && info.finish == full.finish);
    check(info.content_bytes == full.content_bytes);
    check(memcmp(&info.u, &full.u, sizeof(ngx_http_llm_usage_t)) == 0);

    ngx_http_llm_event_analyze(api, (const u_char *) names[(data[0] >> 1) % 8],
                               nlen, body, size - 1, &info);
    fuzz_check(&info);

    return 0;
}
