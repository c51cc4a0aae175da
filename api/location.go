package api

// VMSize describes one VM size a region offers, as ARM's vmSizes list does,
// plus kumo's hourly prices.
type VMSize struct {
	Name                  string             `json:"name"`
	Family                string             `json:"family"`
	VCPUs                 int32              `json:"vCPUs"`
	GPUs                  int32              `json:"gpus"`
	GPUModel              string             `json:"gpuModel,omitempty"`
	OSVhdSizeMB           int32              `json:"osVhdSizeMB"`
	MaxResourceVolumeMB   int32              `json:"maxResourceVolumeMB"`
	MemoryGB              float64            `json:"memoryGB"`
	LowPriorityCapable    bool               `json:"lowPriorityCapable"`
	PremiumIO             bool               `json:"premiumIO"`
	SupportedComputeTypes []string           `json:"supportedComputeTypes"`
	EstimatedVMPrices     *EstimatedVMPrices `json:"estimatedVMPrices,omitempty"`
}

// EstimatedVMPrices lists hourly prices per priority.
type EstimatedVMPrices struct {
	BillingCurrency string             `json:"billingCurrency"`
	UnitOfMeasure   string             `json:"unitOfMeasure"`
	Values          []EstimatedVMPrice `json:"values"`
}

// EstimatedVMPrice is one price. VMTier is "Standard" (Dedicated) or
// "LowPriority"; OSType is "Linux".
type EstimatedVMPrice struct {
	RetailPrice float64 `json:"retailPrice"`
	OSType      string  `json:"osType"`
	VMTier      string  `json:"vmTier"`
}

// VMSizeList is the vmSizes answer.
type VMSizeList struct {
	Value []VMSize `json:"value"`
}

// UsageName names a usage or quota.
type UsageName struct {
	Value          string `json:"value"`
	LocalizedValue string `json:"localizedValue"`
}

// Usage is one usage counter: vCPUs in use against a limit.
type Usage struct {
	ID                   string    `json:"id,omitempty"`
	AMLWorkspaceLocation string    `json:"amlWorkspaceLocation,omitempty"`
	Type                 string    `json:"type,omitempty"`
	Unit                 string    `json:"unit"`
	CurrentValue         int64     `json:"currentValue"`
	Limit                int64     `json:"limit"`
	Name                 UsageName `json:"name"`
}

// UsageList is the usages answer.
type UsageList struct {
	Value    []Usage `json:"value"`
	NextLink string  `json:"nextLink,omitempty"`
}

// ResourceQuota is one workspace quota: a vCPU limit for a VM family, or for
// all low-priority nodes when Name.Value is LowPriorityQuotaName.
type ResourceQuota struct {
	ID                   string    `json:"id,omitempty"`
	AMLWorkspaceLocation string    `json:"amlWorkspaceLocation,omitempty"`
	Type                 string    `json:"type,omitempty"`
	Name                 UsageName `json:"name"`
	Limit                int64     `json:"limit"`
	Unit                 string    `json:"unit"`
}

// LowPriorityQuotaName is the quota name of the single low-priority vCPU
// limit shared by all VM families.
const LowPriorityQuotaName = "lowPriorityCores"

// QuotaList is the quotas answer.
type QuotaList struct {
	Value    []ResourceQuota `json:"value"`
	NextLink string          `json:"nextLink,omitempty"`
}

// QuotaBaseProperties is one entry of an updateQuotas request: ID ends in
// /workspaces/{ws}/quotas/{family}.
type QuotaBaseProperties struct {
	ID    string `json:"id"`
	Type  string `json:"type,omitempty"`
	Limit int64  `json:"limit"`
	Unit  string `json:"unit,omitempty"`
}

// QuotaUpdateParameters is the updateQuotas request body.
type QuotaUpdateParameters struct {
	Value    []QuotaBaseProperties `json:"value"`
	Location string                `json:"location,omitempty"`
}

// UpdateWorkspaceQuotas is one result of updateQuotas.
type UpdateWorkspaceQuotas struct {
	ID     string `json:"id"`
	Type   string `json:"type,omitempty"`
	Limit  int64  `json:"limit"`
	Unit   string `json:"unit"`
	Status string `json:"status"`
}

// UpdateWorkspaceQuotasResult is the updateQuotas answer.
type UpdateWorkspaceQuotasResult struct {
	Value []UpdateWorkspaceQuotas `json:"value"`
}
