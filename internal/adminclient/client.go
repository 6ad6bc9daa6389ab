// Package adminclient talks to the admin HTTP APIs of the load balancer
// (mqlb run, mqlb up) and of broker nodes (mqlb node): JSON requests with an
// optional bearer token, and the APIs' {"error": "..."} answers turned into
// errors that say what went wrong. mqlb ctl is built on it.
package adminclient

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Client is one admin API.
type Client struct {
	base  string // scheme://host:port, no trailing slash
	token string
	http  *http.Client
}

// New returns a client for the admin API at base ("http://host:port", or
// "host:port" for plain HTTP).
func New(base, token string) (*Client, error) {
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	u, err := url.Parse(base)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, fmt.Errorf("admin URL %q: want http://HOST:PORT", base)
	}
	return &Client{base: strings.TrimRight(base, "/"), token: token, http: &http.Client{Timeout: 15 * time.Second}}, nil
}

// Base returns the API's address.
func (c *Client) Base() string { return c.base }

// Error is an answer other than 2xx.
type Error struct {
	Status  int
	Message string // the API's "error", or the body
	// NoRoute is set when the path does not exist at all (a load balancer
	// asked for a node's API or the other way round, or an older version).
	NoRoute bool
}

func (e *Error) Error() string {
	if e.Status == http.StatusUnauthorized {
		return "401 unauthorized: " + e.Message + " (set --token or MQLB_TOKEN)"
	}
	return fmt.Sprintf("%d %s: %s", e.Status, http.StatusText(e.Status), e.Message)
}

// IsNoRoute reports whether err says the API has no such path.
func IsNoRoute(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.NoRoute
}

// Do sends method path with in (nil: no body) as JSON and returns the
// answer's body, or an *Error.
func (c *Client) Do(ctx context.Context, method, path string, in any) ([]byte, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return nil, err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("admin API %s: %w", c.base, unwrapURL(err))
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("admin API %s: %w", c.base, err)
	}
	if resp.StatusCode/100 != 2 {
		return nil, apiError(resp.StatusCode, b)
	}
	return b, nil
}

// Get decodes GET path's answer into out.
func (c *Client) Get(ctx context.Context, path string, out any) error {
	b, err := c.Do(ctx, http.MethodGet, path, nil)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, out)
}

func apiError(status int, b []byte) *Error {
	var e struct {
		Error   string `json:"error"`
		NoRoute bool   `json:"no_route"` // the server has no such path, or not for this method
	}
	if json.Unmarshal(b, &e) == nil && e.Error != "" {
		return &Error{Status: status, Message: e.Error, NoRoute: e.NoRoute}
	}
	msg := strings.TrimSpace(string(b)) // an older server's net/http text
	return &Error{Status: status, Message: msg,
		NoRoute: status == http.StatusNotFound && msg == "404 page not found" || status == http.StatusMethodNotAllowed}
}

func unwrapURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}
