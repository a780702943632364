
/*
 * Copyright (C) ngx_llm authors
 *
 * Request body inspector: validation, errors and their parameters,
 * extracted fields, the prompt estimate, the canonical hash.
 */


#include <math.h>
#include <stdio.h>

#include "llm_test.h"
#include "llm_test_body.h"
#include "ngx_http_llm_inspect.h"


#define CHAT      NGX_HTTP_LLM_API_CHAT
#define COMPL     NGX_HTTP_LLM_API_COMPLETIONS
#define EMBED     NGX_HTTP_LLM_API_EMBEDDINGS
#define ANTH      NGX_HTTP_LLM_API_MESSAGES
#define ANY       NGX_HTTP_LLM_API_UNKNOWN

#define OK        NGX_HTTP_LLM_INSPECT_OK
#define EJSON     NGX_HTTP_LLM_INSPECT_EJSON
#define ETYPE     NGX_HTTP_LLM_INSPECT_ETYPE
#define EFIELD    NGX_HTTP_LLM_INSPECT_EFIELD
#define EDEPTH    NGX_HTTP_LLM_INSPECT_EDEPTH
#define EDUP      NGX_HTTP_LLM_INSPECT_EDUP


static ngx_http_llm_request_t  req;


static int
inspect_n(int api, const char *body, size_t len, unsigned depth)
{
    memset(&req, 0x5a, sizeof(req));
    req.max_depth = depth;

    return ngx_http_llm_inspect(&req, api, (const u_char *) body, len);
}


static int
inspect(int api, const char *body)
{
    return inspect_n(api, body, strlen(body), 0);
}


/* the body must be accepted; returns its hash */

static void
hash_of(int api, const char *body, uint64_t h[2])
{
    int  rc;

    rc = inspect(api, body);

    if (rc != OK) {
        print_error("rejected (%s at %zu): %s\n", req.error,
                    req.error_offset, body);
    }

    assert_int_equal(rc, OK);

    h[0] = req.hash[0];
    h[1] = req.hash[1];
}


static void
assert_same_hash(int api, const char *a, const char *b)
{
    uint64_t  ha[2], hb[2];

    hash_of(api, a, ha);
    hash_of(api, b, hb);

    if (ha[0] != hb[0] || ha[1] != hb[1]) {
        print_error("hashes differ:\n  %s\n  %s\n", a, b);
        fail();
    }
}


static void
assert_other_hash(int api, const char *a, const char *b)
{
    uint64_t  ha[2], hb[2];

    hash_of(api, a, ha);
    hash_of(api, b, hb);

    if (ha[0] == hb[0] && ha[1] == hb[1]) {
        print_error("hashes equal:\n  %s\n  %s\n", a, b);
        fail();
    }
}


static void
assert_error(int api, const char *body, int rc, const char *error,
    const char *param)
{
    int  got;

    got = inspect(api, body);

    if (got != rc) {
        print_error("rc %d (%s) instead of %d: %s\n", got,
                    req.error ? req.error : "-", rc, body);
        fail();
    }

    assert_non_null(req.error);

    if (error) {
        assert_string_equal(req.error, error);
    }

    if (param) {
        assert_non_null(req.error_param);
        assert_string_equal(req.error_param, param);

    } else {
        assert_null(req.error_param);
    }
}


static void
test_fields_chat(void **state)
{
    const char  *body;

    body = J("{'model':'gpt-4o','messages':[{'role':'system','content':"
             "'be brief'},{'role':'user','content':'hi'}],"
             "'stream':true,'stream_options':{'include_usage':true},"
             "'max_tokens':100,'n':2,'temperature':0.5,'top_p':0.25,"
             "'seed':-42,'tools':[{'type':'function','function':{'name':"
             "'f'}},{'type':'function','function':{'name':'g'}}],"
             "'response_format':{'type':'json_object'},'user':'u1'}");

    assert_int_equal(inspect(CHAT, body), OK);

    assert_int_equal(req.model.len, 6);
    assert_memory_equal(req.model.data, "gpt-4o", 6);
    assert_ptr_equal(req.model.data, body + 10);
    assert_int_equal(req.model_escaped, 0);
    assert_int_equal(req.stream, 1);
    assert_int_equal(req.include_usage, 1);
    assert_int_equal(req.max_tokens, 100);
    assert_int_equal(req.n, 2);
    assert_true(req.temperature == 0.5);
    assert_true(req.top_p == 0.25);
    assert_int_equal(req.has_seed, 1);
    assert_int_equal(req.seed, -42);
    assert_int_equal(req.tools, 2);
    assert_int_equal(req.messages, 2);
    assert_int_equal(req.images, 0);
    assert_int_equal(req.json_mode, 1);
    assert_null(req.error);
    assert_int_equal(req.object_end, strlen(body) - 1);
    assert_int_equal(req.object_empty, 0);
    assert_true(req.stream_options_start > 0);
    assert_int_equal(req.stream_options_end - req.stream_options_start,
                     strlen("{'include_usage':true}"));
    assert_memory_equal(body + req.stream_options_start,
                        J("{'include_usage':true}"),
                        strlen("{'include_usage':true}"));
}


static void
test_fields_absent(void **state)
{
    const char  *body;

    body = J("  {'model':'m','messages':[{'role':'user','content':'x'}]}\n");

    assert_int_equal(inspect(CHAT, body), OK);

    assert_int_equal(req.stream, NGX_HTTP_LLM_UNSET_FLAG);
    assert_int_equal(req.include_usage, NGX_HTTP_LLM_UNSET_FLAG);
    assert_int_equal(req.max_tokens, -1);
    assert_int_equal(req.n, -1);
    assert_true(isnan(req.temperature));
    assert_true(isnan(req.top_p));
    assert_int_equal(req.has_seed, 0);
    assert_int_equal(req.tools, 0);
    assert_int_equal(req.json_mode, 0);
    assert_int_equal(req.stream_options_start, -1);
    assert_int_equal(req.stream_options_end, -1);
    assert_int_equal(req.object_end, strlen(body) - 2);

    /* null is absent for the optional fields */

    body = J("{'model':'m','messages':[{'role':'user','content':'x'}],"
             "'stream':null,'max_tokens':null,'n':null,'temperature':null,"
             "'top_p':null,'seed':null,'tools':null,'stream_options':null}");

    assert_int_equal(inspect(CHAT, body), OK);
    assert_int_equal(req.stream, NGX_HTTP_LLM_UNSET_FLAG);
    assert_int_equal(req.max_tokens, -1);
    assert_int_equal(req.n, -1);
    assert_true(isnan(req.temperature));
    assert_int_equal(req.has_seed, 0);
    assert_int_equal(req.tools, 0);

    /* a null stream_options still has its range, for the rewrite */
    assert_int_equal(req.stream_options_end - req.stream_options_start, 4);
    assert_memory_equal(body + req.stream_options_start, "null", 4);
}


