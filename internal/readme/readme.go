// Package readme parses README.md as GitHub renders it (CommonMark and
// GitHub's tables, through goldmark) for the tests that hold it to the
// code: its headings and their anchors, its internal links, its fenced code
// blocks, and its configuration table. Only tests import it.
package readme

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"unicode"

	"github.com/yuin/goldmark"
	"github.com/yuin/goldmark/ast"
	"github.com/yuin/goldmark/extension"
	east "github.com/yuin/goldmark/extension/ast"
	"github.com/yuin/goldmark/text"

	"github.com/cardwire/cardwire/internal/config"
)

// Doc is a parsed Markdown document.
type Doc struct {
	src  []byte
	root ast.Node
	// Headings in document order, with GitHub's anchors.
	Headings []Heading
	// Links whose destination is an anchor in this document (#…).
	Links []Link
	// Fences are the fenced code blocks.
	Fences []Fence
}

// Heading is one rendered heading.
type Heading struct {
	Level  int
	Text   string
	Anchor string
	Line   int
}

// Link is one link to an anchor of the document.
type Link struct {
	Anchor string
	Line   int
}

// Fence is one fenced code block: the line of its opening fence, the fence
// itself (``` or ~~~, at least three), its content lines and whether a
// closing fence ended it (an unclosed one runs to the end of the document).
type Fence struct {
	Line    int
	Marker  string
	Content []string
	Closed  bool
}

// Parse parses src.
func Parse(src []byte) *Doc {
	md := goldmark.New(goldmark.WithExtensions(extension.GFM))
	root := md.Parser().Parse(text.NewReader(src))
	d := &Doc{src: src, root: root}
	seen := map[string]int{}
	_ = ast.Walk(root, func(n ast.Node, entering bool) (ast.WalkStatus, error) {
		if !entering {
			return ast.WalkContinue, nil
		}
		switch n := n.(type) {
		case *ast.Heading:
			t := d.text(n)
			anchor := slug(t)
			if k := seen[anchor]; k > 0 {
				seen[anchor]++
				anchor = fmt.Sprintf("%s-%d", anchor, k)
			} else {
				seen[anchor] = 1
			}
			d.Headings = append(d.Headings, Heading{Level: n.Level, Text: t, Anchor: anchor, Line: d.line(n.Pos())})
		case *ast.Link:
			if dest := string(n.Destination); strings.HasPrefix(dest, "#") {
				d.Links = append(d.Links, Link{Anchor: dest[1:], Line: d.line(n.Pos())})
			}
		case *ast.FencedCodeBlock:
			d.Fences = append(d.Fences, d.fence(n))
		}
		return ast.WalkContinue, nil
	})
	return d
}

// line is the 1-based line of byte offset pos (0 when unknown).
func (d *Doc) line(pos int) int {
	if pos < 0 {
		return 0
	}
	return bytes.Count(d.src[:min(pos, len(d.src))], []byte("\n")) + 1
}

// lines are the document's lines, without their newlines.
func (d *Doc) lines() []string { return strings.Split(string(d.src), "\n") }

var fenceLine = regexp.MustCompile("^ {0,3}(`{3,}|~{3,})")

func (d *Doc) fence(n *ast.FencedCodeBlock) Fence {
	lines := d.lines()
	f := Fence{Line: d.line(n.Pos())}
	if f.Line > 0 {
		f.Marker = fenceLine.FindStringSubmatch(lines[f.Line-1])[1]
	}
	last := f.Line // the line before the closing fence
	for i := 0; i < n.Lines().Len(); i++ {
		seg := n.Lines().At(i)
		f.Content = append(f.Content, strings.TrimSuffix(string(seg.Value(d.src)), "\n"))
		last = d.line(seg.Start)
	}
	// A closing fence is the opening's character, at least as many, and
	// nothing but spaces after it.
	if last < len(lines) && f.Marker != "" {
		next := strings.TrimSpace(lines[last])
		f.Closed = len(next) >= len(f.Marker) && strings.Trim(next, f.Marker[:1]) == ""
	}
	return f
}

// text is what a node renders as text: its text and code spans, without
// markup.
func (d *Doc) text(n ast.Node) string {
	var b strings.Builder
	var walk func(ast.Node)
	walk = func(n ast.Node) {
		switch n := n.(type) {
		case *ast.Text:
			b.Write(n.Value(d.src))
			if n.SoftLineBreak() || n.HardLineBreak() {
				b.WriteByte(' ')
			}
			return
		case *ast.String:
			b.Write(n.Value)
			return
		}
		for c := n.FirstChild(); c != nil; c = c.NextSibling() {
			walk(c)
		}
	}
	walk(n)
	return b.String()
}

// slug is GitHub's anchor for a heading's text: lower case, spaces to
// hyphens, punctuation other than - and _ dropped.
func slug(s string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(strings.TrimSpace(s)) {
		switch {
		case r == ' ':
			b.WriteByte('-')
		case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsNumber(r) || unicode.Is(unicode.M, r):
			b.WriteRune(r)
		}
	}
	return b.String()
}

var atxHeading = regexp.MustCompile(`^ {0,3}(#{2,6})[ \t]+\S`)

