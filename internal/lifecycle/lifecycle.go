// Package lifecycle runs a binary's teardown in the reverse order of its
// start-up, within one time bound, and serves HTTP with the timeouts every
// cardwire listener needs. Commands register each teardown right after the
// resource it releases is created.
package lifecycle

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	stdlog "log"
	"net"
	"net/http"
	"runtime/debug"
	"time"

	"github.com/rs/zerolog"
)

// Stopper collects teardowns.
type Stopper struct {
	log   zerolog.Logger
	steps []step
}

type step struct {
	name string
	fn   func(ctx context.Context) error
}

// NewStopper returns an empty Stopper that logs each step.
func NewStopper(log zerolog.Logger) *Stopper { return &Stopper{log: log} }

// OnStop registers fn to run at Stop, before every teardown registered
// earlier.
func (s *Stopper) OnStop(name string, fn func(ctx context.Context) error) {
	s.steps = append(s.steps, step{name, fn})
}

// Stop runs every teardown, newest first, within timeout, and joins their
// errors. Each step gets the time still left.
func (s *Stopper) Stop(timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var errs []error
	for i := len(s.steps) - 1; i >= 0; i-- {
		st := s.steps[i]
		start := time.Now()
		if err := st.fn(ctx); err != nil {
			s.log.Error().Err(err).Str("step", st.name).Msg("stop failed")
			errs = append(errs, fmt.Errorf("stop %s: %w", st.name, err))
			continue
		}
		s.log.Info().Str("step", st.name).Dur("took", time.Since(start)).Msg("stopped")
	}
	return errors.Join(errs...)
}

// ServerOptions are the timeouts of one HTTP listener.
type ServerOptions struct {
	ReadHeaderTimeout time.Duration
	ReadTimeout       time.Duration
	WriteTimeout      time.Duration
	IdleTimeout       time.Duration
	MaxHeaderBytes    int
	// CancelOnShutdown cancels every request's context when Shutdown
	// starts: right for long polls and event streams, wrong where an
	// in-flight request must finish (the webhook receiver).
	CancelOnShutdown bool
}

// DefaultServerOptions keep a slow client from holding a connection: the
// headers must come within 5s, the body within 15s, the answer is written
// within 20s of the headers, and an idle keep-alive lasts a minute.
func DefaultServerOptions() ServerOptions {
	return ServerOptions{
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      20 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    64 << 10,
	}
}

// Serve listens on addr and serves h in the background. It returns the
// server (to Shutdown) and a channel that receives the error if serving
// stops for any reason other than Shutdown. The bound address is logged as
// "listening", which is how tests and operators learn a :0 port.
func Serve(addr string, h http.Handler, o ServerOptions, log zerolog.Logger) (*http.Server, <-chan error, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("listen %s: %w", addr, err)
	}
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: o.ReadHeaderTimeout,
		ReadTimeout:       o.ReadTimeout,
		WriteTimeout:      o.WriteTimeout,
		IdleTimeout:       o.IdleTimeout,
		MaxHeaderBytes:    o.MaxHeaderBytes,
		ErrorLog:          stdlog.New(log, "", 0),
	}
	if o.CancelOnShutdown {
		base, cancel := context.WithCancel(context.Background())
		srv.BaseContext = func(net.Listener) context.Context { return base }
		srv.RegisterOnShutdown(cancel)
	}
	errc := make(chan error, 1)
	go func() {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("serve %s: %w", ln.Addr(), err)
		}
	}()
	log.Info().Str("addr", ln.Addr().String()).Msg("listening")
	return srv, errc, nil
}

// Retry calls attempt every interval until it succeeds or ctx ends; each
// attempt gets at most interval*2 (bounded by ctx). onFail sees every failed
// attempt, for the log line that tells an operator why start-up waits. It
// returns nil, or ctx's error joined with the last failure.
func Retry(ctx context.Context, interval time.Duration, attempt func(ctx context.Context) error, onFail func(error)) error {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		actx, cancel := context.WithTimeout(ctx, 2*interval)
		err := attempt(actx)
		cancel()
		if err == nil {
			return nil
		}
		onFail(err)
		select {
		case <-ctx.Done():
			return errors.Join(err, ctx.Err())
		case <-tick.C:
		}
	}
}

// version and commit are stamped at build time (make build, the Dockerfile):
//
//	-ldflags "-X github.com/cardwire/cardwire/internal/lifecycle.version=0.6.0
//	          -X github.com/cardwire/cardwire/internal/lifecycle.commit=$(git rev-parse --short=12 HEAD)"
var (
	version = "dev"
	commit  = ""
)

// Version is the build's version ("dev" when not stamped).
func Version() string { return version }

// Commit is the build's commit: the stamped one, else the VCS revision Go
// records in a build from a checkout (suffixed -dirty when the tree had
// changes), else "unknown" (go run, go test, -buildvcs=false).
func Commit() string {
	if commit != "" {
		return commit
	}
	return buildCommit(debug.ReadBuildInfo)
}

func buildCommit(read func() (*debug.BuildInfo, bool)) string {
	info, ok := read()
	if !ok {
		return "unknown"
	}
	var rev string
	var dirty bool
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev == "" {
		return "unknown"
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if dirty {
		rev += "-dirty"
	}
	return rev
}

// ParseArgs accepts no arguments but -h and -version: every setting is an
// environment variable, and -h lists them through variables (which writes
// the binary's table of variables, defaults and descriptions). exit is true
// when a flag asked for output only (the caller returns err, nil for
// those).
func ParseArgs(name string, args []string, stdout io.Writer, variables func(io.Writer) error) (exit bool, err error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stdout)
	showVersion := fs.Bool("version", false, "print the version and the commit, and exit")
	fs.Usage = func() {
		fmt.Fprintf(stdout, "usage: %s [-h] [-version]\n\n", name)
		fmt.Fprint(stdout, "Every setting is an environment variable (durations are Go durations such as\n500ms, 30s or 15m; a *_FILE variable names the file holding that secret).\nThe README's configuration table says more.\n\n")
		if variables != nil {
			variables(stdout)
		}
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return true, nil
		}
		return true, err
	}
	if fs.NArg() > 0 {
		return true, fmt.Errorf("unexpected arguments %q (every setting is an environment variable; see -h)", fs.Args())
	}
	if *showVersion {
		_, err := fmt.Fprintf(stdout, "%s %s (commit %s)\n", name, version, Commit())
		return true, err
	}
	return false, nil
}
