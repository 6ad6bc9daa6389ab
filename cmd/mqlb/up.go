package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/mqlb/mqlb/internal/config"
	"github.com/mqlb/mqlb/internal/up"
)

func cmdUp(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("up", flag.ContinueOnError)
	o := up.Options{}
	fs.IntVar(&o.Nodes, "nodes", 3, "how many clustered broker nodes")
	fs.StringVar(&o.Listen, "listen", "127.0.0.1:1883", "the load balancer's MQTT address")
	fs.StringVar(&o.Admin, "admin", "127.0.0.1:9090", "the admin API and dashboard address")
	fs.IntVar(&o.NodePort, "node-port", 18831, "node i listens on this port + i-1 (0: any free port)")
	fs.StringVar(&o.DataDir, "data", "", "where nodes keep retained messages and sessions (default: a temporary directory, removed at exit)")
	fs.StringVar(&o.AccessLog, "access-log", "off", "the load balancer's access log: stdout, stderr, off or a file")
	fs.StringVar(&o.Durability, "durability", "", "the nodes' sessions.durability: replicated or memory (default: replicated with several nodes)")
	level := fs.String("log-level", "warn", "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return err
	}
	o.Log, _ = newLogger(config.Log{Level: *level, Format: "text"}, os.Stderr)
	sys, err := up.Start(ctx, o)
	if err != nil {
		return err
	}
	sys.Describe(os.Stdout)
	stop := context.AfterFunc(ctx, func() {
		fmt.Fprintln(os.Stderr, "mqlb up: stopping (open connections get 5s, then the nodes stop)")
	})
	defer stop()
	if err := sys.Run(ctx); err != nil {
		return err
	}
	fmt.Fprintln(os.Stderr, "mqlb up: stopped")
	return nil
}
