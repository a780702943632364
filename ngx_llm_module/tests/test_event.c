
/*
 * Copyright (C) ngx_llm authors
 *
 * Event and response analysis for both APIs: content, usage, finish,
 * terminators, errors; streams through the framer at every split point.
 */


#include <stdio.h>

#include "llm_test.h"
#include "ngx_http_llm_event.h"
#include "ngx_http_llm_inspect.h"


#define OAI   NGX_HTTP_LLM_API_CHAT
#define ANT   NGX_HTTP_LLM_API_MESSAGES


static ngx_http_llm_event_info_t  info;


static void
event(int api, const char *name, const char *data)
{
    memset(&info, 0x5a, sizeof(info));
    ngx_http_llm_event_analyze(api, (const u_char *) name, strlen(name),
                               (const u_char *) data, strlen(data), &info);
}


/* every body: the fast path (when it takes it) agrees with the full one */

static void
same_info(const ngx_http_llm_event_info_t *a,
    const ngx_http_llm_event_info_t *b)
{
    assert_int_equal(a->content, b->content);
    assert_int_equal(a->usage, b->usage);
    assert_int_equal(a->usage_only, b->usage_only);
    assert_int_equal(a->done, b->done);
    assert_int_equal(a->error, b->error);
    assert_int_equal(a->finish, b->finish);
    assert_int_equal(a->content_bytes, b->content_bytes);
    assert_memory_equal(&a->u, &b->u, sizeof(ngx_http_llm_usage_t));
}


static void
response_n(int api, const char *body, size_t len)
{
    ngx_http_llm_event_info_t  full;

    memset(&info, 0x5a, sizeof(info));
    ngx_http_llm_response_analyze(api, (const u_char *) body, len, &info);

    memset(&full, 0xa5, sizeof(full));
    ngx_http_llm_response_analyze_full(api, (const u_char *) body, len,
                                       &full);
    same_info(&info, &full);
}


static void
response(int api, const char *body)
{
    response_n(api, body, strlen(body));
}


#define assert_flags(c, u, uo, d, e, f)                                       \
    do {                                                                      \
        assert_int_equal(info.content, c);                                    \
        assert_int_equal(info.usage, u);                                      \
        assert_int_equal(info.usage_only, uo);                                \
        assert_int_equal(info.done, d);                                       \
        assert_int_equal(info.error, e);                                      \
        assert_int_equal(info.finish, f);                                     \
    } while (0)

#define assert_usage(p, c, cr, cw, r)                                         \
    do {                                                                      \
        assert_int_equal(info.u.prompt_tokens, p);                            \
        assert_int_equal(info.u.completion_tokens, c);                        \
        assert_int_equal(info.u.cached_tokens, cr);                           \
        assert_int_equal(info.u.cache_write_tokens, cw);                      \
        assert_int_equal(info.u.reasoning_tokens, r);                         \
    } while (0)

#define assert_empty()                                                        \
    do {                                                                      \
        assert_flags(0, 0, 0, 0, 0, 0);                                       \
        assert_int_equal(info.content_bytes, 0);                              \
        assert_usage(-1, -1, -1, -1, -1);                                     \
    } while (0)


