package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	llmv1 "github.com/llmquota/llmquota/api/v1alpha1"
	"github.com/llmquota/llmquota/internal/egress"
	"github.com/llmquota/llmquota/internal/objectstore"
	"github.com/llmquota/llmquota/internal/results"
	"github.com/llmquota/llmquota/internal/testbed/minioserver"
)

// inputKey is the object that holds batch i's items in an S3 run.
func inputKey(i int) string { return fmt.Sprintf("in/batch-%05d.jsonl", i) }

// objects is the MinIO of an S3 run and the bucket its batches use.
type objects struct {
	srv    *minioserver.Server
	store  *objectstore.Store
	bucket llmv1.S3Bucket
}

// startObjects starts MinIO, uploads every batch's JSONL and gives each
// namespace the Secret with the credentials.
func startObjects(ctx context.Context, k client.Client, c config, batches int) (*objects, error) {
	srv, err := minioserver.StartFromEnv()
	if err != nil {
		return nil, err
	}
	o := &objects{srv: srv, bucket: llmv1.S3Bucket{Endpoint: srv.Endpoint, Bucket: "bench", CredentialsSecretName: "s3"}}
	if err := srv.MakeBucket("bench"); err != nil {
		return nil, err
	}
	if o.store, err = objectstore.Open(objectstore.Location{Endpoint: srv.Endpoint, Bucket: "bench", AccessKeyID: minioserver.User, SecretKey: minioserver.Password}, egress.MustParse("127.0.0.1")); err != nil {
		return nil, err
	}
	for i := range min(c.namespaces, batches) {
		if err := k.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: fmt.Sprintf("team-%03d", i), Name: "s3"},
			StringData: map[string]string{objectstore.AccessKeyID: minioserver.User, objectstore.SecretAccessKey: minioserver.Password}}); err != nil {
			return nil, err
		}
	}
	for i := range batches {
		var b strings.Builder
		for j := range c.items {
			fmt.Fprintf(&b, "{\"id\":\"item-%06d\",\"prompt\":%q,\"score\":0.5}\n", j, prompt(i, j))
		}
		if err := o.store.Put(ctx, inputKey(i), []byte(b.String()), "application/x-ndjson"); err != nil {
			return nil, err
		}
	}
	return o, nil
}

// storedResultBytes adds up the results stored: the S3 parts when store
// holds them (nil: results in ConfigMaps), else the result ConfigMaps.
func storedResultBytes(ctx context.Context, k client.Client, store *objects) (int64, error) {
	if store != nil {
		return store.resultBytes(ctx)
	}
	var list corev1.ConfigMapList
	if err := k.List(ctx, &list, client.MatchingLabels{results.LabelResults: "true"}); err != nil {
		return 0, err
	}
	var n int64
	for _, cm := range list.Items {
		n += int64(len(cm.Data[results.DataKey]))
	}
	return n, nil
}

// resultBytes adds up the result parts in the bucket.
func (o *objects) resultBytes(ctx context.Context) (int64, error) {
	keys, err := o.store.List(ctx, "team-")
	if err != nil {
		return 0, err
	}
	var n int64
	for _, key := range keys {
		if !strings.Contains(key, "/part-") {
			continue
		}
		r, err := o.store.Get(ctx, key, "")
		if err != nil {
			return 0, err
		}
		m, err := io.Copy(io.Discard, r)
		_ = r.Close()
		if err != nil {
			return 0, err
		}
		n += m
	}
	return n, nil
}
