// Package s3client builds the one S3 client configuration the project uses against R2
// and the embedded store: region "auto", path-style addressing, static credentials,
// and checksums only where required (R2 rejects the SDK's default trailing checksums).
package s3client

import (
	"net/http"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// New returns a client for endpoint with a static credential; httpClient nil means
// the SDK's default.
func New(endpoint, accessKeyID, secret string, httpClient *http.Client) *s3.Client {
	o := s3.Options{
		Region:                     "auto",
		BaseEndpoint:               aws.String(strings.TrimRight(endpoint, "/")),
		UsePathStyle:               true,
		Credentials:                credentials.NewStaticCredentialsProvider(accessKeyID, secret, ""),
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenRequired,
	}
	if httpClient != nil {
		o.HTTPClient = httpClient
	}
	return s3.New(o)
}
