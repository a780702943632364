# API keys never leave the gateway in clear: not in the error log (at
# info, the level operators run; nginx's debug log prints request headers
# by design), not in error bodies, not in response headers. $llm_key_hash
# (12 hex digits of XXH3-64 of the key) is what identifies the caller, the
# same whichever header carried the key. A provider credential set with
# proxy_set_header never reaches the client either.

use FindBin; use lib $FindBin::Bin; use LLM;
use Test::Nginx::Socket 'no_plan';

repeat_each(2);
no_shuffle();
log_level('info');

# the keys, and the first 12 hex digits of their XXH3-64
our $Bearer   = 'sk-test-SECRET-0123456789abcdef';   # 94ee42444966
our $Anthropic = 'sk-ant-SECRET-fedcba9876543210';   # 06a611d00187
our $Azure    = 'azure-SECRET-0a1b2c3d4e5f';         # 43c322116263

add_block_preprocessor(sub {
    my $block = shift;

    if (!defined $block->config) {
        $block->set_value("config", <<"_EOC_");
    location /v1/ {
        llm_gateway on;
        llm_max_body_size 4k;
        add_header X-Key-Hash \$llm_key_hash always;
        proxy_pass http://127.0.0.1:$ENV{TEST_NGINX_MOCK_PORT};
    }
_EOC_
    }

    # every block: no secret anywhere the client or the log can see
    if (!defined $block->no_error_log) {
        $block->set_value("no_error_log",
                          "SECRET\n[alert]\n[crit]\n[emerg]\n");
    }

    # one pattern per request of the block
    my $req = $block->request;
    my $secret = ref $req eq 'ARRAY' ? [("SECRET") x @$req] : "SECRET";

    if (!defined $block->raw_response_headers_unlike) {
        $block->set_value("raw_response_headers_unlike", $secret);
    }

    if (!defined $block->response_body_unlike) {
        $block->set_value("response_body_unlike", $secret);
    }
});

run_tests();

__DATA__

