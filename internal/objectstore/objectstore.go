// Package objectstore reads and writes objects in S3-compatible storage
// (AWS S3, GCS through its S3 interoperability, MinIO, Ceph RGW) for large
// batches: their JSONL input, read as a stream, and their results, written
// as parts of bounded size and a manifest.
//
// It uses minio-go: one small module that speaks SigV4 to every
// S3-compatible store, streams GETs and PUTs, and brings no cloud SDK's
// configuration chain (the credentials come only from the Secret the batch
// names, never from the manager's environment).
package objectstore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/llmquota/llmquota/internal/egress"
)

// Secret keys holding the credentials.
const (
	AccessKeyID     = "accessKeyID"
	SecretAccessKey = "secretAccessKey"
)

// Location is a bucket and how to reach it.
type Location struct {
	Endpoint, Region, Bucket string
	AccessKeyID, SecretKey   string
}

// transports carry every client's requests: one connection pool for the
// manager (one per egress policy, and a manager has one), however many
// batches read or write object storage (a client of its own per batch
// would keep a pool, and idle connections, per batch).
var transports sync.Map // *egress.Policy -> *http.Transport

// transport returns the transport whose every connection the policy
// checks. No proxy is used: the policy decides what is dialed, and a
// proxy would be the only address it saw.
func transport(p *egress.Policy) http.RoundTripper {
	if t, ok := transports.Load(p); ok {
		return t.(*http.Transport)
	}
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.Proxy = nil
	t.DialContext = p.DialContext((&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext)
	t.MaxIdleConnsPerHost = 64
	t.DisableCompression = true // objects are read as they are stored
	got, _ := transports.LoadOrStore(p, t)
	return got.(*http.Transport)
}

// clients are shared by every Store that reaches the same endpoint with
// the same credentials. A minio.Client keeps state of its own (a random
// source for retry jitter, a bucket-location cache: about 6 KB), which a
// thousand running batches of one bucket held a thousand times (6 MB of a
// 47 MB heap in the scale benchmark's S3 run).
var clients = struct {
	sync.Mutex
	m map[clientKey]*minio.Client
}{m: map[clientKey]*minio.Client{}}

// maxClients bounds the cache: past it the cache starts again (Stores keep
// the clients they hold), so rotated credentials do not pile up.
const maxClients = 256

type clientKey struct {
	policy                    *egress.Policy
	host, region, accessKeyID string
	secretKey                 [sha256.Size]byte // the key itself stays in the client alone
	secure                    bool
}

func client(host string, secure bool, loc Location, policy *egress.Policy) (*minio.Client, error) {
	key := clientKey{policy: policy, host: host, region: loc.Region, accessKeyID: loc.AccessKeyID, secretKey: sha256.Sum256([]byte(loc.SecretKey)), secure: secure}
	clients.Lock()
	defer clients.Unlock()
	if c, ok := clients.m[key]; ok {
		return c, nil
	}
	c, err := minio.New(host, &minio.Options{
		Creds:  credentials.NewStaticV4(loc.AccessKeyID, loc.SecretKey, ""),
		Secure: secure, Region: loc.Region, Transport: transport(policy),
	})
	if err != nil {
		return nil, err
	}
	if len(clients.m) >= maxClients {
		clear(clients.m)
	}
	clients.m[key] = c
	return c, nil
}

// Store is a client of one bucket.
type Store struct {
	c      *minio.Client
	bucket string
	where  string // s3://bucket, for messages
}

// Open returns a client of loc's bucket whose every connection policy
// checks. It does not call the store.
func Open(loc Location, policy *egress.Policy) (*Store, error) {
	u, err := url.Parse(loc.Endpoint)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, fmt.Errorf("endpoint %q is not an http(s) URL", loc.Endpoint)
	}
	if loc.AccessKeyID == "" || loc.SecretKey == "" {
		return nil, fmt.Errorf("credentials need both %s and %s", AccessKeyID, SecretAccessKey)
	}
	c, err := client(u.Host, u.Scheme == "https", loc, policy)
	if err != nil {
		return nil, err
	}
	return &Store{c: c, bucket: loc.Bucket, where: "s3://" + loc.Bucket}, nil
}

// URL names an object for messages and status: s3://bucket/key.
func (s *Store) URL(key string) string { return s.where + "/" + key }

// Reader streams one object. Its Err says why a read stopped early (the
// object vanished or changed, the connection broke), apart from a scanner
// that stopped at a bad line.
type Reader struct {
	obj *minio.Object
	err error
	// ETag identifies the version read: a later read of the same version
	// fails if the object changed meanwhile.
	ETag string
	// Size is the object's size in bytes.
	Size int64
}

// Read implements io.Reader, remembering the first error that is not EOF.
func (r *Reader) Read(p []byte) (int, error) {
	n, err := r.obj.Read(p)
	if err != nil && !errors.Is(err, io.EOF) && r.err == nil {
		r.err = err
	}
	return n, err
}

// Err is the first read error that was not the object's end.
func (r *Reader) Err() error { return r.err }

// Close releases the connection.
func (r *Reader) Close() error { return r.obj.Close() }

// Get opens key for reading, checking that it exists and can be read; etag,
// when not empty, requires that exact version.
func (s *Store) Get(ctx context.Context, key, etag string) (*Reader, error) {
	opts := minio.GetObjectOptions{}
	if etag != "" {
		if err := opts.SetMatchETag(etag); err != nil {
			return nil, err
		}
	}
	obj, err := s.c.GetObject(ctx, s.bucket, key, opts)
	if err != nil {
		return nil, s.explain(key, err)
	}
	info, err := obj.Stat() // the first request: errors show here
	if err != nil {
		_ = obj.Close()
		return nil, s.explain(key, err)
	}
	return &Reader{obj: obj, ETag: info.ETag, Size: info.Size}, nil
}

// Put writes data as key.
func (s *Store) Put(ctx context.Context, key string, data []byte, contentType string) error {
	_, err := s.c.PutObject(ctx, s.bucket, key, bytes.NewReader(data), int64(len(data)),
		minio.PutObjectOptions{ContentType: contentType})
	if err != nil {
		return s.explain(key, err)
	}
	return nil
}

// List returns the keys under prefix, in order.
func (s *Store) List(ctx context.Context, prefix string) ([]string, error) {
	var keys []string
	for obj := range s.c.ListObjects(ctx, s.bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
		if obj.Err != nil {
			return nil, s.explain(prefix, obj.Err)
		}
		keys = append(keys, obj.Key)
	}
	return keys, nil
}

// Problem is a failure the user must fix (a missing bucket or object, or
// credentials the store refuses), as opposed to one that passes by itself.
type Problem struct {
	URL, Code, Message string
}

func (p *Problem) Error() string { return fmt.Sprintf("%s: %s (%s)", p.URL, p.Message, p.Code) }

// explain turns the store's error into a Problem that names the object
// when the user must act, and otherwise wraps it with the object's URL.
func (s *Store) explain(key string, err error) error {
	resp := minio.ToErrorResponse(err)
	msg := map[string]string{
		"NoSuchBucket":          "the bucket does not exist",
		"NoSuchKey":             "the object does not exist",
		"AccessDenied":          "the store refused the credentials' access",
		"InvalidAccessKeyId":    "the store does not know the access key id",
		"SignatureDoesNotMatch": "the secret access key is wrong",
		"PreconditionFailed":    "the object changed since the batch was admitted",
	}[resp.Code]
	if msg == "" {
		return fmt.Errorf("%s: %w", s.URL(key), err)
	}
	return &Problem{URL: s.URL(key), Code: resp.Code, Message: msg}
}
