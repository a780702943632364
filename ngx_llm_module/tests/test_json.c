
/*
 * Copyright (C) ngx_llm authors
 *
 * The JSON scanner's primitives: numbers, unescaping, string comparison,
 * the validator and the pull cursor.
 */


#include <math.h>
#include <stdio.h>

#include "llm_test.h"
#include "ngx_http_llm_json.h"


static const u_char *
num(const char *s, ngx_http_llm_json_num_t *n)
{
    const u_char               *p;
    ngx_http_llm_json_error_t   err;

    p = ngx_http_llm_json_number((const u_char *) s,
                                 (const u_char *) s + strlen(s), n, &err);
    assert_non_null(p);
    assert_ptr_equal(p, (const u_char *) s + strlen(s));

    return p;
}


static void
test_number_int(void **state)
{
    int64_t                  v;
    unsigned                 i;
    ngx_http_llm_json_num_t  n;

    static const struct {
        const char  *s;
        int          ok;
        int64_t      v;
    } cases[] = {
        { "0", 1, 0 },
        { "-0", 1, 0 },
        { "0.0e5", 1, 0 },
        { "7", 1, 7 },
        { "-7", 1, -7 },
        { "1e3", 1, 1000 },
        { "1.5e1", 1, 15 },
        { "100.000", 1, 100 },
        { "12.34e2", 1, 1234 },
        { "1000e-3", 1, 1 },
        { "9223372036854775807", 1, INT64_MAX },
        { "-9223372036854775808", 1, INT64_MIN },
        { "9223372036854775808", 0, 0 },
        { "-9223372036854775809", 0, 0 },
        { "92233720368547758070e-1", 1, INT64_MAX },
        { "1e18", 1, 1000000000000000000LL },
        { "1e19", 0, 0 },
        { "1.5", 0, 0 },
        { "1e-1", 0, 0 },
        { "123456789012345678901234567890", 0, 0 },
        { "1e999999999999999999", 0, 0 },
    };

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        num(cases[i].s, &n);
        v = 42;

        if (ngx_http_llm_json_num_int(&n, &v) != cases[i].ok) {
            print_error("%s: wrong integer verdict\n", cases[i].s);
            fail();
        }

        if (cases[i].ok && v != cases[i].v) {
            print_error("%s: %lld\n", cases[i].s, (long long) v);
            fail();
        }
    }
}


static void
test_number_double(void **state)
{
    unsigned                 i;
    ngx_http_llm_json_num_t  n;

    static const struct {
        const char  *s;
        double       v;
    } cases[] = {
        { "0", 0.0 },
        { "0.5", 0.5 },
        { "-0.25", -0.25 },
        { "1e2", 100.0 },
        { "0.7", 0.7 },
        { "1.0", 1.0 },
        { "2", 2.0 },
        { "1e-5", 1e-5 },
        { "123456789012345678901234567890", 1.2345678901234568e29 },
    };

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        num(cases[i].s, &n);

        if (fabs(ngx_http_llm_json_num_double(&n) - cases[i].v)
            > fabs(cases[i].v) * 1e-15)
        {
            print_error("%s: %.17g\n", cases[i].s,
                        ngx_http_llm_json_num_double(&n));
            fail();
        }
    }

    num("1e400", &n);
    assert_true(isinf(ngx_http_llm_json_num_double(&n)));
    num("1e-400", &n);
    assert_true(ngx_http_llm_json_num_double(&n) == 0.0);
    num("-1e99999999999999999999", &n);
    assert_true(isinf(ngx_http_llm_json_num_double(&n)));
}


