package api

// ErrorResponse is the ARM error body: {"error": {...}}.
type ErrorResponse struct {
	Error *ErrorDetail `json:"error"`
}

// ErrorDetail describes one error. Code is a specific machine-readable code
// (for example "InvalidComputeName"); Message names the offending field;
// Target, when set, is the JSON path of that field.
type ErrorDetail struct {
	Code           string                `json:"code"`
	Message        string                `json:"message"`
	Target         string                `json:"target,omitempty"`
	Details        []ErrorDetail         `json:"details,omitempty"`
	AdditionalInfo []ErrorAdditionalInfo `json:"additionalInfo,omitempty"`
}

// ErrorAdditionalInfo carries typed extra data about an error, such as the
// numbers behind a quota refusal.
type ErrorAdditionalInfo struct {
	Type string `json:"type"`
	Info any    `json:"info,omitempty"`
}

// Error codes kumo returns. Each names one kind of failure precisely.
const (
	CodeInvalidRequestContent = "InvalidRequestContent"    // body is not valid JSON of the right shape
	CodeInvalidComputeName    = "InvalidComputeName"       // compute name breaks the naming rule
	CodeInvalidWorkspaceName  = "InvalidWorkspaceName"     // workspace name breaks the naming rule
	CodeInvalidParameter      = "InvalidParameter"         // a field has a bad value
	CodeUnsupportedVMSize     = "UnsupportedVMSize"        // vmSize not in the region's catalog
	CodeInvalidLocation       = "InvalidLocation"          // location differs from the workspace's
	CodeImmutableProperty     = "PropertyChangeNotAllowed" // a PUT changes vmSize or credentials
	CodeQuotaExceeded         = "QuotaExceeded"            // one node could never fit the quota
	CodeResourceNotFound      = "ResourceNotFound"         // the addressed resource does not exist
	CodeParentNotFound        = "ParentResourceNotFound"   // the workspace does not exist
	CodeConflict              = "Conflict"                 // state conflict, e.g. compute is being deleted
	CodeOperationNotAllowed   = "OperationNotAllowed"      // the operation does not apply to this resource, e.g. evicting a Dedicated cluster's nodes
	CodePreconditionFailed    = "PreconditionFailed"       // If-Match did not match the ETag
	CodeAuthenticationFailed  = "AuthenticationFailed"     // missing or invalid bearer token
	CodeAuthorizationFailed   = "AuthorizationFailed"      // token lacks the role for the action
	CodeMethodNotAllowed      = "MethodNotAllowed"         // no such operation on that path
	CodeInternalError         = "InternalServerError"      // a bug or storage failure
	CodeTooManyRequests       = "TooManyRequests"          // the token is past its rate limit; see Retry-After
	CodeLastOwnerToken        = "LastOwnerToken"           // revoking the token would leave no owner
	CodeRequestURITooLong     = "RequestUriTooLong"        // the URL's path or query is too long
	CodeSSHNotEnabled         = "RemoteLoginNotEnabled"    // the compute has no admin account to log in with
	CodeNodeNotConnected      = "NodeNotConnected"         // the node's agent is not connected now
)
