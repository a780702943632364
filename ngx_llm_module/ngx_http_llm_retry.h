
/*
 * Copyright (C) ngx_llm authors
 *
 * llm_retry: a streamed answer is tried again on the next upstream server
 * when it fails before its first token reached the client: an error event,
 * the end of the stream (EOF, reset) or llm_first_token_timeout after a
 * "200 text/event-stream" header. The header and the events before the
 * first content event are held back; every retry goes through nginx's own
 * next-upstream machinery (proxy_next_upstream, _tries, _timeout,
 * max_fails, the balancer).
 */


#ifndef _NGX_HTTP_LLM_RETRY_H_INCLUDED_
#define _NGX_HTTP_LLM_RETRY_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_llm_event.h"


/* why a try was given up, the reason label of llm_upstream_retries_total */
#define NGX_HTTP_LLM_RETRY_ERROR_EVENT  0   /* SSE error event */
#define NGX_HTTP_LLM_RETRY_EOF          1   /* closed or reset, held */
#define NGX_HTTP_LLM_RETRY_TIMEOUT      2   /* first token too late */
#define NGX_HTTP_LLM_RETRY_STATUS       3   /* 5xx / 429, nginx's own */
#define NGX_HTTP_LLM_RETRY_ERROR        4   /* connect, reset, timeout
                                               before any header */
#define NGX_HTTP_LLM_RETRY_REASONS      5

/* events of the held try whose analysis is kept for the stream watcher */
#define NGX_HTTP_LLM_RETRY_INFOS        4


/* a member of ngx_http_llm_loc_conf_t */
typedef struct {
    ngx_flag_t                  enable;
    ngx_msec_t                  first_token_timeout;    /* 0: off */
    ngx_str_t                   file;       /* where llm_retry was set */
    ngx_uint_t                  line;
} ngx_http_llm_retry_conf_t;


/* per client request, when llm_retry applies (ctx->retry) */
typedef struct {
    ngx_http_request_t         *request;
    ngx_http_upstream_t        *upstream;
    ngx_uint_t                  api;

    ngx_http_handler_pt         content_handler;        /* proxy's */
    ngx_int_t                 (*process_header)(ngx_http_request_t *r);
    ngx_int_t                 (*reinit_request)(ngx_http_request_t *r);
    void                      (*finalize_request)(ngx_http_request_t *r,
                                                  ngx_int_t rc);

    ngx_event_t                 timer;      /* llm_first_token_timeout */
    ngx_msec_t                  timeout;

    /* the try being held */
    ngx_http_llm_sse_t          sse;
    ngx_http_chunked_t          chunked;
    u_char                     *scan;       /* first byte not scanned */
    off_t                       body;       /* body bytes scanned */

    /* the held events, analysed once: ngx_http_llm_retry_held() */
    ngx_uint_t                  ninfos;
    ngx_uint_t                  next;
    uint64_t                    ends[NGX_HTTP_LLM_RETRY_INFOS];
    ngx_http_llm_event_info_t   infos[NGX_HTTP_LLM_RETRY_INFOS];

    ngx_uint_t                  base;       /* our first upstream state */
    ngx_uint_t                  state;      /* that of the held try */
    ngx_uint_t                  max;        /* tries allowed, at most */
    ngx_uint_t                  retries;    /* settled at finalize */
    ngx_uint_t                  carried;    /* of earlier groups */
    ngx_uint_t                  reasons[NGX_HTTP_LLM_RETRY_REASONS];

    unsigned                    reason:3;   /* of a failed try */
    unsigned                    failed:1;   /* reason is set */
    unsigned                    holding:1;  /* 200 SSE header held */
    unsigned                    verdict:2;  /* of the scanner */
    unsigned                    released:1; /* passed to the client */
    unsigned                    finalized:1;
} ngx_http_llm_retry_t;


/* directive handler of llm_retry (records where it was set) */
char *ngx_http_llm_retry_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
void ngx_http_llm_retry_create_conf(ngx_http_llm_retry_conf_t *conf);
char *ngx_http_llm_retry_merge_conf(ngx_conf_t *cf,
    ngx_http_llm_retry_conf_t *prev, ngx_http_llm_retry_conf_t *conf);

/* body phase, before the content handler runs: wraps it */
ngx_int_t ngx_http_llm_retry_install(ngx_http_request_t *r);
ngx_int_t ngx_http_llm_retry_hop(ngx_http_request_t *r);

/*
 * The stream watcher (ngx_http_llm_sse.c), for the event ending at stream
 * offset end: NGX_OK and its analysis when the hold made it already
 */
ngx_int_t ngx_http_llm_retry_held(ngx_http_llm_retry_t *rs, uint64_t end,
    ngx_http_llm_event_info_t *info);

/* $llm_retries */
ngx_int_t ngx_http_llm_retry_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);

/* the reason labels, in the order of NGX_HTTP_LLM_RETRY_* */
extern const char  *ngx_http_llm_retry_reasons[];


#endif /* _NGX_HTTP_LLM_RETRY_H_INCLUDED_ */
