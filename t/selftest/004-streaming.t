# Streaming responses, client timeouts and --- abort.
#
# The pattern the project's streaming suites use to prove that events are
# not held back: the server emits "one", flushes, then stalls; the client
# gives up after --- timeout (no failure thanks to --- abort) and the part
# received so far must be exactly "one".  The request must be HTTP/1.0: on
# HTTP/1.1 the response is chunked and a chunked body cut short is a
# failure ("no last chunk found") under upstream Test::Nginx and under this
# runner alike (006-failures.t proves that).

use FindBin;
use lib "$FindBin::Bin/lib";
use SelfTestEnv port => 1993;
use Test::Nginx::Socket;

$ENV{TEST_NGINX_MOCK_PORT} = 1994;

repeat_each(2);

plan tests => repeat_each() * 13;

run_tests();

__DATA__

=== TEST 1: partial body seen before the stall (echo_flush + echo_sleep)
--- config
location = /t {
    echo "one";
    echo_flush;
    echo_sleep 2;
    echo "two";
}
--- request
GET /t HTTP/1.0
--- timeout: 1
--- abort
--- response_body_like: ^one\n$



=== TEST 2: the same through proxy_pass from a mock upstream server
--- http_config
server {
    listen 127.0.0.1:$TEST_NGINX_MOCK_PORT;
    location = /stream {
        default_type text/event-stream;
        echo "data: 1";
        echo "";
        echo_flush;
        echo_sleep 2;
        echo "data: 2";
        echo "";
    }
}
--- config
location = /t {
    proxy_pass http://127.0.0.1:$TEST_NGINX_MOCK_PORT/stream;
    proxy_buffering off;
}
--- request
GET /t HTTP/1.0
--- timeout: 1
--- abort
--- response_headers
Content-Type: text/event-stream
--- response_body_like: ^data: 1\n\n$



=== TEST 3: --- timeout bounds each wait, not the whole exchange
--- config
location = /t {
    echo "a"; echo_flush; echo_sleep 0.3;
    echo "b"; echo_flush; echo_sleep 0.3;
    echo "c";
}
--- request
GET /t HTTP/1.0
--- timeout: 0.5
--- response_body
a
b
c



=== TEST 4: a complete HTTP/1.1 chunked stream
--- config
location = /t { echo "one"; echo_flush; echo_sleep 0.2; echo "two"; }
--- request
GET /t
--- response_headers
Transfer-Encoding: chunked
--- response_body
one
two



=== TEST 5: --- abort with a response that completes in time
--- config
location = /t { echo "done"; }
--- request
GET /t
--- timeout: 2
--- abort
--- response_body
done



=== TEST 6: timeout in milliseconds, nothing received, ignore_response
--- config
location = /t { echo_sleep 1; echo "late"; }
--- request
GET /t HTTP/1.0
--- timeout: 100ms
--- abort
--- ignore_response
--- no_error_log
[error]
