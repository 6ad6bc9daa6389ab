package config

// Rebalance moves connections from over-loaded servers (by closing them: the
// client reconnects and lands per the policy) until the live distribution is
// within Tolerance of what the policy would produce.
type Rebalance struct {
	Rate      float64  `yaml:"rate"`      // connections closed per second at most; 0 = off
	Tolerance float64  `yaml:"tolerance"` // relative deviation allowed per server (0.1 = 10%)
	MinAge    Duration `yaml:"min_age"`   // never move a connection younger than this
}

// changeDefaults fills the keys of "when the cluster changes".
func (u *Upstream) changeDefaults() {
	if u.Rebalance.Tolerance == 0 {
		u.Rebalance.Tolerance = 0.1
	}
	defaultDuration(&u.Rebalance.MinAge, 30e9)
	if u.MaxConnectQueue == 0 {
		u.MaxConnectQueue = 10_000
	}
}

// changes validates them.
func (ck *check) changes(p string, u *Upstream) {
	r := u.Rebalance
	if r.Rate < 0 {
		ck.errorf(p+".rebalance.rate", "must be zero (off) or more connections per second")
	}
	if r.Rate > 0 && u.Balance == "sticky" {
		ck.errorf(p+".rebalance.rate", "rebalancing does not apply to balance: sticky (the sticky table sends a moved client back); use evacuation or another policy")
	}
	if r.Tolerance <= 0 || r.Tolerance >= 1 {
		ck.errorf(p+".rebalance.tolerance", "want a fraction between 0 and 1 such as 0.1, got %v", r.Tolerance)
	}
	if u.MaxConnectRate < 0 {
		ck.errorf(p+".max_connect_rate", "must be zero (no limit) or more connections per second")
	}
	if u.MaxConnectQueue < 1 {
		ck.errorf(p+".max_connect_queue", "must be 1 or more")
	}
}