static void
test_fields_misc(void **state)
{
    const char  *body;

    /* stream false, include_usage false, max_completion_tokens wins */

    body = J("{'max_completion_tokens':7,'model':'m','stream':false,"
             "'messages':[{'role':'user','content':'x'}],'max_tokens':9,"
             "'stream_options':{'include_usage':false},"
             "'response_format':{'type':'text'}}");

    assert_int_equal(inspect(CHAT, body), OK);
    assert_int_equal(req.stream, 0);
    assert_int_equal(req.include_usage, 0);
    assert_int_equal(req.max_tokens, 7);
    assert_int_equal(req.json_mode, 0);

    /* json_schema; integers in any spelling; escaped model */

    body = J("{'model':'gpt\\u002d4','messages':[{'role':'user','content':"
             "'x'}],'response_format':{'type':'json_schema','json_schema':"
             "{}},'max_tokens':1e3,'n':1.0,'seed':12345678901234567}");

    assert_int_equal(inspect(CHAT, body), OK);
    assert_int_equal(req.json_mode, 1);
    assert_int_equal(req.max_tokens, 1000);
    assert_int_equal(req.n, 1);
    assert_int_equal(req.seed, 12345678901234567LL);
    assert_int_equal(req.model_escaped, 1);
    assert_int_equal(req.model.len, strlen("gpt\\u002d4"));

    {
        u_char  buf[16];

        assert_int_equal(ngx_http_llm_unescape(req.model.data, req.model.len,
                                               buf, sizeof(buf)), 5);
        assert_memory_equal(buf, "gpt-4", 5);
        assert_int_equal(ngx_http_llm_unescape(req.model.data, req.model.len,
                                               buf, 3), -1);
    }

    /* an empty object body for an unknown API */

    assert_int_equal(inspect(ANY, " {  } "), OK);
    assert_int_equal(req.object_empty, 1);
    assert_int_equal(req.object_end, 4);
}


static void
test_fields_anthropic(void **state)
{
    const char  *body;

    body = J("{'model':'claude','max_tokens':1024,'system':[{'type':'text',"
             "'text':'You are terse.','cache_control':{'type':'ephemeral'}}],"
             "'messages':[{'role':'user','content':[{'type':'image',"
             "'source':{'type':'base64','media_type':'image/png','data':"
             "'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk'}},"
             "{'type':'text','text':'what is it?'}]}],'stream':true,"
             "'tools':[{'name':'t','input_schema':{'type':'object'}}],"
             "'metadata':{'user_id':'abc'}}");

    assert_int_equal(inspect(ANTH, body), OK);
    assert_int_equal(req.max_tokens, 1024);
    assert_int_equal(req.messages, 1);
    assert_int_equal(req.images, 1);
    assert_int_equal(req.tools, 1);
    assert_int_equal(req.stream, 1);

    /* text: the system text, the user text; the image data is not text */

    assert_int_equal(req.text_bytes,
                     strlen("You are terse.") + strlen("what is it?")
                     + strlen("[{'name':'t','input_schema':{'type':"
                              "'object'}}]"));
}


static void
test_fields_completions_embeddings(void **state)
{
    assert_int_equal(inspect(COMPL, J("{'model':'m','prompt':'abcdefgh'}")),
                     OK);
    assert_int_equal(req.text_bytes, 8);
    assert_int_equal(req.prompt_tokens, 2);
    assert_int_equal(req.messages, 0);

    /* token id arrays count one token per id */

    assert_int_equal(inspect(COMPL,
                             J("{'model':'m','prompt':[[1,2,3],[4,5]]}")),
                     OK);
    assert_int_equal(req.prompt_tokens, 5);

    assert_int_equal(inspect(EMBED,
                             J("{'model':'e','input':['abcd','efgh',"
                               "'ij']}")), OK);
    assert_int_equal(req.text_bytes, 10);
    assert_int_equal(req.prompt_tokens, 3);

    assert_int_equal(inspect(EMBED, J("{'model':'e','input':'x',"
                                      "'encoding_format':'float'}")), OK);
    assert_int_equal(req.prompt_tokens, 1);
}


static void
test_estimate(void **state)
{
    /* 16 text bytes = 4 tokens, 2 messages = 8, reply = 3 */

    assert_int_equal(inspect(CHAT,
                             J("{'model':'m','messages':["
                               "{'role':'system','content':'12345678'},"
                               "{'role':'user','content':'abcdefgh'}]}")),
                     OK);
    assert_int_equal(req.text_bytes, 16);
    assert_int_equal(req.prompt_tokens, 4 + 8 + 3);

    /* escapes count unescaped: "a\nb" is 3 bytes, "\u00e9" 2 */

    assert_int_equal(inspect(CHAT,
                             J("{'model':'m','messages':[{'role':'user',"
                               "'content':'a\\nb\\u00e9'}]}")), OK);
    assert_int_equal(req.text_bytes, 5);

    /* OpenAI image parts: 765 tokens each, the URL is not text */

    assert_int_equal(inspect(CHAT,
                             J("{'model':'m','messages':[{'role':'user',"
                               "'content':[{'type':'text','text':'abcd'},"
                               "{'image_url':{'url':'data:image/png;base64,"
                               "AAAAAAAAAAAAAAAAAAAAAAAA','detail':'high'},"
                               "'type':'image_url'},{'type':'input_audio',"
                               "'input_audio':{'data':'AAAAAAAA'}}]}]}")),
                     OK);
    assert_int_equal(req.images, 1);
    assert_int_equal(req.text_bytes, 4);
    assert_int_equal(req.prompt_tokens, 1 + 765 + 4 + 3);

    /* tool calls and tool results are text */

    assert_int_equal(inspect(CHAT,
                             J("{'model':'m','messages':[{'role':'assistant',"
                               "'tool_calls':[{'id':'c1','type':'function',"
                               "'function':{'name':'f','arguments':'{}'}}]},"
                               "{'role':'tool','tool_call_id':'c1',"
                               "'content':'42'}]}")), OK);
    assert_int_equal(req.text_bytes, strlen("c1f{}c142"));
}


