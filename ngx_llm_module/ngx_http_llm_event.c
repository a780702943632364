
/*
 * Copyright (C) ngx_llm authors
 */


/*
 * The SSE framer follows the WHATWG "event stream interpretation": lines
 * end in CRLF, LF or CR (a CR at the end of one read and the LF at the
 * start of the next are one line end); a leading U+FEFF is skipped; a line
 * starting with ':' is a comment; "field:value" with one optional space
 * after the colon, a line without colon is a field with an empty value;
 * "data" lines are joined with '\n', "event" sets the name, other fields
 * are ignored; a blank line dispatches the event if it had data. An event
 * is dispatched at the CR or LF that ends its blank line, never later: end
 * is the offset after that byte, so with CRLF line ends the LF after a
 * dispatching CR is in no event (it is a blank line of its own, harmless
 * to any SSE parser); the next event starts after it.
 *
 * Event and response analysis read the JSON with the pull cursor and
 * accept both OpenAI and Anthropic shapes whatever the api. Malformed JSON
 * yields no information. content_bytes counts the unescaped bytes of the
 * output text: content, refusal, reasoning, completion text, tool call
 * names and arguments, Anthropic text / thinking / partial_json deltas,
 * tool_use names (and inputs in full responses, as raw JSON).
 *
 * Usage figures are normalized to the OpenAI meaning: prompt_tokens is
 * the whole prompt. For Anthropic it is input_tokens +
 * cache_read_input_tokens + cache_creation_input_tokens (Anthropic's
 * input_tokens counts only the uncached part); cached_tokens is the cache
 * read, cache_write_tokens the cache creation.
 */


#include <string.h>

#include "ngx_http_llm_event.h"
#include "ngx_http_llm_json.h"


#define NGX_HTTP_LLM_SSE_START        0
#define NGX_HTTP_LLM_SSE_BOM1         1
#define NGX_HTTP_LLM_SSE_BOM2         2
#define NGX_HTTP_LLM_SSE_LINE         3
#define NGX_HTTP_LLM_SSE_FIELD        4
#define NGX_HTTP_LLM_SSE_VALUE_START  5
#define NGX_HTTP_LLM_SSE_VALUE        6
#define NGX_HTTP_LLM_SSE_SKIP         7

#define NGX_HTTP_LLM_SSE_FIELD_OTHER  0
#define NGX_HTTP_LLM_SSE_FIELD_DATA   1
#define NGX_HTTP_LLM_SSE_FIELD_EVENT  2


#define ngx_http_llm_str_is(s, lit)                                           \
    ngx_http_llm_json_str_eq(s, lit, sizeof(lit) - 1)


static void ngx_http_llm_sse_field(ngx_http_llm_sse_t *sse);
static void ngx_http_llm_sse_append(ngx_http_llm_sse_t *sse,
    const u_char *p, size_t n);
static int ngx_http_llm_sse_dispatch(ngx_http_llm_sse_t *sse);

static int ngx_http_llm_event_object(ngx_http_llm_json_cur_t *cur,
    ngx_http_llm_event_info_t *info, ngx_http_llm_json_str_t *type,
    unsigned level);
static int ngx_http_llm_event_choices(ngx_http_llm_json_cur_t *cur,
    ngx_http_llm_event_info_t *info, unsigned *n);
static int ngx_http_llm_event_message(ngx_http_llm_json_cur_t *cur,
    ngx_http_llm_event_info_t *info);
static int ngx_http_llm_event_tool_calls(ngx_http_llm_json_cur_t *cur,
    ngx_http_llm_event_info_t *info);
static int ngx_http_llm_event_function(ngx_http_llm_json_cur_t *cur,
    ngx_http_llm_event_info_t *info);
static int ngx_http_llm_event_blocks(ngx_http_llm_json_cur_t *cur,
    ngx_http_llm_event_info_t *info);
static int ngx_http_llm_event_block(ngx_http_llm_json_cur_t *cur,
    ngx_http_llm_event_info_t *info);