static void
test_openai_chunks(void **state)
{
    /* the first chunk: a role and an empty content are not content */

    event(OAI, "", J("{'id':'c1','object':'chat.completion.chunk','choices':"
                     "[{'index':0,'delta':{'role':'assistant','content':''},"
                     "'finish_reason':null}],'usage':null}"));
    assert_empty();

    event(OAI, "", J("{'choices':[{'index':0,'delta':{'content':'Hel\\nlo "
                     "\\u00e9'},'finish_reason':null}]}"));
    assert_flags(1, 0, 0, 0, 0, 0);
    assert_int_equal(info.content_bytes, strlen("Hel\nlo \xc3\xa9"));

    event(OAI, "", J("{'choices':[{'delta':{'content':null,'tool_calls':"
                     "[{'index':0,'id':'call_1','type':'function','function':"
                     "{'name':'get','arguments':''}}]}}]}"));
    assert_flags(1, 0, 0, 0, 0, 0);
    assert_int_equal(info.content_bytes, 3);

    event(OAI, "", J("{'choices':[{'delta':{'tool_calls':[{'index':0,"
                     "'function':{'arguments':'{\\'a\\':1}'}}]}}]}"));
    assert_flags(1, 0, 0, 0, 0, 0);
    assert_int_equal(info.content_bytes, 7);

    event(OAI, "", J("{'choices':[{'delta':{'refusal':'no'}}]}"));
    assert_flags(1, 0, 0, 0, 0, 0);

    event(OAI, "", J("{'choices':[{'delta':{'reasoning_content':'hmm'}}]}"));
    assert_flags(1, 0, 0, 0, 0, 0);
    assert_int_equal(info.content_bytes, 3);

    event(OAI, "", J("{'choices':[{'delta':{'reasoning':'hmm'}}]}"));
    assert_flags(1, 0, 0, 0, 0, 0);

    event(OAI, "", J("{'choices':[{'index':0,'delta':{},'finish_reason':"
                     "'stop'}],'usage':null}"));
    assert_flags(0, 0, 0, 0, 0, 1);

    /* the usage-only chunk of include_usage */

    event(OAI, "", J("{'id':'c1','choices':[],'usage':{'prompt_tokens':12,"
                     "'completion_tokens':34,'total_tokens':46,"
                     "'prompt_tokens_details':{'cached_tokens':8,"
                     "'audio_tokens':0},'completion_tokens_details':"
                     "{'reasoning_tokens':5}}}"));
    assert_flags(0, 1, 1, 0, 0, 0);
    assert_usage(12, 34, 8, -1, 5);

    /* usage riding on a content chunk (vLLM continuous usage) */

    event(OAI, "", J("{'choices':[{'delta':{'content':'x'}}],'usage':"
                     "{'prompt_tokens':1,'completion_tokens':1,"
                     "'prompt_tokens_details':null}}"));
    assert_flags(1, 1, 0, 0, 0, 0);
    assert_usage(1, 1, -1, -1, -1);

    /* completions */

    event(NGX_HTTP_LLM_API_COMPLETIONS, "",
          J("{'object':'text_completion','choices':[{'text':'abc',"
            "'index':0,'finish_reason':null}]}"));
    assert_flags(1, 0, 0, 0, 0, 0);
    assert_int_equal(info.content_bytes, 3);

    /* the terminator, with whitespace around */

    event(OAI, "", "[DONE]");
    assert_flags(0, 0, 0, 1, 0, 0);
    event(OAI, "", " [DONE]\n");
    assert_flags(0, 0, 0, 1, 0, 0);
    event(OAI, "", "[DONE");
    assert_empty();
    event(OAI, "", "[DONE]x");
    assert_empty();

    /* errors in the stream */

    event(OAI, "", J("{'error':{'message':'overloaded','type':"
                     "'server_error'}}"));
    assert_flags(0, 0, 0, 0, 1, 0);
    event(OAI, "", J("{'object':'error','message':'bad','code':400}"));
    assert_flags(0, 0, 0, 0, 1, 0);
    event(OAI, "", J("{'choices':[],'error':null}"));
    assert_flags(0, 0, 0, 0, 0, 0);
}


