import sys

from stepflow.runtime.invoke import main

sys.exit(main())
