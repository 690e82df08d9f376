package controller

import (
	"context"
	"errors"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"

	llmv1 "github.com/llmquota/llmquota/api/v1alpha1"
	"github.com/llmquota/llmquota/internal/items"
	"github.com/llmquota/llmquota/internal/objectstore"
	"github.com/llmquota/llmquota/internal/results"
)

// errOutput marks a results sink the batch cannot write to until the user
// fixes it (a missing bucket, a Secret, credentials the store refuses).
var errOutput = errors.New("output unavailable")

// +kubebuilder:rbac:groups="",resources=secrets,verbs=get

// openBucket returns a client of a bucket with the credentials of the
// Secret it names in the batch's namespace. The keys are read uncached
// and go nowhere but the client.
func (r *InferenceBatchReconciler) openBucket(ctx context.Context, b *llmv1.InferenceBatch, bucket llmv1.S3Bucket) (*objectstore.Store, error) {
	var s corev1.Secret
	if err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: b.Namespace, Name: string(bucket.CredentialsSecretName)}, &s); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, &objectstore.Problem{URL: "s3://" + bucket.Bucket, Code: "SecretNotFound",
				Message: fmt.Sprintf("Secret %q named by credentialsSecretName does not exist", bucket.CredentialsSecretName)}
		}
		return nil, err
	}
	loc := objectstore.Location{Endpoint: bucket.Endpoint, Region: bucket.Region, Bucket: bucket.Bucket,
		AccessKeyID: strings.TrimSpace(string(s.Data[objectstore.AccessKeyID])), SecretKey: strings.TrimSpace(string(s.Data[objectstore.SecretAccessKey]))}
	store, err := objectstore.Open(loc)
	if err != nil {
		return nil, &objectstore.Problem{URL: "s3://" + bucket.Bucket, Code: "InvalidConfiguration",
			Message: fmt.Sprintf("Secret %q: %v", bucket.CredentialsSecretName, err)}
	}
	return store, nil
}

// loadS3Items reads the batch's JSONL object as a stream: the object is
// never held whole, only its items.
func (r *InferenceBatchReconciler) loadS3Items(ctx context.Context, b *llmv1.InferenceBatch) ([]items.Item, error) {
	ref := b.Spec.ItemsFrom.S3
	store, err := r.openBucket(ctx, b, ref.S3Bucket)
	if err != nil {
		return nil, userFault(errInvalidItems, err)
	}
	obj, err := store.Get(ctx, ref.Key, "")
	if err != nil {
		return nil, userFault(errInvalidItems, err)
	}
	defer func() { _ = obj.Close() }()
	list, err := items.ReadJSONL(obj)
	if rerr := obj.Err(); rerr != nil {
		// The read broke off (the object vanished, the connection reset):
		// not the user's lines; admission is tried again.
		return nil, fmt.Errorf("reading %s: %w", store.URL(ref.Key), rerr)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", errInvalidItems, store.URL(ref.Key), err)
	}
	return list, nil
}

// openSink returns where the batch's results go: the previous run's sink
// when the batch is admitted again, else its ConfigMaps or its bucket.
func (r *InferenceBatchReconciler) openSink(ctx context.Context, b *llmv1.InferenceBatch) (results.Sink, *results.FlushPolicy, error) {
	out := b.Spec.Output
	if out.Kind != llmv1.OutputS3 {
		store, err := results.Load(ctx, results.Options{Lister: r.Client, Reader: r.APIReader, Writer: r.Client, Clock: r.Clock}, b)
		return store, nil, err
	}
	bucket, err := r.openBucket(ctx, b, out.S3.S3Bucket)
	if err != nil {
		return nil, nil, userFault(errOutput, err)
	}
	prefix := out.S3.Prefix
	if prefix == "" {
		prefix = b.Namespace + "/" + b.Name + "/"
	}
	store, err := results.LoadS3(ctx, bucket, prefix, r.Clock)
	if err != nil {
		return nil, nil, userFault(errOutput, err)
	}
	return store, &results.S3FlushPolicy, nil
}

// userFault marks err with kind when it is one the user must fix.
func userFault(kind, err error) error {
	var p *objectstore.Problem
	if errors.As(err, &p) {
		return fmt.Errorf("%w: %w", kind, err)
	}
	return err
}
