package balance

import (
	"fmt"
	"testing"
)

// BenchmarkPick measures one Pick per policy over 3 and 16 servers with
// 1,024 distinct clients. For sticky every client is already in the table
// (the hit path); BenchmarkStickyPlace measures recording new clients.
func BenchmarkPick(b *testing.B) {
	for _, policy := range allPolicies {
		for _, n := range []int{3, 16} {
			b.Run(fmt.Sprintf("%s/servers=%d", policy, n), func(b *testing.B) {
				fs := make([]*fakeServer, n)
				for i := range fs {
					fs[i] = &fakeServer{name: fmt.Sprintf("broker-%02d", i), weight: 1 + i%3}
					fs[i].active.Store(int64(100 + i*7%13))
				}
				p := mustNew(b, policy, fs, Options{LoadFactor: 1.25})
				cs := conns("client_id", 1024)
				if tr, ok := p.(Tracker); ok {
					for _, c := range cs {
						tr.Placed(c, p.Pick(c, nil))
					}
				}
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					if p.Pick(cs[i&1023], nil) == nil {
						b.Fatal("nil pick")
					}
					i++
				}
			})
		}
	}
}

func BenchmarkStickyPlace(b *testing.B) {
	p := mustNew(b, "sticky", equalFakes(3), Options{StickySize: 4096}).(*sticky)
	cs := conns("client_id", 8192)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		c := cs[i&8191]
		s := p.Pick(c, nil)
		p.Placed(c, s)
		p.Released(c, s)
		i++
	}
}
