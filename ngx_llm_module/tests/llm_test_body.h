
/*
 * Copyright (C) ngx_llm authors
 *
 * A deterministic, realistic chat request body for the benchmark and the
 * large-body tests: a system prompt, long user / assistant turns (English
 * text with escaped newlines and quotes, some raw UTF-8 and \u escapes,
 * code with indentation), three tools with JSON schemas, sampling
 * parameters.
 */


#ifndef _LLM_TEST_BODY_H_INCLUDED_
#define _LLM_TEST_BODY_H_INCLUDED_


#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>


static const char  *llm_test_words[] = {
    "the", "model", "request", "gateway", "stream", "token", "cache",
    "latency", "upstream", "worker", "buffer", "event", "response", "of",
    "and", "to", "in", "is", "that", "for", "with", "as", "on", "by",
    "configuration", "server", "client", "message", "content", "prompt",
    "balancer", "budget", "limit", "usage", "estimate", "hash", "be",
    "performance", "throughput", "because", "therefore", "however", "which",
    "function", "return", "value", "error", "retry", "fallback", "route",
    "a", "an", "it", "this", "we", "they", "should", "would", "could", "be",
    "time", "first", "each", "request"
};


/* non-ASCII words, raw UTF-8 */
static const char  *llm_test_utf8[] = {
    "caf\xc3\xa9", "na\xc3\xafve", "\xe2\x80\x94", "r\xc3\xa9sum\xc3\xa9",
    "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e", "\xe2\x80\x9cquoted\xe2\x80\x9d",
    "\xf0\x9f\x9a\x80", "\xc2\xb5s"
};


typedef struct {
    u_char     *p;
    u_char     *end;
    uint32_t    seed;
} llm_test_gen_t;


static inline uint32_t
llm_test_rand(llm_test_gen_t *g)
{
    g->seed = g->seed * 1664525u + 1013904223u;
    return g->seed >> 8;
}


static inline void
llm_test_put(llm_test_gen_t *g, const char *s)
{
    size_t  n;

    n = strlen(s);

    if ((size_t) (g->end - g->p) < n) {
        n = g->end - g->p;
    }

    memcpy(g->p, s, n);
    g->p += n;
}


/*
 * About len bytes of JSON string contents (without the quotes). The
 * default mix is chat text: a line break every ~120 columns, now and then
 * a paragraph break, a quote, a code snippet, a \u escape and non-ASCII
 * words; a backslash every ~50 bytes. heavy puts a backslash every ~20
 * bytes and many more non-ASCII characters, as a stress case.
 */

static inline void
llm_test_text(llm_test_gen_t *g, size_t len, int heavy)
{
    u_char    *start;
    uint32_t   r, k;
    unsigned   col, wrap;

    start = g->p;
    col = 0;
    wrap = heavy ? 80 : 120;

    while ((size_t) (g->p - start) < len && g->p < g->end - 64) {
        r = llm_test_rand(g);
        k = heavy ? r % 41 : r % 400;

        switch (k) {

        case 0:
        case 5:
            llm_test_put(g, "\\n\\n");
            col = 0;
            continue;

        case 1:
        case 6:
        case 7:
            llm_test_put(g, "\\\"quoted\\\" ");
            break;

        case 2:
            llm_test_put(g, "\\n    if (rc != NGX_OK) {\\n        return rc;"
                         "\\n    }\\n");
            col = 0;
            continue;

        case 3:
            llm_test_put(g, "caf\\u00e9 ");
            break;

        case 4:
            llm_test_put(g, "\\tpath: C:\\\\llm\\/conf ");
            break;

        default:
            if (heavy ? k % 8 == 0 : k % 40 == 8) {
                llm_test_put(g, llm_test_utf8[(r >> 9)
                                 % (sizeof(llm_test_utf8) / sizeof(char *))]);

            } else {
                llm_test_put(g, llm_test_words[(r >> 9)
                                % (sizeof(llm_test_words) / sizeof(char *))]);
            }

            llm_test_put(g, (r & 0x70000) == 0 ? ". " : " ");
            break;
        }

        col += 7;

        if (col > wrap) {
            llm_test_put(g, "\\n");
            col = 0;
        }
    }
}


static const char  llm_test_tools[] =
    "[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\","
    "\"description\":\"Get the current weather in a given location\","
    "\"parameters\":{\"type\":\"object\",\"properties\":{\"location\":"
    "{\"type\":\"string\",\"description\":\"The city and state, e.g. San "
    "Francisco, CA\"},\"unit\":{\"type\":\"string\",\"enum\":[\"celsius\","
    "\"fahrenheit\"]}},\"required\":[\"location\"]}}},"
    "{\"type\":\"function\",\"function\":{\"name\":\"search_docs\","
    "\"description\":\"Search the documentation\",\"parameters\":{\"type\":"
    "\"object\",\"properties\":{\"query\":{\"type\":\"string\"},\"limit\":"
    "{\"type\":\"integer\",\"minimum\":1,\"maximum\":50}},\"required\":"
    "[\"query\"]}}},"
    "{\"type\":\"function\",\"function\":{\"name\":\"run_sql\","
    "\"description\":\"Run a read-only SQL query\",\"parameters\":{\"type\":"
    "\"object\",\"properties\":{\"sql\":{\"type\":\"string\"},\"timeout_ms\":"
    "{\"type\":\"number\"}},\"required\":[\"sql\"]}}}]";


/*
 * Writes a chat body of about target bytes into buf (cap must exceed
 * target by 4 KB); returns its length. The same seed gives the same body;
 * tools are included from 8 KB; heavy: see llm_test_text().
 */

static inline size_t
llm_test_body(u_char *buf, size_t cap, size_t target, uint32_t seed,
    int heavy)
{
    char            num[32];
    unsigned        i;
    llm_test_gen_t  g;

    g.p = buf;
    g.end = buf + cap;
    g.seed = seed;

    llm_test_put(&g, "{\"model\":\"gpt-4o-2024-08-06\",\"messages\":["
                 "{\"role\":\"system\",\"content\":\"");
    llm_test_text(&g, target < 8192 ? target / 4 : 1500, heavy);
    llm_test_put(&g, "\"}");

    for (i = 0; i == 0 || (size_t) (g.p - buf) + 600 < target; i++) {
        llm_test_put(&g, (i & 1) ? ",{\"role\":\"assistant\",\"content\":\""
                                 : ",{\"role\":\"user\",\"content\":\"");
        llm_test_text(&g, target < 8192 ? target / 4
                                        : 2000 + llm_test_rand(&g) % 6000,
                      heavy);
        llm_test_put(&g, "\"}");
    }

    llm_test_put(&g, "]");

    if (target >= 8192) {
        llm_test_put(&g, ",\"tools\":");
        llm_test_put(&g, llm_test_tools);
    }

    snprintf(num, sizeof(num), "%u", 256 + seed % 1024);
    llm_test_put(&g, ",\"temperature\":0.2,"
                 "\"top_p\":1,\"max_tokens\":");
    llm_test_put(&g, num);
    llm_test_put(&g, ",\"stream\":true,\"stream_options\":"
                 "{\"include_usage\":true},\"user\":\"bench\"}");

    return g.p - buf;
}


#endif /* _LLM_TEST_BODY_H_INCLUDED_ */
