target "app" {
  context = "." dockerfile = "Dockerfile"
}
