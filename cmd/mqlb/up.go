package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"

	"github.com/mqlb/mqlb/internal/config"
	"github.com/mqlb/mqlb/internal/up"
)

func cmdUp(ctx context.Context, args []string) error {
	const line = "mqlb up [--nodes N] [--listen HOST:PORT] [--admin HOST:PORT] ..."
	fs := newFlags("up", line)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: %s\n\n%s\nflags:\n", line, upAbout)
		fs.PrintDefaults()
	}
	o := up.Options{}
	fs.IntVar(&o.Nodes, "nodes", 3, "how many clustered broker nodes")
	fs.StringVar(&o.Listen, "listen", "127.0.0.1:1883", "the load balancer's MQTT address")
	fs.StringVar(&o.Admin, "admin", "127.0.0.1:9090", "the admin API and dashboard address")
	fs.IntVar(&o.NodePort, "node-port", 18831, "node i listens on this port + i-1 (0: any free port)")
	fs.StringVar(&o.DataDir, "data", "", "where nodes keep retained messages and sessions (default: a temporary directory, removed at exit)")
	fs.StringVar(&o.AccessLog, "access-log", "off", "the load balancer's access log: stdout, stderr, off or a file")
	fs.StringVar(&o.Durability, "durability", "", "the nodes' sessions.durability: replicated or memory (default: replicated with several nodes)")
	level := fs.String("log-level", "warn", "debug, info, warn or error")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := checkUpFlags(fs, &o, *level); err != nil {
		return err
	}
	o.Log, _ = newLogger(config.Log{Level: *level, Format: "text"}, os.Stderr)
	if o.DataDir == "" {
		// Made here, not by up.Start, so that a second Ctrl-C removes it
		// whenever it comes, during the start too.
		dir, err := os.MkdirTemp("", "mqlb-up-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		o.DataDir, o.TempDataDir = dir, true
		removeNow := func() { removeSoon(dir) }
		stopNow.Store(&removeNow)
	}
	sys, err := up.Start(ctx, o)
	if err != nil {
		return err
	}
	var gc gcPacing // the nodes' default process.gc_headroom: they are most of this process's heap
	gc.set(config.DefaultGCHeadroom, o.Log)
	sys.Describe(os.Stdout)
	stop := context.AfterFunc(ctx, func() {
		fmt.Fprintf(os.Stderr, "mqlb up: %v: stopping (open connections get 5s, then the nodes stop)\n", context.Cause(ctx))
	})
	defer stop()
	if err := sys.Run(ctx); err != nil {
		return err
	}
	fmt.Fprintln(os.Stderr, "mqlb up: stopped")
	return nil
}

const upAbout = `Runs the load balancer, N clustered broker nodes and the admin API in this
process, with no config file. Ctrl-C, SIGTERM or SIGHUP (what closing its
terminal sends: there is no config file to reload) stops everything cleanly:
open connections get 5s, then the nodes stop and a temporary data directory
is removed. A second Ctrl-C or SIGTERM stops at once (and still removes it).
`

// removeSoon removes dir while the nodes may still write in it, as a second
// Ctrl-C ends the process: a few tries, no waiting.
func removeSoon(dir string) {
	for range 3 {
		if os.RemoveAll(dir) == nil {
			return
		}
	}
}

// checkUpFlags validates mqlb up's flags before anything starts, naming the
// flag the user typed.
func checkUpFlags(fs *flag.FlagSet, o *up.Options, level string) error {
	if fs.NArg() > 0 {
		return usageError("up", "unexpected argument %q (mqlb up takes flags only)", fs.Arg(0))
	}
	if o.Nodes < 1 || o.Nodes > 64 {
		return usageError("up", "--nodes %d: want 1 to 64 broker nodes", o.Nodes)
	}
	if err := checkHostPort(o.Listen, false); err != nil {
		return usageError("up", "--listen %q: %v", o.Listen, err)
	}
	if err := checkHostPort(o.Admin, true); err != nil {
		return usageError("up", "--admin %q: %v", o.Admin, err)
	}
	if host, _, _ := net.SplitHostPort(o.Admin); o.Admin != "" && host != "localhost" && !isLoopbackIP(host) {
		return usageError("up", "--admin %q: mqlb up serves its admin API without a token, so only on loopback (such as 127.0.0.1:9090)", o.Admin)
	}
	if o.NodePort < 0 || o.NodePort+o.Nodes-1 > 65535 {
		return usageError("up", "--node-port %d: want 0 (any free port) or a port such that %d nodes fit below 65536", o.NodePort, o.Nodes)
	}
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return usageError("up", "--log-level %q: want debug, info, warn or error", level)
	}
	return nil
}

func isLoopbackIP(host string) bool {
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// checkHostPort checks a HOST:PORT flag; empty is allowed when optional.
func checkHostPort(addr string, optional bool) error {
	if addr == "" && optional {
		return nil
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return errors.New("want HOST:PORT, such as 127.0.0.1:1883 or :1883")
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("port %q: want a number from 0 to 65535", port)
	}
	if host != "" && net.ParseIP(host) == nil && host != "localhost" {
		if _, err := net.LookupHost(host); err != nil {
			return fmt.Errorf("host %q: want an IP address or a name that resolves", host)
		}
	}
	return nil
}
