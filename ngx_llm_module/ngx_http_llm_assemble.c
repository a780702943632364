
/*
 * Copyright (C) ngx_llm authors
 *
 * Response cache, pure C: assemble, encode, render. See the header.
 *
 * What is kept of an answer: id, model, created, the content text, tool
 * calls (OpenAI: id, name, arguments; Anthropic tool_use: id, name,
 * input), the finish reason (Anthropic: stop_reason, stop_sequence) and
 * the usage. Anything else that changes what the client reads (logprobs,
 * refusals, reasoning or thinking parts, several choices, an error) makes
 * the answer uncacheable rather than replayed wrong.
 */


#include <string.h>

#include "ngx_http_llm_assemble.h"
#include "ngx_http_llm_inspect.h"
#include "ngx_http_llm_json.h"


#define NGX_HTTP_LLM_ENTRY_MAGIC    "LLC1"


typedef struct {
    u_char                     *p;          /* NULL once out of room */
    u_char                     *end;
    size_t                      len;        /* bytes needed */
} ngx_http_llm_w_t;


/* -1 (unknown) or a count or timestamp JSON can carry exactly */
#define ngx_http_llm_entry_num_ok(v)                                         \
    ((v) >= -1 && (v) <= (int64_t) 9007199254740991)    /* 2^53 - 1 */


static ngx_http_llm_part_t *ngx_http_llm_msg_part(ngx_http_llm_msg_t *msg,
    unsigned type, int64_t index);
static int ngx_http_llm_msg_append(ngx_http_llm_msg_t *msg,
    ngx_http_llm_abuf_t *b, const u_char *p, size_t len);
static int ngx_http_llm_msg_set(ngx_http_llm_msg_t *msg,
    ngx_http_llm_abuf_t *b, ngx_http_llm_json_cur_t *cur);
static int ngx_http_llm_msg_fail(ngx_http_llm_msg_t *msg, const char *why);
static int ngx_http_llm_msg_openai(ngx_http_llm_msg_t *msg,
    ngx_http_llm_json_cur_t *cur, unsigned stream);
static int ngx_http_llm_msg_choice(ngx_http_llm_msg_t *msg,
    ngx_http_llm_json_cur_t *cur, unsigned stream);
static int ngx_http_llm_msg_delta(ngx_http_llm_msg_t *msg,
    ngx_http_llm_json_cur_t *cur);
static int ngx_http_llm_msg_tool_calls(ngx_http_llm_msg_t *msg,
    ngx_http_llm_json_cur_t *cur, unsigned stream);
static int ngx_http_llm_msg_anthropic(ngx_http_llm_msg_t *msg,
    ngx_http_llm_json_cur_t *cur);
static int ngx_http_llm_msg_block(ngx_http_llm_msg_t *msg,
    ngx_http_llm_json_cur_t *cur, int64_t index, unsigned stream);
static int ngx_http_llm_null_or_skip(ngx_http_llm_msg_t *msg,
    ngx_http_llm_json_cur_t *cur, const char *why);

static void ngx_http_llm_w(ngx_http_llm_w_t *w, const void *p, size_t len);
static void ngx_http_llm_ws(ngx_http_llm_w_t *w, const char *s);
static void ngx_http_llm_wnum(ngx_http_llm_w_t *w, int64_t v);
static void ngx_http_llm_wstr(ngx_http_llm_w_t *w,
    const ngx_http_llm_estr_t *s);
static void ngx_http_llm_wstr_or_null(ngx_http_llm_w_t *w,
    const ngx_http_llm_estr_t *s, unsigned present);
static void ngx_http_llm_wescape(ngx_http_llm_w_t *w, const u_char *p,
    size_t len);
static void ngx_http_llm_wu32(ngx_http_llm_w_t *w, uint32_t v);
static void ngx_http_llm_wu64(ngx_http_llm_w_t *w, uint64_t v);
static void ngx_http_llm_wbuf(ngx_http_llm_w_t *w,
    const ngx_http_llm_abuf_t *b);
static void ngx_http_llm_render_usage(ngx_http_llm_w_t *w,
    const ngx_http_llm_entry_t *e);
static void ngx_http_llm_render_anthropic_usage(ngx_http_llm_w_t *w,
    const ngx_http_llm_entry_t *e, unsigned start);
static size_t ngx_http_llm_cut(const ngx_http_llm_estr_t *s, size_t off,
    size_t chunk, unsigned escaped);
static void ngx_http_llm_replay_prefix(ngx_http_llm_w_t *w,
    const ngx_http_llm_entry_t *e);


#define ngx_http_llm_key(k, lit)                                             \
    ngx_http_llm_json_str_eq(k, lit, sizeof(lit) - 1)


void
ngx_http_llm_msg_init(ngx_http_llm_msg_t *msg, int api,
    ngx_http_llm_grow_pt grow, void *data)
{
    memset(msg, 0, sizeof(ngx_http_llm_msg_t));

    msg->api = api;
    msg->kind = NGX_HTTP_LLM_ENTRY_MESSAGE;
    msg->created = -1;
    msg->grow = grow;
    msg->data = data;

    ngx_http_llm_usage_init(&msg->usage);
}


int
ngx_http_llm_msg_event(ngx_http_llm_msg_t *msg, const u_char *name,
    size_t name_len, const u_char *data, size_t len)
{
    int                      rc;
    ngx_http_llm_json_cur_t  cur;

    if (msg->uncacheable) {
        return -1;
    }

    if (msg->api == NGX_HTTP_LLM_API_EMBEDDINGS) {
        return ngx_http_llm_msg_fail(msg, "an embeddings stream");
    }

    if (len == 6 && memcmp(data, "[DONE]", 6) == 0) {
        return 0;
    }

    ngx_http_llm_json_cur_init(&cur, data, len);

    if (NGX_HTTP_LLM_IS_ANTHROPIC(msg->api)) {
        rc = ngx_http_llm_msg_anthropic(msg, &cur);

    } else {
        rc = ngx_http_llm_msg_openai(msg, &cur, 1);
    }

    if (rc == -1 || cur.failed) {
        return ngx_http_llm_msg_fail(msg, "an event that is not valid JSON");
    }

    return msg->uncacheable ? -1 : 0;
}


int
ngx_http_llm_msg_response(ngx_http_llm_msg_t *msg, const u_char *body,
    size_t len)
{
    int                      rc;
    unsigned                 first;
    ngx_http_llm_json_cur_t  cur;
    ngx_http_llm_json_str_t  key;

    if (msg->uncacheable) {
        return -1;
    }

    ngx_http_llm_json_cur_init(&cur, body, len);

    if (msg->api == NGX_HTTP_LLM_API_EMBEDDINGS) {
        /* kept as is; an error object is not an answer */

        if (ngx_http_llm_json_enter(&cur, NGX_HTTP_LLM_JSON_OBJECT) != 1) {
            return ngx_http_llm_msg_fail(msg, "a body that is not an object");
        }

        first = 1;

        while ((rc = ngx_http_llm_json_next(&cur, &first, &key)) == 1) {
            if (ngx_http_llm_key(&key, "error")) {
                return ngx_http_llm_msg_fail(msg, "an error response");
            }

            if (ngx_http_llm_json_skip(&cur) != 0) {
                break;
            }
        }

        if (rc != 0 || ngx_http_llm_json_end(&cur) != 0) {
            return ngx_http_llm_msg_fail(msg, "a body that is not JSON");
        }

        msg->kind = NGX_HTTP_LLM_ENTRY_RAW;

        return ngx_http_llm_msg_append(msg, &msg->raw, body, len);
    }

    if (NGX_HTTP_LLM_IS_ANTHROPIC(msg->api)) {
        rc = ngx_http_llm_msg_anthropic(msg, &cur);

    } else {
        rc = ngx_http_llm_msg_openai(msg, &cur, 0);
    }

    if (rc == -1 || cur.failed || ngx_http_llm_json_end(&cur) != 0) {
        return ngx_http_llm_msg_fail(msg, "a body that is not valid JSON");
    }

    return msg->uncacheable ? -1 : 0;
}


