
/*
 * Copyright (C) ngx_llm authors
 */


#include <string.h>
#include <math.h>

#include "ngx_http_llm_json.h"


#define NGX_HTTP_LLM_JSON_BUF       2048


static inline size_t ngx_http_llm_json_utf8(const u_char *p,
    const u_char *end);
static uint32_t ngx_http_llm_json_hex4(const u_char *p);
static size_t ngx_http_llm_json_encode(uint32_t cp, u_char *o);
static void ngx_http_llm_json_canon(const ngx_http_llm_json_num_t *num,
    const u_char **a, size_t *alen, const u_char **b, size_t *blen,
    int64_t *exp);
static const u_char *ngx_http_llm_json_skip_value(const u_char *p,
    const u_char *end, unsigned max_depth, ngx_http_llm_json_error_t *err);
static const u_char *ngx_http_llm_json_literal(const u_char *p,
    const u_char *end, ngx_http_llm_json_error_t *err);


/* 1 for the string bytes that need no attention: 0x20-0x7f but '"', '\' */
static const u_char  ngx_http_llm_json_plain[256] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0
};


/* hex digit values, 16 for non hex */
static const u_char  ngx_http_llm_json_hex[256] = {
    16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16,
    16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16,
    16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16,
     0,  1,  2,  3,  4,  5,  6,  7,  8,  9, 16, 16, 16, 16, 16, 16,
    16, 10, 11, 12, 13, 14, 15, 16, 16, 16, 16, 16, 16, 16, 16, 16,
    16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16,
    16, 10, 11, 12, 13, 14, 15, 16, 16, 16, 16, 16, 16, 16, 16, 16,
    16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16,
    16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16,
    16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16,
    16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16,
    16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16,
    16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16,
    16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16,
    16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16,
    16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16
};


#define ngx_http_llm_json_digit(c)  ((unsigned) ((c) - '0') < 10)


/*
 * Returns the length of the valid UTF-8 sequence that starts at p (a byte
 * >= 0x80), or 0: continuation bytes out of place, overlong forms,
 * UTF-16 surrogates (U+D800-U+DFFF) and code points above U+10FFFF are
 * rejected (RFC 3629).
 */

static inline size_t
ngx_http_llm_json_utf8(const u_char *p, const u_char *end)
{
    u_char  c, c1;

    c = p[0];

    if (c < 0xc2) {
        return 0;
    }

    if (c < 0xe0) {
        if (end - p < 2 || (p[1] & 0xc0) != 0x80) {
            return 0;
        }

        return 2;
    }

    if (c < 0xf0) {
        if (end - p < 3) {
            return 0;
        }

        c1 = p[1];

        if ((c1 & 0xc0) != 0x80 || (p[2] & 0xc0) != 0x80
            || (c == 0xe0 && c1 < 0xa0)
            || (c == 0xed && c1 > 0x9f))
        {
            return 0;
        }

        return 3;
    }

    if (c < 0xf5) {
        if (end - p < 4) {
            return 0;
        }

        c1 = p[1];

        if ((c1 & 0xc0) != 0x80 || (p[2] & 0xc0) != 0x80
            || (p[3] & 0xc0) != 0x80
            || (c == 0xf0 && c1 < 0x90)
            || (c == 0xf4 && c1 > 0x8f))
        {
            return 0;
        }

        return 4;
    }

    return 0;
}


/* the first byte from p on that needs attention, or end */

static inline const u_char *
ngx_http_llm_json_special(const u_char *p, const u_char *end)
{
#if defined(__SSE2__)
    uint64_t  mask;

    /* most strings are short: one block first */

    if (end - p >= 16) {
        mask = ngx_http_llm_json_mask(_mm_loadu_si128((const __m128i *) p));

        if (mask) {
            return p + __builtin_ctzll(mask);
        }

        p += 16;
    }

    while (end - p >= 64) {
        mask = ngx_http_llm_json_mask(_mm_loadu_si128((const __m128i *) p))
               | ngx_http_llm_json_mask(
                     _mm_loadu_si128((const __m128i *) (p + 16))) << 16
               | ngx_http_llm_json_mask(
                     _mm_loadu_si128((const __m128i *) (p + 32))) << 32
               | ngx_http_llm_json_mask(
                     _mm_loadu_si128((const __m128i *) (p + 48))) << 48;

        if (mask) {
            return p + __builtin_ctzll(mask);
        }

        p += 64;
    }

    while (end - p >= 16) {
        mask = ngx_http_llm_json_mask(_mm_loadu_si128((const __m128i *) p));

        if (mask) {
            return p + __builtin_ctzll(mask);
        }

        p += 16;
    }
#endif

    while (p < end && ngx_http_llm_json_plain[*p]) {
        p++;
    }

    return p;
}


