a = <<EOT
no end marker
  EOTX