int
ngx_http_llm_msg_finish(ngx_http_llm_msg_t *msg)
{
    size_t                n;
    u_char               *out;
    unsigned              i;
    const u_char         *p;
    ngx_http_llm_part_t  *part;

    if (msg->uncacheable) {
        return -1;
    }

    if (msg->kind == NGX_HTTP_LLM_ENTRY_RAW) {
        return 0;
    }

    if (msg->finish.len == 0) {
        return ngx_http_llm_msg_fail(msg, "an answer without finish reason");
    }

    for (i = 0; i < msg->nparts; i++) {
        part = &msg->parts[i];

        if (!part->escaped) {
            continue;
        }

        /* Anthropic partial_json: the JSON text of the tool input */

        part->escaped = 0;

        if (part->text.len == 0) {
            if (ngx_http_llm_msg_append(msg, &part->text,
                                        (const u_char *) "{}", 2) != 0)
            {
                return -1;
            }

            continue;
        }

        out = msg->grow(msg->data, NULL, 0, part->text.len + 4);
        if (out == NULL) {
            return ngx_http_llm_msg_fail(msg, "no memory");
        }

        p = part->text.data;
        n = 0;

        while (p < part->text.data + part->text.len) {
            n += ngx_http_llm_json_unescape(&p,
                                            part->text.data + part->text.len,
                                            out + n, part->text.len + 4 - n);
        }

        if (ngx_http_llm_json_validate(out, n, NGX_HTTP_LLM_JSON_MAX_DEPTH,
                                       &(ngx_http_llm_json_error_t) { 0 })
            != 0)
        {
            return ngx_http_llm_msg_fail(msg, "a tool input that is not JSON");
        }

        part->text.data = out;
        part->text.len = n;
        part->text.cap = part->text.len + 4;
    }

    return 0;
}


static int
ngx_http_llm_msg_fail(ngx_http_llm_msg_t *msg, const char *why)
{
    if (msg->uncacheable == NULL) {
        msg->uncacheable = why;
    }

    return -1;
}


static ngx_http_llm_part_t *
ngx_http_llm_msg_part(ngx_http_llm_msg_t *msg, unsigned type, int64_t index)
{
    unsigned              i;
    ngx_http_llm_part_t  *part;

    for (i = 0; i < msg->nparts; i++) {
        part = &msg->parts[i];

        if (part->type == type && part->index == index) {
            return part;
        }
    }

    if (msg->nparts == NGX_HTTP_LLM_MSG_MAX_PARTS) {
        (void) ngx_http_llm_msg_fail(msg, "too many parts");
        return NULL;
    }

    part = &msg->parts[msg->nparts++];
    part->type = type;
    part->index = index;

    return part;
}


static int
ngx_http_llm_msg_append(ngx_http_llm_msg_t *msg, ngx_http_llm_abuf_t *b,
    const u_char *p, size_t len)
{
    size_t   cap;
    u_char  *n;

    if (len == 0) {
        return 0;
    }

    if (b->cap - b->len < len) {
        cap = b->cap ? b->cap : 64;

        while (cap - b->len < len) {
            cap *= 2;
        }

        n = msg->grow(msg->data, b->data, b->len, cap);
        if (n == NULL) {
            return ngx_http_llm_msg_fail(msg, "no memory");
        }

        b->data = n;
        b->cap = cap;
    }

    memcpy(b->data + b->len, p, len);
    b->len += len;

    return 0;
}


/* a string value replaces the buffer's contents; null leaves it */

static int
ngx_http_llm_msg_set(ngx_http_llm_msg_t *msg, ngx_http_llm_abuf_t *b,
    ngx_http_llm_json_cur_t *cur)
{
    int                      rc;
    ngx_http_llm_json_str_t  s;

    rc = ngx_http_llm_json_get_string(cur, &s);

    if (rc != 1) {
        return rc;
    }

    b->len = 0;

    return ngx_http_llm_msg_append(msg, b, s.data, s.len);
}


static int
ngx_http_llm_null_or_skip(ngx_http_llm_msg_t *msg,
    ngx_http_llm_json_cur_t *cur, const char *why)
{
    int  t;

    t = ngx_http_llm_json_peek(cur);

    if (t != NGX_HTTP_LLM_JSON_NULL && why) {
        (void) ngx_http_llm_msg_fail(msg, why);
    }

    return ngx_http_llm_json_skip(cur);
}


/* chat.completion(.chunk), text_completion: top level */

static int
ngx_http_llm_msg_openai(ngx_http_llm_msg_t *msg, ngx_http_llm_json_cur_t *cur,
    unsigned stream)
{
    int                      rc;
    int64_t                  v;
    unsigned                 first, afirst, n;
    ngx_http_llm_json_str_t  key;

    if (ngx_http_llm_json_enter(cur, NGX_HTTP_LLM_JSON_OBJECT) != 1) {
        return -1;
    }

    first = 1;

    while ((rc = ngx_http_llm_json_next(cur, &first, &key)) == 1) {

        if (ngx_http_llm_key(&key, "id")) {
            rc = ngx_http_llm_msg_set(msg, &msg->id, cur);

        } else if (ngx_http_llm_key(&key, "model")) {
            rc = ngx_http_llm_msg_set(msg, &msg->model, cur);

        } else if (ngx_http_llm_key(&key, "created")) {
            /* a timestamp the entry can hold, else unknown (rendered 0) */
            rc = ngx_http_llm_json_get_int(cur, &v);
            if (rc == 1 && ngx_http_llm_entry_num_ok(v)) {
                msg->created = v;
            }

        } else if (ngx_http_llm_key(&key, "error")) {
            rc = ngx_http_llm_null_or_skip(msg, cur, "an error");

        } else if (ngx_http_llm_key(&key, "choices")) {
            rc = ngx_http_llm_json_enter(cur, NGX_HTTP_LLM_JSON_ARRAY);
            if (rc != 1) {
                return -1;
            }

            afirst = 1;
            n = 0;

            while ((rc = ngx_http_llm_json_next(cur, &afirst, NULL)) == 1) {
                if (n++) {
                    (void) ngx_http_llm_msg_fail(msg, "several choices");
                }

                if (ngx_http_llm_msg_choice(msg, cur, stream) != 0) {
                    return -1;
                }
            }

        } else {
            /* object, usage (taken by the caller), system_fingerprint... */
            rc = ngx_http_llm_json_skip(cur);
        }

        if (rc == -1) {
            return -1;
        }
    }

    return rc;
}


static int
ngx_http_llm_msg_choice(ngx_http_llm_msg_t *msg, ngx_http_llm_json_cur_t *cur,
    unsigned stream)
{
    int                      rc;
    int64_t                  v;
    unsigned                 first;
    ngx_http_llm_part_t     *part;
    ngx_http_llm_json_str_t  key, s;

    if (ngx_http_llm_json_enter(cur, NGX_HTTP_LLM_JSON_OBJECT) != 1) {
        return -1;
    }

    first = 1;

    while ((rc = ngx_http_llm_json_next(cur, &first, &key)) == 1) {

        if (ngx_http_llm_key(&key, "index")) {
            rc = ngx_http_llm_json_get_int(cur, &v);
            if (rc == 1 && v != 0) {
                (void) ngx_http_llm_msg_fail(msg, "several choices");
            }

        } else if (ngx_http_llm_key(&key, "finish_reason")) {
            rc = ngx_http_llm_msg_set(msg, &msg->finish, cur);

        } else if (ngx_http_llm_key(&key, "logprobs")) {
            rc = ngx_http_llm_null_or_skip(msg, cur, "logprobs");

        } else if (ngx_http_llm_key(&key, "text")) {
            /* completions */
            rc = ngx_http_llm_json_get_string(cur, &s);
            if (rc == 1) {
                part = ngx_http_llm_msg_part(msg, NGX_HTTP_LLM_PART_TEXT, 0);
                if (part == NULL
                    || ngx_http_llm_msg_append(msg, &part->text, s.data,
                                               s.len) != 0)
                {
                    return -1;
                }
            }

        } else if (stream ? ngx_http_llm_key(&key, "delta")
                          : ngx_http_llm_key(&key, "message"))
        {
            rc = ngx_http_llm_msg_delta(msg, cur);

        } else {
            /* stop_reason (vLLM), matched_stop (SGLang): informative */
            rc = ngx_http_llm_json_skip(cur);
        }

        if (rc == -1) {
            return -1;
        }
    }

    return rc;
}


