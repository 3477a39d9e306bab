package sqlstore

import (
	"context"
	"database/sql"
)

// Column is one column of a table as the database's catalog describes it.
type Column struct {
	Name       string
	Type       string
	NotNull    bool
	HasDefault bool
}

// TableColumns lists a table's columns in their order, none when the
// table does not exist. Package schema compares them with the models.
func (s *Store) TableColumns(ctx context.Context, table string) ([]Column, error) {
	rows, err := s.r.QueryContext(ctx, s.d.columnsQuery, table)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var cols []Column
	for rows.Next() {
		var c Column
		var typ sql.NullString
		if err := rows.Scan(&c.Name, &typ, &c.NotNull, &c.HasDefault); err != nil {
			return nil, err
		}
		c.Type = typ.String
		cols = append(cols, c)
	}
	return cols, rows.Err()
}
