package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/mqlb/mqlb/internal/config"
	"github.com/mqlb/mqlb/internal/lb"
	"github.com/mqlb/mqlb/internal/version"
)

func cmdRun(ctx context.Context, args []string) error {
	fs := newFlags("run", "mqlb run [-c mqlb.yaml]")
	file := fs.String("c", "mqlb.yaml", "config file")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError("run", "unexpected argument %q; name the config file with -c", fs.Arg(0))
	}
	cfg, err := config.Load(*file)
	if err != nil {
		return configError(*file, err)
	}
	log, level := newLogger(cfg.Log, os.Stderr)
	log.Info("starting", "version", version.String(), "config", *file)
	l, err := lb.New(cfg, lb.Options{File: *file, Log: log, Level: level, Process: true})
	if err != nil {
		return err
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for range hup {
			log.Info("SIGHUP: reloading", "config", *file)
			_ = l.Reload() // errors are logged; the running config stays
		}
	}()
	return l.Run(ctx)
}

// configError prints every problem in a config file, one per line, and
// returns an exit status so main prints nothing more.
func configError(file string, err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return err
	}
	fmt.Fprintf(os.Stderr, "%s: invalid config:\n", file)
	for _, e := range unjoin(err) {
		fmt.Fprintf(os.Stderr, "  %v\n", e)
	}
	return exitCode(1)
}

func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// newLogger builds the process logger from the log section.
func newLogger(c config.Log, w io.Writer) (*slog.Logger, *slog.LevelVar) {
	level := new(slog.LevelVar)
	level.Set(c.SlogLevel())
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts)), level
	}
	return slog.New(slog.NewTextHandler(w, opts)), level
}
