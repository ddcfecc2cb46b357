package sandboxes

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/flare-dispatch/flare-dispatch/agentapi"
)

// Bwrap is the tool that isolates a local sandbox: bubblewrap (Debian `bubblewrap`),
// the unprivileged sandbox Flatpak uses. It gives each agent, and so each command it
// runs, its own mount, PID, IPC, UTS and user namespaces with the host's network (the
// edge and the blob store are on loopback).
const Bwrap = "bwrap"

// CheckIsolation says whether sandboxes can be isolated here, with what to do if not.
func CheckIsolation() error {
	path, err := exec.LookPath(Bwrap)
	if err != nil {
		return errors.New("bubblewrap (bwrap) is not installed: local sandboxes run each agent under it so a run's " +
			"commands cannot read the stack's secrets, files or processes. Install it (Debian/Ubuntu: " +
			"apt-get install bubblewrap) or pass --no-isolation to run commands as this user, with access to everything it can read")
	}
	// A kernel or container without unprivileged user namespaces fails here, not at the first run.
	out, err := exec.Command(path, "--unshare-all", "--die-with-parent", "--ro-bind", "/", "/", "true").CombinedOutput()
	if err != nil {
		return fmt.Errorf("bubblewrap cannot create a sandbox here (%v: %s); run where user namespaces are allowed, or pass --no-isolation", err, strings.TrimSpace(string(out)))
	}
	return nil
}

// nobody is the uid/gid a sandbox sees itself as when the stack runs as root. The user
// namespace maps it to the stack's own uid without any capability outside the
// namespace; what keeps secrets out is that nothing of them is mounted or visible.
const nobody = 65534

// bwrapArgs wraps an agent command: the system read-only (/usr, the /bin and /lib
// links, a few /etc files for DNS, users and TLS), the toolchains read-only (PATH
// entries, GOROOT, GOMODCACHE), the agent binary and a local repository read-only,
// a private /proc, /dev and /tmp, and only the workspace writable, at inner (its own
// path, or FixedWorkspace). Nothing of the data directory is bound, and the PID
// namespace hides the stack's processes and their environment.
func bwrapArgs(agent []string, ws, inner string, readOnly []string, infoFD int) []string {
	a := []string{Bwrap, "--unshare-all", "--share-net", "--die-with-parent", "--new-session",
		"--info-fd", fmt.Sprint(infoFD),
		// The agent is the PID namespace's init: when it dies, however, the kernel kills
		// every process in the namespace (bwrap's own init would wait for them instead).
		"--as-pid-1",
		"--ro-bind", "/usr", "/usr"}
	for _, d := range []string{"/bin", "/sbin", "/lib", "/lib32", "/lib64"} {
		if target, err := os.Readlink(d); err == nil {
			a = append(a, "--symlink", target, d)
		} else {
			a = append(a, "--ro-bind-try", d, d)
		}
	}
	for _, f := range []string{"/etc/resolv.conf", "/etc/hosts", "/etc/nsswitch.conf", "/etc/passwd", "/etc/group",
		"/etc/ld.so.cache", "/etc/ssl", "/etc/ca-certificates", "/etc/alternatives", "/etc/gitconfig", "/etc/localtime"} {
		a = append(a, "--ro-bind-try", f, f)
	}
	a = append(a, "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp")
	for _, d := range readOnly {
		a = append(a, "--ro-bind-try", d, d)
	}
	a = append(a, "--bind", ws, inner, "--chdir", inner)
	if os.Getuid() == 0 {
		a = append(a, "--uid", fmt.Sprint(nobody), "--gid", fmt.Sprint(nobody))
	}
	return append(append(a, "--"), agent...)
}

// FixedWorkspace is where an isolated fresh sandbox sees its workspace: one path for
// every sandbox, as every Container has /workspace (sandbox-images). Build tools key
// their caches by absolute paths (Go's build cache hashes a package's directory, Cargo
// its path dependencies'), so a cache restored into another path would not serve.
const FixedWorkspace = "/workspace"

// toolchains are the host directories a sandbox sees read-only: the agent binary,
// the PATH's directories outside /usr, Go's root and module cache. Paths under the
// data directory are never bound.
func toolchains(agentBin, dataDir string, lookup func(string) (string, bool)) []string {
	var out []string
	add := func(p string) {
		if p == "" || !filepath.IsAbs(p) {
			return
		}
		p = filepath.Clean(p)
		if dataDir != "" && (p == dataDir || strings.HasPrefix(p, dataDir+string(filepath.Separator)) ||
			strings.HasPrefix(dataDir, p+string(filepath.Separator))) {
			return
		}
		for _, sys := range []string{"/usr", "/bin", "/sbin", "/lib", "/lib64"} {
			if p == sys || strings.HasPrefix(p, sys+"/") {
				return
			}
		}
		out = append(out, p)
	}
	if real, err := filepath.EvalSymlinks(agentBin); err == nil {
		add(real)
	}
	add(agentBin)
	path, _ := lookup("PATH")
	for _, d := range filepath.SplitList(path) {
		add(d)
	}
	if goBin, err := exec.LookPath("go"); err == nil {
		if real, err := filepath.EvalSymlinks(goBin); err == nil {
			add(filepath.Dir(filepath.Dir(real)))
		}
	}
	if v, ok := lookup("GOMODCACHE"); ok {
		add(v)
	} else if _, fresh := lookup(freshMarker); fresh {
		// A fresh sandbox (Procs.Fresh) sees no module cache of the host's.
	} else if home, err := os.UserHomeDir(); err == nil {
		add(filepath.Join(home, "go", "pkg", "mod"))
	}
	for _, k := range []string{"CARGO_HOME", "RUSTUP_HOME"} {
		if v, ok := lookup(k); ok {
			add(v)
		}
	}
	return out
}

// localRepo is the repository path a local-mode attempt clones from, bound read-only.
func localRepo(s agentapi.Start) string {
	if !s.Local {
		return ""
	}
	var in struct {
		Repo string `json:"repo"`
	}
	_ = json.Unmarshal(s.Inputs, &in)
	if p := strings.TrimPrefix(in.Repo, "file://"); filepath.IsAbs(p) {
		return filepath.Clean(p)
	}
	return ""
}
