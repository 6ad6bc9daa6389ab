package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mqlb/mqlb/internal/mqttwire"
)

// highWater is how many bytes of unwritten packets make publishers wait.
const highWater = 256 << 10

// errConnectionLost is returned to callers once the connection has failed.
var errConnectionLost = errors.New("connection lost")

// lite is the bench's own MQTT 3.1.1/5.0 client, for when the client's cost
// must stay small next to what is measured. It speaks exactly what a bench
// needs: CONNECT with a clean session, SUBSCRIBE, PUBLISH at QoS 0, 1 and 2
// in both directions with their acknowledgement flows (v3.1.1 §4.3, v5
// §4.3), PINGREQ and DISCONNECT. It never reconnects, so no session state
// outlives the connection and nothing is ever retransmitted (v3.1.1 §4.4).
//
// Reads go through a 64 KiB buffer. Writes are appended to a buffer that one
// goroutine writes out, many packets per write(2). Acknowledgements the
// client owes are queued without waiting, so that a server blocked on a full
// socket can never deadlock with it; publishers wait while the buffer holds
// more than highWater bytes.
type lite struct {
	conn      net.Conn
	version   byte
	cc        clientConfig
	br        *bufio.Reader
	keepAlive time.Duration

	mu    sync.Mutex
	space *sync.Cond // broadcast when buf was taken for writing or the connection failed
	buf   []byte
	werr  error // sticky: the connection failed
	wake  chan struct{}
	stop  chan struct{} // closed by disconnect
	dead  chan struct{} // closed when the read loop ends

	slots  chan struct{}   // one token per unacknowledged QoS 1/2 publish
	outMu  sync.Mutex      // guards out and nextID
	out    map[uint16]byte // packet id in use → the packet type awaited next
	nextID uint16
	qos2In map[uint16]bool // QoS 2 ids received and not released yet (read loop only)
	subs   chan byte       // SUBACK return codes
	lost   sync.Once
	ending atomic.Bool // disconnect was called: what fails next is expected
}

var _ client = (*lite)(nil)

func connectLite(ctx context.Context, cc clientConfig) (*lite, error) {
	conn, err := cc.dial(ctx)
	if err != nil {
		return nil, fmt.Errorf("connect %s: %w", cc.id, err)
	}
	c := &lite{conn: conn, version: cc.target.Version, cc: cc, br: bufio.NewReaderSize(conn, 64<<10),
		keepAlive: 30 * time.Second, wake: make(chan struct{}, 1), stop: make(chan struct{}),
		dead: make(chan struct{}), out: map[uint16]byte{}, qos2In: map[uint16]bool{}, subs: make(chan byte, 1)}
	c.space = sync.NewCond(&c.mu)
	window, err := c.handshake()
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("connect %s: %w", cc.id, err)
	}
	c.slots = make(chan struct{}, min(max(cc.inflight, 1), window))
	go c.readLoop()
	go c.writeLoop()
	return c, nil
}

// handshake writes the CONNECT and reads the CONNACK; it returns the most
// QoS 1/2 publishes the server accepts unacknowledged.
func (c *lite) handshake() (window int, err error) {
	c.conn.SetDeadline(time.Now().Add(c.cc.timeout))
	defer c.conn.SetDeadline(time.Time{})
	t := c.cc.target
	expiry := uint32(0)
	if c.cc.persistent && c.version == mqttwire.V5 {
		expiry = sessionExpiry
	}
	pkt := mqttwire.AppendConnect(nil, &mqttwire.Connect{Version: c.version, CleanStart: !c.cc.persistent || c.version == mqttwire.V5,
		SessionExpiry: expiry,
		KeepAlive:     uint16(c.keepAlive / time.Second), ClientID: c.cc.id,
		Username: t.Username, HasUsername: t.Username != "", Password: []byte(t.Password), HasPassword: t.Password != ""})
	if _, err := c.conn.Write(pkt); err != nil {
		return 0, err
	}
	first, body, _, err := readPacket(c.br, nil)
	if err != nil {
		return 0, err
	}
	whole := append(mqttwire.AppendVarint([]byte{first}, len(body)), body...)
	if _, code, _, err := mqttwire.ParseConnack(whole, c.version); err != nil {
		return 0, err
	} else if code != 0 {
		return 0, &refusedError{code: code, version: c.version}
	}
	if c.version != mqttwire.V5 {
		return 65535, nil
	}
	_, m, _ := mqttwire.ParseVarint(body[2:]) // ParseConnack checked the property length
	l, err := connackProps(body[2+m:])
	if l.serverKeepAlive >= 0 {
		c.keepAlive = time.Duration(l.serverKeepAlive) * time.Second
	}
	return l.receiveMax, err
}

