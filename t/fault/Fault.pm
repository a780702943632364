package Fault;

# Process-level driver of the fault-injection suites t/095-faults-*.t
# (issue 9): it runs its own nginx (master + workers, daemon) from a
# generated configuration, drives load at it from forked clients, and
# checks what every fault suite asserts:
#
#   - no worker crash, no alert/crit/emerg line in the error log;
#   - each stream completes, or ends cleanly in its API's shape (OpenAI: an
#     error event then data: [DONE]; Anthropic: event: error);
#   - counts to compare with the sidecar's ledger.
#
#     use FindBin; use lib $FindBin::Bin; use lib "$FindBin::Bin/fault";
#     use LLM; use Fault;
#     Fault::start(http => '...', server => '...');
#     my @r = Fault::load(20, sub { Fault::request(...) });
#
# nginx listens on 127.0.0.1:$TEST_NGINX_PORT (these files run no
# Test::Nginx block, so the port is free) with its prefix in
# $TEST_NGINX_SERVROOT-fault. Only the processes started here are stopped.

use strict;
use warnings;
use Cwd qw(abs_path);
use File::Basename qw(dirname);
use File::Path qw(make_path remove_tree);
use IO::Socket::INET;
use IO::Select;
use POSIX ();
use Time::HiRes qw(sleep time);
use Test::More;

my $root = abs_path(dirname(__FILE__) . '/../..');
my $owner = $$;

our $port = $ENV{TEST_NGINX_PORT} || 1984;
our $prefix = ($ENV{TEST_NGINX_SERVROOT} || "$root/t/servroot") . '-fault';
our $nginx = $ENV{TEST_NGINX_BINARY} || '/usr/sbin/nginx';
our $mock = $ENV{TEST_NGINX_MOCK_PORT};
our @modules = split ' ', ($ENV{TEST_NGINX_LOAD_MODULES} || '');
our $log_offset = 0;

sub conf {
    my (%o) = @_;
    my $load = join '', map { "load_module $_;\n" } @modules;
    my $workers = $o{workers} // 2;
    my $http = $o{http} // '';
    my $server = $o{server} // '';
    # as Test::Nginx does: workers of a root master stay root, so that
    # they reach the private sidecar socket in its 0700 directory
    my $user = $> == 0 ? 'user root;' : '';
    # a sanitizer runtime preloaded by a wrapper (make test-asan) must
    # survive the binary upgrade's exec, which keeps only "env" variables
    # (a wrapper sets them for nginx only; unset ones are skipped)
    my $env = join '', map { "env $_;\n" }
              qw(LD_PRELOAD ASAN_OPTIONS UBSAN_OPTIONS);
    return <<"_EOC_";
$load
$user
$env
worker_processes $workers;
daemon on;
master_process on;
error_log logs/error.log info;
pid logs/nginx.pid;
events { worker_connections 1024; }
http {
    access_log logs/access.log;
    client_body_temp_path tmp; proxy_temp_path tmp;
    fastcgi_temp_path tmp; uwsgi_temp_path tmp; scgi_temp_path tmp;
    upstream mock { server 127.0.0.1:$mock; keepalive 32; }
$http
    server {
        listen 127.0.0.1:$port;
        llm_gateway on;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
$server
    }
}
_EOC_
}

sub write_conf {
    make_path("$prefix/conf", "$prefix/logs", "$prefix/tmp");
    open my $f, '>', "$prefix/conf/nginx.conf" or die "nginx.conf: $!";
    print $f conf(@_);
    close $f;
}

sub pid {
    my ($file) = @_;
    open my $f, '<', $file // "$prefix/logs/nginx.pid" or return;
    my $pid = <$f>;
    return unless defined $pid;
    chomp $pid;
    return $pid;
}

sub listening {
    my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port",
                                  Timeout => 0.2);
    return 0 unless $s;
    close $s;
    return 1;
}

sub start {
    die "Fault.pm: the mock is not running (use LLM first)\n" unless $mock;
    die "Fault.pm: 127.0.0.1:$port is busy\n" if listening();
    remove_tree($prefix);
    write_conf(@_);
    system($nginx, '-p', "$prefix/", '-c', 'conf/nginx.conf') == 0
        or die "Fault.pm: nginx did not start, see $prefix/logs/error.log\n";
    for (1 .. 100) { return if listening(); sleep 0.05 }
    die "Fault.pm: nginx does not listen on 127.0.0.1:$port\n";
}

