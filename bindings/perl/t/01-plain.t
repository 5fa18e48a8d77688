# Scripts as the seed's documentation writes them, unchanged, against our sink and
# Postfix's smtp-sink: plain, each Pipeline mode, several Hosts, Threads.
use strict;
use warnings;
use Test::More;
use lib 't/lib';
use Peer;
use Net::SMTP::Bulk;
use Net::SMTP::Bulk::AnyEvent;
use Net::SMTP::Bulk::Coro;

sub send_n {
    my ($smtp, $n, $tag) = @_;
    for my $i (1 .. $n) {
        $smtp->mail('sender@example.com') or return 0;
        $smtp->to("rcpt$i\@example.org") or return 0;
        $smtp->data() or return 0;
        $smtp->datasend("From: sender\@example.com\n");
        $smtp->datasend("To: rcpt$i\@example.org\n");
        $smtp->datasend("Subject: $tag $i\n\n");
        $smtp->datasend(".a line that starts with a dot\nbody $i\n");
        $smtp->dataend() or return 0;
    }
    return 1;
}

for my $pipeline (0, 1, 2) {
    for my $class (qw(Net::SMTP::Bulk Net::SMTP::Bulk::AnyEvent Net::SMTP::Bulk::Coro)) {
        my $sink = Peer->sink;
        my ($pass, $fail) = (0, 0);
        my $smtp = $class->new('127.0.0.1', Port => $sink->port, Threads => 3,
            Pipeline => $pipeline, Hello => 'client.test',
            Callbacks => {pass => sub { $pass++; 1 }, fail => sub { $fail++; 1 }});
        ok(send_n($smtp, 300, "p$pipeline"), "$class Pipeline $pipeline: 300 queued");
        ok($smtp->quit, 'quit');
        my $c = $sink->stop;
        is($pass, 300, "$class Pipeline $pipeline: 300 pass callbacks");
        is($fail, 0, 'no fail');
        is($c->{messages}, 300, 'the sink got 300');
        is($c->{connections}, 4, 'over Threads => 3 connections (and the probe)');
    }
}

{   # several Hosts, each with its own Threads, against both sinks
    my $a = Peer->sink;
    my $b = Peer->smtp_sink('-c');
    my %by_host;
    my $smtp = Net::SMTP::Bulk::AnyEvent->new(
        Hosts => [{Host => '127.0.0.1', Port => $a->port, Threads => 2},
                  {Host => '127.0.0.1:' . $b->port, Threads => 4}],
        Pipeline => 1,
        Callbacks => {pass => sub { my (undef, $where) = @_; $by_host{$where->[0]}++; 1 }});
    ok(send_n($smtp, 2000, 'hosts'), '2,000 over two hosts');
    ok($smtp->quit, 'quit');
    my $c = $a->stop;
    $b->stop;
    my $total = 0;
    $total += $_ for values %by_host;
    is($total, 2000, 'every message passed');
    cmp_ok($c->{messages}, '>', 0, 'our sink took some');
    cmp_ok($c->{messages}, '<', 2000, 'and smtp-sink the others');
    is_deeply($smtp->counts, {pass => 2000, fail => 0, hang => 0}, 'counts');
}

done_testing;
