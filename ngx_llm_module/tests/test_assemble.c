
/*
 * Copyright (C) ngx_llm authors
 *
 * Response cache: messages assembled from stream deltas and JSON bodies of
 * both APIs (text, tool calls, finish reason), the entry encoding, and the
 * rendering back as JSON and as SSE, checked by reassembling what was
 * rendered.
 */


#include <stdio.h>

#include "llm_test.h"
#include "ngx_http_llm_assemble.h"
#include "ngx_http_llm_inspect.h"


#define OAI   NGX_HTTP_LLM_API_CHAT
#define CMP   NGX_HTTP_LLM_API_COMPLETIONS
#define ANT   NGX_HTTP_LLM_API_MESSAGES
#define EMB   NGX_HTTP_LLM_API_EMBEDDINGS


/* a bump arena, reset by begin(): nothing to free, nothing leaks */

static u_char  arena[8 * 1024 * 1024];
static size_t  arena_used;


static void *
grow(void *data, void *p, size_t old, size_t size)
{
    u_char  *np;

    size = (size + 15) & ~(size_t) 15;

    if (arena_used + size > sizeof(arena)) {
        return NULL;
    }

    np = arena + arena_used;
    arena_used += size;

    if (p) {
        memcpy(np, p, old);
    }

    return np;
}


static ngx_http_llm_msg_t   msg;
static u_char               enc[65536];
static size_t               enc_len;
static ngx_http_llm_entry_t entry;
static char                 out[65536];


static void
begin(int api)
{
    arena_used = 0;
    ngx_http_llm_msg_init(&msg, api, grow, NULL);
}


static int
resp(const char *body)
{
    return ngx_http_llm_msg_response(&msg, (const u_char *) body,
                                     strlen(body));
}


static int
ev(const char *name, const char *data)
{
    return ngx_http_llm_msg_event(&msg, (const u_char *) name, strlen(name),
                                  (const u_char *) data, strlen(data));
}


/* finish, encode, decode */

static void
seal(void)
{
    assert_int_equal(ngx_http_llm_msg_finish(&msg), 0);
    assert_null(msg.uncacheable);

    enc_len = ngx_http_llm_msg_encode(&msg, NULL, 0);
    assert_true(enc_len < sizeof(enc));
    assert_int_equal(ngx_http_llm_msg_encode(&msg, enc, sizeof(enc)),
                     enc_len);
    assert_int_equal(ngx_http_llm_entry_decode(&entry, enc, enc_len), 0);
}


static const char *
render_json(void)
{
    size_t  n;

    n = ngx_http_llm_render_json(&entry, NULL, 0);
    assert_true(n < sizeof(out));
    assert_int_equal(ngx_http_llm_render_json(&entry, (u_char *) out,
                                              sizeof(out)), n);
    out[n] = '\0';

    return out;
}


/* the whole SSE replay, events counted */

static const char *
render_sse(size_t chunk, unsigned usage, unsigned *events)
{
    size_t                 n, len, max;
    unsigned               content;
    ngx_http_llm_replay_t  rp;

    ngx_http_llm_replay_init(&rp, &entry, chunk, usage);
    max = ngx_http_llm_replay_max(&rp);
    len = 0;
    *events = 0;

    for ( ;; ) {
        assert_true(len + max < sizeof(out));
        n = ngx_http_llm_replay_next(&rp, (u_char *) out + len, max,
                                     &content);
        assert_true(n <= max);

        if (n == 0) {
            break;
        }

        (*events)++;
        len += n;
    }

    out[len] = '\0';

    return out;
}


static ngx_http_llm_msg_t  again;


static int
refeed(ngx_http_llm_sse_t *sse, const u_char *name, size_t name_len,
    const u_char *data, size_t len, uint64_t start, uint64_t end)
{
    return ngx_http_llm_msg_event(&again, name, name_len, data, len) ? 1 : 0;
}


/*
 * Reassembles a rendering (SSE or JSON) and checks that it encodes to the
 * same entry: nothing is lost or changed on the way.
 */

