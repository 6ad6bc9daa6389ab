package up

import "testing"

// TestNodesShareAGeneratedMeshToken: every node of an mqlb up run presents
// the same random route secret, different from another run's.
func TestNodesShareAGeneratedMeshToken(t *testing.T) {
	a, b := &System{opt: Options{Nodes: 3}, token: meshToken()}, &System{opt: Options{Nodes: 3}, token: meshToken()}
	first := a.nodeConfig(1, nil).Mesh.Token
	if len(first) < 32 || first == b.nodeConfig(1, nil).Mesh.Token {
		t.Fatalf("mesh.token %q: want 32 random hex characters per run", first)
	}
	if a.nodeConfig(2, []string{"127.0.0.1:1"}).Mesh.Token != first {
		t.Fatal("nodes of one run have different mesh tokens")
	}
	if err := a.nodeConfig(2, []string{"127.0.0.1:1"}).Validate(); err != nil {
		t.Fatal(err)
	}
}
