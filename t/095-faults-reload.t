# Fault injection (issue 9): nginx -s reload and a binary upgrade (USR2,
# WINCH, then QUIT to the old master: the documented nginx procedure)
# while 30 clients stream back to back. Every stream completes (old
# workers finish theirs), no worker crashes, no stream slot of the limit
# leaks nor is held after its stream's end (no 429 from streams=40 for
# 30 clients, even when a loaded worker is slow to close a connection it
# shut down: the slot is released at the response's end), and the
# sidecar's ledger counts exactly the requests served,
# the old generation's included (its workers stay until the records of
# their last streams are delivered), and the old master logs its spool
# empty at exit.

use FindBin; use lib $FindBin::Bin; use lib "$FindBin::Bin/fault";
use LLM; use Sidecar; use Fault;
use Test::More;
use Time::HiRes qw(sleep time);

my %conf = (http => <<"_EOC_", server => <<'_EOC_');
    llm_sidecar unix:$ENV{TEST_NGINX_SIDECAR} timeout=300ms
                spool=spool095u:1m;
    llm_limit_zone lim095u:1m;
_EOC_
        llm_team $http_x_team;
        location /v1/ {
            llm_limit zone=lim095u key=$http_x_key streams=40;
            proxy_pass http://mock;
        }
_EOC_

Fault::start(%conf);
Fault::mark();

