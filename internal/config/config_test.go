package config_test

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/cardwire/cardwire/internal/config"
)

func TestSecretIsRedactedEverywhere(t *testing.T) {
	const value = "whsec_c2VjcmV0LXZhbHVl"
	cfg := struct {
		URL    string
		Secret config.Secret
		List   []config.Secret
	}{"nats://x", config.Secret(value), []config.Secret{config.Secret(value)}}

	js, err := json.Marshal(cfg)
	require.NoError(t, err)
	var logged []byte
	log := zerolog.New(zerologWriter(func(p []byte) { logged = append(logged, p...) }))
	log.Info().Interface("cfg", cfg).Stringer("s", cfg.Secret).Msg("config")

	for name, out := range map[string]string{
		"%v": fmt.Sprintf("%v", cfg), "%+v": fmt.Sprintf("%+v", cfg), "%#v": fmt.Sprintf("%#v", cfg),
		"String": cfg.Secret.String(), "json": string(js), "zerolog": string(logged),
	} {
		require.NotContains(t, out, "c2VjcmV0", name)
		require.Regexp(t, `<secret>|\\u003csecret\\u003e`, out, name)
	}
	require.Equal(t, value, cfg.Secret.Reveal())
}

type zerologWriter func([]byte)

func (w zerologWriter) Write(p []byte) (int, error) { w(p); return len(p), nil }

func TestSecrets(t *testing.T) {
	files := map[string]string{"/run/secrets/two": "whsec_a\nwhsec_b\n", "/run/secrets/comma": " whsec_a , whsec_b ,"}
	read := func(p string) ([]byte, error) {
		if v, ok := files[p]; ok {
			return []byte(v), nil
		}
		return nil, fs.ErrNotExist
	}
	testCases := []struct {
		Name    string
		Env     map[string]string
		Want    []string
		WantErr string
	}{
		{Name: "unset", Env: map[string]string{}},
		{Name: "one value", Env: map[string]string{"S": "whsec_a"}, Want: []string{"whsec_a"}},
		{Name: "comma separated", Env: map[string]string{"S": "whsec_a,whsec_b"}, Want: []string{"whsec_a", "whsec_b"}},
		{Name: "file, one per line", Env: map[string]string{"S_FILE": "/run/secrets/two"}, Want: []string{"whsec_a", "whsec_b"}},
		{Name: "file, comma separated", Env: map[string]string{"S_FILE": "/run/secrets/comma"}, Want: []string{"whsec_a", "whsec_b"}},
		{Name: "both", Env: map[string]string{"S": "whsec_a", "S_FILE": "/run/secrets/two"}, WantErr: "at most one of S and S_FILE may be set"},
		{Name: "missing file", Env: map[string]string{"S_FILE": "/nope"}, WantErr: "S_FILE: file does not exist"},
	}
	for _, c := range testCases {
		t.Run(c.Name, func(t *testing.T) {
			env := &config.Env{Getenv: func(k string) string { return c.Env[k] }, ReadFile: read}
			got := env.Secrets("S")
			if c.WantErr != "" {
				require.EqualError(t, env.Err(), c.WantErr)
				return
			}
			require.NoError(t, env.Err())
			var plain []string
			for _, s := range got {
				plain = append(plain, s.Reveal())
			}
			require.Equal(t, c.Want, plain)
		})
	}
}

func TestEnvCollectsEveryError(t *testing.T) {
	env := &config.Env{Getenv: func(k string) string {
		return map[string]string{"D": "5", "N": "many", "B": "perhaps"}[k]
	}}
	require.Equal(t, 7, env.Int("MISSING", 7))
	env.Duration("D", 0)
	env.Int("N", 0)
	env.Bool("B", false)
	err := env.Err()
	require.ErrorContains(t, err, "D: want a positive Go duration")
	require.ErrorContains(t, err, "N: want a positive integer")
	require.ErrorContains(t, err, "B: want true or false")
}