/* a chat delta, or the message of a complete answer */

static int
ngx_http_llm_msg_delta(ngx_http_llm_msg_t *msg, ngx_http_llm_json_cur_t *cur)
{
    int                      rc;
    unsigned                 first;
    ngx_http_llm_part_t     *part;
    ngx_http_llm_json_str_t  key, s;

    if (ngx_http_llm_json_enter(cur, NGX_HTTP_LLM_JSON_OBJECT) != 1) {
        return -1;
    }

    first = 1;

    while ((rc = ngx_http_llm_json_next(cur, &first, &key)) == 1) {

        if (ngx_http_llm_key(&key, "content")) {
            /* "" as in the first chunk of a stream is no content yet */
            rc = ngx_http_llm_json_get_string(cur, &s);
            if (rc == 1 && s.len) {
                part = ngx_http_llm_msg_part(msg, NGX_HTTP_LLM_PART_TEXT, 0);
                if (part == NULL
                    || ngx_http_llm_msg_append(msg, &part->text, s.data,
                                               s.len) != 0)
                {
                    return -1;
                }
            }

        } else if (ngx_http_llm_key(&key, "tool_calls")) {
            rc = ngx_http_llm_msg_tool_calls(msg, cur, 1);

        } else if (ngx_http_llm_key(&key, "role")
                   || ngx_http_llm_key(&key, "annotations"))
        {
            rc = ngx_http_llm_json_skip(cur);

        } else {
            /* refusal, reasoning_content, audio, function_call... */
            rc = ngx_http_llm_null_or_skip(msg, cur,
                                           "a part the cache cannot replay");
        }

        if (rc == -1) {
            return -1;
        }
    }

    return rc;
}


static int
ngx_http_llm_msg_tool_calls(ngx_http_llm_msg_t *msg,
    ngx_http_llm_json_cur_t *cur, unsigned stream)
{
    int                      rc;
    int64_t                  index, n;
    unsigned                 afirst, first, ffirst;
    const u_char            *start;
    ngx_http_llm_part_t     *part;
    ngx_http_llm_json_str_t  key, s;
    ngx_http_llm_json_cur_t  look;

    /* a legacy completion has no tool calls to replay (found by fuzzing) */

    if (msg->api == NGX_HTTP_LLM_API_COMPLETIONS) {
        return ngx_http_llm_msg_fail(msg, "tool calls in a completion");
    }

    rc = ngx_http_llm_json_enter(cur, NGX_HTTP_LLM_JSON_ARRAY);
    if (rc != 1) {
        return rc;
    }

    afirst = 1;
    n = 0;

    while ((rc = ngx_http_llm_json_next(cur, &afirst, NULL)) == 1) {

        /* the index first (a delta names its call by index) */

        index = n++;
        look = *cur;
        start = cur->p;

        if (ngx_http_llm_json_enter(&look, NGX_HTTP_LLM_JSON_OBJECT) != 1) {
            return -1;
        }

        first = 1;

        while (ngx_http_llm_json_next(&look, &first, &key) == 1) {
            if (ngx_http_llm_key(&key, "index")) {
                if (ngx_http_llm_json_get_int(&look, &index) == -1) {
                    return -1;
                }

            } else if (ngx_http_llm_json_skip(&look) != 0) {
                return -1;
            }
        }

        part = ngx_http_llm_msg_part(msg, NGX_HTTP_LLM_PART_TOOL, index);
        if (part == NULL) {
            return -1;
        }

        cur->p = start;

        if (ngx_http_llm_json_enter(cur, NGX_HTTP_LLM_JSON_OBJECT) != 1) {
            return -1;
        }

        first = 1;

        while ((rc = ngx_http_llm_json_next(cur, &first, &key)) == 1) {

            if (ngx_http_llm_key(&key, "id")) {
                rc = ngx_http_llm_msg_set(msg, &part->id, cur);

            } else if (ngx_http_llm_key(&key, "type")) {
                rc = ngx_http_llm_json_get_string(cur, &s);
                if (rc == 1 && !ngx_http_llm_key(&s, "function")) {
                    (void) ngx_http_llm_msg_fail(msg, "a custom tool call");
                }

            } else if (ngx_http_llm_key(&key, "function")) {
                if (ngx_http_llm_json_enter(cur, NGX_HTTP_LLM_JSON_OBJECT)
                    != 1)
                {
                    return -1;
                }

                ffirst = 1;

                while ((rc = ngx_http_llm_json_next(cur, &ffirst, &key)) == 1)
                {
                    if (ngx_http_llm_key(&key, "name")) {
                        rc = ngx_http_llm_msg_set(msg, &part->name, cur);

                    } else if (ngx_http_llm_key(&key, "arguments")) {
                        rc = ngx_http_llm_json_get_string(cur, &s);
                        if (rc == 1
                            && ngx_http_llm_msg_append(msg, &part->text,
                                                       s.data, s.len) != 0)
                        {
                            return -1;
                        }

                    } else {
                        rc = ngx_http_llm_json_skip(cur);
                    }

                    if (rc == -1) {
                        return -1;
                    }
                }

            } else {
                rc = ngx_http_llm_json_skip(cur);
            }

            if (rc == -1) {
                return -1;
            }
        }

        if (rc == -1) {
            return -1;
        }
    }

    return rc;
}


/* Anthropic: an event's data, or a complete message */

