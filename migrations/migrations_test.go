package migrations

import (
	"context"
	"database/sql"
	"path/filepath"
	"strings"
	"testing"

	_ "modernc.org/sqlite"
)

func TestMigrationsApplyTwice(t *testing.T) {
	db, err := sql.Open("sqlite", filepath.Join(t.TempDir(), "m.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for range 2 {
		if err := Apply(context.Background(), db); err != nil {
			t.Fatal(err)
		}
	}
	for _, table := range []string{"executions", "steps", "kv"} {
		var n int
		if err := db.QueryRow(`SELECT COUNT(*) FROM sqlite_master WHERE type='table' AND name=?`, table).Scan(&n); err != nil || n != 1 {
			t.Fatalf("table %s: %d (%v)", table, n, err)
		}
	}
}

func TestMigrationsUseNoPragmas(t *testing.T) {
	names, _ := files.ReadDir(".")
	for _, n := range names {
		b, _ := files.ReadFile(n.Name())
		if strings.Contains(strings.ToUpper(stripComments(string(b))), "PRAGMA") {
			t.Errorf("%s uses a PRAGMA, which D1 refuses", n.Name())
		}
	}
}
