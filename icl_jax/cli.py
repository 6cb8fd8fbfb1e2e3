"""What both command-line programs share: user errors become one clear line and a non-zero exit."""

from __future__ import annotations

import functools
import sys

from absl import flags, logging

from icl_jax.errors import NonFiniteLoss, Stopped, UserError


def reports_user_errors(main):
    """Wraps an absl main: a UserError or NonFiniteLoss prints `error: ...` and exits 1; a run
    that SIGTERM or SIGINT stopped before train.steps (errors.Stopped, its checkpoint saved and
    reported) exits 128 + the signal's number, the shell's convention (143, 130); library INFO
    logs are off unless --verbosity is given."""

    @functools.wraps(main)
    def wrapped(argv):
        if not flags.FLAGS["verbosity"].present:  # orbax logs every save at INFO and read-only restores at WARNING
            logging.set_verbosity(logging.ERROR)
        try:
            return main(argv)
        except (UserError, NonFiniteLoss) as e:
            _fail(str(e))
        except Stopped as e:
            sys.exit(e.exit_status)

    return wrapped


def parse_flags(argv: list[str]) -> list[str]:
    """absl's flag parsing, with config mistakes (an unknown --config.KEY, a config file that
    does not load or rejects its argument) reported in one line instead of a traceback."""
    from icl_jax import config as config_lib  # late: keeps `--help` fast

    try:
        for arg in argv[1:]:
            if arg.startswith("--config."):
                config_lib.check_key(arg[len("--config."):].split("=", 1)[0])
        remaining = flags.FLAGS(argv)
        if "config" in flags.FLAGS and hasattr(flags.FLAGS["config"].value, "keys"):
            flags.FLAGS["config"].value.keys()  # config_flags defers load errors to first use
        return remaining
    except flags.Error as e:
        message = str(e)
        if "Traceback" in message:  # config_flags pastes the loader's traceback: keep its last line
            last = [line.strip() for line in message.splitlines() if line.strip()][-1]
            message = f"{message.splitlines()[0].rstrip(':')}: {last.removeprefix('icl_jax.errors.UserError: ')}"
        _fail(f"bad flag: {message}", code=2)
    except UserError as e:
        _fail(str(e), code=2)
    except (AttributeError, KeyError, OSError, TypeError, ValueError) as e:
        detail = [line.strip() for line in str(e).splitlines() if line.strip()]
        _fail(f"could not load the config: {detail[-1] if detail else type(e).__name__}", code=2)


def _fail(message: str, code: int = 1):
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(code)
