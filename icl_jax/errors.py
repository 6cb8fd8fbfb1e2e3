"""The one exception type for bad user input; the CLIs turn it into a one-line message."""


class UserError(ValueError):
    """A problem with what the user asked for (config, workdir, checkpoint), stated in words."""


class NonFiniteLoss(RuntimeError):
    """Training produced a NaN or infinite loss; the message names the step and the last good checkpoint."""
