package bench

import (
	"fmt"
	"time"

	"github.com/mqlb/mqlb/internal/mqttwire"
)

// readLoop reads and handles packets until the connection ends.
func (c *lite) readLoop() {
	defer close(c.dead)
	var buf []byte
	for {
		first, body, grown, err := readPacket(c.br, buf)
		buf = grown
		if err == nil {
			err = c.handle(first, body)
		}
		if err != nil {
			c.fail(err)
			return
		}
	}
}

func (c *lite) handle(first byte, body []byte) error {
	switch typ := first >> 4; typ {
	case typePublish:
		return c.onPublish(first&0x0f, body)
	case typePuback, typePubrec, typePubcomp:
		return c.onAck(typ, body)
	case typePubrel:
		return c.onPubrel(body)
	case typeSuback:
		id, code, err := parseSuback(body, c.version)
		if err == nil {
			err = c.settle(id, typeSuback)
		}
		if err == nil {
			c.subs <- code
		}
		return err
	case typePingresp:
		return nil
	case typeDisconnect:
		if len(body) > 0 {
			return fmt.Errorf("server sent DISCONNECT 0x%02x", body[0])
		}
		return fmt.Errorf("server sent DISCONNECT")
	default:
		return fmt.Errorf("%w: unexpected packet type %d", errMalformed, typ)
	}
}

// onPublish delivers a PUBLISH and acknowledges it. A QoS 2 message is
// delivered when it first arrives and its id remembered until PUBREL, so a
// resent PUBLISH with the same id is not delivered twice (v3.1.1 §4.3.3
// Method B, v5 §4.3.3).
func (c *lite) onPublish(flags byte, body []byte) error {
	p, err := parsePublish(flags, body, c.version)
	if err != nil {
		return err
	}
	deliver := true
	switch p.qos {
	case 1:
		defer c.queueAck(typePuback, p.id)
	case 2:
		deliver = !c.qos2In[p.id]
		c.qos2In[p.id] = true
		defer c.queueAck(typePubrec, p.id)
	}
	if deliver && c.cc.onMessage != nil {
		c.cc.onMessage(p.payload)
	}
	return nil
}

// onAck handles the server's PUBACK (QoS 1 done), PUBREC (QoS 2: answer
// PUBREL) or PUBCOMP (QoS 2 done). A v5 reason code of 0x80 or more ends
// the flow early [MQTT-4.3.3-4] (v5) and is reported.
func (c *lite) onAck(typ byte, body []byte) error {
	id, code, err := parseAck(body)
	if err != nil {
		return err
	}
	if err := c.settle(id, typ); err != nil {
		return err
	}
	if code >= 0x80 && c.cc.onAckError != nil {
		c.cc.onAckError(fmt.Errorf("publish refused 0x%02x", code))
	}
	if typ == typePubrec && code < 0x80 {
		c.outMu.Lock()
		c.out[id] = typePubcomp
		c.outMu.Unlock()
		c.queueAck(typePubrel, id)
		return nil
	}
	<-c.slots
	return nil
}

// onPubrel releases a received QoS 2 id and completes its flow.
func (c *lite) onPubrel(body []byte) error {
	id, _, err := parseAck(body)
	if err != nil {
		return err
	}
	delete(c.qos2In, id)
	c.queueAck(typePubcomp, id)
	return nil
}

// settle checks that id awaits a packet of type typ and frees the id.
func (c *lite) settle(id uint16, typ byte) error {
	c.outMu.Lock()
	defer c.outMu.Unlock()
	if c.out[id] != typ {
		return fmt.Errorf("%w: packet type %d for id %d, which awaits type %d", errMalformed, typ, id, c.out[id])
	}
	delete(c.out, id)
	return nil
}

func (c *lite) queueAck(typ byte, id uint16) {
	c.enqueue(func(b []byte) []byte { return appendAck(b, typ, id) }, false)
}

// writeLoop writes what was queued, many packets at a time, and a PINGREQ
// when nothing was sent for half the keep alive.
func (c *lite) writeLoop() {
	var tick <-chan time.Time
	if c.keepAlive > 0 {
		t := time.NewTicker(c.keepAlive / 2)
		defer t.Stop()
		tick = t.C
	}
	var spare []byte
	idle := true
	for {
		select {
		case <-c.wake:
		case <-tick:
			if idle {
				c.enqueue(mqttwire.AppendPingreq, false)
			}
			idle = true
			continue
		case <-c.stop:
			c.writeOut(&spare)
			c.conn.Close()
			return
		case <-c.dead:
			return
		}
		if err := c.writeOut(&spare); err != nil {
			c.fail(err)
			return
		}
		idle = false
	}
}

// writeOut swaps the queue for the spare buffer and writes it.
func (c *lite) writeOut(spare *[]byte) error {
	c.mu.Lock()
	b := c.buf
	c.buf = (*spare)[:0]
	c.mu.Unlock()
	c.space.Broadcast()
	*spare = b
	if len(b) == 0 {
		return nil
	}
	c.conn.SetWriteDeadline(time.Now().Add(c.cc.timeout))
	_, err := c.conn.Write(b)
	return err
}