static int
ngx_http_llm_msg_anthropic(ngx_http_llm_msg_t *msg,
    ngx_http_llm_json_cur_t *cur)
{
    int                      rc;
    int64_t                  index;
    unsigned                 first, afirst;
    ngx_http_llm_part_t     *part;
    ngx_http_llm_json_str_t  key, s, type;
    ngx_http_llm_json_cur_t  look;

    /* the type and the index first: they say how to read the rest */

    look = *cur;
    type.len = 0;
    type.data = NULL;
    index = -1;

    if (ngx_http_llm_json_enter(&look, NGX_HTTP_LLM_JSON_OBJECT) != 1) {
        return -1;
    }

    first = 1;

    while ((rc = ngx_http_llm_json_next(&look, &first, &key)) == 1) {
        if (ngx_http_llm_key(&key, "type")) {
            rc = ngx_http_llm_json_get_string(&look, &type);

        } else if (ngx_http_llm_key(&key, "index")) {
            rc = ngx_http_llm_json_get_int(&look, &index);

        } else {
            rc = ngx_http_llm_json_skip(&look);
        }

        if (rc == -1) {
            return -1;
        }
    }

    if (rc == -1) {
        return -1;
    }

    if (ngx_http_llm_key(&type, "ping")
        || ngx_http_llm_key(&type, "content_block_stop")
        || ngx_http_llm_key(&type, "message_stop"))
    {
        *cur = look;
        return 0;
    }

    if (ngx_http_llm_key(&type, "error") || type.len == 0) {
        *cur = look;
        return ngx_http_llm_msg_fail(msg, "an error");
    }

    if (ngx_http_llm_json_enter(cur, NGX_HTTP_LLM_JSON_OBJECT) != 1) {
        return -1;
    }

    first = 1;

    while ((rc = ngx_http_llm_json_next(cur, &first, &key)) == 1) {

        if (ngx_http_llm_key(&type, "message_start")
            && ngx_http_llm_key(&key, "message"))
        {
            rc = ngx_http_llm_msg_anthropic(msg, cur);

        } else if (ngx_http_llm_key(&type, "message")
                   && ngx_http_llm_key(&key, "id"))
        {
            rc = ngx_http_llm_msg_set(msg, &msg->id, cur);

        } else if (ngx_http_llm_key(&type, "message")
                   && ngx_http_llm_key(&key, "model"))
        {
            rc = ngx_http_llm_msg_set(msg, &msg->model, cur);

        } else if (ngx_http_llm_key(&type, "message")
                   && ngx_http_llm_key(&key, "content"))
        {
            rc = ngx_http_llm_json_enter(cur, NGX_HTTP_LLM_JSON_ARRAY);
            if (rc != 1) {
                return -1;
            }

            afirst = 1;
            index = 0;

            while ((rc = ngx_http_llm_json_next(cur, &afirst, NULL)) == 1) {
                if (ngx_http_llm_msg_block(msg, cur, index++, 0) != 0) {
                    return -1;
                }
            }

        } else if ((ngx_http_llm_key(&type, "message")
                    || ngx_http_llm_key(&type, "message_delta"))
                   && (ngx_http_llm_key(&key, "stop_reason")
                       || ngx_http_llm_key(&key, "stop_sequence")
                       || ngx_http_llm_key(&key, "delta")))
        {
            if (ngx_http_llm_key(&key, "delta")) {
                rc = ngx_http_llm_json_enter(cur, NGX_HTTP_LLM_JSON_OBJECT);
                if (rc != 1) {
                    return -1;
                }

                afirst = 1;

                while ((rc = ngx_http_llm_json_next(cur, &afirst, &key)) == 1)
                {
                    if (ngx_http_llm_key(&key, "stop_reason")) {
                        rc = ngx_http_llm_msg_set(msg, &msg->finish, cur);

                    } else if (ngx_http_llm_key(&key, "stop_sequence")) {
                        rc = ngx_http_llm_msg_set(msg, &msg->stop_seq, cur);

                    } else {
                        rc = ngx_http_llm_json_skip(cur);
                    }

                    if (rc == -1) {
                        return -1;
                    }
                }

            } else if (ngx_http_llm_key(&key, "stop_reason")) {
                rc = ngx_http_llm_msg_set(msg, &msg->finish, cur);

            } else {
                rc = ngx_http_llm_msg_set(msg, &msg->stop_seq, cur);
            }

        } else if (ngx_http_llm_key(&type, "content_block_start")
                   && ngx_http_llm_key(&key, "content_block"))
        {
            rc = ngx_http_llm_msg_block(msg, cur, index, 1);

        } else if (ngx_http_llm_key(&type, "content_block_delta")
                   && ngx_http_llm_key(&key, "delta"))
        {
            if (ngx_http_llm_json_enter(cur, NGX_HTTP_LLM_JSON_OBJECT) != 1)
            {
                return -1;
            }

            afirst = 1;
            part = NULL;

            while ((rc = ngx_http_llm_json_next(cur, &afirst, &key)) == 1) {

                if (ngx_http_llm_key(&key, "type")) {
                    rc = ngx_http_llm_json_get_string(cur, &s);
                    if (rc != 1) {
                        continue;
                    }

                    if (ngx_http_llm_key(&s, "text_delta")) {
                        part = ngx_http_llm_msg_part(msg,
                                   NGX_HTTP_LLM_PART_TEXT, index);

                    } else if (ngx_http_llm_key(&s, "input_json_delta")) {
                        part = ngx_http_llm_msg_part(msg,
                                   NGX_HTTP_LLM_PART_TOOL, index);

                    } else {
                        (void) ngx_http_llm_msg_fail(msg,
                                   "a part the cache cannot replay");
                    }

                } else if (ngx_http_llm_key(&key, "text")
                           || ngx_http_llm_key(&key, "partial_json"))
                {
                    rc = ngx_http_llm_json_get_string(cur, &s);
                    if (rc == 1 && part
                        && ngx_http_llm_msg_append(msg, &part->text, s.data,
                                                   s.len) != 0)
                    {
                        return -1;
                    }

                } else {
                    rc = ngx_http_llm_json_skip(cur);
                }

                if (rc == -1) {
                    return -1;
                }
            }

            if (msg->uncacheable) {
                return -1;
            }

            if (part == NULL) {
                return ngx_http_llm_msg_fail(msg, "a delta of no type");
            }

        } else {
            /* usage (taken by the caller), type, role, index... */
            rc = ngx_http_llm_json_skip(cur);
        }

        if (rc == -1) {
            return -1;
        }
    }

    return rc;
}


/* an Anthropic content block, from content_block_start or a message */

static int
ngx_http_llm_msg_block(ngx_http_llm_msg_t *msg, ngx_http_llm_json_cur_t *cur,
    int64_t index, unsigned stream)
{
    int                      rc;
    unsigned                 first, type;
    const u_char            *start;
    ngx_http_llm_part_t     *part;
    ngx_http_llm_json_str_t  key, s;
    ngx_http_llm_json_cur_t  look;

    look = *cur;
    type = 0;

    if (ngx_http_llm_json_enter(&look, NGX_HTTP_LLM_JSON_OBJECT) != 1) {
        return -1;
    }

    first = 1;

    while ((rc = ngx_http_llm_json_next(&look, &first, &key)) == 1) {
        if (ngx_http_llm_key(&key, "type")) {
            if (ngx_http_llm_json_get_string(&look, &s) != 1) {
                return -1;
            }

            if (ngx_http_llm_key(&s, "text")) {
                type = NGX_HTTP_LLM_PART_TEXT;

            } else if (ngx_http_llm_key(&s, "tool_use")) {
                type = NGX_HTTP_LLM_PART_TOOL;
            }

        } else if (ngx_http_llm_json_skip(&look) != 0) {
            return -1;
        }
    }

    if (rc == -1) {
        return -1;
    }

    if (type == 0 || index < 0) {
        *cur = look;
        return ngx_http_llm_msg_fail(msg, "a part the cache cannot replay");
    }

    part = ngx_http_llm_msg_part(msg, type, index);
    if (part == NULL) {
        return -1;
    }

    part->escaped = (type == NGX_HTTP_LLM_PART_TOOL && stream);

    if (ngx_http_llm_json_enter(cur, NGX_HTTP_LLM_JSON_OBJECT) != 1) {
        return -1;
    }

    first = 1;

    while ((rc = ngx_http_llm_json_next(cur, &first, &key)) == 1) {

        if (ngx_http_llm_key(&key, "id")) {
            rc = ngx_http_llm_msg_set(msg, &part->id, cur);

        } else if (ngx_http_llm_key(&key, "name")) {
            rc = ngx_http_llm_msg_set(msg, &part->name, cur);

        } else if (ngx_http_llm_key(&key, "text")) {
            rc = ngx_http_llm_json_get_string(cur, &s);
            if (rc == 1
                && ngx_http_llm_msg_append(msg, &part->text, s.data, s.len)
                   != 0)
            {
                return -1;
            }

        } else if (ngx_http_llm_key(&key, "input") && !stream) {
            /* the raw JSON value */
            (void) ngx_http_llm_json_peek(cur);
            start = cur->p;

            rc = ngx_http_llm_json_skip(cur);
            if (rc == 0
                && ngx_http_llm_msg_append(msg, &part->text, start,
                                           cur->p - start) != 0)
            {
                return -1;
            }

        } else if (ngx_http_llm_key(&key, "citations")) {
            rc = ngx_http_llm_null_or_skip(msg, cur, "citations");

        } else {
            rc = ngx_http_llm_json_skip(cur);
        }

        if (rc == -1) {
            return -1;
        }
    }

    return rc;
}


