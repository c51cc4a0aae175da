package server

import (
	"errors"
	"net/http"
	"sort"
	"strings"

	"kumo/api"
	"kumo/internal/model"
	"kumo/internal/store"
)

func (s *Server) workspaceResource(ws model.Workspace) api.Workspace {
	tags := ws.Tags
	if tags == nil {
		tags = map[string]string{}
	}
	return api.Workspace{
		ID: ws.ID, Name: ws.Name, Type: api.TypeWorkspace, Location: ws.Location, Tags: tags,
		SystemData: &api.SystemData{CreatedAt: s.timestamp(ws.CreatedAt), CreatedBy: ws.CreatedBy, CreatedByType: "Application",
			LastModifiedAt: s.timestamp(ws.ModifiedAt), LastModifiedBy: ws.CreatedBy, LastModifiedByType: "Application"},
		Properties: &api.WorkspaceProperties{Description: ws.Description, FriendlyName: ws.Name,
			ProvisioningState: "Succeeded", WorkspaceID: ws.ID, CreationTime: s.timestamp(ws.CreatedAt)},
	}
}

func (s *Server) workspaceGet(w http.ResponseWriter, r *http.Request) error {
	ws, err := s.store.WorkspaceGet(r.Context(), workspaceID(r))
	if errors.Is(err, store.ErrNotFound) {
		return errorf(http.StatusNotFound, api.CodeResourceNotFound, "workspace %q was not found in resource group %q", r.PathValue("ws"), r.PathValue("rg"))
	}
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, s.workspaceResource(ws))
	return nil
}

func (s *Server) workspaceList(w http.ResponseWriter, r *http.Request) error {
	rg := r.PathValue("rg")
	page := store.Page{After: r.URL.Query().Get("$skipToken"), Limit: s.page + 1}
	if rg == "" {
		// Names repeat across resource groups, so a name is no cursor for
		// a whole subscription: its (few) workspaces come in one page.
		page = store.Page{}
	}
	wss, err := s.store.WorkspaceList(r.Context(), r.PathValue("sub"), rg, page)
	if err != nil {
		return err
	}
	out := api.WorkspaceList{Value: []api.Workspace{}}
	if rg != "" {
		wss, out.NextLink = pageOf(r, wss, s.page, func(w model.Workspace) string { return w.Name })
	}
	for _, ws := range wss {
		out.Value = append(out.Value, s.workspaceResource(ws))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) regionNames() string {
	var names []string
	for _, r := range s.regions {
		names = append(names, r.Name)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

func (s *Server) workspacePut(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	if err := model.ValidateWorkspaceName(r.PathValue("ws")); err != nil {
		return err
	}
	var body api.Workspace
	if err := decode(r, &body); err != nil {
		return err
	}
	region, ok := s.region(body.Location)
	if !ok {
		return badRequest(api.CodeInvalidLocation, "location", "location %s is not a region this server serves; use one of: %s", model.Quote(body.Location), s.regionNames())
	}
	if len(body.Tags) > 50 {
		return badRequest(api.CodeInvalidParameter, "tags", "tags has %d entries: at most 50 are allowed", len(body.Tags))
	}
	desc := ""
	if body.Properties != nil {
		desc = body.Properties.Description
	}
	if len(desc) > 1024 {
		return badRequest(api.CodeInvalidParameter, "properties.description", "properties.description is longer than 1024 characters")
	}
	now := s.now().UTC()
	existing, err := s.store.WorkspaceGet(ctx, workspaceID(r))
	switch {
	case err == nil:
		if !model.SameLocation(existing.Location, region.Name) {
			return badRequest(api.CodeInvalidLocation, "location", "location cannot change: workspace %q is in %q", existing.Name, existing.Location)
		}
		existing.Description, existing.Tags, existing.ModifiedAt = desc, body.Tags, now
		if err := s.store.WorkspaceUpdate(ctx, existing); err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, s.workspaceResource(existing))
		return nil
	case !errors.Is(err, store.ErrNotFound):
		return err
	}
	ws := model.Workspace{ID: workspaceID(r), Subscription: r.PathValue("sub"), ResourceGroup: r.PathValue("rg"), Name: r.PathValue("ws"),
		Location: region.Name, Description: desc, Tags: body.Tags, CreatedAt: now, ModifiedAt: now, CreatedBy: callerName(ctx)}
	if err := s.store.WorkspaceCreate(ctx, ws); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return errorf(http.StatusConflict, api.CodeConflict, "workspace %q was created by another request at the same time; retry", ws.Name)
		}
		return err
	}
	writeJSON(w, http.StatusCreated, s.workspaceResource(ws))
	return nil
}

func (s *Server) workspaceDelete(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	ws, err := s.store.WorkspaceGet(ctx, workspaceID(r))
	if errors.Is(err, store.ErrNotFound) {
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
	if err != nil {
		return err
	}
	cs, err := s.store.ComputeList(ctx, ws.ID, store.Page{Limit: 1})
	if err != nil {
		return err
	}
	if len(cs) > 0 {
		return errorf(http.StatusConflict, api.CodeConflict, "workspace %q still has compute targets (for example %q): delete them first", ws.Name, cs[0].Name)
	}
	if err := s.store.WorkspaceDelete(ctx, ws.ID); err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	w.WriteHeader(http.StatusOK)
	return nil
}
