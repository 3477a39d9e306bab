package main

import (
	"errors"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/google/uuid"
	"github.com/spf13/cobra"

	"github.com/computeserver/compute/internal/apikey"
	"github.com/computeserver/compute/internal/store"
	"github.com/computeserver/compute/internal/store/sqlstore"
)

// apikeyCmd is `compute apikey create|list|revoke`.
func apikeyCmd(f *flags, stdout, stderr io.Writer) *cobra.Command {
	cmd := &cobra.Command{Use: "apikey", Short: "Manage API keys"}
	// withStore runs fn on the migrated (if configured) store, which must
	// exist: a key in a new database is one the server never sees.
	withStore := func(cmd *cobra.Command, fn func(st *sqlstore.Store) error) error {
		st, cfg, err := openStore(cmd, f, stderr, false)
		if err != nil {
			return err
		}
		defer st.Close()
		if cfg.AutoMigrate {
			if err := st.Migrate(cmd.Context()); err != nil {
				return err
			}
		}
		return fn(st)
	}
	var tenant, name string
	create := &cobra.Command{
		Use:   "create",
		Short: "Create an API key and print it (only the key, on stdout)",
		Long:  "Without --tenant the key is an admin key that sees every task; with --tenant it sees only that tenant's tasks.",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cmd.Flags().Changed("tenant") {
				// An unset $TENANT must not quietly make an admin key.
				if err := apikey.CheckTenant(tenant); err != nil {
					return fmt.Errorf("--tenant %q: %w (for an admin key, leave --tenant out)", tenant, err)
				}
			}
			return withStore(cmd, func(st *sqlstore.Store) error {
				key := apikey.Generate()
				if err := st.CreateAPIKey(cmd.Context(), apikey.Record(key, name, tenant)); err != nil {
					return err
				}
				_, err := fmt.Fprintln(stdout, key)
				return err
			})
		},
	}
	create.Flags().StringVar(&tenant, "tenant", "", "tenant the key belongs to (without it: an admin key)")
	create.Flags().StringVar(&name, "name", "", "a label for the key")
	list := &cobra.Command{
		Use:   "list",
		Short: "List the API keys (never the keys themselves: their ids and first characters)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withStore(cmd, func(st *sqlstore.Store) error {
				keys, err := st.ListAPIKeys(cmd.Context())
				if err != nil {
					return err
				}
				return printKeys(stdout, keys)
			})
		},
	}
	revoke := &cobra.Command{
		Use:   "revoke <id or key>",
		Short: "Revoke an API key for good, named by its id (from list) or by the key itself",
		Long: "A revoked key is refused at once by new processes and within 30 s by running ones (their key cache). " +
			"It stays revoked even if COMPUTE_API_KEY still names it at the next start.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withStore(cmd, func(st *sqlstore.Store) error {
				id, err := keyID(cmd, st, args[0])
				if err != nil {
					return err
				}
				k, err := st.RevokeAPIKey(cmd.Context(), id)
				if errors.Is(err, store.ErrKeyNotFound) {
					return fmt.Errorf("no API key has the id %s", id)
				}
				if err != nil {
					return err
				}
				_, err = fmt.Fprintf(stdout, "revoked %s (%s)\n", k.ID, k.Prefix)
				return err
			})
		},
	}
	cmd.AddCommand(create, list, revoke)
	return cmd
}

// keyID resolves revoke's argument: a key id, or a key, looked up by hash.
func keyID(cmd *cobra.Command, st *sqlstore.Store, arg string) (uuid.UUID, error) {
	if id, err := uuid.Parse(arg); err == nil {
		return id, nil
	}
	keys, err := st.ListAPIKeys(cmd.Context())
	if err != nil {
		return uuid.Nil, err
	}
	hash := apikey.Hash(arg)
	for _, k := range keys {
		if k.Hash == hash {
			return k.ID, nil
		}
	}
	return uuid.Nil, errors.New("no API key matches: give an id from `compute apikey list`, or the key itself")
}

// printKeys writes one line per key: id, prefix, tenant (or admin), name,
// created and revoked times.
func printKeys(w io.Writer, keys []store.APIKey) error {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tPREFIX\tSCOPE\tNAME\tCREATED\tREVOKED")
	for _, k := range keys {
		scope := "admin"
		if !k.Admin {
			scope = "tenant:" + k.TenantID
		}
		revoked := "-"
		if k.RevokedAt != nil {
			revoked = k.RevokedAt.Format(time.RFC3339)
		}
		name := k.Name
		if name == "" {
			name = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", k.ID, k.Prefix, scope, name, k.CreatedAt.Format(time.RFC3339), revoked)
	}
	return tw.Flush()
}