/* encoding */


size_t
ngx_http_llm_msg_encode(const ngx_http_llm_msg_t *msg, u_char *out,
    size_t cap)
{
    u_char                      b[4];
    unsigned                    i;
    ngx_http_llm_w_t            w;
    const ngx_http_llm_part_t  *part;

    w.p = out;
    w.end = out ? out + cap : NULL;
    w.len = 0;

    ngx_http_llm_w(&w, NGX_HTTP_LLM_ENTRY_MAGIC, 4);

    b[0] = (u_char) msg->api;
    b[1] = (u_char) msg->kind;
    b[2] = (u_char) msg->nparts;
    b[3] = (u_char) (msg->stop_seq.len || msg->stop_seq.data ? 1 : 0);
    ngx_http_llm_w(&w, b, 4);

    ngx_http_llm_wu64(&w, (uint64_t) msg->created);
    ngx_http_llm_wu64(&w, (uint64_t) msg->usage.prompt_tokens);
    ngx_http_llm_wu64(&w, (uint64_t) msg->usage.completion_tokens);
    ngx_http_llm_wu64(&w, (uint64_t) msg->usage.cached_tokens);
    ngx_http_llm_wu64(&w, (uint64_t) msg->usage.cache_write_tokens);
    ngx_http_llm_wu64(&w, (uint64_t) msg->usage.reasoning_tokens);

    ngx_http_llm_wbuf(&w, &msg->id);
    ngx_http_llm_wbuf(&w, &msg->model);
    ngx_http_llm_wbuf(&w, &msg->finish);
    ngx_http_llm_wbuf(&w, &msg->stop_seq);
    ngx_http_llm_wbuf(&w, &msg->raw);

    for (i = 0; i < msg->nparts; i++) {
        part = &msg->parts[i];

        b[0] = (u_char) part->type;
        ngx_http_llm_w(&w, b, 1);
        ngx_http_llm_wbuf(&w, &part->id);
        ngx_http_llm_wbuf(&w, &part->name);
        ngx_http_llm_wbuf(&w, &part->text);
    }

    return w.len;
}


static uint64_t
ngx_http_llm_ru64(const u_char *p)
{
    unsigned  i;
    uint64_t  v;

    v = 0;

    for (i = 0; i < 8; i++) {
        v |= (uint64_t) p[i] << (8 * i);
    }

    return v;
}


static int
ngx_http_llm_rstr(const u_char **pp, const u_char *end,
    ngx_http_llm_estr_t *s)
{
    size_t         len;
    const u_char  *p;

    p = *pp;

    if (end - p < 4) {
        return -1;
    }

    len = (size_t) p[0] | (size_t) p[1] << 8 | (size_t) p[2] << 16
          | (size_t) p[3] << 24;
    p += 4;

    if ((size_t) (end - p) < len) {
        return -1;
    }

    s->data = p;
    s->len = len;
    *pp = p + len;

    return 0;
}


int
ngx_http_llm_entry_decode(ngx_http_llm_entry_t *e, const u_char *p,
    size_t len)
{
    unsigned               i;
    const u_char          *end;
    ngx_http_llm_epart_t  *part;

    memset(e, 0, sizeof(ngx_http_llm_entry_t));

    end = p + len;

    if (len < 8 + 6 * 8 || memcmp(p, NGX_HTTP_LLM_ENTRY_MAGIC, 4) != 0) {
        return -1;
    }

    e->api = p[4];
    e->kind = p[5];
    e->nparts = p[6];
    e->has_stop_seq = p[7] ? 1 : 0;
    p += 8;

    if (e->nparts > NGX_HTTP_LLM_MSG_MAX_PARTS
        || (e->kind != NGX_HTTP_LLM_ENTRY_MESSAGE
            && e->kind != NGX_HTTP_LLM_ENTRY_RAW))
    {
        return -1;
    }

    e->created = (int64_t) ngx_http_llm_ru64(p);
    e->usage.prompt_tokens = (int64_t) ngx_http_llm_ru64(p + 8);
    e->usage.completion_tokens = (int64_t) ngx_http_llm_ru64(p + 16);
    e->usage.cached_tokens = (int64_t) ngx_http_llm_ru64(p + 24);
    e->usage.cache_write_tokens = (int64_t) ngx_http_llm_ru64(p + 32);
    e->usage.reasoning_tokens = (int64_t) ngx_http_llm_ru64(p + 40);
    p += 48;

    /*
     * -1 (unknown) or a JSON-safe count: an entry read back from Redis may
     * hold anything, and the rendering adds the counts up
     */

    if (!ngx_http_llm_entry_num_ok(e->created)
        || !ngx_http_llm_entry_num_ok(e->usage.prompt_tokens)
        || !ngx_http_llm_entry_num_ok(e->usage.completion_tokens)
        || !ngx_http_llm_entry_num_ok(e->usage.cached_tokens)
        || !ngx_http_llm_entry_num_ok(e->usage.cache_write_tokens)
        || !ngx_http_llm_entry_num_ok(e->usage.reasoning_tokens))
    {
        return -1;
    }

    if (ngx_http_llm_rstr(&p, end, &e->id) != 0
        || ngx_http_llm_rstr(&p, end, &e->model) != 0
        || ngx_http_llm_rstr(&p, end, &e->finish) != 0
        || ngx_http_llm_rstr(&p, end, &e->stop_seq) != 0
        || ngx_http_llm_rstr(&p, end, &e->raw) != 0)
    {
        return -1;
    }

    for (i = 0; i < e->nparts; i++) {
        part = &e->parts[i];

        if (p == end) {
            return -1;
        }

        part->type = *p++;

        if (ngx_http_llm_rstr(&p, end, &part->id) != 0
            || ngx_http_llm_rstr(&p, end, &part->name) != 0
            || ngx_http_llm_rstr(&p, end, &part->text) != 0)
        {
            return -1;
        }
    }

    return p == end ? 0 : -1;
}


/* rendering */