static int ngx_http_llm_event_text(ngx_http_llm_json_cur_t *cur,
    ngx_http_llm_event_info_t *info);
static int ngx_http_llm_event_finish(ngx_http_llm_json_cur_t *cur,
    ngx_http_llm_event_info_t *info);
static int ngx_http_llm_event_usage(ngx_http_llm_json_cur_t *cur,
    ngx_http_llm_event_info_t *info);
static int ngx_http_llm_event_details(ngx_http_llm_json_cur_t *cur,
    const char *name, size_t len, int64_t *v);
static void ngx_http_llm_event_reset(ngx_http_llm_event_info_t *info);


void
ngx_http_llm_usage_init(ngx_http_llm_usage_t *u)
{
    u->prompt_tokens = -1;
    u->completion_tokens = -1;
    u->cached_tokens = -1;
    u->cache_write_tokens = -1;
    u->reasoning_tokens = -1;
}


void
ngx_http_llm_usage_merge(ngx_http_llm_usage_t *to,
    const ngx_http_llm_usage_t *from)
{
    if (from->prompt_tokens >= 0) {
        to->prompt_tokens = from->prompt_tokens;
    }

    if (from->completion_tokens >= 0) {
        to->completion_tokens = from->completion_tokens;
    }

    if (from->cached_tokens >= 0) {
        to->cached_tokens = from->cached_tokens;
    }

    if (from->cache_write_tokens >= 0) {
        to->cache_write_tokens = from->cache_write_tokens;
    }

    if (from->reasoning_tokens >= 0) {
        to->reasoning_tokens = from->reasoning_tokens;
    }
}


/* SSE framer */


void
ngx_http_llm_sse_init(ngx_http_llm_sse_t *sse, u_char *buf, size_t cap,
    ngx_http_llm_sse_handler_pt handler, void *data)
{
    memset(sse, 0, sizeof(ngx_http_llm_sse_t));

    sse->buf = buf;
    sse->cap = cap;
    sse->handler = handler;
    sse->data = data;
    sse->state = NGX_HTTP_LLM_SSE_START;
}


