package main

import (
	"log/slog"

	"github.com/mqlb/mqlb/internal/gcpace"
)

// gcPacing is the collector's pacing of a node process
// (process.gc_headroom): started with the node, started again when a reload
// changes the headroom.
type gcPacing struct {
	headroom int
	stop     func()
}

// set paces the collector for headroom bytes (0: Go's default).
func (g *gcPacing) set(headroom int, log *slog.Logger) {
	if g.stop != nil && headroom == g.headroom {
		return
	}
	if g.stop != nil {
		g.stop()
	}
	g.headroom = headroom
	stop, why := gcpace.Start(uint64(headroom))
	g.stop = stop
	if why != "" {
		log.Info("garbage collector: Go's default pacing", "reason", why)
		return
	}
	log.Info("garbage collector paced by headroom", "gc_headroom", headroom, "gogc", gcpace.Percent())
}
