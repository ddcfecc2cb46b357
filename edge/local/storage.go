package local

import (
	"encoding/json"
	"encoding/xml"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"syscall"
)

// ReserveBytes is the size of the data directory's emergency reserve, and the free
// space blob writes must leave.
const ReserveBytes = 8 << 20

// storage keeps the data directory able to end runs when its disk fills. Logs are
// what fills it, so blob writes are refused (507) once free space falls under
// ReserveBytes, leaving room for the databases. If the disk fills anyway (another
// process), the actor host's failing commit releases a reserve file of ReserveBytes
// kept in the data directory, so the commits that end runs, and their metadata,
// still land. Either way /health reports degraded with the reason until there is
// room again, at which point the reserve is written back.
type storage struct {
	dir, reserve string
	size         int64
	log          *slog.Logger

	mu       sync.Mutex
	released string // why the reserve was released ("" while it is in place)
}

func newStorage(dir string, log *slog.Logger) *storage {
	s := &storage{dir: dir, reserve: filepath.Join(dir, "reserve"), size: ReserveBytes, log: log}
	if err := s.fill(); err != nil {
		s.released = "the emergency reserve could not be written: " + err.Error()
		log.Error("storage: " + s.released)
	}
	return s
}

// fill writes the reserve file if it is missing (zeros, synced, renamed into place).
func (s *storage) fill() error {
	if _, err := os.Stat(s.reserve); err == nil {
		return nil
	}
	tmp := s.reserve + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	chunk := make([]byte, 1<<20)
	for n := int64(0); n < s.size && err == nil; n += int64(len(chunk)) {
		_, err = f.Write(chunk)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, s.reserve)
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}

// commitFailed is the actor host's OnCommitError: the first failure releases the
// reserve, and the host retries at once.
func (s *storage) commitFailed(err error) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.released != "" {
		return false
	}
	if rmErr := os.Remove(s.reserve); rmErr != nil {
		s.released = "actor state commit failed (" + err.Error() + ") and the emergency reserve is gone: " + rmErr.Error()
		return false
	}
	s.released = "storage full: actor state commit failed (" + err.Error() + "); the emergency reserve was released so runs can end"
	s.log.Error("storage: " + s.released)
	return true
}

// problem says why storage is degraded ("" when it is not). It writes the reserve
// back once there is room for it twice over.
func (s *storage) problem() string {
	free, err := freeBytes(s.dir)
	if err != nil {
		return "cannot read the data directory's free space: " + err.Error()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.released != "" && free >= 2*s.size {
		if err := s.fill(); err == nil {
			s.log.Warn("storage: space is back; the emergency reserve is in place again")
			s.released = ""
			free -= s.size
		}
	}
	switch {
	case s.released != "":
		return s.released
	case free < s.size:
		return fmt.Sprintf("storage low: %d bytes free on the data directory's disk (under %d): blob writes are refused", free, s.size)
	}
	return ""
}

func freeBytes(dir string) (int64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return int64(st.Bavail) * int64(st.Bsize), nil
}

// blobGate refuses blob writes (PUT, POST) while storage is degraded, with 507
// InsufficientStorage in S3's error form: the log shipper retries, then marks a gap.
func (s *storage) blobGate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut || r.Method == http.MethodPost {
			if p := s.problem(); p != "" {
				w.Header().Set("Content-Type", "application/xml")
				w.WriteHeader(http.StatusInsufficientStorage)
				_ = xml.NewEncoder(w).Encode(struct {
					XMLName xml.Name `xml:"Error"`
					Code    string
					Message string
				}{Code: "InsufficientStorage", Message: p})
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// healthGate answers GET /health with 503 {"status":"degraded","reason":…} while
// storage is degraded or the actor host's commits fail; otherwise the edge answers.
func (st *Stack) healthGate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/health" && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
			if reason := st.StorageProblem(); reason != "" {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusServiceUnavailable)
				b, _ := json.Marshal(map[string]string{"status": "degraded", "reason": reason})
				_, _ = w.Write(append(b, '\n'))
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// StorageProblem says why the stack's storage is degraded, "" when it is not.
func (st *Stack) StorageProblem() string {
	if st.Host != nil {
		if err := st.Host.Health(); err != nil {
			return "actor state commits are failing: " + err.Error()
		}
	}
	return st.storage.problem()
}