int
ngx_http_llm_sse_feed(ngx_http_llm_sse_t *sse, const u_char *p, size_t len)
{
    int            rc;
    u_char         c;
    size_t         n;
    const u_char  *end, *q;

    end = p + len;

    while (p < end) {

        c = *p;

        if (sse->after_cr) {
            sse->after_cr = 0;

            if (c == '\n') {
                /* the LF of a CRLF split from its CR */

                if (sse->event_start == sse->offset) {
                    sse->event_start++;
                }

                p++;
                sse->offset++;
                continue;
            }
        }

        switch (sse->state) {

        case NGX_HTTP_LLM_SSE_START:
            if (c == 0xef) {
                sse->state = NGX_HTTP_LLM_SSE_BOM1;
                break;
            }

            sse->state = NGX_HTTP_LLM_SSE_LINE;
            continue;

        case NGX_HTTP_LLM_SSE_BOM1:
        case NGX_HTTP_LLM_SSE_BOM2:
            if (c == (sse->state == NGX_HTTP_LLM_SSE_BOM1 ? 0xbb : 0xbf)) {

                if (sse->state == NGX_HTTP_LLM_SSE_BOM1) {
                    sse->state = NGX_HTTP_LLM_SSE_BOM2;

                } else {
                    sse->state = NGX_HTTP_LLM_SSE_LINE;
                    sse->event_start = sse->offset + 1;
                }

                break;
            }

            /* not a BOM: the bytes seen start a field name */

            sse->field_name[0] = 0xef;
            sse->field_name[1] = 0xbb;
            sse->field_len = (sse->state == NGX_HTTP_LLM_SSE_BOM1) ? 1 : 2;
            sse->state = NGX_HTTP_LLM_SSE_FIELD;
            continue;

        case NGX_HTTP_LLM_SSE_LINE:
            if (c == '\n' || c == '\r') {
                /* a blank line */

                p++;
                sse->offset++;
                sse->after_cr = (c == '\r');

                rc = ngx_http_llm_sse_dispatch(sse);

                if (rc) {
                    return rc;
                }

                continue;
            }

            if (c == ':') {
                sse->state = NGX_HTTP_LLM_SSE_SKIP;
                break;
            }

            sse->field_len = 0;
            sse->state = NGX_HTTP_LLM_SSE_FIELD;
            continue;

        case NGX_HTTP_LLM_SSE_FIELD:
            if (c == ':') {
                ngx_http_llm_sse_field(sse);
                sse->state = NGX_HTTP_LLM_SSE_VALUE_START;
                break;
            }

            if (c == '\n' || c == '\r') {
                /* a field with an empty value */
                ngx_http_llm_sse_field(sse);
                sse->after_cr = (c == '\r');
                sse->state = NGX_HTTP_LLM_SSE_LINE;
                break;
            }

            if (sse->field_len < sizeof(sse->field_name)) {
                sse->field_name[sse->field_len] = c;
            }

            sse->field_len++;
            break;

        case NGX_HTTP_LLM_SSE_VALUE_START:
            sse->state = NGX_HTTP_LLM_SSE_VALUE;

            if (c == ' ') {
                break;
            }

            continue;

        case NGX_HTTP_LLM_SSE_VALUE:
            for (q = p; q < end && *q != '\n' && *q != '\r'; q++) {
                /* void */
            }

            if (sse->field == NGX_HTTP_LLM_SSE_FIELD_OTHER) {
                /* ignored */

            } else if (sse->field == NGX_HTTP_LLM_SSE_FIELD_DATA) {
                ngx_http_llm_sse_append(sse, p, q - p);

            } else if (sse->name_len < NGX_HTTP_LLM_SSE_NAME_MAX) {
                n = q - p;

                if (n > NGX_HTTP_LLM_SSE_NAME_MAX - sse->name_len) {
                    n = NGX_HTTP_LLM_SSE_NAME_MAX - sse->name_len;
                }

                memcpy(sse->name + sse->name_len, p, n);
                sse->name_len += n;
            }

            sse->offset += q - p;
            p = q;

            if (p == end) {
                return 0;
            }

            sse->after_cr = (*p == '\r');
            sse->state = NGX_HTTP_LLM_SSE_LINE;
            break;

        default: /* NGX_HTTP_LLM_SSE_SKIP */
            if (c == '\n' || c == '\r') {
                sse->after_cr = (c == '\r');
                sse->state = NGX_HTTP_LLM_SSE_LINE;
            }

            break;
        }

        p++;
        sse->offset++;
    }

    return 0;
}


static void
ngx_http_llm_sse_field(ngx_http_llm_sse_t *sse)
{
    if (sse->field_len == 4 && memcmp(sse->field_name, "data", 4) == 0) {
        sse->field = NGX_HTTP_LLM_SSE_FIELD_DATA;

        if (sse->has_data) {
            ngx_http_llm_sse_append(sse, (const u_char *) "\n", 1);
        }

        sse->has_data = 1;
        return;
    }

    if (sse->field_len == 5 && memcmp(sse->field_name, "event", 5) == 0) {
        sse->field = NGX_HTTP_LLM_SSE_FIELD_EVENT;
        sse->name_len = 0;
        return;
    }

    sse->field = NGX_HTTP_LLM_SSE_FIELD_OTHER;
}


static void
ngx_http_llm_sse_append(ngx_http_llm_sse_t *sse, const u_char *p, size_t n)
{
    if (n > sse->cap - sse->len) {
        n = sse->cap - sse->len;
        sse->truncated = 1;
    }

    if (n) {
        memcpy(sse->buf + sse->len, p, n);
        sse->len += n;
    }
}