size_t
ngx_http_llm_render_json(const ngx_http_llm_entry_t *e, u_char *out,
    size_t cap)
{
    unsigned                     i, n;
    ngx_http_llm_w_t             w;
    const ngx_http_llm_epart_t  *part, *text;

    w.p = out;
    w.end = out ? out + cap : NULL;
    w.len = 0;

    if (e->kind == NGX_HTTP_LLM_ENTRY_RAW) {
        ngx_http_llm_w(&w, e->raw.data, e->raw.len);
        return w.len;
    }

    if (NGX_HTTP_LLM_IS_ANTHROPIC(e->api)) {
        ngx_http_llm_ws(&w, "{\"id\":");
        ngx_http_llm_wstr(&w, &e->id);
        ngx_http_llm_ws(&w, ",\"type\":\"message\",\"role\":\"assistant\","
                            "\"model\":");
        ngx_http_llm_wstr(&w, &e->model);
        ngx_http_llm_ws(&w, ",\"content\":[");

        for (i = 0; i < e->nparts; i++) {
            part = &e->parts[i];

            if (i) {
                ngx_http_llm_ws(&w, ",");
            }

            if (part->type == NGX_HTTP_LLM_PART_TEXT) {
                ngx_http_llm_ws(&w, "{\"type\":\"text\",\"text\":");
                ngx_http_llm_wstr(&w, &part->text);

            } else {
                ngx_http_llm_ws(&w, "{\"type\":\"tool_use\",\"id\":");
                ngx_http_llm_wstr(&w, &part->id);
                ngx_http_llm_ws(&w, ",\"name\":");
                ngx_http_llm_wstr(&w, &part->name);
                ngx_http_llm_ws(&w, ",\"input\":");
                ngx_http_llm_w(&w, part->text.data, part->text.len);
            }

            ngx_http_llm_ws(&w, "}");
        }

        ngx_http_llm_ws(&w, "],\"stop_reason\":");
        ngx_http_llm_wstr(&w, &e->finish);
        ngx_http_llm_ws(&w, ",\"stop_sequence\":");
        ngx_http_llm_wstr_or_null(&w, &e->stop_seq, e->has_stop_seq);
        ngx_http_llm_ws(&w, ",\"usage\":");
        ngx_http_llm_render_anthropic_usage(&w, e, 0);
        ngx_http_llm_ws(&w, "}");

        return w.len;
    }

    text = NULL;

    for (i = 0; i < e->nparts; i++) {
        if (e->parts[i].type == NGX_HTTP_LLM_PART_TEXT) {
            text = &e->parts[i];
            break;
        }
    }

    ngx_http_llm_ws(&w, "{\"id\":");
    ngx_http_llm_wstr(&w, &e->id);

    if (e->api == NGX_HTTP_LLM_API_COMPLETIONS) {
        ngx_http_llm_ws(&w, ",\"object\":\"text_completion\",\"created\":");
        ngx_http_llm_wnum(&w, e->created < 0 ? 0 : e->created);
        ngx_http_llm_ws(&w, ",\"model\":");
        ngx_http_llm_wstr(&w, &e->model);
        ngx_http_llm_ws(&w, ",\"choices\":[{\"text\":");
        ngx_http_llm_wstr(&w, text ? &text->text : &e->raw);
        ngx_http_llm_ws(&w, ",\"index\":0,\"logprobs\":null,"
                            "\"finish_reason\":");
        ngx_http_llm_wstr(&w, &e->finish);
        ngx_http_llm_ws(&w, "}]");

    } else {
        ngx_http_llm_ws(&w, ",\"object\":\"chat.completion\",\"created\":");
        ngx_http_llm_wnum(&w, e->created < 0 ? 0 : e->created);
        ngx_http_llm_ws(&w, ",\"model\":");
        ngx_http_llm_wstr(&w, &e->model);
        ngx_http_llm_ws(&w, ",\"choices\":[{\"index\":0,\"message\":"
                            "{\"role\":\"assistant\",\"content\":");
        ngx_http_llm_wstr_or_null(&w, text ? &text->text : NULL,
                                  text != NULL);

        n = 0;

        for (i = 0; i < e->nparts; i++) {
            part = &e->parts[i];

            if (part->type != NGX_HTTP_LLM_PART_TOOL) {
                continue;
            }

            ngx_http_llm_ws(&w, n++ ? "," : ",\"tool_calls\":[");
            ngx_http_llm_ws(&w, "{\"id\":");
            ngx_http_llm_wstr(&w, &part->id);
            ngx_http_llm_ws(&w, ",\"type\":\"function\",\"function\":"
                                "{\"name\":");
            ngx_http_llm_wstr(&w, &part->name);
            ngx_http_llm_ws(&w, ",\"arguments\":");
            ngx_http_llm_wstr(&w, &part->text);
            ngx_http_llm_ws(&w, "}}");
        }

        if (n) {
            ngx_http_llm_ws(&w, "]");
        }

        ngx_http_llm_ws(&w, "},\"logprobs\":null,\"finish_reason\":");
        ngx_http_llm_wstr(&w, &e->finish);
        ngx_http_llm_ws(&w, "}]");
    }

    if (e->usage.prompt_tokens >= 0 && e->usage.completion_tokens >= 0) {
        ngx_http_llm_ws(&w, ",\"usage\":");
        ngx_http_llm_render_usage(&w, e);
    }

    ngx_http_llm_ws(&w, "}");

    return w.len;
}


static void
ngx_http_llm_render_usage(ngx_http_llm_w_t *w, const ngx_http_llm_entry_t *e)
{
    ngx_http_llm_ws(w, "{\"prompt_tokens\":");
    ngx_http_llm_wnum(w, e->usage.prompt_tokens);
    ngx_http_llm_ws(w, ",\"completion_tokens\":");
    ngx_http_llm_wnum(w, e->usage.completion_tokens);
    ngx_http_llm_ws(w, ",\"total_tokens\":");
    ngx_http_llm_wnum(w, e->usage.prompt_tokens + e->usage.completion_tokens);

    if (e->usage.cached_tokens >= 0) {
        ngx_http_llm_ws(w, ",\"prompt_tokens_details\":{\"cached_tokens\":");
        ngx_http_llm_wnum(w, e->usage.cached_tokens);
        ngx_http_llm_ws(w, "}");
    }

    if (e->usage.reasoning_tokens >= 0) {
        ngx_http_llm_ws(w, ",\"completion_tokens_details\":"
                           "{\"reasoning_tokens\":");
        ngx_http_llm_wnum(w, e->usage.reasoning_tokens);
        ngx_http_llm_ws(w, "}");
    }

    ngx_http_llm_ws(w, "}");
}


static void
ngx_http_llm_render_anthropic_usage(ngx_http_llm_w_t *w,
    const ngx_http_llm_entry_t *e, unsigned start)
{
    int64_t  input, read, write;

    read = e->usage.cached_tokens > 0 ? e->usage.cached_tokens : 0;
    write = e->usage.cache_write_tokens > 0 ? e->usage.cache_write_tokens : 0;
    input = e->usage.prompt_tokens - read - write;

    ngx_http_llm_ws(w, "{\"input_tokens\":");
    ngx_http_llm_wnum(w, input > 0 ? input : 0);
    ngx_http_llm_ws(w, ",\"cache_creation_input_tokens\":");
    ngx_http_llm_wnum(w, write);
    ngx_http_llm_ws(w, ",\"cache_read_input_tokens\":");
    ngx_http_llm_wnum(w, read);
    ngx_http_llm_ws(w, ",\"output_tokens\":");
    ngx_http_llm_wnum(w, start ? 1 : (e->usage.completion_tokens > 0
                                      ? e->usage.completion_tokens : 0));
    ngx_http_llm_ws(w, "}");
}


/* SSE replay */

#define NGX_HTTP_LLM_RP_START        0
#define NGX_HTTP_LLM_RP_PART_START   1
#define NGX_HTTP_LLM_RP_PART_DELTA   2
#define NGX_HTTP_LLM_RP_PART_STOP    3
#define NGX_HTTP_LLM_RP_FINISH       4
#define NGX_HTTP_LLM_RP_USAGE        5
#define NGX_HTTP_LLM_RP_DONE         6
#define NGX_HTTP_LLM_RP_END          7


void
ngx_http_llm_replay_init(ngx_http_llm_replay_t *rp,
    const ngx_http_llm_entry_t *e, size_t chunk, unsigned include_usage)
{
    memset(rp, 0, sizeof(ngx_http_llm_replay_t));

    rp->entry = e;
    rp->chunk = chunk ? chunk : 1;
    rp->include_usage = include_usage;
}


size_t
ngx_http_llm_replay_max(const ngx_http_llm_replay_t *rp)
{
    size_t                       max, n;
    unsigned                     i;
    const ngx_http_llm_entry_t  *e;

    e = rp->entry;

    /* the fixed parts of the largest event, with room to spare */

    max = 1024 + e->id.len + e->model.len + e->finish.len + e->stop_seq.len;
    n = 0;

    for (i = 0; i < e->nparts; i++) {
        n = e->parts[i].id.len + e->parts[i].name.len;
        max += n;
    }

    /* a chunk of text: cut units are up to 12 bytes, escaping x6 */

    return max + 6 * (rp->chunk + 12);
}


