// Command mqlb is an MQTT-aware load balancer, a clustered MQTT broker node,
// the launcher that runs both on one machine, and a load generator.
//
//	mqlb run -c mqlb.yaml      the load balancer
//	mqlb node -c node.yaml     one broker node of a cluster
//	mqlb up                    the whole system on one machine
//	mqlb bench conn|pubsub     load generator
//	mqlb ctl COMMAND           operate a running load balancer or node
//	mqlb check FILE            validate a config (also -c FILE)
//	mqlb version               version, commit, Go version (also --version)
//
// mqlb -h, mqlb help and mqlb help COMMAND [MODE] print to stdout and exit 0.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"

	"github.com/mqlb/mqlb/internal/version"
)

// command is one subcommand: it parses its own flags from args and runs until
// ctx is cancelled (SIGINT/SIGTERM; mqlb up also SIGHUP) or its work is done.
type command struct {
	run     func(ctx context.Context, args []string) error
	summary string
}

var commands = map[string]command{
	"run":     {cmdRun, "run the load balancer: mqlb run -c mqlb.yaml"},
	"check":   {cmdCheck, "validate a config and print what it would run: mqlb check FILE"},
	"node":    {cmdNode, "run one broker node: mqlb node -c node.yaml"},
	"up":      {cmdUp, "run the whole system on this machine (LB + 3 nodes + admin)"},
	"bench":   {cmdBench, "load generator: mqlb bench conn|pubsub --url mqtt://HOST:PORT ..."},
	"version": {cmdVersion, "print version, commit and Go version"},
	"ctl":     {cmdCtl, "operate a running load balancer or node: mqlb ctl servers|drain|weight|kick|..."},
}

var order = []string{"up", "run", "node", "ctl", "check", "bench", "version"}

func main() {
	args := os.Args[1:]
	if len(args) == 0 {
		usage(os.Stderr)
		os.Exit(2)
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		if len(args) == 1 {
			usage(os.Stdout)
			os.Exit(0)
		}
		args = append(args[1:], "-h") // help CMD [MODE]: the command's own help
	case "-version", "--version", "-v":
		args = []string{"version"}
	}
	cmd, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(os.Stderr, "mqlb: unknown command %q\n\n", args[0])
		usage(os.Stderr)
		os.Exit(2)
	}
	ctx, stop := stopOnSignals(stopSignals(args[0])...)
	defer stop()
	if err := cmd.run(ctx, args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0) // help was asked for and printed to stdout
		}
		var ec exitCode
		if errors.As(err, &ec) {
			os.Exit(int(ec))
		}
		fmt.Fprintf(os.Stderr, "mqlb %s: %v\n", args[0], err)
		os.Exit(1)
	}
}

// stopOnSignals returns a context cancelled by the first of sigs (graceful
// stop: connections get their grace period), with the signal as its cause.
// A second SIGINT or SIGTERM during the grace period ends the process at
// once, as operators who press Ctrl-C twice expect; a second SIGHUP does
// not (a shell passes its terminal's hangup on to its jobs).
func stopOnSignals(sigs ...os.Signal) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(context.Background())
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, sigs...)
	go func() {
		cancel(signalled{<-ch})
		for s := range ch {
			if s == syscall.SIGHUP {
				continue
			}
			fmt.Fprintf(os.Stderr, "mqlb: second %v during shutdown: stopping now\n", s)
			if f := stopNow.Load(); f != nil {
				(*f)()
			}
			os.Exit(1)
		}
	}()
	return ctx, func() { signal.Stop(ch); cancel(nil) }
}

// stopNow, when set, is what a second signal still does before it ends the
// process: mqlb up removes its temporary data directory. It must be quick.
var stopNow atomic.Pointer[func()]

// stopSignals are the signals that stop cmd gracefully. mqlb up stops on
// SIGHUP too: it has no config file to reload, and a hangup is what closing
// its terminal sends. run and node reload on SIGHUP; the other commands
// keep Go's default (a hangup ends them).
func stopSignals(cmd string) []os.Signal {
	if cmd == "up" {
		return []os.Signal{os.Interrupt, syscall.SIGTERM, syscall.SIGHUP}
	}
	return []os.Signal{os.Interrupt, syscall.SIGTERM}
}

// signalled is the cause of a context a signal cancelled: "interrupt",
// "terminated", "hangup".
type signalled struct{ os.Signal }

func (s signalled) Error() string { return s.Signal.String() }

// exitCode ends the process with a status and nothing printed (the command
// already said what it had to).
type exitCode int

func (e exitCode) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

func usage(w io.Writer) {
	fmt.Fprintf(w, "usage: mqlb <command> [flags]\n\ncommands:\n")
	for _, name := range order {
		fmt.Fprintf(w, "  %-8s %s\n", name, commands[name].summary)
	}
	fmt.Fprintf(w, "\nRun mqlb help <command> (or mqlb <command> -h) for a command's flags; mqlb --version for the version.\n")
}

// newFlags returns a command's flag set; line is its one-line usage.
func newFlags(name, line string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: %s\n\nflags:\n", line)
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses args: -h/--help prints the usage to stdout and returns
// flag.ErrHelp (exit 0); a bad flag prints the error and the usage to stderr
// and returns exit status 2.
func parseFlags(fs *flag.FlagSet, args []string) error {
	fs.SetOutput(io.Discard)
	err := fs.Parse(args)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, flag.ErrHelp):
		fs.SetOutput(os.Stdout)
		fs.Usage()
		return flag.ErrHelp
	}
	fs.SetOutput(os.Stderr)
	fmt.Fprintf(os.Stderr, "mqlb %s: %v\n", fs.Name(), err)
	fs.Usage()
	return exitCode(2)
}

// usageError reports a flag or argument the user got wrong, in their terms,
// and ends with exit status 2.
func usageError(cmd, format string, args ...any) error {
	fmt.Fprintf(os.Stderr, "mqlb %s: %s\nRun mqlb help %s for usage.\n", cmd, fmt.Sprintf(format, args...), cmd)
	return exitCode(2)
}

func cmdVersion(_ context.Context, args []string) error {
	fs := newFlags("version", "mqlb version (or mqlb --version)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError("version", "unexpected argument %q", fs.Arg(0))
	}
	fmt.Println(version.String())
	return nil
}
