arith    = 1 + 2 * 3 - -4 / 2 % 3
compare  = a >= 1 && b != "x" || !c
cond     = a ? b : c ? d : e
tuple    = [1, "two", true, null, [3]]
object   = { a = 1, "b" = 2, (k) = 3, d: 4 }
multi    = {
  one = 1
  two = 2,
  list = [
    1,
    2,
  ]
}
for_list = [for i, v in xs : v * i if i > 0]
for_map  = { for k, v in m : upper(k) => v... }
splat    = xs[*].name
legacy   = xs.*.name
index    = xs[0]["k"].0
call     = merge(a, b...)
scoped   = provider::ns::fn(1)
parens   = (a + b) * c
