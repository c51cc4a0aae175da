// Package api holds kumo's public wire types: the Azure Resource Manager (ARM)
// shapes of workspaces, compute targets, nodes, VM sizes, usages, quotas,
// long-running operation status and the ARM error body.
//
// These types are what kumo's HTTP API reads and writes, so that the official
// Azure SDKs can drive kumo unchanged. The package uses only the standard
// library so that the public SDK in kumo/client can depend on it freely.
//
// Pointer fields are optional: nil means "absent" in requests and is written
// as JSON null in responses where AML clients index the key unconditionally.
package api

// ProviderNamespace is the ARM resource provider namespace kumo serves.
const ProviderNamespace = "Microsoft.MachineLearningServices"

// Resource types as ARM spells them in the "type" field.
const (
	// TypeWorkspace is the ARM type of a workspace.
	TypeWorkspace = ProviderNamespace + "/workspaces"
	// TypeCompute is the ARM type of a compute target.
	TypeCompute = ProviderNamespace + "/workspaces/computes"
	// TypeQuota is the ARM type of a workspace quota entry.
	TypeQuota = ProviderNamespace + "/workspaces/quotas"
)

// DefaultAPIVersion is the api-version kumo's own clients send. The server
// accepts any api-version.
const DefaultAPIVersion = "2024-04-01"

// SystemData records who created and last modified a resource, and when.
type SystemData struct {
	CreatedAt          string `json:"createdAt,omitempty"`
	CreatedBy          string `json:"createdBy,omitempty"`
	CreatedByType      string `json:"createdByType,omitempty"`
	LastModifiedAt     string `json:"lastModifiedAt,omitempty"`
	LastModifiedBy     string `json:"lastModifiedBy,omitempty"`
	LastModifiedByType string `json:"lastModifiedByType,omitempty"`
}

// TimeFormat is the layout of every timestamp kumo writes (UTC, 7 fractional
// digits, as ARM does).
const TimeFormat = "2006-01-02T15:04:05.0000000Z"
