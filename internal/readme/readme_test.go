package readme_test

import (
	"os"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cardwire/cardwire/internal/config"
	"github.com/cardwire/cardwire/internal/readme"
)

// TestREADMERendersAsWritten: on GitHub every code block of README.md is
// closed, every "## heading" is a heading (none swallowed by a code block,
// as "Pointing Seam at the receiver" once was), and every #anchor link
// reaches a heading.
func TestREADMERendersAsWritten(t *testing.T) {
	src, err := os.ReadFile("../../README.md")
	require.NoError(t, err)
	d := readme.Parse(src)
	require.NoError(t, d.Check())
	require.NotEmpty(t, d.Fences)
	require.NotEmpty(t, d.Links)
	var sections []string
	for _, h := range d.Headings {
		if h.Level == 2 {
			sections = append(sections, h.Text)
		}
	}
	require.Contains(t, sections, "Configuration")
	require.Contains(t, sections, "Deploying")
}

func TestCheck(t *testing.T) {
	testCases := []struct {
		Name string
		Doc  string
		Want []string // substrings of the error; none: no error
	}{
		{Name: "fine", Doc: "# t\n\n## A b\n\n```sh\nmake run # ok\n# a shell comment\n```\n\nSee [A b](#a-b) and [it](#its-here).\n\n## It's here\n"},
		{Name: "text after a closing fence", Doc: "## A\n\n```sh\nmake run\n``` Other targets: make test\n\n## Pointing Seam at the receiver\n\n```\nx\n```\n",
			Want: []string{"line 5: \"``` Other targets: make test\" inside the code block opened at line 3", "line 7: \"## Pointing Seam at the receiver\" does not render as a heading"}},
		{Name: "unclosed", Doc: "## A\n\n~~~\nx\n", Want: []string{"line 3: the code block opened with ~~~ is never closed"}},
		{Name: "a longer fence may hold a shorter one", Doc: "## A\n\n````md\n```sh\nx\n```\n````\n"},
		{Name: "broken anchor", Doc: "## Many properties, one deployment\n\n[m](#many-properties-one-deployment) [x](#many-properties)\n", Want: []string{"line 3: the link #many-properties names no heading"}},
		{Name: "repeated heading", Doc: "## A\n\n## A\n\n[second](#a-1)\n"},
	}
	for _, c := range testCases {
		t.Run(c.Name, func(t *testing.T) {
			err := readme.Parse([]byte(c.Doc)).Check()
			if len(c.Want) == 0 {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			for _, w := range c.Want {
				require.Contains(t, err.Error(), w)
			}
		})
	}
}

func TestCheckConfig(t *testing.T) {
	const doc = "## Configuration\n\n| variable | default | what it does |\n|---|---|---|\n" +
		"| **webhook-receiver and worker** | | |\n" +
		"| `NATS_URL` | `nats://127.0.0.1:4222` | servers |\n" +
		"| `SHUTDOWN_TIMEOUT` | `25s` | bound |\n" +
		"| **worker** | | |\n" +
		"| `WORKER_API_TOKEN` / `WORKER_API_TOKEN_FILE` | — (required on a public address) | token |\n" +
		"| `ENCODING_MAX_AGE` | `15m` | age |\n"
	worker := config.Vars{
		{Name: "NATS_URL", Default: "nats://127.0.0.1:4222", Help: "h"},
		{Name: "SHUTDOWN_TIMEOUT", Default: "25s", Help: "h"},
		{Name: "WORKER_API_TOKEN", Help: "h"},
		{Name: "WORKER_API_TOKEN_FILE", Help: "h"},
		{Name: "ENCODING_MAX_AGE", Default: "15m0s", Help: "h"},
	}
	rows, err := readme.Parse([]byte(doc)).ConfigTable("Configuration")
	require.NoError(t, err)
	testCases := []struct {
		Name   string
		Binary string
		Vars   config.Vars
		Want   []string
	}{
		{Name: "in step", Binary: "worker", Vars: worker},
		{Name: "a default differs", Binary: "worker", Vars: with(worker, config.Var{Name: "SHUTDOWN_TIMEOUT", Default: "10s", Help: "h"}),
			Want: []string{"SHUTDOWN_TIMEOUT (worker): README's default is \"25s\", the binary's is `10s`"}},
		{Name: "missing from README", Binary: "worker", Vars: append(worker, config.Var{Name: "WORKER_CONCURRENCY", Default: "32", Help: "h"}),
			Want: []string{"WORKER_CONCURRENCY (worker, default \"32\") is not in README's configuration table"}},
		{Name: "the worker's section is not the receiver's", Binary: "webhook-receiver", Vars: worker[:2]},
		{Name: "not read", Binary: "worker", Vars: worker[:4],
			Want: []string{"README lists ENCODING_MAX_AGE under a section naming worker, which does not read it"}},
	}
	for _, c := range testCases {
		t.Run(c.Name, func(t *testing.T) {
			err := readme.CheckConfig(rows, c.Binary, c.Vars)
			if len(c.Want) == 0 {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			for _, w := range c.Want {
				require.Contains(t, err.Error(), w)
			}
		})
	}
}

func with(vs config.Vars, v config.Var) config.Vars {
	out := make(config.Vars, 0, len(vs))
	for _, o := range vs {
		if o.Name == v.Name {
			o = v
		}
		out = append(out, o)
	}
	return out
}

func TestConfigTableSections(t *testing.T) {
	testCases := []struct {
		Name string
		Doc  string
		Want string
	}{
		{"no section", "## Configuration\n\n| v | d | w |\n|---|---|---|\n| `A` | `1` | a |\n", "must start with a section row"},
		{"section naming no binary", "## Configuration\n\n| v | d | w |\n|---|---|---|\n| **both** | | |\n", "names none of"},
		{"default neither dash nor code", "## Configuration\n\n| v | d | w |\n|---|---|---|\n| **worker** | | |\n| `A` | one | a |\n", "neither — nor `a value`"},
		{"no table", "## Configuration\n\ntext\n", "no table under the heading"},
	}
	for _, c := range testCases {
		t.Run(c.Name, func(t *testing.T) {
			_, err := readme.Parse([]byte(c.Doc)).ConfigTable("Configuration")
			require.ErrorContains(t, err, c.Want)
		})
	}
}
