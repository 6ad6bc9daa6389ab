package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/mqlb/mqlb/internal/adminclient"
)

const ctlUsage = `usage: mqlb ctl [--admin URL] [--token T] [--json] COMMAND [ARGS]

Operate a running load balancer or broker node through its admin API.

The load balancer (mqlb run, mqlb up):
  status                     each upstream's servers up, down, drained and their connections
                             (a node: the cluster, as cluster)
  servers                    every server: state, weight, connections, last check
  drain|enable|disable SERVER
  evacuate SERVER [--rate N] drain and close the server's connections at N/s
  weight SERVER N            set a weight (1-256)
  add SERVER ADDRESS [--weight N]
  remove SERVER              no new connections; open ones stay
  conns [--client ID] [--q TEXT]
  kick ID                    close a client's connections (on a node: disconnect it)
  sticky [UPSTREAM] [--clear [--key KEY]]
  reload                     re-read the config file (as SIGHUP)
Broker nodes (a node's admin API, or the load balancer under mqlb up):
  cluster                    members, store replicas, retained, mesh interest
  clients [--q TEXT] [--limit N] [--offset N]
                             under mqlb up, --limit and --offset page each node:
                             with 3 nodes, --limit 10 shows up to 30 clients

SERVER is NAME or UPSTREAM/NAME. --admin defaults to $MQLB_ADMIN or
http://127.0.0.1:9090, --token to $MQLB_TOKEN. Tables are for people;
--json prints the API's answer for scripts.
Under mqlb up there is no config file: reload answers 400 (the config is
built in code).
`

// ctl is one mqlb ctl invocation.
type ctl struct {
	c      *adminclient.Client
	out    io.Writer
	errw   io.Writer // warnings
	json   bool
	client string
	q      string
	rate   int
	weight int
	clear  bool
	key    string
	limit  int
	offset int
}

func cmdCtl(ctx context.Context, args []string) error {
	return runCtl(ctx, args, os.Stdout, os.Stderr)
}

func runCtl(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	k := &ctl{out: stdout, errw: stderr}
	fs := flag.NewFlagSet("ctl", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // -h prints ctlUsage to stdout; a bad flag is said below, as by the other commands
	fs.Usage = func() {}
	admin := fs.String("admin", cmp.Or(os.Getenv("MQLB_ADMIN"), "http://127.0.0.1:9090"), "admin API URL")
	token := fs.String("token", os.Getenv("MQLB_TOKEN"), "admin bearer token")
	fs.BoolVar(&k.json, "json", false, "print JSON")
	fs.StringVar(&k.client, "client", "", "conns: only this client id")
	fs.StringVar(&k.q, "q", "", "conns, clients: client ids containing this")
	fs.Func("rate", "evacuate: connections closed per second, 1 or more (default: the load balancer's, 100)", func(v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return errors.New("want a whole number of connections per second, 1 or more")
		}
		k.rate = n
		return nil
	})
	fs.IntVar(&k.weight, "weight", 1, "add: the new server's weight")
	fs.BoolVar(&k.clear, "clear", false, "sticky: clear the table (or --key's entry)")
	fs.StringVar(&k.key, "key", "", "sticky --clear: only this key")
	// The API's bounds, checked here as for --rate: a value it would refuse
	// is not dropped for the default.
	fs.Func("limit", "clients: page size, 1 or more (default: the API's, 100)", wholeAtLeast(&k.limit, 1))
	fs.Func("offset", "clients: skip this many", wholeAtLeast(&k.offset, 0))
	pos, err := parseInterleaved(fs, args)
	if errors.Is(err, flag.ErrHelp) || err == nil && len(pos) > 0 && pos[0] == "help" {
		fmt.Fprint(stdout, ctlUsage)
		return nil
	}
	if err != nil {
		fmt.Fprintf(stderr, "mqlb ctl: %v\n", err)
		fmt.Fprintln(stderr, "mqlb ctl -h lists the commands and flags")
		return exitCode(2)
	}
	if len(pos) == 0 {
		fmt.Fprint(stderr, ctlUsage)
		return exitCode(2)
	}
	if k.c, err = adminclient.New(*admin, *token); err != nil {
		return err
	}
	run, ok := ctlCommands[pos[0]]
	if !ok {
		fmt.Fprintf(stderr, "mqlb ctl: unknown command %q\n\n%s", pos[0], ctlUsage)
		return exitCode(2)
	}
	if err := run(k, ctx, pos[1:]); err != nil {
		var ue ctlMisuse
		if errors.As(err, &ue) {
			fmt.Fprintf(stderr, "mqlb ctl %s: %v\n\n%s", pos[0], err, ctlUsage)
			return exitCode(2)
		}
		if adminclient.IsNoRoute(err) && lbCommands[pos[0]] {
			return fmt.Errorf("%s: %s has no load balancer API (is it a broker node's admin API?): a node answers status, cluster, clients and kick", pos[0], k.c.Base())
		}
		return fmt.Errorf("%s: %w", pos[0], err)
	}
	return nil
}

