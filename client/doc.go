// Package client is kumo's public Go SDK. It mirrors the Azure ML v1 Python
// SDK (azureml-core) in Go style:
//
//	ws, err := client.FromConfig(".")            // Workspace.from_config()
//	ct, err := ws.ComputeTarget(ctx, "cpu-cluster") // ComputeTarget(ws, name)
//	if errors.Is(err, client.ErrComputeTargetNotFound) {
//		ct, err = ws.CreateComputeTarget(ctx, "cpu-cluster",
//			client.AmlComputeProvisioningConfiguration{MaxNodes: 4})
//	}
//	err = ct.WaitForCompletion(ctx, os.Stdout)     // wait_for_completion(show_output=True)
//
// Jobs follow AML v2 (azure-ai-ml) command jobs:
//
//	job, err := ws.SubmitJob(ctx, "", client.CommandJob{ // ml_client.jobs.create_or_update(command(...))
//		Command: "python train.py --epochs ${{inputs.epochs}}",
//		CodeDir: "./src",
//		Compute: "cpu-cluster",
//		Inputs:  map[string]string{"epochs": "3"},
//	})
//	err = job.StreamLogs(ctx, os.Stdout, true)          // ml_client.jobs.stream(name)
//	err = job.Wait(ctx)                                 // nil when Completed
//	err = job.Download(ctx, job.Name())                 // ml_client.jobs.download(name, all=True)
//
// Every method maps to one route of kumo's ARM-shaped HTTP API and sends
// the wire types of package kumo/api. Errors the server reports come back as
// *Error. Methods that wait (WaitForCompletion, Update, Delete, Job.Wait) poll the
// server and stop when their context is done.
//
// The package depends only on the standard library and kumo/api.
package client
