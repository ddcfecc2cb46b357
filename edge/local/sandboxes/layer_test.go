package sandboxes

import (
	"os"
	"path/filepath"
	"testing"
)

// TestFreshSandboxesGetPrivateCopiesOfTheGoLayer: WarmUp returns with the first copy
// ready; each fresh sandbox's GOCACHE is its own copy, so what one run writes changes
// neither the layer nor the next sandbox's; the next copy begins when a sandbox
// retires, not beside the run that took the last one; Close waits for the copy under
// way and leaves no spare behind. Fails if the layer were linked or bound instead of
// copied, if WarmUp did not wait, if a start began the next copy (as it did, competing
// with its own run), or without Close's wait and removal.
func TestFreshSandboxesGetPrivateCopiesOfTheGoLayer(t *testing.T) {
	layer := t.TempDir()
	for name, body := range map[string]string{"0a/0a11-d": "std", layerManifest: "0a/0a11-d\n"} {
		os.MkdirAll(filepath.Dir(filepath.Join(layer, name)), 0o755)
		if err := os.WriteFile(filepath.Join(layer, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	root := filepath.Join(t.TempDir(), "ws")
	p := &Procs{Root: root, Fresh: true, GoLayer: layer}
	p.WarmUp()
	if _, err := os.Stat(filepath.Join(root+"-spare", "1", "0a", "0a11-d")); err != nil {
		t.Fatalf("WarmUp returned before its copy was ready: %v", err)
	}
	a := filepath.Join(root, "a", ".cache", "go-build")
	if err := p.seedGo(a); err != nil {
		t.Fatal(err)
	}
	// No copy competes with the run that just started: the next one begins when a
	// sandbox retires.
	p.mu.Lock()
	copying := p.spare != nil
	p.mu.Unlock()
	if copying {
		t.Fatal("a start began the next layer copy beside its own run")
	}
	p.retire("a")
	p.mu.Lock()
	copying = p.spare != nil
	p.mu.Unlock()
	if !copying {
		t.Fatal("a retired sandbox did not begin the next layer copy")
	}
	if err := os.MkdirAll(filepath.Join(a, "0a"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(a, "0a", "0a11-d"), []byte("a run's write"), 0o644); err != nil {
		t.Fatal(err)
	}
	b := filepath.Join(root, "b", ".cache", "go-build")
	if err := p.seedGo(b); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{layer, b} {
		if got, err := os.ReadFile(filepath.Join(dir, "0a", "0a11-d")); err != nil || string(got) != "std" {
			t.Fatalf("%s after another sandbox's write: %q %v", dir, got, err)
		}
	}
	if _, err := os.Stat(filepath.Join(b, layerManifest)); err != nil {
		t.Fatal("the manifest was not copied")
	}
	p.Close()
	if _, err := os.Stat(root + "-spare"); !os.IsNotExist(err) {
		t.Fatalf("a spare copy outlived Close: %v", err)
	}
}
