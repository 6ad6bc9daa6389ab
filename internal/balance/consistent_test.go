package balance

import (
	"fmt"
	"math"
	"net/netip"
	"testing"
)

// TestHashGolden pins the hash every replica must share (see hash.go):
// changing it moves clients between servers on upgrade.
func TestHashGolden(t *testing.T) {
	// FNV-1a 64 test vectors from the FNV reference.
	for in, want := range map[string]uint64{"": 0xcbf29ce484222325, "a": 0xaf63dc4c8601ec8c, "foobar": 0x85944171f73967e8} {
		if got := fnv1aString(in); got != want {
			t.Errorf("fnv1a64(%q) = %#x, want %#x", in, got, want)
		}
	}
	checks := []struct {
		what      string
		got, want uint64
	}{
		{"fmix64(1)", fmix64(1), 0xb456bcfc34c2cb2c},
		{"fmix64(0xdeadbeef)", fmix64(0xdeadbeef), 0xd24bd59f862a1dac},
		{"fnv1a64(192.0.2.1 as 16 bytes)", fnv1aAddr(netip.MustParseAddr("192.0.2.1")), 0xd9c70e8395f6d4f6},
		{"h(client-1, node1)", keyServerHash(fnv1aString("client-1"), serverSeed("node1")), 0x1f58073d4cd5f2e5},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %#x, want %#x", c.what, c.got, c.want)
		}
	}
	if got := weightedScore(0x1f58073d4cd5f2e5, 2); math.Abs(got-0.9523088331228731) > 1e-15 {
		t.Errorf("score = %v, want 0.9523088331228731", got)
	}
}

// TestHashGoldenOwners pins whole choices: the owners of client-0 …
// client-11 over node1..3 with equal and with 1:2:3 weights.
func TestHashGoldenOwners(t *testing.T) {
	for _, c := range []struct {
		weights []int
		want    string
	}{{[]int{1, 1, 1}, "133321333233"}, {[]int{1, 2, 3}, "133323333233"}} {
		fs := fakes(c.weights...)
		for i, f := range fs {
			f.name = fmt.Sprint("node", i+1)
		}
		p := mustNew(t, "client_id", fs, Options{})
		got := ""
		for i := range 12 {
			got += p.Pick(clientConn(fmt.Sprint("client-", i)), nil).Name()[4:]
		}
		if got != c.want {
			t.Errorf("weights %v: owners %s, want %s", c.weights, got, c.want)
		}
	}
}

// conns returns n connections keyed for policy.
func conns(policy string, n int) []*Conn {
	out := make([]*Conn, n)
	for i := range out {
		switch policy {
		case "source_ip":
			out[i] = ipConn(i)
		case "username":
			out[i] = &Conn{Username: fmt.Sprint("user-", i), Source: netip.MustParseAddr("2001:db8::1")}
		default:
			out[i] = clientConn(fmt.Sprint("client-", i))
		}
	}
	return out
}

func owners(p Policy, cs []*Conn) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = name(p.Pick(c, nil))
	}
	return out
}

func TestHashDeterministicAcrossReplicas(t *testing.T) {
	weights := []int{1, 2, 3, 1, 1, 4, 1, 2}
	for _, policy := range []string{"source_ip", "client_id", "username"} {
		for _, weighted := range []bool{false, true} {
			a, b := equalFakes(len(weights)), equalFakes(len(weights))
			if weighted {
				a, b = fakes(weights...), fakes(weights...)
			}
			// Replica b lists the servers in another order.
			shuffled := append(b[5:], b[:5]...)
			for i, j := 0, len(shuffled)-1; i < j; i, j = i+1, j-1 {
				shuffled[i], shuffled[j] = shuffled[j], shuffled[i]
			}
			cs := conns(policy, 10000)
			pa := mustNew(t, policy, a, Options{LoadFactor: 1.25})
			pb := mustNew(t, policy, shuffled, Options{LoadFactor: 1.25})
			oa, ob := owners(pa, cs), owners(pb, cs)
			seen := map[string]bool{}
			for i := range cs {
				if oa[i] != ob[i] {
					t.Fatalf("%s weighted=%v key %d: replica a %s, replica b %s", policy, weighted, i, oa[i], ob[i])
				}
				seen[oa[i]] = true
			}
			if len(seen) != len(weights) {
				t.Errorf("%s weighted=%v: only %d servers own keys", policy, weighted, len(seen))
			}
		}
	}
}