static void
test_errors_json(void **state)
{
    static const struct {
        const char  *body;
        size_t       offset;
    } bad[] = {
        { "", 0 },
        { "   ", 3 },
        { "{", 1 },
        { "{\"model\"", 8 },
        { "{\"model\":", 9 },
        { "{\"model\":\"x\"", 12 },
        { "{\"model\":\"x\",}", 13 },
        { "{\"model\" \"x\"}", 9 },
        { "{\"a\":1,,\"b\":2}", 7 },
        { "{\"a\":[1,]}", 8 },
        { "{\"a\":[1 2]}", 8 },
        { "{\"a\":{]}", 6 },
        { "{\"a\":[}", 6 },
        { "{'a':1}", 1 },
        { "{a:1}", 1 },
        { "{\"a\":01}", 6 },
        { "{\"a\":1.}", 5 },
        { "{\"a\":.5}", 5 },
        { "{\"a\":-}", 5 },
        { "{\"a\":+1}", 5 },
        { "{\"a\":1e}", 5 },
        { "{\"a\":1e+}", 5 },
        { "{\"a\":0x10}", 6 },
        { "{\"a\":NaN}", 5 },
        { "{\"a\":Infinity}", 5 },
        { "{\"a\":tru}", 5 },
        { "{\"a\":nul}", 5 },
        { "{\"a\":True}", 5 },
        { "{\"a\":\"x\\q\"}", 7 },
        { "{\"a\":\"\\u12\"}", 6 },
        { "{\"a\":\"\\u12g4\"}", 6 },
        { "{\"a\":\"x", 7 },
        { "{\"a\":\"x\\", 8 },
        { "{\"a\":\"tab\there\"}", 9 },
        { "{\"a\":\"nl\nhere\"}", 8 },
        { "{\"a\":1} x", 8 },
        { "{\"a\":1}{}", 7 },
        { "{\"a\":1} /* c */", 8 },
        { "\xef\xbb\xbf{\"a\":1}", 0 },
        { "{\"a\":1}\0", 7 },
    };

    unsigned  i;
    size_t    len;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        len = strlen(bad[i].body);

        if (i == sizeof(bad) / sizeof(bad[0]) - 1) {
            len++;      /* the trailing NUL */
        }

        if (inspect_n(ANY, bad[i].body, len, 0) != EJSON) {
            print_error("accepted: %s\n", bad[i].body);
            fail();
        }

        assert_non_null(req.error);
        assert_null(req.error_param);

        if (req.error_offset != bad[i].offset) {
            print_error("offset %zu instead of %zu (%s): %s\n",
                        req.error_offset, bad[i].offset, req.error,
                        bad[i].body);
            fail();
        }
    }

    assert_error(CHAT, "", EJSON, "empty request body", NULL);
    assert_error(CHAT, "{\"a\":\"x\\q\"}", EJSON, "invalid escape in string",
                 NULL);
    assert_error(CHAT, "{\"a\":\"\x01\"}", EJSON,
                 "unescaped control character in string", NULL);
}


static void
test_errors_type(void **state)
{
    assert_error(CHAT, "[]", ETYPE, "request body must be a JSON object",
                 NULL);
    assert_error(CHAT, "[{\"model\":\"m\"}]", ETYPE, NULL, NULL);
    assert_error(CHAT, " \"model\" ", ETYPE, NULL, NULL);
    assert_error(CHAT, "42", ETYPE, NULL, NULL);
    assert_error(CHAT, "null", ETYPE, NULL, NULL);
    assert_error(ANTH, "true", ETYPE, NULL, NULL);

    /* an invalid body that is not an object either is a JSON error */
    assert_error(CHAT, "[1,", EJSON, NULL, NULL);
}


