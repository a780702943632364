
/*
 * Copyright (C) ngx_llm authors
 *
 * Errors in the shape the client's API documents, never an HTML page:
 *
 *   OpenAI:    {"error":{"message":..,"type":..,"param":..,"code":..}}
 *   Anthropic: {"type":"error","error":{"type":..,"message":..}}
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_llm_module.h"


#define NGX_HTTP_LLM_ERROR_MAX  1024


static ngx_buf_t *ngx_http_llm_error_vbuf(ngx_http_request_t *r,
    ngx_uint_t api, ngx_uint_t status, const char *type, const char *code,
    const char *param, const char *fmt, va_list args);
static const char *ngx_http_llm_anthropic_type(ngx_uint_t status,
    const char *type);


const char *
ngx_http_llm_api_name(ngx_uint_t api)
{
    switch (api) {
    case NGX_HTTP_LLM_API_CHAT:
        return "chat";
    case NGX_HTTP_LLM_API_COMPLETIONS:
        return "completions";
    case NGX_HTTP_LLM_API_EMBEDDINGS:
        return "embeddings";
    case NGX_HTTP_LLM_API_MESSAGES:
        return "messages";
    default:
        return "";
    }
}


ngx_int_t
ngx_http_llm_send_error(ngx_http_request_t *r, ngx_uint_t api,
    ngx_uint_t status, const char *type, const char *code, const char *param,
    const char *fmt, ...)
{
    va_list       args;
    ngx_int_t     rc;
    ngx_buf_t    *b;
    ngx_chain_t   out;

    va_start(args, fmt);
    b = ngx_http_llm_error_vbuf(r, api, status, type, code, param, fmt, args);
    va_end(args);

    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* the body may not have been read: let nginx discard it */

    if (ngx_http_discard_request_body(r) != NGX_OK) {
        r->keepalive = 0;
    }

    r->headers_out.status = status;
    ngx_http_llm_error_headers(r, b);

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


ngx_buf_t *
ngx_http_llm_error_body(ngx_http_request_t *r, ngx_uint_t api,
    ngx_uint_t status, const char *type, const char *code, const char *param,
    const char *fmt, ...)
{
    va_list     args;
    ngx_buf_t  *b;

    va_start(args, fmt);
    b = ngx_http_llm_error_vbuf(r, api, status, type, code, param, fmt, args);
    va_end(args);

    return b;
}


void
ngx_http_llm_error_headers(ngx_http_request_t *r, ngx_buf_t *b)
{
    r->headers_out.content_length_n = b->last - b->pos;

    if (r->headers_out.content_length) {
        r->headers_out.content_length->hash = 0;
        r->headers_out.content_length = NULL;
    }

    ngx_str_set(&r->headers_out.content_type, "application/json");
    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.content_type_lowcase = NULL;
    r->headers_out.charset.len = 0;

    ngx_http_clear_accept_ranges(r);
    ngx_http_clear_last_modified(r);
    ngx_http_clear_etag(r);
}


