// Command mqlb is an MQTT-aware load balancer, a clustered MQTT broker node,
// the launcher that runs both on one machine, and a load generator.
//
//	mqlb run -c mqlb.yaml      the load balancer
//	mqlb node -c node.yaml     one broker node of a cluster
//	mqlb up                    the whole system on one machine
//	mqlb bench conn|pubsub     load generator
//	mqlb check -c FILE         validate a config
//	mqlb version               version, commit, Go version
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/mqlb/mqlb/internal/version"
)

// command is one subcommand: it parses its own flags from args and runs until
// ctx is cancelled (SIGINT/SIGTERM) or its work is done.
type command struct {
	run     func(ctx context.Context, args []string) error
	summary string
}

var commands = map[string]command{
	"run":     {cmdRun, "run the load balancer: mqlb run -c mqlb.yaml"},
	"check":   {cmdCheck, "validate a config and print what it would run: mqlb check -c FILE"},
	"node":    {cmdNode, "run one broker node: mqlb node -c node.yaml"},
	"up":      {cmdUp, "run the whole system on this machine (LB + 3 nodes + admin)"},
	"bench":   {cmdBench, "load generator: mqlb bench conn|pubsub --url mqtt://HOST:PORT ..."},
	"version": {cmdVersion, "print version, commit and Go version"},
}

var order = []string{"up", "run", "node", "check", "bench", "version"}

func main() {
	if len(os.Args) < 2 || os.Args[1] == "-h" || os.Args[1] == "--help" || os.Args[1] == "help" {
		usage()
		os.Exit(2)
	}
	cmd, ok := commands[os.Args[1]]
	if !ok {
		fmt.Fprintf(os.Stderr, "mqlb: unknown command %q\n\n", os.Args[1])
		usage()
		os.Exit(2)
	}
	ctx, stop := stopOnSignals()
	defer stop()
	if err := cmd.run(ctx, os.Args[2:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(2)
		}
		var ec exitCode
		if errors.As(err, &ec) {
			os.Exit(int(ec))
		}
		fmt.Fprintf(os.Stderr, "mqlb %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}

// stopOnSignals returns a context cancelled by the first SIGINT or SIGTERM
// (graceful stop: connections get their grace period). A second one during
// the grace period ends the process at once, as operators who press Ctrl-C
// twice expect.
func stopOnSignals() (context.Context, func()) {
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sigs
		cancel()
		s := <-sigs
		fmt.Fprintf(os.Stderr, "mqlb: second %v during shutdown: stopping now\n", s)
		os.Exit(1)
	}()
	return ctx, func() { signal.Stop(sigs); cancel() }
}

// exitCode ends the process with a status and nothing printed (the command
// already said what it had to).
type exitCode int

func (e exitCode) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

func usage() {
	fmt.Fprintf(os.Stderr, "usage: mqlb <command> [flags]\n\ncommands:\n")
	for _, name := range order {
		fmt.Fprintf(os.Stderr, "  %-8s %s\n", name, commands[name].summary)
	}
	fmt.Fprintf(os.Stderr, "\nRun mqlb <command> -h for a command's flags.\n")
}

func cmdVersion(_ context.Context, args []string) error {
	fs := flag.NewFlagSet("version", flag.ContinueOnError)
	if err := fs.Parse(args); err != nil {
		return err
	}
	fmt.Println(version.String())
	return nil
}