static void
test_errors_fields(void **state)
{
    const char  *m;

    m = "'messages':[{'role':'user','content':'x'}]";

    assert_error(CHAT, J("{'messages':[{'role':'user','content':'x'}]}"),
                 EFIELD, "'model' is required", "model");
    assert_error(CHAT, J("{'model':null,'messages':[{'role':'user'}]}"),
                 EFIELD, "'model' must be a string", "model");
    assert_error(CHAT, J("{'model':5,'messages':[{'role':'user'}]}"),
                 EFIELD, "'model' must be a string", "model");
    assert_int_equal(req.error_offset, 9);
    assert_error(CHAT, J("{'model':'','messages':[{'role':'user'}]}"),
                 EFIELD, "'model' must not be empty", "model");
    assert_error(CHAT, J("{'model':'m'}"),
                 EFIELD, "'messages' is required", "messages");
    assert_error(CHAT, J("{'model':'m','messages':{}}"),
                 EFIELD, "'messages' must be an array", "messages");
    assert_error(CHAT, J("{'model':'m','messages':[]}"),
                 EFIELD, "'messages' must not be empty", "messages");
    assert_error(CHAT, J("{'model':'m','messages':[{'role':'user'},'x']}"),
                 EFIELD, "'messages' must be an array of objects",
                 "messages");
    assert_error(ANTH, J("{'model':'m','messages':[{'role':'user'}]}"),
                 EFIELD, "'max_tokens' is required", "max_tokens");
    assert_error(ANTH, J("{'model':'m','messages':[{'role':'user'}],"
                         "'max_tokens':null}"),
                 EFIELD, "'max_tokens' is required", "max_tokens");
    assert_error(ANTH, J("{'model':'m','messages':[{'role':'user'}],"
                         "'max_tokens':1,'system':5}"),
                 EFIELD, "'system' must be a string or an array", "system");
    assert_error(COMPL, J("{'model':'m'}"),
                 EFIELD, "'prompt' is required", "prompt");
    assert_error(COMPL, J("{'model':'m','prompt':{}}"),
                 EFIELD, "'prompt' must be a string or an array", "prompt");
    assert_error(EMBED, J("{'model':'m','prompt':'x'}"),
                 EFIELD, "'input' is required", "input");
    assert_error(EMBED, J("{'model':'m','input':3}"),
                 EFIELD, "'input' must be a string or an array", "input");

    /* ill-typed optional fields */

#define FIELD(json, msg, param)                                               \
    do {                                                                      \
        char  b[512];                                                         \
        snprintf(b, sizeof(b), "{%s,'model':'m',%s}", json, m);              \
        assert_error(CHAT, J(b), EFIELD, msg, param);                         \
        assert_int_equal(req.error_offset, strchr(json, ':') - json + 2);    \
    } while (0)

    FIELD("'stream':'yes'", "'stream' must be a boolean", "stream");
    FIELD("'stream':1", "'stream' must be a boolean", "stream");
    FIELD("'stream_options':true", "'stream_options' must be an object",
          "stream_options");
    FIELD("'stream_options':[]", "'stream_options' must be an object",
          "stream_options");
    FIELD("'max_tokens':-1", "'max_tokens' must be a non-negative integer",
          "max_tokens");
    FIELD("'max_tokens':1.5", "'max_tokens' must be a non-negative integer",
          "max_tokens");
    FIELD("'max_tokens':'10'", "'max_tokens' must be a non-negative integer",
          "max_tokens");
    FIELD("'max_tokens':1e19", "'max_tokens' must be a non-negative integer",
          "max_tokens");
    FIELD("'max_completion_tokens':true",
          "'max_completion_tokens' must be a non-negative integer",
          "max_completion_tokens");
    FIELD("'n':0", "'n' must be a positive integer", "n");
    FIELD("'n':'2'", "'n' must be a positive integer", "n");
    FIELD("'temperature':'hot'", "'temperature' must be a number",
          "temperature");
    FIELD("'top_p':[1]", "'top_p' must be a number", "top_p");
    FIELD("'seed':1.5", "'seed' must be an integer", "seed");
    FIELD("'seed':{}", "'seed' must be an integer", "seed");
    FIELD("'tools':{}", "'tools' must be an array", "tools");

#undef FIELD

    assert_error(CHAT, J("{'model':'m','stream_options':{'include_usage':1},"
                         "'messages':[{}]}"), EFIELD,
                 "'stream_options.include_usage' must be a boolean",
                 "stream_options");

    /* the first problem in body order is reported */

    assert_error(CHAT, J("{'n':0,'stream':1,'model':'m','messages':[{}]}"),
                 EFIELD, "'n' must be a positive integer", "n");

    /* but a JSON error anywhere wins */

    assert_error(CHAT, J("{'n':0,'model':'m','messages':[{}],}"),
                 EJSON, NULL, NULL);
}


static void
test_errors_too_many_fields(void **state)
{
    char      *b, *p;
    unsigned   i, n;

    for (n = 255; n <= 257; n++) {
        b = malloc(16 * 300 + 128);
        assert_non_null(b);

        p = b + sprintf(b, "{\"model\":\"m\"");

        for (i = 0; i < n - 1; i++) {
            p += sprintf(p, ",\"k%u\":%u", i, i);
        }

        sprintf(p, "}");

        if (n <= 256) {
            assert_int_equal(inspect(ANY, b), OK);

        } else {
            assert_error(ANY, b, EFIELD, "too many top-level fields", NULL);
        }

        free(b);
    }
}


static void
test_errors_dup(void **state)
{
    const char  *body;

    body = J("{'model':'cheap','messages':[{'role':'user'}],"
             "'model':'expensive'}");

    assert_error(CHAT, body, EDUP, "duplicate top-level key", "model");
    assert_int_equal(req.error_offset, strlen("{'model':'cheap','messages':"
                                              "[{'role':'user'}],"));
    assert_int_equal(req.error_key.len, 5);
    assert_memory_equal(req.error_key.data, "model", 5);

    /* spelled differently, the same key */

    body = J("{'model':'a','messages':[{}],'\\u006dodel':'b'}");
    assert_error(CHAT, body, EDUP, NULL, "model");
    assert_int_equal(req.error_key.len, strlen("\\u006dodel"));

    body = J("{'stream':false,'model':'a','messages':[{}],'str\\u0065am':"
             "true}");
    assert_error(CHAT, body, EDUP, NULL, "stream");

    /* unknown keys too, without a param */

    body = J("{'model':'a','foo':1,'messages':[{}],'foo':2}");
    assert_error(CHAT, body, EDUP, NULL, NULL);
    assert_memory_equal(req.error_key.data, "foo", 3);

    /* nested duplicates are the upstream's business */

    body = J("{'model':'a','messages':[{'role':'user','role':'user'}]}");
    assert_int_equal(inspect(CHAT, body), OK);

    /* keys differing only by an escape of another character are distinct */

    body = J("{'model':'a','messages':[{}],'a\\\\b':1,'a/b':2,'a\\/c':3}");
    assert_int_equal(inspect(CHAT, body), OK);
}


static char *
nested(unsigned depth, const char *open, const char *close)
{
    char      *b, *p;
    unsigned   i;

    b = malloc(depth * 8 + 64);
    assert_non_null(b);

    p = b + sprintf(b, "{\"a\":");

    for (i = 1; i < depth; i++) {
        p += sprintf(p, "%s", open);
    }

    p += sprintf(p, "1");

    for (i = 1; i < depth; i++) {
        p += sprintf(p, "%s", close);
    }

    sprintf(p, "}");

    return b;
}