func (c *lite) subscribe(ctx context.Context, filter string, qos byte) error {
	id := c.allocate(typeSuback)
	if err := c.enqueue(func(b []byte) []byte { return appendSubscribe(b, c.version, id, filter, qos) }, false); err != nil {
		return err
	}
	t := time.NewTimer(c.cc.timeout)
	defer t.Stop()
	select {
	case code := <-c.subs:
		if code >= 0x80 {
			return fmt.Errorf("subscribe %s %q: refused (0x%02x)", c.cc.id, filter, code)
		}
		return nil
	case <-t.C:
		return fmt.Errorf("subscribe %s %q: no SUBACK within %v", c.cc.id, filter, c.cc.timeout)
	case <-c.dead:
		return fmt.Errorf("subscribe %s %q: %w", c.cc.id, filter, errConnectionLost)
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (c *lite) publish(ctx context.Context, topic string, qos byte, payload []byte) error {
	var id uint16
	if qos > 0 {
		if err := c.acquire(ctx); err != nil {
			return err
		}
		id = c.allocate([3]byte{1: typePuback, 2: typePubrec}[qos])
	}
	return c.enqueue(func(b []byte) []byte { return appendPublish(b, c.version, qos, id, topic, payload) }, true)
}

// flush waits until no QoS 1/2 publish is unacknowledged.
func (c *lite) flush(ctx context.Context) error {
	for range cap(c.slots) {
		if err := c.acquire(ctx); err != nil {
			return err
		}
	}
	for range cap(c.slots) {
		<-c.slots
	}
	return nil
}

func (c *lite) disconnect() {
	c.ending.Store(true)
	c.enqueue(func(b []byte) []byte { return mqttwire.AppendDisconnect(b, c.version, 0) }, false)
	close(c.stop) // the write loop writes what is queued, then closes the connection
	select {
	case <-c.dead:
	case <-time.After(time.Second):
		c.conn.Close()
	}
}

// acquire takes a slot for a QoS 1/2 publish, waiting up to the timeout.
func (c *lite) acquire(ctx context.Context) error {
	select {
	case c.slots <- struct{}{}:
		return nil
	default:
	}
	t := time.NewTimer(c.cc.timeout)
	defer t.Stop()
	select {
	case c.slots <- struct{}{}:
		return nil
	case <-t.C:
		return fmt.Errorf("%d publishes unacknowledged for %v: %w", cap(c.slots), c.cc.timeout, context.DeadlineExceeded)
	case <-c.dead:
		return errConnectionLost
	case <-ctx.Done():
		return ctx.Err()
	}
}

// allocate returns a packet id not in use and records what it awaits.
func (c *lite) allocate(awaits byte) uint16 {
	c.outMu.Lock()
	defer c.outMu.Unlock()
	for {
		if c.nextID++; c.nextID != 0 && c.out[c.nextID] == 0 {
			c.out[c.nextID] = awaits
			return c.nextID
		}
	}
}

// enqueue appends a packet for the write loop; with wait it first waits
// while the buffer is over highWater.
func (c *lite) enqueue(appendPkt func([]byte) []byte, wait bool) error {
	c.mu.Lock()
	for wait && len(c.buf) >= highWater && c.werr == nil {
		c.space.Wait()
	}
	err := c.werr
	if err == nil {
		c.buf = appendPkt(c.buf)
	}
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
	return err
}

// fail ends the connection after an error; the first failure not caused by
// disconnect is reported as a lost connection.
func (c *lite) fail(err error) {
	c.mu.Lock()
	if c.werr == nil {
		c.werr = fmt.Errorf("%w: %w", errConnectionLost, err)
	}
	c.mu.Unlock()
	c.space.Broadcast()
	c.conn.Close()
	if !c.ending.Load() && c.cc.onLost != nil {
		c.lost.Do(func() { c.cc.onLost(err) })
	}
}
