# Waiting inside an AnyEvent loop: an io watcher on the engine's descriptor runs the
# callbacks as results arrive, with no call into the module from the loop.
use strict;
use warnings;
use Test::More;
use lib 't/lib';
use Peer;
use Net::SMTP::Bulk::AnyEvent;

eval { require AnyEvent; 1 } or plan skip_all => 'AnyEvent is not installed';

my $sink = Peer->sink;
my $cv = AnyEvent->condvar;
my $pass = 0;
my $smtp = Net::SMTP::Bulk::AnyEvent->new('127.0.0.1', Port => $sink->port, Threads => 2,
    Pipeline => 2, Callbacks => {pass => sub { $cv->send if ++$pass == 100; 1 }});
for my $i (1 .. 100) {
    $smtp->mail('s@example.com');
    $smtp->to("r$i\@example.org");
    $smtp->data("Subject: $i\n\nhi\n");
    # A full queue would make dataend run callbacks itself: 100 fit.
    my $ok = $smtp->dataend;
    ok($ok, "queued 100") if $i == 100;
}
my $w = $smtp->watch;
my $t = AnyEvent->timer(after => 20, cb => sub { $cv->send });
$cv->recv;
is($pass, 100, 'the watcher ran every pass callback');
is($smtp->pending, 0, 'nothing pending');
ok($smtp->quit, 'quit');
is($sink->stop->{messages}, 100, 'the sink got them');
done_testing;
