größe = "äöü-${x}"
π     = 3.14159
emoji = "😀 ${π}"
label "ünïcödé" { v = größe }
