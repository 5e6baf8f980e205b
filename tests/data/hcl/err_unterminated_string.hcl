variable "X" {
  default = "unterminated
}