// wholeAtLeast parses a flag's whole number of at least least into n, and
// refuses another in the admin API's words.
func wholeAtLeast(n *int, least int) func(string) error {
	return func(v string) error {
		i, err := strconv.Atoi(v)
		if err != nil || i < least {
			return fmt.Errorf("want a whole number of at least %d", least)
		}
		*n = i
		return nil
	}
}

// lbCommands are the commands only a load balancer's admin API answers.
var lbCommands = map[string]bool{"servers": true, "drain": true, "enable": true, "disable": true, "evacuate": true,
	"weight": true, "add": true, "remove": true, "conns": true, "sticky": true, "reload": true}

// ctlMisuse is a command used the wrong way (exit status 2).
type ctlMisuse string

func (e ctlMisuse) Error() string { return string(e) }

// parseInterleaved lets flags come before or after the positional arguments.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

var ctlCommands map[string]func(*ctl, context.Context, []string) error

func init() {
	ctlCommands = map[string]func(*ctl, context.Context, []string) error{
		"status": (*ctl).status, "servers": (*ctl).servers,
		"drain": action("drain"), "enable": action("enable"), "disable": action("disable"),
		"evacuate": (*ctl).evacuate, "weight": (*ctl).setWeight, "add": (*ctl).add, "remove": (*ctl).remove,
		"conns": (*ctl).conns, "kick": (*ctl).kick, "sticky": (*ctl).sticky, "reload": (*ctl).reload,
		"cluster": (*ctl).cluster, "clients": (*ctl).clients,
	}
}

func nargs(args []string, n int, what string) error {
	if len(args) != n {
		return ctlMisuse("want " + what)
	}
	return nil
}

// print writes the API's answer as JSON, or calls table.
func (k *ctl) print(body []byte, table func() error) error {
	if k.json {
		_, err := k.out.Write(body)
		return err
	}
	return table()
}

func (k *ctl) done(body []byte, format string, a ...any) error {
	return k.print(body, func() error {
		_, err := fmt.Fprintf(k.out, format+"\n", a...)
		return err
	})
}

// server resolves SERVER (NAME or UPSTREAM/NAME) to its upstream and name.
func (k *ctl) server(ctx context.Context, arg string) (string, string, error) {
	if u, s, ok := strings.Cut(arg, "/"); ok {
		return u, s, nil
	}
	_, all, err := k.upstreams(ctx)
	if err != nil {
		return "", "", err
	}
	var found []string
	for _, u := range all.Upstreams {
		in := slices.ContainsFunc(u.Servers, func(s serverJSON) bool { return s.Name == arg }) ||
			slices.ContainsFunc(u.Removed, func(s removedJSON) bool { return s.Name == arg }) // evacuate takes one
		if in {
			found = append(found, u.Name)
		}
	}
	switch len(found) {
	case 0:
		return "", "", fmt.Errorf("no server %q in any upstream (mqlb ctl servers lists them)", arg)
	case 1:
		return found[0], arg, nil
	}
	return "", "", fmt.Errorf("server %q is in upstreams %s: say which, as UPSTREAM/%s", arg, strings.Join(found, ", "), arg)
}

// onlyUpstream returns the upstream when there is one, for commands that
// take an optional UPSTREAM.
func (k *ctl) onlyUpstream(ctx context.Context) (string, error) {
	_, all, err := k.upstreams(ctx)
	if err != nil {
		return "", err
	}
	if len(all.Upstreams) != 1 {
		var names []string
		for _, u := range all.Upstreams {
			names = append(names, u.Name)
		}
		return "", ctlMisuse("several upstreams (" + strings.Join(names, ", ") + "): name one")
	}
	return all.Upstreams[0].Name, nil
}

// onlySticky returns the upstream that balances with sticky when there is
// one such upstream, for sticky without UPSTREAM.
func (k *ctl) onlySticky(ctx context.Context) (string, error) {
	_, all, err := k.upstreams(ctx)
	if err != nil {
		return "", err
	}
	var sticky []string
	for _, u := range all.Upstreams {
		if u.Balance == "sticky" {
			sticky = append(sticky, u.Name)
		}
	}
	switch len(sticky) {
	case 1:
		return sticky[0], nil
	case 0:
		return "", errors.New("no upstream balances with sticky")
	}
	return "", ctlMisuse("several sticky upstreams (" + strings.Join(sticky, ", ") + "): name one")
}

func serverPath(u, s string) string {
	return "/api/v1/upstreams/" + url.PathEscape(u) + "/servers/" + url.PathEscape(s)
}

