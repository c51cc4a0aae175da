// Command get-or-create is the AML "create a compute target through the
// SDK" script in Go: it reads the workspace from .kumo/config.json, uses
// the cluster "cpu-cluster" if it exists or creates it, and waits for it.
//
//	ws = Workspace.from_config()
//	try:
//	    cpu_cluster = ComputeTarget(workspace=ws, name="cpu-cluster")
//	    print('Found existing cluster, use it.')
//	except ComputeTargetException:
//	    compute_config = AmlCompute.provisioning_configuration(vm_size='STANDARD_D2_V2',
//	                                                           max_nodes=4,
//	                                                           idle_seconds_before_scaledown=2400)
//	    cpu_cluster = ComputeTarget.create(ws, "cpu-cluster", compute_config)
//	cpu_cluster.wait_for_completion(show_output=True)
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"

	"kumo/client"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "Error:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	// Reads connection info from the .kumo folder.
	ws, err := client.FromConfig(".")
	if err != nil {
		return err
	}

	// The CPU cluster's name.
	const cpuClusterName = "cpu-cluster"

	// Make sure no cluster of that name exists yet.
	cpuCluster, err := ws.ComputeTarget(ctx, cpuClusterName)
	switch {
	case err == nil:
		fmt.Println("Found existing cluster, use it.")
	case errors.Is(err, client.ErrComputeTargetNotFound):
		computeConfig := client.AmlComputeProvisioningConfiguration{
			VMSize:                     "STANDARD_D2_V2",
			MaxNodes:                   4,
			IdleSecondsBeforeScaledown: 2400,
		}
		cpuCluster, err = ws.CreateComputeTarget(ctx, cpuClusterName, computeConfig)
		if err != nil {
			return err
		}
	default:
		return err
	}

	return cpuCluster.WaitForCompletion(ctx, os.Stdout)
}
