package auth

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mqlb/mqlb/internal/config"
)

// postgresBackend looks the client up with a query returning its bcrypt
// password hash (no row: ignored), and optionally one returning its ACL
// rows (allow boolean, access text, topic text). Queries name their
// parameters @username and @client_id.
type postgresBackend struct {
	pool     *pgxpool.Pool
	query    string
	aclQuery string
}

func newPostgresBackend(c config.AuthBackend) (*postgresBackend, error) {
	pc, err := pgxpool.ParseConfig(c.DSN)
	if err != nil {
		return nil, errors.New("dsn: cannot parse the connection string") // pgx's error may quote a password
	}
	pool, err := pgxpool.NewWithConfig(context.Background(), pc) // connects lazily
	if err != nil {
		return nil, err
	}
	return &postgresBackend{pool: pool, query: c.Query, aclQuery: c.ACLQuery}, nil
}

func (p *postgresBackend) Authenticate(ctx context.Context, r Request) (Decision, error) {
	args := pgx.NamedArgs{"username": r.Username, "client_id": r.ClientID}
	var hash string
	err := p.pool.QueryRow(ctx, p.query, args).Scan(&hash)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return Decision{Result: Ignore}, nil
	case err != nil:
		return Decision{}, fmt.Errorf("postgres query: %w", err)
	}
	if res, err := checkHash([]byte(hash), r.Password); res != Allow {
		return Decision{Result: res}, err
	}
	if p.aclQuery == "" {
		return Decision{Result: Allow}, nil
	}
	rows, err := p.pool.Query(ctx, p.aclQuery, args)
	if err != nil {
		return Decision{}, fmt.Errorf("postgres acl query: %w", err)
	}
	var es []aclEntry
	var e aclEntry
	_, err = pgx.ForEachRow(rows, []any{&e.Allow, &e.Access, &e.Topic}, func() error {
		es = append(es, e)
		return nil
	})
	if err != nil {
		return Decision{}, fmt.Errorf("postgres acl query: %w", err)
	}
	rules, err := toRules(es)
	if err != nil {
		return Decision{}, fmt.Errorf("postgres acl rows: %w", err)
	}
	return Decision{Result: Allow, ACL: rules}, nil
}

func (p *postgresBackend) Close() error {
	p.pool.Close()
	return nil
}
