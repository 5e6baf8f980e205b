target "app" {
  tags = ["a"]

target "b" {
}
