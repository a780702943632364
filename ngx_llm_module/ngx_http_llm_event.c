
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


/*
 * The member names and string values the analysis looks at, found with
 * one table look-up: the hash of (length, first byte, last byte) has no
 * collision among them (a collision is a compile error, an overridden
 * initializer).
 */

#define NGX_HTTP_LLM_WORD_OTHER                        0
#define NGX_HTTP_LLM_WORD_ARGUMENTS                    1
#define NGX_HTTP_LLM_WORD_CACHE_CREATION_INPUT_TOKENS  2
#define NGX_HTTP_LLM_WORD_CACHE_READ_INPUT_TOKENS      3
#define NGX_HTTP_LLM_WORD_CACHED_TOKENS                4
#define NGX_HTTP_LLM_WORD_CHOICES                      5
#define NGX_HTTP_LLM_WORD_COMPLETION_TOKENS            6
#define NGX_HTTP_LLM_WORD_COMPLETION_TOKENS_DETAILS    7
#define NGX_HTTP_LLM_WORD_CONTENT                      8
#define NGX_HTTP_LLM_WORD_CONTENT_BLOCK                9
#define NGX_HTTP_LLM_WORD_DELTA                        10
#define NGX_HTTP_LLM_WORD_ERROR                        11
#define NGX_HTTP_LLM_WORD_FINISH_REASON                12
#define NGX_HTTP_LLM_WORD_FUNCTION                     13
#define NGX_HTTP_LLM_WORD_FUNCTION_CALL                14
#define NGX_HTTP_LLM_WORD_INPUT                        15
#define NGX_HTTP_LLM_WORD_INPUT_TOKENS                 16
#define NGX_HTTP_LLM_WORD_MESSAGE                      17
#define NGX_HTTP_LLM_WORD_MESSAGE_STOP                 18
#define NGX_HTTP_LLM_WORD_NAME                         19
#define NGX_HTTP_LLM_WORD_OBJECT                       20
#define NGX_HTTP_LLM_WORD_OUTPUT_TOKENS                21
#define NGX_HTTP_LLM_WORD_PARTIAL_JSON                 22
#define NGX_HTTP_LLM_WORD_PROMPT_TOKENS                23
#define NGX_HTTP_LLM_WORD_PROMPT_TOKENS_DETAILS        24
#define NGX_HTTP_LLM_WORD_REASONING                    25
#define NGX_HTTP_LLM_WORD_REASONING_CONTENT            26
#define NGX_HTTP_LLM_WORD_REASONING_TOKENS             27
#define NGX_HTTP_LLM_WORD_REFUSAL                      28
#define NGX_HTTP_LLM_WORD_SERVER_TOOL_USE              29
#define NGX_HTTP_LLM_WORD_STOP_REASON                  30
#define NGX_HTTP_LLM_WORD_TEXT                         31
#define NGX_HTTP_LLM_WORD_THINKING                     32
#define NGX_HTTP_LLM_WORD_TOOL_CALLS                   33
#define NGX_HTTP_LLM_WORD_TOOL_USE                     34
#define NGX_HTTP_LLM_WORD_TYPE                         35
#define NGX_HTTP_LLM_WORD_USAGE                        36

#define ngx_http_llm_word_hash(len, first, last)                              \
    (((len) + 2 * (first) + 11 * (last)) & 127)

#define ngx_http_llm_word_at(len, first, last, word)                          \
    [ngx_http_llm_word_hash(len, first, last)] = NGX_HTTP_LLM_WORD_##word

#define NGX_HTTP_LLM_WORD_MAX_LEN  27


typedef struct {
    size_t                      len;
    const char                 *name;
} ngx_http_llm_word_t;


static void ngx_http_llm_sse_field(ngx_http_llm_sse_t *sse);
static void ngx_http_llm_sse_append(ngx_http_llm_sse_t *sse,
    const u_char *p, size_t n);
static int ngx_http_llm_sse_dispatch(ngx_http_llm_sse_t *sse);

static const u_char *ngx_http_llm_fast_event(const u_char *p,
    const u_char *end, ngx_http_llm_event_info_t *info,
    ngx_http_llm_json_str_t *type);
static const u_char *ngx_http_llm_fast_choices(const u_char *p,
    const u_char *end, ngx_http_llm_event_info_t *info, unsigned *n);
static const u_char *ngx_http_llm_fast_usage(const u_char *p,
    const u_char *end, ngx_http_llm_event_info_t *info);
static const u_char *ngx_http_llm_fast_details(const u_char *p,
    const u_char *end, unsigned word, int64_t *v);
static inline const u_char *ngx_http_llm_fast_count(const u_char *p,
    const u_char *end, int64_t *v);
static const u_char *ngx_http_llm_fast_delta(const u_char *p,
    const u_char *end, ngx_http_llm_event_info_t *info);
static const u_char *ngx_http_llm_fast_block(const u_char *p,
    const u_char *end, ngx_http_llm_event_info_t *info, unsigned depth);
static const u_char *ngx_http_llm_fast_text(const u_char *p,
    const u_char *end, ngx_http_llm_event_info_t *info, unsigned depth);
static const u_char *ngx_http_llm_fast_finish(const u_char *p,
    const u_char *end, ngx_http_llm_event_info_t *info, unsigned depth);
static inline const u_char *ngx_http_llm_fast_string(const u_char *p,
    const u_char *end, ngx_http_llm_json_str_t *s);