static void
test_number_hash(void **state)
{
    unsigned                 i;
    XXH128_hash_t            a, b;
    ngx_http_llm_json_num_t  n;

    static const char  *same[][2] = {
        { "1", "1.0" },
        { "1", "1e0" },
        { "1", "10e-1" },
        { "1", "0.1e1" },
        { "0", "-0" },
        { "0", "0e-7" },
        { "-0.0", "0.000" },
        { "250", "2.5e2" },
        { "0.025", "25e-3" },
        { "-1.5", "-15E-1" },
        { "1e1000000", "10e999999" },
    };

    static const char  *other[][2] = {
        { "1", "-1" },
        { "1", "2" },
        { "1", "10" },
        { "1", "0.1" },
        { "12", "21" },
        { "1.01", "1.1" },
        { "100000000000000000001", "100000000000000000000" },
        { "1e999999999999999999", "1e999999999999999998" },
    };

    for (i = 0; i < sizeof(same) / sizeof(same[0]); i++) {
        num(same[i][0], &n);
        a = ngx_http_llm_json_num_hash(&n);
        num(same[i][1], &n);
        b = ngx_http_llm_json_num_hash(&n);

        if (!XXH128_isEqual(a, b)) {
            print_error("%s != %s\n", same[i][0], same[i][1]);
            fail();
        }
    }

    for (i = 0; i < sizeof(other) / sizeof(other[0]); i++) {
        num(other[i][0], &n);
        a = ngx_http_llm_json_num_hash(&n);
        num(other[i][1], &n);
        b = ngx_http_llm_json_num_hash(&n);

        if (XXH128_isEqual(a, b)) {
            print_error("%s == %s\n", other[i][0], other[i][1]);
            fail();
        }
    }
}


static void
test_unescape(void **state)
{
    u_char          out[64];
    size_t          n, cap, total;
    const char     *s;
    const u_char   *p, *end;

    static const char  expect[] =
        "a\"\\/\b\f\n\r\t\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xed\xa0\x80z";

    s = "a\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\\u20AC\\ud83d\\ude00\\ud800z";

    /* whole, then in chunks of every size from 4 */

    for (cap = 64; cap >= 4; cap = (cap == 64) ? 4 : cap + 1) {
        u_char  all[64];

        p = (const u_char *) s;
        end = p + strlen(s);
        total = 0;

        while (p < end) {
            n = ngx_http_llm_json_unescape(&p, end, out, cap);
            assert_true(n > 0 && n <= cap);
            memcpy(all + total, out, n);
            total += n;
        }

        assert_int_equal(total, sizeof(expect) - 1);
        assert_memory_equal(all, expect, total);

        if (cap == 63) {
            break;
        }
    }

    assert_int_equal(ngx_http_llm_json_unescaped_len(
                         (const u_char *) s, (const u_char *) s + strlen(s)),
                     sizeof(expect) - 1);
}


static void
test_str(void **state)
{
    XXH128_hash_t                 a, b;
    ngx_http_llm_json_str_t       s;
    ngx_http_llm_json_shash_t     sh;
    ngx_http_llm_json_error_t     err;
    const u_char                 *q;

    s.data = (const u_char *) "\\u0073ystem";
    s.len = strlen((const char *) s.data);
    s.escaped = 1;

    assert_true(ngx_http_llm_json_str_eq(&s, "system", 6));
    assert_false(ngx_http_llm_json_str_eq(&s, "system2", 7));
    assert_false(ngx_http_llm_json_str_eq(&s, "syste", 5));

    s.data = (const u_char *) "system";
    s.len = 6;
    s.escaped = 0;

    assert_true(ngx_http_llm_json_str_eq(&s, "system", 6));
    assert_false(ngx_http_llm_json_str_eq(&s, "System", 6));

    /* the one-pass hash is the hash of the unescaped bytes */

    a = ngx_http_llm_json_str_hash(&s, NULL);

    q = ngx_http_llm_json_hash_string((const u_char *) "\\u0073ystem\"",
                                      (const u_char *) "\\u0073ystem\"" + 12,
                                      &sh, &err);
    assert_non_null(q);
    assert_int_equal(*q, '"');
    assert_true(XXH128_isEqual(a, sh.hash));
    assert_int_equal(sh.ulen, 6);
    assert_int_equal(sh.escaped, 1);

    s.data = (const u_char *) "\\u0073ystem";
    s.len = 11;
    s.escaped = 1;
    b = ngx_http_llm_json_str_hash(&s, NULL);
    assert_true(XXH128_isEqual(a, b));
}


