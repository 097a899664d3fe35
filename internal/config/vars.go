package config

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// Var is one environment variable a binary reads: its name, its default as
// -h and the README's configuration table show it ("" when unset), and one
// line saying what it does.
type Var struct {
	Name    string
	Default string
	Help    string
}

// Vars is a binary's table of variables: the one list that -h prints and
// that tests hold against what the binary reads (Check) and against the
// README's configuration table.
type Vars []Var

// LogVars are the variables Env.Logger reads, shared by every binary.
var LogVars = Vars{
	{Name: "LOG_LEVEL", Default: "info", Help: "debug, info, warn or error"},
	{Name: "LOG_FORMAT", Default: "json", Help: "json, or console for people"},
}

// Lookup returns the variable called name.
func (vs Vars) Lookup(name string) (Var, bool) {
	i := slices.IndexFunc(vs, func(v Var) bool { return v.Name == name })
	if i < 0 {
		return Var{}, false
	}
	return vs[i], true
}

// Usage writes one line per variable: name, default ("-" when unset) and
// what it does, in columns.
func (vs Vars) Usage(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  VARIABLE\tDEFAULT\tWHAT IT DOES")
	for _, v := range vs {
		def := v.Default
		if def == "" {
			def = "-"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", v.Name, def, v.Help)
	}
	return tw.Flush()
}

// Read is one lookup an Env made: the variable and the default it was
// given, formatted as a Var's Default is.
type Read struct {
	Name    string
	Default string
}

// Check compares the table with the lookups an Env made: every variable
// read must be in the table with the same default (durations compare by
// value, so "15m" matches 15m0s), and, when all is true (reads of a
// configuration that takes every branch), every variable of the table
// must have been read. Errors name each variable.
func (vs Vars) Check(reads []Read, all bool) error {
	var errs []error
	seen := map[string]bool{}
	for _, r := range reads {
		seen[r.Name] = true
		v, ok := vs.Lookup(r.Name)
		if !ok {
			errs = append(errs, fmt.Errorf("%s is read (default %q) but not in the table", r.Name, r.Default))
			continue
		}
		if !SameDefault(v.Default, r.Default) {
			errs = append(errs, fmt.Errorf("%s: the table says default %q, the code uses %q", r.Name, v.Default, r.Default))
		}
	}
	names := map[string]bool{}
	for _, v := range vs {
		if names[v.Name] {
			errs = append(errs, fmt.Errorf("%s is in the table twice", v.Name))
		}
		names[v.Name] = true
		if strings.TrimSpace(v.Help) == "" || strings.Contains(v.Help, "\n") {
			errs = append(errs, fmt.Errorf("%s: the help must be one line", v.Name))
		}
		if all && !seen[v.Name] {
			errs = append(errs, fmt.Errorf("%s is in the table but never read", v.Name))
		}
	}
	return errors.Join(errs...)
}

// SameDefault reports whether two shown defaults are the same value: equal
// strings, or equal Go durations ("15m" and "15m0s").
func SameDefault(a, b string) bool {
	if a == b {
		return true
	}
	da, errA := time.ParseDuration(a)
	db, errB := time.ParseDuration(b)
	return errA == nil && errB == nil && da == db
}

// FormatDuration shows d as people write it: 15m rather than 15m0s, 1h
// rather than 1h0m0s.
func FormatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
