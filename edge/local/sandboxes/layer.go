package sandboxes

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	sandboximages "github.com/flare-dispatch/flare-dispatch/sandbox-images"
)

// A Container starts from its image: what the image's build put on disk is there at
// every start, for free (a read-only layer under the container's own writable one).
// The Go image pre-builds the standard library into its GOCACHE (sandbox-images/
// go-layer.sh), so no run compiles it. GoLayer models that image layer for fresh local
// sandboxes: the same script, run once per Go toolchain outside any run (as `docker
// build` would), into a directory every fresh sandbox's GOCACHE starts as a copy of.

// goLayerEnv is what GoLayer asks `go env` for: what decides whether a build cache
// built by one Go serves another (the cache's own keys hash the rest).
var goLayerEnv = []string{"GOVERSION", "GOROOT", "GOOS", "GOARCH", "GOAMD64", "GOEXPERIMENT", "CGO_ENABLED", "CC"}

// GoLayer returns the directory of the image layer for the Go on this machine's PATH,
// building it first if no earlier stack did: the standard library compiled and vetted
// by go-layer.sh with the environment a fresh sandbox gets. It is keyed by the
// toolchain and the script and shared by every stack on the machine (as an image is),
// under root (default: $TMPDIR/flare-images). No Go: "" and no error. A build is
// minutes on a small machine; concurrent builders each build and the first rename wins.
func GoLayer(ctx context.Context, root string, log *slog.Logger) (string, error) {
	if _, err := exec.LookPath("go"); err != nil {
		return "", nil
	}
	if root == "" {
		root = filepath.Join(os.TempDir(), "flare-images")
	}
	home, err := os.MkdirTemp("", "flare-image-home-")
	if err != nil {
		return "", err
	}
	defer removeTree(home)
	env := agentEnv(freshEnv(os.LookupEnv), home, "image")
	cmd := exec.CommandContext(ctx, "go", append([]string{"env"}, goLayerEnv...)...)
	cmd.Env = env
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("go layer: go env: %w", err)
	}
	sum := sha256.Sum256(append(out, sandboximages.GoLayer...))
	version, _, _ := strings.Cut(string(out), "\n")
	dir := filepath.Join(root, "go-"+strings.TrimSpace(version)+"-"+hex.EncodeToString(sum[:6]))
	if _, err := os.Stat(filepath.Join(dir, layerManifest)); err == nil {
		return dir, nil
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		return "", fmt.Errorf("go layer: %w", err)
	}
	tmp, err := os.MkdirTemp(root, ".building-")
	if err != nil {
		return "", fmt.Errorf("go layer: %w", err)
	}
	defer removeTree(tmp)
	if log != nil {
		log.Info("building the sandbox image's Go layer once (the standard library, as the Go image's docker build does)", "dir", dir)
	}
	t0 := time.Now()
	cmd = exec.CommandContext(ctx, "sh", "-c", sandboximages.GoLayer, "go-layer.sh", filepath.Join(tmp, "go-build"))
	cmd.Env, cmd.Dir = env, home
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go layer: go-layer.sh: %w\n%s", err, b)
	}
	if err := os.Rename(filepath.Join(tmp, "go-build"), dir); err != nil {
		if _, serr := os.Stat(filepath.Join(dir, layerManifest)); serr == nil {
			return dir, nil // another stack built it meanwhile
		}
		return "", fmt.Errorf("go layer: %w", err)
	}
	if log != nil {
		log.Info("sandbox image's Go layer built", "dir", dir, "durationMs", time.Since(t0).Milliseconds())
	}
	return dir, nil
}

// layerManifest lists an image layer's entries (dsl.ImageLayerManifest; the script
// writes it last, so a layer without it is unfinished).
const layerManifest = ".flare-image"

// spare is a copy of the Go layer made ahead of a sandbox's start: a Container's image
// layer costs its start nothing, while a copy costs seconds on a busy machine, so the
// copy is made before it is needed, one at a time, and a start renames it into place.
type spare struct {
	dir  string
	done chan struct{} // closed once dir is complete, or err set
	err  error
}

// refillSpare begins the next spare copy, once a run's sandbox is gone (fresh only).
func (p *Procs) refillSpare() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.Fresh {
		p.startSpare()
	}
}

// startSpare begins the next spare copy unless one is under way or ready. p.mu is held.
func (p *Procs) startSpare() {
	if p.spare != nil || p.closed || p.GoLayer == "" {
		return
	}
	p.spareN++
	s := &spare{dir: filepath.Join(p.Root+"-spare", fmt.Sprint(p.spareN)), done: make(chan struct{})}
	p.spare = s
	p.spares.Add(1)
	go func() {
		defer p.spares.Done()
		s.err = seedGoCache(p.GoLayer, s.dir)
		close(s.done)
	}()
}

// WarmUp makes the next fresh sandbox's copy of the Go layer (unless one is ready or
// under way) and returns once it is ready, as a host pulls an image before its first
// Container starts. Each retired sandbox then begins the next copy in the background:
// between runs, not beside one. A copy is ~180 MB and 3,900 files (2.7 s here); begun
// at a start, as it was, it competed with that run's checkout and command on two
// cores, which a Container, whose image layer costs its start nothing, never does.
// With the copy on the start's path instead, a fresh sandbox took 2-3.5 s to its
// checkout on a loaded machine. Close waits for the copy under way.
func (p *Procs) WarmUp() {
	p.mu.Lock()
	if !p.Fresh {
		p.mu.Unlock()
		return
	}
	p.startSpare()
	s := p.spare
	p.mu.Unlock()
	if s != nil {
		<-s.done
	}
}

// seedGo gives the fresh sandbox whose GOCACHE is gocache its copy of the Go layer:
// the spare (waiting for it if it is still being copied rather than copying beside
// it), else (concurrent starts) a copy made now. The next spare is begun when a
// sandbox retires (refillSpare).
func (p *Procs) seedGo(gocache string) error {
	p.mu.Lock()
	s := p.spare
	p.spare = nil
	p.mu.Unlock()
	if s != nil {
		<-s.done
		if s.err == nil && os.MkdirAll(filepath.Dir(gocache), 0o755) == nil && os.Rename(s.dir, gocache) == nil {
			return nil
		}
		_ = removeTree(s.dir)
	}
	return seedGoCache(p.GoLayer, gocache)
}

// seedGoCache starts a fresh sandbox's GOCACHE as a copy of the image layer (reflinked
// where the filesystem can): the sandbox's own, never the layer itself, which other
// sandboxes start from.
func seedGoCache(layer, gocache string) error {
	if err := os.MkdirAll(filepath.Dir(gocache), 0o755); err != nil {
		return err
	}
	if out, err := exec.Command("cp", "-a", "--reflink=auto", layer, gocache).CombinedOutput(); err != nil {
		return fmt.Errorf("copy the Go layer: %w: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}