sub drive {     # 30 clients streaming for $secs; "served bad refused" to
                # a file (refused: no byte of answer, e.g. after a stop)
    my ($team, $secs) = @_;
    my $t0 = time;
    my $pid = fork();
    return $pid if $pid;
    my @r = Fault::load(30, sub {
        my $i = shift;
        my ($n, $bad, $refused, $kind) = (0, 0, 0, '');
        while (time - $t0 < $secs) {
            my $api = $i % 3 ? 'openai' : 'anthropic';
            my $r = Fault::request(
                path => $api eq 'openai' ? '/v1/chat/completions'
                                         : '/v1/messages',
                body => Fault::body(api => $api, stream => 1),
                headers => { 'X-Team' => $team, 'X-Key' => 'u',
                             'x-mock-itl-ms' => 20 });
            $n++;
            next if Fault::shape($r) eq 'complete';
            $bad++;
            $refused++ if !$r->{status} && ($r->{raw} // '') eq '';
            $kind = "$r->{status} " . Fault::shape($r)
                    . ($r->{error} ? " $r->{error}" : '');
        }
        return { status => 200, secs => $n,
                 error => "$bad $refused $kind" };
    });
    my ($n, $bad, $refused, %kinds) = (0, 0, 0);
    for (@r) {
        $n += $_->{secs};
        my ($b, $x, $k) = split ' ', $_->{error} // '0 0', 3;
        $bad += $b;
        $refused += $x;
        $kinds{$k}++ if $b;
    }
    open my $f, '>', "$Fault::prefix/$team" or die $!;
    print $f "$n $bad $refused ", join(', ', map { "$_: $kinds{$_}" } sort keys %kinds),
             "\n";
    close $f;
    POSIX::_exit(0);
}

sub served {
    my ($team) = @_;
    open my $f, '<', "$Fault::prefix/$team" or die $!;
    my ($n, $bad, $refused, $kinds) = split ' ', <$f>, 4;
    diag("$bad not complete: $kinds") if $bad > $refused;
    return ($n, $bad, $refused);
}

sub ledger {
    my ($team, $want) = @_;
    my $got = -1;
    for (1 .. 40) {
        my ($st, $b) = Sidecar::request('GET',
                           "/v1/spend?group_by=team&team=$team");
        $got = $b =~ /"total":\{"requests":(\d+)/ ? $1 : -1;
        last if $got == $want;
        sleep 0.25;
    }
    return $got;
}

# reload twice under load (a changed configuration)

my $kid = drive('t095r', 4);
sleep 1;
Fault::reload(%conf, server => "add_header X-Gen 2;\n$conf{server}");
sleep 1.5;
Fault::reload(%conf, server => "add_header X-Gen 3;\n$conf{server}");
waitpid $kid, 0;
my ($n, $bad) = served('t095r');
cmp_ok($n, '>', 50, "reload: $n streams served");
is($bad, 0, 'reload: every stream completed');
is(ledger('t095r', $n), $n, 'reload: the ledger counts every request');
my $r = Fault::request(path => '/v1/chat/completions',
                       body => Fault::body(stream => 1));
like($r->{headers}, qr/^X-Gen: 3/mi, 'reload: the new configuration serves');
unlike(substr(Fault::error_log(), $Fault::log_offset),
       qr/llm limit rejected/,
       'reload: no stream refused by the streams limit (30 clients, 40)');
Fault::log_clean('reload');

# binary upgrade under load: USR2 starts a new master with the same binary,
# WINCH stops the old workers gracefully, QUIT ends the old master

Fault::mark();
my $old = Fault::pid();
$kid = drive('t095b', 4);
sleep 1;
kill 'USR2', $old;
my $new;
for (1 .. 60) {
    $new = Fault::pid();
    last if $new && $new != $old && -e "$Fault::prefix/logs/nginx.pid.oldbin";
    sleep 0.05;
}
isnt($new, $old, "upgrade: a new master ($new) next to the old ($old)");
sleep 0.5;
kill 'WINCH', $old;
sleep 1;
kill 'QUIT', $old;
ok(Fault::wait_gone($old, 10), 'upgrade: the old master exited');
waitpid $kid, 0;
($n, $bad) = served('t095b');
cmp_ok($n, '>', 50, "upgrade: $n streams served");
is($bad, 0, 'upgrade: every stream completed');
is(ledger('t095b', $n), $n,
   'upgrade: the ledger counts every request (old generation included)');
like(substr(Fault::error_log(), $Fault::log_offset),
     qr/llm sidecar spool "spool095u" empty at exit/,
     'upgrade: the old master logs its spool empty at exit');
unlike(substr(Fault::error_log(), $Fault::log_offset),
       qr/still in spool|lost at exit/,
       'upgrade: no usage record left behind');
$r = Fault::request(path => '/v1/chat/completions',
                    body => Fault::body(stream => 1));
is(Fault::shape($r), 'complete', 'upgrade: the new master serves');

# no stream slot leaked across the generations: 40 (= streams) at once
my @r = Fault::load(40, sub {
    Fault::request(path => '/v1/chat/completions',
                   body => Fault::body(stream => 1),
                   headers => { 'X-Key' => 'u' });
});
is(Fault::tally(@r), '200 complete: 40', 'stream slots all free afterwards');
unlike(substr(Fault::error_log(), $Fault::log_offset),
       qr/llm limit rejected/,
       'upgrade: no stream refused by the streams limit (30 clients, 40)');
Fault::log_clean('binary upgrade');

# graceful stop under load (QUIT to the master): streams in flight finish,
# later connections are refused; every stream served is in the ledger and
# the master logs its spool empty at exit

Fault::mark();
my $master = Fault::pid();
$kid = drive('t095q', 3);
sleep 1.5;
kill 'QUIT', $master;
ok(Fault::wait_gone($master, 15), 'stop: the master exited');
waitpid $kid, 0;
my $refused;
($n, $bad, $refused) = served('t095q');
cmp_ok($n - $bad, '>', 30, 'stop: ' . ($n - $bad) . ' streams served');
is($bad, $refused, 'stop: every stream answered completed (the others '
                   . 'were refused without an answer)');
is(ledger('t095q', $n - $bad), $n - $bad,
   'stop: the ledger counts every stream served');
like(substr(Fault::error_log(), $Fault::log_offset),
     qr/llm sidecar spool "spool095u" empty at exit/,
     'stop: the master logs its spool empty at exit');
unlike(substr(Fault::error_log(), $Fault::log_offset),
       qr/llm limit rejected/,
       'stop: no stream refused by the streams limit (30 clients, 40)');
Fault::log_clean('graceful stop');

done_testing();
