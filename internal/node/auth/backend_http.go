package auth

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"
)

// httpBackend POSTs the request to a service: 200 with {"result":"allow",
// "acl":[...]} or {"result":"deny"}; anything else is an error.
type httpBackend struct {
	url    string
	client *http.Client
}

func newHTTPBackend(url string) *httpBackend {
	return &httpBackend{url: url, client: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16, IdleConnTimeout: time.Minute}}}
}

type httpAnswer struct {
	Result string     `json:"result"`
	ACL    []aclEntry `json:"acl"`
}

func (h *httpBackend) Authenticate(ctx context.Context, r Request) (Decision, error) {
	body, err := json.Marshal(r)
	if err != nil {
		return Decision{}, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.url, bytes.NewReader(body))
	if err != nil {
		return Decision{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := h.client.Do(req)
	if err != nil {
		return Decision{}, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return Decision{}, err
	}
	if resp.StatusCode != http.StatusOK {
		return Decision{}, fmt.Errorf("HTTP status %d", resp.StatusCode)
	}
	var a httpAnswer
	if err := json.Unmarshal(data, &a); err != nil {
		return Decision{}, fmt.Errorf("answer is not JSON: %w", err)
	}
	switch a.Result {
	case "deny":
		return Decision{Result: Deny}, nil
	case "allow":
		rules, err := toRules(a.ACL)
		if err != nil {
			return Decision{}, fmt.Errorf("answer acl: %w", err)
		}
		return Decision{Result: Allow, ACL: rules}, nil
	}
	return Decision{}, fmt.Errorf("answer result %q: want allow or deny", a.Result)
}

func (h *httpBackend) Close() error {
	h.client.CloseIdleConnections()
	return nil
}
