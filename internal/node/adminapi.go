package node

import (
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"strings"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// adminRoutes adds the node's JSON admin API:
//
//	GET    /api/v1/clients?q=…&offset=N&limit=N   clients whose id contains q, by id, paged
//	DELETE /api/v1/clients/{id}                   disconnect a client (v5: DISCONNECT 0x98)
//	GET    /api/v1/clients/{id}/subscriptions     a client's subscriptions
//	GET    /api/v1/cluster                        members, store, retained, mesh interest
func (n *Node) adminRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/v1/clients", n.apiClients)
	mux.HandleFunc("DELETE /api/v1/clients/{id}", n.apiKick)
	mux.HandleFunc("GET /api/v1/clients/{id}/subscriptions", n.apiSubscriptions)
	mux.HandleFunc("GET /api/v1/cluster", n.apiCluster)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}

// clientJSON is one client in GET /api/v1/clients.
type clientJSON struct {
	ID            string `json:"client_id"`
	Username      string `json:"username,omitempty"`
	Remote        string `json:"remote"`
	Listener      string `json:"listener"`
	Protocol      byte   `json:"protocol"`
	Connected     bool   `json:"connected"`
	Subscriptions int    `json:"subscriptions"`
	Inflight      int    `json:"inflight"`
	Node          string `json:"node"`
}

func (n *Node) clientJSON(cl *mqtt.Client) clientJSON {
	c := clientJSON{ID: cl.ID, Username: string(cl.Properties.Username), Remote: cl.Net.Remote,
		Listener: cl.Net.Listener, Protocol: cl.Properties.ProtocolVersion, Connected: !cl.Closed(),
		Subscriptions: cl.State.Subscriptions.Len(), Inflight: cl.State.Inflight.Len(), Node: n.name}
	if !c.Connected {
		if v := n.sessions.RecordedVersion(cl); v != 0 {
			c.Protocol = v // an offline session restored from the registry
		}
	}
	return c
}

// apiClients lists clients (and offline sessions held here) whose id
// contains q (a prefix is a substring), sorted by id.
func (n *Node) apiClients(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	offset, ok1 := intParam(w, q.Get("offset"), "offset", 0, 0)
	limit, ok2 := intParam(w, q.Get("limit"), "limit", 100, 1)
	if !ok1 || !ok2 {
		return
	}
	limit = min(limit, 1000)
	var match []*mqtt.Client
	for _, cl := range n.broker.Clients.GetAll() {
		if !isMesh(cl) && strings.Contains(cl.ID, q.Get("q")) {
			match = append(match, cl)
		}
	}
	slices.SortFunc(match, func(a, b *mqtt.Client) int { return strings.Compare(a.ID, b.ID) })
	page := match[min(offset, len(match)):min(offset+limit, len(match))]
	out := make([]clientJSON, 0, len(page))
	for _, cl := range page {
		out = append(out, n.clientJSON(cl))
	}
	writeJSON(w, http.StatusOK, map[string]any{"node": n.name, "total": len(match), "offset": offset, "clients": out})
}

func intParam(w http.ResponseWriter, v, name string, def, least int) (int, bool) {
	if v == "" {
		return def, true
	}
	i, err := strconv.Atoi(v)
	if err != nil || i < least {
		writeError(w, http.StatusBadRequest, name+": want a whole number of at least "+strconv.Itoa(least))
		return 0, false
	}
	return i, true
}

func (n *Node) client(w http.ResponseWriter, r *http.Request) *mqtt.Client {
	id := r.PathValue("id")
	cl, ok := n.broker.Clients.Get(id)
	if !ok || isMesh(cl) {
		writeError(w, http.StatusNotFound, "no client "+strconv.Quote(id)+" on node "+n.name)
		return nil
	}
	return cl
}

// apiKick disconnects a client: MQTT 5 clients get DISCONNECT with reason
// 0x98 administrative action; earlier versions have their connection closed.
// A persistent session stays (the client may come back).
func (n *Node) apiKick(w http.ResponseWriter, r *http.Request) {
	cl := n.client(w, r)
	if cl == nil {
		return
	}
	if cl.Closed() {
		writeError(w, http.StatusConflict, "client "+strconv.Quote(cl.ID)+" is not connected (its session is held offline)")
		return
	}
	if cl.Properties.ProtocolVersion == 5 {
		_ = n.broker.DisconnectClient(cl, packets.ErrAdministrativeAction)
	} else {
		cl.Stop(packets.ErrAdministrativeAction)
	}
	n.log.Info("client kicked through the admin API", "client_id", cl.ID, "remote", r.RemoteAddr)
	writeJSON(w, http.StatusOK, map[string]any{"client_id": cl.ID, "node": n.name, "kicked": true})
}

// subscriptionJSON is one subscription of a client.
type subscriptionJSON struct {
	Filter            string `json:"filter"`
	QoS               byte   `json:"qos"`
	NoLocal           bool   `json:"no_local,omitempty"`
	RetainAsPublished bool   `json:"retain_as_published,omitempty"`
	RetainHandling    byte   `json:"retain_handling,omitempty"`
	Identifier        int    `json:"identifier,omitempty"`
}

func (n *Node) apiSubscriptions(w http.ResponseWriter, r *http.Request) {
	cl := n.client(w, r)
	if cl == nil {
		return
	}
	out := []subscriptionJSON{}
	for _, s := range cl.State.Subscriptions.GetAll() {
		out = append(out, subscriptionJSON{Filter: s.Filter, QoS: s.Qos, NoLocal: s.NoLocal,
			RetainAsPublished: s.RetainAsPublished, RetainHandling: s.RetainHandling, Identifier: s.Identifier})
	}
	slices.SortFunc(out, func(a, b subscriptionJSON) int { return strings.Compare(a.Filter, b.Filter) })
	writeJSON(w, http.StatusOK, map[string]any{"client_id": cl.ID, "node": n.name, "subscriptions": out})
}
