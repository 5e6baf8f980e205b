a = [for x in xs: x
b = 1
