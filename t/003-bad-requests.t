# Bad requests get the client API's error shape with the right status:
# never an HTML page, never a crash, never a call upstream.

use FindBin; use lib $FindBin::Bin; use LLM;
use Test::Nginx::Socket 'no_plan';

repeat_each(2);
no_shuffle();

add_block_preprocessor(sub {
    my $block = shift;

    if (!defined $block->config) {
        $block->set_value("config", <<"_EOC_");
    location /v1/ {
        llm_gateway on;
        llm_max_body_size 4k;
        llm_max_json_depth 8;
        proxy_pass http://127.0.0.1:$ENV{TEST_NGINX_MOCK_PORT};
    }
_EOC_
    }

    if (!defined $block->more_headers) {
        $block->set_value("more_headers", "Content-Type: application/json");
    }

    if (!defined $block->no_error_log) {
        $block->set_value("no_error_log", "[alert]\n[crit]\n[emerg]\n");
    }
});

run_tests();

__DATA__

=== TEST 1: invalid JSON, OpenAI shape
--- request
POST /v1/chat/completions
{"model":"m","messages":[
--- error_code: 400
--- response_headers
Content-Type: application/json
--- response_body_like: ^\{"error":\{"message":"[^"]+","type":"invalid_request_error","param":null,"code":"invalid_json"\}\}$



=== TEST 2: invalid JSON, Anthropic shape
--- request
POST /v1/messages
{"model": nope}
--- error_code: 400
--- response_body_like: ^\{"type":"error","error":\{"type":"invalid_request_error","message":"[^"]+"\}\}$



=== TEST 3: a body that is not an object
--- request
POST /v1/chat/completions
["model","m"]
--- error_code: 400
--- response_body_like: "type":"invalid_request_error"



=== TEST 4: missing model names the param
--- request
POST /v1/chat/completions
{"messages":[{"role":"user","content":"hi"}]}
--- error_code: 400
--- response_body_like: "param":"model"



=== TEST 5: ill-typed model
--- request
POST /v1/chat/completions
{"model":42,"messages":[{"role":"user","content":"hi"}]}
--- error_code: 400
--- response_body_like: "param":"model"



=== TEST 6: missing messages
--- request
POST /v1/chat/completions
{"model":"m"}
--- error_code: 400
--- response_body_like: "param":"messages"



=== TEST 7: messages of the wrong type
--- request
POST /v1/chat/completions
{"model":"m","messages":"hi"}
--- error_code: 400
--- response_body_like: "param":"messages"



=== TEST 8: ill-typed stream flag
--- request
POST /v1/chat/completions
{"model":"m","stream":"yes","messages":[{"role":"user","content":"hi"}]}
--- error_code: 400
--- response_body_like: "param":"stream"



=== TEST 9: negative max_tokens
--- request
POST /v1/chat/completions
{"model":"m","max_tokens":-1,"messages":[{"role":"user","content":"hi"}]}
--- error_code: 400
--- response_body_like: "param":"max_tokens"



=== TEST 10: Anthropic requires max_tokens
--- request
POST /v1/messages
{"model":"claude-sonnet-4-5","messages":[{"role":"user","content":"hi"}]}
--- error_code: 400
--- response_body_like: ^\{"type":"error","error":\{"type":"invalid_request_error","message":"[^"]*max_tokens



=== TEST 11: wrong content type
--- request
POST /v1/chat/completions
model=m
--- more_headers
Content-Type: application/x-www-form-urlencoded
--- error_code: 415
--- response_body_like: "code":"unsupported_media_type"



=== TEST 12: body over llm_max_body_size (Content-Length) gets a JSON 413
--- request eval
"POST /v1/chat/completions\n" . '{"model":"m","messages":[{"role":"user","content":"' . ("x" x 5000) . '"}]}'
--- error_code: 413
--- response_body_like: "code":"request_too_large"
--- error_log
exceeds llm_max_body_size 4096, rejected with 413



=== TEST 13: chunked body over llm_max_body_size gets a JSON 413 too
--- raw_request eval
my $body = '{"model":"m","messages":[{"role":"user","content":"' . ("x" x 5000) . '"}]}';
"POST /v1/chat/completions HTTP/1.1\r
Host: localhost\r
Connection: close\r
Content-Type: application/json\r
Transfer-Encoding: chunked\r
\r
" . sprintf("%x", length $body) . "\r\n$body\r\n0\r\n\r\n"
--- error_code: 413
--- response_body_like: "code":"request_too_large"



=== TEST 14: nesting deeper than llm_max_json_depth
--- request
POST /v1/chat/completions
{"model":"m","messages":[{"role":"user","content":[[[[[[[[["deep"]]]]]]]]]}]}
--- error_code: 400
--- response_body_like: "type":"invalid_request_error"
--- error_log
llm rejected chat request:



=== TEST 15: duplicate top-level keys are refused (gateway and upstream
could otherwise read different models)
--- request
POST /v1/chat/completions
{"model":"cheap","model":"expensive","messages":[{"role":"user","content":"hi"}]}
--- error_code: 400
--- response_body_like: "type":"invalid_request_error"



=== TEST 16: invalid UTF-8 in a string
--- request eval
"POST /v1/chat/completions\n" . qq{{"model":"m","messages":[{"role":"user","content":"\xff\xfe"}]}}
--- error_code: 400
--- response_body_like: "type":"invalid_request_error"



=== TEST 17: the gateway keeps serving after bad input
--- request
POST /v1/chat/completions
{"model":"m","messages":[{"role":"user","content":"still here?"}]}
--- error_code: 200
--- response_body_like: "chat\.completion"



=== TEST 18: an empty body
--- request
POST /v1/chat/completions
--- error_code: 400
--- response_body_like: "type":"invalid_request_error"
