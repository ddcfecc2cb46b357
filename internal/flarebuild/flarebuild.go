// Package flarebuild builds the flare CLI for tests and benches that run it as a real
// process: the local stack's agents, the supervisor under wrangler dev, the Action's
// script. One builder, so every caller builds the same way from the repository root.
package flarebuild

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
)

// Root is the repository's root directory.
func Root() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// Flare builds ./cmd/flare into dir with the given build tags and returns its path.
// Tests pass the tag flaretest so that its agents know the test runs
// (internal/testruns).
func Flare(dir string, tags ...string) (string, error) {
	bin := filepath.Join(dir, "flare")
	args := []string{"build", "-o", bin}
	if len(tags) > 0 {
		args = append(args, "-tags", strings.Join(tags, ","))
	}
	cmd := exec.Command("go", append(args, "./cmd/flare")...)
	cmd.Dir = Root()
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/flare: %w\n%s", err, out)
	}
	return bin, nil
}