static void
roundtrip(const char *text, unsigned sse)
{
    size_t              n;
    u_char              buf[8192], enc2[65536];
    ngx_http_llm_sse_t  framer;

    ngx_http_llm_msg_init(&again, entry.api, grow, NULL);

    if (sse) {
        ngx_http_llm_sse_init(&framer, buf, sizeof(buf), refeed, NULL);
        assert_int_equal(ngx_http_llm_sse_feed(&framer, (const u_char *) text,
                                               strlen(text)), 0);

    } else {
        assert_int_equal(ngx_http_llm_msg_response(&again,
                             (const u_char *) text, strlen(text)), 0);
    }

    assert_int_equal(ngx_http_llm_msg_finish(&again), 0);

    again.usage = msg.usage;

    n = ngx_http_llm_msg_encode(&again, enc2, sizeof(enc2));
    assert_int_equal(n, enc_len);
    assert_memory_equal(enc2, enc, n);
}


static void
test_openai_stream_text(void **state)
{
    unsigned  events;

    begin(OAI);

    assert_int_equal(ev("", J("{'id':'c1','object':'chat.completion.chunk',"
        "'created':7,'model':'m','choices':[{'index':0,'delta':{'role':"
        "'assistant','content':''},'logprobs':null,'finish_reason':null}]}")),
        0);
    assert_int_equal(ev("", J("{'id':'c1','created':7,'model':'m','choices':"
        "[{'index':0,'delta':{'content':'Hel'},'finish_reason':null}],"
        "'usage':null}")), 0);
    assert_int_equal(ev("", J("{'id':'c1','choices':[{'index':0,'delta':"
        "{'content':'lo \\ud83d'}}]}")), 0);
    assert_int_equal(ev("", J("{'id':'c1','choices':[{'index':0,'delta':"
        "{'content':'\\ude00 w\\\"orld'}}]}")), 0);
    assert_int_equal(ev("", J("{'id':'c1','choices':[{'index':0,'delta':{},"
        "'finish_reason':'stop'}]}")), 0);
    assert_int_equal(ev("", J("{'id':'c1','choices':[],'usage':"
        "{'prompt_tokens':5,'completion_tokens':3}}")), 0);
    assert_int_equal(ev("", "[DONE]"), 0);

    msg.usage.prompt_tokens = 5;
    msg.usage.completion_tokens = 3;
    seal();

    /* deltas concatenated still escaped: the split surrogate pair rejoins */

    assert_string_equal(render_json(), J("{'id':'c1','object':"
        "'chat.completion','created':7,'model':'m','choices':[{'index':0,"
        "'message':{'role':'assistant','content':'Hello \\ud83d\\ude00 "
        "w\\\"orld'},'logprobs':null,'finish_reason':'stop'}],'usage':"
        "{'prompt_tokens':5,'completion_tokens':3,'total_tokens':8}}"));
    roundtrip(out, 0);

    /* no usage chunk unless asked; role, deltas, finish, [DONE] */

    render_sse(4, 0, &events);
    assert_null(strstr(out, "\"usage\""));
    assert_non_null(strstr(out, "data: [DONE]\n\n"));
    assert_true(events > 5);
    roundtrip(out, 1);

    /* the surrogate pair escape is never cut */

    render_sse(1, 0, &events);
    assert_non_null(strstr(out, "\"content\":\"\\ud83d\\ude00\"}"));
    roundtrip(out, 1);

    render_sse(1024, 1, &events);
    assert_non_null(strstr(out, "\"choices\":[],\"usage\":{\"prompt_tokens\""
                                ":5,\"completion_tokens\":3,"));
    assert_int_equal(events, 5);    /* role, text, finish, usage, done */
    roundtrip(out, 1);
}


