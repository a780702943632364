# Every llm_* directive: accepted where it belongs, rejected with a clear
# message (nginx adds file:line) where it is wrong.

use FindBin; use lib $FindBin::Bin; use LLM;
use Test::Nginx::Socket 'no_plan';

repeat_each(1);
no_shuffle();
run_tests();

__DATA__

=== TEST 1: every directive accepted at location level
--- config
    location /v1/ {
        llm_gateway on;
        llm_api auto;
        llm_key $http_x_tenant;
        llm_max_body_size 2m;
        llm_max_json_depth 32;
        llm_stream_usage off;
        llm_response_max_size 1m;
        llm_sse_event_max_size 16k;
        return 200 "ok\n";
    }
--- request
GET /v1/models
--- response_body
ok
--- no_error_log
[emerg]



=== TEST 2: directives inherited from http and server level
--- http_config
    llm_gateway on;
    llm_max_body_size 1m;
--- config
    llm_api chat;
    location /v1/ {
        return 200 "ok\n";
    }
--- request
GET /v1/x
--- response_body
ok
--- no_error_log
[emerg]



=== TEST 3: llm_gateway takes on or off
--- config
    location /v1/ {
        llm_gateway yes;
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*invalid value "yes" in "llm_gateway" directive, it must be "on" or "off" in .*nginx\.conf:\d+/



=== TEST 4: llm_api rejects an unknown API
--- config
    location /v1/ {
        llm_gateway on;
        llm_api gemini;
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*"llm_api" must be "auto", "chat", "completions", "embeddings" or "messages" in .*nginx\.conf:\d+/



=== TEST 5: llm_max_body_size must be a size
--- config
    location /v1/ {
        llm_max_body_size lots;
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*"llm_max_body_size" directive invalid value/



=== TEST 6: llm_max_body_size below 1k is refused
--- config
    location /v1/ {
        llm_max_body_size 10;
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*"llm_max_body_size" directive must be at least 1k/



=== TEST 7: llm_max_json_depth bounds
--- config
    location /v1/ {
        llm_max_json_depth 5000;
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*"llm_max_json_depth" directive must be between 2 and 128/



=== TEST 8: llm_stream_usage takes on or off
--- config
    location /v1/ {
        llm_stream_usage maybe;
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*invalid value "maybe" in "llm_stream_usage" directive/



=== TEST 9: llm_key needs exactly one argument
--- config
    location /v1/ {
        llm_key;
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*invalid number of arguments in "llm_key" directive/



=== TEST 10: llm_response_max_size must be a size
--- config
    location /v1/ {
        llm_response_max_size 1x;
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*"llm_response_max_size" directive invalid value/



=== TEST 11: llm_sse_event_max_size below 1k is refused
--- config
    location /v1/ {
        llm_sse_event_max_size 100;
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*"llm_sse_event_max_size" directive must be at least 1k/



=== TEST 12: llm_gateway is not allowed in upstream {}
--- http_config
    upstream u {
        server 127.0.0.1:1;
        llm_gateway on;
    }
--- config
--- must_die
--- error_log eval
qr/\[emerg\] .*"llm_gateway" directive is not allowed here/



=== TEST 13: GET passes through a gateway location untouched
--- config
    location /v1/ {
        llm_gateway on;
        proxy_pass http://127.0.0.1:$TEST_NGINX_MOCK_PORT;
    }
--- request
GET /v1/models
--- response_body_like: "object":\s*"list"
--- no_error_log
[error]
--- error_code: 200



=== TEST 14: POST to a non-LLM path under the gateway is not inspected
--- config
    location /v1/ {
        llm_gateway on;
        return 200 "api=[$llm_api]\n";
    }
--- request
POST /v1/files
not json at all
--- response_body
api=[]
--- no_error_log
[error]
