"""What both command-line programs share: turning user errors into one clear line."""

from __future__ import annotations

import functools
import sys

from absl import flags, logging

from icl_jax.errors import NonFiniteLoss, UserError


def reports_user_errors(main):
    """Wraps an absl main: a UserError or NonFiniteLoss prints `error: ...` and exits 1;
    library INFO logs are off unless --verbosity is given."""

    @functools.wraps(main)
    def wrapped(argv):
        if not flags.FLAGS["verbosity"].present:  # orbax logs every save at INFO and read-only restores at WARNING
            logging.set_verbosity(logging.ERROR)
        try:
            return main(argv)
        except (UserError, NonFiniteLoss) as e:
            print(f"error: {e}", file=sys.stderr, flush=True)
            sys.exit(1)

    return wrapped
