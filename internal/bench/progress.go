package bench

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

// IsTerminal reports whether f is a character device (a terminal), where a
// live progress line makes sense.
func IsTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// progress rewrites one status line on a terminal every second until
// stopped; with a nil writer it does nothing.
type progress struct {
	w     io.Writer
	start time.Time
	line  func(elapsed time.Duration) string
	stopc chan struct{}
	done  sync.WaitGroup
}

func startProgress(w io.Writer, line func(elapsed time.Duration) string) *progress {
	p := &progress{w: w, start: time.Now(), line: line, stopc: make(chan struct{})}
	if w == nil {
		return p
	}
	p.done.Add(1)
	go p.loop()
	return p
}

func (p *progress) loop() {
	defer p.done.Done()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-p.stopc:
			fmt.Fprint(p.w, "\r\033[K") // leave a clean line for the summary
			return
		case <-t.C:
			fmt.Fprintf(p.w, "\r\033[K[%5.1fs] %s", time.Since(p.start).Seconds(), p.line(time.Since(p.start)))
		}
	}
}

// stop ends the line; safe to call more than once.
func (p *progress) stop() {
	select {
	case <-p.stopc:
	default:
		close(p.stopc)
	}
	p.done.Wait()
}

// rateMeter turns a growing counter into a per-second rate between calls.
type rateMeter struct {
	last  int64
	lastT time.Duration
}

func (m *rateMeter) rate(n int64, elapsed time.Duration) float64 {
	dt := (elapsed - m.lastT).Seconds()
	r := 0.0
	if dt > 0 {
		r = float64(n-m.last) / dt
	}
	m.last, m.lastT = n, elapsed
	return r
}
