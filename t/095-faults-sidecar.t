# Fault injection (issue 9): the sidecar SIGKILLed under streaming load and
# started again. Usage records wait in the module's spool while it is down
# and are all delivered once it is back: the ledger counts exactly the
# requests the gateway served (a batch the sidecar persisted but could not
# acknowledge is redelivered and deduplicated, not billed twice).

use FindBin; use lib $FindBin::Bin; use lib "$FindBin::Bin/fault";
use LLM; use Sidecar; use Fault;
use Test::More;
use Time::HiRes qw(sleep time);

Fault::start(http => <<"_EOC_", server => <<'_EOC_');
    llm_sidecar unix:$ENV{TEST_NGINX_SIDECAR} timeout=300ms
                spool=spool095:1m;
_EOC_
        llm_team $http_x_team;
        location /v1/ {
            proxy_pass http://mock;
        }
_EOC_

# the PID of the sidecar Sidecar.pm started (its exact command line)
sub sidecar_pid {
    (my $conf = $Sidecar::sock) =~ s{/sidecar\.sock$}{/sidecar.json};
    for (split /\n/, `pgrep -f -- '--config $conf'`) {
        return $_ if `cat /proc/$_/cmdline` =~ /llm-sidecar\0--config\0\Q$conf\E\0/;
    }
    return;
}

sub spend_requests {
    my ($team) = @_;
    my ($st, $b) = Sidecar::request('GET', "/v1/spend?group_by=team&team=$team");
    return $b =~ /"total":\{"requests":(\d+)/ ? $1 : -1;
}

Fault::mark();

# 30 clients, each streaming back to back for 4 s (OpenAI and Anthropic);
# the sidecar is SIGKILLed at 1 s and started again at 2.5 s

my $t0 = time;
my $driver = fork();
if (!$driver) {
    my @r = Fault::load(30, sub {
        my $i = shift;
        my ($n, $bad) = (0, 0);
        while (time - $t0 < 4) {
            my $api = $i % 3 ? 'openai' : 'anthropic';
            my $r = Fault::request(
                path => $api eq 'openai' ? '/v1/chat/completions'
                                         : '/v1/messages',
                body => Fault::body(api => $api, stream => 1),
                headers => { 'X-Team' => 't095k', 'x-mock-itl-ms' => 10 });
            $n++;
            $bad++ unless Fault::shape($r) eq 'complete';
        }
        return { status => 200, secs => $n, error => $bad };
    });
    my ($n, $bad) = (0, 0);
    for (@r) { $n += $_->{secs}; $bad += $_->{error} || 0 }
    open my $f, '>', "$Fault::prefix/served" or die $!;
    print $f "$n $bad\n";
    close $f;
    POSIX::_exit(0);
}

sleep 1;
my $pid = sidecar_pid();
ok($pid, "found the sidecar's PID");
kill 'KILL', $pid if $pid;
sleep 1.5;
Sidecar::start();
waitpid $driver, 0;

open my $f, '<', "$Fault::prefix/served" or die $!;
my ($served, $bad) = split ' ', <$f>;
cmp_ok($served, '>', 100, "the clients were served $served streams");
is($bad, 0, 'every stream completed while the sidecar was killed');

# the spool drains in a few delivery ticks
my $got = -1;
for (1 .. 40) {
    $got = spend_requests('t095k');
    last if $got == $served;
    sleep 0.25;
}
is($got, $served, 'the ledger counts every served request (none lost, none twice)');
like(substr(Fault::error_log(), $Fault::log_offset),
     qr/llm sidecar unix:\S+ usage delivery unreachable/,
     'the outage was logged');
Fault::log_clean('sidecar SIGKILL');

done_testing();
