// Package migrations holds the metadata schema: one set of SQL files for D1
// (`wrangler d1 migrations apply`) and local SQLite.
package migrations

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"sort"
	"strings"
)

//go:embed *.sql
var files embed.FS

// Apply runs every migration in name order. Each file is idempotent (IF NOT EXISTS),
// so applying twice is harmless. Statements are split on ";", so comments must not
// contain one (TestMigrationsApplyTwice guards it).
func Apply(ctx context.Context, db *sql.DB) error {
	names, err := files.ReadDir(".")
	if err != nil {
		return err
	}
	sort.Slice(names, func(i, j int) bool { return names[i].Name() < names[j].Name() })
	for _, n := range names {
		b, err := files.ReadFile(n.Name())
		if err != nil {
			return err
		}
		for _, stmt := range strings.Split(string(b), ";") {
			if strings.TrimSpace(stripComments(stmt)) == "" {
				continue
			}
			if _, err := db.ExecContext(ctx, stmt); err != nil {
				return fmt.Errorf("migration %s: %w", n.Name(), err)
			}
		}
	}
	return nil
}

func stripComments(s string) string {
	var b strings.Builder
	for _, line := range strings.Split(s, "\n") {
		if i := strings.Index(line, "--"); i >= 0 {
			line = line[:i]
		}
		b.WriteString(line)
	}
	return b.String()
}
