package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"
	"unicode/utf8"
)

// nodeCluster is a node's GET /api/v1/cluster.
type nodeCluster struct {
	Node     string
	Healthy  bool
	Problem  string
	Members  []struct{ Name, State string }
	Clients  int64
	Retained int
	Store    []struct {
		Bucket   string
		Stream   string
		Replicas int
		Leader   string
		Peers    []struct {
			Name    string
			Current bool
		}
		Error string
	}
	Mesh struct {
		Subscriptions int64 `json:"nats_subscriptions"`
		Drops         int64 `json:"slow_consumer_drops"`
	}
}

// clientPage is a node's GET /api/v1/clients.
type clientPage struct {
	Node    string
	Total   int
	Clients []struct {
		ClientID                          string `json:"client_id"`
		Username, Remote                  string
		Connected                         bool
		Subscriptions, Protocol, Inflight int
	}
}

var errNoNodes = errors.New("the load balancer knows no broker nodes (they are known under mqlb up); use --admin with a node's admin address, or mqlb ctl conns --q TEXT")

// perNode decodes an answer that is either one node's (a node's admin API)
// or the load balancer's with every node's ({"nodes": [{name, data|error}]})
// and calls one with each node's data. It returns the nodes that did not
// answer.
func perNode(body []byte, one func(data []byte) error) (unanswered []string, err error) {
	var fo struct {
		Nodes []struct {
			Name, Error string
			Data        json.RawMessage
		}
	}
	if json.Unmarshal(body, &fo); fo.Nodes == nil {
		return nil, one(body) // a node
	}
	if len(fo.Nodes) == 0 {
		return nil, errNoNodes
	}
	for _, n := range fo.Nodes {
		if n.Error != "" || one(n.Data) != nil {
			unanswered = append(unanswered, n.Name+": "+n.Error)
		}
	}
	return unanswered, nil
}

// nodeViews GETs path and decodes each node's answer as T (see perNode).
// With --json an answer without nodes is no error: it is printed as is.
func nodeViews[T any](ctx context.Context, k *ctl, path string) (body []byte, views []T, unanswered []string, err error) {
	body, err = k.c.Do(ctx, http.MethodGet, path, nil)
	if err != nil {
		return nil, nil, nil, err
	}
	unanswered, err = perNode(body, func(data []byte) error {
		var v T
		err := json.Unmarshal(data, &v)
		views = append(views, v)
		return err
	})
	if k.json && errors.Is(err, errNoNodes) {
		err = nil
	}
	return body, views, unanswered, err
}

func (k *ctl) notAnswering(unanswered []string) {
	for _, u := range unanswered {
		fmt.Fprintf(k.out, "not answering: %s\n", u)
	}
}

func (k *ctl) cluster(ctx context.Context, args []string) error {
	if err := nargs(args, 0, "cluster (no arguments)"); err != nil {
		return err
	}
	body, views, unanswered, err := nodeViews[nodeCluster](ctx, k, "/api/v1/cluster")
	if err != nil {
		return err
	}
	return k.print(body, func() error {
		err := k.table(func(w *tabwriter.Writer) {
			fmt.Fprintln(w, "NODE\tHEALTH\tMEMBERS\tCLIENTS\tRETAINED\tSTORE (replicas, leader, current)\tMESH SUBS\tSLOW DROPS")
			for _, v := range views {
				fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%d\t%s\t%d\t%d\n", v.Node, health(v), members(v), v.Clients, v.Retained,
					store(v), v.Mesh.Subscriptions, v.Mesh.Drops)
			}
		})
		k.notAnswering(unanswered)
		return err
	})
}

func health(v nodeCluster) string {
	if v.Healthy {
		return "ok"
	}
	return v.Problem
}

func members(v nodeCluster) string {
	var names []string
	for _, m := range v.Members {
		names = append(names, m.Name)
	}
	return strings.Join(names, ",")
}

// store sums up the replicated buckets and the session queue stream:
// "queue R3 node1 2/2" means three replicas, node1 leads, both followers
// are current.
func store(v nodeCluster) string {
	var out []string
	for _, s := range v.Store {
		kind := "store" // not open yet
		if name := s.Bucket + s.Stream; name != "" {
			kind = name[strings.LastIndexByte(name, '_')+1:] // mqlb_<cluster>_<kind>
		}
		if s.Error != "" {
			out = append(out, kind+": "+s.Error)
			continue
		}
		cur := 0
		for _, p := range s.Peers {
			if p.Current {
				cur++
			}
		}
		out = append(out, fmt.Sprintf("%s R%d %s %d/%d", kind, s.Replicas, s.Leader, cur, len(s.Peers)))
	}
	return strings.Join(out, "; ")
}

// clientsFooter counts the clients, and says how to see the others when
// the table shows a page of them.
func clientsFooter(total, shown int) string {
	if shown >= total {
		return fmt.Sprintf("%d client(s)", total)
	}
	return fmt.Sprintf("%d client(s), %d shown: --offset and --limit (at most 1000 per node) page through them, --q narrows them", total, shown)
}

// cell makes a value from a client (a client id, a username, a sticky
// key) safe for a table cell: one with a control character (ESC, CR, a
// tab), another rune that does not print or bytes that are not UTF-8 is
// shown quoted and escaped, as the access log writes it, so it cannot move
// the terminal's cursor or rewrite what was printed before; a long one (a
// client id may have 65,535 bytes) is cut. --json has it whole.
func cell(s string) string {
	s = printable(s)
	const max = 64
	if len(s) <= max {
		return s
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// printable is s, or strconv.Quote(s) when s is not UTF-8 or has a rune
// that does not print.
func printable(s string) string {
	if !utf8.ValidString(s) || strings.ContainsFunc(s, func(r rune) bool { return !strconv.IsPrint(r) }) {
		return strconv.Quote(s)
	}
	return s
}

func (k *ctl) clients(ctx context.Context, args []string) error {
	if err := nargs(args, 0, "clients [--q TEXT] [--limit N] [--offset N]"); err != nil {
		return err
	}
	v := url.Values{}
	if k.q != "" {
		v.Set("q", k.q)
	}
	if k.limit > 0 { // given: --limit refuses less than 1
		v.Set("limit", strconv.Itoa(k.limit))
	}
	if k.offset > 0 {
		v.Set("offset", strconv.Itoa(k.offset))
	}
	body, pages, unanswered, err := nodeViews[clientPage](ctx, k, "/api/v1/clients?"+v.Encode())
	if err != nil {
		return err
	}
	return k.print(body, func() error {
		total, shown := 0, 0
		err := k.table(func(w *tabwriter.Writer) {
			fmt.Fprintln(w, "CLIENT ID\tNODE\tCONNECTED\tPROTOCOL\tUSERNAME\tREMOTE\tSUBSCRIPTIONS\tINFLIGHT")
			for _, p := range pages {
				total += p.Total
				shown += len(p.Clients)
				for _, c := range p.Clients {
					fmt.Fprintf(w, "%s\t%s\t%t\t%d\t%s\t%s\t%d\t%d\n", cell(c.ClientID), p.Node, c.Connected, c.Protocol,
						cell(c.Username), c.Remote, c.Subscriptions, c.Inflight)
				}
			}
		})
		fmt.Fprintln(k.out, clientsFooter(total, shown))
		k.notAnswering(unanswered)
		return err
	})
}
