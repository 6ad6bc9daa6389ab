package store

import (
	"context"
	"encoding/json"
	"fmt"

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