/* validates the escape at p (a '\'): returns its length, or 0 */

static inline size_t
ngx_http_llm_json_escape_len(const u_char *p, const u_char *end)
{
    if (end - p < 2) {
        return 0;
    }

    switch (p[1]) {

    case '"':
    case '\\':
    case '/':
    case 'b':
    case 'f':
    case 'n':
    case 'r':
    case 't':
        return 2;

    case 'u':
        if (end - p < 6
            || (ngx_http_llm_json_hex[p[2]] | ngx_http_llm_json_hex[p[3]]
                | ngx_http_llm_json_hex[p[4]] | ngx_http_llm_json_hex[p[5]])
               & 16)
        {
            return 0;
        }

        return 6;

    default:
        return 0;
    }
}


/* the error for a special byte that is not valid at p */

static const u_char *
ngx_http_llm_json_string_error(const u_char *p, const u_char *end,
    ngx_http_llm_json_error_t *err)
{
    if (p == end || (*p == '\\' && end - p < 2)) {
        err->msg = "unterminated string";
        err->pos = end;

    } else if (*p == '\\') {
        err->msg = (p[1] == 'u') ? "invalid \\u escape in string"
                                 : "invalid escape in string";
        err->pos = p;

    } else if (*p < 0x20) {
        err->msg = "unescaped control character in string";
        err->pos = p;

    } else {
        err->msg = "invalid UTF-8 in string";
        err->pos = p;
    }

    return NULL;
}


const u_char *
ngx_http_llm_json_scan_string(const u_char *p, const u_char *end,
    unsigned *escaped, ngx_http_llm_json_error_t *err)
{
    size_t  n;

    for ( ;; ) {
        p = ngx_http_llm_json_special(p, end);

        if (p == end) {
            return ngx_http_llm_json_string_error(p, end, err);
        }

        if (*p == '"') {
            return p;
        }

        if (*p == '\\') {
            n = ngx_http_llm_json_escape_len(p, end);
            *escaped = 1;

        } else if (*p >= 0x80) {
            n = ngx_http_llm_json_utf8(p, end);

        } else {
            n = 0;
        }

        if (n == 0) {
            return ngx_http_llm_json_string_error(p, end, err);
        }

        p += n;
    }
}


/*
 * The inspector's string pass: validates the string body at p (after the
 * opening quote) like ngx_http_llm_json_scan_string() and computes its
 * canonical hash and unescaped length in the same pass. A string without
 * escapes is hashed in place; from the first escape on, the unescaped
 * bytes are copied 64 or 16 at a time into a stack buffer that is hashed
 * (and streamed into an XXH3 state when it fills up).
 */

