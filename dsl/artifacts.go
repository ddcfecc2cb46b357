package dsl

import (
	"context"
	"errors"
	"maps"
	"slices"
	"time"
)

// UploadArtifact uploads path (a file, or a directory as a browsable tar.gz) of the
// sandbox as the artifact name, as the durable step step. With optional, a path that
// does not exist uploads nothing and returns a zero Artifact (a report the command did
// not write is not an error of the run). Failures are *ArtifactUploadFailed.
func UploadArtifact(c *Ctx, step, name, path string, optional bool) (Artifact, error) {
	if c.Artifacts == nil || c.Sandbox == nil {
		return Artifact{}, &ArtifactUploadFailed{Name: name, Cause: "this platform stores no artifacts"}
	}
	return Step(c, step, func(ctx context.Context) (Artifact, error) {
		if optional {
			ok, err := c.Sandbox.Exists(ctx, path)
			if err != nil {
				return Artifact{}, err
			}
			if !ok {
				c.logger().Info("nothing to upload", "artifact", name, "path", path)
				return Artifact{}, nil
			}
		}
		a, err := c.Artifacts.Upload(ctx, name, path, "")
		if err != nil {
			var t TypedError
			if errors.As(err, &t) {
				return Artifact{}, err
			}
			return Artifact{}, &ArtifactUploadFailed{Name: name, Cause: err.Error()}
		}
		return a, nil
	}, Retries(2), Timeout(10*time.Minute))
}

// UploadData uploads files held in memory (screenshots a run took, a replay page) as
// the directory artifact name, as the durable step step.
func UploadData(c *Ctx, step, name string, files map[string][]byte) (Artifact, error) {
	if c.Artifacts == nil {
		return Artifact{}, &ArtifactUploadFailed{Name: name, Cause: "this platform stores no artifacts"}
	}
	return Step(c, step, func(ctx context.Context) (Artifact, error) {
		entries := make([]TreeEntry, 0, len(files))
		for _, p := range slices.Sorted(maps.Keys(files)) {
			entries = append(entries, TreeEntry{Path: p, Data: files[p]})
		}
		a, err := c.Artifacts.UploadTree(ctx, name, entries)
		if err != nil {
			var t TypedError
			if errors.As(err, &t) {
				return Artifact{}, err
			}
			return Artifact{}, &ArtifactUploadFailed{Name: name, Cause: err.Error()}
		}
		return a, nil
	}, Retries(2), Timeout(10*time.Minute))
}
