
/*
 * Copyright (C) ngx_llm authors
 *
 * A small asynchronous Redis client for worker processes: hiredis's async
 * API driven by the nginx event loop (its socket is an ngx_connection_t,
 * its timeouts are nginx timers). It never blocks the worker.
 *
 * Use, per worker process (e.g. from init_process):
 *
 *     rd = ngx_http_llm_redis_create(cycle->pool, cycle->log, &addr,
 *                                    "limit zone \"x\"", 1000, 1000);
 *
 *     if (ngx_http_llm_redis_command(rd, my_reply, my_data,
 *                                    "INCRBY %b %lld", k, klen, n)
 *         != NGX_OK)
 *     {
 *         ... not connected (or out of memory): degrade, try later ...
 *     }
 *
 *     static void
 *     my_reply(ngx_http_llm_redis_t *rd, redisReply *reply, void *data)
 *     {
 *         reply == NULL: the command failed (timeout, connection lost);
 *         otherwise a hiredis reply, freed by hiredis after the call.
 *     }
 *
 * - Addresses: "redis://host:port" or "host:port" with a literal IP
 *   (resolved at configuration time only, never in a worker); see
 *   ngx_http_llm_redis_parse_url().
 * - Connection: opened by create() and again after any failure, with an
 *   exponential backoff (100 ms doubling up to 5 s). Commands issued while
 *   disconnected are refused at once (NGX_DECLINED): callers keep their
 *   own state and retry on their schedule, nothing queues unbounded.
 * - Timeouts: connect_timeout for the TCP connect, command_timeout for
 *   the oldest outstanding command; either one drops the connection,
 *   every pending callback then gets NULL.
 * - Logs: an outage is logged once when it starts (error), then at most
 *   once per NGX_HTTP_LLM_REDIS_LOG_INTERVAL while it lasts, and once
 *   when the connection comes back (notice). Lines start with "llm redis".
 * - Callbacks run from the event loop, never from inside the caller's
 *   ngx_http_llm_redis_command() call.
 */


#ifndef _NGX_HTTP_LLM_REDIS_H_INCLUDED_
#define _NGX_HTTP_LLM_REDIS_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>

#include <hiredis/hiredis.h>
#include <hiredis/async.h>


#define NGX_HTTP_LLM_REDIS_LOG_INTERVAL  60000   /* ms */


typedef struct ngx_http_llm_redis_s  ngx_http_llm_redis_t;

typedef void (*ngx_http_llm_redis_handler_pt)(ngx_http_llm_redis_t *rd,
    redisReply *reply, void *data);


/* parses "redis://host:port" or "host:port" (port default 6379) */
ngx_int_t ngx_http_llm_redis_parse_url(ngx_conf_t *cf, ngx_str_t *url,
    ngx_addr_t *addr);

ngx_http_llm_redis_t *ngx_http_llm_redis_create(ngx_pool_t *pool,
    ngx_log_t *log, ngx_addr_t *addr, const char *purpose,
    ngx_msec_t connect_timeout, ngx_msec_t command_timeout);

/*
 * Sends a command (hiredis printf-like format). Returns NGX_OK when
 * queued (the handler will be called exactly once), NGX_DECLINED when
 * not connected, NGX_ERROR on failure.
 */
ngx_int_t ngx_http_llm_redis_command(ngx_http_llm_redis_t *rd,
    ngx_http_llm_redis_handler_pt handler, void *data, const char *fmt, ...);

/* the same with an argument vector */
ngx_int_t ngx_http_llm_redis_command_argv(ngx_http_llm_redis_t *rd,
    ngx_http_llm_redis_handler_pt handler, void *data, int argc,
    const char **argv, const size_t *argvlen);

ngx_uint_t ngx_http_llm_redis_connected(ngx_http_llm_redis_t *rd);

/* commands sent and not yet answered */
ngx_uint_t ngx_http_llm_redis_pending(ngx_http_llm_redis_t *rd);

/* closes for good (exit_process): pending handlers get NULL */
void ngx_http_llm_redis_close(ngx_http_llm_redis_t *rd);


#endif /* _NGX_HTTP_LLM_REDIS_H_INCLUDED_ */
