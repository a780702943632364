
/*
 * Copyright (C) ngx_llm authors
 *
 * Request body inspection: pure C, no nginx dependency, linked by the
 * cmocka units and the fuzz targets as well as by the module.
 */


#ifndef _NGX_HTTP_LLM_INSPECT_H_INCLUDED_
#define _NGX_HTTP_LLM_INSPECT_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>


/* client API, from the request path */
#define NGX_HTTP_LLM_API_UNKNOWN        0
#define NGX_HTTP_LLM_API_CHAT           1   /* /v1/chat/completions */
#define NGX_HTTP_LLM_API_COMPLETIONS    2   /* /v1/completions */
#define NGX_HTTP_LLM_API_EMBEDDINGS     3   /* /v1/embeddings */
#define NGX_HTTP_LLM_API_MESSAGES       4   /* Anthropic /v1/messages */

#define NGX_HTTP_LLM_IS_ANTHROPIC(api)  ((api) == NGX_HTTP_LLM_API_MESSAGES)


/* inspection results */
#define NGX_HTTP_LLM_INSPECT_OK         0
#define NGX_HTTP_LLM_INSPECT_EJSON      1   /* invalid JSON / UTF-8 */
#define NGX_HTTP_LLM_INSPECT_ETYPE      2   /* body is not a JSON object */
#define NGX_HTTP_LLM_INSPECT_EFIELD     3   /* missing or ill-typed field */
#define NGX_HTTP_LLM_INSPECT_EDEPTH     4   /* nesting deeper than allowed */
#define NGX_HTTP_LLM_INSPECT_EDUP       5   /* duplicate top-level key */


/* nesting limits (max_depth): 0 selects the default, larger values clamp */
#define NGX_HTTP_LLM_INSPECT_DEFAULT_DEPTH  64
#define NGX_HTTP_LLM_INSPECT_MAX_DEPTH      128


/* conversation prefixes kept after the prefix hash, see msg_hash */
#define NGX_HTTP_LLM_INSPECT_MSG_PREFIXES  8


/* tri-state flags */
#define NGX_HTTP_LLM_UNSET_FLAG         -1


/* a slice of the body, raw JSON text without the quotes for strings */
typedef struct {
    const u_char               *data;
    size_t                      len;
} ngx_http_llm_slice_t;


typedef struct {
    /* input */
    unsigned                    max_depth;

    /* fields, NGX_HTTP_LLM_UNSET_FLAG / -1 when absent */
    ngx_http_llm_slice_t        model;          /* raw, still escaped */
    int                         model_escaped;  /* model contains '\' */
    int                         stream;         /* -1, 0, 1 */
    int                         include_usage;  /* stream_options... */
    int64_t                     max_tokens;     /* max_tokens or
                                                   max_completion_tokens */
    int64_t                     max_tokens_top; /* the larger of both */
    int64_t                     n;
    double                      temperature;    /* NaN when absent */
    double                      top_p;          /* NaN when absent */
    int64_t                     seed;
    int                         has_seed;
    unsigned                    tools;          /* tools[] length */
    unsigned                    messages;       /* messages[] length */
    unsigned                    images;         /* image parts seen */
    int                         json_mode;      /* response_format set */

    /* prompt token estimate, see ngx_http_llm_inspect.c */
    uint64_t                    prompt_tokens;
    uint64_t                    text_bytes;     /* prompt text bytes */

    /*
     * canonical hash of the output-relevant fields (128 bits): object key
     * order, whitespace, string escapes and number spelling do not change
     * it; stream, stream_options, user, metadata, request ids and the
     * other fields listed in ngx_http_llm_inspect.c do not enter it
     */
    uint64_t                    hash[2];

    /* hash of model + system + tools: the prompt prefix identity */
    uint64_t                    prefix_hash;

    /*
     * the conversation after the leading system messages, message by
     * message (first NGX_HTTP_LLM_INSPECT_MSG_PREFIXES): msg_hash[i]
     * covers prefix_hash and messages 0 .. i of it (canonically, as the
     * request hash), msg_tokens[i] their estimated text tokens
     */
    uint64_t                    msg_hash[NGX_HTTP_LLM_INSPECT_MSG_PREFIXES];
    uint32_t                    msg_tokens[NGX_HTTP_LLM_INSPECT_MSG_PREFIXES];
    unsigned                    msg_prefixes;

    /* positions (byte offsets into the body) for rewriting */
    ssize_t                     stream_options_start;   /* value start */
    ssize_t                     stream_options_end;     /* value end */
    size_t                      object_end;     /* offset of final '}' */
    unsigned                    object_empty;   /* '{}' */
    unsigned                    prompt_cache_key; /* a top-level member */

    /* error details when inspect returns != OK */
    const char                 *error;          /* static message */
    const char                 *error_param;    /* field name or NULL */
    size_t                      error_offset;
    ngx_http_llm_slice_t        error_key;      /* EDUP: the raw key */
} ngx_http_llm_request_t;


/*
 * Inspects one complete body (contiguous). Returns NGX_HTTP_LLM_INSPECT_*;
 * on error req->error is a static, human readable message.
 */
int ngx_http_llm_inspect(ngx_http_llm_request_t *req, int api,
    const u_char *body, size_t len);

/*
 * Unescapes a string slice the inspector accepted (e.g. req->model when
 * model_escaped) into out; returns its length, or -1 if cap is too small.
 */
ssize_t ngx_http_llm_unescape(const u_char *raw, size_t len, u_char *out,
    size_t cap);


#endif /* _NGX_HTTP_LLM_INSPECT_H_INCLUDED_ */
