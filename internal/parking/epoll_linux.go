//go:build linux && (amd64 || arm64)

package parking

import (
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// epoll watches the parked sockets with an epoll set of its own. The set
// is itself pollable: wrapped in an os.File, it is waited on by the Go
// runtime's poller, so the watching goroutine parks like any network
// read instead of holding a thread in epoll_wait. A socket is registered
// one-shot: its first input or hangup ends the spot.
type epoll struct {
	file *os.File
	rc   syscall.RawConn
	once sync.Once
}

const watched = unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT

func newPoller() (poller, error) {
	fd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("parking: epoll_create1: %w", err)
	}
	// Non-blocking, so that os.NewFile hands it to the runtime's poller.
	if err := unix.SetNonblock(fd, true); err != nil {
		_ = unix.Close(fd)
		return nil, fmt.Errorf("parking: epoll set non-blocking: %w", err)
	}
	f := os.NewFile(uintptr(fd), "parking-epoll")
	rc, err := f.SyscallConn()
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("parking: %w", err)
	}
	return &epoll{file: f, rc: rc}, nil
}

func (e *epoll) add(conn net.Conn, id uint64) error {
	ev := unix.EpollEvent{Events: watched, Fd: int32(uint32(id)), Pad: int32(uint32(id >> 32))}
	return e.ctl(conn, unix.EPOLL_CTL_ADD, &ev)
}

func (e *epoll) remove(conn net.Conn) error {
	return e.ctl(conn, unix.EPOLL_CTL_DEL, nil)
}

// ctl applies op to conn's descriptor in the set, both descriptors held
// open meanwhile.
func (e *epoll) ctl(conn net.Conn, op int, ev *unix.EpollEvent) error {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return fmt.Errorf("parking: a %T has no file descriptor", conn)
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return fmt.Errorf("parking: %w", err)
	}
	var opErr error
	err = raw.Control(func(cfd uintptr) {
		if err := e.rc.Control(func(efd uintptr) { opErr = unix.EpollCtl(int(efd), op, int(cfd), ev) }); err != nil {
			opErr = err
		}
	})
	if err := errors.Join(err, opErr); err != nil {
		return fmt.Errorf("parking: epoll_ctl: %w", err)
	}
	return nil
}

func (e *epoll) run(report func(id uint64, hangup bool)) error {
	events := make([]unix.EpollEvent, 256)
	for {
		var n int
		var waitErr error
		err := e.rc.Read(func(efd uintptr) bool {
			for {
				n, waitErr = unix.EpollWait(int(efd), events, 0)
				if !errors.Is(waitErr, unix.EINTR) {
					break
				}
			}
			return n > 0 || waitErr != nil // otherwise: park until the set is readable
		})
		if err := errors.Join(err, waitErr); err != nil {
			return fmt.Errorf("epoll_wait: %w", err) // closed, or failed: the lot tells which
		}
		for _, ev := range events[:n] {
			id := uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
			report(id, ev.Events&(unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0)
		}
	}
}

func (e *epoll) close() error {
	var err error
	e.once.Do(func() { err = e.file.Close() })
	return err
}
