from unetseg.cli import main

raise SystemExit(main())