size_t
ngx_http_llm_replay_next(ngx_http_llm_replay_t *rp, u_char *out, size_t cap,
    unsigned *content)
{
    size_t                       end;
    unsigned                     ant, chat, last;
    ngx_http_llm_w_t             w;
    ngx_http_llm_estr_t          piece;
    const ngx_http_llm_entry_t  *e;
    const ngx_http_llm_epart_t  *part;

    e = rp->entry;
    ant = NGX_HTTP_LLM_IS_ANTHROPIC(e->api);
    chat = (e->api == NGX_HTTP_LLM_API_CHAT);

    w.p = out;
    w.end = out + cap;
    w.len = 0;

    *content = 0;

again:

    part = rp->part < e->nparts ? &e->parts[rp->part] : NULL;

    switch (rp->stage) {

    case NGX_HTTP_LLM_RP_START:
        rp->stage = NGX_HTTP_LLM_RP_PART_START;

        if (ant) {
            ngx_http_llm_ws(&w, "event: message_start\ndata: "
                                "{\"type\":\"message_start\",\"message\":"
                                "{\"id\":");
            ngx_http_llm_wstr(&w, &e->id);
            ngx_http_llm_ws(&w, ",\"type\":\"message\",\"role\":"
                                "\"assistant\",\"model\":");
            ngx_http_llm_wstr(&w, &e->model);
            ngx_http_llm_ws(&w, ",\"content\":[],\"stop_reason\":null,"
                                "\"stop_sequence\":null,\"usage\":");
            ngx_http_llm_render_anthropic_usage(&w, e, 1);
            ngx_http_llm_ws(&w, "}}\n\n");
            break;
        }

        if (!chat) {
            goto again;
        }

        ngx_http_llm_replay_prefix(&w, e);
        ngx_http_llm_ws(&w, "\"delta\":{\"role\":\"assistant\","
                            "\"content\":\"\"},\"logprobs\":null,"
                            "\"finish_reason\":null}]}\n\n");
        break;

    case NGX_HTTP_LLM_RP_PART_START:
        if (part == NULL) {
            rp->stage = NGX_HTTP_LLM_RP_FINISH;
            goto again;
        }

        rp->stage = NGX_HTTP_LLM_RP_PART_DELTA;
        rp->off = 0;

        if (ant) {
            ngx_http_llm_ws(&w, "event: content_block_start\ndata: "
                                "{\"type\":\"content_block_start\","
                                "\"index\":");
            ngx_http_llm_wnum(&w, rp->part);

            if (part->type == NGX_HTTP_LLM_PART_TEXT) {
                ngx_http_llm_ws(&w, ",\"content_block\":{\"type\":\"text\","
                                    "\"text\":\"\"}}\n\n");

            } else {
                ngx_http_llm_ws(&w, ",\"content_block\":{\"type\":"
                                    "\"tool_use\",\"id\":");
                ngx_http_llm_wstr(&w, &part->id);
                ngx_http_llm_ws(&w, ",\"name\":");
                ngx_http_llm_wstr(&w, &part->name);
                ngx_http_llm_ws(&w, ",\"input\":{}}}\n\n");
            }

            break;
        }

        if (part->type == NGX_HTTP_LLM_PART_TOOL) {
            ngx_http_llm_replay_prefix(&w, e);
            ngx_http_llm_ws(&w, "\"delta\":{\"tool_calls\":[{\"index\":");
            ngx_http_llm_wnum(&w, rp->part - (e->nparts
                                              && e->parts[0].type
                                                 == NGX_HTTP_LLM_PART_TEXT));
            ngx_http_llm_ws(&w, ",\"id\":");
            ngx_http_llm_wstr(&w, &part->id);
            ngx_http_llm_ws(&w, ",\"type\":\"function\",\"function\":"
                                "{\"name\":");
            ngx_http_llm_wstr(&w, &part->name);
            ngx_http_llm_ws(&w, ",\"arguments\":\"\"}}]},\"logprobs\":null,"
                                "\"finish_reason\":null}]}\n\n");
            break;
        }

        goto again;

    case NGX_HTTP_LLM_RP_PART_DELTA:
        if (rp->off >= part->text.len) {
            rp->stage = NGX_HTTP_LLM_RP_PART_STOP;
            goto again;
        }

        last = (ant && part->type == NGX_HTTP_LLM_PART_TOOL);

        end = ngx_http_llm_cut(&part->text, rp->off, rp->chunk, !last);
        piece.data = part->text.data + rp->off;
        piece.len = end - rp->off;
        rp->off = end;
        *content = 1;

        if (ant) {
            ngx_http_llm_ws(&w, "event: content_block_delta\ndata: "
                                "{\"type\":\"content_block_delta\","
                                "\"index\":");
            ngx_http_llm_wnum(&w, rp->part);

            if (last) {
                ngx_http_llm_ws(&w, ",\"delta\":{\"type\":"
                                    "\"input_json_delta\",\"partial_json\":"
                                    "\"");
                ngx_http_llm_wescape(&w, piece.data, piece.len);
                ngx_http_llm_ws(&w, "\"}}\n\n");

            } else {
                ngx_http_llm_ws(&w, ",\"delta\":{\"type\":\"text_delta\","
                                    "\"text\":");
                ngx_http_llm_wstr(&w, &piece);
                ngx_http_llm_ws(&w, "}}\n\n");
            }

            break;
        }

        ngx_http_llm_replay_prefix(&w, e);

        if (!chat) {
            ngx_http_llm_ws(&w, "\"text\":");
            ngx_http_llm_wstr(&w, &piece);
            ngx_http_llm_ws(&w, ",\"logprobs\":null,\"finish_reason\":null}"
                                "]}\n\n");

        } else if (part->type == NGX_HTTP_LLM_PART_TEXT) {
            ngx_http_llm_ws(&w, "\"delta\":{\"content\":");
            ngx_http_llm_wstr(&w, &piece);
            ngx_http_llm_ws(&w, "},\"logprobs\":null,\"finish_reason\":null}"
                                "]}\n\n");

        } else {
            ngx_http_llm_ws(&w, "\"delta\":{\"tool_calls\":[{\"index\":");
            ngx_http_llm_wnum(&w, rp->part - (e->nparts
                                              && e->parts[0].type
                                                 == NGX_HTTP_LLM_PART_TEXT));
            ngx_http_llm_ws(&w, ",\"function\":{\"arguments\":");
            ngx_http_llm_wstr(&w, &piece);
            ngx_http_llm_ws(&w, "}}]},\"logprobs\":null,"
                                "\"finish_reason\":null}]}\n\n");
        }

        break;

    case NGX_HTTP_LLM_RP_PART_STOP:
        rp->stage = NGX_HTTP_LLM_RP_PART_START;
        rp->part++;

        if (!ant) {
            goto again;
        }

        ngx_http_llm_ws(&w, "event: content_block_stop\ndata: "
                            "{\"type\":\"content_block_stop\",\"index\":");
        ngx_http_llm_wnum(&w, rp->part - 1);
        ngx_http_llm_ws(&w, "}\n\n");
        break;

    case NGX_HTTP_LLM_RP_FINISH:
        rp->stage = NGX_HTTP_LLM_RP_USAGE;

        if (ant) {
            ngx_http_llm_ws(&w, "event: message_delta\ndata: "
                                "{\"type\":\"message_delta\",\"delta\":"
                                "{\"stop_reason\":");
            ngx_http_llm_wstr(&w, &e->finish);
            ngx_http_llm_ws(&w, ",\"stop_sequence\":");
            ngx_http_llm_wstr_or_null(&w, &e->stop_seq, e->has_stop_seq);
            ngx_http_llm_ws(&w, "},\"usage\":{\"output_tokens\":");
            ngx_http_llm_wnum(&w, e->usage.completion_tokens > 0
                                  ? e->usage.completion_tokens : 0);
            ngx_http_llm_ws(&w, "}}\n\n");
            break;
        }

        ngx_http_llm_replay_prefix(&w, e);
        ngx_http_llm_ws(&w, chat ? "\"delta\":{}," : "\"text\":\"\",");
        ngx_http_llm_ws(&w, "\"logprobs\":null,\"finish_reason\":");
        ngx_http_llm_wstr(&w, &e->finish);
        ngx_http_llm_ws(&w, "}]}\n\n");
        break;

    case NGX_HTTP_LLM_RP_USAGE:
        rp->stage = NGX_HTTP_LLM_RP_DONE;

        if (ant) {
            ngx_http_llm_ws(&w, "event: message_stop\ndata: "
                                "{\"type\":\"message_stop\"}\n\n");
            rp->stage = NGX_HTTP_LLM_RP_END;
            break;
        }

        if (!rp->include_usage || e->usage.prompt_tokens < 0
            || e->usage.completion_tokens < 0)
        {
            goto again;
        }

        ngx_http_llm_ws(&w, "data: {\"id\":");
        ngx_http_llm_wstr(&w, &e->id);
        ngx_http_llm_ws(&w, chat ? ",\"object\":\"chat.completion.chunk\""
                                 : ",\"object\":\"text_completion\"");
        ngx_http_llm_ws(&w, ",\"created\":");
        ngx_http_llm_wnum(&w, e->created < 0 ? 0 : e->created);
        ngx_http_llm_ws(&w, ",\"model\":");
        ngx_http_llm_wstr(&w, &e->model);
        ngx_http_llm_ws(&w, ",\"choices\":[],\"usage\":");
        ngx_http_llm_render_usage(&w, e);
        ngx_http_llm_ws(&w, "}\n\n");
        break;

    case NGX_HTTP_LLM_RP_DONE:
        rp->stage = NGX_HTTP_LLM_RP_END;
        ngx_http_llm_ws(&w, "data: [DONE]\n\n");
        break;

    default:
        return 0;
    }

    rp->events++;

    return w.len;
}