static const u_char *ngx_http_llm_fast_skip(const u_char *p,
    const u_char *end, unsigned depth);
static inline const u_char *ngx_http_llm_fast_open(const u_char *p,
    const u_char *end, u_char c);
static inline const u_char *ngx_http_llm_fast_key(const u_char *p,
    const u_char *end, unsigned *w);
static inline const u_char *ngx_http_llm_fast_next(const u_char *p,
    const u_char *end, u_char c);

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
    unsigned word, int64_t *v);
static void ngx_http_llm_event_reset(ngx_http_llm_event_info_t *info);
static unsigned ngx_http_llm_word(const ngx_http_llm_json_str_t *s);
static unsigned ngx_http_llm_word_escaped(const ngx_http_llm_json_str_t *s);
static inline unsigned ngx_http_llm_word_find(const u_char *p, size_t len);


static const u_char  ngx_http_llm_word_slot[128] = {
    ngx_http_llm_word_at(9, 'a', 's', ARGUMENTS),
    ngx_http_llm_word_at(27, 'c', 's', CACHE_CREATION_INPUT_TOKENS),
    ngx_http_llm_word_at(23, 'c', 's', CACHE_READ_INPUT_TOKENS),
    ngx_http_llm_word_at(13, 'c', 's', CACHED_TOKENS),
    ngx_http_llm_word_at(7, 'c', 's', CHOICES),
    ngx_http_llm_word_at(17, 'c', 's', COMPLETION_TOKENS),
    ngx_http_llm_word_at(25, 'c', 's', COMPLETION_TOKENS_DETAILS),
    ngx_http_llm_word_at(7, 'c', 't', CONTENT),
    ngx_http_llm_word_at(13, 'c', 'k', CONTENT_BLOCK),
    ngx_http_llm_word_at(5, 'd', 'a', DELTA),
    ngx_http_llm_word_at(5, 'e', 'r', ERROR),
    ngx_http_llm_word_at(13, 'f', 'n', FINISH_REASON),
    ngx_http_llm_word_at(8, 'f', 'n', FUNCTION),
    ngx_http_llm_word_at(13, 'f', 'l', FUNCTION_CALL),
    ngx_http_llm_word_at(5, 'i', 't', INPUT),
    ngx_http_llm_word_at(12, 'i', 's', INPUT_TOKENS),
    ngx_http_llm_word_at(7, 'm', 'e', MESSAGE),
    ngx_http_llm_word_at(12, 'm', 'p', MESSAGE_STOP),
    ngx_http_llm_word_at(4, 'n', 'e', NAME),
    ngx_http_llm_word_at(6, 'o', 't', OBJECT),
    ngx_http_llm_word_at(13, 'o', 's', OUTPUT_TOKENS),
    ngx_http_llm_word_at(12, 'p', 'n', PARTIAL_JSON),
    ngx_http_llm_word_at(13, 'p', 's', PROMPT_TOKENS),
    ngx_http_llm_word_at(21, 'p', 's', PROMPT_TOKENS_DETAILS),
    ngx_http_llm_word_at(9, 'r', 'g', REASONING),
    ngx_http_llm_word_at(17, 'r', 't', REASONING_CONTENT),
    ngx_http_llm_word_at(16, 'r', 's', REASONING_TOKENS),
    ngx_http_llm_word_at(7, 'r', 'l', REFUSAL),
    ngx_http_llm_word_at(15, 's', 'e', SERVER_TOOL_USE),
    ngx_http_llm_word_at(11, 's', 'n', STOP_REASON),
    ngx_http_llm_word_at(4, 't', 't', TEXT),
    ngx_http_llm_word_at(8, 't', 'g', THINKING),
    ngx_http_llm_word_at(10, 't', 's', TOOL_CALLS),
    ngx_http_llm_word_at(8, 't', 'e', TOOL_USE),
    ngx_http_llm_word_at(4, 't', 'e', TYPE),
    ngx_http_llm_word_at(5, 'u', 'e', USAGE),
};


static const ngx_http_llm_word_t  ngx_http_llm_words[] = {
    { 0, "" },
    { 9, "arguments" },
    { 27, "cache_creation_input_tokens" },
    { 23, "cache_read_input_tokens" },
    { 13, "cached_tokens" },
    { 7, "choices" },
    { 17, "completion_tokens" },
    { 25, "completion_tokens_details" },
    { 7, "content" },
    { 13, "content_block" },
    { 5, "delta" },
    { 5, "error" },
    { 13, "finish_reason" },
    { 8, "function" },
    { 13, "function_call" },
    { 5, "input" },
    { 12, "input_tokens" },
    { 7, "message" },
    { 12, "message_stop" },
    { 4, "name" },
    { 6, "object" },
    { 13, "output_tokens" },
    { 12, "partial_json" },
    { 13, "prompt_tokens" },
    { 21, "prompt_tokens_details" },
    { 9, "reasoning" },
    { 17, "reasoning_content" },
    { 16, "reasoning_tokens" },
    { 7, "refusal" },
    { 15, "server_tool_use" },
    { 11, "stop_reason" },
    { 4, "text" },
    { 8, "thinking" },
    { 10, "tool_calls" },
    { 8, "tool_use" },
    { 4, "type" },
    { 5, "usage" },
};


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
    sse->size = buf ? cap : 0;
    sse->cap = cap;
    sse->handler = handler;
    sse->data = data;
    sse->state = NGX_HTTP_LLM_SSE_START;
}


