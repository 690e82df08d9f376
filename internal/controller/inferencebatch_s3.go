package controller

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"

	llmv1 "github.com/llmquota/llmquota/api/v1alpha1"
	"github.com/llmquota/llmquota/internal/egress"
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
	// The endpoint first: a refused one is never dialed, its Secret never read.
	if err := r.endpointAllowed(ctx, bucket.Endpoint); err != nil {
		return nil, err
	}
	var s corev1.Secret
	if err := readSecret(ctx, r.APIReader, types.NamespacedName{Namespace: b.Namespace, Name: string(bucket.CredentialsSecretName)}, &s); err != nil {
		switch {
		case apierrors.IsNotFound(err):
			return nil, &objectstore.Problem{URL: "s3://" + bucket.Bucket, Code: "SecretNotFound",
				Message: fmt.Sprintf("Secret %q named by credentialsSecretName does not exist", bucket.CredentialsSecretName)}
		case apierrors.IsForbidden(err):
			return nil, &objectstore.Problem{URL: "s3://" + bucket.Bucket, Code: "SecretForbidden",
				Message: fmt.Sprintf("the manager may not read Secret %q in namespace %s: bind it the chart's <release>-s3-credentials ClusterRole "+
					"in this namespace (kubectl -n %s create rolebinding llmquota-s3-credentials --clusterrole=<release>-s3-credentials "+
					"--serviceaccount=<manager namespace>:<manager service account>; docs/tenancy.md)", bucket.CredentialsSecretName, b.Namespace, b.Namespace)}
		}
		return nil, err
	}
	loc := objectstore.Location{Endpoint: bucket.Endpoint, Region: bucket.Region, Bucket: bucket.Bucket,
		AccessKeyID: strings.TrimSpace(string(s.Data[objectstore.AccessKeyID])), SecretKey: strings.TrimSpace(string(s.Data[objectstore.SecretAccessKey]))}
	store, err := objectstore.Open(loc, r.Egress)
	if err != nil {
		return nil, &objectstore.Problem{URL: "s3://" + bucket.Bucket, Code: "InvalidConfiguration",
			Message: fmt.Sprintf("Secret %q: %v", bucket.CredentialsSecretName, err)}
	}
	return store, nil
}

// endpointAllowed checks an object storage endpoint against the egress
// policy: a refusal (egress.ErrRefused) names the endpoint and why; a name
// that does not resolve is a Problem, checked again later.
func (r *InferenceBatchReconciler) endpointAllowed(ctx context.Context, endpoint string) error {
	u, err := url.Parse(endpoint)
	if err != nil {
		return &objectstore.Problem{URL: endpoint, Code: "InvalidEndpoint", Message: err.Error()}
	}
	_, err = r.Egress.Check(ctx, u.Hostname())
	switch {
	case errors.Is(err, egress.ErrRefused):
		return fmt.Errorf("object storage %s: %w", endpoint, err)
	case err != nil:
		return &objectstore.Problem{URL: endpoint, Code: "EndpointUnresolved", Message: err.Error()}
	}
	return nil
}

// HoldInputBytes is the largest input object whose items are held, like
// a ConfigMap's; a larger one is streamed as the batch runs. Holding small
// inputs keeps a thousand small batches from keeping a thousand streams
// (connections and buffers) open.
const HoldInputBytes = 1 << 20

// scanS3Items reads the batch's JSONL object once, as a stream, to check
// every line and count the items, keeping the ids below minScore (and, for
// an object of at most HoldInputBytes, the kept items). For a larger object
// the input's stream reads the kept items again, as the batch runs, from
// the same version of the object (its ETag): it is never held whole.
func (r *InferenceBatchReconciler) scanS3Items(ctx context.Context, b *llmv1.InferenceBatch, keeps func(items.Item) (bool, error)) (input, error) {
	ref := b.Spec.ItemsFrom.S3
	store, err := r.openBucket(ctx, b, ref.S3Bucket)
	if err != nil {
		return input{}, userFault(errInvalidItems, err)
	}
	var in input
	hold, limit := false, cmp.Or(r.HoldInputBytes, HoldInputBytes)
	etag, err := readS3Items(ctx, store, ref.Key, "", func(size int64) { hold = size <= limit }, func(it items.Item) (bool, error) {
		ok, err := keeps(it)
		if err != nil {
			return false, err
		}
		switch {
		case !ok:
			in.filtered = append(in.filtered, it.ID)
		case hold:
			in.items = append(in.items, it)
		}
		if ok {
			in.kept++
		}
		return true, nil
	})
	if err != nil {
		return input{}, err
	}
	in.total = in.kept + len(in.filtered)
	if in.total == 0 {
		return input{}, fmt.Errorf("%w: %s: no items", errInvalidItems, store.URL(ref.Key))
	}
	if hold {
		return in, nil
	}
	in.stream = func(ctx context.Context, each func(items.Item) bool) error {
		_, err := readS3Items(ctx, store, ref.Key, etag, nil, func(it items.Item) (bool, error) {
			if ok, _ := keeps(it); !ok {
				return true, nil
			}
			return each(it), nil
		})
		return err
	}
	return in, nil
}

// errStop ends a scan early without an error.
var errStop = errors.New("stop")

// readS3Items streams key's items (etag: that version only) into each,
// until each says stop, and returns the version read; sized, when set,
// learns the object's size first. Bad lines are the user's to fix
// (errInvalidItems); a read that breaks off is not.
func readS3Items(ctx context.Context, store *objectstore.Store, key, etag string, sized func(int64), each func(items.Item) (bool, error)) (string, error) {
	obj, err := store.Get(ctx, key, etag)
	if err != nil {
		return "", userFault(errInvalidItems, err)
	}
	defer func() { _ = obj.Close() }()
	if sized != nil {
		sized(obj.Size)
	}
	last := 0
	_, err = items.ScanJSONL(obj, func(line int, it items.Item) error {
		last = line
		more, err := each(it)
		if err == nil && !more {
			err = errStop
		}
		return err
	})
	if rerr := obj.Err(); rerr != nil && !errors.Is(err, errStop) {
		// The read broke off (the object vanished, the connection reset):
		// not the user's lines.
		return "", fmt.Errorf("reading %s after line %d: %w", store.URL(key), last, rerr)
	}
	if err != nil && !errors.Is(err, errStop) {
		return "", fmt.Errorf("%w: %s: %w", errInvalidItems, store.URL(key), err)
	}
	return obj.ETag, nil
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
