
/*
 * Copyright (C) ngx_llm authors
 *
 * Metrics: counters and histograms of the gateway's requests in one shared
 * memory zone (atomic adds, so every worker's figures land in one place),
 * updated at the log phase, served in the Prometheus text format by
 * "llm_metrics", and the live status page of "llm_status" over them.
 */


#ifndef _NGX_HTTP_LLM_METRICS_H_INCLUDED_
#define _NGX_HTTP_LLM_METRICS_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>


typedef struct ngx_http_llm_metrics_zone_s  ngx_http_llm_metrics_zone_t;


/* a member of ngx_http_llm_main_conf_t */
typedef struct {
    ngx_shm_zone_t             *shm_zone;       /* NULL: not collected */
    ngx_int_t                   cache_status;   /* $llm_cache_status index */
    unsigned                    used:1;         /* an llm_metrics location */
} ngx_http_llm_metrics_conf_t;


/* directives */
char *ngx_http_llm_metrics_zone(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_llm_metrics(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
char *ngx_http_llm_status(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);

/* init main conf: the implicit zone, variable indexes */
char *ngx_http_llm_metrics_init_conf(ngx_conf_t *cf,
    ngx_http_llm_metrics_conf_t *mcf);

/* log phase: one request's figures */
void ngx_http_llm_metrics_account(ngx_http_request_t *r);

/* a metric family of the exposition, for every part that adds some */
typedef struct {
    const char                 *name;
    const char                 *type;
    const char                 *help;
} ngx_http_llm_metrics_family_t;

/* "# HELP" and "# TYPE" lines of f */
u_char *ngx_http_llm_metrics_family(u_char *p,
    ngx_http_llm_metrics_family_t *f);

/* b, filled, at *ll of the exposition; its length added to *len;
 * returns the next link to fill, NULL on error */
ngx_chain_t **ngx_http_llm_metrics_append(ngx_http_request_t *r,
    ngx_chain_t **ll, ngx_buf_t *b, off_t *len);

/* the status page (ngx_http_llm_status.c) */
extern const u_char  ngx_http_llm_status_page[];
extern const size_t  ngx_http_llm_status_page_len;


#endif /* _NGX_HTTP_LLM_METRICS_H_INCLUDED_ */
