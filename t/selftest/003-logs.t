# Error log and access log sections, must_die, and the shutdown log checks.

use FindBin;
use lib "$FindBin::Bin/lib";
use SelfTestEnv port => 1992;
use Test::Nginx::Socket;

repeat_each(2);

# shutdown_error_log patterns are checked once per block, after its nginx
# has stopped; everything else once per repetition.
plan tests => repeat_each() * 44 + 2;

no_shuffle();
run_tests();

__DATA__

=== TEST 1: error_log and no_error_log, plain lines
--- config
location = /t { return 200 "ok\n"; }
--- request
GET /t?marker=one
--- response_body
ok
--- error_log
http args: "marker=one"
http finalize request
--- no_error_log
[error]
[alert]



=== TEST 2: eval arrays mixing qr// and literal text
--- config
location = /t { return 200 "ok\n"; }
--- request
GET /t?marker=two
--- response_body
ok
--- error_log eval
[qr/http args: "marker=t\w+"/, "http request line"]
--- no_error_log eval
qr/\[(?:error|crit|emerg)\]/



=== TEST 3: an [error] line produced by nginx
--- config
location = /missing { root html; }
--- request
GET /missing
--- error_code: 404
--- error_log
No such file or directory



=== TEST 4: grep_error_log with a literal, grep_error_log_out
--- config
location = /t { return 200 "ok\n"; }
--- request
GET /t
--- grep_error_log: http finalize request: 0
--- grep_error_log_out
http finalize request: 0
--- response_body
ok



=== TEST 5: grep_error_log eval qr with expected output per repetition
--- config
location = /t { return 200 "ok\n"; }
--- request
GET /t?v=1
--- grep_error_log eval: qr/http args: "[^"]*"/
--- grep_error_log_out eval
["http args: \"v=1\"\n", "http args: \"v=1\"\n"]
--- response_body
ok



=== TEST 6: log_level section
--- log_level: warn
--- config
location = /t { return 200 "ok\n"; }
--- request
GET /t
--- response_body
ok
--- no_error_log
[debug]
[info]



=== TEST 7: each check sees only what was logged since the previous one
--- config
location = /a { return 200 "a"; }
location = /b { return 200 "b"; }
--- request eval
["GET /a?first", "GET /b?second"]
--- response_body eval
["a", "b"]
--- error_log eval
qr/http args: "(first|second)"/
--- no_error_log eval
[qr/"first".*\n(?s:.*)"second"/]



=== TEST 8: must_die with error_log / no_error_log
--- config
location = /t { return a b c; }
--- request
GET /t
--- must_die
--- suppress_stderr
--- error_log
[emerg]
invalid number of arguments in "return" directive
--- no_error_log
[alert]



=== TEST 9: must_die with an exit code
--- config
location = /t { no_such_directive on; }
--- request
GET /t
--- must_die: 1
--- suppress_stderr
--- error_log eval
["[emerg]", qr/unknown directive "no_such_directive" in \S+nginx\.conf:\d+/]



=== TEST 10: wait lets a slow request finish before the logs are read
--- config
location = /t { echo "first"; echo_flush; echo_sleep 0.4; echo "late"; }
--- request
GET /t?slow=1 HTTP/1.0
--- timeout: 0.15
--- abort
--- wait: 0.8
--- response_body
first
--- access_log
GET /t?slow=1 HTTP/1.0
--- no_access_log
GET /nothing



=== TEST 11: shutdown_error_log and no_shutdown_error_log
--- config
location = /t { return 200 "bye\n"; }
--- request
GET /t
--- response_body
bye
--- shutdown_error_log
(SIGQUIT) received
--- no_shutdown_error_log
[alert]
