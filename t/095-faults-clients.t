# Fault injection, client side (issue 9), with real processes: clients that
# read a long stream very slowly (small receive buffer, small reads) while
# the upstream sends it at once, a client that stops reading, and clients
# that trickle their request body or stall in it. The gateway must stay
# within bounded memory, finish every slow stream intact, and keep serving;
# a client slow to close after its stream does not hold its stream slot.

use FindBin; use lib $FindBin::Bin; use lib "$FindBin::Bin/fault";
use LLM; use Fault;
use Test::More;
use Time::HiRes qw(sleep);

Fault::start(workers => 1, http => <<'_EOC_', server => <<'_EOC_');
    llm_limit_zone lim095c:1m;
_EOC_
        client_body_timeout 1s;
        send_timeout 1s;
        location /v1/ {
            llm_limit zone=lim095c key=$http_x_key streams=20;
            proxy_pass http://mock;
        }
        location /linger/ {
            lingering_close always;
            llm_limit zone=lim095c key=$http_x_key streams=1;
            proxy_pass http://mock/;
        }
_EOC_

sub worker_rss {
    my @w = split ' ', `pgrep -P @{[Fault::pid()]}`;
    my $kb = 0;
    for my $pid (@w) {
        open my $f, '<', "/proc/$pid/status" or next;
        while (<$f>) { $kb += $1 if /^VmRSS:\s+(\d+)/ }
    }
    return $kb;
}

# 20 slow readers of a 1000-token stream (about 250 KB each) that upstream
# sends at once: 4 KB every 10 ms through a 4 KB receive buffer

{
    Fault::mark();
    my $before = worker_rss();
    my $peak = $before;
    my $pid = fork();
    if (!$pid) {
        my @r = Fault::load(20, sub {
            Fault::request(path => '/v1/chat/completions', timeout => 10,
                body => Fault::body(stream => 1, max_tokens => 1000),
                headers => { 'X-Key' => 'slow', 'x-mock-tokens' => 1000,
                             'x-mock-itl-ms' => 0 },
                rcvbuf => 4096, read_size => 4096, read_delay => 0.01);
        });
        open my $f, '>', "$Fault::prefix/slow.out" or die $!;
        print $f Fault::tally(@r), "\n";
        close $f;
        POSIX::_exit(0);
    }
    while (waitpid($pid, POSIX::WNOHANG()) == 0) {
        my $kb = worker_rss();
        $peak = $kb if $kb > $peak;
        sleep 0.1;
    }
    open my $f, '<', "$Fault::prefix/slow.out" or die $!;
    chomp(my $got = <$f>);
    is($got, '200 complete: 20', 'slow readers: every stream complete');
    cmp_ok($peak - $before, '<', 16 * 1024,
           "slow readers: worker RSS grew by less than 16 MB "
           . "($before -> $peak KB) for 5 MB of streams");
    Fault::log_clean('slow readers');
}

# a client that stops reading a 5 MB stream, then leaves: nginx gives up
# (send_timeout 1s, or the reset when the client leaves), and the limit's
# stream slot is freed

{
    Fault::mark();
    my $r = Fault::request(path => '/v1/chat/completions', timeout => 5,
        body => Fault::body(stream => 1, max_tokens => 20000),
        headers => { 'X-Key' => 'stall', 'x-mock-tokens' => 20000,
                     'x-mock-itl-ms' => 0 },
        rcvbuf => 2048, stall => 2.5);
    my $log = '';
    for (1 .. 20) {
        $log = substr(Fault::error_log(), $Fault::log_offset);
        last if $log =~ /client timed out|while sending to client/;
        sleep 0.1;
    }
    like($log, qr/client timed out|while sending to client/,
         'stalled reader: nginx ended the stalled connection');
    my @r = Fault::load(20, sub {
        Fault::request(path => '/v1/chat/completions',
                       body => Fault::body(stream => 1),
                       headers => { 'X-Key' => 'stall' });
    });
    is(Fault::tally(@r), '200 complete: 20',
       'stalled reader: its stream slot was freed (20 of streams=20 pass)');
    Fault::log_clean('stalled reader');
}

# a client that has read its whole stream (nginx shut its side down) but
# not closed its connection yet, and starts its next stream: nginx waits
# for the close in a lingering close, the stream's slot is free already
# (released at the response's end, not when the request goes), so none
# of its streams is refused by streams=1

{
    Fault::mark();
    my @open;
    for my $i (1 .. 3) {
        my $r = Fault::request(path => '/linger/v1/chat/completions',
            body => Fault::body(stream => 1), keep => 1,
            headers => { 'X-Key' => 'linger' });
        push @open, $r->{sock};
        is("$r->{status} " . Fault::shape($r), '200 complete',
           "lingering client: stream $i of streams=1 complete");
    }
    close $_ for @open;
    unlike(substr(Fault::error_log(), $Fault::log_offset),
           qr/llm limit rejected/,
           'lingering client: no stream refused by the streams limit');
    Fault::log_clean('lingering client');
}

# 20 clients trickling a 40 KB body in 8 pieces, 150 ms apart

{
    Fault::mark();
    my $big = 'x' x 40000;
    my @r = Fault::load(20, sub {
        Fault::request(path => $_[0] % 2 ? '/v1/messages'
                                         : '/v1/chat/completions',
            body => Fault::body(stream => 1, content => $big,
                                api => $_[0] % 2 ? 'anthropic' : 'openai'),
            headers => { 'X-Key' => 'trickle' },
            send_delay => 0.15, send_pieces => 8);
    });
    is(Fault::tally(@r), '200 complete: 20',
       'slow senders: every trickled request answered in full');
    Fault::log_clean('slow senders');
}

# clients that stall half-way in their body: 408 after client_body_timeout,
# nothing reaches upstream, the gateway keeps serving

{
    Fault::mark();
    my $stats0 = Fault::mock_stats();
    my ($n0) = $stats0 =~ /"requests":(\d+)/;
    my @r = Fault::load(10, sub {
        my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$Fault::port");
        my $body = Fault::body(stream => 1);
        print $s "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
            . "Content-Type: application/json\r\nX-Key: stall2\r\n"
            . "Content-Length: " . length($body) . "\r\n\r\n"
            . substr($body, 0, 10);
        local $/;
        my $raw = <$s> // '';
        my ($st) = $raw =~ m{^HTTP/1\.\d (\d+)};
        return { status => $st // 'closed', secs => 0 };
    });
    like(Fault::tally(@r), qr/^(408 torn|closed torn): 10$/,
         'stalled senders: timed out (408 or closed)');
    my ($n1) = Fault::mock_stats() =~ /"requests":(\d+)/;
    is($n1, $n0, 'stalled senders: nothing was sent upstream');
    my $r = Fault::request(path => '/v1/chat/completions',
                           body => Fault::body(stream => 1));
    is(Fault::shape($r), 'complete', 'stalled senders: still serving');
    Fault::log_clean('stalled senders');
}

done_testing();
