
/*
 * Copyright (C) ngx_llm authors
 *
 * SSE framer: field parsing, line ends, BOM, comments, offsets, and the
 * same events whatever the split of the stream into reads.
 */


#include <stdio.h>

#include "llm_test.h"
#include "ngx_http_llm_event.h"


#define MAX_EVENTS  32


typedef struct {
    u_char                      name[NGX_HTTP_LLM_SSE_NAME_MAX];
    size_t                      name_len;
    u_char                      data[256];
    size_t                      len;
    uint64_t                    start;
    uint64_t                    end;
    unsigned                    truncated;
} ev_t;


typedef struct {
    ev_t                        ev[MAX_EVENTS];
    unsigned                    n;
    unsigned                    stop_at;    /* stop after this event */
} rec_t;


static int
on_event(ngx_http_llm_sse_t *sse, const u_char *name, size_t name_len,
    const u_char *data, size_t len, uint64_t start, uint64_t end)
{
    ev_t   *ev;
    rec_t  *r;

    r = sse->data;

    assert_true(r->n < MAX_EVENTS);
    assert_true(len <= sse->cap);
    assert_true(name_len <= NGX_HTTP_LLM_SSE_NAME_MAX);
    assert_true(start < end);

    ev = &r->ev[r->n++];
    memcpy(ev->name, name, name_len);
    ev->name_len = name_len;
    memcpy(ev->data, data, len);
    ev->len = len;
    ev->start = start;
    ev->end = end;
    ev->truncated = sse->truncated;

    return (r->stop_at && r->n == r->stop_at) ? 7 : 0;
}


/* feeds s split at the given cut points; returns the feed results OR-ed */

static int
run(const char *s, size_t len, const size_t *cuts, unsigned ncuts,
    size_t cap, rec_t *r)
{
    int                  rc;
    size_t               from, to;
    unsigned             i;
    ngx_http_llm_sse_t   sse;
    static u_char        buf[4096];

    assert_true(cap <= sizeof(buf));

    memset(r, 0, sizeof(rec_t));
    ngx_http_llm_sse_init(&sse, buf, cap, on_event, r);

    rc = 0;
    from = 0;

    for (i = 0; i <= ncuts; i++) {
        to = (i < ncuts) ? cuts[i] : len;
        rc |= ngx_http_llm_sse_feed(&sse, (const u_char *) s + from,
                                    to - from);
        from = to;
    }

    assert_int_equal(sse.offset, len);
    assert_int_equal(sse.events, r->n);

    return rc;
}


static void
assert_same(const rec_t *a, const rec_t *b, const char *what, size_t at)
{
    unsigned  i;

    if (a->n != b->n) {
        print_error("%s %zu: %u events instead of %u\n", what, at, b->n,
                    a->n);
        fail();
    }

    for (i = 0; i < a->n; i++) {
        if (a->ev[i].name_len != b->ev[i].name_len
            || memcmp(a->ev[i].name, b->ev[i].name, a->ev[i].name_len) != 0
            || a->ev[i].len != b->ev[i].len
            || memcmp(a->ev[i].data, b->ev[i].data, a->ev[i].len) != 0
            || a->ev[i].start != b->ev[i].start
            || a->ev[i].end != b->ev[i].end
            || a->ev[i].truncated != b->ev[i].truncated)
        {
            print_error("%s %zu: event %u differs\n", what, at, i);
            fail();
        }
    }
}


/* every 2-way split, every 3-way split if small, byte by byte */

static void
assert_split_invariant(const char *s, size_t len, size_t cap,
    const rec_t *ref)
{
    rec_t     r;
    size_t    i, j, cuts[4096];

    for (i = 0; i <= len; i++) {
        cuts[0] = i;
        run(s, len, cuts, 1, cap, &r);
        assert_same(ref, &r, "split at", i);
    }

    if (len <= 160) {
        for (i = 0; i <= len; i++) {
            for (j = i; j <= len; j++) {
                cuts[0] = i;
                cuts[1] = j;
                run(s, len, cuts, 2, cap, &r);
                assert_same(ref, &r, "3-way split at", i * 1000 + j);
            }
        }
    }

    assert_true(len <= sizeof(cuts) / sizeof(cuts[0]));

    for (i = 0; i < len; i++) {
        cuts[i] = i;
    }

    run(s, len, cuts, len, cap, &r);
    assert_same(ref, &r, "byte by byte", 0);
}