static void
test_depth(void **state)
{
    char  *b;

    /* depth 5: the top object and 4 more levels */

    b = nested(5, "[", "]");
    assert_int_equal(inspect_n(ANY, b, strlen(b), 5), OK);
    assert_int_equal(inspect_n(ANY, b, strlen(b), 4), EDEPTH);
    assert_string_equal(req.error, "JSON nesting too deep");
    assert_null(req.error_param);
    assert_int_equal(req.error_offset, strlen("{\"a\":[[["));
    free(b);

    b = nested(5, "{\"b\":", "}");
    assert_int_equal(inspect_n(ANY, b, strlen(b), 5), OK);
    assert_int_equal(inspect_n(ANY, b, strlen(b), 4), EDEPTH);
    free(b);

    assert_int_equal(inspect_n(ANY, "{}", 2, 1), OK);
    assert_int_equal(inspect_n(ANY, "{\"a\":[]}", 8, 1), EDEPTH);
    assert_int_equal(inspect_n(ANY, "{\"a\":[]}", 8, 2), OK);

    /* 0 selects the default */

    b = nested(NGX_HTTP_LLM_INSPECT_DEFAULT_DEPTH, "[", "]");
    assert_int_equal(inspect_n(ANY, b, strlen(b), 0), OK);
    free(b);

    b = nested(NGX_HTTP_LLM_INSPECT_DEFAULT_DEPTH + 1, "[", "]");
    assert_int_equal(inspect_n(ANY, b, strlen(b), 0), EDEPTH);
    free(b);

    /* larger limits clamp to the hard maximum */

    b = nested(NGX_HTTP_LLM_INSPECT_MAX_DEPTH, "{\"k\":", "}");
    assert_int_equal(inspect_n(ANY, b, strlen(b), 100000), OK);
    free(b);

    b = nested(NGX_HTTP_LLM_INSPECT_MAX_DEPTH + 1, "[", "]");
    assert_int_equal(inspect_n(ANY, b, strlen(b), 100000), EDEPTH);
    free(b);

    /* a body nested far deeper is refused at the limit, no overflow */

    b = nested(100000, "[", "]");
    assert_int_equal(inspect_n(ANY, b, strlen(b), 100000), EDEPTH);
    assert_int_equal(req.error_offset,
                     strlen("{\"a\":") + NGX_HTTP_LLM_INSPECT_MAX_DEPTH - 1);
    free(b);
}


static void
test_utf8(void **state)
{
    static const char  *good[] = {
        "caf\xc3\xa9",                      /* 2 bytes */
        "\xe2\x82\xac",                     /* 3 bytes, euro */
        "\xf0\x9f\x98\x80",                 /* 4 bytes, emoji */
        "\xc2\x80",                         /* lowest 2-byte */
        "\xdf\xbf",
        "\xe0\xa0\x80",                     /* lowest 3-byte */
        "\xed\x9f\xbf",                     /* U+D7FF, below surrogates */
        "\xee\x80\x80",                     /* U+E000, above surrogates */
        "\xef\xbf\xbf",                     /* U+FFFF */
        "\xf0\x90\x80\x80",                 /* U+10000 */
        "\xf4\x8f\xbf\xbf",                 /* U+10FFFF */
        "\x7f",                             /* DEL needs no escape */
        "\\ud83d\\ude00",                   /* escaped pair */
        "\\ud800",                          /* lone surrogates: accepted */
        "\\udc00x",
        "\\ud800\\u0041",
        "\\u0000",
    };

    static const char  *bad[] = {
        "\x80",                             /* lone continuation */
        "\xbf",
        "\xc0\x80",                         /* overlong NUL */
        "\xc1\xbf",                         /* overlong */
        "\xe0\x80\x80",                     /* overlong 3-byte */
        "\xe0\x9f\xbf",
        "\xf0\x80\x80\x80",                 /* overlong 4-byte */
        "\xf0\x8f\xbf\xbf",
        "\xed\xa0\x80",                     /* UTF-8 encoded surrogates */
        "\xed\xbf\xbf",
        "\xf4\x90\x80\x80",                 /* above U+10FFFF */
        "\xf5\x80\x80\x80",
        "\xff",
        "\xfe",
        "\xc3",                             /* truncated before the quote */
        "\xe2\x82",
        "\xf0\x9f\x98",
        "\xc3\x28",                         /* bad continuation */
        "\xe2\x28\xa1",
        "\xf0\x9f\x28\x80",
        "\x1f",                             /* control characters */
        "\x01",
    };

    /* bad bytes right after a high surrogate (found by fuzz_inspect) */

    static const char  *bad_after_escape[] = {
        "\\ud83d\xa2ude00",
        "\\ud83d\x01ude00",
        "\\ud83d\\q",
        "\\ud83d\\u12",
    };

    char      b[256], pad[80];
    unsigned  i, k;

    /* with padding before, the SIMD path sees the bytes too */

    memset(pad, 'p', sizeof(pad));

    for (k = 0; k < 3; k++) {
        pad[k == 0 ? 0 : k == 1 ? 17 : 70] = '\0';

        for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
            snprintf(b, sizeof(b), "{\"s\":\"%s%s\",\"%s\":1}", pad, good[i],
                     good[i]);

            if (inspect(ANY, b) != OK) {
                print_error("rejected %s: %s\n", req.error, b);
                fail();
            }
        }

        for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
            snprintf(b, sizeof(b), "{\"s\":\"%s%s\"}", pad, bad[i]);

            if (inspect(ANY, b) != EJSON) {
                print_error("accepted: %s\n", b);
                fail();
            }

            assert_int_equal(req.error_offset, 6 + strlen(pad));

            /* in keys as well */

            snprintf(b, sizeof(b), "{\"%s%s\":1}", pad, bad[i]);
            assert_int_equal(inspect(ANY, b), EJSON);
        }

        for (i = 0; i < sizeof(bad_after_escape) / sizeof(char *); i++) {
            snprintf(b, sizeof(b), "{\"s\":\"%s%s\"}", pad,
                     bad_after_escape[i]);

            if (inspect(ANY, b) != EJSON) {
                print_error("accepted: %s\n", b);
                fail();
            }

            assert_int_equal(req.error_offset, 6 + strlen(pad) + 6);
        }

        memset(pad, 'p', sizeof(pad));
    }

    assert_error(ANY, "{\"s\":\"\xed\xa0\x80\"}", EJSON,
                 "invalid UTF-8 in string", NULL);
}


