package natstest

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// serveEnv, set in a test binary's environment, names the store directory
// of the JetStream server that binary serves instead of running its tests
// (RunJetStreamProcess starts it so).
const serveEnv = "CARDWIRE_NATSTEST_SERVE"

// ServeIfAsked makes a test binary that RunJetStreamProcess started serve
// a JetStream server until its standard input closes, then exit. A package
// that uses RunJetStreamProcess calls it first in its TestMain; otherwise
// it returns at once.
func ServeIfAsked() {
	dir := os.Getenv(serveEnv)
	if dir == "" {
		return
	}
	s, err := server.NewServer(jetStreamOptions(dir))
	if err != nil {
		fmt.Fprintln(os.Stderr, "natstest: new server:", err)
		os.Exit(1)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		fmt.Fprintln(os.Stderr, "natstest: server not ready within 10s")
		os.Exit(1)
	}
	fmt.Println(s.ClientURL())
	_, _ = io.Copy(io.Discard, os.Stdin) // until the test closes it, or ends
	s.Shutdown()
	s.WaitForShutdown()
	os.Exit(0)
}

// RunJetStreamProcess starts a JetStream server in a process of its own
// (this test binary again, whose TestMain calls ServeIfAsked), so that
// what the test measures of its own process (its RSS) holds no server,
// as in production. It returns the server's client URL; the server stops
// when the test ends.
func RunJetStreamProcess(t testing.TB) string {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), serveEnv+"="+t.TempDir())
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatalf("natstest: %v", err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatalf("natstest: %v", err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("natstest: start the server process: %v", err)
	}
	t.Cleanup(func() {
		_ = stdin.Close()
		_ = cmd.Wait()
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("natstest: the server process gave no URL (does TestMain call natstest.ServeIfAsked?): %v", err)
	}
	return strings.TrimSpace(line)
}