static void
assert_event(const ev_t *ev, const char *name, const char *data,
    uint64_t start, uint64_t end)
{
    if (ev->name_len != strlen(name)
        || memcmp(ev->name, name, ev->name_len) != 0)
    {
        print_error("name '%.*s' instead of '%s'\n", (int) ev->name_len,
                    ev->name, name);
        fail();
    }

    if (ev->len != strlen(data) || memcmp(ev->data, data, ev->len) != 0) {
        print_error("data '%.*s' instead of '%s'\n", (int) ev->len,
                    ev->data, data);
        fail();
    }

    assert_int_equal(ev->start, start);
    assert_int_equal(ev->end, end);
}


/*
 * The reference stream: BOM, comments, event names, data with and without
 * the space, multi-line data, a bare "data" line, ignored fields, an
 * event without data, a keep-alive, [DONE], and an unfinished event.
 * eol is the line end used ("\n", "\r\n", "\r"); a few lines keep theirs.
 */

static size_t
build(char *s, const char *eol, size_t *mark)
{
    size_t        n;
    unsigned      i, m;
    const char   *line;

    static const char  *lines[] = {
        "\xef\xbb\xbf", "|",              /* | marks: 0 after the BOM */
        ": comment", "\n",
        "event: message_start", "\n",
        "data: {\"a\":1}", "\n",
        "", "\n", "|",                    /* 1: end of event 1 */
        "data:no space", "\n",
        "data:  two", "\n",
        "data", "\n",
        "id: 7", "\n",
        "retry: 100", "\n",
        "unknown: x", "\n",
        "datum: x", "\n",
        "", "\n", "|",                    /* 2: end of event 2 */
        "event: ping", "\n",
        "", "\n", "|",                    /* 3: no data, not dispatched */
        "data: after ping", "\n",
        "", "\n", "|",                    /* 4: end of event 3 */
        ": keepalive", "\n",
        "", "\n", "|",                    /* 5 */
        "data: [DONE]", "\n",
        "", "\n", "|",                    /* 6: end of event 4 */
        "event: x", "\n",
        "data: unterminated", "\n",
        NULL
    };

    n = 0;
    m = 0;

    for (i = 0; lines[i]; i++) {
        line = lines[i];

        if (strcmp(line, "|") == 0) {
            mark[m++] = n;
            continue;
        }

        if (strcmp(line, "\n") == 0) {
            line = eol;
        }

        n += sprintf(s + n, "%s", line);
    }

    return n;
}


static void
test_reference_stream(void **state)
{
    char          s[1024];
    size_t        len, mark[8], lf;
    rec_t         ref;
    unsigned      e;
    const char   *eols[] = { "\n", "\r\n", "\r" };

    for (e = 0; e < 3; e++) {
        len = build(s, eols[e], mark);

        /*
         * with CRLF, an event ends at the CR of its blank line and the
         * next starts after the LF
         */

        lf = (e == 1) ? 1 : 0;

        assert_int_equal(run(s, len, NULL, 0, 256, &ref), 0);
        assert_int_equal(ref.n, 4);

        assert_event(&ref.ev[0], "message_start", "{\"a\":1}", mark[0],
                     mark[1] - lf);
        assert_event(&ref.ev[1], "", "no space\n two\n", mark[1],
                     mark[2] - lf);
        assert_event(&ref.ev[2], "", "after ping", mark[3], mark[4] - lf);
        assert_event(&ref.ev[3], "", "[DONE]", mark[5], mark[6] - lf);

        assert_split_invariant(s, len, 256, &ref);
    }
}


static void
test_mixed_line_ends(void **state)
{
    rec_t        ref;
    const char  *s;

    /* CR LF as one line end, LF CR as two */

    s = "data: a\r\ndata: b\n\rdata: c\r\r\ndata: d\n\n";

    run(s, strlen(s), NULL, 0, 256, &ref);

    assert_int_equal(ref.n, 3);
    assert_event(&ref.ev[0], "", "a\nb", 0, 18);
    assert_event(&ref.ev[1], "", "c", 18, 27);
    assert_event(&ref.ev[2], "", "d", 28, 37);

    assert_split_invariant(s, strlen(s), 256, &ref);
}


