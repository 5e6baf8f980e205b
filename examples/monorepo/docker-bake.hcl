# A small monorepo: three services on one shared base, two platforms.
#
#   bakery plan --print            # resolved targets, as `docker buildx bake --print`
#   bakery ls                      # targets, groups, variables
#
# The base image is a local busybox (tests build it from Debian's
# busybox-static and push it to a registry on 127.0.0.1).

variable "REGISTRY" {
  description = "Where images are pushed"
  default     = "127.0.0.1:5000/bakery-example"
}

variable "BASE_IMAGE" {
  description = "Base image every service starts FROM"
  default     = "127.0.0.1:5000/bakery/busybox:latest"
}

variable "VERSION" {
  default = "dev"
}

variable "PLATFORMS" {
  type    = list(string)
  default = ["linux/amd64", "linux/arm64"]
}

function "image" {
  params = [name]
  result = ["${REGISTRY}/${name}:${VERSION}", "${REGISTRY}/${name}:latest"]
}

group "default" {
  targets = ["services"]
}

group "services" {
  targets = ["api", "worker", "web"]
}

target "_common" {
  args = {
    BASE_IMAGE = BASE_IMAGE
    VERSION    = VERSION
  }
  labels = {
    "org.opencontainers.image.version" = VERSION
  }
  platforms = PLATFORMS
}

target "base" {
  inherits = ["_common"]
  context  = "base"
}

target "api" {
  inherits = ["_common"]
  context  = "services/api"
  contexts = { base = "target:base" }
  tags     = image("api")
  output   = ["type=oci,dest=out/api.tar"]
}

target "worker" {
  inherits = ["_common"]
  context  = "services/worker"
  contexts = { base = "target:base" }
  tags     = image("worker")
  output   = ["type=oci,dest=out/worker.tar"]
}

target "web" {
  name     = "web-${flavor}"
  matrix   = { flavor = ["plain", "debug"] }
  inherits = ["_common"]
  context  = "services/web"
  args     = { FLAVOR = flavor }
  tags     = image("web-${flavor}")
  output   = ["type=oci,dest=out/web-${flavor}.tar"]
}
