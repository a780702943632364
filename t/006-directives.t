# The runtime side of each directive: what it changes when set, and what
# happens when its limit is hit.

use FindBin; use lib $FindBin::Bin; use LLM;
use Test::Nginx::Socket 'no_plan';

repeat_each(1);
no_shuffle();

our $Long = 'x' x 3000;

add_block_preprocessor(sub {
    my $block = shift;

    if (!defined $block->http_config) {
        $block->set_value("http_config", <<"_EOC_");
    log_format llm 'llm-log api=\$llm_api model="\$llm_model" '
                   'key=\$llm_key_hash prompt=\$llm_prompt_tokens '
                   'completion=\$llm_completion_tokens '
                   'usage=\$llm_usage_source outcome=\$llm_outcome '
                   'events=\$llm_events';
_EOC_
    }

    if (!defined $block->more_headers) {
        $block->set_value("more_headers", "Content-Type: application/json");
    }

    if (!defined $block->no_error_log) {
        $block->set_value("no_error_log", "[alert]\n[crit]\n");
    }
});

run_tests();

__DATA__

=== TEST 1: llm_api fixes the API of a location with a custom path
--- config
    location /llm/ask {
        llm_gateway on;
        llm_api chat;
        access_log logs/error.log llm;
        proxy_pass http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1/chat/completions;
    }
--- request
POST /llm/ask
{"model":"fixed","messages":[{"role":"user","content":"hi"}]}
--- error_code: 200
--- response_body_like: "chat\.completion"
--- error_log
llm-log api=chat model="fixed"



=== TEST 2: llm_api messages answers in Anthropic's shape on any path
--- config
    location /llm/ask {
        llm_gateway on;
        llm_api messages;
        proxy_pass http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1/messages;
    }
--- request
POST /llm/ask
{"model":"claude","messages":[{"role":"user","content":"hi"}]}
--- error_code: 400
--- response_body_like: ^\{"type":"error","error":\{"type":"invalid_request_error","message":"[^"]*max_tokens



=== TEST 3: llm_key evaluating to nothing leaves the caller anonymous
--- config
    location /v1/ {
        llm_gateway on;
        llm_key $http_x_tenant;
        access_log logs/error.log llm;
        proxy_pass http://127.0.0.1:$TEST_NGINX_MOCK_PORT;
    }
--- request
POST /v1/chat/completions
{"model":"m","messages":[{"role":"user","content":"hi"}]}
--- more_headers
Content-Type: application/json
Authorization: Bearer sk-ignored-because-llm_key-is-set
--- log_level: info
--- error_code: 200
--- error_log
llm-log api=chat model="m" key=- prompt=
--- no_error_log
sk-ignored



=== TEST 4: llm_stream_usage off: the stream is accounted from estimates
--- config
    location /v1/ {
        llm_gateway on;
        llm_stream_usage off;
        access_log logs/error.log llm;
        proxy_pass http://127.0.0.1:$TEST_NGINX_MOCK_PORT;
    }
--- request
POST /v1/chat/completions
{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}
--- more_headers
Content-Type: application/json
x-mock-tokens: 4
--- error_code: 200
--- response_body_like: data: \[DONE\]
--- error_log eval
qr/llm-log api=chat model="m" key=- prompt=\d+ completion=[1-9]\d* usage=estimated outcome=complete/



=== TEST 5: a JSON answer over llm_response_max_size is passed unread and
accounted from estimates
--- config
    location /v1/ {
        llm_gateway on;
        llm_response_max_size 1k;
        access_log logs/error.log llm;
        proxy_pass http://127.0.0.1:$TEST_NGINX_MOCK_PORT;
    }
--- request
POST /v1/chat/completions
{"model":"m","messages":[{"role":"user","content":"hi"}]}
--- more_headers
Content-Type: application/json
x-mock-tokens: 400
--- error_code: 200
--- response_body_like: "completion_tokens":400
--- error_log eval
[qr/llm response larger than llm_response_max_size 1024, usage estimated/,
 qr/llm-log api=chat model="m" key=- prompt=\d+ completion=[1-9]\d* usage=estimated outcome=complete/]



=== TEST 6: an SSE event over llm_sse_event_max_size reaches the client
whole; only its analysis is cut short
--- config
    location /v1/ {
        llm_gateway on;
        llm_sse_event_max_size 1k;
        access_log logs/error.log llm;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/sse;
    }
    location /sse {
        default_type text/event-stream;
        echo 'data: {"choices":[{"index":0,"delta":{"content":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}}]}';
        echo '';
        echo 'data: [DONE]';
        echo '';
    }
--- request
POST /v1/chat/completions
{"model":"m","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}
--- error_code: 200
--- response_body_like eval
qr/\Adata: \{"choices":\[\{"index":0,"delta":\{"content":"x{3000}"\}\}\]\}\n\ndata: \[DONE\]\n\n\z/
--- error_log eval
qr/llm-log api=chat model="m" key=- prompt=\d+ completion=\d+ usage=estimated outcome=complete events=2/
