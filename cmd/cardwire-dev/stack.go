package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The local stack of make run (scripts/run.sh) listens on 127.0.0.1 only,
// on six ports. Each has a variable; PORT_BASE moves them all at once.
type portVar struct {
	name   string // the variable
	what   string // what listens on it
	def    int    // its port without PORT_BASE
	offset int    // its port is PORT_BASE + offset
}

var portVars = []portVar{
	{"NATS_PORT", "NATS", 4222, 22},
	{"RECEIVER_PORT", "the webhook receiver", 8080, 80},
	{"WORKER_API_PORT", "the worker API", 8081, 81},
	{"SIM_PORT", "the Seam simulator", 8090, 90},
	{"RECEIVER_ADMIN_PORT", "the receiver's metrics and health", 9190, 190},
	{"WORKER_ADMIN_PORT", "the worker's metrics and health", 9191, 191},
}

// maxOffset is the largest offset: PORT_BASE may be at most 65535 less it.
const maxOffset = 191

// ports are the stack's ports, by variable name.
type ports map[string]int

// natsURL is the stack's NATS.
func (p ports) natsURL() string { return fmt.Sprintf("nats://127.0.0.1:%d", p["NATS_PORT"]) }

// http is a URL on the port of variable name.
func (p ports) http(name, path string) string {
	return fmt.Sprintf("http://127.0.0.1:%d%s", p[name], path)
}

// portsOf reads PORT_BASE and the port variables: each port is its
// variable, else PORT_BASE plus its offset, else its default. Errors name
// the variable.
func portsOf(getenv func(string) string) (ports, error) {
	base := 0
	if v := strings.TrimSpace(getenv("PORT_BASE")); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 65535-maxOffset {
			return nil, fmt.Errorf("PORT_BASE must be a number from 1 to %d (NATS_PORT is PORT_BASE+22 … WORKER_ADMIN_PORT PORT_BASE+%d), got %q", 65535-maxOffset, maxOffset, v)
		}
		base = n
	}
	p := ports{}
	by := map[int]string{}
	for _, pv := range portVars {
		n := pv.def
		if base != 0 {
			n = base + pv.offset
		}
		if v := strings.TrimSpace(getenv(pv.name)); v != "" {
			var err error
			if n, err = strconv.Atoi(v); err != nil || n < 1 || n > 65535 {
				return nil, fmt.Errorf("%s must be a port number from 1 to 65535, got %q", pv.name, v)
			}
		}
		if other, dup := by[n]; dup {
			return nil, fmt.Errorf("%s and %s are both %d: each part needs its own port", other, pv.name, n)
		}
		by[n] = pv.name
		p[pv.name] = n
	}
	return p, nil
}

// anyPortSet reports whether PORT_BASE or a port variable is set.
func anyPortSet(getenv func(string) string) bool {
	if strings.TrimSpace(getenv("PORT_BASE")) != "" {
		return true
	}
	for _, pv := range portVars {
		if strings.TrimSpace(getenv(pv.name)) != "" {
			return true
		}
	}
	return false
}

// stack is a running make run's stack, as the stack.env file in its data
// directory (.data) says: scripts/run.sh writes it while the stack runs
// (and removes it when it stops), with its pid, ports, Seam and workspaces
// file. It is also make run's lock.
type stack struct {
	pid  int
	vars map[string]string
}

// runningStack reads path; ok is false when there is no file or its
// process is gone.
func runningStack(path string) (s stack, ok bool, err error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return stack{}, false, nil
	}
	if err != nil {
		return stack{}, false, err
	}
	s.vars = parseEnvFile(data)
	s.pid, _ = strconv.Atoi(s.vars["STACK_PID"])
	return s, s.pid > 0 && alive(s.pid), nil
}

