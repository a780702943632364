
/*
 * Copyright (C) ngx_llm authors
 *
 * Internal JSON scanner shared by the request inspector and the response
 * analysis: pure C, no nginx dependency, no heap.
 *
 * Two layers:
 *
 *   - primitives used by the inspector's own one-pass parser: strict
 *     string scanning (SSE2, UTF-8 validation), unescaping, number
 *     scanning and canonicalization, and the canonical value hashes;
 *
 *   - a small pull cursor (enter / next / get / skip) for the short JSON
 *     documents of the response side.
 */


#ifndef _NGX_HTTP_LLM_JSON_H_INCLUDED_
#define _NGX_HTTP_LLM_JSON_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#ifndef XXH_INLINE_ALL
#define XXH_INLINE_ALL
#endif
#include <xxhash.h>


/* hard limit of nesting for every parser here (stack arrays) */
#define NGX_HTTP_LLM_JSON_MAX_DEPTH    128

/* value types, as the first character of the value */
#define NGX_HTTP_LLM_JSON_NONE         0
#define NGX_HTTP_LLM_JSON_OBJECT       '{'
#define NGX_HTTP_LLM_JSON_ARRAY        '['
#define NGX_HTTP_LLM_JSON_STRING       '"'
#define NGX_HTTP_LLM_JSON_NUMBER       '0'
#define NGX_HTTP_LLM_JSON_TRUE         't'
#define NGX_HTTP_LLM_JSON_FALSE        'f'
#define NGX_HTTP_LLM_JSON_NULL         'n'

/* seeds separating the kinds of canonical hashes */
#define NGX_HTTP_LLM_JSON_SEED_STRING  0x6c6c6d2d73747231ULL
#define NGX_HTTP_LLM_JSON_SEED_NUMBER  0x6c6c6d2d6e756d31ULL
#define NGX_HTTP_LLM_JSON_SEED_LITERAL 0x6c6c6d2d6c697431ULL
#define NGX_HTTP_LLM_JSON_SEED_ARRAY   0x6c6c6d2d61727231ULL
#define NGX_HTTP_LLM_JSON_SEED_ARRAY_END  0x6c6c6d2d61726531ULL
#define NGX_HTTP_LLM_JSON_SEED_PAIR    0x6c6c6d2d70616931ULL
#define NGX_HTTP_LLM_JSON_SEED_OBJECT  0x6c6c6d2d6f626a31ULL
#define NGX_HTTP_LLM_JSON_SEED_BAG     0x6c6c6d2d62616731ULL


typedef struct {
    const char                 *msg;        /* static, human readable */
    const u_char               *pos;        /* where it was detected */
} ngx_http_llm_json_error_t;


/* a string token: raw bytes between the quotes */
typedef struct {
    const u_char               *data;
    size_t                      len;
    unsigned                    escaped;    /* contains a '\' */
} ngx_http_llm_json_str_t;


/*
 * A number token split in its parts. The canonical form of a number is
 * (sign, significant digits without leading or trailing zeros, decimal
 * exponent of the last digit): 1, 1.0, 1e0, 10e-1 and 0.1e1 share it, so
 * do -0 and 0. It is computed from the digits, never through a double.
 */
typedef struct {
    const u_char               *start;      /* token */
    const u_char               *end;
    const u_char               *int_digits;
    size_t                      int_len;
    const u_char               *frac_digits;
    size_t                      frac_len;
    int64_t                     exp;        /* explicit exponent */
    unsigned                    negative:1;
    unsigned                    exp_huge:1; /* |exponent| >= 10^15 */
} ngx_http_llm_json_num_t;


/* a string's canonical hash, from ngx_http_llm_json_hash_string() */
typedef struct {
    XXH128_hash_t               hash;
    size_t                      ulen;       /* unescaped length */
    unsigned                    escaped;
} ngx_http_llm_json_shash_t;


/* the pull cursor */
typedef struct {
    const u_char               *start;
    const u_char               *p;
    const u_char               *end;
    unsigned                    depth;
    unsigned                    failed:1;
} ngx_http_llm_json_cur_t;


/*
 * Scans a string body; p points after the opening quote. Returns the
 * position of the closing quote, or NULL with err set (unterminated
 * string, control character, bad escape, invalid UTF-8: overlong forms,
 * surrogates encoded in UTF-8, code points above U+10FFFF). Escaped
 * surrogates (\ud800) are accepted, paired or not.
 */
const u_char *ngx_http_llm_json_scan_string(const u_char *p, const u_char *end,
    unsigned *escaped, ngx_http_llm_json_error_t *err);

/*
 * Scans and validates a string body like ngx_http_llm_json_scan_string() and
 * computes in the same pass its canonical hash (that of
 * ngx_http_llm_json_str_hash()) and unescaped length.
 */
const u_char *ngx_http_llm_json_hash_string(const u_char *p,
    const u_char *end, ngx_http_llm_json_shash_t *r,
    ngx_http_llm_json_error_t *err);

/*
 * Decodes a string body that ngx_http_llm_json_scan_string() accepted, from *pp
 * up to end, into out (cap >= 4); returns the bytes written and advances
 * *pp. Call again while *pp < end. \u escapes become UTF-8, a surrogate
 * pair one 4-byte sequence, an unpaired surrogate its 3-byte form.
 */
size_t ngx_http_llm_json_unescape(const u_char **pp, const u_char *end,
    u_char *out, size_t cap);

/* the unescaped length of a string body */
size_t ngx_http_llm_json_unescaped_len(const u_char *p, const u_char *end);

/*
 * Compares a string token with a literal by value; returns 1 if equal.
 */
int ngx_http_llm_json_str_eq(const ngx_http_llm_json_str_t *s,
    const char *lit, size_t len);

