# Global limits through Redis, and state across a reload. The test starts
# a private redis-server (t/Redis.pm) and a second nginx instance (the
# "peer", driven from this file) next to the one Test::Nginx runs; both
# share one llm_limit_zone through Redis.

use FindBin; use lib $FindBin::Bin; use LLM; use Redis;
use Test::Nginx::Socket 'no_plan';
use IO::Socket::INET;
use Time::HiRes qw(sleep);

repeat_each(1);
no_shuffle();

my $redis = Redis::start();
my $peer_port = $ENV{TEST_NGINX_PEER_PORT} || 18471;
my $peer_dir = ($ENV{TEST_NGINX_SERVROOT} || "$FindBin::Bin/servroot")
               . "-peer";
my ($module) = grep { /ngx_http_llm_module\.so$/ }
               split ' ', $ENV{TEST_NGINX_LOAD_MODULES};
my $nginx = $ENV{TEST_NGINX_BINARY} || 'nginx';

sub peer_conf {
    my ($extra) = @_;
    return <<"_EOC_";
load_module $module;
worker_processes 2;
daemon on;
error_log logs/error.log info;
pid logs/nginx.pid;
events { worker_connections 256; }
http {
    access_log off;
    client_body_temp_path tmp; proxy_temp_path tmp;
    fastcgi_temp_path tmp; uwsgi_temp_path tmp; scgi_temp_path tmp;
    llm_limit_zone llm:1m sync=redis://127.0.0.1:$redis sync_interval=50ms;
    server {
        listen 127.0.0.1:$peer_port;
        location /v1/ {
            llm_gateway on;
            llm_limit zone=llm key=\$http_authorization rpm=4;
            proxy_pass http://127.0.0.1:$ENV{TEST_NGINX_MOCK_PORT};
            $extra
        }
    }
}
_EOC_
}

sub write_peer_conf {
    mkdir $peer_dir; mkdir "$peer_dir/conf"; mkdir "$peer_dir/logs";
    mkdir "$peer_dir/tmp";
    open my $f, '>', "$peer_dir/conf/nginx.conf" or die $!;
    print $f peer_conf(@_);
    close $f;
}

sub peer_pid {
    open my $f, '<', "$peer_dir/logs/nginx.pid" or return;
    my $pid = <$f>;
    chomp $pid;
    return $pid;
}

sub peer_status {
    my ($key) = @_;
    $key //= 'k1';
    my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$peer_port",
                                  Timeout => 2) or return 0;
    my $body = '{"model":"m","max_tokens":5,"messages":[{"role":"user",'
               . '"content":"hi"}]}';
    print $s "POST /v1/chat/completions HTTP/1.0\r\nHost: x\r\n"
        . "Content-Type: application/json\r\nAuthorization: $key\r\n"
        . "Content-Length: " . length($body) . "\r\n\r\n$body";
    my $line = <$s>;
    close $s;
    return ($line // '') =~ /^HTTP\/1\.\d (\d+)/ ? $1 : 0;
}

write_peer_conf('');
system($nginx, '-p', $peer_dir, '-c', 'conf/nginx.conf') == 0
    or die "cannot start the peer nginx\n";
for (1 .. 50) { last if peer_status('probe') || sleep 0.1 }

END {
    my $pid = peer_pid();
    kill 'QUIT', $pid if $pid;
}

# reload: the peer's bucket of k1 survives nginx -s reload
{
    Redis::stop();      # local state only for this part
    my @got = map { peer_status() } 1 .. 3;
    is("@got", "200 200 200", "peer admits 3 of rpm=4");
    write_peer_conf('add_header x-reloaded 1;');
    kill 'HUP', peer_pid();
    sleep 1.5;
    @got = map { peer_status() } 1 .. 2;
    is("@got", "200 429", "after a reload the bucket carried on: 1 left");
    Redis::start();
    sleep 2.5;          # the peer's reconnection backoff
}

add_block_preprocessor(sub {
    my $block = shift;

    if (!defined $block->http_config) {
        $block->set_value("http_config", <<"_EOC_");
    llm_limit_zone llm:1m sync=redis://127.0.0.1:$redis sync_interval=50ms;
_EOC_
    }
});

our $self = <<"_EOC_";
    location /v1/ {
        llm_gateway on;
        llm_limit zone=llm key=\$http_authorization rpm=4;
        proxy_pass http://127.0.0.1:$ENV{TEST_NGINX_MOCK_PORT};
    }
    location = /here {
        internal;
        proxy_pass http://127.0.0.1:\$server_port/v1/chat/completions;
        proxy_method POST;
        proxy_pass_request_body off;
        proxy_set_header Content-Type application/json;
        proxy_set_header Authorization k2;
        proxy_set_body '{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}';
    }
    location = /peer {
        internal;
        proxy_pass http://127.0.0.1:$peer_port/v1/chat/completions;
        proxy_method POST;
        proxy_pass_request_body off;
        proxy_set_header Content-Type application/json;
        proxy_set_header Authorization k2;
        proxy_set_body '{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}';
    }
_EOC_

run_tests();

__DATA__

=== TEST 1: two nodes hold one global limit: 1 here + 3 on the peer, then
both refuse (each alone would still admit)
--- config eval
"$::self" . q{
    location = /t {
        echo_location /here;
        echo_location /peer;
        echo_location /peer;
        echo_location /peer;
        echo_sleep 0.5;
        echo_location /here;
        echo_location /peer;
    }
}
--- request
GET /t
--- response_body_like eval
qr/\A(\{"id"[^\n]+\}\n?){4}\{"error":\{"message":"Rate limit reached on requests per min \(RPM\): Limit 4\.[^\n]+\n\{"error":\{"message":"Rate limit reached on requests per min[^\n]+\n\z/
--- no_error_log
[alert]
unreachable



=== TEST 2: Redis unreachable: limits stay local, the outage is logged once
--- http_config
    llm_limit_zone llm:1m sync=redis://127.0.0.1:18480 sync_interval=20ms;
--- config eval
"$::self" . q{
    location = /t {
        echo_location /here;
        echo_sleep 0.3;
        echo_location /here;
        echo_location /here;
        echo_location /here;
        echo_location /here;
    }
}
--- request
GET /t
--- response_body_like eval
qr/\A(\{"id"[^\n]+\}\n?){4}\{"error":\{"message":"Rate limit reached[^\n]+\n\z/
--- grep_error_log eval
qr/llm redis 127\.0\.0\.1:18480 for llm_limit_zone "llm" is unreachable \([^)]*\), retrying/
--- grep_error_log_out eval
qr/\A(llm redis [^\n]+\n){1}\z/