const u_char *
ngx_http_llm_json_hash_string(const u_char *p, const u_char *end,
    ngx_http_llm_json_shash_t *r, ngx_http_llm_json_error_t *err)
{
    u_char          c, *o, *oend, buf[NGX_HTTP_LLM_JSON_BUF];
    size_t          n;
    uint32_t        cp, lo;
    unsigned        streaming;
    const u_char   *start;
    XXH3_state_t    st;
#if defined(__SSE2__)
    __m128i         v0, v1, v2, v3;
    uint64_t        mask;
#endif

    start = p;

    /* no escape seen: nothing is copied */

    for ( ;; ) {
        p = ngx_http_llm_json_special(p, end);

        if (p == end) {
            return ngx_http_llm_json_string_error(p, end, err);
        }

        if (*p == '"') {
            r->escaped = 0;
            r->ulen = p - start;
            r->hash = XXH3_128bits_withSeed(start, p - start,
                                            NGX_HTTP_LLM_JSON_SEED_STRING);
            return p;
        }

        if (*p == '\\') {
            break;
        }

        n = (*p >= 0x80) ? ngx_http_llm_json_utf8(p, end) : 0;

        if (n == 0) {
            return ngx_http_llm_json_string_error(p, end, err);
        }

        p += n;
    }

    /* from the first escape on, copy the unescaped bytes */

    r->escaped = 1;
    r->ulen = 0;
    oend = buf + sizeof(buf) - 80;
    n = p - start;

    XXH3_INITSTATE(&st);

    if (n <= (size_t) (oend - buf)) {
        memcpy(buf, start, n);
        o = buf + n;
        streaming = 0;

    } else {
        XXH3_128bits_reset_withSeed(&st, NGX_HTTP_LLM_JSON_SEED_STRING);
        XXH3_128bits_update(&st, start, n);
        r->ulen = n;
        o = buf;
        streaming = 1;
    }

    for ( ;; ) {

        /* p at a special byte, at least 16 bytes free in buf */

        c = *p;

        if (c == '"') {
            break;
        }

        if (c == '\\') {
            n = ngx_http_llm_json_escape_len(p, end);

        } else if (c >= 0x80) {
            n = ngx_http_llm_json_utf8(p, end);

        } else {
            n = 0;
        }

        if (n == 0) {
            return ngx_http_llm_json_string_error(p, end, err);
        }

        if (c != '\\') {
            /* a UTF-8 sequence; buf has room for 4 bytes */

            if (end - p >= 4) {
                memcpy(o, p, 4);

            } else {
                memcpy(o, p, n);
            }

            o += n;

        } else if (p[1] != 'u') {
            switch (p[1]) {
            case 'b':
                *o++ = '\b';
                break;
            case 'f':
                *o++ = '\f';
                break;
            case 'n':
                *o++ = '\n';
                break;
            case 'r':
                *o++ = '\r';
                break;
            case 't':
                *o++ = '\t';
                break;
            default:
                *o++ = p[1];
                break;
            }

        } else {
            cp = ngx_http_llm_json_hex4(p + 2);

            /* a pair: two \u escapes back to back */

            if (cp >= 0xd800 && cp <= 0xdbff
                && end - p >= 12 && p[6] == '\\' && p[7] == 'u'
                && ngx_http_llm_json_escape_len(p + 6, end) == 6)
            {
                lo = ngx_http_llm_json_hex4(p + 8);

                if (lo >= 0xdc00 && lo <= 0xdfff) {
                    cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                    n = 12;
                }
            }

            o += ngx_http_llm_json_encode(cp, o);
        }

        p += n;

        /* plain bytes up to the next special one */

        for ( ;; ) {

            if (o > oend) {
                if (!streaming) {
                    XXH3_128bits_reset_withSeed(&st,
                                                NGX_HTTP_LLM_JSON_SEED_STRING);
                    streaming = 1;
                }

                XXH3_128bits_update(&st, buf, o - buf);
                r->ulen += o - buf;
                o = buf;
            }

#if defined(__SSE2__)
            if (end - p >= 64) {
                v0 = _mm_loadu_si128((const __m128i *) p);
                v1 = _mm_loadu_si128((const __m128i *) (p + 16));
                v2 = _mm_loadu_si128((const __m128i *) (p + 32));
                v3 = _mm_loadu_si128((const __m128i *) (p + 48));

                _mm_storeu_si128((__m128i *) o, v0);
                _mm_storeu_si128((__m128i *) (o + 16), v1);
                _mm_storeu_si128((__m128i *) (o + 32), v2);
                _mm_storeu_si128((__m128i *) (o + 48), v3);

                mask = ngx_http_llm_json_mask(v0)
                       | ngx_http_llm_json_mask(v1) << 16
                       | ngx_http_llm_json_mask(v2) << 32
                       | ngx_http_llm_json_mask(v3) << 48;

                if (mask == 0) {
                    p += 64;
                    o += 64;
                    continue;
                }

                n = __builtin_ctzll(mask);
                p += n;
                o += n;
                break;
            }

            if (end - p >= 16) {
                v0 = _mm_loadu_si128((const __m128i *) p);
                _mm_storeu_si128((__m128i *) o, v0);
                mask = ngx_http_llm_json_mask(v0);

                if (mask == 0) {
                    p += 16;
                    o += 16;
                    continue;
                }

                n = __builtin_ctzll(mask);
                p += n;
                o += n;
                break;
            }
#endif

            if (p == end) {
                return ngx_http_llm_json_string_error(p, end, err);
            }

            if (!ngx_http_llm_json_plain[*p]) {
                break;
            }

            *o++ = *p++;
        }
    }

    /* p at the closing quote */

    r->ulen += o - buf;

    if (streaming) {
        XXH3_128bits_update(&st, buf, o - buf);
        r->hash = XXH3_128bits_digest(&st);

    } else {
        r->hash = XXH3_128bits_withSeed(buf, o - buf,
                                        NGX_HTTP_LLM_JSON_SEED_STRING);
    }

    return p;
}


static uint32_t
ngx_http_llm_json_hex4(const u_char *p)
{
    return (uint32_t) ngx_http_llm_json_hex[p[0]] << 12
           | (uint32_t) ngx_http_llm_json_hex[p[1]] << 8
           | (uint32_t) ngx_http_llm_json_hex[p[2]] << 4
           | (uint32_t) ngx_http_llm_json_hex[p[3]];
}


