package lb

import (
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	mqtt3 "github.com/eclipse/paho.mqtt.golang"

	"github.com/mqlb/mqlb/internal/balance"
)

// fleet is many auto-reconnecting MQTT 3.1.1 clients (paho.mqtt.golang)
// connected through the LB; it records when each lost its connection.
type fleet struct {
	t       testing.TB
	clients map[string]mqtt3.Client
	mu      sync.Mutex
	lost    map[string][]time.Time
	up      map[string][]time.Time // when each (re)connected (CONNACK received)
}

func newFleet(t testing.TB, addr string, ids []string) *fleet {
	t.Helper()
	f := &fleet{t: t, clients: map[string]mqtt3.Client{}, lost: map[string][]time.Time{}, up: map[string][]time.Time{}}
	var wg sync.WaitGroup
	var mu sync.Mutex
	errs := make(chan error, len(ids))
	sem := make(chan struct{}, 16)
	for _, id := range ids {
		o := mqtt3.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(id).SetCleanSession(true).
			SetAutoReconnect(true).SetMaxReconnectInterval(250 * time.Millisecond).SetConnectRetry(true).
			SetConnectRetryInterval(250 * time.Millisecond).SetConnectTimeout(5 * time.Second).SetProtocolVersion(4).
			SetKeepAlive(60 * time.Second).
			SetConnectionLostHandler(func(mqtt3.Client, error) { f.markLost(id) }).
			SetOnConnectHandler(func(mqtt3.Client) { f.markUp(id) })
		c := mqtt3.NewClient(o)
		mu.Lock()
		f.clients[id] = c
		mu.Unlock()
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if tok := c.Connect(); !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
				errs <- fmt.Errorf("connect %s: %v", id, tok.Error())
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	t.Cleanup(f.close)
	return f
}

func (f *fleet) markLost(id string) {
	f.mu.Lock()
	f.lost[id] = append(f.lost[id], time.Now())
	f.mu.Unlock()
}

func (f *fleet) markUp(id string) {
	f.mu.Lock()
	f.up[id] = append(f.up[id], time.Now())
	f.mu.Unlock()
}

// connectsAfter returns, by client id, when it connected after t.
func (f *fleet) connectsAfter(t time.Time) map[string][]time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string][]time.Time{}
	for id, ts := range f.up {
		for _, at := range ts {
			if at.After(t) {
				out[id] = append(out[id], at)
			}
		}
	}
	return out
}

// lostIDs returns the clients that lost their connection at least once.
func (f *fleet) lostIDs() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for id := range f.lost {
		out = append(out, id)
	}
	sort.Strings(out)
	return out
}

// connected counts clients whose connection is open.
func (f *fleet) connected() int {
	n := 0
	for _, c := range f.clients {
		if c.IsConnectionOpen() {
			n++
		}
	}
	return n
}

func (f *fleet) close() {
	var wg sync.WaitGroup
	for _, c := range f.clients {
		wg.Add(1)
		go func() { defer wg.Done(); c.Disconnect(0) }()
	}
	wg.Wait()
}

// moves records the times of rebalancing/evacuation closes.
type moves struct {
	mu sync.Mutex
	at map[string][]time.Time // by server moved off
}

func watchMoves(h *harness) *moves {
	m := &moves{at: map[string][]time.Time{}}
	h.lb.Rebalance().OnMove(func(_, server string, at time.Time) {
		m.mu.Lock()
		m.at[server] = append(m.at[server], at)
		m.mu.Unlock()
	})
	return m
}

func (m *moves) all() []time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []time.Time
	for _, ts := range m.at {
		out = append(out, ts...)
	}
	return out
}

// maxPerSecond is the most events in any one-second window [t, t+1s).
func maxPerSecond(ts []time.Time) int {
	ts = append([]time.Time(nil), ts...)
	sort.Slice(ts, func(i, j int) bool { return ts[i].Before(ts[j]) })
	best, j := 0, 0
	for i := range ts {
		for ts[i].Sub(ts[j]) >= time.Second {
			j++
		}
		best = max(best, i-j+1)
	}
	return best
}

// evenIDs returns n client ids that the client_id policy spreads exactly
// evenly over servers: the test is about rebalancing, so the keys' own
// spread (a few percent for 400 random keys) is taken out of it.
func evenIDs(t testing.TB, servers []string, n int) []string {
	t.Helper()
	var bs []balance.Server
	for _, s := range servers {
		bs = append(bs, namedServer(s))
	}
	p, err := balance.New("client_id", bs, balance.Options{})
	if err != nil {
		t.Fatal(err)
	}
	per := map[string]int{}
	var out []string
	for i := 0; len(out) < n; i++ {
		id := fmt.Sprintf("rb-%d", i)
		home := p.(balance.Keyed).Home(&balance.Conn{ClientID: id}).Name()
		if per[home] < n/len(servers) {
			per[home]++
			out = append(out, id)
		}
	}
	return out
}

type namedServer string

func (s namedServer) Name() string  { return string(s) }
func (namedServer) Weight() int     { return 1 }
func (namedServer) Active() int64   { return 0 }
func (namedServer) Available() bool { return true }

// perServer returns the LB's active connections per server.
func perServer(h *harness) map[string]int64 {
	out := map[string]int64{}
	for _, s := range h.lb.Upstreams().Get("brokers").Servers {
		out[s.Name()] = s.Active()
	}
	return out
}
