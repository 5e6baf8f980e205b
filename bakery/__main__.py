from bakery.cli import main

raise SystemExit(main())