static void
test_anthropic_events(void **state)
{
    event(ANT, "message_start",
          J("{'type':'message_start','message':{'id':'msg_1','type':"
            "'message','role':'assistant','content':[],'model':'claude',"
            "'stop_reason':null,'usage':{'input_tokens':25,"
            "'cache_creation_input_tokens':100,'cache_read_input_tokens':"
            "2000,'output_tokens':1}}}"));
    assert_flags(0, 1, 0, 0, 0, 0);
    assert_usage(2125, 1, 2000, 100, -1);

    event(ANT, "content_block_start",
          J("{'type':'content_block_start','index':0,'content_block':"
            "{'type':'text','text':''}}"));
    assert_empty();

    event(ANT, "content_block_start",
          J("{'type':'content_block_start','index':1,'content_block':"
            "{'type':'tool_use','id':'toolu_1','name':'get_weather',"
            "'input':{}}}"));
    assert_flags(1, 0, 0, 0, 0, 0);
    assert_int_equal(info.content_bytes, strlen("get_weather"));

    event(ANT, "content_block_delta",
          J("{'type':'content_block_delta','index':0,'delta':{'type':"
            "'text_delta','text':'Hi \\ud83d\\ude00'}}"));
    assert_flags(1, 0, 0, 0, 0, 0);
    assert_int_equal(info.content_bytes, 7);

    event(ANT, "content_block_delta",
          J("{'type':'content_block_delta','index':1,'delta':{'type':"
            "'input_json_delta','partial_json':'{\\'loc'}}"));
    assert_flags(1, 0, 0, 0, 0, 0);
    assert_int_equal(info.content_bytes, 5);

    event(ANT, "content_block_delta",
          J("{'type':'content_block_delta','index':0,'delta':{'type':"
            "'thinking_delta','thinking':'so'}}"));
    assert_flags(1, 0, 0, 0, 0, 0);

    event(ANT, "content_block_delta",
          J("{'type':'content_block_delta','index':0,'delta':{'type':"
            "'signature_delta','signature':'EqQBCgIYAhIM'}}"));
    assert_empty();

    event(ANT, "content_block_stop", J("{'type':'content_block_stop',"
                                       "'index':0}"));
    assert_empty();

    event(ANT, "message_delta",
          J("{'type':'message_delta','delta':{'stop_reason':'end_turn',"
            "'stop_sequence':null},'usage':{'output_tokens':15}}"));
    assert_flags(0, 1, 0, 0, 0, 1);
    assert_usage(-1, 15, -1, -1, -1);

    event(ANT, "message_stop", J("{'type':'message_stop'}"));
    assert_flags(0, 0, 0, 1, 0, 0);

    /* by the data type alone, or the event name alone */

    event(ANT, "", J("{'type':'message_stop'}"));
    assert_flags(0, 0, 0, 1, 0, 0);
    event(ANT, "message_stop", "{}");
    assert_flags(0, 0, 0, 1, 0, 0);

    event(ANT, "ping", J("{'type':'ping'}"));
    assert_empty();

    event(ANT, "error",
          J("{'type':'error','error':{'type':'overloaded_error',"
            "'message':'Overloaded'}}"));
    assert_flags(0, 0, 0, 0, 1, 0);
    event(ANT, "", J("{'type':'error','error':{}}"));
    assert_flags(0, 0, 0, 0, 1, 0);
}


static void
test_usage_merge(void **state)
{
    ngx_http_llm_usage_t  total;

    ngx_http_llm_usage_init(&total);
    assert_int_equal(total.prompt_tokens, -1);
    assert_int_equal(total.reasoning_tokens, -1);

    event(ANT, "message_start",
          J("{'type':'message_start','message':{'usage':{'input_tokens':10,"
            "'cache_read_input_tokens':0,'output_tokens':1}}}"));
    ngx_http_llm_usage_merge(&total, &info.u);

    event(ANT, "message_delta",
          J("{'type':'message_delta','delta':{'stop_reason':'tool_use'},"
            "'usage':{'output_tokens':42}}"));
    ngx_http_llm_usage_merge(&total, &info.u);

    assert_int_equal(total.prompt_tokens, 10);
    assert_int_equal(total.completion_tokens, 42);
    assert_int_equal(total.cached_tokens, 0);
    assert_int_equal(total.cache_write_tokens, -1);
    assert_int_equal(total.reasoning_tokens, -1);

    /* the newer message_delta carries cumulative input figures too */

    event(ANT, "message_delta",
          J("{'type':'message_delta','delta':{'stop_reason':'end_turn'},"
            "'usage':{'input_tokens':10,'cache_creation_input_tokens':5,"
            "'cache_read_input_tokens':0,'output_tokens':50}}"));
    ngx_http_llm_usage_merge(&total, &info.u);

    assert_int_equal(total.prompt_tokens, 15);
    assert_int_equal(total.completion_tokens, 50);
    assert_int_equal(total.cache_write_tokens, 5);

    /* negative or non-integer figures are ignored */

    event(OAI, "", J("{'choices':[],'usage':{'prompt_tokens':-1,"
                     "'completion_tokens':1.5,'total_tokens':'x'}}"));
    assert_int_equal(info.usage, 0);
    assert_usage(-1, -1, -1, -1, -1);
}


