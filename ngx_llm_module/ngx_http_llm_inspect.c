
/*
 * Copyright (C) ngx_llm authors
 */


/*
 * Request body inspection: one pass over the body validates it (RFC 8259:
 * strict grammar, UTF-8, no unescaped control characters, nesting up to
 * max_depth), extracts the fields the gateway needs, estimates the prompt
 * size and computes a canonical hash. No heap: a fixed stack of frames
 * and fixed scratch arrays, about 20 KB of stack in all.
 *
 * Depth: the top-level object is depth 1, {"a":[1]} has depth 2.
 *
 * Prompt token estimate
 *
 *   prompt_tokens = ceil(text_bytes / 4)
 *                   + token ids given as numbers in prompt / input arrays
 *                   + 4 per message, + 3 priming the reply if messages
 *                   + 765 per image part
 *
 *   text_bytes counts the bytes the model reads: the unescaped bytes of
 *   every string in messages (contents, names, tool calls; not the values
 *   of "role" and "type"), in the Anthropic top-level system, in prompt
 *   (completions) and input (embeddings); plus the raw JSON length of
 *   tools and functions (tool definitions reach the model as text). The
 *   strings inside content parts of type image_url, image, input_image,
 *   input_audio, file and document are not text (base64 payloads, URLs):
 *   an image part costs 765 tokens instead, what OpenAI charges for a
 *   1024x1024 image in high detail. About 4 bytes per token is the usual
 *   figure for English text and code with BPE tokenizers.
 *
 * Canonical hash (hash[2], 128 bits)
 *
 *   A Merkle-style hash built with XXH3-128 over the JSON values:
 *
 *   - strings by their unescaped UTF-8 bytes ("\u0041" == "A",
 *     "\/" == "/"; a surrogate pair == its 4-byte UTF-8 form);
 *   - numbers by value in canonical decimal form: sign, significant
 *     digits without leading or trailing zeros, exponent of the last
 *     digit; computed on the digits, never through a double, so 1, 1.0,
 *     1e0, 10e-1 are equal, long integers stay exact, -0 == 0 (numbers
 *     with an exponent over 15 digits are hashed by spelling);
 *   - null, true, false, strings, numbers, arrays and objects are distinct
 *     (each kind has its own seed): the string "1" is not the number 1;
 *   - arrays: a chain over the element hashes, order-sensitive;
 *   - objects: key order does not matter at any depth. Each member gives
 *     pair = H(key hash, value hash). An object at nesting levels 2 to 9
 *     with at most 32 members hashes its sorted pairs; a larger or deeper
 *     object hashes the 128-bit sum of its pairs and their count (a
 *     commutative combination). The choice depends only on the object's
 *     own level and size, never on its neighbours, so equal bodies always
 *     hash equally. The top-level object always sorts (at most 256
 *     members, see below).
 *
 *   The top-level members below do not enter the hash (they do not change
 *   the output): stream, stream_options, user, metadata, request_id,
 *   store, service_tier, prompt_cache_key, safety_identifier, and every
 *   key that starts with "x-" or "X-".
 *
 *   prefix_hash (64 bits) covers model, the Anthropic top-level system,
 *   the leading run of OpenAI messages with role system or developer, and
 *   tools: the prompt prefix that provider-side prompt caches reuse.
 *
 * Checks
 *
 *   duplicate top-level keys (compared by unescaped value) are EDUP: the
 *   gateway and the upstream could otherwise read different values; more
 *   than 256 top-level members is EFIELD. Field checks (EFIELD) report the
 *   first problem in body order, after the whole body was validated; null
 *   counts as absent for the optional fields. Integer fields accept any
 *   number spelling with an integral value (100, 1e2, 100.0).
 */


#include <string.h>
#include <math.h>

#include "ngx_http_llm_inspect.h"
#include "ngx_http_llm_json.h"


#define NGX_HTTP_LLM_EST_BYTES_PER_TOKEN   4
#define NGX_HTTP_LLM_EST_PER_MESSAGE       4
#define NGX_HTTP_LLM_EST_REPLY             3
#define NGX_HTTP_LLM_EST_PER_IMAGE         765

#define NGX_HTTP_LLM_INSPECT_TOP_MAX       256
#define NGX_HTTP_LLM_INSPECT_SORT_MAX      32
#define NGX_HTTP_LLM_INSPECT_SORT_LEVELS   8

#define NGX_HTTP_LLM_SEED_PREFIX           0x6c6c6d2d70726631ULL


/* the semantic context of a container */
#define NGX_HTTP_LLM_CTX_NONE              0
#define NGX_HTTP_LLM_CTX_TOP               1
#define NGX_HTTP_LLM_CTX_MESSAGES          2
#define NGX_HTTP_LLM_CTX_MESSAGE           3
#define NGX_HTTP_LLM_CTX_TEXT              4
#define NGX_HTTP_LLM_CTX_PROMPT            5
#define NGX_HTTP_LLM_CTX_STREAM_OPTIONS    6
#define NGX_HTTP_LLM_CTX_RESPONSE_FORMAT   7

/* frame flags */
#define NGX_HTTP_LLM_F_SORTED              0x01
#define NGX_HTTP_LLM_F_PAYLOAD             0x02
#define NGX_HTTP_LLM_F_IMAGE               0x04
#define NGX_HTTP_LLM_F_SYSTEM              0x08
#define NGX_HTTP_LLM_F_EXCLUDED            0x10

/* known keys */
#define NGX_HTTP_LLM_KEY_NONE              0
#define NGX_HTTP_LLM_KEY_MODEL             1
#define NGX_HTTP_LLM_KEY_MESSAGES          2
#define NGX_HTTP_LLM_KEY_STREAM            3
#define NGX_HTTP_LLM_KEY_STREAM_OPTIONS    4
#define NGX_HTTP_LLM_KEY_MAX_TOKENS        5
#define NGX_HTTP_LLM_KEY_MAX_COMPLETION    6
#define NGX_HTTP_LLM_KEY_N                 7
#define NGX_HTTP_LLM_KEY_TEMPERATURE       8
#define NGX_HTTP_LLM_KEY_TOP_P             9
#define NGX_HTTP_LLM_KEY_SEED              10
#define NGX_HTTP_LLM_KEY_TOOLS             11
#define NGX_HTTP_LLM_KEY_FUNCTIONS         12
#define NGX_HTTP_LLM_KEY_SYSTEM            13
#define NGX_HTTP_LLM_KEY_PROMPT            14
#define NGX_HTTP_LLM_KEY_INPUT             15
#define NGX_HTTP_LLM_KEY_RESPONSE_FORMAT   16
#define NGX_HTTP_LLM_KEY_EXCLUDED          17
#define NGX_HTTP_LLM_KEY_ROLE              18
#define NGX_HTTP_LLM_KEY_TYPE              19
#define NGX_HTTP_LLM_KEY_INCLUDE_USAGE     20
#define NGX_HTTP_LLM_KEY_PROMPT_CACHE_KEY  21

