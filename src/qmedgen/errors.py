"""Errors shown to users: one message that names the file, key or value and what was expected."""


class UserError(Exception):
    """A problem with the user's input (file, config value, option); the CLI prints it without a traceback."""


class ConfigError(UserError, ValueError):
    """An invalid configuration key or value."""


class DataError(UserError, ValueError):
    """A missing, corrupt or malformed dataset file."""


class ResourceError(UserError, MemoryError):
    """A request that cannot fit in the available memory; raised before any allocation."""