static int
ngx_http_llm_sse_dispatch(ngx_http_llm_sse_t *sse)
{
    int  rc;

    rc = 0;

    if (sse->has_data) {
        sse->events++;
        rc = sse->handler(sse, sse->name, sse->name_len, sse->buf, sse->len,
                          sse->event_start, sse->offset);
    }

    sse->len = 0;
    sse->name_len = 0;
    sse->has_data = 0;
    sse->truncated = 0;
    sse->event_start = sse->offset;

    return rc;
}


/* event and response analysis */


static void
ngx_http_llm_event_reset(ngx_http_llm_event_info_t *info)
{
    memset(info, 0, sizeof(ngx_http_llm_event_info_t));
    ngx_http_llm_usage_init(&info->u);
}


void
ngx_http_llm_event_analyze(int api, const u_char *name, size_t name_len,
    const u_char *data, size_t len, ngx_http_llm_event_info_t *info)
{
    const u_char               *p, *end;
    ngx_http_llm_json_str_t     type, ev;
    ngx_http_llm_json_cur_t     cur;

    ngx_http_llm_event_reset(info);

    p = ngx_http_llm_json_skip_ws(data, data + len);
    end = data + len;

    while (end > p && ngx_http_llm_json_is_ws(end[-1])) {
        end--;
    }

    if (end - p == 6 && memcmp(p, "[DONE]", 6) == 0) {
        info->done = 1;
        return;
    }

    type.data = NULL;
    type.len = 0;
    type.escaped = 0;

    ngx_http_llm_json_cur_init(&cur, p, end - p);

    if (ngx_http_llm_event_object(&cur, info, &type, 0) != 0
        || ngx_http_llm_json_end(&cur) != 0)
    {
        ngx_http_llm_event_reset(info);
        return;
    }

    ev.data = name;
    ev.len = name_len;
    ev.escaped = 0;

    if (ngx_http_llm_str_is(&type, "message_stop")
        || ngx_http_llm_str_is(&ev, "message_stop"))
    {
        info->done = 1;
    }

    if (ngx_http_llm_str_is(&type, "error")
        || ngx_http_llm_str_is(&ev, "error"))
    {
        info->error = 1;
    }
}


void
ngx_http_llm_response_analyze(int api, const u_char *body, size_t len,
    ngx_http_llm_event_info_t *info)
{
    ngx_http_llm_json_str_t  type;
    ngx_http_llm_json_cur_t  cur;

    ngx_http_llm_event_reset(info);

    type.data = NULL;
    type.len = 0;
    type.escaped = 0;

    ngx_http_llm_json_cur_init(&cur, body, len);

    if (ngx_http_llm_event_object(&cur, info, &type, 0) != 0
        || ngx_http_llm_json_end(&cur) != 0)
    {
        ngx_http_llm_event_reset(info);
        return;
    }

    if (ngx_http_llm_str_is(&type, "error")) {
        info->error = 1;
    }
}


/*
 * One JSON object of an event or a response, both APIs: level 0 is the
 * top, level 1 the "message" object of Anthropic's message_start.
 */

