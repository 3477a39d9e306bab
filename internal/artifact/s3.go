package artifact

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"

	"github.com/computeserver/compute/internal/task"
)

// S3Config configures an S3 store. The credentials, region and endpoint
// are the standard AWS_* settings; cmd/compute reads them into
// config.Config, which hands them here.
type S3Config struct {
	// URL is s3://BUCKET or s3://BUCKET/PREFIX (COMPUTE_ARTIFACTS_URL):
	// keys are stored under PREFIX/.
	URL string
	// Region is the bucket's region (AWS_REGION; default us-east-1, which
	// S3-compatible servers such as MinIO and versitygw accept; R2 wants
	// "auto").
	Region string
	// Endpoint is the S3 API's base URL for a server other than AWS
	// (AWS_ENDPOINT_URL_S3, e.g. http://127.0.0.1:7070 for MinIO, or
	// https://ACCOUNT.r2.cloudflarestorage.com). With an endpoint, buckets
	// are addressed by path (endpoint/bucket/key), which every
	// S3-compatible server supports; without one, AWS's virtual-hosted
	// addressing is used.
	Endpoint string
	// AccessKeyID is the access key of static credentials
	// (AWS_ACCESS_KEY_ID). Without it the SDK's default chain is used
	// (shared config files, web identity, the EC2 or ECS role).
	AccessKeyID string
	// SecretAccessKey is the secret of AccessKeyID (AWS_SECRET_ACCESS_KEY).
	SecretAccessKey string
}

// ParseS3URL splits s3://BUCKET/PREFIX into the bucket and the prefix
// (without slashes at its ends; "" for none).
func ParseS3URL(raw string) (bucket, prefix string, err error) {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "s3" || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return "", "", fmt.Errorf("%q: want s3://BUCKET or s3://BUCKET/PREFIX", raw)
	}
	prefix = strings.Trim(u.Path, "/")
	if prefix != "" {
		if err := ValidateKey(prefix); err != nil {
			return "", "", fmt.Errorf("%q: the prefix must be segments of letters, digits, '.', '_' and '-'", raw)
		}
	}
	return u.Host, prefix, nil
}

// S3 is a Store in an S3-compatible bucket (AWS S3, Cloudflare R2, MinIO,
// versitygw), with the keys of Local under a prefix.
type S3 struct {
	client  *s3.Client
	presign *s3.PresignClient
	bucket  string
	prefix  string // "" or "prefix/"
}

var (
	_ Store     = (*S3)(nil)
	_ Presigner = (*S3)(nil)
	_ Locator   = (*S3)(nil)
)

// NewS3 returns the store cfg describes. It does not contact the server;
// Check does.
func NewS3(ctx context.Context, cfg S3Config) (*S3, error) {
	bucket, prefix, err := ParseS3URL(cfg.URL)
	if err != nil {
		return nil, err
	}
	region := cfg.Region
	if region == "" {
		region = "us-east-1"
	}
	opts := []func(*awsconfig.LoadOptions) error{awsconfig.WithRegion(region)}
	if cfg.AccessKeyID != "" || cfg.SecretAccessKey != "" {
		opts = append(opts, awsconfig.WithCredentialsProvider(credentials.NewStaticCredentialsProvider(cfg.AccessKeyID, cfg.SecretAccessKey, "")))
	}
	awsCfg, err := awsconfig.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("configuring S3: %w", err)
	}
	client := s3.NewFromConfig(awsCfg, func(o *s3.Options) {
		if cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(cfg.Endpoint)
			o.UsePathStyle = true
		}
		// Checksums only where the API requires them: S3-compatible
		// servers differ in which of the newer checksum headers they
		// accept.
		o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
		o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
	})
	if prefix != "" {
		prefix += "/"
	}
	return &S3{client: client, presign: s3.NewPresignClient(client), bucket: bucket, prefix: prefix}, nil
}

// Check reports whether the bucket can be reached with the credentials, so
// a misconfiguration shows at start rather than at the first task.
func (s *S3) Check(ctx context.Context) error {
	_, err := s.client.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: &s.bucket, Prefix: aws.String(s.prefix), MaxKeys: aws.Int32(1)})
	if err != nil {
		return fmt.Errorf("checking the artifact bucket %s: %w", s.bucket, err)
	}
	return nil
}

