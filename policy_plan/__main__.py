"""``python -m policy_plan --stack prod``: see :mod:`policy_plan.plan`."""

import sys

from policy_plan.plan import main

sys.exit(main())