static int
ngx_http_llm_event_object(ngx_http_llm_json_cur_t *cur,
    ngx_http_llm_event_info_t *info, ngx_http_llm_json_str_t *type,
    unsigned level)
{
    int                      rc, t;
    unsigned                 first, choices, have_choices;
    ngx_http_llm_json_str_t  key, s;

    if (ngx_http_llm_json_enter(cur, NGX_HTTP_LLM_JSON_OBJECT) != 1) {
        return -1;
    }

    first = 1;
    choices = 0;
    have_choices = 0;

    while ((rc = ngx_http_llm_json_next(cur, &first, &key)) == 1) {

        if (ngx_http_llm_str_is(&key, "choices")) {
            if (ngx_http_llm_json_peek(cur) == NGX_HTTP_LLM_JSON_ARRAY) {
                have_choices = 1;
            }

            rc = ngx_http_llm_event_choices(cur, info, &choices);

        } else if (ngx_http_llm_str_is(&key, "usage")) {
            rc = ngx_http_llm_event_usage(cur, info);

        } else if (level == 0 && ngx_http_llm_str_is(&key, "error")) {
            if (ngx_http_llm_json_peek(cur) != NGX_HTTP_LLM_JSON_NULL) {
                info->error = 1;
            }

            rc = ngx_http_llm_json_skip(cur);

        } else if (level == 0 && ngx_http_llm_str_is(&key, "type")) {
            rc = ngx_http_llm_json_get_string(cur, type);

        } else if (level == 0 && ngx_http_llm_str_is(&key, "object")) {
            rc = ngx_http_llm_json_get_string(cur, &s);

            if (rc == 1 && ngx_http_llm_str_is(&s, "error")) {
                info->error = 1;
            }

        } else if (level == 0 && ngx_http_llm_str_is(&key, "message")) {
            t = ngx_http_llm_json_peek(cur);

            if (t == NGX_HTTP_LLM_JSON_OBJECT) {
                s.data = NULL;
                s.len = 0;
                s.escaped = 0;
                rc = ngx_http_llm_event_object(cur, info, &s, 1);

            } else {
                rc = ngx_http_llm_json_skip(cur);
            }

        } else if (ngx_http_llm_str_is(&key, "delta")) {
            /* Anthropic content_block_delta, message_delta */
            rc = ngx_http_llm_event_block(cur, info);

        } else if (ngx_http_llm_str_is(&key, "content_block")) {
            rc = ngx_http_llm_event_block(cur, info);

        } else if (ngx_http_llm_str_is(&key, "content")) {
            /* Anthropic message: an array of content blocks */
            rc = ngx_http_llm_event_blocks(cur, info);

        } else if (ngx_http_llm_str_is(&key, "stop_reason")) {
            rc = ngx_http_llm_event_finish(cur, info);

        } else {
            rc = ngx_http_llm_json_skip(cur);
        }

        if (rc < 0) {
            return -1;
        }
    }

    if (rc < 0) {
        return -1;
    }

    if (have_choices && choices == 0 && info->usage) {
        info->usage_only = 1;
    }

    return 0;
}


static int
ngx_http_llm_event_choices(ngx_http_llm_json_cur_t *cur,
    ngx_http_llm_event_info_t *info, unsigned *n)
{
    int                      rc;
    unsigned                 first, mfirst;
    ngx_http_llm_json_str_t  key;

    rc = ngx_http_llm_json_enter(cur, NGX_HTTP_LLM_JSON_ARRAY);

    if (rc != 1) {
        return (rc == 0) ? ngx_http_llm_json_skip(cur) : -1;
    }

    first = 1;

    while ((rc = ngx_http_llm_json_next(cur, &first, NULL)) == 1) {
        (*n)++;

        rc = ngx_http_llm_json_enter(cur, NGX_HTTP_LLM_JSON_OBJECT);

        if (rc != 1) {
            if (rc < 0 || ngx_http_llm_json_skip(cur) < 0) {
                return -1;
            }

            continue;
        }

        mfirst = 1;

        while ((rc = ngx_http_llm_json_next(cur, &mfirst, &key)) == 1) {

            if (ngx_http_llm_str_is(&key, "delta")
                || ngx_http_llm_str_is(&key, "message"))
            {
                rc = ngx_http_llm_event_message(cur, info);

            } else if (ngx_http_llm_str_is(&key, "text")) {
                rc = ngx_http_llm_event_text(cur, info);

            } else if (ngx_http_llm_str_is(&key, "finish_reason")) {
                rc = ngx_http_llm_event_finish(cur, info);

            } else {
                rc = ngx_http_llm_json_skip(cur);
            }

            if (rc < 0) {
                return -1;
            }
        }

        if (rc < 0) {
            return -1;
        }
    }

    return rc;
}


/* an OpenAI choice's delta or message */