func TestVarsCheck(t *testing.T) {
	vars := config.Vars{
		{Name: "ADDR", Default: ":8080", Help: "listener"},
		{Name: "MAX_AGE", Default: "15m", Help: "age"},
		{Name: "TOKEN", Help: "token"},
		{Name: "TOKEN_FILE", Help: "token file"},
	}
	read := func(env *config.Env) {
		env.String("ADDR", ":8080")
		env.Duration("MAX_AGE", 15*time.Minute)
		env.Secret("TOKEN")
	}
	testCases := []struct {
		Name string
		Vars config.Vars
		Read func(*config.Env)
		All  bool
		Want []string
	}{
		{Name: "in step", Vars: vars, Read: read, All: true},
		{Name: "a default differs", Vars: vars, Read: func(env *config.Env) { read(env); env.Int("ADDR", 1) }, Want: []string{`ADDR: the table says default ":8080", the code uses "1"`}},
		{Name: "read but not in the table", Vars: vars, Read: func(env *config.Env) { read(env); env.Bool("DEBUG", false) }, Want: []string{`DEBUG is read (default "false") but not in the table`}},
		{Name: "in the table but never read", Vars: vars, Read: func(env *config.Env) { env.String("ADDR", ":8080") }, All: true,
			Want: []string{"MAX_AGE is in the table but never read", "TOKEN_FILE is in the table but never read"}},
		{Name: "never read is fine for a partial read", Vars: vars, Read: func(env *config.Env) { env.String("ADDR", ":8080") }},
		{Name: "twice in the table", Vars: append(vars, config.Var{Name: "ADDR", Default: ":8080", Help: "again"}), Read: read, Want: []string{"ADDR is in the table twice"}},
		{Name: "help of two lines", Vars: append(vars[:3:3], config.Var{Name: "TOKEN_FILE", Help: "one\ntwo"}), Read: read, Want: []string{"TOKEN_FILE: the help must be one line"}},
	}
	for _, c := range testCases {
		t.Run(c.Name, func(t *testing.T) {
			env := &config.Env{Getenv: func(string) string { return "" }}
			c.Read(env)
			err := c.Vars.Check(env.Reads(), c.All)
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

func TestFormatDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		500 * time.Millisecond: "500ms", 30 * time.Second: "30s", 15 * time.Minute: "15m", 90 * time.Second: "1m30s",
		time.Hour: "1h", 168 * time.Hour: "168h", 90 * time.Minute: "1h30m", time.Hour + time.Second: "1h0m1s",
	} {
		require.Equal(t, want, config.FormatDuration(d))
		require.True(t, config.SameDefault(want, d.String()), "%s and %s", want, d)
	}
	require.False(t, config.SameDefault("5m", "5s"))
	require.False(t, config.SameDefault("", "0s"))
}

func TestUsage(t *testing.T) {
	var out strings.Builder
	require.NoError(t, config.Vars{
		{Name: "NATS_URL", Default: "nats://127.0.0.1:4222", Help: "NATS servers"},
		{Name: "NATS_CREDS_FILE", Help: "credentials"},
	}.Usage(&out))
	require.Equal(t, ""+
		"  VARIABLE         DEFAULT                WHAT IT DOES\n"+
		"  NATS_URL         nats://127.0.0.1:4222  NATS servers\n"+
		"  NATS_CREDS_FILE  -                      credentials\n", out.String())
}

// TestLogDurationsCarryTheirUnit: a duration field reads "1.5s", not a
// bare number of milliseconds.
func TestLogDurationsCarryTheirUnit(t *testing.T) {
	var out strings.Builder
	env := &config.Env{Getenv: func(string) string { return "" }}
	log := env.Logger(&out)
	log.Info().Dur("took", 1500*time.Millisecond).Dur("retry_in", 250*time.Millisecond).Msg("x")
	require.Contains(t, out.String(), `"took":"1.5s","retry_in":"250ms"`)
}
