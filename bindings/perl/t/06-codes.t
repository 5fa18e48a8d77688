# Every return code from every callback that names a connection: whatever a callback
# asks of its connection, every message still ends with exactly one of pass, fail or
# hang-ended, and quit returns. Then global_hang, reconnect() and the per-message
# result API beyond the seed.
use strict;
use warnings;
use Test::More;
use lib 't/lib';
use Peer;
use Net::SMTP::Bulk;

sub send_n {
    my ($smtp, $n) = @_;
    for my $i (1 .. $n) {
        $smtp->mail('s@example.com');
        $smtp->to("r$i\@example.org");
        $smtp->data("Subject: $i\n\nbody\n");
        $smtp->dataend or return 0;
    }
    return 1;
}

my $N = 30;
for my $cb (qw(connect_pass auth_pass pass fail read)) {
    for my $code (1, 101, 102, 103, 104, 202, 203) {
        my @extra = $cb eq 'auth_pass' ? ('--auth-user', 'u:p') : ();
        my $sink = Peer->sink('--reject-rcpt', 30, @extra);
        my %n = (pass => 0, fail => 0, hang => 0);
        my $fired = 0;
        my %cbs = (
            pass => sub { $n{pass}++; 1 },
            fail => sub { $n{fail}++; 1 },
            hang => sub { $n{hang}++ if $_[2]{final}; 1 },
        );
        my $inner = $cbs{$cb};
        $cbs{$cb} = sub {
            $inner->(@_) if $inner;
            # The code from its first few calls (read: the greeting's line and on).
            return $fired++ < 2 ? $code : 1;
        };
        my $smtp = Net::SMTP::Bulk->new('127.0.0.1', Port => $sink->port, Threads => 2,
            Pipeline => 1, Timeout => 5, Callbacks => \%cbs,
            ($cb eq 'auth_pass' ? (Auth => ['AUTO', 'u', 'p'], AuthPlaintext => 1) : ()));
        ok(send_n($smtp, $N), "$cb returning $code: queued");
        ok($smtp->quit, "$cb returning $code: quit returns");
        my $c = $sink->stop;
        cmp_ok($fired, '>=', 1, "$cb fired");
        is($n{pass} + $n{fail} + $n{hang}, $N, "$cb returning $code: one end per message")
            or diag(explain \%n);
        cmp_ok($c->{messages} // 0, '<=', $n{pass}, 'the sink took no message reported failed');
        # What the code did to the connections it named (the probe is one more).
        if ($cb eq 'connect_pass' && $code == 101) {
            is($n{fail}, $N, 'both connections removed as they came up: the host is down');
            is($c->{messages} // 0, 0, 'and nothing was sent');
        } elsif ($cb eq 'connect_pass' && ($code == 202 || $code == 203)) {
            # Held until the code came, with the messages waiting: it comes back for
            # them. (From the other callbacks the code may come after the last message,
            # and a connection with nothing to send does not come back.)
            cmp_ok($c->{connections}, '>=', 4, "$code: a connection went and came back");
        }
    }
}

{   # global_hang: no server answers at all for GlobalTimeout; with Retry {GlobalHang
    # => 1} the second one ends what is in progress; each message ends once.
    my $sink = Peer->sink('--delay', 100, '--delay-ms', 60000);
    my ($gh, %n) = (0);
    my $smtp = Net::SMTP::Bulk->new('127.0.0.1', Port => $sink->port, Threads => 2,
        Timeout => 30, GlobalTimeout => 1, Retry => {GlobalHang => 1},
        Callbacks => {
            global_hang => sub { $gh++; 1 },
            pass => sub { $n{pass}++; 1 }, fail => sub { $n{fail}++; 1 },
            hang => sub { $n{hang}++ if $_[2]{final}; 1 },
        });
    ok(send_n($smtp, 5), 'queued to a server that never answers');
    ok($smtp->quit, 'quit returns');
    $sink->stop;
    cmp_ok($gh, '>=', 1, 'global_hang fired');
    is(($n{pass} // 0) + ($n{fail} // 0) + ($n{hang} // 0), 5, 'each message ended once');
}

{   # reconnect(): every connection goes and comes back (reconnect_pass)
    my $sink = Peer->sink;
    my ($rp, $pass) = (0, 0);
    my $smtp = Net::SMTP::Bulk->new('127.0.0.1', Port => $sink->port, Threads => 2,
        Callbacks => {reconnect_pass => sub { $rp++; 1 }, pass => sub { $pass++; 1 }});
    ok(send_n($smtp, 10), 'ten sent');
    $smtp->pump(100) while $smtp->pending;
    ok($smtp->reconnect, 'reconnect');
    ok(send_n($smtp, 10), 'ten more');
    ok($smtp->quit, 'quit');
    my $c = $sink->stop;
    is($pass, 20, 'all passed');
    cmp_ok($rp, '>=', 1, 'connections came back as reconnections');
    cmp_ok($c->{connections}, '>', 3, 'the sink saw new connections');
}

{   # results beyond the seed: status, category, reply and recipients of each message
    my $sink = Peer->sink('--reject-rcpt', 100);
    my $smtp = Net::SMTP::Bulk->new('127.0.0.1', Port => $sink->port)->keep_results;
    $smtp->mail('s@example.com');
    $smtp->to('a@example.org', 'b@example.org');
    $smtp->data("Subject: two\n\nhi\n");
    $smtp->dataend;
    $smtp->quit;
    $sink->stop;
    my $r = $smtp->results;
    is(scalar @$r, 1, 'one result');
    is($r->[0]{status}, 'rejected', 'its status');
    is(scalar @{$r->[0]{rcpts}}, 2, 'both recipients, each with its reply');
    is($r->[0]{rcpts}[1]{rcpt}, 'b@example.org', 'in order');
    is($r->[0]{rcpts}[0]{reply}{code}, 550, 'and code');
    is_deeply($r->[0]{to}, ['a@example.org', 'b@example.org'], 'the envelope as given');
    cmp_ok($r->[0]{attempts}, '>=', 1, 'attempts');
    is_deeply($smtp->results, [], 'taken once');
}

done_testing;