static void
test_hash_invariance(void **state)
{
    /* key order, at every depth, and whitespace */

    assert_same_hash(CHAT,
        J("{'model':'m','messages':[{'role':'user','content':'hi'}],"
          "'tools':[{'type':'function','function':{'name':'f','parameters':"
          "{'type':'object','properties':{'a':{'type':'string'},"
          "'b':{'type':'integer','minimum':1}}}}}],'temperature':0}"),
        J("\n{ 'temperature' : 0 ,\t'tools':[{'function':{'parameters':"
          "{'properties':{'b':{'minimum':1,'type':'integer'},'a':{'type':"
          "'string'}},'type':'object'},'name':'f'},'type':'function'}],"
          "\r\n'messages':[ {'content':'hi','role':'user'} ],'model':'m'}"));

    /* string escapes */

    assert_same_hash(CHAT,
        J("{'model':'A/B','messages':[{'role':'user','content':"
          "'\\u00e9\\n\\\\ \\'q\\' \\ud83d\\ude00 \\u0000'}]}"),
        J("{'model':'\\u0041\\/B','messages':[{'role':'user','content':"
          "'\xc3\xa9\\u000a\\u005c \\u0022q\\\" \xf0\x9f\x98\x80 \\u0000'}]}"));

    /* escaped keys */

    assert_same_hash(ANY, J("{'model':'m','ab':1}"),
                     J("{'\\u006dodel':'m','a\\u0062':1}"));

    /* number spellings */

    assert_same_hash(ANY, J("{'a':1,'b':100,'c':0.5,'d':0,'e':-3}"),
                     J("{'a':1.0,'b':1e2,'c':5e-1,'d':-0,'e':-3.000}"));
    assert_same_hash(ANY, J("{'a':1}"), J("{'a':1e0}"));
    assert_same_hash(ANY, J("{'a':1}"), J("{'a':10e-1}"));
    assert_same_hash(ANY, J("{'a':1}"), J("{'a':0.1e1}"));
    assert_same_hash(ANY, J("{'a':1}"), J("{'a':1E+0}"));
    assert_same_hash(ANY, J("{'a':1}"), J("{'a':100e-2}"));
    assert_same_hash(ANY, J("{'a':0}"), J("{'a':0.000e10}"));
    assert_same_hash(ANY, J("{'a':0.001}"), J("{'a':1e-3}"));
    assert_same_hash(ANY, J("{'a':123456789012345678901234567890}"),
                     J("{'a':1.2345678901234567890123456789e29}"));
    assert_same_hash(ANY, J("{'a':9223372036854775807}"),
                     J("{'a':9.223372036854775807e18}"));

    /* arrays of objects: each object's order is free */

    assert_same_hash(ANY, J("{'a':[{'x':1,'y':2},{'z':[{'p':1,'q':2}]}]}"),
                     J("{'a':[{'y':2,'x':1},{'z':[{'q':2,'p':1}]}]}"));
}


static void
test_hash_differences(void **state)
{
    const char  *base;

    base = J("{'model':'m','messages':[{'role':'user','content':'hi'}]}");

    assert_other_hash(CHAT, base,
        J("{'model':'n','messages':[{'role':'user','content':'hi'}]}"));
    assert_other_hash(CHAT, base,
        J("{'model':'m','messages':[{'role':'user','content':'hI'}]}"));
    assert_other_hash(CHAT, base,
        J("{'model':'m','messages':[{'role':'user','content':'hi '}]}"));
    assert_other_hash(CHAT, base,
        J("{'model':'m','messages':[{'role':'user','content':'hi'}],"
          "'temperature':0}"));
    assert_other_hash(CHAT, base,
        J("{'model':'m','messages':[{'role':'user','content':'hi'}],"
          "'max_tokens':5}"));
    assert_other_hash(CHAT, base,
        J("{'model':'m','messages':[{'role':'user','content':'hi'}],"
          "'tools':[]}"));
    assert_other_hash(CHAT, base,
        J("{'model':'m','messages':[{'role':'user','content':'hi'}],"
          "'unknown_param':null}"));

    /* array order */

    assert_other_hash(ANY, J("{'a':[1,2]}"), J("{'a':[2,1]}"));
    assert_other_hash(ANY, J("{'a':[[1],[2]]}"), J("{'a':[[2],[1]]}"));
    assert_other_hash(ANY, J("{'a':[1,2]}"), J("{'a':[[1,2]]}"));
    assert_other_hash(ANY, J("{'a':[]}"), J("{'a':[[]]}"));

    /* values stay bound to their keys */

    assert_other_hash(ANY, J("{'a':1,'b':2}"), J("{'a':2,'b':1}"));
    assert_other_hash(ANY, J("{'x':{'a':1},'y':{'b':1}}"),
                      J("{'x':{'b':1},'y':{'a':1}}"));

    /* types */

    assert_other_hash(ANY, J("{'a':1}"), J("{'a':'1'}"));
    assert_other_hash(ANY, J("{'a':null}"), J("{'a':false}"));
    assert_other_hash(ANY, J("{'a':true}"), J("{'a':false}"));
    assert_other_hash(ANY, J("{'a':null}"), J("{'a':'null'}"));
    assert_other_hash(ANY, J("{'a':[]}"), J("{'a':{}}"));
    assert_other_hash(ANY, J("{'a':''}"), J("{'a':[]}"));
    assert_other_hash(ANY, J("{'a':0}"), J("{'a':null}"));
    assert_other_hash(ANY, J("{'a':{}}"), J("{}"));

    /* numbers */

    assert_other_hash(ANY, J("{'a':1}"), J("{'a':-1}"));
    assert_other_hash(ANY, J("{'a':1}"), J("{'a':10}"));
    assert_other_hash(ANY, J("{'a':0.1}"), J("{'a':0.01}"));
    assert_other_hash(ANY, J("{'a':12345678901234567890123}"),
                      J("{'a':12345678901234567890124}"));
    assert_other_hash(ANY, J("{'a':9007199254740993}"),
                      J("{'a':9007199254740992}"));
    assert_other_hash(ANY, J("{'a':1.5}"), J("{'a':15}"));

    /* strings */

    assert_other_hash(ANY, J("{'a':'\\u00e9'}"), J("{'a':'e\\u0301'}"));
    assert_other_hash(ANY, J("{'a':'\\ud800'}"), J("{'a':'\\udc00'}"));

    /* a pair needs its two escapes back to back (found by fuzz_inspect) */

    assert_other_hash(ANY, J("{'a':'\\ud83d\\ude00'}"),
                      J("{'a':'\\ud83dxude00'}"));
    assert_other_hash(ANY, J("{'a':'\\ud83d\\ude00'}"),
                      J("{'a':'\\ud83d\\n\\ude00'}"));
    assert_other_hash(ANY, J("{'ab':'c'}"), J("{'a':'bc'}"));
}


