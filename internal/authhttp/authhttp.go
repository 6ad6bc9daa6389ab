// Package authhttp is the HTTP auth contract shared by the load balancer
// (upstreams' auth: type http) and the nodes (auth.backends type http):
// a POST of Request as JSON, answered 200 with {"result":"allow"} or
// {"result":"deny"} (nodes also read an optional "acl"); anything else
// fails closed.
package authhttp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	neturl "net/url"
	"time"
	"unicode"
)

// Request is the JSON body POSTed to the authentication service.
type Request struct {
	ClientID        string `json:"client_id"`
	Username        string `json:"username"`
	Password        string `json:"password"`
	CertIdentity    string `json:"cert_identity"`
	Remote          string `json:"remote"`
	ProtocolVersion byte   `json:"protocol_version"`
}

// Answer is a service's 200 body; ACL is left raw for the nodes to read.
type Answer struct {
	Result string          `json:"result"`
	ACL    json.RawMessage `json:"acl"`
}

// NewClient returns the client both sides ask their service with. It follows
// no redirect: a 3xx is "another status", which fails closed. Followed, a
// 302 to any URL answering {"result":"allow"} let a client in, and a 307
// re-POSTed the body, password included, to whatever origin it named.
func NewClient(maxIdlePerHost int) *http.Client {
	return &http.Client{
		Transport:     &http.Transport{MaxIdleConnsPerHost: maxIdlePerHost, IdleConnTimeout: time.Minute},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// Ask POSTs r to url and reads at most limit bytes of the answer. Errors
// never quote the body sent (it holds the password), nor the URL's user
// info, query or fragment (an API key in ?api_key=...): they are logged, by
// the LB in its warning and every refused client's access-log record.
func Ask(ctx context.Context, client *http.Client, url string, r *Request, limit int64) (bool, Answer, error) {
	body, err := json.Marshal(r)
	if err != nil {
		return false, Answer{}, err
	}
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return false, Answer{}, redactError(err)
	}
	hr.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(hr)
	if err != nil {
		return false, Answer{}, redactError(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, limit))
	if err != nil {
		return false, Answer{}, err
	}
	return Parse(resp.StatusCode, data)
}

// redactError rewrites the URL that net/http's errors quote ("Post
// \"http://user:***@host/path?api_key=...\": context deadline exceeded") to
// RedactURL's form; the error still unwraps to its cause.
func redactError(err error) error {
	var ue *neturl.Error
	if !errors.As(err, &ue) {
		return err
	}
	c := *ue
	c.URL = RedactURL(ue.URL)
	if ue == err {
		return &c
	}
	// Not at the top (not so in net/http today): the text cannot be
	// trusted, so only the cause is kept.
	return fmt.Errorf("%s %q: %w", c.Op, c.URL, c.Err)
}

// RedactURL returns u without user info, query and fragment: scheme, host
// and path only. A URL that does not parse is not quoted at all.
func RedactURL(u string) string {
	p, err := neturl.Parse(u)
	if err != nil {
		return "(unparsable URL)"
	}
	p.User, p.RawQuery, p.ForceQuery, p.Fragment, p.RawFragment = nil, "", false, "", ""
	return p.String()
}

// Parse reads a service's answer: true for allow, false for deny, an error
// for anything else (fail closed), an object with a key twice included.
func Parse(status int, body []byte) (bool, Answer, error) {
	if status >= 300 && status < 400 {
		return false, Answer{}, fmt.Errorf("HTTP status %d: a redirect, not followed (want 200 with allow or deny)", status)
	}
	if status != http.StatusOK {
		return false, Answer{}, fmt.Errorf("HTTP status %d", status)
	}
	var a Answer
	if err := json.Unmarshal(body, &a); err != nil {
		return false, Answer{}, fmt.Errorf("answer is not JSON: %w", err)
	}
	if err := uniqueKeys(body); err != nil {
		return false, Answer{}, err
	}
	switch a.Result {
	case "allow":
		return true, a, nil
	case "deny":
		return false, a, nil
	}
	return false, Answer{}, fmt.Errorf("answer result %q: want allow or deny", a.Result)
}

// uniqueKeys refuses an answer with an object, at any depth, holding two
// keys that encoding/json takes for one field: equal, or equal but for
// case (bytes.EqualFold, as it matches field names). It keeps the last,
// so {"result":"deny","result":"allow"} was an allow: an ambiguous answer
// fails closed as malformed. body is valid JSON.
func uniqueKeys(body []byte) error {
	type frame struct {
		keys    map[string]struct{} // nil for an array
		wantKey bool
	}
	var stack []*frame
	d := json.NewDecoder(bytes.NewReader(body))
	for {
		tok, err := d.Token()
		if err != nil { // io.EOF; anything else Unmarshal reported
			return nil
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		if top != nil && top.keys != nil && top.wantKey {
			k, ok := tok.(string)
			if !ok { // the object's '}'
				stack = stack[:len(stack)-1]
				continue
			}
			f := foldKey(k)
			if _, dup := top.keys[f]; dup {
				if len(k) > 64 {
					k = k[:64] + "..."
				}
				return fmt.Errorf("answer is malformed: key %q twice in one object", k)
			}
			top.keys[f] = struct{}{}
			top.wantKey = false
			continue
		}
		if top != nil && top.keys != nil {
			top.wantKey = true // after this value, a key or '}'
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, &frame{keys: map[string]struct{}{}, wantKey: true})
		case json.Delim('['):
			stack = append(stack, &frame{})
		case json.Delim(']'):
			stack = stack[:len(stack)-1]
		}
	}
}

// foldKey maps keys equal under bytes.EqualFold to one string: each rune
// becomes the least of its simple case-folding orbit.
func foldKey(k string) string {
	b := make([]rune, 0, len(k))
	for _, r := range k {
		m := r
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			m = min(m, f)
		}
		b = append(b, m)
	}
	return string(b)
}