static void
test_bom(void **state)
{
    rec_t        ref;
    const char  *s;

    s = "\xef\xbb\xbf" "data: x\n\n";
    run(s, strlen(s), NULL, 0, 64, &ref);
    assert_int_equal(ref.n, 1);
    assert_event(&ref.ev[0], "", "x", 3, 12);
    assert_split_invariant(s, strlen(s), 64, &ref);

    /* only one BOM is skipped; a second one is part of a field name */

    s = "\xef\xbb\xbf\xef\xbb\xbf" "data: x\n\ndata: y\n\n";
    run(s, strlen(s), NULL, 0, 64, &ref);
    assert_int_equal(ref.n, 1);
    assert_event(&ref.ev[0], "", "y", 15, 24);
    assert_split_invariant(s, strlen(s), 64, &ref);

    /* a partial BOM starts a field name (an unknown field) */

    s = "\xef\xbb" "data: x\n\ndata: y\n\n";
    run(s, strlen(s), NULL, 0, 64, &ref);
    assert_int_equal(ref.n, 1);
    assert_event(&ref.ev[0], "", "y", 11, 20);
    assert_split_invariant(s, strlen(s), 64, &ref);

    /* the unknown field line belongs to the event, as a comment would */

    s = "\xef" "\n" "data: y\n\n";
    run(s, strlen(s), NULL, 0, 64, &ref);
    assert_int_equal(ref.n, 1);
    assert_event(&ref.ev[0], "", "y", 0, 11);

    /* no BOM later in the stream */

    s = "data: x\n\n\xef\xbb\xbf" "data: y\n\n";
    run(s, strlen(s), NULL, 0, 64, &ref);
    assert_int_equal(ref.n, 1);
}


static void
test_fields(void **state)
{
    rec_t        ref;
    const char  *s;
    char         big[200];

    /* the last event name wins; the name resets after each event */

    s = "event: a\nevent: b\ndata: 1\n\ndata: 2\n\nevent\ndata: 3\n\n";
    run(s, strlen(s), NULL, 0, 64, &ref);
    assert_int_equal(ref.n, 3);
    assert_event(&ref.ev[0], "b", "1", 0, 27);
    assert_event(&ref.ev[1], "", "2", 27, 36);
    assert_event(&ref.ev[2], "", "3", 36, 51);

    /* an empty data line still makes an event */

    s = "data:\n\ndata\n\n";
    run(s, strlen(s), NULL, 0, 64, &ref);
    assert_int_equal(ref.n, 2);
    assert_event(&ref.ev[0], "", "", 0, 7);
    assert_event(&ref.ev[1], "", "", 7, 13);

    /* colons in the value, field names are case-sensitive */

    s = "Data: no\ndata::a:b: \n\n";
    run(s, strlen(s), NULL, 0, 64, &ref);
    assert_int_equal(ref.n, 1);
    assert_event(&ref.ev[0], "", ":a:b: ", 0, 22);

    /* a comment in the middle of an event */

    s = "data: a\n: note\ndata: b\n\n";
    run(s, strlen(s), NULL, 0, 64, &ref);
    assert_int_equal(ref.n, 1);
    assert_event(&ref.ev[0], "", "a\nb", 0, 24);

    /* names beyond NGX_HTTP_LLM_SSE_NAME_MAX are cut */

    memset(big, 'n', sizeof(big));
    memcpy(big, "event: ", 7);
    memcpy(big + 100, "\ndata: z\n\n", 11);

    run(big, strlen(big), NULL, 0, 64, &ref);
    assert_int_equal(ref.n, 1);
    assert_int_equal(ref.ev[0].name_len, NGX_HTTP_LLM_SSE_NAME_MAX);
    assert_split_invariant(big, strlen(big), 64, &ref);

    /* nothing at all */

    assert_int_equal(run("", 0, NULL, 0, 64, &ref), 0);
    assert_int_equal(ref.n, 0);
    s = "\n\n\r\n: x\n\n";
    run(s, strlen(s), NULL, 0, 64, &ref);
    assert_int_equal(ref.n, 0);
}


