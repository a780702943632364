
/*
 * Copyright (C) ngx_llm authors
 *
 * Asynchronous Redis client on the nginx event loop: see
 * ngx_http_llm_redis.h. hiredis owns the socket and the protocol; this
 * file gives it an adapter (its fd wrapped in an ngx_connection_t whose
 * level-triggered read / write events call hiredis back) and adds what
 * hiredis 0.14 lacks: timeouts, reconnection and outage logging.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>

#include "ngx_http_llm_redis.h"


#define NGX_HTTP_LLM_REDIS_BACKOFF_MIN  100
#define NGX_HTTP_LLM_REDIS_BACKOFF_MAX  5000


struct ngx_http_llm_redis_s {
    redisAsyncContext          *ac;
    ngx_connection_t           *conn;
    ngx_log_t                  *log;

    ngx_str_t                   name;           /* "ip:port" */
    u_char                      ip[NGX_INET6_ADDRSTRLEN + 1];
    int                         port;
    const char                 *purpose;

    ngx_msec_t                  connect_timeout;
    ngx_msec_t                  command_timeout;
    ngx_msec_t                  backoff;

    ngx_event_t                 reconnect;      /* backoff timer */
    ngx_event_t                 timeout;        /* connect / command */

    ngx_uint_t                  pending;
    ngx_msec_t                  down_since;
    ngx_msec_t                  logged;

    unsigned                    connected:1;
    unsigned                    down:1;
    unsigned                    closed:1;
};


typedef struct {
    ngx_http_llm_redis_t           *rd;
    ngx_http_llm_redis_handler_pt   handler;
    void                           *data;
} ngx_http_llm_redis_cmd_t;


static void ngx_http_llm_redis_connect(ngx_http_llm_redis_t *rd);
static void ngx_http_llm_redis_failed(ngx_http_llm_redis_t *rd,
    const char *why);
static void ngx_http_llm_redis_on_connect(const redisAsyncContext *ac,
    int status);
static void ngx_http_llm_redis_on_disconnect(const redisAsyncContext *ac,
    int status);
static void ngx_http_llm_redis_on_reply(redisAsyncContext *ac, void *reply,
    void *privdata);
static ngx_http_llm_redis_cmd_t *ngx_http_llm_redis_cmd(
    ngx_http_llm_redis_t *rd, ngx_http_llm_redis_handler_pt handler,
    void *data);
static void ngx_http_llm_redis_sent(ngx_http_llm_redis_t *rd);
static void ngx_http_llm_redis_reconnect_handler(ngx_event_t *ev);
static void ngx_http_llm_redis_timeout_handler(ngx_event_t *ev);
static void ngx_http_llm_redis_read_handler(ngx_event_t *ev);
static void ngx_http_llm_redis_write_handler(ngx_event_t *ev);
static void ngx_http_llm_redis_add_read(void *privdata);
static void ngx_http_llm_redis_del_read(void *privdata);
static void ngx_http_llm_redis_add_write(void *privdata);
static void ngx_http_llm_redis_del_write(void *privdata);
static void ngx_http_llm_redis_cleanup(void *privdata);


ngx_int_t
ngx_http_llm_redis_parse_url(ngx_conf_t *cf, ngx_str_t *url, ngx_addr_t *addr)
{
    ngx_url_t  u;

    ngx_memzero(&u, sizeof(ngx_url_t));

    u.url = *url;
    u.default_port = 6379;
    u.no_resolve = 1;

    if (u.url.len > sizeof("redis://") - 1
        && ngx_strncasecmp(u.url.data, (u_char *) "redis://", 8) == 0)
    {
        u.url.data += 8;
        u.url.len -= 8;
    }

    if (ngx_parse_url(cf->pool, &u) != NGX_OK) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid redis address \"%V\"%s%s", url,
                           u.err ? ": " : "", u.err ? u.err : "");
        return NGX_ERROR;
    }

    if (u.naddrs == 0 || u.uri.len || u.family == AF_UNIX) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid redis address \"%V\": use "
                           "redis://IP:PORT", url);
        return NGX_ERROR;
    }

    *addr = u.addrs[0];

    return NGX_OK;
}