static size_t
ngx_http_llm_json_encode(uint32_t cp, u_char *o)
{
    if (cp < 0x80) {
        o[0] = (u_char) cp;
        return 1;
    }

    if (cp < 0x800) {
        o[0] = (u_char) (0xc0 | (cp >> 6));
        o[1] = (u_char) (0x80 | (cp & 0x3f));
        return 2;
    }

    if (cp < 0x10000) {
        o[0] = (u_char) (0xe0 | (cp >> 12));
        o[1] = (u_char) (0x80 | ((cp >> 6) & 0x3f));
        o[2] = (u_char) (0x80 | (cp & 0x3f));
        return 3;
    }

    o[0] = (u_char) (0xf0 | (cp >> 18));
    o[1] = (u_char) (0x80 | ((cp >> 12) & 0x3f));
    o[2] = (u_char) (0x80 | ((cp >> 6) & 0x3f));
    o[3] = (u_char) (0x80 | (cp & 0x3f));
    return 4;
}


size_t
ngx_http_llm_json_unescape(const u_char **pp, const u_char *end, u_char *out,
    size_t cap)
{
    u_char        *o, *oend;
    size_t         n;
    uint32_t       cp, lo;
    const u_char  *p, *bs;

    p = *pp;
    o = out;
    oend = out + cap;

    while (p < end) {

        if (*p != '\\') {
            n = end - p;

            if (n > (size_t) (oend - o)) {
                n = oend - o;
            }

            bs = memchr(p, '\\', n);

            if (bs != NULL) {
                n = bs - p;
            }

            memcpy(o, p, n);
            o += n;
            p += n;

            if (bs == NULL && o == oend) {
                break;
            }

            continue;
        }

        if (oend - o < 4) {
            break;
        }

        /* the string was validated: an escape is complete */

        switch (p[1]) {

        case 'b':
            *o++ = '\b';
            break;

        case 'f':
            *o++ = '\f';
            break;

        case 'n':
            *o++ = '\n';
            break;

        case 'r':
            *o++ = '\r';
            break;

        case 't':
            *o++ = '\t';
            break;

        case 'u':
            cp = ngx_http_llm_json_hex4(p + 2);
            p += 6;

            if (cp >= 0xd800 && cp <= 0xdbff
                && end - p >= 6 && p[0] == '\\' && p[1] == 'u')
            {
                lo = ngx_http_llm_json_hex4(p + 2);

                if (lo >= 0xdc00 && lo <= 0xdfff) {
                    cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                    p += 6;
                }
            }

            o += ngx_http_llm_json_encode(cp, o);
            continue;

        default:
            *o++ = p[1];
            break;
        }

        p += 2;
    }

    *pp = p;

    return o - out;
}


size_t
ngx_http_llm_json_unescaped_len(const u_char *p, const u_char *end)
{
    u_char  buf[256];
    size_t  n;

    n = 0;

    while (p < end) {
        n += ngx_http_llm_json_unescape(&p, end, buf, sizeof(buf));
    }

    return n;
}


int
ngx_http_llm_json_str_eq(const ngx_http_llm_json_str_t *s, const char *lit,
    size_t len)
{
    u_char         buf[64];
    size_t         n;
    const u_char  *p;

    if (!s->escaped) {
        return s->len == len && memcmp(s->data, lit, len) == 0;
    }

    if (len >= sizeof(buf) || s->len < len) {
        return 0;
    }

    p = s->data;
    n = ngx_http_llm_json_unescape(&p, s->data + s->len, buf, sizeof(buf));

    return p == s->data + s->len && n == len && memcmp(buf, lit, len) == 0;
}


XXH128_hash_t
ngx_http_llm_json_str_hash(const ngx_http_llm_json_str_t *s, size_t *ulen)
{
    u_char          buf[NGX_HTTP_LLM_JSON_BUF];
    size_t          n, total;
    XXH3_state_t    st;
    const u_char   *p, *end;

    if (!s->escaped) {
        if (ulen) {
            *ulen = s->len;
        }

        return XXH3_128bits_withSeed(s->data, s->len,
                                     NGX_HTTP_LLM_JSON_SEED_STRING);
    }

    p = s->data;
    end = p + s->len;

    n = ngx_http_llm_json_unescape(&p, end, buf, sizeof(buf));

    if (p == end) {
        if (ulen) {
            *ulen = n;
        }

        return XXH3_128bits_withSeed(buf, n, NGX_HTTP_LLM_JSON_SEED_STRING);
    }

    /* long escaped string: stream it, the digest equals the one-shot hash */

    total = n;
    XXH3_INITSTATE(&st);
    XXH3_128bits_reset_withSeed(&st, NGX_HTTP_LLM_JSON_SEED_STRING);
    XXH3_128bits_update(&st, buf, n);

    while (p < end) {
        n = ngx_http_llm_json_unescape(&p, end, buf, sizeof(buf));
        XXH3_128bits_update(&st, buf, n);
        total += n;
    }

    if (ulen) {
        *ulen = total;
    }

    return XXH3_128bits_digest(&st);
}


