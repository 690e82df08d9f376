package results

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/llmquota/llmquota/internal/egress"
	"github.com/llmquota/llmquota/internal/objectstore"
	"github.com/llmquota/llmquota/internal/testbed/minioserver"
)

// TestS3StoreAgainstMinIO writes results as bounded parts and a manifest
// into a real MinIO, and reads them back as a restarted manager would.
func TestS3StoreAgainstMinIO(t *testing.T) {
	srv, err := minioserver.StartFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	if err := srv.MakeBucket("results"); err != nil {
		t.Fatal(err)
	}
	bucket, err := objectstore.Open(objectstore.Location{Endpoint: srv.Endpoint, Bucket: "results",
		AccessKeyID: minioserver.User, SecretKey: minioserver.Password}, egress.MustParse("127.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	s, err := LoadS3(ctx, bucket, "team-a/news/", nil)
	if err != nil {
		t.Fatal(err)
	}
	s.partBytes = 2048
	for i := range 60 {
		s.Add(result(i))
	}
	s.Add(Result{ID: "f", Status: Filtered})
	if n, err := s.Flush(ctx); err != nil || n != 61 {
		t.Fatalf("flushed %d, %v", n, err)
	}
	keys, err := bucket.List(ctx, "team-a/news/")
	if err != nil {
		t.Fatal(err)
	}
	parts := 0
	for _, k := range keys {
		if strings.Contains(k, "part-") {
			parts++
			if size := len(read(t, bucket, k)); size > 2048 {
				t.Fatalf("part %s holds %d bytes, above its bound", k, size)
			}
		}
	}
	if parts < 3 {
		t.Fatalf("%d parts for 61 results at 2 KiB a part, want several", parts)
	}
	var m Manifest
	if err := json.Unmarshal(read(t, bucket, "team-a/news/manifest.json"), &m); err != nil {
		t.Fatal(err)
	}
	if len(m.Parts) != parts || m.Counts[Succeeded] != 60 || m.Counts[Filtered] != 1 {
		t.Fatalf("manifest %+v; want %d parts, 60 succeeded, 1 filtered", m, parts)
	}
	if refs := s.References(); len(refs) != 1 || refs[0].Kind != "S3" || refs[0].Name != "s3://results/team-a/news/manifest.json" || refs[0].Items != 61 {
		t.Fatalf("references %+v", refs)
	}

	again, err := LoadS3(ctx, bucket, "team-a/news/", nil)
	if err != nil {
		t.Fatal(err)
	}
	if c := again.Counts(); c[Succeeded] != 60 || c[Filtered] != 1 || !again.Has("item-42") {
		t.Fatalf("read back %v", c)
	}
	again.Add(Result{ID: "late", Status: Failed}, result(7))
	if n, err := again.Flush(ctx); err != nil || n != 1 {
		t.Fatalf("flushed %d, %v: a result for an id already stored must be dropped", n, err)
	}
	if want := fmt.Sprintf("team-a/news/part-%05d.jsonl", parts); again.parts[len(again.parts)-1].Key != want {
		t.Fatalf("the next part is %s, want %s", again.parts[len(again.parts)-1].Key, want)
	}
	// Another batch's prefix is not read.
	other, err := LoadS3(ctx, bucket, "team-a/news-2/", nil)
	if err != nil || len(other.Counts()) != 0 {
		t.Fatalf("a sibling prefix read %v, %v", other.Counts(), err)
	}
}

func read(t *testing.T, b *objectstore.Store, key string) []byte {
	t.Helper()
	r, err := b.Get(context.Background(), key, "")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = r.Close() }()
	data, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return data
}
