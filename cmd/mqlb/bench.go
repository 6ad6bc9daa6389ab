package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strings"
	"time"

	"github.com/mqlb/mqlb/internal/bench"
	"github.com/mqlb/mqlb/internal/topic"
)

const benchUsage = `usage: mqlb bench <mode> [flags]

modes:
  conn     open MQTT connections at a rate, hold them, close them:
           mqlb bench conn --url mqtt://HOST:PORT --clients N --rate R [--hold D]
  pubsub   publish/subscribe throughput, loss and latency:
           mqlb bench pubsub --url mqtt://HOST:PORT --publishers P --subscribers S --qos Q --duration D
  report   compare the JSON results of several runs (bench/compare.sh writes them):
           mqlb bench report DIR

Run mqlb bench <mode> -h for a mode's flags. The exit status is 3 when a run
saw failures: conn, a connection that failed or was dropped while held;
pubsub, a publish error, a lost connection, a message lost at QoS 1 or 2 or
duplicated at QoS 2.
`

func cmdBench(ctx context.Context, args []string) error {
	if len(args) == 0 {
		fmt.Fprint(os.Stderr, benchUsage)
		return exitCode(2)
	}
	if args[0] == "-h" || args[0] == "-help" || args[0] == "--help" {
		fmt.Fprint(os.Stdout, benchUsage)
		return flag.ErrHelp
	}
	switch args[0] {
	case "conn":
		return benchConn(ctx, args[1:])
	case "pubsub":
		return benchPubSub(ctx, args[1:])
	case "report":
		return benchReport(args[1:])
	}
	if strings.HasPrefix(args[0], "-") {
		fmt.Fprintf(os.Stderr, "mqlb bench: %s before the mode: the mode (conn, pubsub or report) comes first\n\n%s", args[0], benchUsage)
		return exitCode(2)
	}
	fmt.Fprintf(os.Stderr, "mqlb bench: unknown mode %q\n\n%s", args[0], benchUsage)
	return exitCode(2)
}

// targetFlags are the connection flags both modes share.
type targetFlags struct {
	url, ca, json, prefix, watch string
	v5, tls                      bool
	timeout                      time.Duration
}

func (f *targetFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.url, "url", "mqtt://127.0.0.1:1883", "target: mqtt://[user[:pass]@]host:port (mqtts:// for TLS)")
	fs.BoolVar(&f.v5, "v5", false, "speak MQTT 5.0 (default 3.1.1)")
	fs.BoolVar(&f.tls, "tls", false, "use TLS (also implied by mqtts://)")
	fs.StringVar(&f.ca, "ca", "", "PEM `file` of CA certificates to verify the server with (default: system roots)")
	fs.StringVar(&f.json, "json", "", "write the whole result as JSON to `file`")
	fs.StringVar(&f.prefix, "prefix", "", "client id prefix: conn appends the index, pubsub p or s and the index (default bench-RANDOM-)")
	fs.StringVar(&f.watch, "watch", "", "record CPU time and RSS of local processes: `NAME=PID[,NAME=PID]` (e.g. proxy=1234)")
	fs.DurationVar(&f.timeout, "timeout", 10*time.Second, "connect timeout (dial to CONNACK); also subscribe and acknowledgement timeout")
}

// defaults fills in what depends on other flags.
func (f *targetFlags) defaults() {
	if f.prefix == "" {
		f.prefix = fmt.Sprintf("bench-%04x-", rand.N(1<<16))
	}
}

func (f *targetFlags) target(url string) (bench.Target, error) {
	f.defaults()
	return bench.ParseTarget(url, f.v5, f.tls, f.ca)
}

// progressOut is stdout when it is a terminal (a live line), else nothing.
func progressOut() io.Writer {
	if bench.IsTerminal(os.Stdout) {
		return os.Stdout
	}
	return nil
}

func benchConn(ctx context.Context, args []string) error {
	fs := newFlags("bench conn", "mqlb bench conn --url mqtt://HOST:PORT --clients N --rate R [--hold D]")
	var tf targetFlags
	tf.register(fs)
	clients := fs.Int("clients", 100, "connections to open")
	rate := fs.Float64("rate", 0, "connections per second (0: as fast as possible)")
	conc := fs.Int("concurrency", 100, "connects in flight at most")
	hold := fs.Duration("hold", 0, "keep the connections open this long once all are connected")
	keepAlive := fs.Duration("keepalive", 60*time.Second, "keep alive in the CONNECT; a PINGREQ is sent this often (0: none)")
	sources := fs.String("source-addrs", "", "local `addresses` to connect from, in turn (e.g. 127.0.0.2,127.0.0.3)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError("bench conn", "unexpected argument %q (mqlb bench conn takes flags only)", fs.Arg(0))
	}
	t, err := tf.target(tf.url)
	if err != nil {
		return err
	}
	if t.SourceAddrs, err = bench.ParseSourceAddrs(*sources); err != nil {
		return err
	}
	watch, err := bench.ParseWatch(tf.watch)
	if err != nil {
		return err
	}
	res, err := bench.RunConn(ctx, bench.ConnConfig{
		Target: t, Clients: *clients, Rate: *rate, Concurrency: *conc, Hold: bench.D(*hold),
		Timeout: bench.D(tf.timeout), KeepAlive: bench.D(*keepAlive), Prefix: tf.prefix,
		Watch: watch, Progress: progressOut(),
	})
	if err != nil {
		return err
	}
	res.Print(os.Stdout)
	return finish(res, tf.json, res.Failed > 0 || res.Dropped > 0 || res.Interrupted)
}