static void
ngx_http_llm_replay_prefix(ngx_http_llm_w_t *w, const ngx_http_llm_entry_t *e)
{
    ngx_http_llm_ws(w, "data: {\"id\":");
    ngx_http_llm_wstr(w, &e->id);
    ngx_http_llm_ws(w, e->api == NGX_HTTP_LLM_API_CHAT
                       ? ",\"object\":\"chat.completion.chunk\""
                       : ",\"object\":\"text_completion\"");
    ngx_http_llm_ws(w, ",\"created\":");
    ngx_http_llm_wnum(w, e->created < 0 ? 0 : e->created);
    ngx_http_llm_ws(w, ",\"model\":");
    ngx_http_llm_wstr(w, &e->model);
    ngx_http_llm_ws(w, ",\"choices\":[{\"index\":0,");
}


/*
 * Where the piece that starts at off ends: at most chunk bytes (but at
 * least one unit), after the last space in it if any; a unit is an
 * escape sequence (a surrogate pair's two escapes together) or a UTF-8
 * character, never cut.
 */

static size_t
ngx_http_llm_cut(const ngx_http_llm_estr_t *s, size_t off, size_t chunk,
    unsigned escaped)
{
    size_t         i, n, safe, space;
    const u_char  *p;

    p = s->data;
    i = off;
    safe = off;
    space = off;

    while (i < s->len) {

        if (escaped && p[i] == '\\') {
            n = 2;

            if (i + 1 < s->len && p[i + 1] == 'u') {
                n = 6;

                if (i + 12 <= s->len && (p[i + 2] == 'd' || p[i + 2] == 'D')
                    && (p[i + 3] == '8' || p[i + 3] == '9'
                        || p[i + 3] == 'a' || p[i + 3] == 'b'
                        || p[i + 3] == 'A' || p[i + 3] == 'B')
                    && p[i + 6] == '\\' && p[i + 7] == 'u')
                {
                    n = 12;
                }
            }

        } else if (p[i] >= 0xf0) {
            n = 4;

        } else if (p[i] >= 0xe0) {
            n = 3;

        } else if (p[i] >= 0xc0) {
            n = 2;

        } else {
            n = 1;
        }

        if (i + n > s->len) {
            n = s->len - i;
        }

        if (i + n - off > chunk && safe > off) {
            break;
        }

        i += n;
        safe = i;

        if (p[i - 1] == ' ') {
            space = i;
        }
    }

    if (i >= s->len) {
        return s->len;
    }

    return space > off ? space : safe;
}


/* the writer */


static void
ngx_http_llm_w(ngx_http_llm_w_t *w, const void *p, size_t len)
{
    w->len += len;

    if (w->p == NULL) {
        return;
    }

    if ((size_t) (w->end - w->p) < len) {
        w->p = NULL;
        return;
    }

    if (len) {
        memcpy(w->p, p, len);
        w->p += len;
    }
}


static void
ngx_http_llm_ws(ngx_http_llm_w_t *w, const char *s)
{
    ngx_http_llm_w(w, s, strlen(s));
}


static void
ngx_http_llm_wnum(ngx_http_llm_w_t *w, int64_t v)
{
    u_char    buf[24], *p;
    uint64_t  u;

    p = buf + sizeof(buf);
    u = v < 0 ? (uint64_t) 0 - (uint64_t) v : (uint64_t) v;

    do {
        *--p = (u_char) ('0' + u % 10);
        u /= 10;
    } while (u);

    if (v < 0) {
        *--p = '-';
    }

    ngx_http_llm_w(w, p, buf + sizeof(buf) - p);
}


static void
ngx_http_llm_wstr(ngx_http_llm_w_t *w, const ngx_http_llm_estr_t *s)
{
    ngx_http_llm_w(w, "\"", 1);
    ngx_http_llm_w(w, s->data, s->len);
    ngx_http_llm_w(w, "\"", 1);
}


static void
ngx_http_llm_wstr_or_null(ngx_http_llm_w_t *w, const ngx_http_llm_estr_t *s,
    unsigned present)
{
    if (!present) {
        ngx_http_llm_ws(w, "null");
        return;
    }

    ngx_http_llm_wstr(w, s);
}


/* raw JSON text as the body of a JSON string */

static void
ngx_http_llm_wescape(ngx_http_llm_w_t *w, const u_char *p, size_t len)
{
    u_char         buf[8];
    const u_char  *end, *run;

    static const char  hex[] = "0123456789abcdef";

    end = p + len;
    run = p;

    for ( /* void */ ; p < end; p++) {
        if (*p != '"' && *p != '\\' && *p >= 0x20) {
            continue;
        }

        ngx_http_llm_w(w, run, p - run);
        run = p + 1;

        buf[0] = '\\';

        switch (*p) {
        case '"':
        case '\\':
            buf[1] = *p;
            ngx_http_llm_w(w, buf, 2);
            break;
        case '\n':
            ngx_http_llm_w(w, "\\n", 2);
            break;
        case '\r':
            ngx_http_llm_w(w, "\\r", 2);
            break;
        case '\t':
            ngx_http_llm_w(w, "\\t", 2);
            break;
        default:
            buf[1] = 'u';
            buf[2] = '0';
            buf[3] = '0';
            buf[4] = hex[*p >> 4];
            buf[5] = hex[*p & 0xf];
            ngx_http_llm_w(w, buf, 6);
        }
    }

    ngx_http_llm_w(w, run, p - run);
}


static void
ngx_http_llm_wu32(ngx_http_llm_w_t *w, uint32_t v)
{
    u_char  b[4];

    b[0] = (u_char) v;
    b[1] = (u_char) (v >> 8);
    b[2] = (u_char) (v >> 16);
    b[3] = (u_char) (v >> 24);

    ngx_http_llm_w(w, b, 4);
}


static void
ngx_http_llm_wu64(ngx_http_llm_w_t *w, uint64_t v)
{
    ngx_http_llm_wu32(w, (uint32_t) v);
    ngx_http_llm_wu32(w, (uint32_t) (v >> 32));
}


static void
ngx_http_llm_wbuf(ngx_http_llm_w_t *w, const ngx_http_llm_abuf_t *b)
{
    ngx_http_llm_wu32(w, (uint32_t) b->len);
    ngx_http_llm_w(w, b->data, b->len);
}