const u_char *
ngx_http_llm_json_number(const u_char *p, const u_char *end,
    ngx_http_llm_json_num_t *num, ngx_http_llm_json_error_t *err)
{
    int       neg;
    int64_t   e;
    unsigned  sig;

    num->start = p;
    num->negative = 0;
    num->exp_huge = 0;
    num->exp = 0;
    num->frac_digits = NULL;
    num->frac_len = 0;

    if (p < end && *p == '-') {
        num->negative = 1;
        p++;
    }

    num->int_digits = p;

    if (p < end && *p == '0') {
        p++;

    } else if (p < end && *p >= '1' && *p <= '9') {
        do {
            p++;
        } while (p < end && ngx_http_llm_json_digit(*p));

    } else {
        goto invalid;
    }

    num->int_len = p - num->int_digits;

    if (p < end && *p == '.') {
        p++;
        num->frac_digits = p;

        while (p < end && ngx_http_llm_json_digit(*p)) {
            p++;
        }

        num->frac_len = p - num->frac_digits;

        if (num->frac_len == 0) {
            goto invalid;
        }
    }

    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        neg = 0;

        if (p < end && (*p == '+' || *p == '-')) {
            neg = (*p == '-');
            p++;
        }

        if (p == end || !ngx_http_llm_json_digit(*p)) {
            goto invalid;
        }

        e = 0;
        sig = 0;

        do {
            if (sig || *p != '0') {
                if (++sig > 15) {
                    num->exp_huge = 1;

                } else {
                    e = e * 10 + (*p - '0');
                }
            }

            p++;

        } while (p < end && ngx_http_llm_json_digit(*p));

        num->exp = neg ? -e : e;
    }

    num->end = p;

    return p;

invalid:

    err->msg = "invalid number";
    err->pos = num->start;

    return NULL;
}


/*
 * The significant digits (a then b, leading and trailing zeros removed)
 * and the exponent of the last one; alen + blen == 0 for zero.
 */

static void
ngx_http_llm_json_canon(const ngx_http_llm_json_num_t *num, const u_char **a,
    size_t *alen, const u_char **b, size_t *blen, int64_t *exp)
{
    int64_t        e;
    size_t         al, bl;
    const u_char  *ap, *bp;

    ap = num->int_digits;
    al = num->int_len;
    bp = num->frac_digits;
    bl = num->frac_len;
    e = num->exp - (int64_t) bl;

    while (al && *ap == '0') {
        ap++;
        al--;
    }

    if (al == 0) {
        while (bl && *bp == '0') {
            bp++;
            bl--;
        }
    }

    while (bl && bp[bl - 1] == '0') {
        bl--;
        e++;
    }

    if (bl == 0) {
        while (al && ap[al - 1] == '0') {
            al--;
            e++;
        }
    }

    *a = ap;
    *alen = al;
    *b = bp;
    *blen = bl;
    *exp = e;
}


int
ngx_http_llm_json_num_int(const ngx_http_llm_json_num_t *num, int64_t *v)
{
    size_t         alen, blen, i;
    int64_t        exp;
    uint64_t       m, limit;
    const u_char  *a, *b;

    if (num->exp_huge) {
        return 0;
    }

    ngx_http_llm_json_canon(num, &a, &alen, &b, &blen, &exp);

    if (alen + blen == 0) {
        *v = 0;
        return 1;
    }

    if (exp < 0 || (int64_t) (alen + blen) + exp > 19) {
        return 0;
    }

    m = 0;

    for (i = 0; i < alen; i++) {
        m = m * 10 + (a[i] - '0');
    }

    for (i = 0; i < blen; i++) {
        m = m * 10 + (b[i] - '0');
    }

    limit = num->negative ? (uint64_t) INT64_MAX + 1 : (uint64_t) INT64_MAX;

    while (exp--) {
        if (m > limit / 10) {
            return 0;
        }

        m *= 10;
    }

    if (m > limit) {
        return 0;
    }

    *v = num->negative ? (int64_t) (0 - m) : (int64_t) m;

    return 1;
}


