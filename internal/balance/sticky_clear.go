package balance

// StickyClearer is implemented by the sticky policy: the admin API's
// DELETE /api/v1/sticky/{upstream}[?key=…].
type StickyClearer interface {
	// Clear removes key's entry, or every entry when key is empty, and
	// returns how many it removed. Connections placed by a removed entry go
	// on; when they close nothing is counted down.
	Clear(key string) int
}

var _ StickyClearer = (*sticky)(nil)

// Clear implements StickyClearer.
func (p *sticky) Clear(key string) int {
	p.adopt.Do(p.takeOver)
	p.mu.Lock()
	defer p.mu.Unlock()
	t := p.table
	if key == "" {
		n := len(t.m)
		for _, e := range t.m {
			t.remove(e)
		}
		return n
	}
	n := 0
	for k, e := range t.m {
		if k.String() == key { // a key is a client id, a username or an IP
			t.remove(e)
			n++
		}
	}
	return n
}