// moved compares owners before and after a change of the server list.
// It fails on any key that moved to a server other than to (or, with to
// "", any key not owned by gone that moved), and returns the moved share.
func moved(t *testing.T, before, after []string, gone, to string) float64 {
	t.Helper()
	n := 0
	for i := range before {
		if before[i] == after[i] {
			continue
		}
		n++
		if (gone != "" && before[i] != gone) || (to != "" && after[i] != to) {
			t.Fatalf("key %d moved %s → %s (removed %q, added %q)", i, before[i], after[i], gone, to)
		}
	}
	return float64(n) / float64(len(before))
}

func within(t *testing.T, what string, got, want float64) {
	t.Helper()
	t.Logf("%s: %.4f (ideal %.4f)", what, got, want)
	if got < 0.6*want || got > 1.4*want {
		t.Errorf("%s: %.4f outside %.4f..%.4f", what, got, 0.6*want, 1.4*want)
	}
}

func TestHashMinimalMovement(t *testing.T) {
	cs := conns("client_id", 20000)
	for n := 3; n <= 10; n++ {
		for _, heavy := range []bool{false, true} {
			fs := equalFakes(n + 1) // the last one is the server added
			if heavy {
				fs[0].weight, fs[n].weight = 2, 2
			}
			total := float64(n)
			if heavy {
				total++
			}
			base := owners(mustNew(t, "client_id", fs[:n], Options{}), cs)
			label := fmt.Sprintf("N=%d heavy=%v", n, heavy)
			share := 0.0
			for _, o := range base {
				if o == "s0" {
					share++
				}
			}
			within(t, label+" s0 share", share/float64(len(cs)), float64(fs[0].weight)/total)

			g := n / 2
			if heavy {
				g = 0 // remove the weight-2 server
			}
			gone := fs[g]
			rest := append(append([]*fakeServer{}, fs[:g]...), fs[g+1:n]...)
			after := owners(mustNew(t, "client_id", rest, Options{}), cs)
			within(t, label+" remove "+gone.name, moved(t, base, after, gone.name, ""), float64(gone.weight)/total)

			added := fs[n]
			after = owners(mustNew(t, "client_id", fs, Options{}), cs)
			within(t, label+" add "+added.name, moved(t, base, after, "", added.name), float64(added.weight)/(total+float64(added.weight)))
		}
	}
}

func TestHashBoundedLoad(t *testing.T) {
	const factor = 1.25
	for _, weights := range [][]int{{1, 1, 1, 1}, {1, 2, 3, 2}} {
		fs := fakes(weights...)
		unbounded := mustNew(t, "client_id", fs, Options{})
		bounded := mustNew(t, "client_id", fs, Options{LoadFactor: factor})
		// Skewed keys: 2,000 connections whose owner is s0.
		var skewed []*Conn
		for i := 0; len(skewed) < 2000; i++ {
			if c := clientConn(fmt.Sprint("k", i)); unbounded.Pick(c, nil) == fs[0] {
				skewed = append(skewed, c)
			}
		}
		totalWeight := 0
		for _, w := range weights {
			totalWeight += w
		}
		// The bound of consistent.go: the fair share times the factor, plus
		// one connection of slack per unit of weight.
		bound := func(total int64, s *fakeServer) int64 {
			return int64(math.Ceil(factor*float64(total)*float64(s.weight)/float64(totalWeight))) + int64(s.weight)
		}
		for i, c := range skewed {
			s := bounded.Pick(c, nil).(*fakeServer)
			if b := bound(int64(i)+1, s); s.Active() >= b {
				t.Fatalf("weights %v conn %d: %s has %d, bound %d", weights, i, s.name, s.Active(), b)
			}
			s.active.Add(1)
		}
		for _, s := range fs {
			if b := bound(int64(len(skewed)), s); s.Active() > b {
				t.Errorf("weights %v: %s ends with %d, bound %d", weights, s.name, s.Active(), b)
			}
		}
		if got, b := fs[0].Active(), bound(int64(len(skewed)), fs[0]); got < b-1 {
			t.Errorf("weights %v: owner s0 has %d, want it filled to its bound %d", weights, got, b)
		}
	}
}

