package main

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/cardwire/cardwire/internal/workspaces"
)

// The development workspaces: two properties of one Seam account. Aurora
// keeps the id of the single-workspace stack, so that its commands still
// name the same workspace.
const (
	auroraID   = "00000000-0000-4000-8000-000000000001"
	borealisID = "00000000-0000-4000-8000-000000000002"
	// defaultWorkspaceID is the workspace of the single-workspace stack.
	defaultWorkspaceID = auroraID
)

func workspacesCmd(args []string, getenv func(string) string, stdout io.Writer) error {
	fset := flag.NewFlagSet("workspaces", flag.ContinueOnError)
	fset.SetOutput(stdout)
	out := fset.String("o", "", "write the file here (mode 0600) instead of to stdout; an existing file is refused unless -force")
	force := fset.Bool("force", false, "replace an existing -o file (new secrets: restart the stack)")
	list := fset.Bool("list", false, "print the workspaces of WORKSPACES_FILE, without secrets, instead")
	if err := fset.Parse(args); err != nil {
		return err
	}
	if *list {
		return listWorkspaces(getenv, stdout)
	}
	f, err := devWorkspaces()
	if err != nil {
		return err
	}
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	b = append(b, '\n')
	if *out == "" {
		_, err := stdout.Write(b)
		return err
	}
	flags := os.O_WRONLY | os.O_CREATE | os.O_EXCL
	if *force {
		flags = os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	}
	// 0600: the file holds the API key, the token and the webhook secrets.
	w, err := os.OpenFile(*out, flags, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("%s exists: keep it, or pass -force to replace it (and its secrets)", *out)
	}
	if err != nil {
		return err
	}
	if _, err := w.Write(b); err != nil {
		_ = w.Close()
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	_, err = fmt.Fprintf(stdout, "wrote %s: %s\n", *out, names(f))
	return err
}

// devWorkspaces makes a WORKSPACES_FILE for the local stack, with fresh
// secrets: Aurora calls Seam with its own API key, Borealis through the
// account's personal access token (with seam-workspace), so that the
// stack exercises both.
func devWorkspaces() (workspaces.File, error) {
	var errs []error
	gen := func(f func() (string, error)) string {
		s, err := f()
		errs = append(errs, err)
		return s
	}
	f := workspaces.File{
		Workspaces: []workspaces.WorkspaceEntry{
			{
				WorkspaceID: auroraID, Name: "Hotel Aurora",
				WebhookSecrets: []string{gen(newWebhookSecret)},
				SeamAPIKey:     gen(func() (string, error) { return randomToken("seam_test_") }),
			},
			{
				WorkspaceID: borealisID, Name: "Hotel Borealis",
				WebhookSecrets: []string{gen(newWebhookSecret)},
			},
		},
		PersonalAccessToken: gen(func() (string, error) { return randomToken("seam_at_") }),
	}
	return f, errors.Join(errs...)
}

func names(f workspaces.File) string {
	var out []string
	for _, w := range f.Workspaces {
		out = append(out, w.Name)
	}
	return strings.Join(out, ", ")
}

func newWebhookSecret() (string, error) {
	key := make([]byte, 24)
	if _, err := rand.Read(key); err != nil {
		return "", err
	}
	return "whsec_" + base64.StdEncoding.EncodeToString(key), nil
}

func randomToken(prefix string) (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return prefix + hex.EncodeToString(b), nil
}

// listWorkspaces prints each workspace of WORKSPACES_FILE and how Seam is
// reached for it; never a secret.
func listWorkspaces(getenv func(string) string, stdout io.Writer) error {
	c, err := loadWorkspaces(getenv)
	if err != nil {
		return err
	}
	if c == nil {
		return errors.New("-list needs WORKSPACES_FILE")
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	for _, id := range c.IDs() {
		w, _ := c.Workspace(id)
		seam := "none (track-only)"
		if creds, ok := c.Seam(id); ok && creds.Workspace == "" {
			seam = "its own API key"
		} else if ok {
			seam = "the personal access token, with seam-workspace"
		}
		fmt.Fprintf(tw, "%s\t%s\tSeam: %s\n", w.Label(), id, seam)
	}
	return tw.Flush()
}

// loadWorkspaces reads WORKSPACES_FILE as the receiver and the worker do;
// nil when it is not set.
func loadWorkspaces(getenv func(string) string) (*workspaces.Config, error) {
	path := strings.TrimSpace(getenv("WORKSPACES_FILE"))
	if path == "" {
		return nil, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("WORKSPACES_FILE: %w (make run writes .data/workspaces.json)", err)
	}
	c, err := workspaces.Parse(data, filepath.Dir(path), os.ReadFile)
	if err != nil {
		return nil, fmt.Errorf("WORKSPACES_FILE %s: %w", path, err)
	}
	return c, nil
}

// workspaceFor resolves a -workspace flag. With WORKSPACES_FILE (c) it is
// one of the file's workspaces, by id or name (the first when sel is
// empty); without, a workspace of that id (defaultWorkspaceID when empty)
// with no secrets.
func workspaceFor(c *workspaces.Config, sel string) (*workspaces.Workspace, error) {
	sel = strings.TrimSpace(sel)
	if c == nil {
		if sel == "" {
			sel = defaultWorkspaceID
		}
		return &workspaces.Workspace{ID: sel}, nil
	}
	var have []string
	for i, id := range c.IDs() {
		w, _ := c.Workspace(id)
		if (sel == "" && i == 0) || id == sel || (w.Name != "" && strings.EqualFold(w.Name, sel)) {
			return w, nil
		}
		have = append(have, fmt.Sprintf("%q (%s)", w.Label(), id))
	}
	return nil, fmt.Errorf("-workspace %q is not in WORKSPACES_FILE, which has %s", sel, strings.Join(have, ", "))
}
