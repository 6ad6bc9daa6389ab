package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"text/tabwriter"
	"time"

	"github.com/mqlb/mqlb/internal/adminclient"
)

// The parts of the admin API's answers that tables show.
type (
	upstreamsJSON struct {
		Upstreams []struct {
			Name, Balance string
			Servers       []serverJSON
			Removed       []removedJSON // removed, their connections still open
		}
	}
	removedJSON struct {
		Name, Address string
		Active        int64
	}
	serverJSON struct {
		Name, Address, State string
		Weight               int
		Active               int64
		Total                uint64
		Failures             uint64 `json:"connect_failures"`
		Health               struct {
			LastError string     `json:"last_error"`
			Failures  int        `json:"consecutive_failures"`
			LastCheck *time.Time `json:"last_check"`
		}
	}
)

func (k *ctl) table(f func(w *tabwriter.Writer)) error {
	w := tabwriter.NewWriter(k.out, 0, 4, 2, ' ', 0)
	f(w)
	return w.Flush()
}

// upstreams is GET /api/v1/upstreams, decoded.
func (k *ctl) upstreams(ctx context.Context) ([]byte, upstreamsJSON, error) {
	var ups upstreamsJSON
	body, err := k.c.Do(ctx, http.MethodGet, "/api/v1/upstreams", nil)
	if err == nil {
		err = json.Unmarshal(body, &ups)
	}
	return body, ups, err
}

func (k *ctl) status(ctx context.Context, args []string) error {
	if err := nargs(args, 0, "status (no arguments)"); err != nil {
		return err
	}
	body, ups, err := k.upstreams(ctx)
	if adminclient.IsNoRoute(err) { // a node's admin API
		return k.cluster(ctx, nil)
	}
	if err != nil {
		return err
	}
	return k.print(body, func() error {
		fmt.Fprintf(k.out, "load balancer %s\n\n", k.c.Base())
		return k.table(func(w *tabwriter.Writer) {
			fmt.Fprintln(w, "UPSTREAM\tBALANCE\tUP\tDOWN\tDRAIN/DISABLED\tCONNECTIONS")
			for _, u := range ups.Upstreams {
				n := map[string]int{}
				var active int64
				for _, s := range u.Servers {
					n[s.State]++
					active += s.Active
				}
				for _, s := range u.Removed { // relayed until they close
					active += s.Active
				}
				fmt.Fprintf(w, "%s\t%s\t%d/%d\t%d\t%d\t%d\n", u.Name, u.Balance, n["up"], len(u.Servers), n["down"], n["drain"]+n["disabled"], active)
			}
		})
	})
}

func (k *ctl) servers(ctx context.Context, args []string) error {
	if err := nargs(args, 0, "servers (no arguments)"); err != nil {
		return err
	}
	body, ups, err := k.upstreams(ctx)
	if err != nil {
		return err
	}
	return k.print(body, func() error {
		return k.table(func(w *tabwriter.Writer) {
			fmt.Fprintln(w, "UPSTREAM\tSERVER\tADDRESS\tSTATE\tWEIGHT\tACTIVE\tTOTAL\tFAILED/REFUSED\tLAST CHECK")
			for _, u := range ups.Upstreams {
				for _, s := range u.Servers {
					check := "ok"
					switch {
					case s.Health.LastCheck == nil:
						check = "-"
					case s.Health.LastError != "":
						check = fmt.Sprintf("failed %dx: %s", s.Health.Failures, printable(s.Health.LastError))
					}
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%s\n", u.Name, s.Name, s.Address, s.State, s.Weight, s.Active, s.Total, s.Failures, check)
				}
				for _, s := range u.Removed {
					fmt.Fprintf(w, "%s\t%s\t%s\tremoved\t-\t%d\t-\t-\t-\n", u.Name, s.Name, s.Address, s.Active)
				}
			}
		})
	})
}

func (k *ctl) conns(ctx context.Context, args []string) error {
	if err := nargs(args, 0, "conns [--client ID] [--q TEXT]"); err != nil {
		return err
	}
	v := url.Values{}
	if k.client != "" {
		v.Set("client_id", k.client)
	}
	if k.q != "" {
		v.Set("q", k.q)
	}
	body, err := k.c.Do(ctx, http.MethodGet, "/api/v1/connections?"+v.Encode(), nil)
	if err != nil {
		return err
	}
	var r struct {
		Total       int
		Connections []struct {
			ClientID                           string `json:"client_id"`
			Username, Remote, Upstream, Server string
			Since                              time.Time
			BytesIn                            int64 `json:"bytes_in"`
			BytesOut                           int64 `json:"bytes_out"`
		}
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return err
	}
	return k.print(body, func() error {
		err := k.table(func(w *tabwriter.Writer) {
			fmt.Fprintln(w, "CLIENT ID\tUSERNAME\tREMOTE\tSERVER\tFOR\tIN\tOUT")
			for _, c := range r.Connections {
				fmt.Fprintf(w, "%s\t%s\t%s\t%s/%s\t%s\t%d\t%d\n", cell(c.ClientID), cell(c.Username), c.Remote, c.Upstream, c.Server,
					time.Since(c.Since).Truncate(time.Second), c.BytesIn, c.BytesOut)
			}
		})
		fmt.Fprintf(k.out, "%d connection(s)\n", r.Total)
		return err
	})
}

func (k *ctl) sticky(ctx context.Context, args []string) error {
	if len(args) > 1 {
		return ctlMisuse("want sticky [UPSTREAM] [--clear [--key KEY]]")
	}
	if k.key != "" && !k.clear {
		return ctlMisuse("--key goes with --clear")
	}
	var u string
	if len(args) == 1 {
		u = args[0]
	} else {
		var err error
		if u, err = k.onlySticky(ctx); err != nil {
			return err
		}
	}
	path := "/api/v1/sticky/" + url.PathEscape(u)
	if k.clear {
		if k.key != "" {
			path += "?key=" + url.QueryEscape(k.key)
		}
		body, err := k.c.Do(ctx, http.MethodDelete, path, nil)
		if err != nil {
			return err
		}
		var r struct{ Removed int }
		json.Unmarshal(body, &r)
		return k.done(body, "%s: %d sticky entr%s removed", u, r.Removed, map[bool]string{true: "y", false: "ies"}[r.Removed == 1])
	}
	body, err := k.c.Do(ctx, http.MethodGet, path, nil)
	if err != nil {
		return err
	}
	var r struct {
		Size    int
		Entries []struct {
			Key, Server string
			Active      int
			LastUsed    time.Time `json:"last_used"`
			Expires     time.Time
		}
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return err
	}
	return k.print(body, func() error {
		err := k.table(func(w *tabwriter.Writer) {
			fmt.Fprintln(w, "KEY\tSERVER\tACTIVE\tLAST USED\tEXPIRES IN")
			for _, e := range r.Entries {
				exp := "-"
				if !e.Expires.IsZero() {
					exp = time.Until(e.Expires).Truncate(time.Second).String()
				}
				fmt.Fprintf(w, "%s\t%s\t%d\t%s ago\t%s\n", cell(e.Key), e.Server, e.Active, time.Since(e.LastUsed).Truncate(time.Second), exp)
			}
		})
		fmt.Fprintf(k.out, "%d entr%s\n", r.Size, map[bool]string{true: "y", false: "ies"}[r.Size == 1])
		return err
	})
}
