"""Exceptions the CLIs turn into a one-line message and an exit status (cli.py)."""


class UserError(ValueError):
    """A problem with what the user asked for (config, workdir, checkpoint), stated in words."""


class NonFiniteLoss(RuntimeError):
    """Training produced a NaN or infinite loss; the message names the step and the last good checkpoint."""


class Stopped(Exception):
    """SIGTERM or SIGINT stopped a run before train.steps, after saving its checkpoint at `step`.
    The CLI exits with the shell's status for that signal, 128 + its number (143, 130)."""

    def __init__(self, step: int, signum: int):
        super().__init__(f"stopped by signal {signum} at step {step}")
        self.step, self.signum = step, signum

    @property
    def exit_status(self) -> int:
        return 128 + self.signum
