# Every callback the seed names, with every return code, and the faults the seed got
# wrong: a 5xx RCPT is a fail with the reply (the seed hung), a hung DATA is a hang
# after Timeout, retried per Retry {Hang}; pass + fail + hang-ended = messages sent.
use strict;
use warnings;
use Test::More;
use lib 't/lib';
use Peer;
use Net::SMTP::Bulk;
use Net::SMTP::Bulk::AnyEvent;
use Net::SMTP::Bulk::Coro;

sub send_n {
    my ($smtp, $n) = @_;
    for my $i (1 .. $n) {
        $smtp->mail('s@example.com');
        $smtp->to("r$i\@example.org");
        $smtp->data();
        $smtp->datasend("Subject: $i\n\nbody\n");
        $smtp->dataend() or return 0;
    }
    return 1;
}

{   # 5xx RCPT: fail, with the server's reply and the message concerned
    my $sink = Peer->sink('--reject-rcpt', 100);
    my @fails;
    my $smtp = Net::SMTP::Bulk::AnyEvent->new('127.0.0.1', Port => $sink->port,
        Pipeline => 2, Callbacks => {fail => sub { push @fails, [@_[1, 2]]; 1 }});
    ok(send_n($smtp, 20), '20 queued');
    ok($smtp->quit, 'quit returns');
    is(scalar @fails, 20, 'a fail callback for each');
    my ($where, $m) = @{$fails[0]};
    is($where->[0], '127.0.0.1', 'named host');
    like($where->[1], qr/^[01]$/, 'and thread');
    is($m->{code}, 550, 'the reply code');
    like($m->{text}, qr/\S/, 'and its text');
    is($m->{status}, 'rejected', 'status');
    is($m->{category}, 'hard_bounce', 'category');
    like($m->{to}[0], qr/^r\d+\@example\.org$/, 'the message concerned');
    is($m->{rcpts}[0]{reply}{code}, 550, 'per recipient');
    $sink->stop;
}

{   # hung DATA: hang after Timeout, retried per Retry {Hang}; every message ends once
    my $sink = Peer->sink('--hang-after', 3);
    my ($pass, $fail, $hang_final, $hang_retry) = (0, 0, 0, 0);
    my $smtp = Net::SMTP::Bulk::AnyEvent->new('127.0.0.1', Port => $sink->port,
        Threads => 2, Pipeline => 1, Timeout => 1, Retry => {Hang => 2},
        Callbacks => {
            pass => sub { $pass++; 1 },
            fail => sub { $fail++; 1 },
            hang => sub { $_[2]{final} ? $hang_final++ : $hang_retry++; 1 },
        });
    ok(send_n($smtp, 12), '12 queued');
    ok($smtp->quit, 'quit returns');
    is($pass + $fail + $hang_final, 12, 'pass + fail + hang-ended = messages sent');
    cmp_ok($hang_retry, '>', 0, 'hung connections were ended and their messages retried');
    cmp_ok($pass, '>=', 6, 'the others went through new connections');
    $sink->stop;
}

{   # connect_fail returning 101: the connection is removed at once, the host is down
    my $port = Peer::free_port();
    my ($cf, $fail) = (0, 0);
    my $smtp = Net::SMTP::Bulk::Coro->new('127.0.0.1', Port => $port, Threads => 1,
        Retry => {Fail => 5}, Sleep => {Fail => 1},
        Callbacks => {connect_fail => sub { $cf++; 101 }, fail => sub { $fail++; 1 }});
    ok(send_n($smtp, 3), 'queued with nothing listening');
    ok($smtp->quit, 'quit returns');
    # The code is applied when this thread has handled the event, so a retry may come
    # first; Sleep {Fail => 1} leaves it a second. Without the code: 5 attempts.
    cmp_ok($cf, '<', 5, '101 stopped the retries before Retry {Fail}');
    is($fail, 3, 'each message failed');
}

# Each code from pass, on a server that takes everything: every message still passes
# exactly once; the codes that end or park a connection show in the connections the
# sink saw and in reconnect_pass (Method 1's callback).
for my $code (1, 101, 102, 103, 104, 202, 203) {
    my $sink = Peer->sink;
    my ($pass, $rp) = (0, 0);
    my $first = 1;
    my $smtp = Net::SMTP::Bulk::Coro->new('127.0.0.1', Port => $sink->port, Threads => 2,
        Pipeline => 1,
        Callbacks => {
            pass => sub { $pass++; my $c = $first ? $code : 1; $first = 0; $c },
            reconnect_pass => sub { $rp++; 1 },
        });
    ok(send_n($smtp, 200), "code $code: 200 queued");
    ok($smtp->quit, 'quit');
    my $c = $sink->stop;
    is($pass, 200, "code $code: 200 passes");
    is($c->{messages}, 200, 'the sink got each once');
    if ($code == 202 || $code == 203) {
        cmp_ok($rp, '>=', 1, "code $code: that connection reconnected");
    } elsif ($code == 1 || $code == 101 || $code == 104) {
        is($rp, 0, "code $code: no reconnection");
    }
}

{   # connect_pass returning 101 for thread 0: everything goes through thread 1
    my $sink = Peer->sink;
    my %threads;
    my $smtp = Net::SMTP::Bulk->new('127.0.0.1', Port => $sink->port, Threads => 2,
        Callbacks => {
            connect_pass => sub { $_[1][1] == 0 ? 101 : 1 },
            pass => sub { $threads{$_[1][1]}++; 1 },
        });
    # The first message must not go before connect_pass was handled: wait for both.
    $smtp->mail('s@example.com'); $smtp->to('r@example.org'); $smtp->data('x');
    ok($smtp->dataend, 'one sent');
    my $t0 = time;
    $smtp->pump(100) while time - $t0 < 10 && $smtp->pending;
    ok(send_n($smtp, 50), '50 more');
    ok($smtp->quit, 'quit');
    $sink->stop;
    cmp_ok($threads{1} // 0, '>=', 50, 'thread 1 carried the messages after the removal');
    cmp_ok($threads{0} // 0, '<=', 1, 'thread 0 at most the first');
}

{   # read: every line the server sends; complete: once everything has its result
    my $sink = Peer->sink;
    my (@lines, $complete);
    my $smtp = Net::SMTP::Bulk::AnyEvent->new('127.0.0.1', Port => $sink->port, Threads => 1,
        Callbacks => {read => sub { push @lines, $_[2]; 1 }, complete => sub { $complete++; 1 }});
    ok(send_n($smtp, 2), 'two sent');
    ok($smtp->quit, 'quit');
    $sink->stop;
    ok((grep { /^220 / } @lines), 'the greeting was read');
    ok((grep { /^250[ -]/ } @lines), 'and the replies');
    cmp_ok($complete, '>=', 1, 'complete');
}

{   # a callback of the other method is warned about and ignored, as the seed did
    my @w;
    local $SIG{__WARN__} = sub { push @w, @_ };
    Net::SMTP::Bulk::AnyEvent->new('127.0.0.1', Callbacks => {connect_fail => sub { 1 }});
    like($w[0] // '', qr/connect_fail is not a callback of Method 2/, 'warned');
}

done_testing;
