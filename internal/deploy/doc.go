// Package deploy holds no code: its tests check the container build (the
// Dockerfile at the repository root) and the Docker Compose topology
// (compose.yaml) on a machine without a Docker daemon. They parse both
// files, build the binary exactly as the Dockerfile's build stage does
// (CGO_ENABLED=0) and check it is static, and run the Compose services as
// native processes with the files' own commands and environment, the
// compute processes as the image's non-root user. docs/deploy.md says
// what that proves and what it cannot.
package deploy
