
/*
 * Copyright (C) ngx_llm authors
 *
 * libFuzzer target for message assembly and the cache entry encoding. The
 * first byte picks the API, whether the rest is an SSE stream (framed,
 * each event fed to the assembler) or a JSON answer, and the replay's
 * chunk size. A message that assembles is then encoded, decoded, rendered
 * as JSON and replayed as SSE, and each rendering must reassemble into
 * an entry that renders the same JSON (nothing lost or changed on the
 * way), and a truncated entry must not decode.
 */


#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ngx_http_llm_assemble.h"
#include "ngx_http_llm_event.h"
#include "ngx_http_llm_inspect.h"


#define check(cond)                                                           \
    if (!(cond)) {                                                            \
        fprintf(stderr, "fuzz_assemble: %s:%d: %s\n", __FILE__, __LINE__,    \
                #cond);                                                       \
        abort();                                                              \
    }


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


/* a bump arena per input, as the module's pool: nothing freed one by one */

#define ARENA_SIZE  (4 * 1024 * 1024)

static u_char  *arena;
static size_t   arena_used;


static void *
grow(void *data, void *p, size_t old, size_t size)
{
    u_char  *np;

    size = (size + 15) & ~(size_t) 15;

    if (arena_used + size > ARENA_SIZE) {
        return NULL;
    }

    np = arena + arena_used;
    arena_used += size;

    if (p) {
        memcpy(np, p, old);
    }

    return np;
}


static int
feed(ngx_http_llm_sse_t *sse, const u_char *name, size_t name_len,
    const u_char *data, size_t len, uint64_t start, uint64_t end)
{
    ngx_http_llm_msg_event(sse->data, name, name_len, data, len);
    return 0;
}


static int
assemble(ngx_http_llm_msg_t *msg, int api, unsigned sse, const u_char *p,
    size_t len)
{
    u_char              buf[16384];
    ngx_http_llm_sse_t  framer;

    ngx_http_llm_msg_init(msg, api, grow, NULL);

    if (sse) {
        ngx_http_llm_sse_init(&framer, buf, sizeof(buf), feed, msg);
        check(ngx_http_llm_sse_feed(&framer, p, len) == 0);

    } else if (ngx_http_llm_msg_response(msg, p, len) != 0) {
        return -1;
    }

    if (msg->uncacheable) {
        return -1;
    }

    return ngx_http_llm_msg_finish(msg);
}


/* encodes into a buffer of exactly the size announced */

static u_char *
encode(const ngx_http_llm_msg_t *msg, size_t *len)
{
    u_char  *out;
    size_t   n;

    n = ngx_http_llm_msg_encode(msg, NULL, 0);
    out = malloc(n ? n : 1);
    check(out != NULL);
    check(ngx_http_llm_msg_encode(msg, out, n) == n);
    *len = n;

    return out;
}


/*
 * The rendering reassembles into an entry that renders the same JSON as
 * the original (byte-identical entries are too strict: a choice without
 * text renders "text":"" and comes back as an empty part)
 */

static void
reassembled(const ngx_http_llm_msg_t *msg, int api, unsigned sse,
    const u_char *text, size_t len, const u_char *ref, size_t ref_len)
{
    u_char                *enc2, *json;
    size_t                 n, m;
    ngx_http_llm_msg_t    *again;
    ngx_http_llm_entry_t   e;

    again = malloc(sizeof(ngx_http_llm_msg_t));
    check(again != NULL);

    check(assemble(again, api, sse, text, len) == 0);

    again->usage = msg->usage;
    enc2 = encode(again, &n);
    check(ngx_http_llm_entry_decode(&e, enc2, n) == 0);

    m = ngx_http_llm_render_json(&e, NULL, 0);
    json = malloc(m ? m : 1);
    check(json != NULL);
    check(ngx_http_llm_render_json(&e, json, m) == m);

    if (m != ref_len || memcmp(json, ref, m) != 0) {
        fprintf(stderr, "fuzz_assemble: the %s rendering reassembles into "
                "another answer:\n%.*s\n---\n%.*s\n---\n%.*s\n",
                sse ? "SSE" : "JSON", (int) len, text, (int) ref_len, ref,
                (int) m, json);
    }

    check(m == ref_len && memcmp(json, ref, m) == 0);

    free(json);
    free(enc2);
    free(again);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int                    api;
    u_char                *enc, *json, *sse, *ev, *cut;
    size_t                 enc_len, json_len, n, max, len, cap;
    unsigned               mode, content, chunk;
    ngx_http_llm_msg_t    *msg;
    ngx_http_llm_entry_t   entry, e2;
    ngx_http_llm_replay_t  rp;

    static const int  apis[] = {
        NGX_HTTP_LLM_API_CHAT, NGX_HTTP_LLM_API_COMPLETIONS,
        NGX_HTTP_LLM_API_MESSAGES, NGX_HTTP_LLM_API_EMBEDDINGS
    };

    if (size < 1) {
        return 0;
    }

    if (arena == NULL) {
        arena = malloc(ARENA_SIZE);
        check(arena != NULL);
    }

    arena_used = 0;

    mode = data[0];
    api = apis[mode & 3];
    chunk = ((mode >> 3) & 31) + 1;

    msg = malloc(sizeof(ngx_http_llm_msg_t));
    check(msg != NULL);

    if (assemble(msg, api, mode & 4, data + 1, size - 1) != 0) {
        free(msg);
        return 0;
    }

    msg->usage.prompt_tokens = size;
    msg->usage.completion_tokens = mode;

    enc = encode(msg, &enc_len);

    /* FUZZ_ASSEMBLE_DUMP=file writes the entry: fuzz_entry's seeds */

    if (getenv("FUZZ_ASSEMBLE_DUMP")) {
        FILE  *f = fopen(getenv("FUZZ_ASSEMBLE_DUMP"), "wb");
        check(f != NULL);
        fputc(mode, f);
        fwrite(enc, 1, enc_len, f);
        fclose(f);
    }

    check(ngx_http_llm_entry_decode(&entry, enc, enc_len) == 0);
    check(entry.api == api);

    /* a truncated entry never decodes as valid past its end */

    if (enc_len > 0) {
        cut = malloc(enc_len - 1 ? enc_len - 1 : 1);
        check(cut != NULL);
        memcpy(cut, enc, enc_len - 1);
        check(ngx_http_llm_entry_decode(&e2, cut, enc_len - 1) != 0);
        free(cut);
    }

    /* JSON rendering, exactly the size announced, reassembles the same */

    n = ngx_http_llm_render_json(&entry, NULL, 0);
    json = malloc(n ? n : 1);
    check(json != NULL);
    check(ngx_http_llm_render_json(&entry, json, n) == n);
    json_len = n;

    if (entry.kind == NGX_HTTP_LLM_ENTRY_MESSAGE) {
        reassembled(msg, api, 0, json, n, json, n);
    }

    /* SSE replay: each event within replay_max, the stream reassembles */

    if (entry.kind == NGX_HTTP_LLM_ENTRY_MESSAGE) {
        ngx_http_llm_replay_init(&rp, &entry, chunk, mode & 0x80);
        max = ngx_http_llm_replay_max(&rp);

        ev = malloc(max ? max : 1);
        check(ev != NULL);

        cap = 4096;
        len = 0;
        sse = malloc(cap);
        check(sse != NULL);

        while ((n = ngx_http_llm_replay_next(&rp, ev, max, &content)) != 0) {
            check(n <= max);

            if (len + n > cap) {
                cap = (len + n) * 2;
                sse = realloc(sse, cap);
                check(sse != NULL);
            }

            memcpy(sse + len, ev, n);
            len += n;
        }

        reassembled(msg, api, 1, sse, len, json, json_len);

        free(sse);
        free(ev);
    }

    free(json);

    free(enc);
    free(msg);

    return 0;
}