static void
test_openai_stream_tools(void **state)
{
    unsigned  events;

    begin(OAI);

    assert_int_equal(ev("", J("{'id':'t','created':1,'model':'m','choices':"
        "[{'index':0,'delta':{'role':'assistant','content':null,"
        "'tool_calls':[{'index':0,'id':'call_a','type':'function',"
        "'function':{'name':'get','arguments':''}}]}}]}")), 0);
    assert_int_equal(ev("", J("{'choices':[{'index':0,'delta':{'tool_calls':"
        "[{'index':0,'function':{'arguments':'{\\\"x\\\":'}}]}}]}")), 0);
    assert_int_equal(ev("", J("{'choices':[{'index':0,'delta':{'tool_calls':"
        "[{'index':1,'id':'call_b','type':'function','function':{'name':"
        "'put','arguments':'{}'}}]}}]}")), 0);
    assert_int_equal(ev("", J("{'choices':[{'index':0,'delta':{'tool_calls':"
        "[{'function':{'arguments':'1}'},'index':0}]}}]}")), 0);
    assert_int_equal(ev("", J("{'choices':[{'index':0,'delta':{},"
        "'finish_reason':'tool_calls'}]}")), 0);

    seal();

    assert_int_equal(entry.nparts, 2);
    assert_string_equal(render_json(), J("{'id':'t','object':"
        "'chat.completion','created':1,'model':'m','choices':[{'index':0,"
        "'message':{'role':'assistant','content':null,'tool_calls':[{'id':"
        "'call_a','type':'function','function':{'name':'get','arguments':"
        "'{\\\"x\\\":1}'}},{'id':'call_b','type':'function','function':"
        "{'name':'put','arguments':'{}'}}]},'logprobs':null,"
        "'finish_reason':'tool_calls'}]}"));
    roundtrip(out, 0);

    render_sse(3, 0, &events);
    assert_non_null(strstr(out, "\"tool_calls\":[{\"index\":1,\"id\":"
                                "\"call_b\""));
    roundtrip(out, 1);
}


static void
test_openai_json(void **state)
{
    unsigned  events;

    begin(OAI);

    assert_int_equal(resp(J("{ 'id':'x', 'object':'chat.completion', "
        "'created':3, 'model':'m', 'system_fingerprint':'fp', 'choices':"
        "[{'index':0,'message':{'role':'assistant','content':'a b c d e f',"
        "'refusal':null,'annotations':[]},'logprobs':null,'finish_reason':"
        "'length'}],'usage':{'prompt_tokens':1,'completion_tokens':6,"
        "'total_tokens':7}}")), 0);

    msg.usage.prompt_tokens = 1;
    msg.usage.completion_tokens = 6;
    msg.usage.cached_tokens = 0;
    seal();

    /* cut after spaces: "a b " "c d " "e f" with 4 bytes a delta */

    render_sse(4, 0, &events);
    assert_non_null(strstr(out, "{\"content\":\"a b \"}"));
    assert_non_null(strstr(out, "{\"content\":\"e f\"}"));
    assert_int_equal(events, 6);
    roundtrip(out, 1);

    render_sse(4, 1, &events);
    assert_non_null(strstr(out, "\"prompt_tokens_details\":"
                                "{\"cached_tokens\":0}"));
}


static void
test_completions(void **state)
{
    unsigned  events;

    begin(CMP);

    assert_int_equal(ev("", J("{'id':'k','object':'text_completion',"
        "'created':2,'model':'m','choices':[{'text':'once ','index':0,"
        "'logprobs':null,'finish_reason':null}]}")), 0);
    assert_int_equal(ev("", J("{'id':'k','choices':[{'text':'upon',"
        "'index':0,'finish_reason':'stop'}]}")), 0);

    seal();

    assert_string_equal(render_json(), J("{'id':'k','object':"
        "'text_completion','created':2,'model':'m','choices':[{'text':"
        "'once upon','index':0,'logprobs':null,'finish_reason':'stop'}]}"));
    roundtrip(out, 0);

    render_sse(5, 0, &events);
    assert_null(strstr(out, "\"delta\""));
    roundtrip(out, 1);
}


