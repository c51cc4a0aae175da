package api

// Terminal reports whether s is a final status: Completed, Failed or
// Canceled. A job in a final status never changes again.
func (s JobStatus) Terminal() bool {
	switch s {
	case JobCompleted, JobFailed, JobCanceled:
		return true
	}
	return false
}

// Distribution types, as ARM spells distribution.distributionType.
const (
	DistributionPyTorch    = "PyTorch"
	DistributionTensorFlow = "TensorFlow"
	DistributionMpi        = "Mpi"
)

// JobInputLiteral is the jobInputType of a literal input, the only kind
// kumo accepts.
const JobInputLiteral = "literal"

// JobTypeCommand is the jobType of a command job, the only kind kumo runs.
const JobTypeCommand = "Command"
