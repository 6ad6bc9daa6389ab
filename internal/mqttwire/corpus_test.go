package mqttwire

import (
	"bytes"
	"math/rand/v2"
	"testing"

	"github.com/mochi-mqtt/server/v2/packets"
)

// seedPackets are the fixtures, mochi's own CONNECT fixtures and our
// round-trip encodings.
func seedPackets() [][]byte {
	var seeds [][]byte
	for _, f := range allFixtures() {
		seeds = append(seeds, f.raw)
	}
	for _, tc := range packets.TPacketData[packets.Connect] {
		seeds = append(seeds, tc.RawBytes)
	}
	for _, c := range roundTrips {
		seeds = append(seeds, AppendConnect(nil, &c))
	}
	return seeds
}

// differentialCorpus is the seeds, their mutations, and every connect
// flags byte on packets whose payload matches the flags.
func differentialCorpus() [][]byte {
	var corpus [][]byte
	for i, s := range seedPackets() {
		corpus = append(corpus, s)
		corpus = append(corpus, mutations(s, uint64(i))...)
	}
	for _, v := range []byte{V31, V311, V5} {
		for f := range 256 {
			corpus = append(corpus, rawConnect(v, byte(f)))
		}
	}
	return corpus
}

// mutations of b: every bit flipped, every prefix, other protocol levels,
// every connect flags byte, remaining lengths a little off, and random
// byte changes with and without the length fixed up to match.
func mutations(b []byte, seed uint64) [][]byte {
	var out [][]byte
	for i := range len(b) * 8 {
		m := bytes.Clone(b)
		m[i/8] ^= 1 << (i % 8)
		out = append(out, m)
	}
	for i := range len(b) {
		out = append(out, b[:i])
	}
	if lvl, ok := levelOffset(b); ok {
		for v := range 256 {
			m := bytes.Clone(b)
			m[lvl] = byte(v)
			out = append(out, m)
			if v < 8 || v == 255 {
				continue
			}
			m = bytes.Clone(b)
			m[lvl+1] = byte(v) // the flags follow the level
			out = append(out, m)
		}
	}
	if _, hdr, err := connectHeader(b); err == nil && len(b) >= hdr {
		body := b[hdr:]
		for _, d := range []int{-2, -1, 1, 2} {
			if l := len(body) + d; l >= 0 {
				out = append(out, append(AppendVarint([]byte{0x10}, l), body...))
			}
		}
	}
	return append(out, randomMutations(b, seed, 100)...)
}

// levelOffset finds the protocol level byte of a CONNECT.
func levelOffset(b []byte) (int, bool) {
	_, hdr, err := connectHeader(b)
	if err != nil || len(b) < hdr+2 {
		return 0, false
	}
	off := hdr + 2 + int(b[hdr])<<8 + int(b[hdr+1])
	return off, off+1 < len(b)
}

func randomMutations(b []byte, seed uint64, n int) [][]byte {
	rng := rand.New(rand.NewPCG(seed, 0x6d71746c62))
	var out [][]byte
	for range n {
		m := bytes.Clone(b)
		for range 1 + rng.IntN(3) {
			if len(m) == 0 {
				break
			}
			switch i := rng.IntN(len(m)); rng.IntN(3) {
			case 0:
				m[i] = byte(rng.Uint32())
			case 1:
				m = append(m[:i:i], append([]byte{byte(rng.Uint32())}, m[i:]...)...)
			default:
				m = append(m[:i:i], m[i+1:]...)
			}
		}
		out = append(out, m)
		if _, hdr, err := connectHeader(m); err == nil && len(m) >= hdr {
			out = append(out, append(AppendVarint([]byte{0x10}, len(m)-hdr), m[hdr:]...))
		}
	}
	return out
}

// rawConnect builds a CONNECT with the given flags byte and the payload
// fields the flags announce, without the checks AppendConnect makes.
func rawConnect(version, flags byte) []byte {
	name := "MQTT"
	if version == V31 {
		name = "MQIsdp"
	}
	body := append(appendBinary(nil, name), version, flags, 0, 60)
	if version == V5 {
		body = append(body, 0) // no properties
	}
	body = appendBinary(body, "client")
	if flags&flagWill != 0 {
		if version == V5 {
			body = append(body, 0) // no will properties
		}
		body = appendBinary(appendBinary(body, "will/topic"), "bye")
	}
	if flags&flagUsername != 0 {
		body = appendBinary(body, "user")
	}
	if flags&flagPassword != 0 {
		body = appendBinary(body, "pass")
	}
	return append(AppendVarint([]byte{connectByte}, len(body)), body...)
}

// TestDifferentialMochi decodes the corpus with ours and mochi-mqtt's
// packets package: where both accept, the fields must match; where they
// disagree, a listed disagreement must explain it; and every listed one must
// occur, so that the list stays true.
func TestDifferentialMochi(t *testing.T) {
	seen := make([]int, len(disagreements))
	corpus := differentialCorpus()
	var agreed int
	for _, b := range corpus {
		i, err := differential(b)
		if err != nil {
			t.Fatal(err)
		}
		if i >= 0 {
			seen[i]++
		} else {
			agreed++
		}
	}
	for i, d := range disagreements {
		if seen[i] == 0 {
			t.Errorf("listed disagreement never seen: %s", d.reason)
		}
		t.Logf("%6d × %s", seen[i], d.reason)
	}
	t.Logf("%d inputs, %d agreed", len(corpus), agreed)
}
