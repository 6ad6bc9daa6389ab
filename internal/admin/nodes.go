package admin

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync"
	"time"
)

// Node is a broker node's admin API that the load balancer's API and
// dashboard show (GET /api/v1/cluster, GET /api/v1/clients): mqlb up
// sets them; with brokers that are not mqlb nodes there are none.
type Node struct {
	Name  string // the server it is, by name
	URL   string // http://host:port
	Token string // its admin token, if any
}

// SetNodes sets the nodes to ask; call before Serve.
func (s *Server) SetNodes(nodes []Node) { s.nodes = nodes }

// nodeAnswer is one node's answer in a fan-out.
type nodeAnswer struct {
	Name  string          `json:"name"`
	URL   string          `json:"url"`
	Error string          `json:"error,omitempty"`
	Data  json.RawMessage `json:"data,omitempty"`
}

var nodeClient = &http.Client{Timeout: 3 * time.Second}

// askNodes GETs path from every node at once.
func (s *Server) askNodes(ctx context.Context, path string) []nodeAnswer {
	out := make([]nodeAnswer, len(s.nodes))
	var wg sync.WaitGroup
	for i, n := range s.nodes {
		out[i] = nodeAnswer{Name: n.Name, URL: n.URL}
		wg.Go(func() {
			data, err := getNode(ctx, n, path)
			if err != nil {
				out[i].Error = err.Error()
				return
			}
			out[i].Data = data
		})
	}
	wg.Wait()
	return out
}

func getNode(ctx context.Context, n Node, path string) (json.RawMessage, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, n.URL+path, nil)
	if err != nil {
		return nil, err
	}
	if n.Token != "" {
		req.Header.Set("Authorization", "Bearer "+n.Token)
	}
	resp, err := nodeClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", resp.Status, b)
	}
	if !json.Valid(b) {
		return nil, fmt.Errorf("not JSON")
	}
	return b, nil
}

// cluster is GET /api/v1/cluster on the load balancer: each node's view
// ("nodes": [] when the brokers are not known mqlb nodes).
func (s *Server) cluster(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"nodes": s.askNodes(r.Context(), "/api/v1/cluster")})
}

// clients is GET /api/v1/clients?q=… on the load balancer: every node's
// clients matching q.
func (s *Server) clients(w http.ResponseWriter, r *http.Request) {
	v := url.Values{}
	for _, k := range []string{"q", "offset", "limit"} {
		if x := r.URL.Query().Get(k); x != "" {
			v.Set(k, x)
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"nodes": s.askNodes(r.Context(), "/api/v1/clients?"+v.Encode())})
}