static void
test_anthropic_stream(void **state)
{
    unsigned  events;

    begin(ANT);

    assert_int_equal(ev("message_start", J("{'type':'message_start',"
        "'message':{'id':'msg_1','type':'message','role':'assistant',"
        "'model':'claude','content':[],'stop_reason':null,"
        "'stop_sequence':null,'usage':{'input_tokens':10,"
        "'output_tokens':1}}}")), 0);
    assert_int_equal(ev("content_block_start", J("{'type':"
        "'content_block_start','index':0,'content_block':{'type':'text',"
        "'text':''}}")), 0);
    assert_int_equal(ev("ping", J("{'type':'ping'}")), 0);
    assert_int_equal(ev("content_block_delta", J("{'type':"
        "'content_block_delta','index':0,'delta':{'type':'text_delta',"
        "'text':'Let me look.'}}")), 0);
    assert_int_equal(ev("content_block_stop", J("{'type':"
        "'content_block_stop','index':0}")), 0);
    assert_int_equal(ev("content_block_start", J("{'type':"
        "'content_block_start','index':1,'content_block':{'type':"
        "'tool_use','id':'toolu_1','name':'search','input':{}}}")), 0);
    assert_int_equal(ev("content_block_delta", J("{'type':"
        "'content_block_delta','index':1,'delta':{'type':"
        "'input_json_delta','partial_json':'{\\\"q\\\": \\\"a'}}")), 0);
    assert_int_equal(ev("content_block_delta", J("{'type':"
        "'content_block_delta','index':1,'delta':{'type':"
        "'input_json_delta','partial_json':'\\\\\\\"b\\\"}'}}")), 0);
    assert_int_equal(ev("content_block_stop", J("{'type':"
        "'content_block_stop','index':1}")), 0);
    assert_int_equal(ev("message_delta", J("{'type':'message_delta',"
        "'delta':{'stop_reason':'tool_use','stop_sequence':null},"
        "'usage':{'output_tokens':9}}")), 0);
    assert_int_equal(ev("message_stop", J("{'type':'message_stop'}")), 0);

    msg.usage.prompt_tokens = 10;
    msg.usage.completion_tokens = 9;
    msg.usage.cached_tokens = 0;
    msg.usage.cache_write_tokens = 0;
    seal();

    /* the tool input is the JSON object the deltas spelled */

    assert_string_equal(render_json(), J("{'id':'msg_1','type':'message',"
        "'role':'assistant','model':'claude','content':[{'type':'text',"
        "'text':'Let me look.'},{'type':'tool_use','id':'toolu_1','name':"
        "'search','input':{'q': 'a\\\"b'}}],'stop_reason':'tool_use',"
        "'stop_sequence':null,'usage':{'input_tokens':10,"
        "'cache_creation_input_tokens':0,'cache_read_input_tokens':0,"
        "'output_tokens':9}}"));
    roundtrip(out, 0);

    render_sse(4, 0, &events);
    assert_true(strncmp(out, "event: message_start\ndata: ", 27) == 0);
    assert_non_null(strstr(out, "event: message_stop\ndata: "
                                "{\"type\":\"message_stop\"}\n\n"));
    assert_non_null(strstr(out, "\"output_tokens\":9}}"));
    roundtrip(out, 1);
}


static void
test_uncacheable(void **state)
{
    begin(OAI);
    assert_int_equal(ev("", J("{'choices':[{'index':0,'delta':{'content':"
        "'a'},'logprobs':{'content':[]}}]}")), -1);
    assert_string_equal(msg.uncacheable, "logprobs");

    begin(OAI);
    assert_int_equal(ev("", J("{'choices':[{'index':1,'delta':{'content':"
        "'a'}}]}")), -1);

    begin(OAI);
    assert_int_equal(ev("", J("{'error':{'message':'boom'}}")), -1);

    begin(OAI);
    assert_int_equal(ev("", "{not json"), -1);

    begin(OAI);
    assert_int_equal(ev("", J("{'choices':[{'index':0,'delta':"
        "{'reasoning_content':'hm'}}]}")), -1);

    /* no finish reason: the answer is not complete */
    begin(OAI);
    assert_int_equal(ev("", J("{'choices':[{'index':0,'delta':{'content':"
        "'a'}}]}")), 0);
    assert_int_equal(ngx_http_llm_msg_finish(&msg), -1);

    begin(ANT);
    assert_int_equal(ev("content_block_start", J("{'type':"
        "'content_block_start','index':0,'content_block':{'type':"
        "'thinking','thinking':''}}")), -1);

    begin(ANT);
    assert_int_equal(ev("error", J("{'type':'error','error':{'type':"
        "'overloaded_error','message':'x'}}")), -1);

    begin(ANT);
    assert_int_equal(resp(J("{'type':'error','error':{'type':"
                            "'api_error'}}")), -1);
}


