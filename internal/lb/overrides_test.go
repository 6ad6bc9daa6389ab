package lb

import (
	"slices"
	"testing"

	"github.com/mqlb/mqlb/internal/config"
)

func fileWith(servers ...config.Server) *config.Config {
	return &config.Config{Upstreams: map[string]*config.Upstream{"u": {Servers: servers}}}
}

func names(c *config.Config) []string {
	var out []string
	for _, s := range c.Upstreams["u"].Servers {
		out = append(out, s.Name+":"+s.Address+":"+string(rune('0'+s.Weight)))
	}
	return out
}

func TestOverridesApply(t *testing.T) {
	a := config.Server{Name: "a", Address: "h:1", Weight: 1}
	b := config.Server{Name: "b", Address: "h:2", Weight: 1}
	c := config.Server{Name: "c", Address: "h:3", Weight: 2}
	file := fileWith(a, b)
	ov := overrides{
		{"u", "a"}: {base: &a, weight: 4},
		{"u", "b"}: {base: &b, removed: true},
		{"u", "c"}: {add: &c},
	}
	eff, kept, dropped := ov.apply(file)
	if got := names(eff); !slices.Equal(got, []string{"a:h:1:4", "c:h:3:2"}) || len(kept) != 3 || dropped != nil {
		t.Fatalf("unchanged file: %v kept %d dropped %v", got, len(kept), dropped)
	}
	if got := names(file); !slices.Equal(got, []string{"a:h:1:1", "b:h:2:1"}) {
		t.Fatalf("the file's config was changed: %v", got)
	}
	// The file changes a's weight, drops b, and gains its own c: each
	// runtime change on those servers yields.
	a2, c2 := a, config.Server{Name: "c", Address: "h:9", Weight: 1}
	a2.Weight = 2
	eff, kept, dropped = ov.apply(fileWith(a2, c2))
	if got := names(eff); !slices.Equal(got, []string{"a:h:1:2", "c:h:9:1"}) || len(kept) != 0 || len(dropped) != 3 {
		t.Fatalf("changed file: %v kept %v dropped %v", got, kept, dropped)
	}
	// A file without the upstream drops its changes.
	if _, kept, dropped = ov.apply(&config.Config{Upstreams: map[string]*config.Upstream{}}); len(kept) != 0 || len(dropped) != 3 {
		t.Fatalf("upstream gone: kept %v dropped %v", kept, dropped)
	}
}