static void
test_garbage(void **state)
{
    unsigned     i;
    char         deep[300];
    const char  *bad[] = {
        "",
        " ",
        "{",
        "}",
        "[]",
        "null",
        "42",
        "\"choices\"",
        "{\"choices\":[{\"delta\":{\"content\":\"x\"}}]",
        "{\"choices\":[{\"delta\":{\"content\":\"x\"}}]}}",
        "{\"choices\":[{\"delta\":{\"content\":\"x\"}}]} trailing",
        "{\"usage\":{\"prompt_tokens\":5,}}",
        "{\"type\":\"message_stop\"",
        "{\"choices\":[{\"delta\":{\"content\":\"\xff\"}}]}",
        "{\"choices\":[{\"delta\":{\"content\":\"a\\x\"}}]}",
        "{\"choices\":[{\"text\":\"a\"},]}",
        "data: {\"a\":1}",
        "\x00\x01\x02",
    };

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        event(OAI, "", bad[i]);
        assert_empty();
        event(ANT, "message_stop", bad[i]);
        assert_empty();
        response(OAI, bad[i]);
        assert_empty();
    }

    /* deep nesting is refused, not followed */

    memset(deep, '[', sizeof(deep));
    memcpy(deep, "{\"x\":", 5);
    deep[sizeof(deep) - 1] = '\0';
    event(OAI, "", deep);
    assert_empty();

    /* shapes that are valid JSON but not what we expect: no information */

    event(OAI, "", J("{'choices':{'delta':1},'usage':[1],'delta':'x',"
                     "'content':{},'message':5}"));
    assert_empty();
    event(OAI, "", J("{'choices':[1,'x',null,{'delta':[],'text':5}]}"));
    assert_empty();
}


static void
test_responses(void **state)
{
    response(OAI, J("{'id':'chatcmpl-1','object':'chat.completion','choices':"
                    "[{'index':0,'message':{'role':'assistant','content':"
                    "'Hello there','refusal':null},'finish_reason':'stop'}],"
                    "'usage':{'prompt_tokens':9,'completion_tokens':2,"
                    "'total_tokens':11,'prompt_tokens_details':"
                    "{'cached_tokens':0},'completion_tokens_details':"
                    "{'reasoning_tokens':0}}}"));
    assert_flags(1, 1, 0, 0, 0, 1);
    assert_int_equal(info.content_bytes, 11);
    assert_usage(9, 2, 0, -1, 0);

    response(OAI, J("{'object':'chat.completion','choices':[{'message':"
                    "{'role':'assistant','content':null,'tool_calls':[{'id':"
                    "'c','type':'function','function':{'name':'f','arguments':"
                    "'{}'}}]},'finish_reason':'tool_calls'}],'usage':"
                    "{'prompt_tokens':5,'completion_tokens':7}}"));
    assert_flags(1, 1, 0, 0, 0, 1);
    assert_int_equal(info.content_bytes, 3);

    response(NGX_HTTP_LLM_API_COMPLETIONS,
             J("{'object':'text_completion','choices':[{'text':' world',"
               "'finish_reason':'length'}],'usage':{'prompt_tokens':1,"
               "'completion_tokens':2}}"));
    assert_flags(1, 1, 0, 0, 0, 1);
    assert_int_equal(info.content_bytes, 6);

    response(NGX_HTTP_LLM_API_EMBEDDINGS,
             J("{'object':'list','data':[{'object':'embedding','index':0,"
               "'embedding':[0.1,-2e-3,3]}],'model':'e','usage':"
               "{'prompt_tokens':8,'total_tokens':8}}"));
    assert_flags(0, 1, 0, 0, 0, 0);
    assert_usage(8, -1, -1, -1, -1);

    response(ANT, J("{'id':'msg_1','type':'message','role':'assistant',"
                    "'content':[{'type':'thinking','thinking':'hm',"
                    "'signature':'x'},{'type':'text','text':'Hi!'},"
                    "{'type':'tool_use','id':'t','name':'f','input':"
                    "{'a':1}}],'stop_reason':'tool_use','usage':"
                    "{'input_tokens':3,'cache_read_input_tokens':4,"
                    "'cache_creation_input_tokens':5,'output_tokens':6}}"));
    assert_flags(1, 1, 0, 0, 0, 1);
    assert_int_equal(info.content_bytes, 2 + 3 + 1 + 7);
    assert_usage(12, 6, 4, 5, -1);

    response(ANT, J("{'type':'message','content':[],'stop_reason':null,"
                    "'usage':{'input_tokens':3,'output_tokens':0}}"));
    assert_flags(0, 1, 0, 0, 0, 0);
    assert_usage(3, 0, -1, -1, -1);

    /* errors */

    response(OAI, J("{'error':{'message':'Invalid key','type':"
                    "'invalid_request_error','param':null,'code':"
                    "'invalid_api_key'}}"));
    assert_flags(0, 0, 0, 0, 1, 0);

    response(ANT, J("{'type':'error','error':{'type':'rate_limit_error',"
                    "'message':'slow down'}}"));
    assert_flags(0, 0, 0, 0, 1, 0);

    /* whitespace around the body is fine */

    response(OAI, J("\n {'choices':[{'message':{'content':'x'}}]} \r\n"));
    assert_flags(1, 0, 0, 0, 0, 0);
}


