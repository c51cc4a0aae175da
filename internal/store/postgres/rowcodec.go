package postgres

import "kumo/internal/store/rowcodec"

// The row encoding is shared with the other SQL backend in package
// rowcodec; these short names keep this package's queries readable.
var (
	fold       = rowcodec.Fold
	encTime    = rowcodec.EncTime
	encOptTime = rowcodec.EncOptTime
	encJSON    = rowcodec.EncJSON
	encTags    = rowcodec.EncTags
	encErrors  = rowcodec.EncErrors
	opError    = rowcodec.OpError

	scanCompute         = rowcodec.ScanCompute
	scanComputeStatus   = rowcodec.ScanComputeStatus
	scanEvent           = rowcodec.ScanEvent
	scanJob             = rowcodec.ScanJob
	scanNode            = rowcodec.ScanNode
	scanOperation       = rowcodec.ScanOperation
	scanQuota           = rowcodec.ScanQuota
	scanToken           = rowcodec.ScanToken
	scanUsage           = rowcodec.ScanUsage
	scanWorkspace       = rowcodec.ScanWorkspace
	jobArgs             = rowcodec.JobArgs
	nodeArgs            = rowcodec.NodeArgs
	nodeInsertArgs      = rowcodec.NodeInsertArgs
	computeArgs         = rowcodec.ComputeArgs
	computeStatusArgs   = rowcodec.ComputeStatusArgs
	workspaceInsertArgs = rowcodec.WorkspaceInsertArgs
	operationInsertArgs = rowcodec.OperationInsertArgs
	tokenInsertArgs     = rowcodec.TokenInsertArgs
)

// scanner is one result row.
type scanner = rowcodec.Scanner

// The column lists that the scan functions read, in their order.
const (
	jobColumns       = rowcodec.JobColumns
	computeColumns   = rowcodec.ComputeColumns
	nodeColumns      = rowcodec.NodeColumns
	operationColumns = rowcodec.OperationColumns
	tokenColumns     = rowcodec.TokenColumns
	usageColumns     = rowcodec.UsageColumns
	workspaceColumns = rowcodec.WorkspaceColumns
)