double
ngx_http_llm_json_num_double(const ngx_http_llm_json_num_t *num)
{
    size_t         alen, blen, i, used;
    double         d;
    int64_t        exp;
    uint64_t       m;
    const u_char  *a, *b;

    static const double  p10[] = {
        1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
        1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22
    };

    ngx_http_llm_json_canon(num, &a, &alen, &b, &blen, &exp);

    if (alen + blen == 0) {
        return num->negative ? -0.0 : 0.0;
    }

    if (num->exp_huge) {
        d = num->exp < 0 ? 0.0 : HUGE_VAL;
        return num->negative ? -d : d;
    }

    m = 0;
    used = 0;

    for (i = 0; i < alen && used < 19; i++, used++) {
        m = m * 10 + (a[i] - '0');
    }

    for (i = 0; i < blen && used < 19; i++, used++) {
        m = m * 10 + (b[i] - '0');
    }

    exp += (int64_t) (alen + blen - used);
    d = (double) m;

    if (exp > 400) {
        d = HUGE_VAL;

    } else if (exp < -400) {
        d = 0.0;

    } else if (exp > 0) {
        while (exp > 22) {
            d *= 1e22;
            exp -= 22;
        }

        d *= p10[exp];

    } else if (exp < 0) {
        while (exp < -22) {
            d /= 1e22;
            exp += 22;
        }

        d /= p10[-exp];
    }

    return num->negative ? -d : d;
}


XXH128_hash_t
ngx_http_llm_json_num_hash(const ngx_http_llm_json_num_t *num)
{
    u_char          buf[72];
    size_t          alen, blen, i;
    int64_t         exp;
    uint64_t        e;
    XXH3_state_t    st;
    const u_char   *a, *b;

    XXH3_INITSTATE(&st);

    if (num->exp_huge) {
        /* an absurd exponent: hashed by spelling */
        buf[0] = 2;
        XXH3_128bits_reset_withSeed(&st, NGX_HTTP_LLM_JSON_SEED_NUMBER);
        XXH3_128bits_update(&st, buf, 1);
        XXH3_128bits_update(&st, num->start, num->end - num->start);
        return XXH3_128bits_digest(&st);
    }

    ngx_http_llm_json_canon(num, &a, &alen, &b, &blen, &exp);

    if (alen + blen == 0) {
        /* zero, whatever its sign and exponent */
        exp = 0;
    }

    buf[0] = (alen + blen) ? (u_char) num->negative : 0;
    e = (uint64_t) exp;

    for (i = 0; i < 8; i++) {
        buf[1 + i] = (u_char) (e >> (8 * i));
    }

    if (alen + blen <= sizeof(buf) - 9) {
        memcpy(buf + 9, a, alen);

        if (blen) {
            memcpy(buf + 9 + alen, b, blen);
        }

        return XXH3_128bits_withSeed(buf, 9 + alen + blen,
                                     NGX_HTTP_LLM_JSON_SEED_NUMBER);
    }

    XXH3_128bits_reset_withSeed(&st, NGX_HTTP_LLM_JSON_SEED_NUMBER);
    XXH3_128bits_update(&st, buf, 9);
    XXH3_128bits_update(&st, a, alen);
    XXH3_128bits_update(&st, b, blen);

    return XXH3_128bits_digest(&st);
}


XXH128_hash_t
ngx_http_llm_json_literal_hash(int type)
{
    u_char  c;

    c = (u_char) type;

    return XXH3_128bits_withSeed(&c, 1, NGX_HTTP_LLM_JSON_SEED_LITERAL);
}


static const u_char *
ngx_http_llm_json_literal(const u_char *p, const u_char *end,
    ngx_http_llm_json_error_t *err)
{
    size_t       n;
    const char  *lit;

    switch (*p) {

    case 't':
        lit = "true";
        n = 4;
        break;

    case 'f':
        lit = "false";
        n = 5;
        break;

    default:
        lit = "null";
        n = 4;
        break;
    }

    if ((size_t) (end - p) < n || memcmp(p, lit, n) != 0) {
        err->msg = "invalid literal";
        err->pos = p;
        return NULL;
    }

    return p + n;
}