ngx_http_llm_redis_t *
ngx_http_llm_redis_create(ngx_pool_t *pool, ngx_log_t *log, ngx_addr_t *addr,
    const char *purpose, ngx_msec_t connect_timeout,
    ngx_msec_t command_timeout)
{
    size_t                 len;
    ngx_http_llm_redis_t  *rd;

    rd = ngx_pcalloc(pool, sizeof(ngx_http_llm_redis_t));
    if (rd == NULL) {
        return NULL;
    }

    rd->log = log;
    rd->name = addr->name;
    rd->purpose = purpose;
    rd->connect_timeout = connect_timeout;
    rd->command_timeout = command_timeout;
    rd->backoff = NGX_HTTP_LLM_REDIS_BACKOFF_MIN;
    rd->port = ngx_inet_get_port(addr->sockaddr);

    len = ngx_sock_ntop(addr->sockaddr, addr->socklen, rd->ip,
                        NGX_INET6_ADDRSTRLEN, 0);
    rd->ip[len] = '\0';

    rd->reconnect.handler = ngx_http_llm_redis_reconnect_handler;
    rd->reconnect.data = rd;
    rd->reconnect.log = log;
    rd->reconnect.cancelable = 1;

    rd->timeout.handler = ngx_http_llm_redis_timeout_handler;
    rd->timeout.data = rd;
    rd->timeout.log = log;
    rd->timeout.cancelable = 1;

    ngx_http_llm_redis_connect(rd);

    return rd;
}


static void
ngx_http_llm_redis_connect(ngx_http_llm_redis_t *rd)
{
    ngx_connection_t   *c;
    redisAsyncContext  *ac;

    ac = redisAsyncConnect((char *) rd->ip, rd->port);

    if (ac == NULL) {
        ngx_http_llm_redis_failed(rd, "out of memory");
        return;
    }

    if (ac->err) {
        ngx_http_llm_redis_failed(rd, ac->errstr);
        redisAsyncFree(ac);
        return;
    }

    c = ngx_get_connection(ac->c.fd, rd->log);
    if (c == NULL) {
        ngx_http_llm_redis_failed(rd, "no free worker connection");
        redisAsyncFree(ac);
        return;
    }

    c->data = rd;
    c->read->handler = ngx_http_llm_redis_read_handler;
    c->write->handler = ngx_http_llm_redis_write_handler;
    c->read->log = rd->log;
    c->write->log = rd->log;

    rd->ac = ac;
    rd->conn = c;

    ac->data = rd;
    ac->ev.data = rd;
    ac->ev.addRead = ngx_http_llm_redis_add_read;
    ac->ev.delRead = ngx_http_llm_redis_del_read;
    ac->ev.addWrite = ngx_http_llm_redis_add_write;
    ac->ev.delWrite = ngx_http_llm_redis_del_write;
    ac->ev.cleanup = ngx_http_llm_redis_cleanup;

    /* the connect callback arms the write event that detects the connect */

    redisAsyncSetDisconnectCallback(ac, ngx_http_llm_redis_on_disconnect);
    redisAsyncSetConnectCallback(ac, ngx_http_llm_redis_on_connect);

    ngx_add_timer(&rd->timeout, rd->connect_timeout);
}


static void
ngx_http_llm_redis_on_connect(const redisAsyncContext *ac, int status)
{
    ngx_http_llm_redis_t  *rd = ac->data;

    if (rd->timeout.timer_set) {
        ngx_del_timer(&rd->timeout);
    }

    if (status != REDIS_OK) {
        /* hiredis frees the context after this callback */
        rd->ac = NULL;
        ngx_http_llm_redis_failed(rd, ac->errstr);
        return;
    }

    rd->connected = 1;
    rd->backoff = NGX_HTTP_LLM_REDIS_BACKOFF_MIN;

    if (rd->down) {
        rd->down = 0;
        ngx_log_error(NGX_LOG_NOTICE, rd->log, 0,
                      "llm redis %V for %s is reachable again after %M ms",
                      &rd->name, rd->purpose,
                      ngx_current_msec - rd->down_since);

    } else {
        ngx_log_debug2(NGX_LOG_DEBUG_EVENT, rd->log, 0,
                       "llm redis %V for %s connected", &rd->name,
                       rd->purpose);
    }
}


static void
ngx_http_llm_redis_on_disconnect(const redisAsyncContext *ac, int status)
{
    ngx_http_llm_redis_t  *rd = ac->data;

    rd->ac = NULL;
    rd->connected = 0;

    if (rd->timeout.timer_set) {
        ngx_del_timer(&rd->timeout);
    }

    if (rd->closed) {
        return;
    }

    ngx_http_llm_redis_failed(rd, status == REDIS_OK ? "connection closed"
                                                     : ac->errstr);
}