static int
ngx_http_llm_event_message(ngx_http_llm_json_cur_t *cur,
    ngx_http_llm_event_info_t *info)
{
    int                      rc;
    unsigned                 first;
    ngx_http_llm_json_str_t  key;

    rc = ngx_http_llm_json_enter(cur, NGX_HTTP_LLM_JSON_OBJECT);

    if (rc != 1) {
        return (rc == 0) ? ngx_http_llm_json_skip(cur) : -1;
    }

    first = 1;

    while ((rc = ngx_http_llm_json_next(cur, &first, &key)) == 1) {

        if (ngx_http_llm_str_is(&key, "content")) {
            if (ngx_http_llm_json_peek(cur) == NGX_HTTP_LLM_JSON_ARRAY) {
                /* content parts */
                rc = ngx_http_llm_event_blocks(cur, info);

            } else {
                rc = ngx_http_llm_event_text(cur, info);
            }

        } else if (ngx_http_llm_str_is(&key, "refusal")
                   || ngx_http_llm_str_is(&key, "reasoning_content")
                   || ngx_http_llm_str_is(&key, "reasoning"))
        {
            rc = ngx_http_llm_event_text(cur, info);

        } else if (ngx_http_llm_str_is(&key, "tool_calls")) {
            rc = ngx_http_llm_event_tool_calls(cur, info);

        } else if (ngx_http_llm_str_is(&key, "function_call")) {
            rc = ngx_http_llm_event_function(cur, info);

        } else {
            rc = ngx_http_llm_json_skip(cur);
        }

        if (rc < 0) {
            return -1;
        }
    }

    return rc;
}


/*
 * tool_calls: an array of {"id","type","function":{"name","arguments"}};
 * any call is content, names and arguments count as output bytes
 */

static int
ngx_http_llm_event_tool_calls(ngx_http_llm_json_cur_t *cur,
    ngx_http_llm_event_info_t *info)
{
    int                      rc;
    unsigned                 first, cfirst;
    ngx_http_llm_json_str_t  key;

    rc = ngx_http_llm_json_enter(cur, NGX_HTTP_LLM_JSON_ARRAY);

    if (rc != 1) {
        return (rc == 0) ? ngx_http_llm_json_skip(cur) : -1;
    }

    first = 1;

    while ((rc = ngx_http_llm_json_next(cur, &first, NULL)) == 1) {
        info->content = 1;

        rc = ngx_http_llm_json_enter(cur, NGX_HTTP_LLM_JSON_OBJECT);

        if (rc != 1) {
            if (rc < 0 || ngx_http_llm_json_skip(cur) < 0) {
                return -1;
            }

            continue;
        }

        cfirst = 1;

        while ((rc = ngx_http_llm_json_next(cur, &cfirst, &key)) == 1) {

            if (ngx_http_llm_str_is(&key, "function")) {
                rc = ngx_http_llm_event_function(cur, info);

            } else {
                rc = ngx_http_llm_json_skip(cur);
            }

            if (rc < 0) {
                return -1;
            }
        }

        if (rc < 0) {
            return -1;
        }
    }

    return rc;
}


/* a function call object (also the legacy function_call): name, arguments */

static int
ngx_http_llm_event_function(ngx_http_llm_json_cur_t *cur,
    ngx_http_llm_event_info_t *info)
{
    int                      rc;
    unsigned                 first;
    ngx_http_llm_json_str_t  key;

    rc = ngx_http_llm_json_enter(cur, NGX_HTTP_LLM_JSON_OBJECT);

    if (rc != 1) {
        return (rc == 0) ? ngx_http_llm_json_skip(cur) : -1;
    }

    first = 1;

    while ((rc = ngx_http_llm_json_next(cur, &first, &key)) == 1) {

        if (ngx_http_llm_str_is(&key, "name")
            || ngx_http_llm_str_is(&key, "arguments"))
        {
            rc = ngx_http_llm_event_text(cur, info);

        } else {
            rc = ngx_http_llm_json_skip(cur);
        }

        if (rc < 0) {
            return -1;
        }
    }

    return rc;
}


/* an array of content blocks / parts */

