# Configuration generation, setters, environment substitution, files and
# the block selection sections (skip/todo/SKIP/LAST).  The generated
# nginx.conf is served back by nginx itself and matched line by line.

use FindBin;
use lib "$FindBin::Bin/lib";
use SelfTestEnv port => 1996;
use Test::Nginx::Socket;

$ENV{TEST_NGINX_SELFTEST_WORD} = 'banana';

repeat_each(2);
master_on();
workers(2);
worker_connections(128);
env_to_nginx('SELFTEST_ENV');
config_preamble(q{set $preamble_var "from-preamble";});
no_shuffle();

add_block_preprocessor(sub {
    my $block = shift;
    if (!defined $block->request) {
        $block->set_value('request', "GET /t\n");
    }
});

# 4 checks below, outside the blocks.
plan tests => repeat_each() * 36 + 4;

run_tests();

is(server_port(), 1996, 'server_port() follows TEST_NGINX_PORT');
is($ENV{TEST_NGINX_SERVER_PORT}, 1996, 'TEST_NGINX_SERVER_PORT exported');
like(server_root(), qr{/servroot_1996$},
     'server_root() is TEST_NGINX_SERVROOT');
is(html_dir(), server_root() . '/html', 'html_dir() is under server_root()');

__DATA__

=== TEST 1: generated nginx.conf
--- main_config
worker_rlimit_nofile 2048;
--- config
location = /conf {
    default_type text/plain;
    alias $TEST_NGINX_SERVER_ROOT/conf/nginx.conf;
}
--- request eval
["GET /conf", "GET /conf", "GET /conf", "GET /conf", "GET /conf",
 "GET /conf"]
--- response_body_like eval
[
  qr{\A worker_processes \ {2} 2;\n daemon \ on;\n master_process \ on;\n
      error_log \ \S+/servroot_1996/logs/error\.log \ debug;\n
      pid \ {7} \S+/logs/nginx\.pid;\n}x,
  qr{^load_module \ /usr/lib/nginx/modules/ngx_http_echo_module\.so;
      \ worker_rlimit_nofile \ 2048;$}mx,
  qr{^env SELFTEST_ENV;$}m,
  qr{(?=.*^\ {8}listen\ {10}1996;$)
      (?=.*^\ {8}server_name\ {5}'localhost';$)
      (?=.*^\ {8}client_max_body_size\ 30M;$)}msx,
  qr{client_body_temp_path\ \S+/servroot_1996/client_body_temp;
      \ proxy_temp_path\ \S+/proxy_temp;
      .*^events\ \{\n\ {4}accept_mutex\ off;\n\n
      \ {4}worker_connections\ {2}128;\n\}}msx,
  ($> == 0 ? qr{^user root;\n\z}m : qr{\A(?!.*^user )}ms),
]



=== TEST 2: $TEST_NGINX_* substitution in config sections
--- main_config
env TEST_NGINX_SELFTEST_WORD;
--- http_config
map $uri $from_http_config { default "$TEST_NGINX_SELFTEST_WORD-http"; }
--- config
location = /t {
    echo "$TEST_NGINX_SELFTEST_WORD $from_http_config $preamble_var";
}
--- response_body
banana banana-http from-preamble



=== TEST 3: user_files (sub-directory, touch date) served by a worker
--- config
location /files/ { root html; }
--- user_files
>>> files/a.txt 201001020304.05
port=$TEST_NGINX_SERVER_PORT
>>> files/deep/b.txt
bee
--- request eval
["GET /files/a.txt", "GET /files/deep/b.txt"]
--- response_headers eval
["Last-Modified: Sat, 02 Jan 2010 03:04:05 GMT", ""]
--- response_body eval
["port=1996\n", "bee\n"]



=== TEST 4: post_setup_server_root runs Perl after the server root is made
--- post_setup_server_root
my $f = Test::Nginx::Util::html_dir() . "/made.txt";
open my $out, '>', $f or die "$f: $!";
print $out "made by perl\n";
close $out;
--- config
location = /t { root html; try_files /made.txt =404; }
--- response_body
made by perl



=== TEST 5: a block without --- config reuses the previous nginx
--- response_body
made by perl



=== TEST 6: skip_nginx skips when the version matches
--- config
location = /t { return 500; }
--- skip_nginx: 2: < 99.0.0
--- response_body
never checked



=== TEST 7: skip_nginx runs when the version does not match
--- config
location = /t { return 200 "ran\n"; }
--- skip_nginx: 2: > 99.0.0
--- response_body
ran



=== TEST 8: skip_eval
--- config
location = /t { return 500; }
--- skip_eval: 2: $ENV{TEST_NGINX_SELFTEST_WORD} eq 'banana'
--- response_body
never checked



=== TEST 9: todo
--- config
location = /t { return 500; }
--- todo
2: known failure
--- response_body
never checked



=== TEST 10: SKIP block is not run
--- config
location = /t { return 500; }
--- response_body
never checked
--- SKIP



=== TEST 11: worker count and master from the setters
--- config
location = /t { return 200 "ok\n"; }
--- response_body
ok
--- grep_error_log eval: qr/start worker process \d+/
--- grep_error_log_out eval
[qr/\A(?:start worker process \d+\n){2}\z/, qr/\A\z/]



=== TEST 12: LAST stops here
--- config
location = /t { return 200 "last\n"; }
--- response_body
last
--- LAST



=== TEST 13: never reached
--- config
location = /t { return 500; }
--- response_body
never checked
