"""One exception type for problems the user can fix (bad input, missing files, wrong config).

The command-line entry points print these as one clear line instead of a traceback; anything
else is a bug and keeps its traceback.
"""


class UserError(Exception):
    """Something in the user's input or setup is wrong; the message says what and what to do."""