=== TEST 1: bearer key, invalid JSON: 400, logged at info without the key
--- request
POST /v1/chat/completions
{"model":"m","messages":[
--- more_headers
Content-Type: application/json
Authorization: Bearer sk-test-SECRET-0123456789abcdef
--- error_code: 400
--- response_headers
X-Key-Hash: 94ee42444966
--- error_log
llm rejected chat request



=== TEST 2: x-api-key, Anthropic field error: key not in body, header, log
--- request
POST /v1/messages
{"model":"claude","messages":[{"role":"user","content":"hi"}]}
--- more_headers
Content-Type: application/json
x-api-key: sk-ant-SECRET-fedcba9876543210
anthropic-version: 2023-06-01
--- error_code: 400
--- response_headers
X-Key-Hash: 06a611d00187
--- response_body_like: ^\{"type":"error","error":\{"type":"invalid_request_error"
--- error_log
llm rejected messages request



=== TEST 3: api-key (Azure style), unsupported media type
--- request
POST /v1/chat/completions
model=m
--- more_headers
Content-Type: text/plain
api-key: azure-SECRET-0a1b2c3d4e5f
--- error_code: 415
--- response_headers
X-Key-Hash: 43c322116263
--- response_body_like: "code":"unsupported_media_type"



=== TEST 4: body too large: the 413 and its log line carry no key
--- request eval
"POST /v1/chat/completions\n" . '{"model":"m","messages":[{"role":"user","content":"' . ("x" x 5000) . '"}]}'
--- more_headers
Content-Type: application/json
Authorization: Bearer sk-test-SECRET-0123456789abcdef
--- error_code: 413
--- response_headers
X-Key-Hash: 94ee42444966
--- error_log
exceeds llm_max_body_size



=== TEST 5: a key that looks like JSON or an injection is hashed, not echoed
--- request
POST /v1/chat/completions
{"model":
--- more_headers
Content-Type: application/json
Authorization: Bearer "},"SECRET":"x
--- error_code: 400
--- response_headers_like
X-Key-Hash: ^[0-9a-f]{12}$



=== TEST 6: the same key gives the same hash from every header
--- request eval
["POST /v1/chat/completions\n{}", "POST /v1/chat/completions\n{}",
 "POST /v1/chat/completions\n{}"]
--- more_headers eval
["Content-Type: application/json\nAuthorization: Bearer sk-test-SECRET-0123456789abcdef",
 "Content-Type: application/json\nx-api-key: sk-test-SECRET-0123456789abcdef",
 "Content-Type: application/json\napi-key: sk-test-SECRET-0123456789abcdef"]
--- error_code eval
[400, 400, 400]
--- response_headers eval
["X-Key-Hash: 94ee42444966", "X-Key-Hash: 94ee42444966",
 "X-Key-Hash: 94ee42444966"]



=== TEST 7: a successful request: the key stays out of the answer and the log
--- request
POST /v1/chat/completions
{"model":"m","messages":[{"role":"user","content":"hi"}]}
--- more_headers
Content-Type: application/json
Authorization: Bearer sk-test-SECRET-0123456789abcdef
--- error_code: 200
--- response_headers
X-Key-Hash: 94ee42444966
x-mock-instance: mock
--- response_body_like: "object":"chat.completion"



=== TEST 8: a stream that fails mid-way is logged (warn) without the key
--- request
POST /v1/chat/completions
{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}
--- more_headers
Content-Type: application/json
Authorization: Bearer sk-test-SECRET-0123456789abcdef
x-mock-fault: sse-error
x-mock-fault-after: 2
--- error_code: 200
--- response_headers
X-Key-Hash: 94ee42444966
--- response_body_like: "error"
--- error_log
llm upstream sent an error event



=== TEST 9: upstream refuses the key (401): the gateway adds no key to it
--- request
POST /v1/messages
{"model":"m","max_tokens":8,"messages":[{"role":"user","content":"hi"}]}
--- more_headers
Content-Type: application/json
x-api-key: sk-ant-SECRET-fedcba9876543210
x-mock-status: 401
--- error_code: 401
--- response_headers
X-Key-Hash: 06a611d00187
--- response_body_like: "authentication_error"



=== TEST 10: llm_key names the caller; the header keys are then not used
--- config
    location /v1/ {
        llm_gateway on;
        llm_key $http_x_tenant;
        add_header X-Key-Hash $llm_key_hash always;
        proxy_pass http://127.0.0.1:$TEST_NGINX_MOCK_PORT;
    }
--- request
POST /v1/chat/completions
{"model":"m"}
--- more_headers
Content-Type: application/json
Authorization: Bearer sk-test-SECRET-0123456789abcdef
X-Tenant: tenant-42
--- error_code: 400
--- response_headers
X-Key-Hash: ee7f6fb0845f



=== TEST 11: no key at all: an empty hash, nothing invented
--- request
POST /v1/chat/completions
{"model":"m"}
--- more_headers
Content-Type: application/json
--- error_code: 400
--- raw_response_headers_unlike: (?i)x-key-hash



=== TEST 12: a provider credential set in nginx never reaches the client
--- config
    location /v1/ {
        llm_gateway on;
        proxy_set_header Authorization "Bearer sk-provider-SECRET-999";
        proxy_set_header x-api-key "sk-provider-SECRET-999";
        proxy_pass http://127.0.0.1:$TEST_NGINX_MOCK_PORT;
    }
--- request eval
["POST /v1/chat/completions\n" . '{"model":"m","messages":[{"role":"user","content":"hi"}]}',
 "POST /v1/chat/completions\n" . '{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}',
 "POST /v1/messages\n" . '{"model":"m","max_tokens":8,"messages":[{"role":"user","content":"hi"}]}',
 "POST /v1/chat/completions\n" . '{"model":"m","messages":[{"role":"user","content":"hi"}]}']
--- more_headers eval
["Content-Type: application/json",
 "Content-Type: application/json",
 "Content-Type: application/json\nx-mock-status: 401",
 "Content-Type: application/json\nx-mock-fault: sse-error"]
--- error_code eval
[200, 200, 401, 200]
