# Responses: status, headers, bodies, with every expectation form the
# runner supports passing against Debian's nginx.

use FindBin;
use lib "$FindBin::Bin/lib";
use SelfTestEnv port => 1990;
use Test::Nginx::Socket;

repeat_each(2);

plan tests => repeat_each() * 45;

run_tests();

__DATA__

=== TEST 1: plain body and default status 200
--- config
location = /t { return 200 "hello\n"; }
--- request
GET /t
--- response_body
hello



=== TEST 2: error_code
--- config
location = /t { return 404; }
--- request
GET /t
--- error_code: 404
--- response_body_like: 404 Not Found



=== TEST 3: response_headers, present and absent
--- config
location = /t {
    add_header X-A 1;
    add_header X-B "two words";
    return 200 "x";
}
--- request
GET /t
--- response_headers
X-A: 1
X-B: two words
!X-C
--- response_body chomp
x



=== TEST 4: response_headers_like (anchored regex per header)
--- config
location = /t { add_header X-Id abc123; return 204; }
--- request
GET /t
--- error_code: 204
--- response_headers_like
X-Id: abc\d+



=== TEST 5: raw_response_headers_like / _unlike
--- config
location = /t { return 201 "made"; }
--- request
GET /t
--- error_code: 201
--- raw_response_headers_like: ^HTTP/1\.1 201 Created\r\n.*Content-Length: 4\r\n
--- raw_response_headers_unlike: X-Forbidden



=== TEST 6: response_body_like with eval qr
--- config
location = /t { return 200 "id=42\n"; }
--- request
GET /t
--- response_body_like eval
qr/^id=\d+$/m



=== TEST 7: response_body_unlike
--- config
location = /t { return 200 "all good\n"; }
--- request
GET /t
--- response_body_unlike: error



=== TEST 8: binary body through response_body eval
--- config
location = /t { echo_read_request_body; echo_request_body; }
--- request eval
"POST /t\n\x01\x00\xff-bytes"
--- response_body eval
"\x01\x00\xff-bytes"



=== TEST 9: response_body eval returning a Regexp
--- config
location = /t { return 200 "abcdef"; }
--- request
GET /t
--- response_body eval
qr/^abc/



=== TEST 10: HEAD: no body, headers checked
--- config
location = /t { return 200 "123456"; }
--- request
HEAD /t
--- response_headers
Content-Length: 6
--- response_body



=== TEST 11: 304 has no body to parse
--- config
location = /t { return 304; }
--- request
GET /t
--- error_code: 304



=== TEST 12: error_code_like
--- config
location = /t { return 503; }
--- request
GET /t
--- error_code_like: ^5\d\d$



=== TEST 13: response_body_filters
--- config
location = /t { return 200 "abc\n"; }
--- request
GET /t
--- response_body_filters
uc
--- response_body
ABC



=== TEST 14: response_body_json_sort
--- config
location = /t { return 200 '{"b": 1, "a": [2, 3]}'; }
--- request
GET /t
--- response_body_json_sort
--- response_body
{"a":[2,3],"b":1}



=== TEST 15: chunked response is decoded
--- config
location = /t { echo "a"; echo_flush; echo "b"; }
--- request
GET /t
--- response_headers
Transfer-Encoding: chunked
--- response_body
a
b



=== TEST 16: server_name section
--- server_name: selftest.local
--- config
location = /t { return 200 "$server_name\n"; }
--- request
GET /t
--- response_body
selftest.local



=== TEST 17: $ServerPort in an expected header value
--- config
location = /t { add_header X-Port $server_port; return 200; }
--- request
GET /t
--- response_headers
X-Port: $ServerPort



=== TEST 18: a 1 MB body
--- config
location = /t { echo_duplicate 1048576 "a"; }
--- request
GET /t
--- response_body eval
"a" x 1048576



=== TEST 19: default root location serves html/index.html
--- config
--- request
GET /
--- response_body_like: It works!



=== TEST 20: HTTP/1.0 response without Content-Length ends at close
--- config
location = /t { echo "until close"; }
--- request
GET /t HTTP/1.0
--- response_headers
!Content-Length
--- response_body
until close
