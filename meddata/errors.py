"""The one error base the command line knows: a problem the user can fix.

Any exception deriving from :class:`UserError` is printed by ``meddata`` as one line naming
what to change (exit code 2), without a traceback. Library code raises its own subclasses
(recipe, config, build-folder, Hub errors), so callers can still catch them precisely.
"""


class UserError(Exception):
    """Bad input, configuration or environment; the message says what to do."""