static void
test_hash_exclusions(void **state)
{
    const char  *base;

    base = J("{'model':'m','messages':[{'role':'user','content':'hi'}]}");

    /* fields that do not change the output */

    assert_same_hash(CHAT, base,
        J("{'model':'m','stream':true,'messages':[{'role':'user','content':"
          "'hi'}],'stream_options':{'include_usage':true},'user':'alice',"
          "'metadata':{'a':'b'},'request_id':'r1','store':true,"
          "'service_tier':'auto','prompt_cache_key':'k',"
          "'safety_identifier':'s','x-trace':'t','X-Other':[1]}"));

    /* only at the top level */

    assert_other_hash(CHAT, base,
        J("{'model':'m','messages':[{'role':'user','content':'hi',"
          "'user':'alice'}]}"));
    assert_other_hash(CHAT, base,
        J("{'model':'m','messages':[{'role':'user','content':'hi'}],"
          "'xtrace':1}"));

    /* escaped names of excluded keys are excluded too */

    assert_same_hash(CHAT, base,
        J("{'model':'m','\\u0073tream':true,'messages':[{'role':'user',"
          "'content':'hi'}],'\\u0078-a':1}"));
}


/*
 * Objects beyond the sort area (more than 32 members, or deeper than
 * level 9) hash with the commutative combination: order still does not
 * matter, content still does.
 */

static void
test_hash_large_objects(void **state)
{
    char      *a, *b, *c, *p, *q, *r;
    unsigned   i, n;

    for (n = 31; n <= 70; n += 13) {
        a = malloc(20000);
        b = malloc(20000);
        c = malloc(20000);

        p = a + sprintf(a, "{\"o\":{");
        q = b + sprintf(b, "{\"o\":{");
        r = c + sprintf(c, "{\"o\":{");

        for (i = 0; i < n; i++) {
            p += sprintf(p, "%s\"k%u\":{\"v\":%u}", i ? "," : "", i, i);
            q += sprintf(q, "%s\"k%u\":{\"v\":%u}", i ? "," : "", n - 1 - i,
                         n - 1 - i);
            r += sprintf(r, "%s\"k%u\":{\"v\":%u}", i ? "," : "", i,
                         i == n / 2 ? i + 1 : i);
        }

        sprintf(p, "}}");
        sprintf(q, "}}");
        sprintf(r, "}}");

        assert_same_hash(ANY, a, b);
        assert_other_hash(ANY, a, c);

        free(a);
        free(b);
        free(c);
    }

    /* deep objects */

    {
        char  da[2048], db[2048], dc[2048];

        p = da;
        q = db;
        r = dc;

        for (i = 0; i < 20; i++) {
            p += sprintf(p, "{\"a%u\":1,\"x\":", i);
            q += sprintf(q, "{\"x\":");
            r += sprintf(r, "{\"a%u\":2,\"x\":", i);
        }

        p += sprintf(p, "{}");
        q += sprintf(q, "{}");
        r += sprintf(r, "{}");

        for (i = 0; i < 20; i++) {
            p += sprintf(p, "}");
            q += sprintf(q, ",\"a%u\":1}", 19 - i);
            r += sprintf(r, "}");
        }

        assert_same_hash(ANY, da, db);
        assert_other_hash(ANY, da, dc);
    }
}


static void
test_prefix_hash(void **state)
{
    uint64_t  p1, p2;

    /* OpenAI: the leading system / developer messages, model, tools */

    assert_int_equal(inspect(CHAT,
        J("{'model':'m','tools':[{'t':1}],'messages':[{'role':'system',"
          "'content':'S'},{'role':'developer','content':'D'},"
          "{'role':'user','content':'one'}]}")), OK);
    p1 = req.prefix_hash;

    assert_int_equal(inspect(CHAT,
        J("{'messages':[{'content':'S','role':'system'},{'role':'developer',"
          "'content':'D'},{'role':'user','content':'two'},{'role':'system',"
          "'content':'late'}],'model':'m','tools':[{'t':1}],"
          "'temperature':1}")), OK);
    p2 = req.prefix_hash;

    assert_true(p1 == p2);

    assert_int_equal(inspect(CHAT,
        J("{'model':'m','tools':[{'t':1}],'messages':[{'role':'system',"
          "'content':'S2'},{'role':'developer','content':'D'},"
          "{'role':'user','content':'one'}]}")), OK);
    assert_true(req.prefix_hash != p1);

    assert_int_equal(inspect(CHAT,
        J("{'model':'m2','tools':[{'t':1}],'messages':[{'role':'system',"
          "'content':'S'},{'role':'developer','content':'D'},"
          "{'role':'user','content':'one'}]}")), OK);
    assert_true(req.prefix_hash != p1);

    assert_int_equal(inspect(CHAT,
        J("{'model':'m','tools':[{'t':2}],'messages':[{'role':'system',"
          "'content':'S'},{'role':'developer','content':'D'},"
          "{'role':'user','content':'one'}]}")), OK);
    assert_true(req.prefix_hash != p1);

    /* Anthropic: the top-level system, wherever it is */

    assert_int_equal(inspect(ANTH,
        J("{'system':'be kind','model':'c','max_tokens':5,'messages':"
          "[{'role':'user','content':'a'}]}")), OK);
    p1 = req.prefix_hash;

    assert_int_equal(inspect(ANTH,
        J("{'model':'c','max_tokens':50,'messages':[{'role':'user',"
          "'content':'b'}],'system':'be kind'}")), OK);
    assert_true(req.prefix_hash == p1);

    assert_int_equal(inspect(ANTH,
        J("{'model':'c','max_tokens':50,'messages':[{'role':'user',"
          "'content':'b'}],'system':'be nice'}")), OK);
    assert_true(req.prefix_hash != p1);
}


