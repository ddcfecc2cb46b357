package sandboxes_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/flare-dispatch/flare-dispatch/edge/local/sandboxes"
	"github.com/flare-dispatch/flare-dispatch/edge/porttest"
)

// requestsFile is where the fake agent, in its workspace, records what reached it.
const requestsFile = "requests.ndjson"

// TestMain doubles as the agent: Procs runs this test binary as the agent command, in a
// sandbox's workspace with FLARE_SANDBOX set (one of the few variables it passes on).
// Unisolated, on Linux, Procs starts it as the agent's supervisor first (SubreaperFlag).
func TestMain(m *testing.M) {
	if os.Getenv("FLARE_SANDBOX") != "" && slices.Contains(os.Args, sandboxes.SubreaperFlag) {
		os.Exit(sandboxes.Supervise())
	}
	if os.Getenv("FLARE_SANDBOX") != "" && slices.Contains(os.Args, "--listen") {
		os.Exit(fakeAgent())
	}
	os.Exit(m.Run())
}

// fakeAgent listens, prints the ready line Procs waits for, and serves FakeAgent,
// appending each request to requestsFile in the workspace (its working directory).
func fakeAgent() int {
	if err := escape(os.Getenv("FLARE_SANDBOX")); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	var mu sync.Mutex
	record := func(q porttest.AgentRequest) {
		mu.Lock()
		defer mu.Unlock()
		f, err := os.OpenFile(requestsFile, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if err != nil {
			return
		}
		defer f.Close()
		json.NewEncoder(f).Encode(q)
	}
	fmt.Printf("%shttp://%s\n", sandboxes.ReadyPrefix, ln.Addr())
	http.Serve(ln, porttest.FakeAgent(record))
	return 1
}

// TestSandboxesContract holds the local adapter to the Sandboxes contract: real child
// processes in their own workspaces, one per sandbox id.
func TestSandboxesContract(t *testing.T) {
	porttest.Sandboxes(t, "local-", func(t *testing.T) porttest.SandboxFixture {
		root := t.TempDir()
		p := &sandboxes.Procs{Command: []string{os.Args[0]}, Root: root}
		t.Cleanup(p.Close)
		return porttest.SandboxFixture{Sandboxes: p, Seen: func(sandbox string) []porttest.AgentRequest {
			f, err := os.Open(filepath.Join(root, sandbox, requestsFile))
			if err != nil {
				return nil
			}
			defer f.Close()
			var out []porttest.AgentRequest
			sc := bufio.NewScanner(f)
			for sc.Scan() {
				var q porttest.AgentRequest
				if json.Unmarshal(sc.Bytes(), &q) == nil {
					out = append(out, q)
				}
			}
			return out
		}}
	})
}