static ngx_buf_t *
ngx_http_llm_error_vbuf(ngx_http_request_t *r, ngx_uint_t api,
    ngx_uint_t status, const char *type, const char *code, const char *param,
    const char *fmt, va_list args)
{
    u_char      *p, *last, msg[NGX_HTTP_LLM_ERROR_MAX];
    size_t       len;
    ngx_buf_t   *b;

    p = ngx_vslprintf(msg, msg + sizeof(msg), fmt, args);

    len = p - msg;

    /* worst case: every message byte escaped as \u00XX */

    b = ngx_create_temp_buf(r->pool, 256 + 6 * len
                                     + (param ? 6 * ngx_strlen(param) : 0)
                                     + (code ? ngx_strlen(code) : 0));
    if (b == NULL) {
        return NULL;
    }

    p = b->pos;
    last = b->end;

    if (NGX_HTTP_LLM_IS_ANTHROPIC(api)) {
        p = ngx_cpymem(p, "{\"type\":\"error\",\"error\":{\"type\":\"",
                       sizeof("{\"type\":\"error\",\"error\":{\"type\":\"")
                       - 1);
        type = ngx_http_llm_anthropic_type(status, type);
        p = ngx_cpymem(p, type, ngx_strlen(type));
        p = ngx_cpymem(p, "\",\"message\":", sizeof("\",\"message\":") - 1);
        p = ngx_http_llm_json_string(p, last, msg, len);
        p = ngx_cpymem(p, "}}\n", 3);

    } else {
        p = ngx_cpymem(p, "{\"error\":{\"message\":",
                       sizeof("{\"error\":{\"message\":") - 1);
        p = ngx_http_llm_json_string(p, last, msg, len);
        p = ngx_cpymem(p, ",\"type\":\"", sizeof(",\"type\":\"") - 1);
        p = ngx_cpymem(p, type, ngx_strlen(type));
        p = ngx_cpymem(p, "\",\"param\":", sizeof("\",\"param\":") - 1);

        if (param) {
            p = ngx_http_llm_json_string(p, last, (u_char *) param,
                                         ngx_strlen(param));
        } else {
            p = ngx_cpymem(p, "null", 4);
        }

        p = ngx_cpymem(p, ",\"code\":", sizeof(",\"code\":") - 1);

        if (code) {
            *p++ = '"';
            p = ngx_cpymem(p, code, ngx_strlen(code));
            *p++ = '"';

        } else {
            p = ngx_cpymem(p, "null", 4);
        }

        p = ngx_cpymem(p, "}}\n", 3);
    }

    b->last = p;
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    return b;
}


static const char *
ngx_http_llm_anthropic_type(ngx_uint_t status, const char *type)
{
    switch (status) {
    case NGX_HTTP_UNAUTHORIZED:
        return "authentication_error";
    case NGX_HTTP_FORBIDDEN:
        return "permission_error";
    case NGX_HTTP_NOT_FOUND:
        return "not_found_error";
    case NGX_HTTP_REQUEST_ENTITY_TOO_LARGE:
        return "request_too_large";
    case NGX_HTTP_TOO_MANY_REQUESTS:
        return "rate_limit_error";
    case 529:
        return "overloaded_error";
    default:
        break;
    }

    if (status >= NGX_HTTP_INTERNAL_SERVER_ERROR) {
        return "api_error";
    }

    return type;
}


/* drops every response header set so far (an upstream's, nginx's page's) */

void
ngx_http_llm_clear_headers(ngx_http_request_t *r)
{
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    part = &r->headers_out.headers.part;
    h = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        h[i].hash = 0;
    }
}


/*
 * Writes s as a quoted JSON string into p, up to last (stops 8 bytes
 * before it: the longest escape is 6); returns the end.
 */

u_char *
ngx_http_llm_json_string(u_char *p, u_char *last, const u_char *s,
    size_t len)
{
    u_char         c;
    const u_char  *end;

    static u_char  hex[] = "0123456789abcdef";

    end = s + len;

    *p++ = '"';

    while (s < end && last - p > 8) {
        c = *s++;

        switch (c) {
        case '"':
        case '\\':
            *p++ = '\\';
            *p++ = c;
            break;
        case '\n':
            *p++ = '\\';
            *p++ = 'n';
            break;
        case '\r':
            *p++ = '\\';
            *p++ = 'r';
            break;
        case '\t':
            *p++ = '\\';
            *p++ = 't';
            break;
        default:
            if (c < 0x20 || c == 0x7f) {
                *p++ = '\\';
                *p++ = 'u';
                *p++ = '0';
                *p++ = '0';
                *p++ = hex[c >> 4];
                *p++ = hex[c & 0xf];

            } else {
                *p++ = c;
            }
        }
    }

    *p++ = '"';

    return p;
}
