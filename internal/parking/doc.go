// Package parking holds HTTP/1.1 connections whose answer comes later,
// such as long polls, at the cost of the socket alone: no goroutine and no
// buffers per connection. A handler hijacks its connection and parks it;
// the lot watches every parked socket with one epoll set (Linux) for the
// client hanging up or sending more, and ends each spot once, at its
// deadline, when told to leave, or at shutdown, by calling the function
// that writes its answer.
//
// net/http holds two goroutines and about 10 KiB of buffers for each open
// request, about 36 KiB in all while a long poll waits; parked, a wait
// costs its socket and its own state. Where the lot is not supported
// (another OS), New returns errors.ErrUnsupported and callers wait in
// their handlers as before. Should the watch itself fail (epoll_wait
// erring), the lot ends every spot at once and then refuses to park (Err
// wraps ErrWatchStopped): nothing is left parked unwatched.
package parking