/* the one-pass string hash agrees with scan + unescape + hash */

static void
test_string_hash_agrees(void **state)
{
    u_char                      *b;
    size_t                       len, i, ulen;
    unsigned                     k, escaped;
    uint32_t                     seed;
    const u_char                *q1, *q2;
    XXH128_hash_t                h;
    ngx_http_llm_json_str_t      s;
    ngx_http_llm_json_shash_t    sh;
    ngx_http_llm_json_error_t    err;

    static const char  *pieces[] = {
        "a", "bc", "\\n", "\\\\", "\\\"", "\\u00e9", "\\ud83d\\ude00",
        "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80", "\\/", "\\ud800",
        "0123456789abcdef0123456789abcdef", "\x7f"
    };

    b = malloc(40000);
    assert_non_null(b);
    seed = 1;

    for (k = 0; k < 300; k++) {
        len = 0;

        for (i = 0; i < (k * 37) % 3000; i++) {
            seed = seed * 1664525u + 1013904223u;
            strcpy((char *) b + len,
                   pieces[(seed >> 10) % (sizeof(pieces) / sizeof(char *))]);
            len += strlen((char *) b + len);
        }

        b[len] = '"';

        escaped = 0;
        q1 = ngx_http_llm_json_scan_string(b, b + len + 1, &escaped, &err);
        q2 = ngx_http_llm_json_hash_string(b, b + len + 1, &sh, &err);

        assert_non_null(q1);
        assert_ptr_equal(q1, b + len);
        assert_ptr_equal(q2, b + len);

        s.data = b;
        s.len = len;
        s.escaped = escaped;
        h = ngx_http_llm_json_str_hash(&s, &ulen);

        assert_true(XXH128_isEqual(h, sh.hash));
        assert_int_equal(ulen, sh.ulen);
        assert_int_equal(escaped, sh.escaped);

        /* without the closing quote both fail at the end */

        assert_null(ngx_http_llm_json_scan_string(b, b + len, &escaped, &err));
        assert_null(ngx_http_llm_json_hash_string(b, b + len, &sh, &err));
    }

    free(b);
}


static void
test_validate(void **state)
{
    unsigned                    i;
    ngx_http_llm_json_error_t   err;

    static const char  *good[] = {
        "0", "-1.5e+10", "\"\"", "true", "false", "null", "[]", "{}",
        " [ 1 , { \"a\" : [ null ] } ] ", "{\"a\":{\"b\":{}}}", "\"\\u0000\""
    };

    static const char  *bad[] = {
        "", " ", "[", "]", "[1,]", "{\"a\"}", "{\"a\":}", "{,}", "01",
        "1 2", "\"a", "[\"\\x\"]", "tru", "{\"a\":1,}", "[1]]", "{]", "[}"
    };

    for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        if (ngx_http_llm_json_validate((const u_char *) good[i],
                                       strlen(good[i]), 8, &err) != 0)
        {
            print_error("rejected %s: %s\n", good[i], err.msg);
            fail();
        }
    }

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (ngx_http_llm_json_validate((const u_char *) bad[i],
                                       strlen(bad[i]), 8, &err) == 0)
        {
            print_error("accepted %s\n", bad[i]);
            fail();
        }
    }

    /* depth: max_depth containers, not one more */

    assert_int_equal(ngx_http_llm_json_validate((const u_char *) "[[[1]]]", 7,
                                                3, &err), 0);
    assert_int_equal(ngx_http_llm_json_validate((const u_char *) "[[[1]]]", 7,
                                                2, &err), -1);
    assert_string_equal(err.msg, "JSON nesting too deep");
}


