# Requests: every way a block can describe what to send, checked by having
# nginx echo back what it received.

use FindBin;
use lib "$FindBin::Bin/lib";
use SelfTestEnv port => 1991;
use Test::Nginx::Socket;

repeat_each(2);

plan tests => repeat_each() * 40;

run_tests();

__DATA__

=== TEST 1: POST body: Content-Length added, body trimmed
--- config
location = /t {
    echo_read_request_body;
    echo "[$echo_request_body] len=$http_content_length";
}
--- request
POST /t
hello world
--- response_body
[hello world] len=11



=== TEST 2: default Host and Connection headers, HTTP/1.1 request line
--- config
location = /t {
    echo "$request|$http_host|$http_connection";
}
--- request
GET /t?a=1
--- response_body
GET /t?a=1 HTTP/1.1|localhost|close



=== TEST 3: more_headers adds headers, overrides Host, skips comments
--- config
location = /t { echo "$http_x_one|$http_x_two|$host"; }
--- more_headers
X-One: 1
# X-Two: commented out
Host: other.example
--- request
GET /t
--- response_body
1||other.example



=== TEST 4: explicit Content-Length keeps the body as written
--- config
location = /t { echo_read_request_body; echo "[$echo_request_body]"; }
--- more_headers
Content-Length: 4
--- request
POST /t
abc
--- response_body
[abc
]



=== TEST 5: several requests in one block (request eval array)
--- config
location = /a { return 200 "A\n"; }
location = /b { return 404; }
--- request eval
["GET /a", "GET /b"]
--- error_code eval
[200, 404]
--- response_body_like eval
["^A\$", "404 Not Found"]



=== TEST 6: more_headers per request
--- config
location = /t { echo "$http_x_in"; }
--- request eval
["GET /t", "GET /t"]
--- more_headers eval
["X-In: first", "X-In: second"]
--- response_body eval
["first\n", "second\n"]



=== TEST 7: pipelined requests on one keep-alive connection
--- config
location = /t { echo "$arg_n $connection_requests $http_connection"; }
--- pipelined_requests eval
["GET /t?n=1", "GET /t?n=2", "GET /t?n=3"]
--- response_body eval
["1 1 keep-alive\n", "2 2 keep-alive\n", "3 3 close\n"]



=== TEST 8: raw_request is sent verbatim
--- config
location = /t { echo "$request|$http_host|$http_connection"; }
--- raw_request eval
"GET /t HTTP/1.0\r\nHost: raw\r\n\r\n"
--- response_body
GET /t HTTP/1.0|raw|



=== TEST 9: raw_request in packets with raw_request_middle_delay
--- config
location = /t { echo_read_request_body; echo "[$echo_request_body]"; }
--- raw_request eval
["POST /t HTTP/1.0\r\nContent-Length: 10\r\n\r\nhello",
 "world"]
--- raw_request_middle_delay: 0.1
--- response_body
[helloworld]



=== TEST 10: request packets with delay_before get the added headers
--- config
location = /t { echo_read_request_body; echo "[$echo_request_body]"; }
--- request eval
[["POST /t\nhel", {value => "lo", delay_before => 0.1}]]
--- response_body
[hello]



=== TEST 11: chunked request body (Transfer-Encoding in more_headers)
--- config
location = /t { echo_read_request_body; echo "[$echo_request_body]"; }
--- more_headers
Transfer-Encoding: chunked
--- request eval
"POST /t\n5\r\nhello\r\n0\r\n\r\n"
--- response_body
[hello]



=== TEST 12: HTTP/1.0 request line, method only defaults to /
--- config
location = / { echo "$request"; }
--- request
GET
--- response_body
GET / HTTP/1.1



=== TEST 13: comment lines before the request line
--- config
location = /t { echo "$arg_x"; }
--- request
# the request carries x=7
GET /t?x=7
--- response_body
7



=== TEST 14: shutdown of the write side after sending
--- config
location = /t { return 200 "half-closed\n"; }
--- request
GET /t
--- shutdown
--- response_body
half-closed



=== TEST 15: server_addr_for_client
--- config
location = /t { echo "$server_addr"; }
--- request
GET /t
--- server_addr_for_client: 127.0.0.1
--- response_body
127.0.0.1



=== TEST 16: HTTP/1.0 in the request line is kept
--- config
location = /t { echo "$server_protocol"; }
--- request
GET /t HTTP/1.0
--- response_body
HTTP/1.0
