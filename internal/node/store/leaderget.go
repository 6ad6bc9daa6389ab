package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// LeaderGet reads key's latest value and revision in kv from its stream's
// leader. A bucket's Get is a direct get, which any replica answers: one a
// moment behind a write just acknowledged answers with the revision before
// it, and a compare-and-set at that revision fails — as often as it is
// retried while the replica lags (under load, tens of milliseconds and
// more). After a conflict, read here. A removed key (a delete or purge
// marker) is jetstream.ErrKeyNotFound, as from Get, with the marker's
// revision: a compare-and-set writes over the marker at that revision. (A
// create, at revision 0, fails on a marker; nats.go then looks for the marker
// with a direct get, and a replica that has not caught up on it answers
// "not found", which the create reports as the key existing: a conflict as
// often as it is retried.)
//
// nats.go reads from the leader only for streams without allow_direct, and
// buckets are created with it, so this sends the JetStream API's
// STREAM.MSG.GET request (last message for the key's subject) itself.
func (s *Store) LeaderGet(ctx context.Context, kv jetstream.KeyValue, key string) ([]byte, uint64, error) {
	req, err := json.Marshal(struct {
		LastFor string `json:"last_by_subj"`
	}{"$KV." + kv.Bucket() + "." + key})
	if err != nil {
		return nil, 0, err
	}
	subject := jetstream.DefaultAPIPrefix + "STREAM.MSG.GET.KV_" + kv.Bucket()
	msg, err := s.JS.Conn().RequestWithContext(ctx, subject, req)
	if err != nil {
		return nil, 0, err
	}
	var resp struct {
		Error   *jetstream.APIError `json:"error"`
		Message *struct {
			Seq    uint64 `json:"seq"`
			Header []byte `json:"hdrs"`
			Data   []byte `json:"data"`
		} `json:"message"`
	}
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return nil, 0, fmt.Errorf("stream message get: %w", err)
	}
	switch {
	case resp.Error != nil && resp.Error.ErrorCode == jetstream.JSErrCodeMessageNotFound:
		return nil, 0, jetstream.ErrKeyNotFound
	case resp.Error != nil:
		return nil, 0, resp.Error
	case resp.Message == nil:
		return nil, 0, jetstream.ErrInvalidJetStreamResponse
	}
	if len(resp.Message.Header) > 0 {
		h, err := nats.DecodeHeadersMsg(resp.Message.Header)
		if err != nil {
			return nil, 0, err
		}
		if op := h.Get("KV-Operation"); op == "DEL" || op == "PURGE" {
			return nil, resp.Message.Seq, jetstream.ErrKeyNotFound
		}
	}
	return resp.Message.Data, resp.Message.Seq, nil
}

// StreamMsg is one message of a stream as its leader holds it.
type StreamMsg struct {
	Subject string
	Seq     uint64
	Header  nats.Header
	Data    []byte
	Time    time.Time
}

// ErrNoMessage: the leader holds no message on the subject at or after the
// sequence.
var ErrNoMessage = errors.New("stream holds no such message")

// LeaderNext reads from stream's leader the first message at or after
// sequence from on subject (wildcards allowed): ErrNoMessage if there is
// none. A direct get is answered by any replica, from its own copy; this
// one is answered from the copy every acknowledged write is in.
func (s *Store) LeaderNext(ctx context.Context, stream, subject string, from uint64) (*StreamMsg, error) {
	req, err := json.Marshal(struct {
		Seq     uint64 `json:"seq"`
		NextFor string `json:"next_by_subj"`
	}{from, subject})
	if err != nil {
		return nil, err
	}
	msg, err := s.JS.Conn().RequestWithContext(ctx, jetstream.DefaultAPIPrefix+"STREAM.MSG.GET."+stream, req)
	if err != nil {
		return nil, err
	}
	var resp struct {
		Error   *jetstream.APIError `json:"error"`
		Message *struct {
			Subject string    `json:"subject"`
			Seq     uint64    `json:"seq"`
			Header  []byte    `json:"hdrs"`
			Data    []byte    `json:"data"`
			Time    time.Time `json:"time"`
		} `json:"message"`
	}
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return nil, fmt.Errorf("stream message get: %w", err)
	}
	switch {
	case resp.Error != nil && resp.Error.ErrorCode == jetstream.JSErrCodeMessageNotFound:
		return nil, ErrNoMessage
	case resp.Error != nil:
		return nil, resp.Error
	case resp.Message == nil:
		return nil, jetstream.ErrInvalidJetStreamResponse
	}
	out := &StreamMsg{Subject: resp.Message.Subject, Seq: resp.Message.Seq, Data: resp.Message.Data, Time: resp.Message.Time}
	if len(resp.Message.Header) > 0 {
		if out.Header, err = nats.DecodeHeadersMsg(resp.Message.Header); err != nil {
			return nil, err
		}
	}
	return out, nil
}
