package balance

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

var allPolicies = []string{"client_id", "least_conn", "random", "round_robin", "source_ip", "sticky", "username"}

func TestNames(t *testing.T) {
	if got := Names(); !slices.Equal(got, allPolicies) {
		t.Fatalf("Names() = %v, want %v", got, allPolicies)
	}
}

func TestNewUnknown(t *testing.T) {
	p, err := New("clientid", nil, Options{})
	if p != nil || err == nil {
		t.Fatalf("New(clientid) = %v, %v; want an error", p, err)
	}
	if !errors.Is(err, ErrUnknownPolicy) {
		t.Errorf("error %v does not wrap ErrUnknownPolicy", err)
	}
	want := `unknown policy "clientid"; want one of ` + strings.Join(allPolicies, ", ")
	if err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
}

func TestRegisterDuplicatePanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("registering round_robin twice did not panic")
		}
	}()
	Register("round_robin", newRoundRobin)
}

func TestNewRejectsBadServers(t *testing.T) {
	dup := fakes(1, 1)
	dup[1].name = dup[0].name
	cases := map[string][]Server{
		"nil server":     {nil},
		"empty name":     {&fakeServer{weight: 1}},
		"duplicate name": asServers(dup),
		"weight 0":       asServers(fakes(1, 0)),
		"weight 257":     asServers(fakes(257)),
	}
	for _, policy := range allPolicies {
		for what, servers := range cases {
			if _, err := New(policy, servers, Options{}); err == nil {
				t.Errorf("%s with %s: no error", policy, what)
			}
		}
	}
}

func TestNewRejectsBadOptions(t *testing.T) {
	cases := []struct {
		policy string
		opts   Options
	}{
		{"client_id", Options{LoadFactor: 0.5}},
		{"source_ip", Options{LoadFactor: -1}},
		{"username", Options{LoadFactor: 0.99}},
		{"sticky", Options{StickyKey: "clientid"}},
		{"sticky", Options{StickySize: -1}},
		{"sticky", Options{StickyTTL: -1}},
	}
	for _, c := range cases {
		if _, err := New(c.policy, asServers(fakes(1)), c.opts); err == nil {
			t.Errorf("%s with %+v: no error", c.policy, c.opts)
		}
	}
	for _, f := range []float64{0, 1, 1.25, 3} {
		if _, err := New("client_id", asServers(fakes(1)), Options{LoadFactor: f}); err != nil {
			t.Errorf("load factor %v: %v", f, err)
		}
	}
}