static void
test_msg_prefixes(void **state)
{
    uint64_t  h0, h1;

    /* messages after the leading system run, cumulative */

    assert_int_equal(inspect(CHAT,
        J("{'model':'m','messages':[{'role':'system','content':'S'},"
          "{'role':'user','content':'12345678'},"
          "{'role':'assistant','content':'abcd'}]}")), OK);
    assert_int_equal(req.msg_prefixes, 2);
    assert_int_equal(req.msg_tokens[0], 2);
    assert_int_equal(req.msg_tokens[1], 3);
    h0 = req.msg_hash[0];
    h1 = req.msg_hash[1];
    assert_true(h0 != h1);
    assert_true(h0 != req.prefix_hash);

    /* a later turn of the same conversation: same first prefixes, key
     * order and spacing do not matter */

    assert_int_equal(inspect(CHAT,
        J("{'messages':[{'content':'S','role':'system'},"
          "{'content':'12345678','role':'user'}, "
          "{'role':'assistant','content':'abcd'},"
          "{'role':'user','content':'more'}],'model':'m'}")), OK);
    assert_int_equal(req.msg_prefixes, 3);
    assert_true(req.msg_hash[0] == h0);
    assert_true(req.msg_hash[1] == h1);

    /* another system prompt: every prefix changes */

    assert_int_equal(inspect(CHAT,
        J("{'model':'m','messages':[{'role':'system','content':'T'},"
          "{'role':'user','content':'12345678'}]}")), OK);
    assert_true(req.msg_hash[0] != h0);

    /* at most NGX_HTTP_LLM_INSPECT_MSG_PREFIXES are kept */

    assert_int_equal(inspect(CHAT,
        J("{'model':'m','messages':[{'role':'user','content':'1'},"
          "{'role':'user','content':'2'},{'role':'user','content':'3'},"
          "{'role':'user','content':'4'},{'role':'user','content':'5'},"
          "{'role':'user','content':'6'},{'role':'user','content':'7'},"
          "{'role':'user','content':'8'},{'role':'user','content':'9'}]}")),
        OK);
    assert_int_equal(req.msg_prefixes, NGX_HTTP_LLM_INSPECT_MSG_PREFIXES);

    /* no messages */

    assert_int_equal(inspect(NGX_HTTP_LLM_API_COMPLETIONS,
        J("{'model':'m','prompt':'hello'}")), OK);
    assert_int_equal(req.msg_prefixes, 0);
}


static void
test_large_body(void **state)
{
    u_char    *body, *copy;
    size_t     len, i;
    uint64_t   h[2], ph;

    body = malloc(800 * 1024);
    assert_non_null(body);

    len = llm_test_body(body, 800 * 1024, 700 * 1024, 7, 0);
    assert_true(len > 700 * 1024);

    assert_int_equal(inspect_n(CHAT, (char *) body, len, 0), OK);
    assert_int_equal(req.tools, 3);
    assert_true(req.messages > 50);
    assert_int_equal(req.stream, 1);
    assert_int_equal(req.include_usage, 1);
    assert_true(req.text_bytes > 600 * 1024);
    assert_true(req.prompt_tokens > req.text_bytes / 4);
    assert_int_equal(req.object_end, len - 1);

    h[0] = req.hash[0];
    h[1] = req.hash[1];
    ph = req.prefix_hash;

    /* a deterministic result */

    assert_int_equal(inspect_n(CHAT, (char *) body, len, 0), OK);
    assert_true(req.hash[0] == h[0] && req.hash[1] == h[1]);

    /* one byte changed deep inside: another hash, same prefix */

    copy = malloc(len);
    assert_non_null(copy);
    memcpy(copy, body, len);

    for (i = len / 2; copy[i] != ' '; i++) {
        /* void */
    }

    copy[i] = '_';

    assert_int_equal(inspect_n(CHAT, (char *) copy, len, 0), OK);
    assert_true(req.hash[0] != h[0] || req.hash[1] != h[1]);
    assert_true(req.prefix_hash == ph);

    /* truncated anywhere: a JSON error, never a crash */

    for (i = 1; i < len; i += 4099) {
        assert_int_equal(inspect_n(CHAT, (char *) body, i, 0), EJSON);
    }

    /* the heavy variant is accepted too */

    len = llm_test_body(body, 800 * 1024, 700 * 1024, 7, 1);
    assert_int_equal(inspect_n(CHAT, (char *) body, len, 0), OK);

    free(copy);
    free(body);
}


/* long strings with escapes stream through the hash state */

static void
test_long_escaped_strings(void **state)
{
    char      *a, *b, *p, *q;
    size_t     n, i, ulen;
    uint64_t   h[2];

    for (n = 100; n <= 60000; n = n * 3 + 7) {
        a = malloc(n * 8 + 64);
        b = malloc(n * 8 + 64);
        assert_non_null(a);
        assert_non_null(b);

        p = a + sprintf(a, "{\"model\":\"m\",\"prompt\":\"");
        q = b + sprintf(b, "{\"prompt\":\"");
        ulen = 0;

        for (i = 0; i < n; i++) {
            switch (i % 7) {
            case 0:
                p += sprintf(p, "\\n");
                q += sprintf(q, "\\u000a");
                ulen += 1;
                break;
            case 3:
                p += sprintf(p, "\xc3\xa9");
                q += sprintf(q, "\\u00e9");
                ulen += 2;
                break;
            default:
                *p++ = 'a' + i % 26;
                *q++ = 'a' + i % 26;
                ulen += 1;
            }
        }

        sprintf(p, "\"}");
        sprintf(q, "\",\"model\":\"m\"}");

        hash_of(COMPL, a, h);
        assert_int_equal(req.text_bytes, ulen);

        assert_int_equal(inspect(COMPL, b), OK);
        assert_int_equal(req.text_bytes, ulen);
        assert_true(req.hash[0] == h[0] && req.hash[1] == h[1]);

        free(a);
        free(b);
    }
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_fields_chat),
        cmocka_unit_test(test_fields_absent),
        cmocka_unit_test(test_fields_misc),
        cmocka_unit_test(test_fields_anthropic),
        cmocka_unit_test(test_fields_completions_embeddings),
        cmocka_unit_test(test_estimate),
        cmocka_unit_test(test_errors_json),
        cmocka_unit_test(test_errors_type),
        cmocka_unit_test(test_errors_fields),
        cmocka_unit_test(test_errors_too_many_fields),
        cmocka_unit_test(test_errors_dup),
        cmocka_unit_test(test_depth),
        cmocka_unit_test(test_utf8),
        cmocka_unit_test(test_hash_invariance),
        cmocka_unit_test(test_hash_differences),
        cmocka_unit_test(test_hash_exclusions),
        cmocka_unit_test(test_hash_large_objects),
        cmocka_unit_test(test_prefix_hash),
        cmocka_unit_test(test_msg_prefixes),
        cmocka_unit_test(test_large_body),
        cmocka_unit_test(test_long_escaped_strings),
    };

    return cmocka_run_group_tests_name("inspect", tests, NULL, NULL);
}