static void
test_cursor(void **state)
{
    int                       rc;
    int64_t                   v;
    unsigned                  first, afirst, n;
    const char               *s;
    ngx_http_llm_json_str_t   key, str;
    ngx_http_llm_json_cur_t   cur;

    s = " {\"a\": [1, \"x\", {\"b\": null}], \"n\": 42, \"s\": \"v\\u0041\","
        " \"f\": 1.5} ";

    ngx_http_llm_json_cur_init(&cur, (const u_char *) s, strlen(s));

    assert_int_equal(ngx_http_llm_json_peek(&cur), NGX_HTTP_LLM_JSON_OBJECT);
    assert_int_equal(ngx_http_llm_json_enter(&cur, NGX_HTTP_LLM_JSON_ARRAY),
                     0);
    assert_int_equal(ngx_http_llm_json_enter(&cur, NGX_HTTP_LLM_JSON_OBJECT),
                     1);

    first = 1;
    n = 0;

    while ((rc = ngx_http_llm_json_next(&cur, &first, &key)) == 1) {
        n++;

        if (ngx_http_llm_json_str_eq(&key, "a", 1)) {
            assert_int_equal(ngx_http_llm_json_enter(&cur,
                                                     NGX_HTTP_LLM_JSON_ARRAY),
                             1);
            afirst = 1;

            assert_int_equal(ngx_http_llm_json_next(&cur, &afirst, NULL), 1);
            assert_int_equal(ngx_http_llm_json_get_int(&cur, &v), 1);
            assert_int_equal(v, 1);

            assert_int_equal(ngx_http_llm_json_next(&cur, &afirst, NULL), 1);
            assert_int_equal(ngx_http_llm_json_get_int(&cur, &v), 0);

            assert_int_equal(ngx_http_llm_json_next(&cur, &afirst, NULL), 1);
            assert_int_equal(ngx_http_llm_json_peek(&cur),
                             NGX_HTTP_LLM_JSON_OBJECT);
            assert_int_equal(ngx_http_llm_json_skip(&cur), 0);

            assert_int_equal(ngx_http_llm_json_next(&cur, &afirst, NULL), 0);

        } else if (ngx_http_llm_json_str_eq(&key, "n", 1)) {
            assert_int_equal(ngx_http_llm_json_get_int(&cur, &v), 1);
            assert_int_equal(v, 42);

        } else if (ngx_http_llm_json_str_eq(&key, "s", 1)) {
            assert_int_equal(ngx_http_llm_json_get_string(&cur, &str), 1);
            assert_true(ngx_http_llm_json_str_eq(&str, "vA", 2));

        } else {
            assert_int_equal(ngx_http_llm_json_get_int(&cur, &v), 0);
        }
    }

    assert_int_equal(rc, 0);
    assert_int_equal(n, 4);
    assert_int_equal(ngx_http_llm_json_end(&cur), 0);

    /* errors stick */

    s = "{\"a\" 1}";
    ngx_http_llm_json_cur_init(&cur, (const u_char *) s, strlen(s));
    assert_int_equal(ngx_http_llm_json_enter(&cur, NGX_HTTP_LLM_JSON_OBJECT),
                     1);
    first = 1;
    assert_int_equal(ngx_http_llm_json_next(&cur, &first, &key), -1);
    assert_int_equal(ngx_http_llm_json_peek(&cur), NGX_HTTP_LLM_JSON_NONE);
    assert_int_equal(ngx_http_llm_json_skip(&cur), -1);
    assert_int_equal(ngx_http_llm_json_end(&cur), -1);

    /* a missing comma */

    s = "[1 2]";
    ngx_http_llm_json_cur_init(&cur, (const u_char *) s, strlen(s));
    assert_int_equal(ngx_http_llm_json_enter(&cur, NGX_HTTP_LLM_JSON_ARRAY),
                     1);
    first = 1;
    assert_int_equal(ngx_http_llm_json_next(&cur, &first, NULL), 1);
    assert_int_equal(ngx_http_llm_json_skip(&cur), 0);
    assert_int_equal(ngx_http_llm_json_next(&cur, &first, NULL), -1);
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_number_int),
        cmocka_unit_test(test_number_double),
        cmocka_unit_test(test_number_hash),
        cmocka_unit_test(test_unescape),
        cmocka_unit_test(test_str),
        cmocka_unit_test(test_string_hash_agrees),
        cmocka_unit_test(test_validate),
        cmocka_unit_test(test_cursor),
    };

    return cmocka_run_group_tests_name("json", tests, NULL, NULL);
}
