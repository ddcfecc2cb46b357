package local_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flare-dispatch/flare-dispatch/edge/local"
	"github.com/flare-dispatch/flare-dispatch/runs"
)

func openOn(data string) (*local.Stack, error) {
	return local.Open(context.Background(), local.Options{
		DataDir: data, Addr: "127.0.0.1:0", Getenv: env{}.get,
		AgentCommand: []string{flareBin, "agent"}, Runs: runs.Registry(),
	})
}

// TestSecondStackOnADataDirIsRefusedNamingTheOwner opens two real stacks on one data
// directory. The second must fail at once naming the first's PID and address, and
// must leave the first's lock file alone. Before the flock, the second started
// silently (both recovered the same runs) and its Close deleted the first's lock file.
func TestSecondStackOnADataDirIsRefusedNamingTheOwner(t *testing.T) {
	data := t.TempDir()
	first, err := openOn(data)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close(context.Background())
	second, err := openOn(data)
	if err == nil {
		second.Close(context.Background())
		t.Fatal("a second stack opened on a data directory already owned")
	}
	if !errors.Is(err, local.ErrDataDirInUse) || !strings.Contains(err.Error(), fmt.Sprint(os.Getpid())) ||
		!strings.Contains(err.Error(), first.URL) {
		t.Fatalf("second Open = %v, want ErrDataDirInUse naming pid %d and %s", err, os.Getpid(), first.URL)
	}
	if l, err := local.FindStack(data); err != nil || l.URL != first.URL {
		t.Fatalf("the owner's lock file after the refused start: %+v, %v", l, err)
	}
	if err := first.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	third, err := openOn(data)
	if err != nil {
		t.Fatalf("open after the owner closed: %v", err)
	}
	third.Close(context.Background())
}

// TestSecondFlareUpExitsAtOnce runs a real `flare up`, then a second on its data
// directory: the second exits non-zero with the owner's PID, and the first keeps
// serving. A kill -9 of the owner frees the directory (the kernel drops the flock),
// even though its lock file stays behind.
func TestSecondFlareUpExitsAtOnce(t *testing.T) {
	data := t.TempDir()
	up := flareUp(t, data)
	var out bytes.Buffer
	second := exec.Command(flareBin, "up", "--addr", "127.0.0.1:0", "--data", data)
	second.Stdout, second.Stderr = &out, &out
	done := make(chan error, 1)
	if err := second.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- second.Wait() }()
	select {
	case err := <-done:
		if err == nil {
			t.Fatalf("second flare up exited 0: %s", out.String())
		}
	case <-time.After(20 * time.Second):
		_ = second.Process.Kill()
		t.Fatalf("second flare up on an owned data directory kept running: %s", out.String())
	}
	if !strings.Contains(out.String(), fmt.Sprintf("pid %d", up.cmd.Process.Pid)) || !strings.Contains(out.String(), up.url) {
		t.Fatalf("second flare up said %q, want the owner's pid %d and %s", out.String(), up.cmd.Process.Pid, up.url)
	}
	if r := get(t, up.url+"/health"); r.status != 200 {
		t.Fatalf("owner /health after the refused start: %d", r.status)
	}
	_ = up.cmd.Process.Kill()
	_ = up.cmd.Wait()
	st, err := openOn(data)
	if err != nil {
		t.Fatalf("open after the owner was killed: %v", err)
	}
	st.Close(context.Background())
}

// TestDataDirectoryIsPrivate starts a stack on a directory left world-readable with a
// 0644 secrets file, as a user's umask or an old version would. Both must be
// tightened, and the databases (which hold log tokens) must be 0600 with their WAL
// files. Before, the file was used as found while the banner said 0600.
func TestDataDirectoryIsPrivate(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(data, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(data, 0o755); err != nil { // past the umask
		t.Fatal(err)
	}
	if err := os.WriteFile(local.SecretsPath(data), []byte(`{"HMAC_SECRET":"s","ADMIN_TOKEN":"a","BLOB_ADMIN_KEY_ID":"FLAREADMINx","BLOB_ADMIN_SECRET":"0123456789abcdef0123"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(local.SecretsPath(data), 0o644); err != nil {
		t.Fatal(err)
	}
	st, err := openOn(data)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close(context.Background())
	want := map[string]os.FileMode{"": 0o700, "secrets.json": 0o600, "flare.lock": 0o600,
		"meta.db": 0o600, "meta.db-wal": 0o600, "meta.db-shm": 0o600,
		"actors.db": 0o600, "actors.db-wal": 0o600, "actors.db-shm": 0o600}
	for name, mode := range want {
		fi, err := os.Stat(filepath.Join(data, name))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if fi.Mode().Perm() != mode {
			t.Errorf("%s is %o, want %o", filepath.Join(data, name), fi.Mode().Perm(), mode)
		}
	}
}
