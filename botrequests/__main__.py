from botrequests.cli import main

raise SystemExit(main())
