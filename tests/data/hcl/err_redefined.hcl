target "app" {
  tags = ["a"]
  tags = ["b"]
}
