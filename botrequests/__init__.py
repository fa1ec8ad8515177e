"""botrequests: the record of every interaction between AI bots and their users."""

__version__ = "0.1.0"