static int
ngx_http_llm_event_blocks(ngx_http_llm_json_cur_t *cur,
    ngx_http_llm_event_info_t *info)
{
    int       rc;
    unsigned  first;

    rc = ngx_http_llm_json_enter(cur, NGX_HTTP_LLM_JSON_ARRAY);

    if (rc != 1) {
        return (rc == 0) ? ngx_http_llm_json_skip(cur) : -1;
    }

    first = 1;

    while ((rc = ngx_http_llm_json_next(cur, &first, NULL)) == 1) {
        if (ngx_http_llm_event_block(cur, info) < 0) {
            return -1;
        }
    }

    return rc;
}


/*
 * An Anthropic content block, block delta or message delta, or an OpenAI
 * content part: text, thinking, partial_json are content; a tool_use
 * block is content (its name and input count); stop_reason is a finish.
 */

static int
ngx_http_llm_event_block(ngx_http_llm_json_cur_t *cur,
    ngx_http_llm_event_info_t *info)
{
    int                      rc;
    unsigned                 first, tool;
    const u_char            *start;
    ngx_http_llm_json_str_t  key, s;

    rc = ngx_http_llm_json_enter(cur, NGX_HTTP_LLM_JSON_OBJECT);

    if (rc != 1) {
        return (rc == 0) ? ngx_http_llm_json_skip(cur) : -1;
    }

    first = 1;
    tool = 0;

    while ((rc = ngx_http_llm_json_next(cur, &first, &key)) == 1) {

        if (ngx_http_llm_str_is(&key, "text")
            || ngx_http_llm_str_is(&key, "thinking")
            || ngx_http_llm_str_is(&key, "partial_json")
            || ngx_http_llm_str_is(&key, "name"))
        {
            rc = ngx_http_llm_event_text(cur, info);

        } else if (ngx_http_llm_str_is(&key, "type")) {
            rc = ngx_http_llm_json_get_string(cur, &s);

            if (rc == 1 && (ngx_http_llm_str_is(&s, "tool_use")
                            || ngx_http_llm_str_is(&s, "server_tool_use")))
            {
                tool = 1;
            }

        } else if (ngx_http_llm_str_is(&key, "input")) {
            start = ngx_http_llm_json_skip_ws(cur->p, cur->end);
            rc = ngx_http_llm_json_skip(cur);

            /* a whole tool input (responses), "{}" in stream starts */

            if (rc == 0 && cur->p - start > 2) {
                info->content = 1;
                info->content_bytes += cur->p - start;
            }

        } else if (ngx_http_llm_str_is(&key, "stop_reason")) {
            rc = ngx_http_llm_event_finish(cur, info);

        } else {
            rc = ngx_http_llm_json_skip(cur);
        }

        if (rc < 0) {
            return -1;
        }
    }

    if (tool) {
        info->content = 1;
    }

    return rc;
}


/* a string of output text: content if not empty; null or others ignored */

static int
ngx_http_llm_event_text(ngx_http_llm_json_cur_t *cur,
    ngx_http_llm_event_info_t *info)
{
    int                      rc;
    ngx_http_llm_json_str_t  s;

    rc = ngx_http_llm_json_get_string(cur, &s);

    if (rc == 1 && s.len) {
        info->content = 1;
        info->content_bytes += s.escaped
                               ? ngx_http_llm_json_unescaped_len(s.data,
                                                             s.data + s.len)
                               : s.len;
    }

    return rc < 0 ? -1 : 0;
}


static int
ngx_http_llm_event_finish(ngx_http_llm_json_cur_t *cur,
    ngx_http_llm_event_info_t *info)
{
    int                      rc;
    ngx_http_llm_json_str_t  s;

    rc = ngx_http_llm_json_get_string(cur, &s);

    if (rc == 1) {
        info->finish = 1;
    }

    return rc < 0 ? -1 : 0;
}