func TestHashBoundedKeepsOwnersWhenBalanced(t *testing.T) {
	fs := equalFakes(5)
	cs := conns("client_id", 10000)
	want := owners(mustNew(t, "client_id", fs, Options{}), cs)
	bounded := mustNew(t, "client_id", fs, Options{LoadFactor: 1.25})
	// Idle servers: the first choice is the owner.
	for i, got := range owners(bounded, cs) {
		if got != want[i] {
			t.Fatalf("idle servers, key %d: %s, want owner %s", i, got, want[i])
		}
	}
	// Placing ordinary keys one after another keeps most on their owner.
	kept := 0
	for i, c := range cs {
		s := bounded.Pick(c, nil).(*fakeServer)
		if s.name == want[i] {
			kept++
		}
		s.active.Add(1)
	}
	t.Logf("uniform keys, factor 1.25: %.3f on their owner", float64(kept)/float64(len(cs)))
	if kept < len(cs)*3/4 {
		t.Errorf("only %d of %d keys on their owner", kept, len(cs))
	}
}

func TestHashOverBoundFallsBack(t *testing.T) {
	fs := equalFakes(2)
	fs[0].active.Store(10) // bound ceil(1.25*11/2) = 7: over it
	p := mustNew(t, "client_id", fs, Options{LoadFactor: 1.25})
	if got := p.Pick(clientConn("x"), skipping("s1")); got != fs[0] {
		t.Errorf("only s0 usable, over its bound: got %s, want s0 anyway", name(got))
	}
	if got := p.Pick(clientConn("x"), nil); got != fs[1] {
		t.Errorf("s0 over its bound: got %s, want s1", name(got))
	}
}

func TestHashKeys(t *testing.T) {
	fs := equalFakes(7)
	byIP := mustNew(t, "source_ip", fs, Options{})
	byID := mustNew(t, "client_id", fs, Options{})
	byUser := mustNew(t, "username", fs, Options{})
	for i := range 1000 {
		c := ipConn(i)
		want := byIP.Pick(c, nil)
		if got := byID.Pick(c, nil); got != want {
			t.Fatalf("empty client id from %v: %s, want the source_ip choice %s", c.Source, name(got), name(want))
		}
		if got := byUser.Pick(c, nil); got != want {
			t.Fatalf("empty username from %v: %s, want the source_ip choice %s", c.Source, name(got), name(want))
		}
		mapped := &Conn{Source: netip.AddrFrom16(c.Source.As16())}
		if got := byIP.Pick(mapped, nil); got != want {
			t.Fatalf("%v as IPv4-mapped IPv6: %s, want %s", c.Source, name(got), name(want))
		}
	}
	// One IP, many clients: client_id and username hash their own key.
	seenID, seenUser := map[string]bool{}, map[string]bool{}
	for i := range 200 {
		c := &Conn{ClientID: fmt.Sprint("c", i), Username: fmt.Sprint("u", i), Source: netip.MustParseAddr("192.0.2.9")}
		seenID[name(byID.Pick(c, nil))] = true
		seenUser[name(byUser.Pick(c, nil))] = true
	}
	if len(seenID) != len(fs) || len(seenUser) != len(fs) {
		t.Errorf("200 clients behind one IP reached %d (client_id) and %d (username) of %d servers", len(seenID), len(seenUser), len(fs))
	}
}
