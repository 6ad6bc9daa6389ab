package upstream

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// TestPacerSpacing: concurrent waiters get no more turns than the rate
// allows, and those whose turn would come after their deadline are told so.
func TestPacerSpacing(t *testing.T) {
	p := newPacer(200) // about 5.2 ms apart
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	var mu sync.Mutex
	var grants []time.Time
	busy := 0
	var wg sync.WaitGroup
	for range 60 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := p.wait(ctx)
			mu.Lock()
			defer mu.Unlock()
			if errors.Is(err, ErrBusy) {
				busy++
			} else {
				grants = append(grants, time.Now())
			}
		}()
	}
	wg.Wait()
	limit := int(150*time.Millisecond/p.interval) + 1
	if busy == 0 || len(grants) < 10 || len(grants) > limit {
		t.Errorf("%d granted, %d busy in 150 ms at 200/s; want at most %d granted", len(grants), busy, limit)
	}
}