// Put implements Store. S3 writes an object whole or not at all.
func (s *S3) Put(ctx context.Context, key, contentType string, data []byte) (task.Artifact, error) {
	if err := ValidateKey(key); err != nil {
		return task.Artifact{}, err
	}
	if contentType == "" {
		contentType = contentTypeOf(key)
	}
	_, err := s.client.PutObject(ctx, &s3.PutObjectInput{
		Bucket: &s.bucket, Key: aws.String(s.prefix + key), Body: bytes.NewReader(data),
		ContentLength: aws.Int64(int64(len(data))), ContentType: aws.String(contentType),
	})
	if err != nil {
		return task.Artifact{}, fmt.Errorf("storing artifact %s: %w", key, err)
	}
	sum := sha256.Sum256(data)
	return task.Artifact{Key: key, ContentType: contentType, Size: int64(len(data)), SHA256: hex.EncodeToString(sum[:])}, nil
}

// Stat implements Store.
func (s *S3) Stat(ctx context.Context, key string) (task.Artifact, error) {
	a, _, err := s.head(ctx, key)
	return a, err
}

// head returns the descriptor and the ETag of the object at key.
func (s *S3) head(ctx context.Context, key string) (task.Artifact, string, error) {
	if err := ValidateKey(key); err != nil {
		return task.Artifact{}, "", err
	}
	out, err := s.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &s.bucket, Key: aws.String(s.prefix + key)})
	if err != nil {
		if notFound(err) {
			return task.Artifact{}, "", ErrNotFound
		}
		return task.Artifact{}, "", fmt.Errorf("reading artifact %s: %w", key, err)
	}
	ct := aws.ToString(out.ContentType)
	if ct == "" {
		ct = contentTypeOf(key)
	}
	return task.Artifact{Key: key, ContentType: ct, Size: aws.ToInt64(out.ContentLength)}, aws.ToString(out.ETag), nil
}

// Open implements Store. The content is read with ranged GETs as it is
// read, from where the last Seek left it, so serving a Range of a large
// artifact reads only that range; the object must keep the ETag it had
// when it was opened.
func (s *S3) Open(ctx context.Context, key string) (io.ReadSeekCloser, task.Artifact, error) {
	a, etag, err := s.head(ctx, key)
	if err != nil {
		return nil, task.Artifact{}, err
	}
	return &s3Reader{ctx: ctx, s: s, key: key, etag: etag, size: a.Size}, a, nil
}

// Delete implements Store.
func (s *S3) Delete(ctx context.Context, key string) error {
	if err := ValidateKey(key); err != nil {
		return err
	}
	if _, err := s.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &s.bucket, Key: aws.String(s.prefix + key)}); err != nil && !notFound(err) {
		return fmt.Errorf("deleting artifact %s: %w", key, err)
	}
	return nil
}

// ListTask implements Store.
func (s *S3) ListTask(ctx context.Context, taskID string) ([]Object, error) {
	if err := validTaskID(taskID); err != nil {
		return nil, err
	}
	var objs []Object
	p := s3.NewListObjectsV2Paginator(s.client, &s3.ListObjectsV2Input{Bucket: &s.bucket, Prefix: aws.String(s.prefix + TaskKey(taskID, ""))})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("listing the artifacts of task %s: %w", taskID, err)
		}
		for _, o := range page.Contents {
			key := strings.TrimPrefix(aws.ToString(o.Key), s.prefix)
			if ValidateKey(key) != nil {
				continue // not written by us
			}
			objs = append(objs, Object{Key: key, Size: aws.ToInt64(o.Size), Modified: aws.ToTime(o.LastModified)})
		}
	}
	return objs, nil
}

// DeleteTask implements Store. Objects are deleted one by one (a task has
// a few), which every S3-compatible server supports.
func (s *S3) DeleteTask(ctx context.Context, taskID string) (int, error) {
	objs, err := s.ListTask(ctx, taskID)
	if err != nil {
		return 0, err
	}
	for i, o := range objs {
		if err := s.Delete(ctx, o.Key); err != nil {
			return i, err
		}
	}
	return len(objs), nil
}