/*
 * A chat.completion takes the fast path, usage object included: the same
 * figures as the full analysis for the shapes only one of them reads,
 * and nothing at all from a cut or trailed body
 */

static void
test_response_fast(void **state)
{
    size_t       i, len;
    const char  *body;

    body = J("{'id':'chatcmpl-1','object':'chat.completion','created':1,"
             "'model':'m','choices':[{'index':0,'message':{'role':"
             "'assistant','content':'Hi \u00e9','refusal':null,"
             "'annotations':[]},'logprobs':null,'finish_reason':'stop'}],"
             "'usage':{'prompt_tokens':22,'completion_tokens':16,"
             "'total_tokens':38,'prompt_tokens_details':{'cached_tokens':"
             "16,'audio_tokens':0},'completion_tokens_details':"
             "{'reasoning_tokens':3}},'system_fingerprint':'fp'}");

    response(OAI, body);
    assert_flags(1, 1, 0, 0, 0, 1);
    assert_int_equal(info.content_bytes, 5);
    assert_usage(22, 16, 16, -1, 3);

    /* every cut of it is no response at all */

    len = strlen(body);

    for (i = 0; i < len; i++) {
        response_n(OAI, body, i);
        assert_empty();
    }

    /* nor is it with something after it */

    response(OAI, J("{'choices':[],'usage':{'prompt_tokens':1}} x"));
    assert_empty();

    response(OAI, J("{'choices':[],'usage':{'prompt_tokens':1}}}"));
    assert_empty();

    /* escaped keys in usage (the fast path reads it with the cursor) */

    response(OAI, J("{'choices':[{'message':{'content':'x'}}],'usage':"
                    "{'prompt\\u005ftokens':7,'completion_tokens':2}}"));
    assert_flags(1, 1, 0, 0, 0, 0);
    assert_usage(7, 2, -1, -1, -1);

    /* a usage-only body, like the include_usage chunk */

    response(OAI, J("{'choices':[],'usage':{'prompt_tokens':4,"
                    "'completion_tokens':0}}"));
    assert_flags(0, 1, 1, 0, 0, 0);
    assert_usage(4, 0, -1, -1, -1);

    /* counts the fast path leaves to the full analysis */

    response(OAI, J("{'choices':[],'usage':{'prompt_tokens':-1,"
                    "'completion_tokens':2.0,'prompt_tokens_details':null,"
                    "'completion_tokens_details':{'reasoning_tokens':1e1}}}"));
    assert_flags(0, 1, 1, 0, 0, 0);
    assert_usage(-1, 2, -1, -1, 10);

    response(OAI, J("{'choices':[],'usage':{'prompt_tokens':"
                    "12345678901234567890}}"));
    assert_flags(0, 0, 0, 0, 0, 0);
    assert_usage(-1, -1, -1, -1, -1);

    response(OAI, J("{'choices':[],'usage':{'prompt_tokens':012}}"));
    assert_empty();

    /* Anthropic names in an OpenAI-shaped body: the same sum */

    response(OAI, J("{'choices':[],'usage':{'input_tokens':3,"
                    "'cache_read_input_tokens':4,"
                    "'cache_creation_input_tokens':5,'output_tokens':6,"
                    "'prompt_tokens_details':{'cached_tokens':1}}}"));
    assert_flags(0, 1, 1, 0, 0, 0);
    assert_usage(12, 6, 1, 5, -1);

    /* a bad member in usage makes the body nothing, on either path */

    response(OAI, J("{'choices':[],'usage':{'prompt_tokens':4,}}"));
    assert_empty();

    response(OAI, J("{'choices':[{'message':{'tool_calls':[]}}],'usage':"
                    "{'prompt_tokens':4,}}"));
    assert_empty();

    /* an error object after choices still makes it an error (full path) */

    response(OAI, J("{'choices':[],'usage':{'prompt_tokens':4},"
                    "'error':{'message':'x'}}"));
    assert_flags(0, 1, 1, 0, 1, 0);
}