# -s reload with a new configuration (same arguments as start)
sub reload {
    write_conf(@_);
    kill 'HUP', pid() or die "Fault.pm: no nginx to reload\n";
}

sub stop {
    my $pid = pid();
    return unless $pid && kill 0, $pid;
    kill 'QUIT', $pid;
    for (1 .. 200) { return unless kill 0, $pid; sleep 0.05 }
    kill 'TERM', $pid;
}

END {
    local $?;       # keep the exit status of the test file

    stop() if $$ == $owner;
}

sub wait_gone {
    my ($pid, $secs) = @_;
    my $until = time + $secs;
    while (time < $until) { return 1 unless kill 0, $pid; sleep 0.05 }
    return 0;
}

sub error_log {
    open my $f, '<', "$prefix/logs/error.log" or return '';
    local $/;
    return <$f>;
}

# one HTTP/1.1 request on a new connection (Connection: close); returns
# { status, headers, body (dechunked), raw, secs }. Options: headers (hash),
# send_delay (seconds between body pieces, send_pieces of them),
# read_delay / read_size (a slow reader: read_size bytes per read_delay),
# rcvbuf (the client's socket receive buffer), timeout (inactivity),
# stall (read nothing for that many seconds, then close), keep (the
# socket is not closed after the answer's end: it is returned in sock,
# for the caller to close later).
sub request {
    my (%o) = @_;
    my $body = $o{body} // '';
    my $t0 = time;
    my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port",
                                  Timeout => 3)
        or return { status => 0, error => "connect: $!" };
    if ($o{rcvbuf}) {
        setsockopt($s, Socket::SOL_SOCKET(), Socket::SO_RCVBUF(),
                   $o{rcvbuf});
    }
    my $h = "POST $o{path} HTTP/1.1\r\nHost: localhost\r\n"
            . "Connection: close\r\nContent-Type: application/json\r\n"
            . "Content-Length: " . length($body) . "\r\n";
    while (my ($k, $v) = each %{ $o{headers} || {} }) { $h .= "$k: $v\r\n" }
    $s->autoflush(1);
    if ($o{send_delay}) {
        print $s "$h\r\n";
        my $n = $o{send_pieces} || 8;
        my $len = int((length($body) + $n - 1) / $n) || 1;
        for (my $i = 0; $i < length $body; $i += $len) {
            sleep $o{send_delay};
            print $s substr($body, $i, $len);
        }
    } else {
        print $s "$h\r\n$body";
    }
    if ($o{stall}) {           # reads nothing for that long, then leaves
        sleep $o{stall};
        close $s;
        return { status => 0, secs => time - $t0, error => 'stalled' };
    }
    my $raw = '';
    my $sel = IO::Select->new($s);
    my $timeout = $o{timeout} || 10;
    my $err;
    while (1) {
        sleep $o{read_delay} if $o{read_delay};
        unless ($sel->can_read($timeout)) { $err = 'timeout'; last }
        my $n = sysread($s, my $buf, $o{read_size} || 65536);
        if (!defined $n) { $err = "read: $!"; last }
        last if $n == 0;
        $raw .= $buf;
    }
    close $s unless $o{keep};
    my ($head, $rest) = split /\r\n\r\n/, $raw, 2;
    my %r = (raw => $raw, secs => time - $t0, error => $err);
    $r{sock} = $s if $o{keep};
    $r{status} = ($head // '') =~ m{^HTTP/1\.\d (\d+)} ? $1 : 0;
    $r{headers} = $head // '';
    $rest //= '';
    if ($r{headers} =~ /^transfer-encoding:\s*chunked/mi) {
        my $b = '';
        while ($rest =~ s/^([0-9a-fA-F]+)[^\r\n]*\r\n//) {
            my $len = hex $1;
            if ($len == 0) { $r{chunked_end} = 1; last }
            $b .= substr($rest, 0, $len, '');
            $rest =~ s/^\r\n//;
        }
        $r{body} = $b;
    } else {
        $r{body} = $rest;
    }
    return \%r;
}