// Presign implements Presigner: a SigV4 query-signed GET URL, valid for
// ttl (at most 7 days, S3's limit).
func (s *S3) Presign(ctx context.Context, key string, ttl time.Duration) (string, error) {
	if err := ValidateKey(key); err != nil {
		return "", err
	}
	req, err := s.presign.PresignGetObject(ctx, &s3.GetObjectInput{Bucket: &s.bucket, Key: aws.String(s.prefix + key)}, s3.WithPresignExpires(ttl))
	if err != nil {
		return "", fmt.Errorf("presigning artifact %s: %w", key, err)
	}
	return req.URL, nil
}

// URL returns the s3:// URL of the artifact at key, which tasks may name
// as input.
func (s *S3) URL(key string) string { return "s3://" + s.bucket + "/" + s.prefix + key }

// KeyOf implements Locator: s3://BUCKET/PREFIX/<key> names <key>.
func (s *S3) KeyOf(u *url.URL) (string, bool) {
	if u.Scheme != "s3" || u.Host != s.bucket {
		return "", false
	}
	key, ok := strings.CutPrefix(strings.TrimPrefix(u.Path, "/"), s.prefix)
	if !ok {
		return "", false
	}
	return key, true
}

// notFound reports whether err is S3's answer for a missing object.
func notFound(err error) bool {
	var nsk *types.NoSuchKey
	var nf *types.NotFound
	if errors.As(err, &nsk) || errors.As(err, &nf) {
		return true
	}
	var ae smithy.APIError
	if errors.As(err, &ae) && (ae.ErrorCode() == "NoSuchKey" || ae.ErrorCode() == "NotFound") {
		return true
	}
	var re interface{ HTTPStatusCode() int }
	return errors.As(err, &re) && re.HTTPStatusCode() == http.StatusNotFound
}

// s3Reader reads an object from its offset with a ranged GET opened on the
// first Read after a Seek. It keeps the context of the Open it came from:
// it lives within that request.
type s3Reader struct {
	ctx  context.Context //nolint:containedctx // bound to the request that opened it
	s    *S3
	key  string
	etag string
	size int64
	off  int64
	body io.ReadCloser
}

// Read implements io.Reader.
func (r *s3Reader) Read(p []byte) (int, error) {
	if r.off >= r.size {
		return 0, io.EOF
	}
	if r.body == nil {
		in := &s3.GetObjectInput{Bucket: &r.s.bucket, Key: aws.String(r.s.prefix + r.key), Range: aws.String(fmt.Sprintf("bytes=%d-", r.off))}
		if r.etag != "" {
			in.IfMatch = aws.String(r.etag)
		}
		out, err := r.s.client.GetObject(r.ctx, in)
		if err != nil {
			if notFound(err) {
				return 0, fmt.Errorf("reading artifact %s: %w", r.key, ErrNotFound)
			}
			return 0, fmt.Errorf("reading artifact %s: %w", r.key, err)
		}
		r.body = out.Body
	}
	n, err := r.body.Read(p)
	r.off += int64(n)
	if errors.Is(err, io.EOF) && r.off < r.size {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

// Seek implements io.Seeker.
func (r *s3Reader) Seek(offset int64, whence int) (int64, error) {
	var off int64
	switch whence {
	case io.SeekStart:
		off = offset
	case io.SeekCurrent:
		off = r.off + offset
	case io.SeekEnd:
		off = r.size + offset
	default:
		return 0, errors.New("seek: invalid whence")
	}
	if off < 0 {
		return 0, errors.New("seek: negative position")
	}
	if off != r.off && r.body != nil {
		r.body.Close()
		r.body = nil
	}
	r.off = off
	return off, nil
}

// Close implements io.Closer.
func (r *s3Reader) Close() error {
	if r.body == nil {
		return nil
	}
	err := r.body.Close()
	r.body = nil
	return err
}

// CreateBucket creates the store's bucket if it does not exist yet (a
// deployment's first start: Compose's bucket service runs `compute
// artifacts create-bucket`). It reports whether it made the bucket; a
// bucket this account already owns is not an error.
func (s *S3) CreateBucket(ctx context.Context) (created bool, err error) {
	if _, err := s.client.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: &s.bucket}); err == nil {
		return false, nil
	}
	_, err = s.client.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: &s.bucket})
	var owned *types.BucketAlreadyOwnedByYou
	if errors.As(err, &owned) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("creating the artifact bucket %s: %w", s.bucket, err)
	}
	return true, nil
}
