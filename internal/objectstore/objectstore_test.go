package objectstore

import (
	"context"
	"errors"
	"io"
	"testing"

	"github.com/llmquota/llmquota/internal/egress"
	"github.com/llmquota/llmquota/internal/testbed/minioserver"
)

func startMinIO(t *testing.T) *minioserver.Server {
	t.Helper()
	srv, err := minioserver.StartFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	if err := srv.MakeBucket("inputs"); err != nil {
		t.Fatal(err)
	}
	return srv
}

func open(t *testing.T, srv *minioserver.Server, bucket, user, password string) *Store {
	t.Helper()
	s, err := Open(Location{Endpoint: srv.Endpoint, Bucket: bucket, AccessKeyID: user, SecretKey: password}, local)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestAgainstMinIO: put, list and stream an object of a real MinIO, and
// each mistake a user makes answered by a Problem naming the object.
func TestAgainstMinIO(t *testing.T) {
	srv := startMinIO(t)
	ctx := context.Background()
	s := open(t, srv, "inputs", minioserver.User, minioserver.Password)
	if err := s.Put(ctx, "batches/a.jsonl", []byte("{\"id\":\"a\"}\n"), "application/x-ndjson"); err != nil {
		t.Fatal(err)
	}
	if keys, err := s.List(ctx, "batches/"); err != nil || len(keys) != 1 || keys[0] != "batches/a.jsonl" {
		t.Fatalf("list: %v, %v", keys, err)
	}
	r, err := s.Get(ctx, "batches/a.jsonl", "")
	if err != nil {
		t.Fatal(err)
	}
	data, err := io.ReadAll(r)
	_ = r.Close()
	if err != nil || string(data) != "{\"id\":\"a\"}\n" || r.ETag == "" || r.Err() != nil {
		t.Fatalf("read %q, etag %q, %v, %v", data, r.ETag, err, r.Err())
	}

	// The same version by its ETag reads; a changed object does not.
	if again, err := s.Get(ctx, "batches/a.jsonl", r.ETag); err != nil {
		t.Fatalf("read by ETag: %v", err)
	} else {
		_ = again.Close()
	}
	if err := s.Put(ctx, "batches/a.jsonl", []byte("{\"id\":\"b\"}\n"), ""); err != nil {
		t.Fatal(err)
	}

	for name, tc := range map[string]struct {
		store *Store
		key   string
		etag  string
		code  string
	}{
		"missing object":     {store: s, key: "batches/none.jsonl", code: "NoSuchKey"},
		"changed object":     {store: s, key: "batches/a.jsonl", etag: r.ETag, code: "PreconditionFailed"},
		"missing bucket":     {store: open(t, srv, "no-such-bucket", minioserver.User, minioserver.Password), key: "a", code: "NoSuchBucket"},
		"unknown access key": {store: open(t, srv, "inputs", "nobody", minioserver.Password), key: "batches/a.jsonl", code: "InvalidAccessKeyId"},
		"wrong secret":       {store: open(t, srv, "inputs", minioserver.User, "wrong-secret-key"), key: "batches/a.jsonl", code: "SignatureDoesNotMatch"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := tc.store.Get(ctx, tc.key, tc.etag)
			var p *Problem
			if !errors.As(err, &p) || p.Code != tc.code {
				t.Fatalf("got %v, want a Problem %s", err, tc.code)
			}
			if p.URL != tc.store.URL(tc.key) {
				t.Fatalf("the problem names %s, want %s", p.URL, tc.store.URL(tc.key))
			}
		})
	}
}

func TestOpenRefusesBadLocations(t *testing.T) {
	for _, loc := range []Location{
		{Endpoint: "minio:9000", Bucket: "b", AccessKeyID: "a", SecretKey: "s"},
		{Endpoint: "ftp://minio", Bucket: "b", AccessKeyID: "a", SecretKey: "s"},
		{Endpoint: "http://minio:9000", Bucket: "b", AccessKeyID: "a"},
	} {
		if _, err := Open(loc, local); err == nil {
			t.Fatalf("Open(%+v) accepted", loc)
		}
	}
}

// A thousand batches of one bucket hold one client, not a thousand; other
// credentials or another endpoint get their own.
func TestOpenSharesAClientPerEndpointAndCredentials(t *testing.T) {
	base := Location{Endpoint: "http://minio:9000", Bucket: "in", AccessKeyID: "a", SecretKey: "s"}
	open := func(edit func(*Location)) *Store {
		loc := base
		edit(&loc)
		s, err := Open(loc, local)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	first := open(func(*Location) {})
	for name, tc := range map[string]struct {
		edit   func(*Location)
		shared bool
	}{
		"the same location":    {func(*Location) {}, true},
		"another bucket":       {func(l *Location) { l.Bucket = "out" }, true},
		"another secret key":   {func(l *Location) { l.SecretKey = "t" }, false},
		"another access key":   {func(l *Location) { l.AccessKeyID = "b" }, false},
		"another endpoint":     {func(l *Location) { l.Endpoint = "http://minio:9001" }, false},
		"TLS to the same host": {func(l *Location) { l.Endpoint = "https://minio:9000" }, false},
		"another region":       {func(l *Location) { l.Region = "eu-west-1" }, false},
	} {
		if got := open(tc.edit).c == first.c; got != tc.shared {
			t.Errorf("%s: shares the client %t, want %t", name, got, tc.shared)
		}
	}
	if s := open(func(l *Location) { l.Bucket = "out" }); s.bucket != "out" || s.URL("k") != "s3://out/k" {
		t.Errorf("a shared client's store names %s, want bucket out", s.URL("k"))
	}
}

// local lets the tests reach their MinIO on the loopback address.
var local = egress.MustParse("127.0.0.1")

// TestConnectionsFollowThePolicy: a store the policy does not allow is
// never reached, and the error says why.
func TestConnectionsFollowThePolicy(t *testing.T) {
	for name, policy := range map[string]*egress.Policy{"no list (public only)": nil, "a list without it": egress.MustParse("10.0.0.0/8")} {
		refused, err := Open(Location{Endpoint: "http://127.0.0.1:1", Bucket: "guarded", AccessKeyID: "a", SecretKey: "s"}, policy)
		if err != nil {
			t.Fatal(err)
		}
		err = refused.Put(context.Background(), "x", []byte("x"), "text/plain")
		if !errors.Is(err, egress.ErrRefused) {
			t.Errorf("%s: Put to 127.0.0.1: %v, want a refusal", name, err)
		}
	}
}