/*
 * The connection is gone (or never came): log the outage once per
 * interval, and try again after the backoff.
 */

static void
ngx_http_llm_redis_failed(ngx_http_llm_redis_t *rd, const char *why)
{
    rd->connected = 0;

    if (!rd->down) {
        rd->down = 1;
        rd->down_since = ngx_current_msec;
        rd->logged = ngx_current_msec;

        ngx_log_error(NGX_LOG_ERR, rd->log, 0,
                      "llm redis %V for %s is unreachable (%s), retrying; "
                      "check that Redis runs at that address",
                      &rd->name, rd->purpose, why);

    } else if (ngx_current_msec - rd->logged
               >= NGX_HTTP_LLM_REDIS_LOG_INTERVAL)
    {
        rd->logged = ngx_current_msec;

        ngx_log_error(NGX_LOG_ERR, rd->log, 0,
                      "llm redis %V for %s still unreachable after %M s "
                      "(%s), retrying", &rd->name, rd->purpose,
                      (ngx_current_msec - rd->down_since) / 1000, why);
    }

    if (rd->closed || rd->reconnect.timer_set) {
        return;
    }

    ngx_add_timer(&rd->reconnect, rd->backoff);

    rd->backoff = ngx_min(rd->backoff * 2, NGX_HTTP_LLM_REDIS_BACKOFF_MAX);
}


static void
ngx_http_llm_redis_reconnect_handler(ngx_event_t *ev)
{
    ngx_http_llm_redis_t  *rd = ev->data;

    if (rd->closed || rd->ac) {
        return;
    }

    ngx_http_llm_redis_connect(rd);
}


static void
ngx_http_llm_redis_timeout_handler(ngx_event_t *ev)
{
    ngx_http_llm_redis_t  *rd = ev->data;

    if (rd->ac == NULL) {
        return;
    }

    ngx_log_error(NGX_LOG_WARN, rd->log, 0,
                  "llm redis %V for %s timed out %s, reconnecting",
                  &rd->name, rd->purpose,
                  rd->connected ? "answering" : "connecting");

    if (!rd->connected) {
        /* no disconnect callback for a connection that never came */
        redisAsyncFree(rd->ac);
        rd->ac = NULL;
        ngx_http_llm_redis_failed(rd, "connect timed out");
        return;
    }

    /* pending handlers get NULL, then the disconnect callback runs */

    redisAsyncFree(rd->ac);
}


ngx_int_t
ngx_http_llm_redis_command(ngx_http_llm_redis_t *rd,
    ngx_http_llm_redis_handler_pt handler, void *data, const char *fmt, ...)
{
    int                        rc;
    va_list                    args;
    ngx_http_llm_redis_cmd_t  *cmd;

    if (!rd->connected || rd->ac == NULL) {
        return NGX_DECLINED;
    }

    cmd = ngx_http_llm_redis_cmd(rd, handler, data);
    if (cmd == NULL) {
        return NGX_ERROR;
    }

    va_start(args, fmt);
    rc = redisvAsyncCommand(rd->ac, ngx_http_llm_redis_on_reply, cmd, fmt,
                            args);
    va_end(args);

    if (rc != REDIS_OK) {
        ngx_free(cmd);
        return NGX_ERROR;
    }

    ngx_http_llm_redis_sent(rd);

    return NGX_OK;
}


ngx_int_t
ngx_http_llm_redis_command_argv(ngx_http_llm_redis_t *rd,
    ngx_http_llm_redis_handler_pt handler, void *data, int argc,
    const char **argv, const size_t *argvlen)
{
    ngx_http_llm_redis_cmd_t  *cmd;

    if (!rd->connected || rd->ac == NULL) {
        return NGX_DECLINED;
    }

    cmd = ngx_http_llm_redis_cmd(rd, handler, data);
    if (cmd == NULL) {
        return NGX_ERROR;
    }

    if (redisAsyncCommandArgv(rd->ac, ngx_http_llm_redis_on_reply, cmd, argc,
                              argv, argvlen)
        != REDIS_OK)
    {
        ngx_free(cmd);
        return NGX_ERROR;
    }

    ngx_http_llm_redis_sent(rd);

    return NGX_OK;
}


static ngx_http_llm_redis_cmd_t *
ngx_http_llm_redis_cmd(ngx_http_llm_redis_t *rd,
    ngx_http_llm_redis_handler_pt handler, void *data)
{
    ngx_http_llm_redis_cmd_t  *cmd;

    cmd = ngx_alloc(sizeof(ngx_http_llm_redis_cmd_t), rd->log);
    if (cmd == NULL) {
        return NULL;
    }

    cmd->rd = rd;
    cmd->handler = handler;
    cmd->data = data;

    return cmd;
}