static void
test_embeddings_raw(void **state)
{
    const char  *body;

    body = J("{'object':'list','data':[{'embedding':[0.5,1]}]}");

    begin(EMB);
    assert_int_equal(resp(body), 0);
    seal();
    assert_int_equal(entry.kind, NGX_HTTP_LLM_ENTRY_RAW);
    assert_string_equal(render_json(), body);

    body = J("{'error':{'message':'no'}}");
    begin(EMB);
    assert_int_equal(resp(body), -1);
}


static void
test_decode_rejects(void **state)
{
    size_t  n;

    begin(OAI);
    assert_int_equal(ev("", J("{'choices':[{'index':0,'delta':{'content':"
        "'abc'},'finish_reason':'stop'}]}")), 0);
    seal();

    for (n = 0; n < enc_len; n++) {
        assert_int_equal(ngx_http_llm_entry_decode(&entry, enc, n), -1);
    }

    enc[0] = 'X';
    assert_int_equal(ngx_http_llm_entry_decode(&entry, enc, enc_len), -1);
}


/*
 * Found by fuzz_entry: an entry holding a huge usage count made the
 * rendering overflow int64 when adding up total_tokens; counts outside
 * -1 .. 2^53-1 now make the entry invalid (it is a miss).
 */

static void
test_decode_rejects_huge_usage(void **state)
{
    begin(OAI);
    assert_int_equal(ev("", J("{'choices':[{'index':0,'delta':{'content':"
        "'abc'},'finish_reason':'stop'}]}")), 0);
    msg.usage.prompt_tokens = 9007199254740991;
    msg.usage.completion_tokens = 9007199254740991;
    seal();
    render_json();
    assert_non_null(strstr(out, "\"total_tokens\":18014398509481982"));

    msg.usage.prompt_tokens = INT64_MAX;
    enc_len = ngx_http_llm_msg_encode(&msg, enc, sizeof(enc));
    assert_int_equal(ngx_http_llm_entry_decode(&entry, enc, enc_len), -1);

    msg.usage.prompt_tokens = -2;
    enc_len = ngx_http_llm_msg_encode(&msg, enc, sizeof(enc));
    assert_int_equal(ngx_http_llm_entry_decode(&entry, enc, enc_len), -1);
}


/*
 * Found by fuzz_assemble: a negative "created" was kept, and the entry it
 * made did not decode (a cache entry that could never be served); it is
 * now unknown, rendered 0.
 */

static void
test_negative_created(void **state)
{
    begin(OAI);
    assert_int_equal(resp(J("{'id':'x','object':'chat.completion',"
        "'created':-1699999999,'model':'m','choices':[{'index':0,"
        "'message':{'role':'assistant','content':'hi'},"
        "'finish_reason':'stop'}]}")), 0);
    seal();
    assert_non_null(strstr(render_json(), "\"created\":0,"));
}


/*
 * Found by fuzz_assemble: tool calls in a legacy completion were kept and
 * replayed as a garbled stream; such an answer is not cached.
 */

static void
test_completion_tool_calls_uncacheable(void **state)
{
    begin(CMP);
    ev("", J("{'choices':[{'index':0,'delta':{'tool_calls':[{'index':0,"
       "'id':'c','type':'function','function':{'name':'f',"
       "'arguments':'{}'}}]}}]}"));
    assert_non_null(msg.uncacheable);
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_openai_stream_text),
        cmocka_unit_test(test_openai_stream_tools),
        cmocka_unit_test(test_openai_json),
        cmocka_unit_test(test_completions),
        cmocka_unit_test(test_anthropic_stream),
        cmocka_unit_test(test_uncacheable),
        cmocka_unit_test(test_embeddings_raw),
        cmocka_unit_test(test_decode_rejects),
        cmocka_unit_test(test_decode_rejects_huge_usage),
        cmocka_unit_test(test_completion_tool_calls_uncacheable),
        cmocka_unit_test(test_negative_created),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