/* a whole stream through the framer, split at every point */

typedef struct {
    int                         api;
    unsigned                    events;
    int                         first_content;  /* event index, or -1 */
    unsigned                    content_events;
    size_t                      content_bytes;
    unsigned                    usage_only;
    uint64_t                    usage_only_start;
    uint64_t                    usage_only_end;
    unsigned                    done;
    unsigned                    finish;
    unsigned                    errors;
    ngx_http_llm_usage_t        u;
} watch_t;


static int
on_event(ngx_http_llm_sse_t *sse, const u_char *name, size_t name_len,
    const u_char *data, size_t len, uint64_t start, uint64_t end)
{
    watch_t                    *w;
    ngx_http_llm_event_info_t   ei;

    w = sse->data;

    ngx_http_llm_event_analyze(w->api, name, name_len, data, len, &ei);

    if (ei.content) {
        if (w->first_content < 0) {
            w->first_content = w->events;
        }

        w->content_events++;
    }

    if (ei.usage_only) {
        w->usage_only++;
        w->usage_only_start = start;
        w->usage_only_end = end;
    }

    w->content_bytes += ei.content_bytes;
    w->done += ei.done;
    w->finish += ei.finish;
    w->errors += ei.error;
    ngx_http_llm_usage_merge(&w->u, &ei.u);
    w->events++;

    return 0;
}


static void
watch(int api, const char *s, size_t len, size_t cut, size_t step,
    watch_t *w)
{
    size_t               i, n;
    u_char               buf[1024];
    ngx_http_llm_sse_t   sse;

    memset(w, 0, sizeof(watch_t));
    w->api = api;
    w->first_content = -1;
    ngx_http_llm_usage_init(&w->u);

    ngx_http_llm_sse_init(&sse, buf, sizeof(buf), on_event, w);

    if (step) {
        for (i = 0; i < len; i += n) {
            n = (len - i < step) ? len - i : step;
            assert_int_equal(ngx_http_llm_sse_feed(&sse,
                                                   (const u_char *) s + i, n),
                             0);
        }

        return;
    }

    assert_int_equal(ngx_http_llm_sse_feed(&sse, (const u_char *) s, cut), 0);
    assert_int_equal(ngx_http_llm_sse_feed(&sse, (const u_char *) s + cut,
                                           len - cut), 0);
}


static void
assert_watch_invariant(int api, const char *s, const watch_t *ref)
{
    size_t   len, i;
    watch_t  w;

    len = strlen(s);

    for (i = 0; i <= len; i++) {
        watch(api, s, len, i, 0, &w);

        if (memcmp(&w, ref, sizeof(watch_t)) != 0) {
            print_error("split at %zu differs\n", i);
            fail();
        }
    }

    for (i = 1; i <= 7; i++) {
        watch(api, s, len, 0, i, &w);
        assert_true(memcmp(&w, ref, sizeof(watch_t)) == 0);
    }
}