static void
test_truncation(void **state)
{
    rec_t        ref;
    const char  *s;

    s = "data: 0123456789abcdef\n\ndata: ok\n\n"
        "data: 0123\ndata: 456\n\n"
        "data: 01234567\n\n";

    run(s, strlen(s), NULL, 0, 8, &ref);
    assert_int_equal(ref.n, 4);

    assert_event(&ref.ev[0], "", "01234567", 0, 24);
    assert_int_equal(ref.ev[0].truncated, 1);

    assert_event(&ref.ev[1], "", "ok", 24, 34);
    assert_int_equal(ref.ev[1].truncated, 0);

    /* the joining '\n' counts */
    assert_event(&ref.ev[2], "", "0123\n456", 34, 56);
    assert_int_equal(ref.ev[2].truncated, 0);

    /* exactly cap: not truncated */
    assert_event(&ref.ev[3], "", "01234567", 56, 72);
    assert_int_equal(ref.ev[3].truncated, 0);

    assert_split_invariant(s, strlen(s), 8, &ref);

    /* cap 0: events still dispatched, empty and truncated */

    run(s, strlen(s), NULL, 0, 0, &ref);
    assert_int_equal(ref.n, 4);
    assert_int_equal(ref.ev[1].len, 0);
    assert_int_equal(ref.ev[1].truncated, 1);
}


static void
test_handler_stop(void **state)
{
    int                  rc;
    rec_t                r;
    u_char               buf[64];
    const char          *s;
    ngx_http_llm_sse_t   sse;

    s = "data: 1\n\ndata: 2\r\n\r\ndata: 3\n\n";

    memset(&r, 0, sizeof(r));
    r.stop_at = 2;
    ngx_http_llm_sse_init(&sse, buf, sizeof(buf), on_event, &r);

    rc = ngx_http_llm_sse_feed(&sse, (const u_char *) s, strlen(s));

    assert_int_equal(rc, 7);
    assert_int_equal(r.n, 2);

    /* consumed up to the end of the second event, its CR */
    assert_int_equal(sse.offset, r.ev[1].end);
    assert_int_equal(sse.offset, 19);

    /* the rest can still be fed */

    r.stop_at = 0;
    rc = ngx_http_llm_sse_feed(&sse, (const u_char *) s + sse.offset,
                               strlen(s) - sse.offset);
    assert_int_equal(rc, 0);
    assert_int_equal(r.n, 3);
    assert_event(&r.ev[2], "", "3", 20, 29);
}


/* a long realistic stream: offsets tile it (but for CRLF's LF) */

static void
test_long_stream(void **state)
{
    char      s[4096];
    size_t    len;
    rec_t     ref;
    unsigned  i;

    len = 0;

    for (i = 0; i < 20; i++) {
        len += sprintf(s + len, "data: {\"choices\":[{\"delta\":{\"content\":"
                       "\"tok%u\"}}]}\n\n", i);
    }

    len += sprintf(s + len, "data: [DONE]\n\n");

    run(s, len, NULL, 0, 256, &ref);
    assert_int_equal(ref.n, 21);
    assert_int_equal(ref.ev[0].start, 0);

    for (i = 1; i < ref.n; i++) {
        assert_int_equal(ref.ev[i].start, ref.ev[i - 1].end);
    }

    assert_int_equal(ref.ev[20].end, len);

    assert_split_invariant(s, len, 256, &ref);
}


/* storage that grows as events need it, as the module allocates it */

typedef struct {
    u_char                      bufs[8][4096];
    size_t                      sizes[8];
    unsigned                    n;
    unsigned                    fail_after;     /* 0: never fails */
    size_t                      lens[8];
    unsigned                    truncated[8];
    unsigned                    events;
    int                         intact;         /* data as sent */
} grow_rec_t;


static u_char *
grow_alloc(ngx_http_llm_sse_t *sse, size_t size)
{
    grow_rec_t  *g;

    g = sse->data;

    assert_true(size <= sse->cap && size > sse->size);

    if (g->fail_after && g->n == g->fail_after) {
        return NULL;
    }

    assert_true(g->n < 8);
    g->sizes[g->n] = size;

    return g->bufs[g->n++];
}


static int
grow_event(ngx_http_llm_sse_t *sse, const u_char *name, size_t name_len,
    const u_char *data, size_t len, uint64_t start, uint64_t end)
{
    size_t       i;
    grow_rec_t  *g;

    g = sse->data;

    assert_true(g->events < 8);
    assert_non_null(data);

    g->lens[g->events] = len;
    g->truncated[g->events] = sse->truncated;
    g->events++;

    /* event i is 'a' + i repeated */

    for (i = 0; i < len; i++) {
        if (data[i] != 'a' + g->events - 1) {
            g->intact = 0;
        }
    }

    return 0;
}


