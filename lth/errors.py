"""User-facing errors: one line that says what is wrong and what to do."""


class LthError(ValueError):
    """Bad input to lth. The CLI prints its message on one line and exits with code 2."""


class ConfigError(LthError):
    """An invalid configuration value or an unknown name."""


class MaskError(LthError):
    """A mask that does not fit the params (structure or shapes)."""


class DataError(LthError):
    """A dataset that cannot be found, loaded or verified."""
