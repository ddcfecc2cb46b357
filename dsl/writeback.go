package dsl

import (
	"context"
	"encoding/json"
	"fmt"
	"path"
	"strings"
)

// Writeback is a run's declaration that it proposes changes to its repository as a pull
// request (contract §7). It lives in the trusted run definition: the sandbox only
// supplies file contents (StageWriteback), and the edge validates them against this
// declaration and commits them with its own GitHub credentials after the run succeeded.
// A writeback that fails or is rejected annotates the check; it never turns it red.
type Writeback struct {
	// Branch is the head branch; or BranchPrefix gives <prefix>-<execution id>.
	Branch       string
	BranchPrefix string
	// BaseBranch defaults to the dispatch ref's branch, else the repository's default.
	BaseBranch    string
	CommitMessage string
	PR            *WritebackPR // nil: push the branch only
	// KeepExisting leaves an existing head branch alone (the contract's
	// updateExisting: false) and reports the writeback skipped.
	KeepExisting bool
	// PathAllowlist are anchored globs: "*" is a run of non-"/" characters and "/**" any
	// depth including none ("fixtures/**", "**/*.snap"). Empty allows every path.
	PathAllowlist  []string
	MaxBytes       int64 // of all written files; default DefaultWritebackMaxBytes
	MaxFiles       int   // default DefaultWritebackMaxFiles
	AllowWorkflows bool  // allow paths under .github/workflows/
}

// WritebackPR is the pull request a writeback opens (or updates).
type WritebackPR struct {
	Title string
	Body  string
	Ready bool // open it ready for review; the default is a draft
}

// Writeback defaults and the artifact the sandbox stages.
const (
	DefaultWritebackMaxBytes = 5 << 20
	DefaultWritebackMaxFiles = 200
	WritebackArtifact        = "writeback"
	WritebackManifestFile    = "manifest.json"
)

// Limits returns MaxBytes and MaxFiles with the defaults applied.
func (w *Writeback) Limits() (maxBytes int64, maxFiles int) {
	maxBytes, maxFiles = w.MaxBytes, w.MaxFiles
	if maxBytes == 0 {
		maxBytes = DefaultWritebackMaxBytes
	}
	if maxFiles == 0 {
		maxFiles = DefaultWritebackMaxFiles
	}
	return maxBytes, maxFiles
}

// HeadBranch is the branch the writeback of execution exec pushes.
func (w *Writeback) HeadBranch(exec string) string {
	if w.Branch != "" {
		return w.Branch
	}
	return w.BranchPrefix + "-" + strings.Map(func(r rune) rune {
		if r == ':' {
			return '-'
		}
		return r
	}, exec)
}

func (w *Writeback) validate(run string) error {
	switch {
	case w.Branch == "" && w.BranchPrefix == "":
		return fmt.Errorf("run %s: writeback needs a Branch or a BranchPrefix", run)
	case w.Branch != "" && w.BranchPrefix != "":
		return fmt.Errorf("run %s: writeback has both a Branch and a BranchPrefix", run)
	case strings.TrimSpace(w.CommitMessage) == "":
		return fmt.Errorf("run %s: writeback needs a CommitMessage", run)
	case w.MaxBytes < 0 || w.MaxFiles < 0:
		return fmt.Errorf("run %s: writeback MaxBytes and MaxFiles must be > 0", run)
	case w.PR != nil && strings.TrimSpace(w.PR.Title) == "":
		return fmt.Errorf("run %s: writeback pull request needs a Title", run)
	}
	for _, g := range w.PathAllowlist {
		if g == "" || strings.HasPrefix(g, "/") {
			return fmt.Errorf("run %s: writeback allowlist glob %q must be a relative path", run, g)
		}
	}
	return nil
}

// WritebackManifest is manifest.json of the writeback artifact:
// {"entries":[{"path","mode"?,"deleted"?}]}; each written entry's content is the
// artifact's files/<path>.
type WritebackManifest struct {
	Entries []WritebackEntry `json:"entries"`
}

// WritebackEntry is one changed path.
type WritebackEntry struct {
	Path    string `json:"path"`
	Mode    string `json:"mode,omitempty"` // 100644 (default) or 100755
	Deleted bool   `json:"deleted,omitempty"`
}

// Staged is what StageWriteback produced.
type Staged struct {
	Paths   []string `json:"changedPaths"` // written and deleted, sorted
	Deleted int      `json:"deleted"`
	URI     string   `json:"writebackUri,omitempty"` // the artifact; "" when nothing changed
}

// StageWriteback lists what the commands changed in the checkout at dir and stages it
// as the writeback artifact (manifest.json and files/<path>), as the durable step name
// (contract refresh-fixtures stage-writeback + upload-writeback). Nothing changed: no
// artifact, and the edge skips the writeback. The edge, not the sandbox, decides what
// may be committed.
func StageWriteback(c *Ctx, name, dir string) (Staged, error) {
	if c.Sandbox == nil {
		return Staged{}, &ExecFailed{ExitCode: -1, Cause: "no sandbox"}
	}
	if c.Artifacts == nil {
		return Staged{}, &ArtifactUploadFailed{Name: WritebackArtifact, Cause: "this platform has no artifact store"}
	}
	return Step(c, name, func(ctx context.Context) (Staged, error) {
		changes, err := c.Sandbox.Changes(ctx, dir)
		if err != nil {
			return Staged{}, err
		}
		var st Staged
		if len(changes) == 0 {
			c.logger().Info("no changes to write back")
			return st, nil
		}
		m := WritebackManifest{Entries: make([]WritebackEntry, 0, len(changes))}
		entries := make([]TreeEntry, 0, len(changes)+1)
		for _, ch := range changes {
			st.Paths = append(st.Paths, ch.Path)
			if ch.Deleted {
				st.Deleted++
				m.Entries = append(m.Entries, WritebackEntry{Path: ch.Path, Deleted: true})
				continue
			}
			m.Entries = append(m.Entries, WritebackEntry{Path: ch.Path, Mode: ch.Mode})
			if ch.Mode == "120000" {
				continue // a symlink: listed so the edge can say it refuses it
			}
			entries = append(entries, TreeEntry{Path: "files/" + ch.Path, Source: path.Join(dir, ch.Path), Executable: ch.Mode == "100755"})
		}
		b, err := json.MarshalIndent(m, "", "  ")
		if err != nil {
			return st, err
		}
		entries = append([]TreeEntry{{Path: WritebackManifestFile, Data: b}}, entries...)
		a, err := c.Artifacts.UploadTree(ctx, WritebackArtifact, entries)
		if err != nil {
			return st, err
		}
		st.URI = a.URL
		c.logger().Info("writeback staged", "paths", len(st.Paths), "deleted", st.Deleted)
		return st, nil
	})
}
