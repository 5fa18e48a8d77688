package Net::SMTP::Bulk::AnyEvent;

# The seed's Method 2 ("AnyEvent only"): its callbacks, and a way to wait inside an
# AnyEvent program. Sending is the engine's either way; no AnyEvent is needed unless
# watch() is called.

use 5.010;
use strict;
use warnings;
use parent -norequire, 'Net::SMTP::Bulk';
require Net::SMTP::Bulk;

our $VERSION = $Net::SMTP::Bulk::VERSION;

sub _callback_names { qw(connect_pass pass fail hang global_hang read complete) }
sub _method { 'Method 2 (Net::SMTP::Bulk::AnyEvent)' }

# An AnyEvent io watcher on the engine's descriptor that runs the callbacks of what
# arrives; keep it as long as you want them. Needs AnyEvent.
sub watch {
    my ($self) = @_;
    require AnyEvent;
    my $fd = $self->fileno;
    return AnyEvent->io(fh => $fd, poll => 'r', cb => sub { $self->pump(0) });
}

1;

__END__

=head1 NAME

Net::SMTP::Bulk::AnyEvent - the seed's Method 2 interface on libsmtpbulk

=head1 SYNOPSIS

    use Net::SMTP::Bulk::AnyEvent;
    my $smtp = Net::SMTP::Bulk::AnyEvent->new($server, Threads => 10, Pipeline => 2,
        Callbacks => { pass => sub { 1 }, fail => sub { 1 }, complete => sub { 1 } });

=head1 DESCRIPTION

As L<Net::SMTP::Bulk> (options, methods, return codes), with Method 2's callbacks:
connect_pass, pass, fail, hang, global_hang, read, complete. Others are warned about
and ignored, as the seed ignored them. Unlike the seed, messages do not all wait in
memory until C<quit>: at most C<QueueBound> do, and sending starts at the first
C<dataend>.

C<watch()> returns an AnyEvent io watcher on the engine's descriptor that runs the
callbacks as results arrive, for programs that sit in an AnyEvent loop rather than in
C<dataend> or C<quit>.

=cut