func action(name string) func(*ctl, context.Context, []string) error {
	return func(k *ctl, ctx context.Context, args []string) error {
		if err := nargs(args, 1, name+" SERVER"); err != nil {
			return err
		}
		u, s, err := k.server(ctx, args[0])
		if err != nil {
			return err
		}
		body, err := k.c.Do(ctx, http.MethodPost, serverPath(u, s)+"/"+name, nil)
		if err != nil {
			return err
		}
		var sv serverJSON
		json.Unmarshal(body, &sv)
		return k.done(body, "%s/%s: %s", u, s, sv.State)
	}
}

func (k *ctl) evacuate(ctx context.Context, args []string) error {
	if err := nargs(args, 1, "evacuate SERVER [--rate N]"); err != nil {
		return err
	}
	u, s, err := k.server(ctx, args[0])
	if err != nil {
		return err
	}
	path := serverPath(u, s) + "/evacuate"
	if k.rate > 0 {
		path += "?rate=" + strconv.Itoa(k.rate)
	}
	body, err := k.c.Do(ctx, http.MethodPost, path, nil)
	if err != nil {
		return err
	}
	return k.done(body, "%s/%s: evacuating", u, s)
}

func (k *ctl) setWeight(ctx context.Context, args []string) error {
	if err := nargs(args, 2, "weight SERVER N"); err != nil {
		return err
	}
	w, err := strconv.Atoi(args[1])
	if err != nil {
		return ctlMisuse("weight: want a whole number, got " + strconv.Quote(args[1]))
	}
	u, s, err := k.server(ctx, args[0])
	if err != nil {
		return err
	}
	body, err := k.c.Do(ctx, http.MethodPut, serverPath(u, s)+"/weight", map[string]int{"weight": w})
	if err != nil {
		return err
	}
	var sv serverJSON
	json.Unmarshal(body, &sv)
	return k.done(body, "%s/%s: weight %d", u, s, sv.Weight)
}

func (k *ctl) add(ctx context.Context, args []string) error {
	if err := nargs(args, 2, "add SERVER ADDRESS [--weight N]"); err != nil {
		return err
	}
	u, s, ok := strings.Cut(args[0], "/")
	if !ok {
		var err error
		if u, err = k.onlyUpstream(ctx); err != nil {
			return err
		}
		s = args[0]
	}
	body, err := k.c.Do(ctx, http.MethodPost, "/api/v1/upstreams/"+url.PathEscape(u)+"/servers",
		map[string]any{"name": s, "address": args[1], "weight": k.weight})
	if err != nil {
		return err
	}
	var sv serverJSON // what the load balancer took, not what was asked
	json.Unmarshal(body, &sv)
	return k.done(body, "%s/%s: added (%s, weight %d)", u, cmp.Or(sv.Name, s), sv.Address, sv.Weight)
}

func (k *ctl) remove(ctx context.Context, args []string) error {
	if err := nargs(args, 1, "remove SERVER"); err != nil {
		return err
	}
	u, s, err := k.server(ctx, args[0])
	if err != nil {
		return err
	}
	body, err := k.c.Do(ctx, http.MethodDelete, serverPath(u, s), nil)
	if err != nil {
		return err
	}
	return k.done(body, "%s/%s: removed (its open connections stay until they close)", u, s)
}

func (k *ctl) kick(ctx context.Context, args []string) error {
	if err := nargs(args, 1, "kick CLIENT_ID"); err != nil {
		return err
	}
	body, err := k.c.Do(ctx, http.MethodDelete, "/api/v1/connections?client_id="+url.QueryEscape(args[0]), nil)
	if adminclient.IsNoRoute(err) { // a node's admin API
		body, err = k.c.Do(ctx, http.MethodDelete, "/api/v1/clients/"+url.PathEscape(args[0]), nil)
		if err != nil {
			return err
		}
		return k.done(body, "%s: disconnected", args[0])
	}
	if err != nil {
		return err
	}
	var r struct{ Closed int }
	json.Unmarshal(body, &r)
	return k.done(body, "%s: %d connection(s) closed", args[0], r.Closed)
}

func (k *ctl) reload(ctx context.Context, args []string) error {
	if err := nargs(args, 0, "reload (no arguments)"); err != nil {
		return err
	}
	body, err := k.c.Do(ctx, http.MethodPost, "/-/reload", nil)
	if err != nil {
		return err
	}
	var r struct{ Warnings []string }
	json.Unmarshal(body, &r)
	if err := k.done(body, "reloaded"); err != nil || k.json {
		return err
	}
	for _, w := range r.Warnings { // the reload applied: warnings, as mqlb check's, on stderr
		fmt.Fprintf(k.errw, "warning: %s\n", w)
	}
	return nil
}
