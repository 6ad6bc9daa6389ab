package balance

// Keyed is implemented by the hashing policies (source_ip, client_id,
// username). Home is the server a connection's key belongs to among the
// available servers, ignoring the load bound and any skip: where the policy
// would put it on an idle cluster. Rebalancing moves exactly the connections
// that are not on their home server.
type Keyed interface {
	Home(c *Conn) Server
	// KeyHash is the hash of the connection's key (client id, username or
	// source address, as the policy uses).
	KeyHash(c *Conn) uint64
}

var _ Keyed = (*consistent)(nil)

// Home implements Keyed.
func (h *consistent) Home(c *Conn) Server {
	if i := h.best(h.key(c), nil, false, 0, 0); i >= 0 {
		return h.servers[i]
	}
	return nil
}

// KeyHash implements Keyed.
func (h *consistent) KeyHash(c *Conn) uint64 { return h.key(c) }

// slowStartSalt makes a key's admission to a server independent of its rank
// for that server (the rank uses the same key and server hashes).
const slowStartSalt = 0x9e3779b97f4a7c15

// Admits reports whether a server in slow start, at share (0..1) of its
// full weight, takes a connection whose key hashes to key. Each key has a
// fixed threshold per server, so keys are admitted progressively as share
// grows and an admitted key stays admitted: a reconnecting client does not
// flap between servers during the window.
func Admits(key uint64, server string, share float64) bool {
	if share >= 1 {
		return true
	}
	h := fmix64(key ^ serverSeed(server) ^ slowStartSalt)
	return (float64(h>>11)+0.5)/(1<<53) < share
}