// parseEnvFile reads KEY=VALUE lines; # starts a comment line.
func parseEnvFile(data []byte) map[string]string {
	out := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if k, v, ok := strings.Cut(line, "="); ok {
			out[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	return out
}

// alive reports whether process pid exists (signal 0 reaches it).
func alive(pid int) bool {
	p, err := os.FindProcess(pid)
	if err != nil {
		return false
	}
	err = p.Signal(syscall.Signal(0))
	return err == nil || errors.Is(err, syscall.EPERM)
}

// ignoredInStack are the variables that, with CARDWIRE_DEV_STACK set (as
// the make targets set it), come from the local stack rather than from the
// caller's environment, so that make send, register, demo, demo-outage,
// tail and outcomes talk to the stack make run started however the
// caller's shell is set up (make run ignores them too).
var ignoredInStack = []string{
	"NATS_URL", "NATS_CREDS_FILE",
	"SEAM_WEBHOOK_SECRET", "SEAM_WEBHOOK_SECRET_FILE",
	"WORKER_API_TOKEN", "WORKER_API_TOKEN_FILE",
}

// stackGetenv is getenv for a command run by a make target
// (CARDWIRE_DEV_STACK=<the stack's data directory>): WORKSPACES_FILE and
// NATS_URL are the stack's, the single-workspace secrets and the API token
// of the caller's environment are ignored (a note says so on notes), and
// the ports are the running stack's unless PORT_BASE or a port variable is
// set.
func stackGetenv(getenv func(string) string, notes io.Writer) (func(string) string, error) {
	dir := strings.TrimSpace(getenv("CARDWIRE_DEV_STACK"))
	s, running, err := runningStack(filepath.Join(dir, "stack.env"))
	if err != nil {
		return nil, err
	}
	over := map[string]string{}
	if running && !anyPortSet(getenv) {
		for _, pv := range portVars {
			over[pv.name] = s.vars[pv.name]
		}
	}
	seam := strings.TrimSpace(getenv("SEAM"))
	file := strings.TrimSpace(getenv("SANDBOX_WORKSPACES_FILE"))
	if running {
		seam, file = s.vars["SEAM"], s.vars["WORKSPACES_FILE"]
	}
	switch seam {
	case "", "sim":
		seam = "sim"
		if !running {
			file = filepath.Join(dir, "workspaces.json")
		}
	case "sandbox":
		if file == "" {
			file = filepath.Join(dir, "sandbox.json")
		}
	default:
		return nil, fmt.Errorf("SEAM must be sim (the simulator, the default) or sandbox, got %q", seam)
	}
	over["SEAM"], over["WORKSPACES_FILE"] = seam, file
	env := func(k string) string {
		if v, ok := over[k]; ok {
			return v
		}
		return getenv(k)
	}
	p, err := portsOf(env)
	if err != nil {
		return nil, err
	}
	var ignored []string
	if v := strings.TrimSpace(getenv("WORKSPACES_FILE")); v != "" && v != file {
		ignored = append(ignored, "WORKSPACES_FILE")
	}
	for _, k := range ignoredInStack {
		if strings.TrimSpace(getenv(k)) != "" {
			ignored = append(ignored, k)
		}
		over[k] = ""
	}
	over["NATS_URL"] = p.natsURL()
	if len(ignored) > 0 {
		fmt.Fprintf(notes, "note: %s ignored: the make targets talk to the local stack, at %s, with the secrets of %s (make run reads only that file)\n",
			strings.Join(ignored, ", "), over["NATS_URL"], file)
	}
	return env, nil
}

// portsCmd prints the stack's ports as shell assignments (scripts/run.sh
// evaluates them) and, with -check, fails unless every one is free on
// 127.0.0.1, naming each port in use and, when it can tell, its process.
func portsCmd(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	fs := flag.NewFlagSet("ports", flag.ContinueOnError)
	fs.SetOutput(stdout)
	check := fs.Bool("check", false, "fail unless every port is free on 127.0.0.1")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: cardwire-dev ports [-check]\n\nThe local stack's ports, as NAME=port lines. Each is its variable, else PORT_BASE plus its offset, else its default:\n")
		for _, pv := range portVars {
			fmt.Fprintf(fs.Output(), "  %-20s PORT_BASE+%-3d default %-5d %s\n", pv.name, pv.offset, pv.def, pv.what)
		}
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	p, err := portsOf(getenv)
	if err != nil {
		return err
	}
	if *check {
		var busy []string
		for _, pv := range portVars {
			if why := portInUse(ctx, p[pv.name]); why != "" {
				busy = append(busy, fmt.Sprintf("  port %d (%s, for %s) %s", p[pv.name], pv.name, pv.what, why))
			}
		}
		if len(busy) > 0 {
			other := 18000
			if p["NATS_PORT"] == other+22 {
				other = 28000
			}
			return fmt.Errorf("the local stack needs ports that are in use; nothing was started:\n%s\nstop what uses them, or move the stack: make run PORT_BASE=%d (NATS on %d, the receiver on %d, …), or one variable per port (make run NATS_PORT=…; cardwire-dev ports -h lists them)",
				strings.Join(busy, "\n"), other, other+22, other+80)
		}
	}
	for _, pv := range portVars {
		fmt.Fprintf(stdout, "%s=%d\n", pv.name, p[pv.name])
	}
	return nil
}

// portInUse returns "" when port can be listened on at 127.0.0.1 (and
// nothing answers there), else why not: what holds it, as far as ss or
// lsof tell.
func portInUse(ctx context.Context, port int) string {
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	l, err := net.Listen("tcp", addr)
	switch {
	case err == nil:
		_ = l.Close()
		// A listener on another address of the port (0.0.0.0 with
		// SO_REUSEPORT, say) may still answer on loopback.
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err != nil {
			return ""
		}
		_ = c.Close()
	case !errors.Is(err, syscall.EADDRINUSE):
		return fmt.Sprintf("cannot be listened on: %v", err)
	}
	if who := portUser(ctx, port); who != "" {
		return "is in use by " + who
	}
	return "is in use"
}

var (
	ssUsers   = regexp.MustCompile(`users:\(\("([^"]+)",pid=(\d+)`)
	ssLocal   = regexp.MustCompile(`^\S+\s+\d+\s+\d+\s+(\S+)`)
	lsofField = regexp.MustCompile(`(?m)^([pcn])(.*)$`)
)

// portUser names the process listening on port: "nats-server (pid 12,
// on 0.0.0.0:4222)", from ss (Linux) or lsof (macOS); "" when neither
// can tell (the process may be another user's).
func portUser(ctx context.Context, port int) string {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "ss", "-Hltnp", fmt.Sprintf("sport = :%d", port)).Output(); err == nil {
		for line := range strings.Lines(string(out)) {
			local := ""
			if m := ssLocal.FindStringSubmatch(line); m != nil {
				local = m[1]
			}
			if m := ssUsers.FindStringSubmatch(line); m != nil {
				return fmt.Sprintf("%s (pid %s, on %s)", m[1], m[2], local)
			}
			if local != "" {
				return fmt.Sprintf("a process on %s (ss cannot name it: another user's?)", local)
			}
		}
	}
	if out, err := exec.CommandContext(ctx, "lsof", "-nP", fmt.Sprintf("-iTCP:%d", port), "-sTCP:LISTEN", "-Fpcn").Output(); err == nil {
		var pid, cmd, name string
		for _, m := range lsofField.FindAllStringSubmatch(string(out), -1) {
			switch m[1] {
			case "p":
				pid = m[2]
			case "c":
				cmd = m[2]
			case "n":
				name = m[2]
			}
			if pid != "" && cmd != "" && name != "" {
				return fmt.Sprintf("%s (pid %s, on %s)", cmd, pid, name)
			}
		}
	}
	return ""
}

// needSimulator refuses cmd when the make targets' stack runs against a
// Seam sandbox: the demos drive the simulator (its simulate endpoints, any
// encoder id), which a sandbox is not.
func needSimulator(getenv func(string) string, cmd string) error {
	if strings.TrimSpace(getenv("CARDWIRE_DEV_STACK")) != "" && getenv("SEAM") == "sandbox" {
		return fmt.Errorf("make %s needs the Seam simulator, and the stack runs against a Seam sandbox (SEAM=sandbox): start an encoding of one of the sandbox's encoders through the worker API instead (README, \"Against a Seam sandbox\")", cmd)
	}
	return nil
}