# n forked clients each running $code (returning a request() hash); the
# results come back in a list (status, shape, secs, error per client)
sub load {
    my ($n, $code) = @_;
    my @kids;
    for my $i (0 .. $n - 1) {
        pipe(my $rd, my $wr) or die "pipe: $!";
        my $pid = fork();
        die "fork: $!" unless defined $pid;
        if ($pid == 0) {
            close $rd;
            my $r = eval { $code->($i) } || { status => 0, error => "$@" };
            my $line = join "\t", $r->{status} // 0, shape($r),
                       sprintf('%.3f', $r->{secs} // 0),
                       ($r->{error} // '') =~ s/\s+/ /gr;
            print $wr "$line\n";
            close $wr;
            POSIX::_exit(0);
        }
        close $wr;
        push @kids, [$pid, $rd];
    }
    my @res;
    for my $k (@kids) {
        my $fh = $k->[1];
        my $line = <$fh> // "0\tlost\t0\tno answer";
        chomp $line;
        my %r;
        @r{qw(status shape secs error)} = split /\t/, $line, 4;
        push @res, \%r;
        waitpid $k->[0], 0;
    }
    return @res;
}

# how a response ended, from the client's point of view:
#   complete  OpenAI stream with [DONE] and no error, Anthropic with
#             message_stop, or a JSON body
#   error     a clean API-shaped error: an OpenAI stream error event then
#             [DONE], an Anthropic event: error, or a JSON error body
#   torn      anything else (a stream cut without its terminator, HTML, ...)
sub shape {
    my ($r) = @_;
    my $b = $r->{body} // '';
    my $h = $r->{headers} // '';
    return 'none' unless $r->{status};

    if ($h =~ m{^content-type:\s*text/event-stream}mi) {
        if ($b =~ /^event: error\ndata: \{"type":"error","error":\{/m) {
            return 'error';
        }
        if ($b =~ /^event: message_stop\n/m) {
            return 'complete';
        }
        if ($b =~ /\n\ndata: \[DONE\]\n\n\z/ || $b =~ /\Adata: \[DONE\]\n\n\z/) {
            return $b =~ /^data: \{"error":\{/m ? 'error' : 'complete';
        }
        # the upstream's own error event, passed through as it ended the
        # stream (the SDKs raise on it)
        return 'error' if $b =~ /\n?data: \{"error":\{[^\n]*\n\n\z/;
        return 'torn';
    }

    if ($h =~ m{^content-type:\s*application/json}mi) {
        return 'error' if $b =~ /\A\{"error":\{"message":/
                          || $b =~ /\A\{"type":"error","error":\{/;
        return 'complete' if $b =~ /\A\{/ && $r->{status} == 200;
    }

    return 'torn';
}

# no crash and nothing worse than error in the log written since mark()
sub mark { $log_offset = length error_log() }

sub log_clean {
    my ($name) = @_;
    my $log = substr error_log(), $log_offset;
    my @bad = grep { /exited on signal|\[(alert|crit|emerg)\]/ }
              split /\n/, $log;
    is(scalar @bad, 0, "$name: no crash, no alert/crit line in the error log")
        or diag(join "\n", @bad[0 .. ($#bad < 9 ? $#bad : 9)]);
}

sub tally {
    my (@res) = @_;
    my %t;
    $t{"$_->{status} $_->{shape}"}++ for @res;
    return join ', ', map { "$_: $t{$_}" } sort keys %t;
}

sub body {
    my (%o) = @_;
    my $model = $o{model} // 'gpt-4o-mini';
    my $c = $o{content} // 'hello';
    my $stream = $o{stream} ? 'true' : 'false';
    if (($o{api} // '') eq 'anthropic') {
        return qq({"model":"$model","max_tokens":$o{max_tokens},)
               . qq("stream":$stream,"messages":[{"role":"user","content":)
               . qq("$c"}]}) if $o{max_tokens};
        return qq({"model":"$model","max_tokens":32,"stream":$stream,)
               . qq("messages":[{"role":"user","content":"$c"}]});
    }
    my $mt = $o{max_tokens} ? qq("max_tokens":$o{max_tokens},) : '';
    return qq({"model":"$model",$mt"stream":$stream,)
           . qq("messages":[{"role":"user","content":"$c"}]});
}

# the text of an answer: the content deltas of a stream, concatenated
sub text {
    my ($b) = @_;
    return join '', $b =~ /"(?:content|text)":"((?:[^"\\]|\\.)*)"/g;
}

sub mock_stats {
    my ($p) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1:' . ($p || $mock),
                                  Timeout => 2) or return '';
    print $s "GET /stats HTTP/1.0\r\nHost: m\r\n\r\n";
    local $/;
    my $r = <$s> // '';
    $r =~ s/^.*?\r\n\r\n//s;
    return $r;
}

1;