/* fields seen */
#define NGX_HTTP_LLM_HAVE_MODEL            0x01
#define NGX_HTTP_LLM_HAVE_MESSAGES         0x02
#define NGX_HTTP_LLM_HAVE_PROMPT           0x04
#define NGX_HTTP_LLM_HAVE_INPUT            0x08
#define NGX_HTTP_LLM_HAVE_MAX_TOKENS        0x10
#define NGX_HTTP_LLM_HAVE_SYSTEM           0x20
#define NGX_HTTP_LLM_HAVE_TOOLS            0x40


typedef struct {
    const char                 *name;
    size_t                      len;
    unsigned                    id;
    unsigned                    excluded;
} ngx_http_llm_inspect_key_t;


typedef struct {
    XXH128_hash_t               acc;        /* array chain, object sum */
    XXH128_hash_t               key;        /* current member's key */
    uint64_t                    text;       /* prompt text bytes */
    const u_char               *start;
    uint32_t                    count;
    u_char                      type;       /* '{' or '[' */
    u_char                      ctx;
    u_char                      key_id;
    u_char                      flags;
} ngx_http_llm_inspect_frame_t;


typedef struct {
    XXH128_hash_t               hash;
    const u_char               *start;
    const u_char               *end;
    size_t                      ulen;       /* strings: unescaped length */
    uint32_t                    count;      /* containers: members */
    int                         type;
    unsigned                    escaped;
    uint64_t                    text;       /* containers: text bytes */
    ngx_http_llm_json_num_t     num;
} ngx_http_llm_inspect_value_t;


typedef struct {
    ngx_http_llm_request_t     *req;
    const u_char               *body;
    int                         api;
    unsigned                    depth;
    unsigned                    have;
    unsigned                    sys_leading;

    int                         rc;         /* first semantic error */
    const char                 *error;
    const char                 *error_param;
    const u_char               *error_pos;

    int64_t                     max_tokens;
    int64_t                     max_completion_tokens;
    uint64_t                    token_ids;

    XXH128_hash_t               model_hash;
    XXH128_hash_t               system_hash;
    XXH128_hash_t               sys_msgs;
    XXH128_hash_t               tools_hash;
    XXH128_hash_t               conv;       /* messages after the run */
    XXH128_hash_t               conv_at[NGX_HTTP_LLM_INSPECT_MSG_PREFIXES];
    uint64_t                    conv_bytes;
    XXH128_hash_t               doc_hash;

    unsigned                    top_n;      /* top-level members */
    unsigned                    top_inc;    /* ... hashed */
    XXH128_hash_t               top_keys[NGX_HTTP_LLM_INSPECT_TOP_MAX];
    XXH128_hash_t               top_pairs[NGX_HTTP_LLM_INSPECT_TOP_MAX];

    XXH128_hash_t               sorted[NGX_HTTP_LLM_INSPECT_SORT_LEVELS]
                                      [NGX_HTTP_LLM_INSPECT_SORT_MAX];

    ngx_http_llm_inspect_frame_t  stack[NGX_HTTP_LLM_JSON_MAX_DEPTH];
} ngx_http_llm_inspect_t;


static unsigned ngx_http_llm_inspect_key(unsigned ctx,
    const ngx_http_llm_json_str_t *k, unsigned *excluded);
static void ngx_http_llm_inspect_field_error(ngx_http_llm_inspect_t *s,
    int rc, const char *error, const char *param, const u_char *pos);
static void ngx_http_llm_inspect_member(ngx_http_llm_inspect_t *s,
    ngx_http_llm_inspect_frame_t *f, ngx_http_llm_inspect_value_t *v);
static void ngx_http_llm_inspect_top(ngx_http_llm_inspect_t *s,
    ngx_http_llm_inspect_frame_t *f, ngx_http_llm_inspect_value_t *v);
static void ngx_http_llm_inspect_value(ngx_http_llm_inspect_t *s,
    ngx_http_llm_inspect_value_t *v);
static unsigned ngx_http_llm_inspect_child_ctx(ngx_http_llm_inspect_t *s,
    ngx_http_llm_inspect_frame_t *f);
static XXH128_hash_t ngx_http_llm_inspect_close(ngx_http_llm_inspect_t *s,
    ngx_http_llm_inspect_frame_t *f);
static void ngx_http_llm_inspect_sort(XXH128_hash_t *a, unsigned n);
static int ngx_http_llm_inspect_has_ctl(const u_char *p, size_t len);
static int ngx_http_llm_inspect_finish(ngx_http_llm_inspect_t *s);
static int ngx_http_llm_inspect_fail(ngx_http_llm_inspect_t *s, int rc,
    const char *error, const char *param, const u_char *pos);