static int
ngx_http_llm_event_usage(ngx_http_llm_json_cur_t *cur,
    ngx_http_llm_event_info_t *info)
{
    int                      rc;
    int64_t                  v, input, read, write;
    unsigned                 first, found;
    ngx_http_llm_json_str_t  key;
    ngx_http_llm_usage_t    *u;

    rc = ngx_http_llm_json_enter(cur, NGX_HTTP_LLM_JSON_OBJECT);

    if (rc != 1) {
        return (rc == 0) ? ngx_http_llm_json_skip(cur) : -1;
    }

    u = &info->u;
    input = -1;
    read = -1;
    write = -1;
    found = 0;
    first = 1;

    while ((rc = ngx_http_llm_json_next(cur, &first, &key)) == 1) {

        v = -1;

        if (ngx_http_llm_str_is(&key, "prompt_tokens")) {
            rc = ngx_http_llm_json_get_int(cur, &v);

            if (rc == 1 && v >= 0) {
                u->prompt_tokens = v;
                found = 1;
            }

        } else if (ngx_http_llm_str_is(&key, "completion_tokens")
                   || ngx_http_llm_str_is(&key, "output_tokens"))
        {
            rc = ngx_http_llm_json_get_int(cur, &v);

            if (rc == 1 && v >= 0) {
                u->completion_tokens = v;
                found = 1;
            }

        } else if (ngx_http_llm_str_is(&key, "input_tokens")) {
            rc = ngx_http_llm_json_get_int(cur, &v);

            if (rc == 1 && v >= 0) {
                input = v;
                found = 1;
            }

        } else if (ngx_http_llm_str_is(&key, "cache_read_input_tokens")) {
            rc = ngx_http_llm_json_get_int(cur, &v);

            if (rc == 1 && v >= 0) {
                read = v;
                u->cached_tokens = v;
                found = 1;
            }

        } else if (ngx_http_llm_str_is(&key, "cache_creation_input_tokens")) {
            rc = ngx_http_llm_json_get_int(cur, &v);

            if (rc == 1 && v >= 0) {
                write = v;
                u->cache_write_tokens = v;
                found = 1;
            }

        } else if (ngx_http_llm_str_is(&key, "prompt_tokens_details")) {
            rc = ngx_http_llm_event_details(cur, "cached_tokens", 13, &v);

            if (rc == 1 && v >= 0) {
                u->cached_tokens = v;
                found = 1;
            }

        } else if (ngx_http_llm_str_is(&key, "completion_tokens_details")) {
            rc = ngx_http_llm_event_details(cur, "reasoning_tokens", 16, &v);

            if (rc == 1 && v >= 0) {
                u->reasoning_tokens = v;
                found = 1;
            }

        } else {
            rc = ngx_http_llm_json_skip(cur);
        }

        if (rc < 0) {
            return -1;
        }
    }

    if (rc < 0) {
        return -1;
    }

    if (input >= 0) {
        u->prompt_tokens = input + (read > 0 ? read : 0)
                           + (write > 0 ? write : 0);
    }

    if (found) {
        info->usage = 1;
    }

    return 0;
}


/* one integer member of a details object: 1 and *v if found */

static int
ngx_http_llm_event_details(ngx_http_llm_json_cur_t *cur, const char *name,
    size_t len, int64_t *v)
{
    int                      rc, found;
    int64_t                  n;
    unsigned                 first;
    ngx_http_llm_json_str_t  key;

    rc = ngx_http_llm_json_enter(cur, NGX_HTTP_LLM_JSON_OBJECT);

    if (rc != 1) {
        return (rc == 0) ? ngx_http_llm_json_skip(cur) : -1;
    }

    found = 0;
    first = 1;

    while ((rc = ngx_http_llm_json_next(cur, &first, &key)) == 1) {

        if (ngx_http_llm_json_str_eq(&key, name, len)) {
            rc = ngx_http_llm_json_get_int(cur, &n);

            if (rc == 1) {
                *v = n;
                found = 1;
            }

        } else {
            rc = ngx_http_llm_json_skip(cur);
        }

        if (rc < 0) {
            return -1;
        }
    }

    return rc < 0 ? -1 : found;
}
