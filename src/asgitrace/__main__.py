from asgitrace.cli import main

raise SystemExit(main())
