package node

import (
	"fmt"
	"slices"
	"testing"

	"github.com/mqlb/mqlb/internal/testutil"
)

// group is the members of one shared subscription in a test.
type group []*v5

// on counts what the members received on topic.
func (g group) on(topic string) (perMember []int, payloads []string) {
	for _, m := range g {
		n := 0
		for _, r := range m.all() {
			if r.topic == topic {
				n++
				payloads = append(payloads, r.payload)
			}
		}
		perMember = append(perMember, n)
	}
	return perMember, payloads
}

// joinGroup connects one member per node index, subscribed to shared and,
// plainly, to fence.
func joinGroup(t *testing.T, c *cluster, name, shared, fence string, nodes ...int) group {
	var g group
	for i, n := range nodes {
		m := dialV5(t, c.addr(n), fmt.Sprintf("%s-m%d", name, i), true, 0)
		m.sub(t, shared, 1)
		m.sub(t, fence, 1)
		g = append(g, m)
	}
	return g
}

// deliveredOnce publishes n messages on topic from pub, then checks that
// each group got every one exactly once: it waits for the totals, sends a
// plain fence every member subscribed to, and checks again once all members
// have the fence.
func deliveredOnce(t *testing.T, pub *v5, topic, fence string, n int, groups ...group) [][]int {
	t.Helper()
	var want []string
	for i := range n {
		want = append(want, fmt.Sprintf("%s/%d", topic, i))
		pub.send(t, topic, 1, want[i])
	}
	for _, g := range groups {
		testutil.Eventually(t, waitFor, func() bool { _, p := g.on(topic); return len(p) >= n }, "group on %s: %d deliveries", topic, n)
	}
	pub.send(t, fence, 1, "fence")
	slices.Sort(want)
	var counts [][]int
	for _, g := range groups {
		for _, m := range g {
			m.waitPayload(t, "fence")
		}
		per, got := g.on(topic)
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Fatalf("group received %d messages %q\nwant each of %d exactly once", len(got), got, n)
		}
		counts = append(counts, per)
	}
	return counts
}

func TestSharedSubscriptionLocalFirst(t *testing.T) {
	c := shared(t)
	pub := dialV5(t, c.addr(0), "lf-pub", true, 0)
	everywhere := joinGroup(t, c, "lf-g1", "$share/g1/lf/t", "lf/fence", 0, 1, 2)
	elsewhere := joinGroup(t, c, "lf-g2", "$share/g2/lf/t", "lf/fence", 1, 2)
	plain := dialV5(t, c.addr(2), "lf-plain", true, 0)
	plain.sub(t, "lf/t", 1)
	plain.sub(t, "lf/fence", 1)

	counts := deliveredOnce(t, pub, "lf/t", "lf/fence", 40, everywhere, elsewhere, group{plain})
	t.Logf("local_first: g1 per member (nodes 0, 1, 2) %v, g2 (nodes 1, 2) %v", counts[0], counts[1])
	if g1 := counts[0]; g1[0] != 40 || g1[1] != 0 || g1[2] != 0 {
		t.Errorf("g1 per member %v: want all 40 on the publishing node's member (local_first)", g1)
	}
	if g2 := counts[1]; g2[0] == 0 || g2[1] == 0 {
		t.Errorf("g2 per member %v: want both remote members to get some", g2)
	}
}

func TestSharedSubscriptionPolicies(t *testing.T) {
	c := shared(t)
	for _, policy := range []string{"round_robin", "random"} {
		t.Run(policy, func(t *testing.T) {
			setPolicy(t, c, policy)
			pub := dialV5(t, c.addr(0), policy+"-pub", true, 0)
			g := joinGroup(t, c, policy, "$share/g/"+policy+"/t", policy+"/fence", 0, 1, 2, 2)
			counts := deliveredOnce(t, pub, policy+"/t", policy+"/fence", 80, g)
			t.Logf("%s: per member (nodes 0, 1, 2, 2) %v", policy, counts[0])
			for i, n := range counts[0] {
				if n == 0 {
					t.Errorf("member %d got nothing of 80 (per member %v): want a spread across the cluster", i, counts[0])
				}
			}
		})
	}
}

func setPolicy(t *testing.T, c *cluster, policy string) {
	t.Helper()
	for _, n := range c.nodes {
		cfg := *n.cfg
		cfg.SharedSubscriptions.Policy = policy
		if err := n.Reload(&cfg); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		for _, n := range c.nodes {
			n.mesh.policy.Store("local_first")
		}
	})
}
