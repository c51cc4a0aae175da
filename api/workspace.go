package api

// Workspace is the ARM envelope of a workspace.
type Workspace struct {
	ID         string               `json:"id,omitempty"`
	Name       string               `json:"name,omitempty"`
	Type       string               `json:"type,omitempty"`
	Location   string               `json:"location"`
	Tags       map[string]string    `json:"tags"`
	SystemData *SystemData          `json:"systemData,omitempty"`
	Properties *WorkspaceProperties `json:"properties"`
}

// WorkspaceProperties holds a workspace's description and state.
type WorkspaceProperties struct {
	Description       string `json:"description,omitempty"`
	FriendlyName      string `json:"friendlyName,omitempty"`
	ProvisioningState string `json:"provisioningState,omitempty"`
	WorkspaceID       string `json:"workspaceId,omitempty"`
	CreationTime      string `json:"creationTime,omitempty"`
}

// WorkspaceList is one page of workspaces.
type WorkspaceList struct {
	Value    []Workspace `json:"value"`
	NextLink string      `json:"nextLink,omitempty"`
}