static void
ngx_http_llm_redis_sent(ngx_http_llm_redis_t *rd)
{
    if (rd->pending++ == 0) {
        ngx_add_timer(&rd->timeout, rd->command_timeout);
    }
}


static void
ngx_http_llm_redis_on_reply(redisAsyncContext *ac, void *reply,
    void *privdata)
{
    ngx_http_llm_redis_t      *rd;
    ngx_http_llm_redis_cmd_t  *cmd = privdata;

    rd = cmd->rd;

    rd->pending--;

    if (rd->pending == 0) {
        if (rd->timeout.timer_set && rd->connected) {
            ngx_del_timer(&rd->timeout);
        }

    } else if (rd->connected) {
        /* the next reply is due within the timeout from now */
        ngx_add_timer(&rd->timeout, rd->command_timeout);
    }

    cmd->handler(rd, reply, cmd->data);

    ngx_free(cmd);
}


ngx_uint_t
ngx_http_llm_redis_connected(ngx_http_llm_redis_t *rd)
{
    return rd->connected;
}


ngx_uint_t
ngx_http_llm_redis_pending(ngx_http_llm_redis_t *rd)
{
    return rd->pending;
}


void
ngx_http_llm_redis_close(ngx_http_llm_redis_t *rd)
{
    rd->closed = 1;

    if (rd->reconnect.timer_set) {
        ngx_del_timer(&rd->reconnect);
    }

    if (rd->timeout.timer_set) {
        ngx_del_timer(&rd->timeout);
    }

    if (rd->ac) {
        redisAsyncFree(rd->ac);
        rd->ac = NULL;
    }
}


/* the adapter: hiredis asks for events on its socket */

static void
ngx_http_llm_redis_read_handler(ngx_event_t *ev)
{
    ngx_connection_t      *c = ev->data;
    ngx_http_llm_redis_t  *rd = c->data;

    if (rd->ac) {
        redisAsyncHandleRead(rd->ac);
    }
}


static void
ngx_http_llm_redis_write_handler(ngx_event_t *ev)
{
    ngx_connection_t      *c = ev->data;
    ngx_http_llm_redis_t  *rd = c->data;

    if (rd->ac) {
        redisAsyncHandleWrite(rd->ac);
    }
}


/*
 * Level-triggered: hiredis reads what one read(2) returns, so an edge
 * could leave a reply waiting in the socket forever.
 */

static void
ngx_http_llm_redis_add_read(void *privdata)
{
    ngx_http_llm_redis_t  *rd = privdata;

    if (rd->conn && !rd->conn->read->active) {
        (void) ngx_add_event(rd->conn->read, NGX_READ_EVENT, NGX_LEVEL_EVENT);
    }
}


static void
ngx_http_llm_redis_del_read(void *privdata)
{
    ngx_http_llm_redis_t  *rd = privdata;

    if (rd->conn && rd->conn->read->active) {
        (void) ngx_del_event(rd->conn->read, NGX_READ_EVENT, 0);
    }
}


static void
ngx_http_llm_redis_add_write(void *privdata)
{
    ngx_http_llm_redis_t  *rd = privdata;

    if (rd->conn && !rd->conn->write->active) {
        (void) ngx_add_event(rd->conn->write, NGX_WRITE_EVENT,
                             NGX_LEVEL_EVENT);
    }
}


static void
ngx_http_llm_redis_del_write(void *privdata)
{
    ngx_http_llm_redis_t  *rd = privdata;

    if (rd->conn && rd->conn->write->active) {
        (void) ngx_del_event(rd->conn->write, NGX_WRITE_EVENT, 0);
    }
}


/* hiredis frees its context (and then closes the fd) */

static void
ngx_http_llm_redis_cleanup(void *privdata)
{
    ngx_connection_t      *c;
    ngx_http_llm_redis_t  *rd = privdata;

    c = rd->conn;

    if (c == NULL) {
        return;
    }

    ngx_http_llm_redis_del_read(rd);
    ngx_http_llm_redis_del_write(rd);

    if (c->read->posted) {
        ngx_delete_posted_event(c->read);
    }

    if (c->write->posted) {
        ngx_delete_posted_event(c->write);
    }

    c->fd = (ngx_socket_t) -1;
    ngx_free_connection(c);

    rd->conn = NULL;
}
