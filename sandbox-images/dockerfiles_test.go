package sandboximages

import (
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// aptPackages returns the packages a Dockerfile's RUN instructions install with
// apt-get install (continuation lines joined; options and shell operators skipped).
func aptPackages(dockerfile string) []string {
	joined := strings.ReplaceAll(dockerfile, "\\\n", " ")
	var pkgs []string
	for _, line := range strings.Split(joined, "\n") {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, "RUN ") {
			continue
		}
		for _, cmd := range strings.FieldsFunc(line[4:], func(r rune) bool { return r == '&' || r == ';' || r == '|' }) {
			f := strings.Fields(cmd)
			i := slices.Index(f, "install")
			if i < 1 || !slices.Contains(f[:i], "apt-get") {
				continue
			}
			for _, tok := range f[i+1:] {
				if !strings.HasPrefix(tok, "-") {
					pkgs = append(pkgs, tok)
				}
			}
		}
	}
	return pkgs
}

// missingFromIndex returns the packages apt-cache does not know (apt-get update must
// have run; .ci/run does).
func missingFromIndex(t *testing.T, pkgs []string) []string {
	t.Helper()
	if _, err := exec.LookPath("apt-cache"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("apt-cache is required under CI")
		}
		t.Skip("no apt-cache: not a Debian machine")
	}
	// One call for all: apt-cache prints the records it has (and fails for the rest).
	out, _ := exec.Command("apt-cache", append([]string{"show", "--no-all-versions"}, pkgs...)...).Output()
	found := map[string]bool{}
	for _, line := range strings.Split(string(out), "\n") {
		if name, ok := strings.CutPrefix(line, "Package: "); ok {
			found[strings.TrimSpace(name)] = true
		}
	}
	var missing []string
	for _, p := range pkgs {
		if !found[p] {
			missing = append(missing, p)
		}
	}
	return missing
}

// dockerfiles are the sandbox images (check.sh lists the same).
var dockerfiles = []string{"lean/Dockerfile", "chromium/Dockerfile", "go/Dockerfile"}

// finalStage is the Dockerfile's last stage: from its last FROM line on.
func finalStage(dockerfile string) string {
	i := strings.LastIndex(dockerfile, "\nFROM ")
	if i < 0 {
		return dockerfile
	}
	return dockerfile[i+1:]
}

// TestEveryImageWithGoPrebuildsItsStandardLibrary: an image whose runtime stage carries
// a Go toolchain runs go-layer.sh into the GOCACHE its runs use, so no run compiles the
// standard library (issue 15). Fails if a Go image drops the step, or if the layer goes
// to another directory than the GOCACHE the image sets.
func TestEveryImageWithGoPrebuildsItsStandardLibrary(t *testing.T) {
	withGo := 0
	for _, df := range dockerfiles {
		b, err := os.ReadFile(df)
		if err != nil {
			t.Fatal(err)
		}
		final := finalStage(string(b))
		if !strings.HasPrefix(final, "FROM golang:") {
			continue
		}
		withGo++
		run := ""
		for _, line := range strings.Split(final, "\n") {
			if r, ok := strings.CutPrefix(line, "RUN sh /usr/local/share/flare/go-layer.sh "); ok {
				run = strings.TrimSpace(r)
			}
		}
		if run == "" || !strings.Contains(final, "COPY sandbox-images/go-layer.sh /usr/local/share/flare/go-layer.sh") {
			t.Errorf("%s carries Go but does not pre-build its standard library with go-layer.sh", df)
		} else if !strings.Contains(final, "GOCACHE="+run+" ") {
			t.Errorf("%s builds the Go layer into %s, which is not the GOCACHE it sets", df, run)
		}
	}
	if withGo == 0 {
		t.Fatal("no image carries Go")
	}
}

func TestEveryAptPackageOfTheImagesIsInDebiansIndex(t *testing.T) {
	for _, df := range dockerfiles {
		b, err := os.ReadFile(df)
		if err != nil {
			t.Fatal(err)
		}
		pkgs := aptPackages(string(b))
		if len(pkgs) < 5 {
			t.Fatalf("%s: found only %v", df, pkgs)
		}
		if m := missingFromIndex(t, pkgs); len(m) > 0 {
			t.Errorf("%s installs packages Debian's index does not have: %v", df, m)
		}
		browser := slices.Contains(pkgs, "chromium")
		if browser != (df == "chromium/Dockerfile") {
			t.Errorf("%s: chromium installed = %v", df, browser)
		}
	}
}

// The check fails on a package Debian does not have (the guard's own test).
func TestAMisspelledPackageIsReported(t *testing.T) {
	df := "FROM debian:12.11-slim\nRUN apt-get update \\\n && apt-get install -y --no-install-recommends git \\\n      chromiumm fonts-liberation \\\n && rm -rf /var/lib/apt/lists/*\n"
	pkgs := aptPackages(df)
	if !slices.Equal(pkgs, []string{"git", "chromiumm", "fonts-liberation"}) {
		t.Fatalf("parsed %v", pkgs)
	}
	if m := missingFromIndex(t, pkgs); !slices.Equal(m, []string{"chromiumm"}) {
		t.Fatalf("missing %v, want [chromiumm]", m)
	}
}
