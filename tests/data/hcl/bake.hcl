# A typical bake file: variables, a function, inheritance, matrix, heredoc.
variable "REGISTRY" {
  default = "registry.example.com"
}

variable "TAGS" {
  type    = list(string)
  default = ["latest"]
}

function "tag" {
  params = [name, tag]
  result = "${REGISTRY}/${name}:${tag}"
}

group "default" {
  targets = ["app", "db"]
}

target "_common" {
  labels = {
    "org.opencontainers.image.source" = "https://example.com/repo"
  }
  args = { GO_VERSION = "1.22", DEBUG = false }
}

target "app" {
  inherits   = ["_common"]
  context    = "./app"
  dockerfile = "Dockerfile"
  tags       = [for t in TAGS : tag("app", t)]
  platforms  = ["linux/amd64", "linux/arm64"]
  cache-from = ["type=registry,ref=${REGISTRY}/app:cache"]
}

target "db" {
  name = "db-${ver}"
  matrix = {
    ver = ["15", "16"]
  }
  args = {
    PG_VERSION = ver
  }
  dockerfile-inline = <<-EOT
    FROM postgres:${ver}
    %{ for t in TAGS ~}
    LABEL tag=${t}
    %{ endfor ~}
    EOT
}
