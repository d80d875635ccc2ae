# The operator image (images/operator/Dockerfile), built by hack/build-image.sh: `docker build`
# where a Docker engine answers, otherwise buildah on a cached local Debian base (docs/install.md).
# Included by the Makefile (hack/*.mk); IMAGE's default is in chart.mk.

# IMAGE_ARCHIVE=FILE also writes the image as a docker-archive (`kind load image-archive FILE`).
IMAGE_ARCHIVE ?=

.PHONY: image
image: ## build the operator image: docker build, or buildah (chroot) without a Docker engine
	IMAGE=$(IMAGE) bash hack/build-image.sh $(if $(IMAGE_ARCHIVE),--archive $(IMAGE_ARCHIVE))
