package Net::SMTP::Bulk::Coro;

# The seed's Method 1 ("Coro+AnyEvent"): its callbacks. No Coro is needed: the engine
# sends on threads of its own, in constant memory (Method 1's reason to exist),
# without its batch stalls.

use 5.010;
use strict;
use warnings;
use parent -norequire, 'Net::SMTP::Bulk';
require Net::SMTP::Bulk;

our $VERSION = $Net::SMTP::Bulk::VERSION;

sub _callback_names {
    qw(connect_pass connect_fail auth_pass auth_fail reconnect_pass reconnect_fail pass fail
      hang)
}
sub _method { 'Method 1 (Net::SMTP::Bulk::Coro)' }

1;

__END__

=head1 NAME

Net::SMTP::Bulk::Coro - the seed's Method 1 interface on libsmtpbulk

=head1 SYNOPSIS

    use Net::SMTP::Bulk::Coro;
    my $smtp = Net::SMTP::Bulk::Coro->new($server, Threads => 4,
        Callbacks => { connect_fail => sub { 101 }, fail => sub { 1 } });

=head1 DESCRIPTION

As L<Net::SMTP::Bulk> (options, methods, return codes), with Method 1's callbacks:
connect_pass, connect_fail, auth_pass, auth_fail, reconnect_pass, reconnect_fail, pass,
fail, hang. Others are warned about and ignored. The seed sent a batch when its queue
filled; here messages stream through a bounded queue (C<QueueBound>), so one bad
message never holds up the others, and "the end of the batch" (codes 102, 103, 104)
is the moment the queue runs empty.

=cut
