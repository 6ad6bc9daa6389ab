package auth

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/mqlb/mqlb/internal/authhttp"
)

// httpBackend POSTs the request to a service: 200 with {"result":"allow",
// "acl":[...]} or {"result":"deny"}; anything else is an error.
type httpBackend struct {
	url    string
	client *http.Client
}

func newHTTPBackend(url string) *httpBackend {
	return &httpBackend{url: url, client: authhttp.NewClient(16)}
}

func (h *httpBackend) Authenticate(ctx context.Context, r Request) (Decision, error) {
	allow, a, err := authhttp.Ask(ctx, h.client, h.url, &r, 1<<20)
	if err != nil {
		return Decision{}, err
	}
	if !allow {
		return Decision{Result: Deny}, nil
	}
	var es []aclEntry
	if len(a.ACL) > 0 {
		if err := json.Unmarshal(a.ACL, &es); err != nil {
			return Decision{}, fmt.Errorf("answer acl: %w", err)
		}
	}
	rules, err := toRules(es)
	if err != nil {
		return Decision{}, fmt.Errorf("answer acl: %w", err)
	}
	return Decision{Result: Allow, ACL: rules}, nil
}

func (h *httpBackend) Close() error {
	h.client.CloseIdleConnections()
	return nil
}