// Check reports what GitHub would render differently from what the
// author meant: a fenced code block without its closing fence; a line
// inside a code block that looks like a fence (a closing fence followed by
// text is no closing fence, so the block swallows what follows); a
// "## heading" line that does not render as a heading; and a link to an
// anchor no heading has.
func (d *Doc) Check() error {
	var errs []error
	lines := d.lines()
	for _, f := range d.Fences {
		if !f.Closed {
			errs = append(errs, fmt.Errorf("line %d: the code block opened with %s is never closed (it runs to the end of the document)", f.Line, f.Marker))
		}
		for i, c := range f.Content {
			if m := fenceLine.FindStringSubmatch(c); m != nil && m[1][0] == f.Marker[0] && len(m[1]) >= len(f.Marker) {
				errs = append(errs, fmt.Errorf("line %d: %q inside the code block opened at line %d: a closing fence takes nothing after it, so the block goes on and swallows what follows", f.Line+1+i, c, f.Line))
			}
		}
	}
	headingAt := map[int]bool{}
	for _, h := range d.Headings {
		headingAt[h.Line] = true
	}
	for i, l := range lines {
		if atxHeading.MatchString(l) && !headingAt[i+1] {
			errs = append(errs, fmt.Errorf("line %d: %q does not render as a heading (inside a code block?)", i+1, l))
		}
	}
	anchors := map[string]bool{}
	for _, h := range d.Headings {
		anchors[h.Anchor] = true
	}
	for _, l := range d.Links {
		if !anchors[l.Anchor] {
			errs = append(errs, fmt.Errorf("line %d: the link #%s names no heading", l.Line, l.Anchor))
		}
	}
	return errors.Join(errs...)
}

// ConfigRow is one variable row of the configuration table: the binaries
// of the section it is in, the variable names of its first cell, and its
// default ("" when the cell starts with —, else its first code span).
type ConfigRow struct {
	Binaries []string
	Names    []string
	Default  string
	Cell     string
}

// Binaries are the binaries a section label of the configuration table
// may name.
var Binaries = []string{"webhook-receiver", "worker", "seam-sim"}

var binaryName = regexp.MustCompile(`webhook-receiver|worker|seam-sim`)

// ConfigTable returns the rows of the first table under the heading named
// heading. Rows whose first cell is bold text start a section: the
// binaries it names (webhook-receiver, worker, seam-sim) read the variables
// below it.
func (d *Doc) ConfigTable(heading string) ([]ConfigRow, error) {
	var table *east.Table
	under := false
	for n := d.root.FirstChild(); n != nil && table == nil; n = n.NextSibling() {
		switch n := n.(type) {
		case *ast.Heading:
			under = d.text(n) == heading
		case *east.Table:
			if under {
				table = n
			}
		}
	}
	if table == nil {
		return nil, fmt.Errorf("no table under the heading %q", heading)
	}
	var rows []ConfigRow
	var section []string
	for r := table.FirstChild(); r != nil; r = r.NextSibling() {
		if _, ok := r.(*east.TableRow); !ok {
			continue // the header
		}
		var cells []ast.Node
		for c := r.FirstChild(); c != nil; c = c.NextSibling() {
			cells = append(cells, c)
		}
		if len(cells) < 2 {
			continue
		}
		names := d.codeSpans(cells[0])
		if len(names) == 0 {
			if bold := d.bold(cells[0]); bold != "" {
				section = binaryName.FindAllString(d.text(cells[0]), -1)
				if len(section) == 0 {
					return nil, fmt.Errorf("section %q names none of %v", bold, Binaries)
				}
				continue
			}
			return nil, fmt.Errorf("row %q names no variable in `code`", d.text(cells[0]))
		}
		if section == nil {
			return nil, fmt.Errorf("%v: the table must start with a section row (**binary**)", names)
		}
		def := strings.TrimSpace(d.text(cells[1]))
		row := ConfigRow{Binaries: section, Names: names, Cell: def}
		if !strings.HasPrefix(def, "—") {
			spans := d.codeSpans(cells[1])
			if len(spans) == 0 {
				return nil, fmt.Errorf("%v: the default %q is neither — nor `a value`", names, def)
			}
			row.Default = spans[0]
		}
		rows = append(rows, row)
	}
	return rows, nil
}

func (d *Doc) codeSpans(n ast.Node) []string {
	var out []string
	_ = ast.Walk(n, func(c ast.Node, entering bool) (ast.WalkStatus, error) {
		if cs, ok := c.(*ast.CodeSpan); ok && entering {
			out = append(out, d.text(cs))
			return ast.WalkSkipChildren, nil
		}
		return ast.WalkContinue, nil
	})
	return out
}

func (d *Doc) bold(n ast.Node) string {
	for c := n.FirstChild(); c != nil; c = c.NextSibling() {
		if e, ok := c.(*ast.Emphasis); ok && e.Level == 2 {
			return d.text(e)
		}
	}
	return ""
}

// CheckConfig holds the configuration table to one binary's table of
// variables: each variable has a row in a section for that binary, with
// the same default, and each row of those sections is a variable the
// binary reads.
func CheckConfig(rows []ConfigRow, binary string, vars config.Vars) error {
	var errs []error
	for _, v := range vars {
		found := false
		for _, r := range rows {
			if !slices.Contains(r.Binaries, binary) || !slices.Contains(r.Names, v.Name) {
				continue
			}
			found = true
			if !config.SameDefault(v.Default, r.Default) {
				want := "— (unset)"
				if v.Default != "" {
					want = "`" + v.Default + "`"
				}
				errs = append(errs, fmt.Errorf("%s (%s): README's default is %q, the binary's is %s", v.Name, binary, r.Cell, want))
			}
		}
		if !found {
			errs = append(errs, fmt.Errorf("%s (%s, default %q) is not in README's configuration table, in a section naming %s", v.Name, binary, v.Default, binary))
		}
	}
	for _, r := range rows {
		if !slices.Contains(r.Binaries, binary) {
			continue
		}
		for _, name := range r.Names {
			if _, ok := vars.Lookup(name); !ok {
				errs = append(errs, fmt.Errorf("README lists %s under a section naming %s, which does not read it", name, binary))
			}
		}
	}
	return errors.Join(errs...)
}