#define ngx_http_llm_key(name, id, excluded)                                  \
    { name, sizeof(name) - 1, NGX_HTTP_LLM_KEY_ ## id, excluded }

static const ngx_http_llm_inspect_key_t  ngx_http_llm_inspect_top_keys[] = {
    ngx_http_llm_key("model", MODEL, 0),
    ngx_http_llm_key("messages", MESSAGES, 0),
    ngx_http_llm_key("stream", STREAM, 1),
    ngx_http_llm_key("stream_options", STREAM_OPTIONS, 1),
    ngx_http_llm_key("max_tokens", MAX_TOKENS, 0),
    ngx_http_llm_key("max_completion_tokens", MAX_COMPLETION, 0),
    ngx_http_llm_key("n", N, 0),
    ngx_http_llm_key("temperature", TEMPERATURE, 0),
    ngx_http_llm_key("top_p", TOP_P, 0),
    ngx_http_llm_key("seed", SEED, 0),
    ngx_http_llm_key("tools", TOOLS, 0),
    ngx_http_llm_key("functions", FUNCTIONS, 0),
    ngx_http_llm_key("system", SYSTEM, 0),
    ngx_http_llm_key("prompt", PROMPT, 0),
    ngx_http_llm_key("input", INPUT, 0),
    ngx_http_llm_key("response_format", RESPONSE_FORMAT, 0),
    ngx_http_llm_key("user", EXCLUDED, 1),
    ngx_http_llm_key("metadata", EXCLUDED, 1),
    ngx_http_llm_key("request_id", EXCLUDED, 1),
    ngx_http_llm_key("store", EXCLUDED, 1),
    ngx_http_llm_key("service_tier", EXCLUDED, 1),
    ngx_http_llm_key("prompt_cache_key", PROMPT_CACHE_KEY, 1),
    ngx_http_llm_key("safety_identifier", EXCLUDED, 1),
    { NULL, 0, 0, 0 }
};


static const char  *ngx_http_llm_inspect_names[] = {
    NULL, "model", "messages", "stream", "stream_options", "max_tokens",
    "max_completion_tokens", "n", "temperature", "top_p", "seed", "tools",
    "functions", "system", "prompt", "input", "response_format"
};


int
ngx_http_llm_inspect(ngx_http_llm_request_t *req, int api, const u_char *body,
    size_t len)
{
    u_char                         c, top;
    unsigned                       max_depth, excluded, i;
    const u_char                  *p, *q, *end;
    ngx_http_llm_json_str_t        str;
    ngx_http_llm_json_error_t      err;
    ngx_http_llm_json_shash_t      sh;
    ngx_http_llm_inspect_t         s;
    ngx_http_llm_inspect_frame_t  *f;
    ngx_http_llm_inspect_value_t   v;

    req->model.data = NULL;
    req->model.len = 0;
    req->model_escaped = 0;
    req->stream = NGX_HTTP_LLM_UNSET_FLAG;
    req->include_usage = NGX_HTTP_LLM_UNSET_FLAG;
    req->max_tokens = -1;
    req->max_tokens_top = -1;
    req->n = -1;
    req->temperature = NAN;
    req->top_p = NAN;
    req->seed = 0;
    req->has_seed = 0;
    req->tools = 0;
    req->messages = 0;
    req->images = 0;
    req->json_mode = 0;
    req->prompt_tokens = 0;
    req->text_bytes = 0;
    req->hash[0] = 0;
    req->hash[1] = 0;
    req->prefix_hash = 0;
    req->msg_prefixes = 0;
    req->stream_options_start = -1;
    req->stream_options_end = -1;
    req->object_end = 0;
    req->object_empty = 0;
    req->prompt_cache_key = 0;
    req->error = NULL;
    req->error_param = NULL;
    req->error_offset = 0;
    req->error_key.data = NULL;
    req->error_key.len = 0;

    max_depth = req->max_depth;

    if (max_depth == 0) {
        max_depth = NGX_HTTP_LLM_INSPECT_DEFAULT_DEPTH;

    } else if (max_depth > NGX_HTTP_LLM_INSPECT_MAX_DEPTH) {
        max_depth = NGX_HTTP_LLM_INSPECT_MAX_DEPTH;
    }

    s.req = req;
    s.body = body;
    s.api = api;
    s.depth = 0;
    s.have = 0;
    s.sys_leading = 1;
    s.rc = NGX_HTTP_LLM_INSPECT_OK;
    s.max_tokens = -1;
    s.max_completion_tokens = -1;
    s.token_ids = 0;
    s.model_hash.low64 = 0;
    s.model_hash.high64 = 0;
    s.system_hash = s.model_hash;
    s.sys_msgs = s.model_hash;
    s.tools_hash = s.model_hash;
    s.conv = s.model_hash;
    s.conv_bytes = 0;
    s.top_n = 0;
    s.top_inc = 0;

    p = body;
    end = body + len;

    p = ngx_http_llm_json_skip_ws(p, end);

    if (p == end) {
        return ngx_http_llm_inspect_fail(&s, NGX_HTTP_LLM_INSPECT_EJSON,
                                         "empty request body", NULL, p);
    }

    top = *p;

value:

    /* p < end, at the first character of a value */

    c = *p;

    switch (c) {

    case '"':
        q = ngx_http_llm_json_hash_string(p + 1, end, &sh, &err);

        if (q == NULL) {
            goto json_error;
        }

        v.type = NGX_HTTP_LLM_JSON_STRING;
        v.start = p;
        v.end = q + 1;
        v.escaped = sh.escaped;
        v.ulen = sh.ulen;
        v.hash = sh.hash;

        p = q + 1;
        ngx_http_llm_inspect_value(&s, &v);
        goto next;

    case '{':
    case '[':
        if (s.depth == max_depth) {
            return ngx_http_llm_inspect_fail(&s, NGX_HTTP_LLM_INSPECT_EDEPTH,
                                             "JSON nesting too deep", NULL,
                                             p);
        }

        f = &s.stack[s.depth];

        f->type = c;
        f->start = p;
        f->count = 0;
        f->acc.low64 = 0;
        f->acc.high64 = 0;
        f->text = 0;
        f->flags = 0;
        f->key_id = NGX_HTTP_LLM_KEY_NONE;

        if (s.depth == 0) {
            f->ctx = (c == '{') ? NGX_HTTP_LLM_CTX_TOP : NGX_HTTP_LLM_CTX_NONE;

        } else {
            f->ctx = ngx_http_llm_inspect_child_ctx(&s, f);

            if (c == '{' && s.depth <= NGX_HTTP_LLM_INSPECT_SORT_LEVELS) {
                f->flags = NGX_HTTP_LLM_F_SORTED;
            }
        }

        s.depth++;

        p = ngx_http_llm_json_skip_ws(p + 1, end);

        if (p == end) {
            goto unexpected_end;
        }

        if (*p == (c == '{' ? '}' : ']')) {
            goto close;
        }

        if (c == '{') {
            goto key;
        }

        goto value;

    case 't':
    case 'f':
    case 'n':
        v.start = p;
        p = (c == 'f') ? p + 5 : p + 4;

        if (p > end
            || memcmp(v.start, c == 't' ? "true" : c == 'f' ? "false" : "null",
                      p - v.start) != 0)
        {
            err.msg = "invalid literal";
            err.pos = v.start;
            goto json_error;
        }

        v.type = c;
        v.end = p;
        v.hash = ngx_http_llm_json_literal_hash(c);

        ngx_http_llm_inspect_value(&s, &v);
        goto next;

    default:
        if (c != '-' && (unsigned) (c - '0') > 9) {
            err.msg = "unexpected character";
            err.pos = p;
            goto json_error;
        }

        q = ngx_http_llm_json_number(p, end, &v.num, &err);

        if (q == NULL) {
            goto json_error;
        }

        v.type = NGX_HTTP_LLM_JSON_NUMBER;
        v.start = p;
        v.end = q;
        v.hash = ngx_http_llm_json_num_hash(&v.num);

        p = q;
        ngx_http_llm_inspect_value(&s, &v);
        goto next;
    }

key:

    /* p < end, after '{' or ',' and whitespace */

    if (*p != '"') {
        err.msg = "expected a string key";
        err.pos = p;
        goto json_error;
    }

    q = ngx_http_llm_json_hash_string(p + 1, end, &sh, &err);

    if (q == NULL) {
        goto json_error;
    }

    str.data = p + 1;
    str.len = q - str.data;
    str.escaped = sh.escaped;

    f = &s.stack[s.depth - 1];
    f->key = sh.hash;
    f->key_id = NGX_HTTP_LLM_KEY_NONE;
    f->flags &= ~NGX_HTTP_LLM_F_EXCLUDED;

    if (f->ctx != NGX_HTTP_LLM_CTX_NONE) {
        excluded = 0;
        f->key_id = ngx_http_llm_inspect_key(f->ctx, &str, &excluded);

        if (excluded) {
            f->flags |= NGX_HTTP_LLM_F_EXCLUDED;
        }

        if (f->key_id == NGX_HTTP_LLM_KEY_PROMPT_CACHE_KEY) {
            /* the route does not add one then */
            req->prompt_cache_key = 1;
        }
    }

    if (f->ctx == NGX_HTTP_LLM_CTX_TOP) {

        if (s.top_n == NGX_HTTP_LLM_INSPECT_TOP_MAX) {
            ngx_http_llm_inspect_field_error(&s, NGX_HTTP_LLM_INSPECT_EFIELD,
                                             "too many top-level fields",
                                             NULL, p);

            /* neither stored nor hashed: the request fails anyway */
            f->flags |= NGX_HTTP_LLM_F_EXCLUDED;

        } else {
            for (i = 0; i < s.top_n; i++) {
                if (s.top_keys[i].low64 == f->key.low64
                    && s.top_keys[i].high64 == f->key.high64)
                {
                    break;
                }
            }

            if (i < s.top_n) {
                if (s.rc == NGX_HTTP_LLM_INSPECT_OK) {
                    req->error_key.data = str.data;
                    req->error_key.len = str.len;
                }

                ngx_http_llm_inspect_field_error(&s,
                             NGX_HTTP_LLM_INSPECT_EDUP,
                             "duplicate top-level key",
                             f->key_id < NGX_HTTP_LLM_KEY_EXCLUDED
                             ? ngx_http_llm_inspect_names[f->key_id] : NULL,
                             p);

                /* not hashed: the request fails anyway */
                f->flags |= NGX_HTTP_LLM_F_EXCLUDED;

            } else {
                s.top_keys[s.top_n++] = f->key;
            }
        }
    }

    p = ngx_http_llm_json_skip_ws(q + 1, end);

    if (p == end || *p != ':') {
        err.msg = "expected ':' after a key";
        err.pos = p;
        goto json_error;
    }

    p = ngx_http_llm_json_skip_ws(p + 1, end);

    if (p == end) {
        goto unexpected_end;
    }

    goto value;

next:

    if (s.depth == 0) {
        goto done;
    }

    p = ngx_http_llm_json_skip_ws(p, end);

    if (p == end) {
        goto unexpected_end;
    }

    f = &s.stack[s.depth - 1];

    if (*p == ',') {
        p = ngx_http_llm_json_skip_ws(p + 1, end);

        if (p == end) {
            goto unexpected_end;
        }

        if (f->type == '{') {
            goto key;
        }

        goto value;
    }

    if (*p != (f->type == '{' ? '}' : ']')) {
        err.msg = (f->type == '{') ? "expected ',' or '}'"
                                   : "expected ',' or ']'";
        err.pos = p;
        goto json_error;
    }

close:

    /* p at the bracket closing the container on top of the stack */

    f = &s.stack[s.depth - 1];

    v.type = f->type;
    v.start = f->start;
    v.end = p + 1;
    v.count = f->count;
    v.text = f->text;
    v.hash = ngx_http_llm_inspect_close(&s, f);

    if (s.depth == 1 && f->ctx == NGX_HTTP_LLM_CTX_TOP) {
        req->object_end = p - body;
        req->object_empty = (f->count == 0);
    }

    s.depth--;
    p++;

    ngx_http_llm_inspect_value(&s, &v);
    goto next;

done:

    p = ngx_http_llm_json_skip_ws(p, end);

    if (p != end) {
        err.msg = "unexpected data after the JSON value";
        err.pos = p;
        goto json_error;
    }

    if (top != '{') {
        return ngx_http_llm_inspect_fail(&s, NGX_HTTP_LLM_INSPECT_ETYPE,
                                         "request body must be a JSON object",
                                         NULL, body);
    }

    return ngx_http_llm_inspect_finish(&s);

unexpected_end:

    err.msg = "unexpected end of JSON";
    err.pos = end;

json_error:

    return ngx_http_llm_inspect_fail(&s, NGX_HTTP_LLM_INSPECT_EJSON, err.msg,
                                     NULL, err.pos);
}


static int
ngx_http_llm_inspect_fail(ngx_http_llm_inspect_t *s, int rc,
    const char *error, const char *param, const u_char *pos)
{
    s->req->error = error;
    s->req->error_param = param;
    s->req->error_offset = pos - s->body;

    return rc;
}


static void
ngx_http_llm_inspect_field_error(ngx_http_llm_inspect_t *s, int rc,
    const char *error, const char *param, const u_char *pos)
{
    if (s->rc != NGX_HTTP_LLM_INSPECT_OK) {
        return;
    }

    s->rc = rc;
    s->error = error;
    s->error_param = param;
    s->error_pos = pos;
}


static unsigned
ngx_http_llm_inspect_key(unsigned ctx, const ngx_http_llm_json_str_t *k,
    unsigned *excluded)
{
    u_char                             buf[64];
    size_t                             len;
    unsigned                           full;
    const u_char                      *kp, *p;
    const ngx_http_llm_inspect_key_t  *key;

    if (k->escaped) {
        p = k->data;
        len = ngx_http_llm_json_unescape(&p, k->data + k->len, buf,
                                         sizeof(buf));
        kp = buf;
        full = (p == k->data + k->len);

    } else {
        kp = k->data;
        len = k->len;
        full = 1;
    }

    if (ctx == NGX_HTTP_LLM_CTX_TOP) {

        if (len >= 2 && (kp[0] == 'x' || kp[0] == 'X') && kp[1] == '-') {
            *excluded = 1;
            return NGX_HTTP_LLM_KEY_EXCLUDED;
        }

        if (!full) {
            return NGX_HTTP_LLM_KEY_NONE;
        }

        for (key = ngx_http_llm_inspect_top_keys; key->name; key++) {
            if (key->len == len && memcmp(key->name, kp, len) == 0) {
                *excluded = key->excluded;
                return key->id;
            }
        }

        return NGX_HTTP_LLM_KEY_NONE;
    }

    if (!full) {
        return NGX_HTTP_LLM_KEY_NONE;
    }

    if (len == 4 && memcmp(kp, "type", 4) == 0) {
        return NGX_HTTP_LLM_KEY_TYPE;
    }

    if (ctx == NGX_HTTP_LLM_CTX_MESSAGE && len == 4
        && memcmp(kp, "role", 4) == 0)
    {
        return NGX_HTTP_LLM_KEY_ROLE;
    }

    if (ctx == NGX_HTTP_LLM_CTX_STREAM_OPTIONS && len == 13
        && memcmp(kp, "include_usage", 13) == 0)
    {
        return NGX_HTTP_LLM_KEY_INCLUDE_USAGE;
    }

    return NGX_HTTP_LLM_KEY_NONE;
}


static unsigned
ngx_http_llm_inspect_child_ctx(ngx_http_llm_inspect_t *s,
    ngx_http_llm_inspect_frame_t *f)
{
    ngx_http_llm_inspect_frame_t  *parent;

    parent = f - 1;

    switch (parent->ctx) {

    case NGX_HTTP_LLM_CTX_TOP:

        switch (parent->key_id) {

        case NGX_HTTP_LLM_KEY_MESSAGES:
            if (f->type == '[' && s->api != NGX_HTTP_LLM_API_COMPLETIONS
                && s->api != NGX_HTTP_LLM_API_EMBEDDINGS)
            {
                return NGX_HTTP_LLM_CTX_MESSAGES;
            }

            return NGX_HTTP_LLM_CTX_NONE;

        case NGX_HTTP_LLM_KEY_SYSTEM:
            return NGX_HTTP_LLM_CTX_TEXT;

        case NGX_HTTP_LLM_KEY_PROMPT:
            if (s->api == NGX_HTTP_LLM_API_COMPLETIONS
                || s->api == NGX_HTTP_LLM_API_UNKNOWN)
            {
                return NGX_HTTP_LLM_CTX_PROMPT;
            }

            return NGX_HTTP_LLM_CTX_NONE;

        case NGX_HTTP_LLM_KEY_INPUT:
            if (s->api == NGX_HTTP_LLM_API_EMBEDDINGS
                || s->api == NGX_HTTP_LLM_API_UNKNOWN)
            {
                return NGX_HTTP_LLM_CTX_PROMPT;
            }

            return NGX_HTTP_LLM_CTX_NONE;

        case NGX_HTTP_LLM_KEY_STREAM_OPTIONS:
            return (f->type == '{') ? NGX_HTTP_LLM_CTX_STREAM_OPTIONS
                                    : NGX_HTTP_LLM_CTX_NONE;

        case NGX_HTTP_LLM_KEY_RESPONSE_FORMAT:
            return (f->type == '{') ? NGX_HTTP_LLM_CTX_RESPONSE_FORMAT
                                    : NGX_HTTP_LLM_CTX_NONE;

        default:
            return NGX_HTTP_LLM_CTX_NONE;
        }

    case NGX_HTTP_LLM_CTX_MESSAGES:
        return (f->type == '{') ? NGX_HTTP_LLM_CTX_MESSAGE
                                : NGX_HTTP_LLM_CTX_NONE;

    case NGX_HTTP_LLM_CTX_MESSAGE:
    case NGX_HTTP_LLM_CTX_TEXT:
        return NGX_HTTP_LLM_CTX_TEXT;

    case NGX_HTTP_LLM_CTX_PROMPT:
        return NGX_HTTP_LLM_CTX_PROMPT;

    default:
        return NGX_HTTP_LLM_CTX_NONE;
    }
}


static void
ngx_http_llm_inspect_value(ngx_http_llm_inspect_t *s,
    ngx_http_llm_inspect_value_t *v)
{
    ngx_http_llm_inspect_frame_t  *f;

    if (s->depth == 0) {
        return;
    }

    f = &s->stack[s->depth - 1];

    if (f->type == '{') {
        ngx_http_llm_inspect_member(s, f, v);
        return;
    }

    f->acc = ngx_http_llm_json_mix(f->acc, v->hash,
                                   NGX_HTTP_LLM_JSON_SEED_ARRAY);
    f->count++;

    switch (f->ctx) {

    case NGX_HTTP_LLM_CTX_MESSAGES:
        if (v->type != NGX_HTTP_LLM_JSON_OBJECT) {
            ngx_http_llm_inspect_field_error(s, NGX_HTTP_LLM_INSPECT_EFIELD,
                                     "'messages' must be an array of objects",
                                     "messages", v->start);
        }

        break;

    case NGX_HTTP_LLM_CTX_PROMPT:
        if (v->type == NGX_HTTP_LLM_JSON_NUMBER) {
            s->token_ids++;
            break;
        }

        /* fall through */

    case NGX_HTTP_LLM_CTX_TEXT:
        if (v->type == NGX_HTTP_LLM_JSON_STRING) {
            f->text += v->ulen;
        }

        break;

    default:
        break;
    }
}


static void
ngx_http_llm_inspect_member(ngx_http_llm_inspect_t *s,
    ngx_http_llm_inspect_frame_t *f, ngx_http_llm_inspect_value_t *v)
{
    unsigned                 i;
    XXH128_hash_t            pair, *sorted;
    ngx_http_llm_json_str_t  str;

    str.data = v->start + 1;
    str.len = 0;
    str.escaped = 0;

    if (v->type == NGX_HTTP_LLM_JSON_STRING) {
        str.len = v->end - v->start - 2;
        str.escaped = v->escaped;
    }

    switch (f->ctx) {

    case NGX_HTTP_LLM_CTX_TOP:
        ngx_http_llm_inspect_top(s, f, v);
        break;

    case NGX_HTTP_LLM_CTX_MESSAGE:
    case NGX_HTTP_LLM_CTX_TEXT:
    case NGX_HTTP_LLM_CTX_PROMPT:

        if (v->type != NGX_HTTP_LLM_JSON_STRING) {
            if (v->type == NGX_HTTP_LLM_JSON_NUMBER
                && f->ctx == NGX_HTTP_LLM_CTX_PROMPT)
            {
                s->token_ids++;
            }

            break;
        }

        if (f->key_id == NGX_HTTP_LLM_KEY_ROLE) {
            if (ngx_http_llm_json_str_eq(&str, "system", 6)
                || ngx_http_llm_json_str_eq(&str, "developer", 9))
            {
                f->flags |= NGX_HTTP_LLM_F_SYSTEM;
            }

            break;
        }

        if (f->key_id == NGX_HTTP_LLM_KEY_TYPE) {
            if (ngx_http_llm_json_str_eq(&str, "image_url", 9)
                || ngx_http_llm_json_str_eq(&str, "image", 5)
                || ngx_http_llm_json_str_eq(&str, "input_image", 11))
            {
                f->flags |= NGX_HTTP_LLM_F_IMAGE|NGX_HTTP_LLM_F_PAYLOAD;

            } else if (ngx_http_llm_json_str_eq(&str, "input_audio", 11)
                       || ngx_http_llm_json_str_eq(&str, "file", 4)
                       || ngx_http_llm_json_str_eq(&str, "document", 8))
            {
                f->flags |= NGX_HTTP_LLM_F_PAYLOAD;
            }

            break;
        }

        f->text += v->ulen;
        break;

    case NGX_HTTP_LLM_CTX_STREAM_OPTIONS:
        if (f->key_id != NGX_HTTP_LLM_KEY_INCLUDE_USAGE) {
            break;
        }

        if (v->type == NGX_HTTP_LLM_JSON_TRUE) {
            s->req->include_usage = 1;

        } else if (v->type == NGX_HTTP_LLM_JSON_FALSE) {
            s->req->include_usage = 0;

        } else if (v->type != NGX_HTTP_LLM_JSON_NULL) {
            ngx_http_llm_inspect_field_error(s, NGX_HTTP_LLM_INSPECT_EFIELD,
                       "'stream_options.include_usage' must be a boolean",
                       "stream_options", v->start);
        }

        break;

    case NGX_HTTP_LLM_CTX_RESPONSE_FORMAT:
        if (f->key_id == NGX_HTTP_LLM_KEY_TYPE
            && (ngx_http_llm_json_str_eq(&str, "json_object", 11)
                || ngx_http_llm_json_str_eq(&str, "json_schema", 11)))
        {
            s->req->json_mode = 1;
        }

        break;

    default:
        break;
    }

    pair = ngx_http_llm_json_mix(f->key, v->hash,
                                 NGX_HTTP_LLM_JSON_SEED_PAIR);

    if (f->ctx == NGX_HTTP_LLM_CTX_TOP) {
        if (!(f->flags & NGX_HTTP_LLM_F_EXCLUDED)) {
            s->top_pairs[s->top_inc++] = pair;
        }

        f->count++;
        return;
    }

    if (f->flags & NGX_HTTP_LLM_F_SORTED) {
        sorted = s->sorted[s->depth - 2];

        if (f->count < NGX_HTTP_LLM_INSPECT_SORT_MAX) {
            sorted[f->count++] = pair;
            return;
        }

        /* too many members: the commutative sum from now on */

        for (i = 0; i < NGX_HTTP_LLM_INSPECT_SORT_MAX; i++) {
            f->acc = ngx_http_llm_json_add(f->acc, sorted[i]);
        }

        f->flags &= ~NGX_HTTP_LLM_F_SORTED;
    }

    f->acc = ngx_http_llm_json_add(f->acc, pair);
    f->count++;
}


static void
ngx_http_llm_inspect_top(ngx_http_llm_inspect_t *s,
    ngx_http_llm_inspect_frame_t *f, ngx_http_llm_inspect_value_t *v)
{
    int                      t, api;
    int64_t                  n;
    ngx_http_llm_request_t  *req;

    req = s->req;
    t = v->type;
    api = s->api;

    switch (f->key_id) {

    case NGX_HTTP_LLM_KEY_MODEL:
        if (t != NGX_HTTP_LLM_JSON_STRING) {
            ngx_http_llm_inspect_field_error(s, NGX_HTTP_LLM_INSPECT_EFIELD,
                                             "'model' must be a string",
                                             "model", v->start);
            break;
        }

        if (v->ulen == 0) {
            ngx_http_llm_inspect_field_error(s, NGX_HTTP_LLM_INSPECT_EFIELD,
                                             "'model' must not be empty",
                                             "model", v->start);
            break;
        }

        /* CR, LF, NUL, ESC... would inject lines into logs and headers */

        if (ngx_http_llm_inspect_has_ctl(v->start + 1,
                                         v->end - v->start - 2))
        {
            ngx_http_llm_inspect_field_error(s, NGX_HTTP_LLM_INSPECT_EFIELD,
                              "'model' must not contain control characters",
                              "model", v->start);
            break;
        }

        req->model.data = v->start + 1;
        req->model.len = v->end - v->start - 2;
        req->model_escaped = v->escaped;
        s->model_hash = v->hash;
        s->have |= NGX_HTTP_LLM_HAVE_MODEL;
        break;

    case NGX_HTTP_LLM_KEY_MESSAGES:
        if (api == NGX_HTTP_LLM_API_COMPLETIONS
            || api == NGX_HTTP_LLM_API_EMBEDDINGS)
        {
            break;
        }

        if (t != NGX_HTTP_LLM_JSON_ARRAY) {
            ngx_http_llm_inspect_field_error(s, NGX_HTTP_LLM_INSPECT_EFIELD,
                                             "'messages' must be an array",
                                             "messages", v->start);
            break;
        }

        if (v->count == 0) {
            ngx_http_llm_inspect_field_error(s, NGX_HTTP_LLM_INSPECT_EFIELD,
                                             "'messages' must not be empty",
                                             "messages", v->start);
            break;
        }

        req->messages = v->count;
        s->have |= NGX_HTTP_LLM_HAVE_MESSAGES;
        break;

    case NGX_HTTP_LLM_KEY_STREAM:
        if (t == NGX_HTTP_LLM_JSON_TRUE) {
            req->stream = 1;

        } else if (t == NGX_HTTP_LLM_JSON_FALSE) {
            req->stream = 0;

        } else if (t != NGX_HTTP_LLM_JSON_NULL) {
            ngx_http_llm_inspect_field_error(s, NGX_HTTP_LLM_INSPECT_EFIELD,
                                             "'stream' must be a boolean",
                                             "stream", v->start);
        }

        break;

    case NGX_HTTP_LLM_KEY_STREAM_OPTIONS:
        req->stream_options_start = v->start - s->body;
        req->stream_options_end = v->end - s->body;

        if (t != NGX_HTTP_LLM_JSON_OBJECT && t != NGX_HTTP_LLM_JSON_NULL) {
            ngx_http_llm_inspect_field_error(s, NGX_HTTP_LLM_INSPECT_EFIELD,
                                        "'stream_options' must be an object",
                                        "stream_options", v->start);
        }

        break;

    case NGX_HTTP_LLM_KEY_MAX_TOKENS:
    case NGX_HTTP_LLM_KEY_MAX_COMPLETION:
        if (t == NGX_HTTP_LLM_JSON_NULL) {
            break;
        }

        if (t != NGX_HTTP_LLM_JSON_NUMBER
            || !ngx_http_llm_json_num_int(&v->num, &n) || n < 0)
        {
            if (f->key_id == NGX_HTTP_LLM_KEY_MAX_TOKENS) {
                ngx_http_llm_inspect_field_error(s,
                                NGX_HTTP_LLM_INSPECT_EFIELD,
                                "'max_tokens' must be a non-negative integer",
                                "max_tokens", v->start);
            } else {
                ngx_http_llm_inspect_field_error(s,
                     NGX_HTTP_LLM_INSPECT_EFIELD,
                     "'max_completion_tokens' must be a non-negative integer",
                     "max_completion_tokens", v->start);
            }

            break;
        }

        if (f->key_id == NGX_HTTP_LLM_KEY_MAX_TOKENS) {
            s->max_tokens = n;
            s->have |= NGX_HTTP_LLM_HAVE_MAX_TOKENS;

        } else {
            s->max_completion_tokens = n;
        }

        break;

    case NGX_HTTP_LLM_KEY_N:
        if (t == NGX_HTTP_LLM_JSON_NULL) {
            break;
        }

        if (t != NGX_HTTP_LLM_JSON_NUMBER
            || !ngx_http_llm_json_num_int(&v->num, &n) || n < 1)
        {
            ngx_http_llm_inspect_field_error(s, NGX_HTTP_LLM_INSPECT_EFIELD,
                                             "'n' must be a positive integer",
                                             "n", v->start);
            break;
        }

        req->n = n;
        break;

    case NGX_HTTP_LLM_KEY_TEMPERATURE:
    case NGX_HTTP_LLM_KEY_TOP_P:
        if (t == NGX_HTTP_LLM_JSON_NULL) {
            break;
        }

        if (t != NGX_HTTP_LLM_JSON_NUMBER) {
            if (f->key_id == NGX_HTTP_LLM_KEY_TEMPERATURE) {
                ngx_http_llm_inspect_field_error(s,
                                           NGX_HTTP_LLM_INSPECT_EFIELD,
                                           "'temperature' must be a number",
                                           "temperature", v->start);
            } else {
                ngx_http_llm_inspect_field_error(s,
                                                 NGX_HTTP_LLM_INSPECT_EFIELD,
                                                 "'top_p' must be a number",
                                                 "top_p", v->start);
            }

            break;
        }

        if (f->key_id == NGX_HTTP_LLM_KEY_TEMPERATURE) {
            req->temperature = ngx_http_llm_json_num_double(&v->num);

        } else {
            req->top_p = ngx_http_llm_json_num_double(&v->num);
        }

        break;

    case NGX_HTTP_LLM_KEY_SEED:
        if (t == NGX_HTTP_LLM_JSON_NULL) {
            break;
        }

        if (t != NGX_HTTP_LLM_JSON_NUMBER
            || !ngx_http_llm_json_num_int(&v->num, &n))
        {
            ngx_http_llm_inspect_field_error(s, NGX_HTTP_LLM_INSPECT_EFIELD,
                                             "'seed' must be an integer",
                                             "seed", v->start);
            break;
        }

        req->seed = n;
        req->has_seed = 1;
        break;

    case NGX_HTTP_LLM_KEY_TOOLS:
        if (t == NGX_HTTP_LLM_JSON_NULL) {
            break;
        }

        if (t != NGX_HTTP_LLM_JSON_ARRAY) {
            ngx_http_llm_inspect_field_error(s, NGX_HTTP_LLM_INSPECT_EFIELD,
                                             "'tools' must be an array",
                                             "tools", v->start);
            break;
        }

        req->tools = v->count;
        f->text += v->end - v->start;
        s->tools_hash = v->hash;
        s->have |= NGX_HTTP_LLM_HAVE_TOOLS;
        break;

    case NGX_HTTP_LLM_KEY_FUNCTIONS:
        if (t == NGX_HTTP_LLM_JSON_ARRAY) {
            f->text += v->end - v->start;
        }

        break;

    case NGX_HTTP_LLM_KEY_SYSTEM:
        if (t == NGX_HTTP_LLM_JSON_NULL) {
            break;
        }

        if (t == NGX_HTTP_LLM_JSON_STRING) {
            f->text += v->ulen;

        } else if (t != NGX_HTTP_LLM_JSON_ARRAY) {
            if (api == NGX_HTTP_LLM_API_MESSAGES) {
                ngx_http_llm_inspect_field_error(s,
                                   NGX_HTTP_LLM_INSPECT_EFIELD,
                                   "'system' must be a string or an array",
                                   "system", v->start);
            }

            break;
        }

        s->system_hash = v->hash;
        s->have |= NGX_HTTP_LLM_HAVE_SYSTEM;
        break;

    case NGX_HTTP_LLM_KEY_PROMPT:
    case NGX_HTTP_LLM_KEY_INPUT:
        if (f->key_id == NGX_HTTP_LLM_KEY_PROMPT
            ? (api != NGX_HTTP_LLM_API_COMPLETIONS
               && api != NGX_HTTP_LLM_API_UNKNOWN)
            : (api != NGX_HTTP_LLM_API_EMBEDDINGS
               && api != NGX_HTTP_LLM_API_UNKNOWN))
        {
            break;
        }

        if (t == NGX_HTTP_LLM_JSON_STRING) {
            f->text += v->ulen;

        } else if (t != NGX_HTTP_LLM_JSON_ARRAY) {
            if (api == NGX_HTTP_LLM_API_UNKNOWN) {
                break;
            }

            if (f->key_id == NGX_HTTP_LLM_KEY_PROMPT) {
                ngx_http_llm_inspect_field_error(s,
                                   NGX_HTTP_LLM_INSPECT_EFIELD,
                                   "'prompt' must be a string or an array",
                                   "prompt", v->start);
            } else {
                ngx_http_llm_inspect_field_error(s,
                                   NGX_HTTP_LLM_INSPECT_EFIELD,
                                   "'input' must be a string or an array",
                                   "input", v->start);
            }

            break;
        }

        s->have |= (f->key_id == NGX_HTTP_LLM_KEY_PROMPT)
                   ? NGX_HTTP_LLM_HAVE_PROMPT : NGX_HTTP_LLM_HAVE_INPUT;
        break;

    default:
        break;
    }
}


/*
 * Whether a string the parser accepted (raw, escapes kept) holds a control
 * character: raw DEL (raw C0 bytes are invalid JSON already), or an escape
 * of a C0 character or DEL.
 */

static int
ngx_http_llm_inspect_has_ctl(const u_char *p, size_t len)
{
    const u_char  *last;

    last = p + len;

    while (p < last) {
        if (*p == 0x7f) {
            return 1;
        }

        if (*p++ != '\\' || p == last) {
            continue;
        }

        switch (*p++) {
        case 'b':
        case 'f':
        case 'n':
        case 'r':
        case 't':
            return 1;

        case 'u':
            /* \u0000-\u001f or \u007f; the parser checked the digits */
            if (last - p >= 4 && p[0] == '0' && p[1] == '0'
                && (p[2] == '0' || p[2] == '1'
                    || (p[2] == '7' && (p[3] | 0x20) == 'f')))
            {
                return 1;
            }

            break;

        default:
            break;
        }
    }

    return 0;
}


static XXH128_hash_t
ngx_http_llm_inspect_close(ngx_http_llm_inspect_t *s,
    ngx_http_llm_inspect_frame_t *f)
{
    XXH128_hash_t   h, n, *sorted;

    n.low64 = f->count;
    n.high64 = 0;

    if (f->type == '[') {
        h = ngx_http_llm_json_mix(f->acc, n, NGX_HTTP_LLM_JSON_SEED_ARRAY_END);

    } else if (f->ctx == NGX_HTTP_LLM_CTX_TOP) {
        ngx_http_llm_inspect_sort(s->top_pairs, s->top_inc);
        h = XXH3_128bits_withSeed(s->top_pairs,
                                  s->top_inc * sizeof(XXH128_hash_t),
                                  NGX_HTTP_LLM_JSON_SEED_OBJECT);

    } else if (f->flags & NGX_HTTP_LLM_F_SORTED) {
        sorted = s->sorted[s->depth - 2];
        ngx_http_llm_inspect_sort(sorted, f->count);
        h = XXH3_128bits_withSeed(sorted, f->count * sizeof(XXH128_hash_t),
                                  NGX_HTTP_LLM_JSON_SEED_OBJECT);

    } else {
        h = ngx_http_llm_json_mix(f->acc, n, NGX_HTTP_LLM_JSON_SEED_BAG);
    }

    switch (f->ctx) {

    case NGX_HTTP_LLM_CTX_TOP:
        s->doc_hash = h;
        s->req->text_bytes = f->text;
        return h;

    case NGX_HTTP_LLM_CTX_MESSAGE:
        if (s->sys_leading && (f->flags & NGX_HTTP_LLM_F_SYSTEM)) {
            s->sys_msgs = ngx_http_llm_json_mix(s->sys_msgs, h,
                                                NGX_HTTP_LLM_JSON_SEED_ARRAY);
            break;
        }

        s->sys_leading = 0;

        if (s->req->msg_prefixes < NGX_HTTP_LLM_INSPECT_MSG_PREFIXES) {
            s->conv = ngx_http_llm_json_mix(s->conv, h,
                                            NGX_HTTP_LLM_JSON_SEED_ARRAY);
            s->conv_bytes += f->text;
            s->conv_at[s->req->msg_prefixes] = s->conv;
            s->req->msg_tokens[s->req->msg_prefixes] = (uint32_t)
                ((s->conv_bytes + NGX_HTTP_LLM_EST_BYTES_PER_TOKEN - 1)
                 / NGX_HTTP_LLM_EST_BYTES_PER_TOKEN);
            s->req->msg_prefixes++;
        }

        break;

    case NGX_HTTP_LLM_CTX_TEXT:
        if (f->flags & NGX_HTTP_LLM_F_IMAGE) {
            s->req->images++;
        }

        break;

    default:
        break;
    }

    if (s->depth > 1 && !(f->flags & NGX_HTTP_LLM_F_PAYLOAD)) {
        (f - 1)->text += f->text;
    }

    return h;
}


static void
ngx_http_llm_inspect_sort(XXH128_hash_t *a, unsigned n)
{
    unsigned       i, j;
    XXH128_hash_t  t;

    for (i = 1; i < n; i++) {
        t = a[i];

        for (j = i;
             j > 0 && (a[j - 1].high64 > t.high64
                       || (a[j - 1].high64 == t.high64
                           && a[j - 1].low64 > t.low64));
             j--)
        {
            a[j] = a[j - 1];
        }

        a[j] = t;
    }
}


static int
ngx_http_llm_inspect_finish(ngx_http_llm_inspect_t *s)
{
    unsigned                 i, need;
    uint64_t                 w[8], tokens;
    ngx_http_llm_request_t  *req;

    req = s->req;

    if (s->rc != NGX_HTTP_LLM_INSPECT_OK) {
        return ngx_http_llm_inspect_fail(s, s->rc, s->error, s->error_param,
                                         s->error_pos);
    }

    switch (s->api) {

    case NGX_HTTP_LLM_API_CHAT:
        need = NGX_HTTP_LLM_HAVE_MODEL|NGX_HTTP_LLM_HAVE_MESSAGES;
        break;

    case NGX_HTTP_LLM_API_MESSAGES:
        need = NGX_HTTP_LLM_HAVE_MODEL|NGX_HTTP_LLM_HAVE_MESSAGES
               |NGX_HTTP_LLM_HAVE_MAX_TOKENS;
        break;

    case NGX_HTTP_LLM_API_COMPLETIONS:
        need = NGX_HTTP_LLM_HAVE_MODEL|NGX_HTTP_LLM_HAVE_PROMPT;
        break;

    case NGX_HTTP_LLM_API_EMBEDDINGS:
        need = NGX_HTTP_LLM_HAVE_MODEL|NGX_HTTP_LLM_HAVE_INPUT;
        break;

    default:
        need = 0;
        break;
    }

    need &= ~s->have;

    if (need & NGX_HTTP_LLM_HAVE_MODEL) {
        return ngx_http_llm_inspect_fail(s, NGX_HTTP_LLM_INSPECT_EFIELD,
                                         "'model' is required", "model",
                                         s->body);
    }

    if (need & NGX_HTTP_LLM_HAVE_MESSAGES) {
        return ngx_http_llm_inspect_fail(s, NGX_HTTP_LLM_INSPECT_EFIELD,
                                         "'messages' is required",
                                         "messages", s->body);
    }

    if (need & NGX_HTTP_LLM_HAVE_MAX_TOKENS) {
        return ngx_http_llm_inspect_fail(s, NGX_HTTP_LLM_INSPECT_EFIELD,
                                         "'max_tokens' is required",
                                         "max_tokens", s->body);
    }

    if (need & NGX_HTTP_LLM_HAVE_PROMPT) {
        return ngx_http_llm_inspect_fail(s, NGX_HTTP_LLM_INSPECT_EFIELD,
                                         "'prompt' is required", "prompt",
                                         s->body);
    }

    if (need & NGX_HTTP_LLM_HAVE_INPUT) {
        return ngx_http_llm_inspect_fail(s, NGX_HTTP_LLM_INSPECT_EFIELD,
                                         "'input' is required", "input",
                                         s->body);
    }

    req->max_tokens = (s->max_completion_tokens >= 0)
                      ? s->max_completion_tokens : s->max_tokens;
    req->max_tokens_top = (s->max_completion_tokens > s->max_tokens)
                          ? s->max_completion_tokens : s->max_tokens;

    tokens = (req->text_bytes + NGX_HTTP_LLM_EST_BYTES_PER_TOKEN - 1)
             / NGX_HTTP_LLM_EST_BYTES_PER_TOKEN;
    tokens += s->token_ids;
    tokens += (uint64_t) req->images * NGX_HTTP_LLM_EST_PER_IMAGE;

    if (req->messages) {
        tokens += (uint64_t) req->messages * NGX_HTTP_LLM_EST_PER_MESSAGE
                  + NGX_HTTP_LLM_EST_REPLY;
    }

    req->prompt_tokens = tokens;

    req->hash[0] = s->doc_hash.low64;
    req->hash[1] = s->doc_hash.high64;

    w[0] = s->model_hash.low64;
    w[1] = s->model_hash.high64;
    w[2] = s->system_hash.low64;
    w[3] = s->system_hash.high64;
    w[4] = s->sys_msgs.low64;
    w[5] = s->sys_msgs.high64;
    w[6] = s->tools_hash.low64;
    w[7] = s->tools_hash.high64;

    req->prefix_hash = XXH3_64bits_withSeed(w, sizeof(w),
                                            NGX_HTTP_LLM_SEED_PREFIX);

    for (i = 0; i < req->msg_prefixes; i++) {
        w[0] = s->conv_at[i].low64;
        w[1] = s->conv_at[i].high64;
        req->msg_hash[i] = XXH3_64bits_withSeed(w, 2 * sizeof(uint64_t),
                                                req->prefix_hash);
    }

    return NGX_HTTP_LLM_INSPECT_OK;
}


ssize_t
ngx_http_llm_unescape(const u_char *raw, size_t len, u_char *out, size_t cap)
{
    size_t         n;
    const u_char  *p;

    p = raw;
    n = ngx_http_llm_json_unescape(&p, raw + len, out, cap);

    return (p == raw + len) ? (ssize_t) n : -1;
}
