# OpenAI-style non-streaming traffic through the gateway: chat, completions,
# embeddings; the body is understood, usage is accounted from upstream, the
# $llm_* variables carry it to the access log, and the key never appears.

use FindBin; use lib $FindBin::Bin; use LLM;
use Test::Nginx::Socket 'no_plan';

repeat_each(2);
no_shuffle();

add_block_preprocessor(sub {
    my $block = shift;

    if (!defined $block->http_config) {
        $block->set_value("http_config", <<"_EOC_");
    upstream mock {
        server 127.0.0.1:$ENV{TEST_NGINX_MOCK_PORT};
        keepalive 8;
    }
    log_format llm 'llm-log api=\$llm_api model="\$llm_model" '
                   'stream=\$llm_stream key=\$llm_key_hash '
                   'prompt=\$llm_prompt_tokens cached=\$llm_cached_tokens '
                   'completion=\$llm_completion_tokens '
                   'reasoning=\$llm_reasoning_tokens '
                   'total=\$llm_total_tokens '
                   'estimate=\$llm_prompt_tokens_estimate '
                   'max=\$llm_max_tokens msgs=\$llm_messages '
                   'usage=\$llm_usage_source outcome=\$llm_outcome '
                   'time=\$llm_time ttft=\$llm_ttft';
_EOC_
    }

    if (!defined $block->config) {
        $block->set_value("config", <<'_EOC_');
    location /v1/ {
        llm_gateway on;
        access_log logs/error.log llm;
        proxy_pass http://mock;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
    }
_EOC_
    }
});

run_tests();

__DATA__

=== TEST 1: chat completion passes through, usage from upstream
--- request
POST /v1/chat/completions
{"model":"gpt-4o-mini","max_tokens":50,"messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"Say hello to the gateway"}]}
--- more_headers
Content-Type: application/json
x-mock-tokens: 5
--- error_code: 200
--- response_headers
Content-Type: application/json
--- response_body_like: "object":\s*"chat\.completion"
--- error_log eval
qr/llm-log api=chat model="gpt-4o-mini" stream=0 key=- prompt=\d+ cached=0 completion=5 reasoning=0 total=\d+ estimate=\d+ max=50 msgs=2 usage=upstream outcome=complete time=\d+\.\d{3} ttft=-/
--- no_error_log
[error]



=== TEST 2: the caller is identified by a short hash of its bearer token
--- request
POST /v1/chat/completions
{"model":"m","messages":[{"role":"user","content":"hi"}]}
--- more_headers
Content-Type: application/json
Authorization: Bearer sk-test-123
--- log_level: info
--- error_code: 200
--- error_log
key=c7b7fab8e78b prompt=
--- no_error_log
sk-test-123



=== TEST 3: x-api-key identifies the caller the same way
--- request
POST /v1/chat/completions
{"model":"m","messages":[{"role":"user","content":"hi"}]}
--- more_headers
Content-Type: application/json
x-api-key: acme
--- log_level: info
--- error_code: 200
--- error_log
key=44ad98655d88 prompt=
--- no_error_log
acme



=== TEST 4: llm_key names the caller from any variable
--- config
    location /v1/ {
        llm_gateway on;
        llm_key $http_x_tenant;
        access_log logs/error.log llm;
        proxy_pass http://mock;
    }
--- request
POST /v1/chat/completions
{"model":"m","messages":[{"role":"user","content":"hi"}]}
--- more_headers
Content-Type: application/json
Authorization: Bearer sk-other
X-Tenant: acme
--- error_code: 200
--- error_log
key=44ad98655d88 prompt=



=== TEST 5: legacy completions with usage
--- request
POST /v1/completions
{"model":"gpt-3.5-turbo-instruct","prompt":"Once upon a time","max_tokens":7}
--- more_headers
Content-Type: application/json
--- error_code: 200
--- response_body_like: "object":\s*"text_completion"
--- error_log eval
qr/llm-log api=completions model="gpt-3.5-turbo-instruct" stream=0 .* completion=7 .* max=7 .* usage=upstream outcome=complete/



=== TEST 6: embeddings with usage
--- request
POST /v1/embeddings
{"model":"text-embedding-3-small","input":["one","two"]}
--- more_headers
Content-Type: application/json; charset=utf-8
--- error_code: 200
--- response_body_like: "embedding"
--- error_log eval
qr/llm-log api=embeddings model="text-embedding-3-small" stream=0 .* prompt=[1-9]\d* .* usage=upstream outcome=complete/



=== TEST 7: a long prompt warms the mock's simulated prefix cache
--- request eval
"POST /v1/chat/completions\n" . '{"model":"m","messages":[{"role":"user","content":"' . ("lorem ipsum dolor sit amet " x 100) . '"}]}'
--- more_headers
Content-Type: application/json
--- error_code: 200
--- error_log eval
qr/llm-log api=chat .* usage=upstream outcome=complete/



=== TEST 8: cached prompt tokens reported by upstream are accounted
--- request eval
"POST /v1/chat/completions\n" . '{"model":"m","messages":[{"role":"user","content":"' . ("lorem ipsum dolor sit amet " x 100) . '"}]}'
--- more_headers
Content-Type: application/json
--- error_code: 200
--- error_log eval
qr/llm-log api=chat .* prompt=6\d\d cached=6\d\d .* usage=upstream outcome=complete/



=== TEST 9: an upstream error is passed to the client, no usage invented
--- request
POST /v1/chat/completions
{"model":"m","messages":[{"role":"user","content":"hi"}]}
--- more_headers
Content-Type: application/json
x-mock-status: 503
--- error_code: 503
--- response_body_like: "error"
--- error_log eval
qr/llm-log api=chat .* completion=- .* usage=- outcome=error/



=== TEST 10: an upstream that cannot be reached gets a 502 in the OpenAI shape, not nginx's page
--- config
    location /v1/ {
        llm_gateway on;
        proxy_pass http://127.0.0.1:1;
    }
--- request
POST /v1/chat/completions
{"model":"m","messages":[{"role":"user","content":"hi"}]}
--- more_headers
Content-Type: application/json
--- error_code: 502
--- response_headers
Content-Type: application/json
--- response_body
{"error":{"message":"the upstream LLM server could not be reached or closed the connection before answering","type":"server_error","param":null,"code":"upstream_unavailable"}}
--- error_log
connect() failed (111: Connection refused)



=== TEST 11: an upstream that does not answer in time gets a 504 in the Anthropic shape
--- config
    location /v1/ {
        llm_gateway on;
        proxy_read_timeout 300ms;
        proxy_pass http://mock;
    }
--- request
POST /v1/messages
{"model":"claude-haiku-4-5","max_tokens":8,"messages":[{"role":"user","content":"hi"}]}
--- more_headers
Content-Type: application/json
x-mock-fault: hang-headers
--- error_code: 504
--- response_headers
Content-Type: application/json
--- response_body
{"type":"error","error":{"type":"api_error","message":"the upstream LLM server did not answer in time"}}
--- error_log
upstream timed out



=== TEST 12: an operator's error_page for 502 still wins
--- config
    location /v1/ {
        llm_gateway on;
        proxy_pass http://127.0.0.1:1;
        error_page 502 = /down;
    }
    location = /down {
        return 503 "maintenance\n";
    }
--- request
POST /v1/chat/completions
{"model":"m","messages":[{"role":"user","content":"hi"}]}
--- more_headers
Content-Type: application/json
--- error_code: 503
--- response_body
maintenance