static const u_char *
ngx_http_llm_json_skip_value(const u_char *p, const u_char *end,
    unsigned max_depth, ngx_http_llm_json_error_t *err)
{
    unsigned                 depth, escaped;
    uint64_t                 objects[NGX_HTTP_LLM_JSON_MAX_DEPTH / 64];
    ngx_http_llm_json_num_t  num;

    if (max_depth > NGX_HTTP_LLM_JSON_MAX_DEPTH) {
        max_depth = NGX_HTTP_LLM_JSON_MAX_DEPTH;
    }

    depth = 0;

value:

    p = ngx_http_llm_json_skip_ws(p, end);

    if (p == end) {
        err->msg = "unexpected end of JSON";
        err->pos = p;
        return NULL;
    }

    switch (*p) {

    case '{':
    case '[':
        if (depth == max_depth) {
            err->msg = "JSON nesting too deep";
            err->pos = p;
            return NULL;
        }

        if (*p == '{') {
            objects[depth / 64] |= (uint64_t) 1 << (depth % 64);

        } else {
            objects[depth / 64] &= ~((uint64_t) 1 << (depth % 64));
        }

        depth++;
        p = ngx_http_llm_json_skip_ws(p + 1, end);

        if (p < end && (*p == '}' || *p == ']')) {
            goto after;
        }

        if (objects[(depth - 1) / 64] & ((uint64_t) 1 << ((depth - 1) % 64))) {
            goto key;
        }

        goto value;

    case '"':
        escaped = 0;
        p = ngx_http_llm_json_string_end(p + 1, end, &escaped, err);

        if (p == NULL) {
            return NULL;
        }

        p++;
        goto next;

    case 't':
    case 'f':
    case 'n':
        p = ngx_http_llm_json_literal(p, end, err);

        if (p == NULL) {
            return NULL;
        }

        goto next;

    default:
        if (*p != '-' && !ngx_http_llm_json_digit(*p)) {
            err->msg = "unexpected character";
            err->pos = p;
            return NULL;
        }

        p = ngx_http_llm_json_number(p, end, &num, err);

        if (p == NULL) {
            return NULL;
        }

        goto next;
    }

key:

    p = ngx_http_llm_json_skip_ws(p, end);

    if (p == end || *p != '"') {
        err->msg = "expected a string key";
        err->pos = p;
        return NULL;
    }

    escaped = 0;
    p = ngx_http_llm_json_string_end(p + 1, end, &escaped, err);

    if (p == NULL) {
        return NULL;
    }

    p = ngx_http_llm_json_skip_ws(p + 1, end);

    if (p == end || *p != ':') {
        err->msg = "expected ':' after a key";
        err->pos = p;
        return NULL;
    }

    p++;
    goto value;

next:

    if (depth == 0) {
        return p;
    }

    p = ngx_http_llm_json_skip_ws(p, end);

    if (p == end) {
        err->msg = "unexpected end of JSON";
        err->pos = p;
        return NULL;
    }

    if (*p == ',') {
        p++;

        if (objects[(depth - 1) / 64] & ((uint64_t) 1 << ((depth - 1) % 64))) {
            goto key;
        }

        goto value;
    }

after:

    /* p is at '}' or ']' (or garbage) closing the container at depth */

    if (*p != ((objects[(depth - 1) / 64]
                & ((uint64_t) 1 << ((depth - 1) % 64))) ? '}' : ']'))
    {
        err->msg = "expected ',' or a closing bracket";
        err->pos = p;
        return NULL;
    }

    p++;
    depth--;

    goto next;
}


int
ngx_http_llm_json_validate(const u_char *p, size_t len, unsigned max_depth,
    ngx_http_llm_json_error_t *err)
{
    const u_char  *end;

    end = p + len;

    p = ngx_http_llm_json_skip_value(p, end, max_depth, err);

    if (p == NULL) {
        return -1;
    }

    p = ngx_http_llm_json_skip_ws(p, end);

    if (p != end) {
        err->msg = "unexpected data after the JSON value";
        err->pos = p;
        return -1;
    }

    return 0;
}


void
ngx_http_llm_json_cur_init(ngx_http_llm_json_cur_t *cur, const u_char *p,
    size_t len)
{
    cur->start = p;
    cur->p = p;
    cur->end = p + len;
    cur->depth = 0;
    cur->failed = 0;
}


static int
ngx_http_llm_json_fail(ngx_http_llm_json_cur_t *cur)
{
    cur->failed = 1;

    return -1;
}


int
ngx_http_llm_json_peek(ngx_http_llm_json_cur_t *cur)
{
    if (cur->failed) {
        return NGX_HTTP_LLM_JSON_NONE;
    }

    cur->p = ngx_http_llm_json_skip_ws(cur->p, cur->end);

    if (cur->p == cur->end) {
        cur->failed = 1;
        return NGX_HTTP_LLM_JSON_NONE;
    }

    switch (*cur->p) {

    case '{':
    case '[':
    case '"':
    case 't':
    case 'f':
    case 'n':
        return *cur->p;

    case '-':
        return NGX_HTTP_LLM_JSON_NUMBER;

    default:
        if (ngx_http_llm_json_digit(*cur->p)) {
            return NGX_HTTP_LLM_JSON_NUMBER;
        }

        cur->failed = 1;
        return NGX_HTTP_LLM_JSON_NONE;
    }
}


int
ngx_http_llm_json_enter(ngx_http_llm_json_cur_t *cur, int type)
{
    int  t;

    t = ngx_http_llm_json_peek(cur);

    if (t == NGX_HTTP_LLM_JSON_NONE) {
        return -1;
    }

    if (t != type) {
        return 0;
    }

    if (cur->depth == NGX_HTTP_LLM_JSON_MAX_DEPTH) {
        return ngx_http_llm_json_fail(cur);
    }

    cur->p++;
    cur->depth++;

    return 1;
}


