package controller

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
)

// ctrlConfigSkipNameValidation lets the suite start a second manager (the
// restart specs) with controllers of the same names in one process.
func ctrlConfigSkipNameValidation() config.Controller {
	skip := true
	return config.Controller{SkipNameValidation: &skip}
}

// apiWrites counts every write the reconcilers make to the API server.
var apiWrites atomic.Int64

// counting wraps the manager's real client and counts its writes.
type counting struct{ client.Client }

func countingWrites(c client.Client) client.Client { return counting{c} }

func (c counting) Create(ctx context.Context, obj client.Object, opts ...client.CreateOption) error {
	apiWrites.Add(1)
	return c.Client.Create(ctx, obj, opts...)
}

func (c counting) Update(ctx context.Context, obj client.Object, opts ...client.UpdateOption) error {
	apiWrites.Add(1)
	return c.Client.Update(ctx, obj, opts...)
}

func (c counting) Patch(ctx context.Context, obj client.Object, patch client.Patch, opts ...client.PatchOption) error {
	apiWrites.Add(1)
	return c.Client.Patch(ctx, obj, patch, opts...)
}

func (c counting) Apply(ctx context.Context, obj runtime.ApplyConfiguration, opts ...client.ApplyOption) error {
	apiWrites.Add(1)
	return c.Client.Apply(ctx, obj, opts...)
}

func (c counting) Delete(ctx context.Context, obj client.Object, opts ...client.DeleteOption) error {
	apiWrites.Add(1)
	return c.Client.Delete(ctx, obj, opts...)
}

func (c counting) Status() client.SubResourceWriter { return countingStatus{c.Client.Status()} }

type countingStatus struct{ client.SubResourceWriter }

func (c countingStatus) Update(ctx context.Context, obj client.Object, opts ...client.SubResourceUpdateOption) error {
	apiWrites.Add(1)
	if _, labelled := obj.GetLabels()[conflictFirstStatusWrite]; labelled {
		if _, met := conflicted.LoadOrStore(client.ObjectKeyFromObject(obj), true); !met {
			return apierrors.NewConflict(schema.GroupResource{Group: "llmquota.dev", Resource: "inferencebatches"}, obj.GetName(),
				errors.New("injected by the suite: the object has been modified"))
		}
	}
	return c.SubResourceWriter.Update(ctx, obj, opts...)
}

// conflictFirstStatusWrite labels an object whose first status write the
// suite's client refuses with a Conflict, as the API server refuses one
// computed from an older copy; conflicted holds the keys it refused.
const conflictFirstStatusWrite = "test.llmquota.dev/conflict-first-status-write"

var conflicted sync.Map

func (c countingStatus) Patch(ctx context.Context, obj client.Object, patch client.Patch, opts ...client.SubResourcePatchOption) error {
	apiWrites.Add(1)
	return c.SubResourceWriter.Patch(ctx, obj, patch, opts...)
}

func (c countingStatus) Apply(ctx context.Context, obj runtime.ApplyConfiguration, opts ...client.SubResourceApplyOption) error {
	apiWrites.Add(1)
	return c.SubResourceWriter.Apply(ctx, obj, opts...)
}