/*
 * The states consume what they can in bulk: a value or a comment up to
 * its line end at once (SSE2), a "data:" field name whole when the read
 * holds it; field names otherwise go byte by byte.
 */

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

            /* after_cr is only ever set along with this state */

            if (sse->after_cr) {
                sse->after_cr = 0;

                if (c == '\n') {
                    /* the LF of a CRLF, maybe split from its CR */

                    if (sse->event_start == sse->offset) {
                        sse->event_start++;
                    }

                    break;
                }
            }

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

            if (end - p >= 5 && memcmp(p, "data:", 5) == 0) {
                memcpy(sse->field_name, "data", 4);
                sse->field_len = 4;
                ngx_http_llm_sse_field(sse);

                p += 5;
                sse->offset += 5;
                sse->state = NGX_HTTP_LLM_SSE_VALUE_START;
                continue;
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
            q = ngx_http_llm_sse_eol(p, end);

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
            q = ngx_http_llm_sse_eol(p, end);

            sse->offset += q - p;
            p = q;

            if (p == end) {
                return 0;
            }

            sse->after_cr = (*p == '\r');
            sse->state = NGX_HTTP_LLM_SSE_LINE;
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
    size_t   size;
    u_char  *buf;

    if (sse->truncated) {
        /* the event was cut: nothing after the cut may follow */
        return;
    }

    if (n > sse->size - sse->len && sse->size < sse->cap && sse->grow) {
        size = sse->size ? 2 * sse->size : NGX_HTTP_LLM_SSE_BUF;

        if (size < sse->len + n) {
            size = sse->len + n;
        }

        if (size > sse->cap) {
            size = sse->cap;
        }

        buf = sse->grow(sse, size);

        if (buf) {
            if (sse->len) {
                memcpy(buf, sse->buf, sse->len);
            }

            sse->buf = buf;
            sse->size = size;
        }
    }

    if (n > sse->size - sse->len) {
        n = sse->size - sse->len;
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

        /* no storage yet for an event with empty data */

        rc = sse->handler(sse, sse->name, sse->name_len,
                          sse->buf ? sse->buf : (const u_char *) "", sse->len,
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


/* the NGX_HTTP_LLM_WORD_* of a string token, by value */

static unsigned
ngx_http_llm_word(const ngx_http_llm_json_str_t *s)
{
    if (s->escaped) {
        return ngx_http_llm_word_escaped(s);
    }

    return ngx_http_llm_word_find(s->data, s->len);
}


static unsigned
ngx_http_llm_word_escaped(const ngx_http_llm_json_str_t *s)
{
    u_char         buf[64];
    size_t         len;
    const u_char  *p;

    p = s->data;
    len = ngx_http_llm_json_unescape(&p, s->data + s->len, buf, sizeof(buf));

    if (p != s->data + s->len) {
        /* longer than any word */
        return NGX_HTTP_LLM_WORD_OTHER;
    }

    return ngx_http_llm_word_find(buf, len);
}


/*
 * Every word has 4 bytes or more: two overlapping loads compare up to 8
 * bytes, longer words 8 bytes at a time.
 */

static inline unsigned
ngx_http_llm_word_find(const u_char *p, size_t len)
{
    size_t                      i;
    uint32_t                    a4, b4, c4, d4;
    uint64_t                    a8, b8;
    unsigned                    w;
    const u_char               *name;
    const ngx_http_llm_word_t  *word;

    if (len == 0 || len > NGX_HTTP_LLM_WORD_MAX_LEN) {
        return NGX_HTTP_LLM_WORD_OTHER;
    }

    w = ngx_http_llm_word_slot[ngx_http_llm_word_hash(len, p[0], p[len - 1])];
    word = &ngx_http_llm_words[w];

    if (word->len != len) {
        return NGX_HTTP_LLM_WORD_OTHER;
    }

    name = (const u_char *) word->name;

    if (len < 8) {
        memcpy(&a4, p, 4);
        memcpy(&b4, name, 4);
        memcpy(&c4, p + len - 4, 4);
        memcpy(&d4, name + len - 4, 4);

        return (a4 == b4 && c4 == d4) ? w : NGX_HTTP_LLM_WORD_OTHER;
    }

    for (i = 0; i + 8 < len; i += 8) {
        memcpy(&a8, p + i, 8);
        memcpy(&b8, name + i, 8);

        if (a8 != b8) {
            return NGX_HTTP_LLM_WORD_OTHER;
        }
    }

    memcpy(&a8, p + len - 8, 8);
    memcpy(&b8, name + len - 8, 8);

    return (a8 == b8) ? w : NGX_HTTP_LLM_WORD_OTHER;
}


void
ngx_http_llm_event_analyze(int api, const u_char *name, size_t name_len,
    const u_char *data, size_t len, ngx_http_llm_event_info_t *info)
{
    unsigned                    t, e;
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

    if (ngx_http_llm_fast_event(p, end, info, &type) != end) {

        /* the full analysis */

        ngx_http_llm_event_reset(info);

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
    }

    ev.data = name;
    ev.len = name_len;
    ev.escaped = 0;

    t = ngx_http_llm_word(&type);
    e = ngx_http_llm_word(&ev);

    if (t == NGX_HTTP_LLM_WORD_MESSAGE_STOP
        || e == NGX_HTTP_LLM_WORD_MESSAGE_STOP)
    {
        info->done = 1;
    }

    if (t == NGX_HTTP_LLM_WORD_ERROR || e == NGX_HTTP_LLM_WORD_ERROR) {
        info->error = 1;
    }
}


void
ngx_http_llm_response_analyze(int api, const u_char *body, size_t len,
    ngx_http_llm_event_info_t *info)
{
    const u_char             *p, *end;
    ngx_http_llm_json_str_t   type;

    ngx_http_llm_event_reset(info);

    type.data = NULL;
    type.len = 0;
    type.escaped = 0;

    /*
     * the fast path first (a chat.completion or text_completion with its
     * usage: one pass, no cursor); anything it does not know runs the full
     * analysis from the start
     */

    p = ngx_http_llm_json_skip_ws(body, body + len);
    end = body + len;

    while (end > p && ngx_http_llm_json_is_ws(end[-1])) {
        end--;
    }

    if (p < end && ngx_http_llm_fast_event(p, end, info, &type) == end) {

        if (ngx_http_llm_word(&type) == NGX_HTTP_LLM_WORD_ERROR) {
            info->error = 1;
        }

        return;
    }

    ngx_http_llm_response_analyze_full(api, body, len, info);
}


void
ngx_http_llm_response_analyze_full(int api, const u_char *body, size_t len,
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

    if (ngx_http_llm_word(&type) == NGX_HTTP_LLM_WORD_ERROR) {
        info->error = 1;
    }
}


/*
 * The fast path of the event and response analysis: one pass over the
 * common shapes of OpenAI chunks, chat.completion and text_completion
 * bodies (usage included) and Anthropic deltas, with inline scanning and
 * no cursor. It validates all it passes like the cursor does. Anything
 * else (errors, tool calls, content arrays, a message object, escaped keys
 * that matter, counts not written as plain integers, a syntax error) makes
 * it give up: NULL, and the full analysis runs on the event from the
 * start.
 */

static const u_char *
ngx_http_llm_fast_event(const u_char *p, const u_char *end,
    ngx_http_llm_event_info_t *info, ngx_http_llm_json_str_t *type)
{
    unsigned                 w, have_choices, choices;
    ngx_http_llm_json_str_t  s;

    have_choices = 0;
    choices = 0;

    p = ngx_http_llm_fast_open(p, end, '{');

    while (p && *p != '}') {
        p = ngx_http_llm_fast_key(p, end, &w);

        if (p == NULL) {
            return NULL;
        }

        switch (w) {

        case NGX_HTTP_LLM_WORD_CHOICES:
            /* an array, or the fast path gives up */
            have_choices = 1;
            p = ngx_http_llm_fast_choices(p, end, info, &choices);
            break;

        case NGX_HTTP_LLM_WORD_TYPE:
            if (*p != '"') {
                return NULL;
            }

            p = ngx_http_llm_fast_string(p, end, type);
            break;

        case NGX_HTTP_LLM_WORD_OBJECT:
            if (*p != '"') {
                p = ngx_http_llm_fast_skip(p, end, 1);
                break;
            }

            p = ngx_http_llm_fast_string(p, end, &s);

            if (p == NULL || ngx_http_llm_word(&s) == NGX_HTTP_LLM_WORD_ERROR)
            {
                return NULL;
            }

            break;

        case NGX_HTTP_LLM_WORD_USAGE:
            p = ngx_http_llm_fast_usage(p, end, info);
            break;

        case NGX_HTTP_LLM_WORD_DELTA:
        case NGX_HTTP_LLM_WORD_CONTENT_BLOCK:
            p = ngx_http_llm_fast_block(p, end, info, 2);
            break;

        case NGX_HTTP_LLM_WORD_OTHER:
            p = ngx_http_llm_fast_skip(p, end, 1);
            break;

        default:
            return NULL;
        }

        p = ngx_http_llm_fast_next(p, end, '}');
    }

    if (p == NULL) {
        return NULL;
    }

    /* as ngx_http_llm_event_object() says it */

    if (have_choices && choices == 0 && info->usage) {
        info->usage_only = 1;
    }

    return p + 1;
}


/*
 * "usage": its members as ngx_http_llm_event_usage() reads them, for
 * counts written as plain integers; anything else in a member it reads
 * gives up. "usage":null comes in every OpenAI chunk when usage is asked.
 */

static const u_char *
ngx_http_llm_fast_usage(const u_char *p, const u_char *end,
    ngx_http_llm_event_info_t *info)
{
    int64_t                v, input, read, write;
    unsigned               w, found;
    ngx_http_llm_usage_t  *u;

    if (*p != '{') {
        return ngx_http_llm_fast_skip(p, end, 1);
    }

    u = &info->u;
    input = -1;
    read = -1;
    write = -1;
    found = 0;

    p = ngx_http_llm_fast_open(p, end, '{');

    while (p && *p != '}') {
        p = ngx_http_llm_fast_key(p, end, &w);

        if (p == NULL) {
            return NULL;
        }

        switch (w) {

        case NGX_HTTP_LLM_WORD_PROMPT_TOKENS:
        case NGX_HTTP_LLM_WORD_COMPLETION_TOKENS:
        case NGX_HTTP_LLM_WORD_OUTPUT_TOKENS:
        case NGX_HTTP_LLM_WORD_INPUT_TOKENS:
        case NGX_HTTP_LLM_WORD_CACHE_READ_INPUT_TOKENS:
        case NGX_HTTP_LLM_WORD_CACHE_CREATION_INPUT_TOKENS:
            p = ngx_http_llm_fast_count(p, end, &v);

            if (p == NULL) {
                return NULL;
            }

            found = 1;

            if (w == NGX_HTTP_LLM_WORD_PROMPT_TOKENS) {
                u->prompt_tokens = v;

            } else if (w == NGX_HTTP_LLM_WORD_INPUT_TOKENS) {
                input = v;

            } else if (w == NGX_HTTP_LLM_WORD_CACHE_READ_INPUT_TOKENS) {
                read = v;
                u->cached_tokens = v;

            } else if (w == NGX_HTTP_LLM_WORD_CACHE_CREATION_INPUT_TOKENS) {
                write = v;
                u->cache_write_tokens = v;

            } else {
                u->completion_tokens = v;
            }

            break;

        case NGX_HTTP_LLM_WORD_PROMPT_TOKENS_DETAILS:
            v = -1;
            p = ngx_http_llm_fast_details(p, end,
                                          NGX_HTTP_LLM_WORD_CACHED_TOKENS,
                                          &v);
            if (v >= 0) {
                u->cached_tokens = v;
                found = 1;
            }

            break;

        case NGX_HTTP_LLM_WORD_COMPLETION_TOKENS_DETAILS:
            v = -1;
            p = ngx_http_llm_fast_details(p, end,
                                          NGX_HTTP_LLM_WORD_REASONING_TOKENS,
                                          &v);
            if (v >= 0) {
                u->reasoning_tokens = v;
                found = 1;
            }

            break;

        default:
            p = ngx_http_llm_fast_skip(p, end, 2);
        }

        p = ngx_http_llm_fast_next(p, end, '}');
    }

    if (p == NULL) {
        return NULL;
    }

    if (input >= 0) {
        u->prompt_tokens = input + (read > 0 ? read : 0)
                           + (write > 0 ? write : 0);
    }

    if (found) {
        info->usage = 1;
    }

    return p + 1;
}


/* a details object of usage, or null: its count named by word into *v */

static const u_char *
ngx_http_llm_fast_details(const u_char *p, const u_char *end, unsigned word,
    int64_t *v)
{
    unsigned  w;

    if (*p != '{') {
        return ngx_http_llm_fast_skip(p, end, 2);
    }

    p = ngx_http_llm_fast_open(p, end, '{');

    while (p && *p != '}') {
        p = ngx_http_llm_fast_key(p, end, &w);

        if (p == NULL) {
            return NULL;
        }

        p = (w == word) ? ngx_http_llm_fast_count(p, end, v)
                        : ngx_http_llm_fast_skip(p, end, 3);

        p = ngx_http_llm_fast_next(p, end, '}');
    }

    return p ? p + 1 : NULL;
}


/* p at a count: a plain integer of up to 18 digits, else NULL */

static inline const u_char *
ngx_http_llm_fast_count(const u_char *p, const u_char *end, int64_t *v)
{
    int64_t        n;
    const u_char  *start;

    start = p;
    n = 0;

    while (p < end && (unsigned) (*p - '0') <= 9) {
        if (p - start == 18) {
            /* a longer one is the full analysis' to judge */
            return NULL;
        }

        n = n * 10 + (*p++ - '0');
    }

    if (p == start || (*start == '0' && p - start > 1)
        || (p < end && (*p == '.' || *p == 'e' || *p == 'E')))
    {
        return NULL;
    }

    *v = n;

    return p;
}


/* "choices": an array of objects */

static const u_char *
ngx_http_llm_fast_choices(const u_char *p, const u_char *end,
    ngx_http_llm_event_info_t *info, unsigned *n)
{
    unsigned  w;

    p = ngx_http_llm_fast_open(p, end, '[');

    while (p && *p != ']') {
        (*n)++;

        p = ngx_http_llm_fast_open(p, end, '{');

        while (p && *p != '}') {
            p = ngx_http_llm_fast_key(p, end, &w);

            if (p == NULL) {
                return NULL;
            }

            switch (w) {

            case NGX_HTTP_LLM_WORD_DELTA:
            case NGX_HTTP_LLM_WORD_MESSAGE:
                p = ngx_http_llm_fast_delta(p, end, info);
                break;

            case NGX_HTTP_LLM_WORD_TEXT:
                p = ngx_http_llm_fast_text(p, end, info, 3);
                break;

            case NGX_HTTP_LLM_WORD_FINISH_REASON:
                p = ngx_http_llm_fast_finish(p, end, info, 3);
                break;

            default:
                p = ngx_http_llm_fast_skip(p, end, 3);
            }

            p = ngx_http_llm_fast_next(p, end, '}');
        }

        p = ngx_http_llm_fast_next(p ? p + 1 : NULL, end, ']');
    }

    return p ? p + 1 : NULL;
}


/* an OpenAI choice's delta or message */

static const u_char *
ngx_http_llm_fast_delta(const u_char *p, const u_char *end,
    ngx_http_llm_event_info_t *info)
{
    unsigned  w;

    p = ngx_http_llm_fast_open(p, end, '{');

    while (p && *p != '}') {
        p = ngx_http_llm_fast_key(p, end, &w);

        if (p == NULL) {
            return NULL;
        }

        switch (w) {

        case NGX_HTTP_LLM_WORD_CONTENT:
        case NGX_HTTP_LLM_WORD_REFUSAL:
        case NGX_HTTP_LLM_WORD_REASONING_CONTENT:
        case NGX_HTTP_LLM_WORD_REASONING:
            p = ngx_http_llm_fast_text(p, end, info, 4);
            break;

        case NGX_HTTP_LLM_WORD_TOOL_CALLS:
        case NGX_HTTP_LLM_WORD_FUNCTION_CALL:
            return NULL;

        default:
            p = ngx_http_llm_fast_skip(p, end, 4);
        }

        p = ngx_http_llm_fast_next(p, end, '}');
    }

    return p ? p + 1 : NULL;
}


/* an Anthropic block delta or message delta without tool use */

static const u_char *
ngx_http_llm_fast_block(const u_char *p, const u_char *end,
    ngx_http_llm_event_info_t *info, unsigned depth)
{
    unsigned                 w;
    ngx_http_llm_json_str_t  s;

    p = ngx_http_llm_fast_open(p, end, '{');

    while (p && *p != '}') {
        p = ngx_http_llm_fast_key(p, end, &w);

        if (p == NULL) {
            return NULL;
        }

        switch (w) {

        case NGX_HTTP_LLM_WORD_TEXT:
        case NGX_HTTP_LLM_WORD_THINKING:
        case NGX_HTTP_LLM_WORD_PARTIAL_JSON:
        case NGX_HTTP_LLM_WORD_NAME:
            p = ngx_http_llm_fast_text(p, end, info, depth);
            break;

        case NGX_HTTP_LLM_WORD_TYPE:
            if (*p != '"') {
                return NULL;
            }

            p = ngx_http_llm_fast_string(p, end, &s);

            if (p == NULL) {
                return NULL;
            }

            w = ngx_http_llm_word(&s);

            if (w == NGX_HTTP_LLM_WORD_TOOL_USE
                || w == NGX_HTTP_LLM_WORD_SERVER_TOOL_USE)
            {
                return NULL;
            }

            break;

        case NGX_HTTP_LLM_WORD_STOP_REASON:
            p = ngx_http_llm_fast_finish(p, end, info, depth);
            break;

        case NGX_HTTP_LLM_WORD_OTHER:
            p = ngx_http_llm_fast_skip(p, end, depth);
            break;

        default:
            return NULL;
        }

        p = ngx_http_llm_fast_next(p, end, '}');
    }

    return p ? p + 1 : NULL;
}


/* a string of output text, or null */

static const u_char *
ngx_http_llm_fast_text(const u_char *p, const u_char *end,
    ngx_http_llm_event_info_t *info, unsigned depth)
{
    ngx_http_llm_json_str_t  s;

    if (*p == 'n') {
        return ngx_http_llm_fast_skip(p, end, depth);
    }

    if (*p != '"') {
        return NULL;
    }

    p = ngx_http_llm_fast_string(p, end, &s);

    if (p && s.len) {
        info->content = 1;
        info->content_bytes += s.escaped
                               ? ngx_http_llm_json_unescaped_len(s.data,
                                                             s.data + s.len)
                               : s.len;
    }

    return p;
}


/* a finish or stop reason, or null */

static const u_char *
ngx_http_llm_fast_finish(const u_char *p, const u_char *end,
    ngx_http_llm_event_info_t *info, unsigned depth)
{
    ngx_http_llm_json_str_t  s;

    if (*p == 'n') {
        return ngx_http_llm_fast_skip(p, end, depth);
    }

    if (*p != '"') {
        return NULL;
    }

    info->finish = 1;

    return ngx_http_llm_fast_string(p, end, &s);
}


/* p at a '"': the string's token, and the position after it */

static inline const u_char *
ngx_http_llm_fast_string(const u_char *p, const u_char *end,
    ngx_http_llm_json_str_t *s)
{
    const u_char               *q;
    ngx_http_llm_json_error_t   err;

    s->escaped = 0;
    q = ngx_http_llm_json_string_end(p + 1, end, &s->escaped, &err);

    if (q == NULL) {
        return NULL;
    }

    s->data = p + 1;
    s->len = q - (p + 1);

    return q + 1;
}


/* skips a value at p, found at the given nesting depth */

static const u_char *
ngx_http_llm_fast_skip(const u_char *p, const u_char *end, unsigned depth)
{
    const u_char             *q;
    ngx_http_llm_json_str_t   s;
    ngx_http_llm_json_cur_t   cur;

    if (*p == '"') {
        return ngx_http_llm_fast_string(p, end, &s);
    }

    if (*p == 'n' && end - p >= 4 && memcmp(p, "null", 4) == 0) {
        return p + 4;
    }

    /* an integer; what follows it is checked by the caller */

    q = p + (*p == '-');

    if (q < end && *q >= '0' && *q <= '9') {
        if (*q++ != '0') {
            while (q < end && *q >= '0' && *q <= '9') {
                q++;
            }
        }

        if (q == end || (*q != '.' && *q != 'e' && *q != 'E')) {
            return q;
        }
    }

    ngx_http_llm_json_cur_init(&cur, p, end - p);
    cur.depth = depth;

    return (ngx_http_llm_json_skip(&cur) == 0) ? cur.p : NULL;
}


/*
 * p at a value that must be the container opened by c: the position of its
 * first member (or of its closing bracket), NULL otherwise
 */

static inline const u_char *
ngx_http_llm_fast_open(const u_char *p, const u_char *end, u_char c)
{
    if (p == NULL || p == end || *p != c) {
        return NULL;
    }

    p = ngx_http_llm_json_skip_ws(p + 1, end);

    return (p < end) ? p : NULL;
}


/* p at a key: its word, and the position of its value */

static inline const u_char *
ngx_http_llm_fast_key(const u_char *p, const u_char *end, unsigned *w)
{
    ngx_http_llm_json_str_t  key;

    if (*p != '"') {
        return NULL;
    }

    p = ngx_http_llm_fast_string(p, end, &key);

    if (p == NULL) {
        return NULL;
    }

    p = ngx_http_llm_json_skip_ws(p, end);

    if (p == end || *p != ':') {
        return NULL;
    }

    p = ngx_http_llm_json_skip_ws(p + 1, end);

    if (p == end) {
        return NULL;
    }

    *w = ngx_http_llm_word(&key);

    return p;
}


/*
 * after a member or an element: the position of the next one, or of the
 * closing bracket c
 */

static inline const u_char *
ngx_http_llm_fast_next(const u_char *p, const u_char *end, u_char c)
{
    if (p == NULL) {
        return NULL;
    }

    p = ngx_http_llm_json_skip_ws(p, end);

    if (p == end) {
        return NULL;
    }

    if (*p == c) {
        return p;
    }

    if (*p != ',') {
        return NULL;
    }

    p = ngx_http_llm_json_skip_ws(p + 1, end);

    if (p == end || *p == c) {
        /* a trailing comma */
        return NULL;
    }

    return p;
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
    int                      rc;
    unsigned                 first, choices, have_choices;
    ngx_http_llm_json_str_t  key, s;

    if (ngx_http_llm_json_enter(cur, NGX_HTTP_LLM_JSON_OBJECT) != 1) {
        return -1;
    }

    first = 1;
    choices = 0;
    have_choices = 0;

    while ((rc = ngx_http_llm_json_next(cur, &first, &key)) == 1) {

        switch (ngx_http_llm_word(&key)) {

        case NGX_HTTP_LLM_WORD_CHOICES:
            if (ngx_http_llm_json_peek(cur) == NGX_HTTP_LLM_JSON_ARRAY) {
                have_choices = 1;
            }

            rc = ngx_http_llm_event_choices(cur, info, &choices);
            break;

        case NGX_HTTP_LLM_WORD_USAGE:
            rc = ngx_http_llm_event_usage(cur, info);
            break;

        case NGX_HTTP_LLM_WORD_ERROR:
            if (level == 0
                && ngx_http_llm_json_peek(cur) != NGX_HTTP_LLM_JSON_NULL)
            {
                info->error = 1;
            }

            rc = ngx_http_llm_json_skip(cur);
            break;

        case NGX_HTTP_LLM_WORD_TYPE:
            rc = (level == 0) ? ngx_http_llm_json_get_string(cur, type)
                              : ngx_http_llm_json_skip(cur);
            break;

        case NGX_HTTP_LLM_WORD_OBJECT:
            if (level != 0) {
                rc = ngx_http_llm_json_skip(cur);
                break;
            }

            rc = ngx_http_llm_json_get_string(cur, &s);

            if (rc == 1 && ngx_http_llm_word(&s) == NGX_HTTP_LLM_WORD_ERROR) {
                info->error = 1;
            }

            break;

        case NGX_HTTP_LLM_WORD_MESSAGE:
            if (level == 0
                && ngx_http_llm_json_peek(cur) == NGX_HTTP_LLM_JSON_OBJECT)
            {
                s.data = NULL;
                s.len = 0;
                s.escaped = 0;
                rc = ngx_http_llm_event_object(cur, info, &s, 1);

            } else {
                rc = ngx_http_llm_json_skip(cur);
            }

            break;

        case NGX_HTTP_LLM_WORD_DELTA:
            /* Anthropic content_block_delta, message_delta */
        case NGX_HTTP_LLM_WORD_CONTENT_BLOCK:
            rc = ngx_http_llm_event_block(cur, info);
            break;

        case NGX_HTTP_LLM_WORD_CONTENT:
            /* Anthropic message: an array of content blocks */
            rc = ngx_http_llm_event_blocks(cur, info);
            break;

        case NGX_HTTP_LLM_WORD_STOP_REASON:
            rc = ngx_http_llm_event_finish(cur, info);
            break;

        default:
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

            switch (ngx_http_llm_word(&key)) {

            case NGX_HTTP_LLM_WORD_DELTA:
            case NGX_HTTP_LLM_WORD_MESSAGE:
                rc = ngx_http_llm_event_message(cur, info);
                break;

            case NGX_HTTP_LLM_WORD_TEXT:
                rc = ngx_http_llm_event_text(cur, info);
                break;

            case NGX_HTTP_LLM_WORD_FINISH_REASON:
                rc = ngx_http_llm_event_finish(cur, info);
                break;

            default:
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

        switch (ngx_http_llm_word(&key)) {

        case NGX_HTTP_LLM_WORD_CONTENT:
            if (ngx_http_llm_json_peek(cur) == NGX_HTTP_LLM_JSON_ARRAY) {
                /* content parts */
                rc = ngx_http_llm_event_blocks(cur, info);

            } else {
                rc = ngx_http_llm_event_text(cur, info);
            }

            break;

        case NGX_HTTP_LLM_WORD_REFUSAL:
        case NGX_HTTP_LLM_WORD_REASONING_CONTENT:
        case NGX_HTTP_LLM_WORD_REASONING:
            rc = ngx_http_llm_event_text(cur, info);
            break;

        case NGX_HTTP_LLM_WORD_TOOL_CALLS:
            rc = ngx_http_llm_event_tool_calls(cur, info);
            break;

        case NGX_HTTP_LLM_WORD_FUNCTION_CALL:
            rc = ngx_http_llm_event_function(cur, info);
            break;

        default:
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

            if (ngx_http_llm_word(&key) == NGX_HTTP_LLM_WORD_FUNCTION) {
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
    unsigned                 first, w;
    ngx_http_llm_json_str_t  key;

    rc = ngx_http_llm_json_enter(cur, NGX_HTTP_LLM_JSON_OBJECT);

    if (rc != 1) {
        return (rc == 0) ? ngx_http_llm_json_skip(cur) : -1;
    }

    first = 1;

    while ((rc = ngx_http_llm_json_next(cur, &first, &key)) == 1) {

        w = ngx_http_llm_word(&key);

        if (w == NGX_HTTP_LLM_WORD_NAME || w == NGX_HTTP_LLM_WORD_ARGUMENTS) {
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
    unsigned                 first, tool, w;
    const u_char            *start;
    ngx_http_llm_json_str_t  key, s;

    rc = ngx_http_llm_json_enter(cur, NGX_HTTP_LLM_JSON_OBJECT);

    if (rc != 1) {
        return (rc == 0) ? ngx_http_llm_json_skip(cur) : -1;
    }

    first = 1;
    tool = 0;

    while ((rc = ngx_http_llm_json_next(cur, &first, &key)) == 1) {

        switch (ngx_http_llm_word(&key)) {

        case NGX_HTTP_LLM_WORD_TEXT:
        case NGX_HTTP_LLM_WORD_THINKING:
        case NGX_HTTP_LLM_WORD_PARTIAL_JSON:
        case NGX_HTTP_LLM_WORD_NAME:
            rc = ngx_http_llm_event_text(cur, info);
            break;

        case NGX_HTTP_LLM_WORD_TYPE:
            rc = ngx_http_llm_json_get_string(cur, &s);

            if (rc == 1) {
                w = ngx_http_llm_word(&s);

                if (w == NGX_HTTP_LLM_WORD_TOOL_USE
                    || w == NGX_HTTP_LLM_WORD_SERVER_TOOL_USE)
                {
                    tool = 1;
                }
            }

            break;

        case NGX_HTTP_LLM_WORD_INPUT:
            start = ngx_http_llm_json_skip_ws(cur->p, cur->end);
            rc = ngx_http_llm_json_skip(cur);

            /* a whole tool input (responses), "{}" in stream starts */

            if (rc == 0 && cur->p - start > 2) {
                info->content = 1;
                info->content_bytes += cur->p - start;
            }

            break;

        case NGX_HTTP_LLM_WORD_STOP_REASON:
            rc = ngx_http_llm_event_finish(cur, info);
            break;

        default:
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

        switch (ngx_http_llm_word(&key)) {

        case NGX_HTTP_LLM_WORD_PROMPT_TOKENS:
            rc = ngx_http_llm_json_get_int(cur, &v);

            if (rc == 1 && v >= 0) {
                u->prompt_tokens = v;
                found = 1;
            }

            break;

        case NGX_HTTP_LLM_WORD_COMPLETION_TOKENS:
        case NGX_HTTP_LLM_WORD_OUTPUT_TOKENS:
            rc = ngx_http_llm_json_get_int(cur, &v);

            if (rc == 1 && v >= 0) {
                u->completion_tokens = v;
                found = 1;
            }

            break;

        case NGX_HTTP_LLM_WORD_INPUT_TOKENS:
            rc = ngx_http_llm_json_get_int(cur, &v);

            if (rc == 1 && v >= 0) {
                input = v;
                found = 1;
            }

            break;

        case NGX_HTTP_LLM_WORD_CACHE_READ_INPUT_TOKENS:
            rc = ngx_http_llm_json_get_int(cur, &v);

            if (rc == 1 && v >= 0) {
                read = v;
                u->cached_tokens = v;
                found = 1;
            }

            break;

        case NGX_HTTP_LLM_WORD_CACHE_CREATION_INPUT_TOKENS:
            rc = ngx_http_llm_json_get_int(cur, &v);

            if (rc == 1 && v >= 0) {
                write = v;
                u->cache_write_tokens = v;
                found = 1;
            }

            break;

        case NGX_HTTP_LLM_WORD_PROMPT_TOKENS_DETAILS:
            rc = ngx_http_llm_event_details(cur,
                                            NGX_HTTP_LLM_WORD_CACHED_TOKENS,
                                            &v);

            if (rc == 1 && v >= 0) {
                u->cached_tokens = v;
                found = 1;
            }

            break;

        case NGX_HTTP_LLM_WORD_COMPLETION_TOKENS_DETAILS:
            rc = ngx_http_llm_event_details(cur,
                                            NGX_HTTP_LLM_WORD_REASONING_TOKENS,
                                            &v);

            if (rc == 1 && v >= 0) {
                u->reasoning_tokens = v;
                found = 1;
            }

            break;

        default:
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


/* one integer member (a word) of a details object: 1 and *v if found */

static int
ngx_http_llm_event_details(ngx_http_llm_json_cur_t *cur, unsigned word,
    int64_t *v)
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

        if (ngx_http_llm_word(&key) == word) {
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
