package natstest

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
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

// Process is a JetStream server in a process of its own.
type Process struct {
	// URL is the server's client URL.
	URL string
	pid int
}

// RunJetStreamProcess starts a JetStream server in a process of its own
// (this test binary again, whose TestMain calls ServeIfAsked), so that
// what the test measures of its own process (its RSS, its CPU) holds no
// server, as in production. The server stops when the test ends.
func RunJetStreamProcess(t testing.TB) *Process {
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
	return &Process{URL: strings.TrimSpace(line), pid: cmd.Process.Pid}
}

// CPU is the CPU time (user and system) the server process has used.
func (p *Process) CPU(t testing.TB) time.Duration {
	t.Helper()
	return procCPU(t, strconv.Itoa(p.pid))
}

// SelfCPU is the CPU time (user and system) this process has used.
func SelfCPU(t testing.TB) time.Duration {
	t.Helper()
	return procCPU(t, "self")
}

// procCPU reads utime and stime from /proc/<pid>/stat (Linux), in clock
// ticks of 1/100 s (USER_HZ).
func procCPU(t testing.TB, pid string) time.Duration {
	t.Helper()
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		t.Fatalf("natstest: CPU time: %v", err)
	}
	// The fields after the command name, which is in parentheses and may
	// hold spaces: state is the first, utime and stime the 12th and 13th.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		t.Fatalf("natstest: CPU time: short /proc/%s/stat", pid)
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		t.Fatalf("natstest: CPU time: /proc/%s/stat: %q %q", pid, f[11], f[12])
	}
	return time.Duration(utime+stime) * 10 * time.Millisecond
}