/*
 * The canonical hash of a string value (its unescaped bytes). ulen, if
 * not NULL, receives the unescaped length.
 */
XXH128_hash_t ngx_http_llm_json_str_hash(const ngx_http_llm_json_str_t *s,
    size_t *ulen);

/* scans a number token at p; NULL with err set on a grammar error */
const u_char *ngx_http_llm_json_number(const u_char *p, const u_char *end,
    ngx_http_llm_json_num_t *num, ngx_http_llm_json_error_t *err);

/* 1 and *v set if the number is an integer that fits int64 */
int ngx_http_llm_json_num_int(const ngx_http_llm_json_num_t *num,
    int64_t *v);

/* a close double value (not correctly rounded in every case) */
double ngx_http_llm_json_num_double(const ngx_http_llm_json_num_t *num);

/* the canonical hash of a number, see ngx_http_llm_json_num_t */
XXH128_hash_t ngx_http_llm_json_num_hash(const ngx_http_llm_json_num_t *num);

/* the hashes of null, true and false */
XXH128_hash_t ngx_http_llm_json_literal_hash(int type);

/*
 * Validates one complete JSON text (any value, surrounding whitespace
 * allowed) with nesting up to max_depth; returns 0 or -1 with err set.
 */
int ngx_http_llm_json_validate(const u_char *p, size_t len,
    unsigned max_depth, ngx_http_llm_json_error_t *err);


/*
 * The cursor. Every function returns -1 (and sets cur->failed, after
 * which every call fails) on malformed input.
 */
void ngx_http_llm_json_cur_init(ngx_http_llm_json_cur_t *cur,
    const u_char *p, size_t len);

/* the type of the next value, without consuming it; NONE on error */
int ngx_http_llm_json_peek(ngx_http_llm_json_cur_t *cur);

/*
 * consumes '{' or '[': 1 when entered, 0 when the next value is of another
 * type (nothing consumed), -1 on a syntax error or too deep a nesting
 */
int ngx_http_llm_json_enter(ngx_http_llm_json_cur_t *cur, int type);

/*
 * Moves to the next member of the entered object (key set) or element of
 * the entered array (key NULL); *first must be 1 before the first call.
 * Returns 1 with the cursor before the value, 0 after the closing
 * bracket, -1 on error.
 */
int ngx_http_llm_json_next(ngx_http_llm_json_cur_t *cur, unsigned *first,
    ngx_http_llm_json_str_t *key);

/* skips (and validates) one value */
int ngx_http_llm_json_skip(ngx_http_llm_json_cur_t *cur);

/*
 * Typed getters: 1 with the value, 0 if the value has another type (it is
 * skipped), -1 on error.
 */
int ngx_http_llm_json_get_string(ngx_http_llm_json_cur_t *cur,
    ngx_http_llm_json_str_t *s);
int ngx_http_llm_json_get_int(ngx_http_llm_json_cur_t *cur, int64_t *v);

/* 0 if only whitespace is left, -1 otherwise */
int ngx_http_llm_json_end(ngx_http_llm_json_cur_t *cur);


/* helpers inlined in the parsers */

#define ngx_http_llm_json_is_ws(c)                                            \
    ((c) == ' ' || (c) == '\n' || (c) == '\r' || (c) == '\t')


static inline const u_char *
ngx_http_llm_json_skip_ws(const u_char *p, const u_char *end)
{
    while (p < end && ngx_http_llm_json_is_ws(*p)) {
        p++;
    }

    return p;
}


#if defined(__SSE2__)

/*
 * The bytes of 16 that need attention in a string: '"', '\', and, with
 * one signed compare, both the control characters and the bytes >= 0x80
 * (negative as signed chars).
 */

static inline uint64_t
ngx_http_llm_json_mask(__m128i v)
{
    return (uint64_t) _mm_movemask_epi8(
               _mm_or_si128(
                   _mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8('"')),
                                _mm_cmpeq_epi8(v, _mm_set1_epi8('\\'))),
                   _mm_cmplt_epi8(v, _mm_set1_epi8(0x20))));
}

#endif


/*
 * ngx_http_llm_json_scan_string() with the common case inlined: a short
 * string without escapes or non-ASCII bytes ends in the first 32 bytes.
 */

static inline const u_char *
ngx_http_llm_json_string_end(const u_char *p, const u_char *end,
    unsigned *escaped, ngx_http_llm_json_error_t *err)
{
#if defined(__SSE2__)
    unsigned  i;
    uint64_t  mask;

    for (i = 0; i < 2 && end - p >= 16; i++) {
        mask = ngx_http_llm_json_mask(_mm_loadu_si128((const __m128i *) p));

        if (mask) {
            if (p[__builtin_ctzll(mask)] == '"') {
                return p + __builtin_ctzll(mask);
            }

            break;
        }

        p += 16;
    }
#endif

    return ngx_http_llm_json_scan_string(p, end, escaped, err);
}


static inline XXH128_hash_t
ngx_http_llm_json_mix(XXH128_hash_t a, XXH128_hash_t b, uint64_t seed)
{
    uint64_t  w[4];

    w[0] = a.low64;
    w[1] = a.high64;
    w[2] = b.low64;
    w[3] = b.high64;

    return XXH3_128bits_withSeed(w, sizeof(w), seed);
}


static inline XXH128_hash_t
ngx_http_llm_json_add(XXH128_hash_t a, XXH128_hash_t b)
{
    XXH128_hash_t  r;

    r.low64 = a.low64 + b.low64;
    r.high64 = a.high64 + b.high64 + (r.low64 < a.low64);

    return r;
}


#endif /* _NGX_HTTP_LLM_JSON_H_INCLUDED_ */
