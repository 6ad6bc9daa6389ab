package rebalance

import (
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/mqlb/mqlb/internal/balance"
	"github.com/mqlb/mqlb/internal/config"
	"github.com/mqlb/mqlb/internal/upstream"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// build makes upstream "u" over servers b0..b{n-1} (nothing started).
func build(t *testing.T, n int, extra string) *upstream.Upstream {
	t.Helper()
	var b strings.Builder
	b.WriteString("listeners: [{ address: \"127.0.0.1:0\", upstream: u }]\nupstreams:\n  u:\n" + extra + "    servers:\n")
	for i := range n {
		fmt.Fprintf(&b, "      - { name: b%d, address: \"127.0.0.1:%d\" }\n", i, 1000+i)
	}
	c, err := config.Parse([]byte(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	set, err := upstream.Build(c, nil, nil, quiet)
	if err != nil {
		t.Fatal(err)
	}
	return set.Get("u")
}

// TestPlanKeyed: after a fourth server joins, the moves are exactly the
// connections whose key maps to it, old enough, interleaved over sources.
func TestPlanKeyed(t *testing.T) {
	three := build(t, 3, "    balance: client_id\n    rebalance: { rate: 10, min_age: 1s }\n")
	four := build(t, 4, "    balance: client_id\n    rebalance: { rate: 10, min_age: 1s }\n")
	now := time.Now()
	var conns []Conn
	want := map[string]bool{}
	for i := range 300 {
		k := &balance.Conn{ClientID: fmt.Sprintf("k%d", i)}
		since := now.Add(-time.Minute)
		if i%10 == 0 {
			since = now // too young to move
		}
		on := three.Policy.(balance.Keyed).Home(k).Name()
		conns = append(conns, Conn{Server: on, Since: since, Key: k})
		if four.Policy.(balance.Keyed).Home(k).Name() == "b3" && i%10 != 0 {
			want[k.ClientID] = true
		}
	}
	p := makePlan(four, conns, now)
	if len(p.moves) != len(want) || len(want) < 50 {
		t.Fatalf("%d moves, want %d", len(p.moves), len(want))
	}
	for i, m := range p.moves {
		if !want[m.c.Key.ClientID] || m.to != "b3" || m.from != m.c.Server {
			t.Errorf("move %d: %s %s → %s", i, m.c.Key.ClientID, m.from, m.to)
		}
		if i > 0 && i < 3 && m.from == p.moves[i-1].from {
			t.Errorf("moves not interleaved over sources: %s then %s", p.moves[i-1].from, m.from)
		}
	}
	if p.within(0.1) || p.target["b3"] < 50 || p.active["b3"] != 0 {
		t.Errorf("targets %v active %v", p.target, p.active)
	}
	for _, m := range p.moves {
		p.took(m)
	}
	if !p.within(0.2) {
		t.Errorf("after every move: targets %v active %v", p.target, p.active)
	}

	// The new server not up: nothing moves towards it.
	four.Server("b3").Disable()
	if p := makePlan(four, conns, now); len(p.moves) != 0 {
		t.Errorf("%d moves towards a disabled server", len(p.moves))
	}
}

// TestPlanShares: least_conn with 30, 30 and 0 connections moves the ten
// most recent old-enough connections of each loaded server.
func TestPlanShares(t *testing.T) {
	u := build(t, 3, "    balance: least_conn\n    rebalance: { rate: 10, min_age: 10s }\n")
	now := time.Now()
	var conns []Conn
	for i := range 60 {
		since := now.Add(-time.Duration(i) * time.Second) // c0 newest
		conns = append(conns, Conn{Server: fmt.Sprintf("b%d", i%2), Since: since, Key: &balance.Conn{ClientID: fmt.Sprint(i)}})
	}
	p := makePlan(u, conns, now)
	if p.target["b2"] != 20 || len(p.moves) != 20 {
		t.Fatalf("targets %v, %d moves; want 20 each and 20 moves", p.target, len(p.moves))
	}
	for _, m := range p.moves {
		if age := now.Sub(m.c.Since); age < 10*time.Second || age > 29*time.Second {
			t.Errorf("moved a connection aged %v; want the most recent at least 10s old", age)
		}
	}
	for _, m := range p.moves {
		p.took(m)
	}
	if !p.within(0) {
		t.Errorf("after the moves: %v, targets %v", p.active, p.target)
	}
}

func TestInterleave(t *testing.T) {
	mk := func(s string, n int) []move {
		var out []move
		for range n {
			out = append(out, move{from: s})
		}
		return out
	}
	got := interleave(map[string][]move{"a": mk("a", 1), "b": mk("b", 3), "c": mk("c", 2)})
	var order []string
	for _, m := range got {
		order = append(order, m.from)
	}
	if s := strings.Join(order, ""); s != "bcabcb" {
		t.Errorf("order %s, want bcabcb", s)
	}
}
