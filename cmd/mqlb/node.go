package main

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/mqlb/mqlb/internal/config"
	"github.com/mqlb/mqlb/internal/node"
	"github.com/mqlb/mqlb/internal/version"
)

// nodeStartTimeout bounds how long mqlb node waits for its listeners and
// mesh before giving up.
const nodeStartTimeout = 2 * time.Minute

// cmdNode runs one broker node until ctx is done (SIGINT/SIGTERM), then
// closes it gracefully. SIGHUP reloads what can change at run time (users,
// ACL rules, shared subscription policy, max_offline_messages,
// process.gc_headroom, log level, the drain keys, the TLS listeners'
// certificates).
func cmdNode(ctx context.Context, args []string) error {
	fs := newFlags("node", "mqlb node [-c node.yaml]")
	file := fs.String("c", "node.yaml", "node config file")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError("node", "unexpected argument %q; name the config file with -c", fs.Arg(0))
	}
	cfg, err := config.LoadNode(*file)
	if err != nil {
		return configError(*file, err)
	}
	// SIGHUP is taken from here on: Go's default ends the process, and an
	// operator (or a test) may send one as soon as "node started" is logged.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	log, level := newLogger(cfg.Log, os.Stderr)
	log.Info("starting node", "version", version.String(), "config", *file, "node", cfg.Node.Name)
	n, err := node.New(cfg, log)
	if err != nil {
		return err
	}
	var gc gcPacing
	gc.set(cfg.Process.GCHeadroom, log)
	startCtx, cancel := context.WithTimeout(ctx, nodeStartTimeout)
	err = n.Start(startCtx)
	cancel()
	if err != nil {
		return err
	}
	for {
		select {
		case <-ctx.Done():
			drain(n, cfg.Node, log)
			return n.Close()
		case <-hup:
			if next := reloadNode(n, *file, level, &gc, log); next != nil {
				cfg.Node.DrainRate, cfg.Node.DrainTimeout = next.Node.DrainRate, next.Node.DrainTimeout
			}
		}
	}
}

// drain sends the node's clients to other nodes before it stops
// (node.drain_rate, node.drain_timeout; a timeout of 0 skips it); another
// SIGINT or SIGTERM cuts it short.
func drain(n *node.Node, c config.NodeIdentity, log *slog.Logger) {
	if c.DrainTimeout.D() <= 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.DrainTimeout.D())
	defer cancel()
	again := make(chan os.Signal, 1)
	signal.Notify(again, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(again)
	go func() {
		select {
		case <-again:
			log.Info("second signal: stopping without waiting for the drain")
			cancel()
		case <-ctx.Done():
		}
	}()
	n.Drain(ctx, c.DrainRate)
}

// reloadNode applies a changed config file and returns it; if it is
// invalid the node keeps running on the old one (nil). The drain keys
// (node.drain_rate, node.drain_timeout) apply to the next SIGTERM.
func reloadNode(n *node.Node, file string, level *slog.LevelVar, gc *gcPacing, log *slog.Logger) *config.Node {
	cfg, err := config.LoadNode(file)
	if err != nil {
		log.Error("SIGHUP: config not reloaded", "config", file, "error", err)
		return nil
	}
	if err := n.Reload(cfg); err != nil {
		log.Error("SIGHUP: config not reloaded", "config", file, "error", err)
		return nil
	}
	level.Set(cfg.Log.SlogLevel())
	gc.set(cfg.Process.GCHeadroom, log)
	log.Info("SIGHUP: config reloaded", "config", file)
	return cfg
}
