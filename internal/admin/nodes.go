package admin

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
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
	return s.sendNodes(ctx, http.MethodGet, path)
}

// sendNodes sends method path to every node at once.
func (s *Server) sendNodes(ctx context.Context, method, path string) []nodeAnswer {
	out := make([]nodeAnswer, len(s.nodes))
	var wg sync.WaitGroup
	for i, n := range s.nodes {
		out[i] = nodeAnswer{Name: n.Name, URL: n.URL}
		wg.Go(func() {
			data, err := callNode(ctx, n, method, path)
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

func callNode(ctx context.Context, n Node, method, path string) (json.RawMessage, error) {
	req, err := http.NewRequestWithContext(ctx, method, n.URL+path, nil)
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

// clients is GET /api/v1/clients?q=…&offset=N&limit=N on the load
// balancer: every node's clients matching q. offset and limit are checked
// as a node checks them (internal/node's apiClients) before any node is
// asked: a bad one is this request's 400, not each node's inside a 200.
func (s *Server) clients(w http.ResponseWriter, r *http.Request) {
	v := url.Values{}
	for _, k := range []string{"q", "offset", "limit"} {
		if x := r.URL.Query().Get(k); x != "" {
			v.Set(k, x)
		}
	}
	for _, p := range []struct {
		name  string
		least int
	}{{"offset", 0}, {"limit", 1}} {
		if x := v.Get(p.name); x != "" {
			if n, err := strconv.Atoi(x); err != nil || n < p.least {
				writeError(w, http.StatusBadRequest, p.name+": want a whole number of at least "+strconv.Itoa(p.least))
				return
			}
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"nodes": s.askNodes(r.Context(), "/api/v1/clients?"+v.Encode())})
}

// kickClient is DELETE /api/v1/clients/{id} on the load balancer: every
// node is asked to disconnect the client; 404 when none had it connected.
func (s *Server) kickClient(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	answers := s.sendNodes(r.Context(), http.MethodDelete, "/api/v1/clients/"+url.PathEscape(id))
	for _, a := range answers {
		if a.Error == "" {
			s.log.Info("client kicked on a node through the admin API", "client_id", id, "node", a.Name, "remote", r.RemoteAddr)
			writeJSON(w, http.StatusOK, map[string]any{"client_id": id, "node": a.Name, "kicked": true})
			return
		}
	}
	writeJSON(w, http.StatusNotFound, map[string]any{"error": "no node has client " + strconv.Quote(id) + " connected", "nodes": answers})
}
