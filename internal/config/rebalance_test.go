package config

import (
	"strings"
	"testing"
	"time"
)

func TestChangesDefaults(t *testing.T) {
	c, err := Parse([]byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	u := c.Upstreams["brokers"]
	if u.Rebalance.Rate != 0 || u.Rebalance.Tolerance != 0.1 || u.Rebalance.MinAge.D() != 30*time.Second ||
		u.SlowStart != 0 || u.MaxConnectRate != 0 || u.MaxConnectQueue != 10_000 || u.ConnackTimeout.D() != 3*time.Second {
		t.Errorf("defaults: rebalance %+v slow_start %v max_connect_rate %v queue %d connack %v",
			u.Rebalance, u.SlowStart, u.MaxConnectRate, u.MaxConnectQueue, u.ConnackTimeout)
	}
}

func TestChangesErrors(t *testing.T) {
	for _, tc := range []struct{ name, yaml, want string }{
		{"negative rate", minimal + "    rebalance: { rate: -1 }\n",
			`upstreams.brokers.rebalance.rate (line 11): must be zero (off) or more`},
		{"tolerance", minimal + "    rebalance: { rate: 5, tolerance: 1.5 }\n",
			`upstreams.brokers.rebalance.tolerance (line 11): want a fraction between 0 and 1`},
		{"sticky", minimal + "    balance: sticky\n    rebalance: { rate: 5 }\n",
			`upstreams.brokers.rebalance.rate (line 12): rebalancing does not apply to balance: sticky`},
		{"connect rate", minimal + "    max_connect_rate: -3\n",
			`upstreams.brokers.max_connect_rate (line 11): must be zero (no limit) or more`},
		{"slow start", minimal + "    slow_start: soon\n",
			`upstreams.brokers.slow_start (line 11): want a duration`},
		{"unknown key", minimal + "    rebalance: { rat: 5 }\n",
			`upstreams.brokers.rebalance.rat (line 11): unknown key`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.yaml))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error = %v\nwant it to contain %q", err, tc.want)
			}
		})
	}
}
