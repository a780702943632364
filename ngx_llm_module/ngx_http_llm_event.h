
/*
 * Copyright (C) ngx_llm authors
 *
 * Response side, pure C (no nginx dependency): an incremental SSE framer
 * that accepts the stream in reads split at any byte, and the analysis of
 * one event or one JSON response body for both client APIs: content seen,
 * usage figures, terminator, error.
 */


#ifndef _NGX_HTTP_LLM_EVENT_H_INCLUDED_
#define _NGX_HTTP_LLM_EVENT_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif


/*
 * OpenAI meaning for both APIs: prompt_tokens is the whole prompt, for
 * Anthropic input_tokens + cache_read_input_tokens +
 * cache_creation_input_tokens (its input_tokens is only the uncached
 * part); the uncached part is prompt - cached - cache_write.
 */

typedef struct {
    int64_t                     prompt_tokens;      /* -1 when unknown */
    int64_t                     completion_tokens;
    int64_t                     cached_tokens;      /* cache reads */
    int64_t                     cache_write_tokens; /* Anthropic creation */
    int64_t                     reasoning_tokens;
} ngx_http_llm_usage_t;


/* what one event (or one JSON response) told us */
typedef struct {
    unsigned                    content:1;      /* carries output content:
                                                   text, tool call, refusal,
                                                   reasoning */
    unsigned                    usage:1;        /* usage figures present */
    unsigned                    usage_only:1;   /* OpenAI chunk with
                                                   "choices":[] and usage */
    unsigned                    done:1;         /* [DONE] / message_stop */
    unsigned                    error:1;        /* error event / object */
    unsigned                    finish:1;       /* finish/stop reason seen */

    size_t                      content_bytes;  /* output text bytes,
                                                   unescaped */
    ngx_http_llm_usage_t        u;              /* -1 fields not present */
} ngx_http_llm_event_info_t;


void ngx_http_llm_usage_init(ngx_http_llm_usage_t *u);

/*
 * Merges the fields present in "from" into "to" (Anthropic reports input
 * in message_start and output in message_delta).
 */
void ngx_http_llm_usage_merge(ngx_http_llm_usage_t *to,
    const ngx_http_llm_usage_t *from);


/*
 * Analyses one SSE event: its "event:" name (may be empty) and its data
 * (the "data:" lines joined with '\n', as the SSE spec says). api is an
 * NGX_HTTP_LLM_API_* value. Never fails: garbage yields an empty info.
 */
void ngx_http_llm_event_analyze(int api, const u_char *name, size_t name_len,
    const u_char *data, size_t len, ngx_http_llm_event_info_t *info);

/*
 * Analyses a complete non-streaming JSON response body (chat.completion,
 * text_completion, embeddings list, Anthropic message, or an error object).
 */
void ngx_http_llm_response_analyze(int api, const u_char *body, size_t len,
    ngx_http_llm_event_info_t *info);

/*
 * The same with the full analysis only, never the fast path: what the fast
 * path must agree with on every body (unit tests and fuzz_response check).
 */
void ngx_http_llm_response_analyze_full(int api, const u_char *body,
    size_t len, ngx_http_llm_event_info_t *info);


/* SSE framer */

#define NGX_HTTP_LLM_SSE_NAME_MAX  64
#define NGX_HTTP_LLM_SSE_BUF       1024


typedef struct ngx_http_llm_sse_s  ngx_http_llm_sse_t;

/*
 * Returns a buffer of size bytes for the event data (the framer copies
 * the bytes held so far into it), or NULL: the event is then cut there,
 * as if it had reached cap.
 */
typedef u_char *(*ngx_http_llm_sse_grow_pt)(ngx_http_llm_sse_t *sse,
    size_t size);

/*
 * Called once per complete event. start/end are absolute offsets in the
 * stream of the first byte of the event and of the byte after the blank
 * line that ends it. Return non-zero to stop feeding.
 */
typedef int (*ngx_http_llm_sse_handler_pt)(ngx_http_llm_sse_t *sse,
    const u_char *name, size_t name_len, const u_char *data, size_t len,
    uint64_t start, uint64_t end);


struct ngx_http_llm_sse_s {
    /* set by the caller */
    u_char                     *buf;            /* event data storage */
    size_t                      size;           /* its size */
    size_t                      cap;            /* event data limit */
    ngx_http_llm_sse_grow_pt    grow;           /* NULL: buf is fixed */
    ngx_http_llm_sse_handler_pt handler;
    void                       *data;           /* caller context */

    /* state, zeroed by ngx_http_llm_sse_init() */
    uint64_t                    offset;         /* stream bytes consumed */
    uint64_t                    event_start;
    size_t                      len;            /* data bytes in buf */
    unsigned                    truncated:1;    /* data exceeded cap */
    unsigned                    has_data:1;     /* a data: line was seen */
    unsigned                    state:4;
    unsigned                    field:3;
    unsigned                    after_cr:1;
    size_t                      field_len;
    u_char                      field_name[8];
    size_t                      name_len;
    u_char                      name[NGX_HTTP_LLM_SSE_NAME_MAX];
    uint64_t                    events;
};


/*
 * buf holds cap bytes. With buf NULL, the storage comes from sse->grow (set
 * it after init) when an event needs it: NGX_HTTP_LLM_SSE_BUF bytes first,
 * doubling up to cap.
 */
void ngx_http_llm_sse_init(ngx_http_llm_sse_t *sse, u_char *buf, size_t cap,
    ngx_http_llm_sse_handler_pt handler, void *data);

/*
 * Feeds bytes; calls the handler for every event completed by them. Lines
 * end in "\n", "\r\n" or "\r"; comments (":") and unknown fields are
 * ignored; an event is dispatched at a blank line only if it had data.
 * Data beyond cap is dropped and the event marked truncated (the handler
 * still runs, with the bytes kept). Returns 0, or the handler's non-zero.
 */
int ngx_http_llm_sse_feed(ngx_http_llm_sse_t *sse, const u_char *p,
    size_t len);


/* the first CR or LF from p on, or end */

static inline const u_char *
ngx_http_llm_sse_eol(const u_char *p, const u_char *end)
{
#if defined(__SSE2__)
    int      mask;
    __m128i  v, cr, lf;

    cr = _mm_set1_epi8('\r');
    lf = _mm_set1_epi8('\n');

    while (end - p >= 16) {
        v = _mm_loadu_si128((const __m128i *) p);
        mask = _mm_movemask_epi8(_mm_or_si128(_mm_cmpeq_epi8(v, cr),
                                              _mm_cmpeq_epi8(v, lf)));
        if (mask) {
            return p + __builtin_ctz(mask);
        }

        p += 16;
    }
#endif

    while (p < end && *p != '\n' && *p != '\r') {
        p++;
    }

    return p;
}


#endif /* _NGX_HTTP_LLM_EVENT_H_INCLUDED_ */
