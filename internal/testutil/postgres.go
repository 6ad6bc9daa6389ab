package testutil

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Postgres is a PostgreSQL server started for a test: its own cluster in a
// temporary directory, reached only through a unix socket there.
type Postgres struct {
	DSN  string // pgx/libpq connection string (host=<socket dir>)
	dir  string
	bin  string
	once sync.Once
}

// postgresBin finds the directory of initdb and pg_ctl (Debian keeps them
// out of PATH, in /usr/lib/postgresql/<version>/bin).
func postgresBin(t testing.TB) string {
	if p, err := exec.LookPath("pg_ctl"); err == nil {
		return filepath.Dir(p)
	}
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/pg_ctl")
	if len(matches) > 0 {
		return filepath.Dir(matches[len(matches)-1])
	}
	if os.Getenv("CI") != "" {
		t.Fatal("PostgreSQL not found in CI (apt-get install -y postgresql)")
	}
	t.Skip("PostgreSQL not found (apt-get install -y postgresql)")
	return ""
}

// StartPostgres initialises a cluster with a trusted superuser "mqlb" and
// starts it; it is stopped and removed when the test ends. As root (CI), the
// server runs as the unprivileged "postgres" user, which PostgreSQL needs.
func StartPostgres(t testing.TB) *Postgres {
	t.Helper()
	p := &Postgres{bin: postgresBin(t)}
	dir, err := os.MkdirTemp("", "mqlb-pg-")
	if err != nil {
		t.Fatal(err)
	}
	p.dir = dir
	t.Cleanup(p.Stop)
	if err := p.ownDir(); err != nil {
		t.Fatalf("postgres temp dir: %v", err)
	}
	data, sock := filepath.Join(dir, "data"), filepath.Join(dir, "sock")
	if out, err := p.run("mkdir", "-m", "700", sock); err != nil {
		t.Fatalf("postgres socket dir: %v %s", err, out)
	}
	if out, err := p.run(filepath.Join(p.bin, "initdb"), "-D", data, "-U", "mqlb", "--auth=trust", "-E", "UTF8", "--no-sync"); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	opts := fmt.Sprintf("-k %s -c listen_addresses='' -F", sock)
	if out, err := p.run(filepath.Join(p.bin, "pg_ctl"), "-D", data, "-o", opts, "-l", filepath.Join(dir, "log"), "-w", "-t", "60", "start"); err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, "log"))
		t.Fatalf("pg_ctl start: %v\n%s\n%s", err, out, log)
	}
	p.DSN = fmt.Sprintf("host=%s user=mqlb dbname=postgres sslmode=disable", sock)
	return p
}

// ownDir hands the directory to the postgres user when running as root.
func (p *Postgres) ownDir() error {
	if os.Geteuid() != 0 {
		return nil
	}
	out, err := exec.Command("id", "-u", "postgres").Output()
	if err != nil {
		return fmt.Errorf("no postgres user: %w", err)
	}
	uid, _ := strconv.Atoi(string(out[:len(out)-1]))
	out, err = exec.Command("id", "-g", "postgres").Output()
	if err != nil {
		return err
	}
	gid, _ := strconv.Atoi(string(out[:len(out)-1]))
	return os.Chown(p.dir, uid, gid)
}

// run runs a command as the postgres user when root, else as is.
func (p *Postgres) run(name string, args ...string) ([]byte, error) {
	var cmd *exec.Cmd
	if os.Geteuid() == 0 {
		cmd = exec.Command("runuser", append([]string{"-u", "postgres", "--", name}, args...)...)
	} else {
		cmd = exec.Command(name, args...)
	}
	return cmd.CombinedOutput()
}

// Exec runs SQL statements (one per call) on the server.
func (p *Postgres) Exec(t testing.TB, sql string, args ...any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, p.DSN)
	if err != nil {
		t.Fatalf("postgres connect: %v", err)
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, sql, args...); err != nil {
		t.Fatalf("postgres %q: %v", sql, err)
	}
}

// Stop stops the server at once and removes its files. Safe to call twice.
func (p *Postgres) Stop() {
	p.once.Do(func() {
		data := filepath.Join(p.dir, "data")
		if _, err := os.Stat(filepath.Join(data, "postmaster.pid")); err == nil {
			p.run(filepath.Join(p.bin, "pg_ctl"), "-D", data, "-m", "immediate", "-w", "stop")
		}
		os.RemoveAll(p.dir)
	})
}
