package auth

import (
	"errors"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// TestBcryptSlotsCapped: with every bcrypt slot taken, a password check
// waits and then fails as busy instead of adding to the CPU load.
func TestBcryptSlotsCapped(t *testing.T) {
	hash, err := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	if err := comparePassword(hash, []byte("pw")); err != nil {
		t.Fatalf("free slots: %v", err)
	}
	for range cap(bcryptSlots) {
		bcryptSlots <- struct{}{}
	}
	defer func() {
		for range cap(bcryptSlots) {
			<-bcryptSlots
		}
	}()
	old := bcryptWait
	bcryptWait = 10 * time.Millisecond
	defer func() { bcryptWait = old }()
	if err := comparePassword(hash, []byte("pw")); !errors.Is(err, errBusy) {
		t.Fatalf("all %d slots taken: %v, want errBusy", cap(bcryptSlots), err)
	}
}

// TestBudgets: a key is refused once its burst of failures is used,
// failures beyond it run the budget into debt (bounded by maxDebt) that is
// paid back one per FailureEvery, and the table stays bounded.
func TestBudgets(t *testing.T) {
	b := newBudgets()
	now := time.Now()
	for i := range FailureBurst {
		if !b.allows("k", now) {
			t.Fatalf("refused after %d failures", i)
		}
		b.charge("k", now)
	}
	if b.allows("k", now) || !b.allows("other", now) {
		t.Fatal("want k refused and other allowed")
	}
	if !b.spent("k", now) || b.spent("k", now) {
		t.Fatal("spent should report once per episode")
	}
	if !b.allows("k", now.Add(FailureEvery)) {
		t.Fatal("still refused after FailureEvery")
	}
	// 5 more failures checked in parallel before the first counted: 5 more
	// FailureEvery of refusals.
	for range 5 {
		b.charge("k", now)
	}
	if b.allows("k", now.Add(5*FailureEvery)) || !b.allows("k", now.Add(6*FailureEvery)) {
		t.Fatal("a debt of 5 failures should refuse for 5 FailureEvery, then allow")
	}
	for range 10 * maxDebt {
		b.charge("g", now)
	}
	if !b.allows("g", now.Add((maxDebt+1)*FailureEvery)) {
		t.Fatalf("refused after %d FailureEvery: the debt is not bounded by maxDebt", maxDebt+1)
	}
	for i := range maxTracked + 10 {
		b.charge(string(rune(i+1000)), now)
	}
	if len(b.m) > maxTracked {
		t.Fatalf("%d keys tracked, cap %d", len(b.m), maxTracked)
	}
}