static void
test_openai_stream(void **state)
{
    char        s[2048];
    watch_t     ref;
    const char *usage;

    strcpy(s, "data: {\"choices\":[{\"delta\":{\"role\":\"assistant\","
              "\"content\":\"\"}}]}\r\n\r\n"
              ": keep-alive\r\n\r\n"
              "data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\r\n\r\n"
              "data: {\"choices\":[{\"delta\":{\"content\":\" there\"}}]}"
              "\r\n\r\n"
              "data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}]}"
              "\r\n\r\n");

    usage = "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":10,"
            "\"completion_tokens\":2,\"prompt_tokens_details\":"
            "{\"cached_tokens\":4}}}\r\n\r\n";
    strcat(s, usage);
    strcat(s, "data: [DONE]\r\n\r\n");

    watch(OAI, s, strlen(s), 0, 0, &ref);

    assert_int_equal(ref.events, 6);
    assert_int_equal(ref.first_content, 1);
    assert_int_equal(ref.content_events, 2);
    assert_int_equal(ref.content_bytes, 8);
    assert_int_equal(ref.finish, 1);
    assert_int_equal(ref.done, 1);
    assert_int_equal(ref.errors, 0);
    assert_int_equal(ref.usage_only, 1);
    assert_int_equal(ref.u.prompt_tokens, 10);
    assert_int_equal(ref.u.completion_tokens, 2);
    assert_int_equal(ref.u.cached_tokens, 4);

    /* the range of the usage-only chunk, to cut it from the stream */

    assert_int_equal(ref.usage_only_start, strstr(s, usage) - s);
    assert_int_equal(ref.usage_only_end,
                     strstr(s, usage) - s + strlen(usage) - 1);

    assert_watch_invariant(OAI, s, &ref);
}


static void
test_anthropic_stream(void **state)
{
    watch_t      ref;
    const char  *s;

    s = "event: message_start\n"
        "data: {\"type\":\"message_start\",\"message\":{\"id\":\"m\","
        "\"usage\":{\"input_tokens\":20,\"cache_read_input_tokens\":30,"
        "\"cache_creation_input_tokens\":0,\"output_tokens\":1}}}\n\n"
        "event: content_block_start\n"
        "data: {\"type\":\"content_block_start\",\"index\":0,"
        "\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n"
        "event: ping\n"
        "data: {\"type\": \"ping\"}\n\n"
        "event: content_block_delta\n"
        "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":"
        "{\"type\":\"text_delta\",\"text\":\"Hello\"}}\n\n"
        "event: content_block_stop\n"
        "data: {\"type\":\"content_block_stop\",\"index\":0}\n\n"
        "event: message_delta\n"
        "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":"
        "\"end_turn\",\"stop_sequence\":null},\"usage\":"
        "{\"output_tokens\":12}}\n\n"
        "event: message_stop\n"
        "data: {\"type\":\"message_stop\"}\n\n";

    watch(ANT, s, strlen(s), 0, 0, &ref);

    assert_int_equal(ref.events, 7);
    assert_int_equal(ref.first_content, 3);
    assert_int_equal(ref.content_bytes, 5);
    assert_int_equal(ref.finish, 1);
    assert_int_equal(ref.done, 1);
    assert_int_equal(ref.usage_only, 0);
    assert_int_equal(ref.u.prompt_tokens, 50);
    assert_int_equal(ref.u.completion_tokens, 12);
    assert_int_equal(ref.u.cached_tokens, 30);
    assert_int_equal(ref.u.cache_write_tokens, 0);

    assert_watch_invariant(ANT, s, &ref);

    /* an error after the headers */

    s = "event: error\n"
        "data: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\","
        "\"message\":\"Overloaded\"}}\n\n";

    watch(ANT, s, strlen(s), 0, 0, &ref);
    assert_int_equal(ref.errors, 1);
    assert_int_equal(ref.first_content, -1);
    assert_watch_invariant(ANT, s, &ref);
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_openai_chunks),
        cmocka_unit_test(test_anthropic_events),
        cmocka_unit_test(test_usage_merge),
        cmocka_unit_test(test_garbage),
        cmocka_unit_test(test_responses),
        cmocka_unit_test(test_response_fast),
        cmocka_unit_test(test_openai_stream),
        cmocka_unit_test(test_anthropic_stream),
    };

    return cmocka_run_group_tests_name("event", tests, NULL, NULL);
}
