package rowcodec

import (
	"database/sql"

	"kumo/internal/model"
)

// WorkspaceColumns are the columns that ScanWorkspace reads, in its order.
const WorkspaceColumns = `id, subscription, resource_group, name, location, description, tags, created_at, modified_at, created_by`

// ScanWorkspace reads a workspace from the columns of WorkspaceColumns.
func ScanWorkspace(sc Scanner) (model.Workspace, error) {
	var (
		w                 model.Workspace
		tags              sql.NullString
		created, modified string
	)
	err := sc.Scan(&w.ID, &w.Subscription, &w.ResourceGroup, &w.Name, &w.Location, &w.Description,
		&tags, &created, &modified, &w.CreatedBy)
	if err != nil {
		return model.Workspace{}, err
	}
	var d Decoder
	w.Tags = d.Tags("tags", tags)
	w.CreatedAt = d.Time("created_at", created)
	w.ModifiedAt = d.Time("modified_at", modified)
	return w, d.err
}

// WorkspaceInsertArgs returns the arguments of a workspace's insert:
// id_key, id, subscription, subscription_key, resource_group,
// resource_group_key, name, name_key, location, description, tags,
// created_at, modified_at, created_by.
func WorkspaceInsertArgs(w model.Workspace) ([]any, error) {
	tags, err := EncTags(w.Tags)
	if err != nil {
		return nil, err
	}
	return []any{
		Fold(w.ID), w.ID, w.Subscription, Fold(w.Subscription), w.ResourceGroup, Fold(w.ResourceGroup), w.Name, Fold(w.Name),
		w.Location, w.Description, tags, EncTime(w.CreatedAt), EncTime(w.ModifiedAt), w.CreatedBy,
	}, nil
}
