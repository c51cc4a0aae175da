package e2e

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	ml "github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/machinelearning/armmachinelearning/v4"
)

// staticToken is an azcore credential that hands out a kumo API token.
type staticToken string

func (s staticToken) GetToken(context.Context, policy.TokenRequestOptions) (azcore.AccessToken, error) {
	return azcore.AccessToken{Token: string(s), ExpiresOn: time.Now().Add(time.Hour)}, nil
}

func armOptions(s *server) *arm.ClientOptions {
	return &arm.ClientOptions{
		ClientOptions: policy.ClientOptions{
			Cloud: cloud.Configuration{Services: map[cloud.ServiceName]cloud.ServiceConfiguration{
				cloud.ResourceManager: {Endpoint: s.base, Audience: "https://management.core.windows.net/"},
			}},
			Transport: s.http,
			Retry:     policy.RetryOptions{MaxRetries: -1},
		},
		DisableRPRegistration: true,
	}
}

// TestAzureSDKDrivesKumo drives every compute operation with the official
// Azure SDK for Go against a real kumo process over HTTPS with a token.
func TestAzureSDKDrivesKumo(t *testing.T) {
	s := startServer(t, "")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	opts := armOptions(s)
	computes, err := ml.NewComputeClient(s.cfg.SubscriptionID, staticToken(s.cfg.Token), opts)
	if err != nil {
		t.Fatal(err)
	}
	workspaces, err := ml.NewWorkspacesClient(s.cfg.SubscriptionID, staticToken(s.cfg.Token), opts)
	if err != nil {
		t.Fatal(err)
	}
	rg, ws := s.cfg.ResourceGroup, s.cfg.WorkspaceName

	wsResp, err := workspaces.Get(ctx, rg, ws, nil)
	if err != nil {
		t.Fatalf("WorkspacesClient.Get: %v", err)
	}
	if *wsResp.Name != ws || *wsResp.Location != "local" {
		t.Errorf("workspace = %s in %s, want %s in local", *wsResp.Name, *wsResp.Location, ws)
	}

	// Get of a missing compute: a ResponseError with 404 ResourceNotFound.
	_, err = computes.Get(ctx, rg, ws, "cpu-cluster", nil)
	var re *azcore.ResponseError
	if !errors.As(err, &re) || re.StatusCode != http.StatusNotFound || re.ErrorCode != "ResourceNotFound" {
		t.Fatalf("Get(missing) error = %v, want 404 ResourceNotFound", err)
	}

	params := ml.ComputeResource{
		Location: to.Ptr("local"),
		Tags:     map[string]*string{"team": to.Ptr("ml")},
		Properties: &ml.AmlCompute{
			ComputeType: to.Ptr(ml.ComputeTypeAmlCompute),
			Description: to.Ptr("CPU training cluster"),
			Properties: &ml.AmlComputeProperties{
				VMSize:     to.Ptr("STANDARD_D2_V2"),
				VMPriority: to.Ptr(ml.VMPriorityDedicated),
				OSType:     to.Ptr(ml.OsTypeLinux),
				ScaleSettings: &ml.ScaleSettings{
					MaxNodeCount: to.Ptr[int32](4), MinNodeCount: to.Ptr[int32](0), NodeIdleTimeBeforeScaleDown: to.Ptr("PT40M"),
				},
				UserAccountCredentials: &ml.UserAccountCredentials{
					AdminUserName:         to.Ptr("azureuser"),
					AdminUserSSHPublicKey: to.Ptr("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGRlZmF1bHQta2V5LWZvci10ZXN0cy1vbmx5LTAwMDAw user@host"),
				},
				RemoteLoginPortPublicAccess: to.Ptr(ml.RemoteLoginPortPublicAccessNotSpecified),
			},
		},
	}
	poller, err := computes.BeginCreateOrUpdate(ctx, rg, ws, "cpu-cluster", params, nil)
	if err != nil {
		t.Fatalf("BeginCreateOrUpdate: %v", err)
	}
	created, err := poller.PollUntilDone(ctx, &runtime.PollUntilDoneOptions{Frequency: 50 * time.Millisecond})
	if err != nil {
		t.Fatalf("PollUntilDone(create): %v", err)
	}
	amlc, ok := created.Properties.(*ml.AmlCompute)
	if !ok {
		t.Fatalf("created properties are %T, want *AmlCompute", created.Properties)
	}
	if *amlc.ProvisioningState != ml.ProvisioningStateSucceeded || *amlc.Properties.VMSize != "Standard_D2_v2" {
		t.Errorf("created: state %s size %s, want Succeeded Standard_D2_v2", *amlc.ProvisioningState, *amlc.Properties.VMSize)
	}
	if *amlc.Properties.RemoteLoginPortPublicAccess != ml.RemoteLoginPortPublicAccessEnabled {
		t.Errorf("remote login = %s, want Enabled (NotSpecified with credentials)", *amlc.Properties.RemoteLoginPortPublicAccess)
	}

	// A bad create is refused with the ARM error.
	bad := params
	bad.Properties = &ml.AmlCompute{ComputeType: to.Ptr(ml.ComputeTypeAmlCompute), Properties: &ml.AmlComputeProperties{
		VMSize: to.Ptr("Standard_Nope"), ScaleSettings: &ml.ScaleSettings{MaxNodeCount: to.Ptr[int32](1)}}}
	_, err = computes.BeginCreateOrUpdate(ctx, rg, ws, "bad", bad, nil)
	if !errors.As(err, &re) || re.StatusCode != 400 || re.ErrorCode != "UnsupportedVMSize" {
		t.Errorf("create with unknown size: %v, want 400 UnsupportedVMSize", err)
	}

	got, err := computes.Get(ctx, rg, ws, "cpu-cluster", nil)
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	gotAml := got.Properties.(*ml.AmlCompute)
	if *gotAml.Properties.ScaleSettings.NodeIdleTimeBeforeScaleDown != "PT40M" || *gotAml.Description != "CPU training cluster" || *got.Tags["team"] != "ml" {
		t.Errorf("Get: %+v", gotAml.Properties.ScaleSettings)
	}
	if gotAml.Properties.UserAccountCredentials.AdminUserPassword != nil {
		t.Errorf("Get returned a password")
	}

	// Make a few more so that the list pages.
	for _, name := range []string{"gpu-a", "gpu-b"} {
		p, err := computes.BeginCreateOrUpdate(ctx, rg, ws, name, ml.ComputeResource{Properties: &ml.AmlCompute{
			ComputeType: to.Ptr(ml.ComputeTypeAmlCompute),
			Properties: &ml.AmlComputeProperties{VMSize: to.Ptr("Standard_DS2_v2"), VMPriority: to.Ptr(ml.VMPriorityLowPriority),
				ScaleSettings: &ml.ScaleSettings{MaxNodeCount: to.Ptr[int32](2)}},
		}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.PollUntilDone(ctx, &runtime.PollUntilDoneOptions{Frequency: 50 * time.Millisecond}); err != nil {
			t.Fatal(err)
		}
	}
	var names []string
	for pager := computes.NewListPager(rg, ws, nil); pager.More(); {
		page, err := pager.NextPage(ctx)
		if err != nil {
			t.Fatalf("list: %v", err)
		}
		for _, c := range page.Value {
			names = append(names, *c.Name)
		}
	}
	if len(names) != 3 {
		t.Errorf("listed %v, want 3 computes", names)
	}

	up, err := computes.BeginUpdate(ctx, rg, ws, "cpu-cluster", ml.ClusterUpdateParameters{Properties: &ml.ClusterUpdateProperties{
		Properties: &ml.ScaleSettingsInformation{ScaleSettings: &ml.ScaleSettings{MaxNodeCount: to.Ptr[int32](8), MinNodeCount: to.Ptr[int32](0), NodeIdleTimeBeforeScaleDown: to.Ptr("PT2M")}},
	}}, nil)
	if err != nil {
		t.Fatalf("BeginUpdate: %v", err)
	}
	updated, err := up.PollUntilDone(ctx, &runtime.PollUntilDoneOptions{Frequency: 50 * time.Millisecond})
	if err != nil {
		t.Fatalf("PollUntilDone(update): %v", err)
	}
	if m := *updated.Properties.(*ml.AmlCompute).Properties.ScaleSettings.MaxNodeCount; m != 8 {
		t.Errorf("max after update = %d, want 8", m)
	}

	nodes := 0
	for pager := computes.NewListNodesPager(rg, ws, "cpu-cluster", nil); pager.More(); {
		page, err := pager.NextPage(ctx)
		if err != nil {
			t.Fatalf("listNodes: %v", err)
		}
		nodes += len(page.Nodes)
	}
	if nodes != 0 {
		t.Errorf("listNodes returned %d nodes on a cluster at min 0", nodes)
	}
	if _, err := computes.ListKeys(ctx, rg, ws, "cpu-cluster", nil); err != nil {
		t.Errorf("ListKeys: %v", err)
	}

	del, err := computes.BeginDelete(ctx, rg, ws, "cpu-cluster", ml.UnderlyingResourceActionDelete, nil)
	if err != nil {
		t.Fatalf("BeginDelete: %v", err)
	}
	if _, err := del.PollUntilDone(ctx, &runtime.PollUntilDoneOptions{Frequency: 50 * time.Millisecond}); err != nil {
		t.Fatalf("PollUntilDone(delete): %v", err)
	}
	if _, err := computes.Get(ctx, rg, ws, "cpu-cluster", nil); !errors.As(err, &re) || re.StatusCode != 404 {
		t.Errorf("Get after delete: %v, want 404", err)
	}

	// Without a token nothing works.
	anon, err := ml.NewComputeClient(s.cfg.SubscriptionID, staticToken("kumo_wrong"), opts)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := anon.Get(ctx, rg, ws, "gpu-a", nil); !errors.As(err, &re) || re.StatusCode != 401 {
		t.Errorf("Get with a wrong token: %v, want 401", err)
	}
}
