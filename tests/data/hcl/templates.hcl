plain     = "hello"
escapes   = "tab\there \"quoted\" back\\slash \u00e9 \U0001F600"
literal   = "$${not_interpolated} %%{not_a_directive}"
wrapped   = "${var.value}"
mixed     = "a-${x}-b-${y + 1}"
strip     = "a ${~ x ~} b"
if_else   = "%{ if cond }yes%{ else }no%{ endif }"
for_loop  = "%{ for k, v in m ~} ${k}=${v} %{~ endfor }"
heredoc   = <<EOT
line one
  ${x} indented
EOT
flush     = <<-EOT
    first
      second
    ${x}
    EOT
nested    = "outer ${f("inner ${x}")}"