int
ngx_http_llm_json_next(ngx_http_llm_json_cur_t *cur, unsigned *first,
    ngx_http_llm_json_str_t *key)
{
    u_char                     close;
    const u_char              *p, *q;
    ngx_http_llm_json_error_t  err;

    if (cur->failed || cur->depth == 0) {
        return ngx_http_llm_json_fail(cur);
    }

    close = key ? '}' : ']';
    p = ngx_http_llm_json_skip_ws(cur->p, cur->end);

    if (p == cur->end) {
        return ngx_http_llm_json_fail(cur);
    }

    if (*p == close) {
        cur->p = p + 1;
        cur->depth--;
        return 0;
    }

    if (*first) {
        *first = 0;

    } else if (*p == ',') {
        p++;

    } else {
        return ngx_http_llm_json_fail(cur);
    }

    if (key == NULL) {
        cur->p = p;
        return 1;
    }

    p = ngx_http_llm_json_skip_ws(p, cur->end);

    if (p == cur->end || *p != '"') {
        return ngx_http_llm_json_fail(cur);
    }

    key->escaped = 0;
    q = ngx_http_llm_json_string_end(p + 1, cur->end, &key->escaped, &err);

    if (q == NULL) {
        return ngx_http_llm_json_fail(cur);
    }

    key->data = p + 1;
    key->len = q - (p + 1);

    p = ngx_http_llm_json_skip_ws(q + 1, cur->end);

    if (p == cur->end || *p != ':') {
        return ngx_http_llm_json_fail(cur);
    }

    cur->p = p + 1;

    return 1;
}


int
ngx_http_llm_json_skip(ngx_http_llm_json_cur_t *cur)
{
    unsigned                    escaped;
    const u_char               *p;
    ngx_http_llm_json_error_t   err;

    if (cur->failed) {
        return -1;
    }

    p = ngx_http_llm_json_skip_ws(cur->p, cur->end);

    if (p < cur->end && *p == '"') {
        /* the most common value skipped */

        escaped = 0;
        p = ngx_http_llm_json_string_end(p + 1, cur->end, &escaped, &err);

        if (p == NULL) {
            return ngx_http_llm_json_fail(cur);
        }

        cur->p = p + 1;

        return 0;
    }

    p = ngx_http_llm_json_skip_value(p, cur->end,
                                     NGX_HTTP_LLM_JSON_MAX_DEPTH - cur->depth,
                                     &err);
    if (p == NULL) {
        return ngx_http_llm_json_fail(cur);
    }

    cur->p = p;

    return 0;
}


int
ngx_http_llm_json_get_string(ngx_http_llm_json_cur_t *cur,
    ngx_http_llm_json_str_t *s)
{
    int                         t;
    const u_char               *q;
    ngx_http_llm_json_error_t   err;

    t = ngx_http_llm_json_peek(cur);

    if (t == NGX_HTTP_LLM_JSON_NONE) {
        return -1;
    }

    if (t != NGX_HTTP_LLM_JSON_STRING) {
        return ngx_http_llm_json_skip(cur);
    }

    s->escaped = 0;
    q = ngx_http_llm_json_string_end(cur->p + 1, cur->end, &s->escaped, &err);

    if (q == NULL) {
        return ngx_http_llm_json_fail(cur);
    }

    s->data = cur->p + 1;
    s->len = q - s->data;
    cur->p = q + 1;

    return 1;
}


int
ngx_http_llm_json_get_int(ngx_http_llm_json_cur_t *cur, int64_t *v)
{
    int                         t;
    const u_char               *q;
    ngx_http_llm_json_num_t     num;
    ngx_http_llm_json_error_t   err;

    t = ngx_http_llm_json_peek(cur);

    if (t == NGX_HTTP_LLM_JSON_NONE) {
        return -1;
    }

    if (t != NGX_HTTP_LLM_JSON_NUMBER) {
        return ngx_http_llm_json_skip(cur);
    }

    q = ngx_http_llm_json_number(cur->p, cur->end, &num, &err);

    if (q == NULL) {
        return ngx_http_llm_json_fail(cur);
    }

    cur->p = q;

    return ngx_http_llm_json_num_int(&num, v);
}


int
ngx_http_llm_json_end(ngx_http_llm_json_cur_t *cur)
{
    if (cur->failed) {
        return -1;
    }

    cur->p = ngx_http_llm_json_skip_ws(cur->p, cur->end);

    return cur->p == cur->end ? 0 : -1;
}
