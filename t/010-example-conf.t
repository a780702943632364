# The shipped example (conf/llm.conf, included by conf/nginx.conf) loads
# and serves: a test keeps the README's configuration from rotting.

use FindBin; use lib $FindBin::Bin; use LLM;
use Test::Nginx::Socket 'no_plan';

repeat_each(1);
no_shuffle();
run_tests();

__DATA__

=== TEST 1: a chat completion through the example gateway
--- http_config
    include $TEST_NGINX_REPO/conf/llm.conf;
--- config
    location = /t {
        proxy_pass http://127.0.0.1:8080/v1/chat/completions;
    }
--- request
POST /t
{"model":"mock","messages":[{"role":"user","content":"Hello!"}]}
--- more_headers
Content-Type: application/json
Authorization: Bearer sk-demo
--- error_code: 200
--- response_body_like: "chat\.completion"
--- no_error_log
[error]



=== TEST 2: a stream through the example gateway
--- http_config
    include $TEST_NGINX_REPO/conf/llm.conf;
--- config
    location = /t {
        proxy_pass http://127.0.0.1:8080/v1/chat/completions;
    }
--- request
POST /t
{"model":"mock","stream":true,"messages":[{"role":"user","content":"Hi"}]}
--- more_headers
Content-Type: application/json
--- error_code: 200
--- response_body_like: data: \[DONE\]\n\n$