func benchPubSub(ctx context.Context, args []string) error {
	fs := newFlags("bench pubsub", "mqlb bench pubsub --url mqtt://HOST:PORT --publishers P --subscribers S --qos Q --duration D")
	var tf targetFlags
	tf.register(fs)
	pubURL := fs.String("pub-url", "", "publishers' target (default --url)")
	subURL := fs.String("sub-url", "", "subscribers' target (default --url)")
	pubs := fs.Int("publishers", 1, "publishing clients")
	subs := fs.Int("subscribers", 1, "subscribing clients")
	qos := fs.Uint("qos", 0, "QoS of publishes and subscriptions: 0, 1 or 2")
	size := fs.Int("size", 256, fmt.Sprintf("payload bytes (at least %d)", bench.HeaderSize))
	rate := fs.Float64("rate", 0, "messages per second per publisher (0: as fast as possible)")
	duration := fs.Duration("duration", 10*time.Second, "how long to publish")
	topics := fs.Int("topics", 1, "topics bench/0..K-1: publisher and subscriber i use topic i mod K")
	var shared string
	fs.Func("shared", "subscribe all subscribers to $share/`GROUP`/bench/+ (each message to one of them); GROUP has no '/', '+' or '#'",
		func(g string) error { shared = g; return topic.ValidShareName(g) })
	inflight := fs.Int("inflight", 20, "unacknowledged QoS 1/2 publishes per publisher (with MQTT 5.0 at most the server's Receive Maximum; paho.golang uses that alone)")
	clientKind := fs.String("client", bench.ClientLite, "MQTT client: lite (the bench's own, buffered) or paho (paho.mqtt.golang for 3.1.1, paho.golang for 5.0)")
	drain := fs.Duration("drain", 3*time.Second, "after publishing, wait up to this long for deliveries")
	persistent := fs.Bool("persistent", false, "subscribers keep persistent sessions (3.1.1 clean session 0, 5.0 session expiry 300 s)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError("bench pubsub", "unexpected argument %q (mqlb bench pubsub takes flags only)", fs.Arg(0))
	}
	pt, err := tf.target(or(*pubURL, tf.url))
	if err != nil {
		return err
	}
	st, err := tf.target(or(*subURL, tf.url))
	if err != nil {
		return err
	}
	watch, err := bench.ParseWatch(tf.watch)
	if err != nil {
		return err
	}
	if *qos > 2 {
		return errors.New("--qos must be 0, 1 or 2")
	}
	res, err := bench.RunPubSub(ctx, bench.PubSubConfig{
		PubTarget: pt, SubTarget: st, Publishers: *pubs, Subscribers: *subs, QoS: byte(*qos), Size: *size,
		Rate: *rate, Duration: bench.D(*duration), Topics: *topics, Shared: shared, Inflight: *inflight,
		Drain: bench.D(*drain), Timeout: bench.D(tf.timeout), Prefix: tf.prefix, Client: *clientKind, Persistent: *persistent,
		Watch: watch, Progress: progressOut(),
	})
	if err != nil {
		return err
	}
	res.Print(os.Stdout)
	bad := res.PublishErrors > 0 || res.ConnectionsLost > 0 || res.Interrupted ||
		res.Config.QoS > 0 && res.Lost > 0 || res.Config.QoS == 2 && res.Duplicated > 0
	return finish(res, tf.json, bad)
}

// finish writes the JSON result if asked and turns failures into exit status 3.
func finish(res any, file string, failed bool) error {
	if file != "" {
		b, err := json.MarshalIndent(res, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(file, append(b, '\n'), 0o644); err != nil {
			return err
		}
	}
	if failed {
		return exitCode(3)
	}
	return nil
}

func or(a, b string) string {
	if strings.TrimSpace(a) != "" {
		return a
	}
	return b
}

func benchReport(args []string) error {
	fs := flag.NewFlagSet("bench report", flag.ContinueOnError)
	targets := fs.String("targets", "direct,haproxy,mqlb", "targets in column order: the first is the baseline, the last is compared with the others")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: mqlb bench report [--targets A,B,C] DIR\n\n"+
			"Prints a Markdown table of the medians over rounds of the results in DIR,\n"+
			"named ROUND-TARGET-WORKLOAD.json (workloads conn, idle, q0, q1, lat), as bench/compare.sh writes them.\n\n")
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	switch {
	case fs.NArg() == 0:
		return usageError("bench report", "want the results directory: mqlb bench report [--targets A,B,C] DIR")
	case fs.NArg() > 1:
		return usageError("bench report", "unexpected argument %q after DIR (flags come before it)", fs.Arg(1))
	}
	return bench.Report(os.Stdout, fs.Arg(0), strings.Split(*targets, ","))
}
