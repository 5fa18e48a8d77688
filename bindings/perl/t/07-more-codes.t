# The rest of the callbacks with every return code — hang, connect_fail, auth_fail,
# reconnect_pass, global_hang, complete — and a hung DATA against aiosmtpd (a server
# that is not ours) ending in hang after Timeout, retried per Retry {Hang}. Whatever a
# callback returns, every message ends once and quit returns.
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

{   # hung DATA: aiosmtpd answers each message's data 3 s late; Timeout 1
    my $peer = Peer->aiosmtpd('--data-delay', 3);
    my ($final, $again, $other) = (0, 0, 0);
    my $smtp = Net::SMTP::Bulk->new('127.0.0.1', Port => $peer->port, Threads => 1,
        Pipeline => 0, Timeout => 1, Retry => {Hang => 2},
        Callbacks => {
            hang => sub { $_[2]{final} ? $final++ : $again++; 1 },
            pass => sub { $other++; 1 }, fail => sub { $other++; 1 },
        });
    ok(send_n($smtp, 2), 'two queued');
    ok($smtp->quit, 'quit returns');
    is($final + $other, 2, 'each message ended once');
    is($final, 2, 'both ended hung');
    cmp_ok($again, '>=', 2 * 2, 'each hung on every try: Retry {Hang => 2} is two more');
}

my $N = 12;
my %setup = (
    hang => sub { (Peer->sink('--hang-after', 2), Timeout => 1, Retry => {Hang => 1}) },
    connect_fail => sub { ({port => Peer::free_port()}, Retry => {Fail => 2}) },
    auth_fail => sub { (Peer->sink('--auth-user', 'u:right'), Auth => ['AUTO', 'u', 'wrong'],
                        AuthPlaintext => 1) },
    reconnect_pass => sub { (Peer->sink('--close-after', 3)) },
    global_hang => sub { (Peer->sink('--delay', 100, '--delay-ms', 60000), Timeout => 30,
                          GlobalTimeout => 1, Retry => {GlobalHang => 1}) },
    complete => sub { (Peer->sink) },
);
for my $cb (sort keys %setup) {
    for my $code (1, 101, 102, 103, 104, 202, 203) {
        my ($peer, @opts) = $setup{$cb}->();
        my %n = (pass => 0, fail => 0, hang => 0);
        my $fired = 0;
        my %cbs = (
            pass => sub { $n{pass}++; 1 },
            fail => sub { $n{fail}++; 1 },
            hang => sub { $n{hang}++ if $_[2]{final}; 1 },
        );
        my $inner = $cbs{$cb};
        $cbs{$cb} = sub { $inner->(@_) if $inner; $fired++ < 2 ? $code : 1 };
        my $port = ref $peer eq 'Peer' ? $peer->port : $peer->{port};
        my $smtp = Net::SMTP::Bulk->new('127.0.0.1', Port => $port, Threads => 2,
            Pipeline => 1, Callbacks => \%cbs, @opts);
        ok(send_n($smtp, $N), "$cb returning $code: queued");
        ok($smtp->quit, "$cb returning $code: quit returns");
        $peer->stop if ref $peer eq 'Peer';
        cmp_ok($fired, '>=', 1, "$cb fired");
        is($n{pass} + $n{fail} + $n{hang}, $N, "$cb returning $code: one end per message")
            or diag(explain \%n);
    }
}

done_testing;
