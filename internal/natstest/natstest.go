// Package natstest starts real, embedded NATS servers with JetStream for
// tests. A server that does not come up fails the test; it is never skipped.
// Only *_test.go files import this package.
package natstest

import (
	"net"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Server is an embedded JetStream server that can be stopped and started
// again on the same port and store, as a real outage would.
type Server struct {
	*server.Server
	opts *server.Options
}

// RunJetStream starts a JetStream server on a free loopback port with its
// store in a test temp dir; it is shut down when the test ends.
func RunJetStream(t testing.TB) *Server {
	t.Helper()
	return run(t, jetStreamOptions(t.TempDir()))
}

// jetStreamOptions are one test server's options: loopback, a random client
// port, JetStream with its store in dir.
func jetStreamOptions(dir string) *server.Options {
	return &server.Options{
		Host:      "127.0.0.1",
		Port:      server.RANDOM_PORT,
		JetStream: true,
		StoreDir:  dir,
		NoSigs:    true,
		NoLog:     true,
		// Tests publish bursts; keep the server's own limits out of the way.
		MaxPayload: 1 << 20,
	}
}

// run starts a server with opts, pins its client port so Restart comes back
// where clients reconnect, and shuts it down when the test ends.
func run(t testing.TB, opts *server.Options) *Server {
	t.Helper()
	s := start(t, opts)
	opts.Port = s.Addr().(*net.TCPAddr).Port
	srv := &Server{Server: s, opts: opts}
	t.Cleanup(srv.Shutdown)
	return srv
}

func start(t testing.TB, opts *server.Options) *server.Server {
	t.Helper()
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatalf("natstest: new server: %v", err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		t.Fatalf("natstest: server not ready within 10s")
	}
	return s
}

// Stop shuts the server down (clients see a disconnect) and waits for it.
func (s *Server) Stop() {
	s.Server.Shutdown()
	s.Server.WaitForShutdown()
}

// Restart starts the server again on the same port and store.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.Server = start(t, s.opts)
}

// Shutdown stops the current server instance.
func (s *Server) Shutdown() { s.Server.Shutdown() }

// Connect returns a client connection and its JetStream context, closed when
// the test ends.
func Connect(t testing.TB, url string) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatalf("natstest: connect %s: %v", url, err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("natstest: jetstream: %v", err)
	}
	return nc, js
}