static size_t
grow_stream(char *s, const size_t *sizes, unsigned n)
{
    size_t    len;
    unsigned  i;

    len = 0;

    for (i = 0; i < n; i++) {
        len += sprintf(s + len, "data: ");
        memset(s + len, 'a' + i, sizes[i]);
        len += sizes[i];
        len += sprintf(s + len, "\n\n");
    }

    return len;
}


static void
test_grow(void **state)
{
    char                 s[16384];
    size_t               len, i;
    grow_rec_t          *g;
    ngx_http_llm_sse_t   sse;

    static const size_t  sizes[] = { 0, 10, 1500, 5000, 20 };
    static const size_t  big[] = { 3000, 10 };

    len = grow_stream(s, sizes, 5);

    g = calloc(1, sizeof(grow_rec_t));
    assert_non_null(g);

    /* fed byte by byte: appends of one byte */

    g->intact = 1;
    ngx_http_llm_sse_init(&sse, NULL, 4096, grow_event, g);
    sse.grow = grow_alloc;

    for (i = 0; i < len; i++) {
        assert_int_equal(ngx_http_llm_sse_feed(&sse, (u_char *) s + i, 1), 0);
    }

    assert_int_equal(g->events, 5);
    assert_true(g->intact);

    /* nothing allocated for the empty event; then 1k, doubled, capped */
    assert_int_equal(g->n, 3);
    assert_int_equal(g->sizes[0], NGX_HTTP_LLM_SSE_BUF);
    assert_int_equal(g->sizes[1], 2048);
    assert_int_equal(g->sizes[2], 4096);

    assert_int_equal(g->lens[0], 0);
    assert_int_equal(g->lens[1], 10);
    assert_int_equal(g->lens[2], 1500);
    assert_int_equal(g->lens[3], 4096);
    assert_int_equal(g->truncated[3], 1);
    assert_int_equal(g->lens[4], 20);
    assert_int_equal(g->truncated[4], 0);

    /* fed whole: an append that needs more than double gets it at once */

    memset(g, 0, sizeof(grow_rec_t));
    g->intact = 1;
    ngx_http_llm_sse_init(&sse, NULL, 4096, grow_event, g);
    sse.grow = grow_alloc;

    assert_int_equal(ngx_http_llm_sse_feed(&sse, (u_char *) s, len), 0);
    assert_int_equal(g->events, 5);
    assert_true(g->intact);
    assert_int_equal(g->n, 3);
    assert_int_equal(g->sizes[1], 2048);
    assert_int_equal(g->sizes[2], 4096);
    assert_int_equal(g->lens[3], 4096);

    /* an event that needs more than double gets what it needs at once */

    memset(g, 0, sizeof(grow_rec_t));
    g->intact = 1;
    ngx_http_llm_sse_init(&sse, NULL, 4096, grow_event, g);
    sse.grow = grow_alloc;

    len = grow_stream(s, big, 2);
    assert_int_equal(ngx_http_llm_sse_feed(&sse, (u_char *) s, len), 0);
    assert_int_equal(g->events, 2);
    assert_true(g->intact);
    assert_int_equal(g->n, 1);
    assert_int_equal(g->sizes[0], 3000);
    assert_int_equal(g->lens[0], 3000);

    len = grow_stream(s, sizes, 5);

    /* no memory: the event is cut where storage ended, later ones fit */

    memset(g, 0, sizeof(grow_rec_t));
    g->intact = 1;
    g->fail_after = 1;
    ngx_http_llm_sse_init(&sse, NULL, 4096, grow_event, g);
    sse.grow = grow_alloc;

    assert_int_equal(ngx_http_llm_sse_feed(&sse, (u_char *) s, len), 0);
    assert_int_equal(g->events, 5);
    assert_true(g->intact);
    assert_int_equal(g->lens[1], 10);
    assert_int_equal(g->lens[2], NGX_HTTP_LLM_SSE_BUF);
    assert_int_equal(g->truncated[2], 1);
    assert_int_equal(g->lens[4], 20);
    assert_int_equal(g->truncated[4], 0);

    free(g);
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_reference_stream),
        cmocka_unit_test(test_mixed_line_ends),
        cmocka_unit_test(test_bom),
        cmocka_unit_test(test_fields),
        cmocka_unit_test(test_truncation),
        cmocka_unit_test(test_handler_stop),
        cmocka_unit_test(test_long_stream),
        cmocka_unit_test(test_grow),
    };

    return cmocka_run_group_tests_name("sse", tests, NULL, NULL);
}
