package balance

import (
	"fmt"
	"testing"
)

// TestAdmitsProgressively: the share of keys admitted follows the share,
// and a key admitted stays admitted as the share grows.
func TestAdmitsProgressively(t *testing.T) {
	const n = 10_000
	was := make([]bool, n)
	for _, share := range []float64{0.05, 0.25, 0.5, 0.75, 1} {
		admitted := 0
		for i := range n {
			ok := Admits(fnv1aString(fmt.Sprint("key", i)), "node1", share)
			if was[i] && !ok {
				t.Fatalf("key %d admitted then refused at share %v", i, share)
			}
			was[i] = ok
			if ok {
				admitted++
			}
		}
		if got := float64(admitted) / n; got < share-0.02 || got > share+0.02 {
			t.Errorf("share %v: %.3f of keys admitted", share, got)
		}
	}
}
